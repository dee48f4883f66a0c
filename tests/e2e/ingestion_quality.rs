//! Ingestion beyond parsing: declared types and constraints in a validation report, profiles,
//! masking that never stores the original values, and content-addressed versions.

use arrow_array::cast::AsArray;
use mlops_core::storage::sha256_hex;
use mlops_e2e::*;
use mlops_proto::v1::upload_dataset_request::Part;
use mlops_proto::v1::{
    ColumnSpec, CsvOptions, DataType, GetDatasetVersionRequest, ListDatasetsRequest, MaskRule,
    UploadDatasetRequest, UploadHeader,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tonic::Code;

const KEY: &str = "a-test-masking-key-0123456789";

async fn upload(
    cluster: &TestCluster,
    header: UploadHeader,
    csv: &str,
) -> Result<mlops_proto::v1::UploadDatasetResponse, tonic::Status> {
    let messages = vec![
        UploadDatasetRequest {
            part: Some(Part::Header(header)),
        },
        UploadDatasetRequest {
            part: Some(Part::Chunk(csv.as_bytes().to_vec())),
        },
    ];
    cluster
        .ingestion()
        .upload_dataset(futures::stream::iter(messages))
        .await
        .map(tonic::Response::into_inner)
}

fn mask(column: &str, action: &str, parameter: &str) -> MaskRule {
    MaskRule {
        column: column.into(),
        action: action.into(),
        parameter: parameter.into(),
    }
}

const PEOPLE: &str = "id;email;age;tier;salary;joined\n\
1;ann@example.com;34;gold;51234.5;2021-03-04\n\
2;bob@example.com;NA;silver;72000;2022-07-19T10:00:00Z\n\
2;cy@example.com;150;bronze;61000;2020-01-30\n\
4;dee@example.com;twenty;gold;58000;2023-12-01\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_carries_its_report_profile_and_masking_and_never_the_private_values() {
    let cluster = TestCluster::builder()
        .setting("MLOPS__INGESTION__MASKING_KEY", KEY)
        .start()
        .await;
    let header = UploadHeader {
        name: "people".into(),
        csv: Some(CsvOptions {
            delimiter: ";".into(),
            ..Default::default()
        }),
        columns: vec![
            ColumnSpec {
                name: "id".into(),
                unique: true,
                ..Default::default()
            },
            ColumnSpec {
                name: "age".into(),
                data_type: DataType::Int64 as i32,
                not_null: true,
                min: Some(0.0),
                max: Some(120.0),
                ..Default::default()
            },
            ColumnSpec {
                name: "tier".into(),
                allowed: vec!["gold".into(), "silver".into()],
                ..Default::default()
            },
        ],
        masking: vec![
            mask("email", "hash", ""),
            mask("salary", "round", "-3"),
            mask("joined", "truncate_date", "month"),
        ],
        ..Default::default()
    };
    let response = upload(&cluster, header.clone(), PEOPLE).await.unwrap();
    assert!(response.created);
    let v = response.version.unwrap();
    let report = v.report.clone().unwrap();
    assert_eq!(report.row_count, 4);
    assert!(!report.passed);
    // not_null (NA + the type error), range (150), allowed (bronze), unique (id 2), type error.
    assert_eq!(report.failures.len(), 5, "{:?}", report.failures);
    let age = report.columns.iter().find(|c| c.name == "age").unwrap();
    assert_eq!((age.null_count, age.out_of_range), (2, 1));
    assert_eq!(report.type_error_count, 1);
    assert_eq!(
        (
            report.type_errors[0].line,
            report.type_errors[0].value.as_str()
        ),
        (5, "twenty")
    );
    let types: Vec<(String, i32)> = v
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.data_type))
        .collect();
    assert_eq!(types[4], ("salary".to_string(), DataType::Float64 as i32));
    assert_eq!(types[5], ("joined".to_string(), DataType::Timestamp as i32));
    let salary = v.profile.iter().find(|p| p.name == "salary").unwrap();
    assert_eq!(salary.kind, "numeric");
    assert_eq!((salary.min, salary.max), (51000.0, 72000.0));
    assert_eq!(salary.quantiles.len(), 101);
    let tier = v.profile.iter().find(|p| p.name == "tier").unwrap();
    assert_eq!((tier.kind.as_str(), tier.distinct), ("categorical", 3));
    assert_eq!(v.masking.len(), 3);

    // Imports write their plaintext in a private scratch directory; the stored file is linked
    // from there, and nothing staged is left beside it.
    use std::os::unix::fs::PermissionsExt;
    let tmp = std::fs::metadata(cluster.data_dir().join("tmp")).unwrap();
    assert_eq!(tmp.permissions().mode() & 0o777, 0o700);
    let path = blob_path(cluster.data_dir(), &v.digest);
    let staged: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with('.'))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
    // The stored file holds the keyed hashes, never an address.
    let blob = std::fs::read(&path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(blob))
        .unwrap()
        .build()
        .unwrap();
    for batch in reader {
        let batch = batch.unwrap();
        let emails = batch.column_by_name("email").unwrap().as_string::<i32>();
        for email in emails.iter().flatten() {
            assert_eq!(email.len(), 64, "{email}");
            assert!(!email.contains('@'));
        }
    }

    // Identical data is the same version; after another version, still the first.
    let again = upload(&cluster, header.clone(), PEOPLE).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.version.unwrap().version, 1);
    let other = upload(&cluster, header.clone(), &PEOPLE.replace("58000", "59000"))
        .await
        .unwrap();
    assert_eq!(other.version.unwrap().version, 2);
    let back = upload(&cluster, header.clone(), PEOPLE).await.unwrap();
    assert_eq!((back.created, back.version.unwrap().version), (false, 1));
    // A new version reports how its schema moved: tier dropped, salary now text.
    let changed = upload(
        &cluster,
        UploadHeader {
            masking: vec![mask("email", "hash", ""), mask("tier", "drop", "")],
            ..header.clone()
        },
        &PEOPLE.replace("51234.5", "n/a"),
    )
    .await
    .unwrap()
    .version
    .unwrap();
    let change = changed.schema_change.unwrap();
    assert_eq!(change.previous_version, 2);
    assert!(change.changed);
    assert_eq!(change.removed.len(), 1);
    assert_eq!(change.removed[0].name, "tier");
    let retyped: Vec<&str> = change.retyped.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(retyped, vec!["salary"]);

    let fetched = cluster
        .ingestion()
        .get_dataset_version(GetDatasetVersionRequest {
            dataset: "people".into(),
            version: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.report, v.report);
    assert_eq!(fetched.profile.len(), v.profile.len());

    // Aliases move between versions; `latest` is built in.
    let ingestion_addr = [("ingestion", format!("http://{}", cluster.addrs.ingestion))];
    mlops_cli(
        &["data", "alias", "people", "prod", "1"],
        &ingestion_addr,
        None,
    );
    let get = |alias: &str| GetDatasetVersionRequest {
        dataset: "people".into(),
        alias: alias.into(),
        ..Default::default()
    };
    let mut ingestion = cluster.ingestion();
    assert_eq!(
        ingestion
            .get_dataset_version(get("prod"))
            .await
            .unwrap()
            .into_inner()
            .version,
        1
    );
    assert_eq!(
        ingestion
            .get_dataset_version(get("latest"))
            .await
            .unwrap()
            .into_inner()
            .version,
        3
    );
    let dataset = ingestion
        .get_dataset(mlops_proto::v1::GetDatasetRequest {
            name: "people".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dataset.aliases.get("prod"), Some(&1));
    for (request, code) in [
        (
            mlops_proto::v1::SetDatasetAliasRequest {
                dataset: "people".into(),
                alias: "latest".into(),
                version: 1,
            },
            Code::InvalidArgument,
        ),
        (
            mlops_proto::v1::SetDatasetAliasRequest {
                dataset: "people".into(),
                alias: "prod".into(),
                version: 9,
            },
            Code::NotFound,
        ),
        (
            mlops_proto::v1::SetDatasetAliasRequest {
                dataset: "people".into(),
                alias: "../x".into(),
                version: 1,
            },
            Code::InvalidArgument,
        ),
    ] {
        let status = ingestion.set_dataset_alias(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
    }
    assert_eq!(
        ingestion
            .get_dataset_version(get("staging"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    let out = mlops_cli(
        &["data", "show", "people@prod", "--json"],
        &[("ingestion", format!("http://{}", cluster.addrs.ingestion))],
        None,
    );
    let shown: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(shown["report"]["passed"], false);
    assert_eq!(shown["report"]["type_errors"][0]["line"], 5);

    // Preview: the first rows as text, missing values marked; the hash, never the address.
    let preview = ingestion
        .preview_dataset_version(mlops_proto::v1::PreviewDatasetVersionRequest {
            dataset: "people".into(),
            alias: "prod".into(),
            rows: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.rows.len(), 2);
    assert_eq!(preview.rows[0].values[2], "34");
    assert_eq!(preview.rows[1].missing, vec![2]);
    assert_eq!(preview.rows[1].values[5], "2022-07-01T00:00:00.000Z");
    assert!(!preview.rows[0].values[1].contains('@'));
    let status = ingestion
        .preview_dataset_version(mlops_proto::v1::PreviewDatasetVersionRequest {
            dataset: "people".into(),
            rows: 5000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let out = mlops_cli(
        &["data", "preview", "people@1", "--rows", "3"],
        &ingestion_addr,
        None,
    );
    assert!(
        out.contains("people@1 (3 of 4 rows)") && out.contains("NA"),
        "{out}"
    );

    // Download: the stored file, digest checked by the CLI.
    let file = cluster.data_dir().join("people.parquet");
    mlops_cli(
        &[
            "data",
            "download",
            "people@prod",
            "--out",
            file.to_str().unwrap(),
        ],
        &ingestion_addr,
        None,
    );
    let downloaded = std::fs::read(&file).unwrap();
    assert_eq!(mlops_core::storage::sha256_hex(&downloaded), v.digest);

    // Bad specs name the field.
    for (bad, code, needle) in [
        (
            UploadHeader {
                masking: vec![mask("nope", "drop", "")],
                ..header.clone()
            },
            Code::InvalidArgument,
            "\"nope\"",
        ),
        (
            UploadHeader {
                masking: vec![mask("tier", "round", "1")],
                ..header.clone()
            },
            Code::InvalidArgument,
            "round applies to numeric",
        ),
        (
            UploadHeader {
                csv: Some(CsvOptions {
                    delimiter: ";;".into(),
                    ..Default::default()
                }),
                ..header.clone()
            },
            Code::InvalidArgument,
            "csv.delimiter",
        ),
        (
            UploadHeader {
                columns: vec![ColumnSpec {
                    name: "ghost".into(),
                    ..Default::default()
                }],
                ..header.clone()
            },
            Code::InvalidArgument,
            "\"ghost\"",
        ),
    ] {
        let status = upload(&cluster, bad, PEOPLE).await.unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(status.message().contains(needle), "{}", status.message());
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_without_a_configured_key_is_refused_and_stores_nothing() {
    let cluster = TestCluster::builder().start().await;
    let status = upload(
        &cluster,
        UploadHeader {
            name: "people".into(),
            csv: Some(CsvOptions {
                delimiter: ";".into(),
                ..Default::default()
            }),
            masking: vec![mask("email", "hash", "")],
            ..Default::default()
        },
        &PEOPLE.replace("twenty", "20"),
    )
    .await
    .unwrap_err();
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    assert!(status.message().contains("masking_key"));
    let status = cluster
        .ingestion()
        .get_dataset_version(GetDatasetVersionRequest {
            dataset: "people".into(),
            version: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    cluster.stop().await;
}

async fn upload_bytes(
    cluster: &TestCluster,
    name: &str,
    bytes: Vec<u8>,
) -> Result<mlops_proto::v1::UploadDatasetResponse, tonic::Status> {
    let mut messages = vec![UploadDatasetRequest {
        part: Some(Part::Header(UploadHeader {
            name: name.into(),
            ..Default::default()
        })),
    }];
    messages.extend(bytes.chunks(64 * 1024).map(|c| UploadDatasetRequest {
        part: Some(Part::Chunk(c.to_vec())),
    }));
    cluster
        .ingestion()
        .upload_dataset(futures::stream::iter(messages))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_uploads_are_read_and_bombs_are_refused() {
    let cluster = TestCluster::builder()
        .setting("MLOPS__INGESTION__MAX_DECOMPRESSED_BYTES", "1000000")
        .start()
        .await;
    let iris = std::fs::read(repo_root().join("examples/datasets/iris.csv")).unwrap();
    let plain = upload_bytes(&cluster, "iris", iris.clone()).await.unwrap();
    // The same data gzipped or zstd-compressed is the same version.
    for compressed in [
        gzip(&iris),
        ruzstd::encoding::compress_to_vec(&iris[..], ruzstd::encoding::CompressionLevel::Fastest),
    ] {
        assert_ne!(compressed[..4], iris[..4]);
        let response = upload_bytes(&cluster, "iris", compressed).await.unwrap();
        assert!(!response.created);
        assert_eq!(response.version, plain.version);
    }
    // 20 MB of rows in about 100 KB: past the 1 MB limit, refused, nothing stored.
    let bomb = gzip(&[&b"a,b\n"[..], &b"0,0\n".repeat(5_000_000)].concat());
    assert!(bomb.len() < 200_000, "{}", bomb.len());
    let status = upload_bytes(&cluster, "bomb", bomb).await.unwrap_err();
    assert_refused(&status, Code::ResourceExhausted, "max_decompressed_bytes");
    let status = upload_bytes(&cluster, "corrupt", vec![0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    let status = upload_bytes(&cluster, "binary", vec![b'a', b'\n', 0xff, 0xfe, b'\n'])
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "line");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uris_are_read_only_inside_the_import_root() {
    let outside = tempfile::tempdir().unwrap();
    let root = outside.path().join("imports");
    std::fs::create_dir_all(root.join("nested")).unwrap();
    let iris = std::fs::read(repo_root().join("examples/datasets/iris.csv")).unwrap();
    std::fs::write(root.join("nested/iris.csv.gz"), gzip(&iris)).unwrap();
    std::fs::write(outside.path().join("secret.csv"), "secret,y\n1,2\n").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.csv"), root.join("link.csv")).unwrap();
    let cluster = TestCluster::builder()
        .setting("MLOPS__INGESTION__IMPORT_ROOT", root.to_str().unwrap())
        .start()
        .await;
    let by_uri = |uri: String| UploadHeader {
        name: "imported".into(),
        uri,
        ..Default::default()
    };
    let messages = header_only;
    let mut ingestion = cluster.ingestion();
    let version = ingestion
        .upload_dataset(messages(by_uri("nested/iris.csv.gz".into())))
        .await
        .unwrap()
        .into_inner()
        .version
        .unwrap();
    assert_eq!(version.row_count, 150);
    // Lineage: where the version came from, down to the digest of the bytes read.
    let source = version.source.unwrap();
    assert_eq!(
        (
            source.kind.as_str(),
            source.uri.as_str(),
            source.format.as_str()
        ),
        ("uri", "nested/iris.csv.gz", "csv")
    );
    assert_eq!(source.compression, "gzip");
    assert_eq!(source.sha256, sha256_hex(&gzip(&iris)));
    let absolute = format!("file://{}", root.join("nested/iris.csv.gz").display());
    let again = ingestion
        .upload_dataset(messages(by_uri(absolute)))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);

    let secret = outside.path().join("secret.csv");
    for (uri, code) in [
        ("../secret.csv".to_string(), Code::PermissionDenied),
        (
            "nested/../../secret.csv".to_string(),
            Code::PermissionDenied,
        ),
        (secret.display().to_string(), Code::PermissionDenied),
        (
            format!("file://{}", secret.display()),
            Code::PermissionDenied,
        ),
        ("file:///etc/passwd".to_string(), Code::PermissionDenied),
        ("%2e%2e%2fsecret.csv".to_string(), Code::InvalidArgument),
        ("link.csv".to_string(), Code::PermissionDenied),
        ("nested".to_string(), Code::InvalidArgument),
        ("missing.csv".to_string(), Code::NotFound),
        // S3 URIs are off until ingestion.import_s3_prefixes allows some.
        ("s3://bucket/data.csv".to_string(), Code::FailedPrecondition),
        ("gs://bucket/data.csv".to_string(), Code::InvalidArgument),
    ] {
        let status = ingestion
            .upload_dataset(messages(by_uri(uri.clone())))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{uri}: {}", status.message());
        assert!(
            status.message().contains("header.uri"),
            "{}",
            status.message()
        );
        assert!(
            !status.message().contains("secret,y"),
            "{}",
            status.message()
        );
    }
    cluster.stop().await;

    // Without a root, URIs are off.
    let cluster = TestCluster::builder().start().await;
    let status = cluster
        .ingestion()
        .upload_dataset(messages(by_uri("iris.csv".into())))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_json_lines_and_parquet_of_the_same_data_are_one_version() {
    let cluster = TestCluster::builder().start().await;
    let csv = upload_bytes(
        &cluster,
        "tiny",
        b"a,b,when\n1,x,2024-01-02\n2,,2024-02-03\n".to_vec(),
    )
    .await
    .unwrap();
    let v = csv.version.unwrap();
    let source = v.source.clone().unwrap();
    assert_eq!(
        (source.kind.as_str(), source.format.as_str()),
        ("upload", "csv")
    );
    let jsonl = "{\"a\": 1, \"b\": \"x\", \"when\": \"2024-01-02\"}\n{\"a\": 2, \"b\": null, \"when\": \"2024-02-03\"}\n";
    let same = upload_bytes(&cluster, "tiny", gzip(jsonl.as_bytes()))
        .await
        .unwrap();
    assert!(!same.created);
    assert_eq!(same.version.unwrap().digest, v.digest);
    // The stored Parquet file uploaded back is the same version too.
    let parquet = std::fs::read(blob_path(cluster.data_dir(), &v.digest)).unwrap();
    let again = upload_bytes(&cluster, "tiny", parquet).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.version.unwrap().version, v.version);
    for (bytes, needle) in [
        (b"{\"a\": 1}\n{\"a\": {\"x\": 1}}\n".to_vec(), "line 2"),
        (b"PAR1 not really".to_vec(), "Parquet"),
    ] {
        let status = upload_bytes(&cluster, "bad", bytes).await.unwrap_err();
        assert_refused(&status, Code::InvalidArgument, needle);
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_counted_by_value_and_noise_is_stored_uncompressed() {
    let cluster = TestCluster::builder().start().await;
    // Rows 2, 3 and 5 repeat row 1, spaced, quoted and with CRLF; row 4's quoted name holds
    // the delimiter. 5,000 rows of random-looking numbers follow.
    let mut csv = String::from(
        "name,code,noise\np,1,0.5\n p , 1 ,0.5\n\"p\",1,0.5\n\"p,1\",0,5\np,1,0.5\r\n",
    );
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..5000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state >> 11) as f64 / (1u64 << 53) as f64 * 1000.0;
        csv.push_str(&format!("r{i},{},{noise}\n", i % 5));
    }
    let v = upload_bytes(&cluster, "noisy", csv.into_bytes())
        .await
        .unwrap()
        .version
        .unwrap();
    let report = v.report.unwrap();
    assert_eq!((report.row_count, report.duplicate_rows), (5005, 3));
    // The stored file, as a client downloads it: Snappy where it shrinks the column.
    let ingestion_addr = [("ingestion", format!("http://{}", cluster.addrs.ingestion))];
    let file = cluster.data_dir().join("noisy.parquet");
    mlops_cli(
        &[
            "data",
            "download",
            "noisy@1",
            "--out",
            file.to_str().unwrap(),
        ],
        &ingestion_addr,
        None,
    );
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(std::fs::read(&file).unwrap()))
            .unwrap();
    let row_group = reader.metadata().row_group(0);
    let compression: Vec<String> = (0..3)
        .map(|i| format!("{:?}", row_group.column(i).compression()))
        .collect();
    assert_eq!(compression, ["SNAPPY", "SNAPPY", "UNCOMPRESSED"]);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_files_are_read_and_overlong_lines_refused_by_number() {
    let cluster = TestCluster::builder()
        .setting("MLOPS__INGESTION__MAX_LINE_BYTES", "200000")
        .start()
        .await;
    let row = |columns: usize, value: &str| vec![value; columns].join(",");
    let header = |columns: usize| {
        (0..columns)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    // 10,000 columns, the default limit: read in narrow chunks and stored. The version's
    // profile of 10,000 columns is about 11 MB, past gRPC's default 4 MB: a client that
    // uploads such tables raises its decoding limit.
    let wide = format!(
        "{}\n{}\n{}\n",
        header(10_000),
        row(10_000, "1"),
        row(10_000, "2.5")
    );
    let header_message = UploadDatasetRequest {
        part: Some(Part::Header(UploadHeader {
            name: "wide".into(),
            ..Default::default()
        })),
    };
    let chunk = UploadDatasetRequest {
        part: Some(Part::Chunk(wide.into_bytes())),
    };
    let version = cluster
        .ingestion()
        .max_decoding_message_size(64 << 20)
        .upload_dataset(futures::stream::iter(vec![header_message, chunk]))
        .await
        .unwrap()
        .into_inner()
        .version
        .unwrap();
    assert_eq!((version.column_count, version.row_count), (10_000, 2));
    let too_wide = format!("{}\n{}\n", header(10_001), row(10_001, "1"));
    let status = upload_bytes(&cluster, "wider", too_wide.into_bytes())
        .await
        .unwrap_err();
    assert_refused(&status, Code::ResourceExhausted, "columns");
    // A line past ingestion.max_line_bytes is refused by number before it is buffered.
    let long = format!("a,b\n1,2\n{},3\n", "x".repeat(300_000));
    let status = upload_bytes(&cluster, "long", long.into_bytes())
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "line 3 is longer than");
    // Nothing partial was stored, and the server goes on serving.
    let names: Vec<String> = cluster
        .ingestion()
        .list_datasets(ListDatasetsRequest {})
        .await
        .unwrap()
        .into_inner()
        .datasets
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, vec!["wide".to_string()]);
    cluster.stop().await;
}
