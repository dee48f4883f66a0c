//! One import, streamed: the source is cut into chunks on one thread, workers (one per core)
//! parse, check, mask and profile chunks in parallel, and a writer takes them in order and
//! writes each as a Parquet row group to a spool file, hashing it as it goes. Memory stays flat
//! whatever the size of the data; nothing reaches the store until the whole import has
//! succeeded.

use std::io::{BufRead, BufReader, Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema};
use mlops_core::ApiError;
use mlops_proto::v1::{Column, DatasetSource, MaskRule, VersionDetails};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use crate::csv_import::{
    Chunk, ChunkMeta, ColumnRule, ColumnType, CsvError, CsvLimits, CsvOptions, Data, Output,
    ParsedColumn, Tallier, Work, read_csv,
};
use crate::quality::{self, ProfileBuilder, ReportBuilder, ReportPart};
use crate::sources::{Format, read_jsonl, read_parquet};

/// What an import needs besides the data.
#[derive(Debug, Clone)]
pub struct ImportSpec {
    /// csv, jsonl, parquet, or empty to recognise it.
    pub format: String,
    pub options: CsvOptions,
    pub rules: Vec<ColumnRule>,
    pub masking: Vec<MaskRule>,
    pub masking_key: String,
    pub limits: CsvLimits,
    pub max_decompressed_bytes: u64,
    /// Where spool and spill files go (inside the data directory).
    pub tmp_dir: PathBuf,
    /// Values per chunk (and Parquet row group).
    pub chunk_values: usize,
}

/// An import that succeeded: the Parquet file (deleted on drop unless stored) and what is
/// recorded about it.
pub struct Imported {
    pub parquet: tempfile::NamedTempFile,
    /// sha256 of the Parquet file, hex.
    pub digest: String,
    pub size_bytes: u64,
    pub rows: u64,
    pub columns: Vec<Column>,
    pub details: VersionDetails,
}

/// Imports the file at `path` (a spooled upload or a file under the import root).
pub fn import(path: &Path, spec: &ImportSpec) -> Result<Imported, ApiError> {
    let mut hints: Vec<Option<ColumnType>> = Vec::new();
    loop {
        match attempt(path, spec, &hints) {
            Err(Failure::Retype(wider)) => hints = wider,
            Err(Failure::Api(error)) => return Err(error),
            Ok(imported) => return Ok(imported),
        }
    }
}

enum Failure {
    /// A column's type widened after the first chunk was written: start over with these.
    Retype(Vec<Option<ColumnType>>),
    Api(ApiError),
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Failure::Api(error)
    }
}

impl From<CsvError> for Failure {
    fn from(error: CsvError) -> Self {
        match error {
            CsvError::Retype(hints) => Failure::Retype(hints),
            other => Failure::Api(other.into()),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Failure::Api(error.into())
    }
}

/// Chunks of work in flight at once beyond one per worker (read, being parsed or prepared, or
/// waiting to be written in order): what bounds an import's memory.
const IN_FLIGHT_SPARE: usize = 1;

/// Threads that parse and prepare chunks: one per core the process may use.
pub(crate) fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// One pass over the source. The reader (this thread) splits the source into chunks of work;
/// workers parse, check, mask and profile them in parallel; the writer tallies, merges and
/// writes them in the source's order, so the result does not depend on the timing.
fn attempt(
    path: &Path,
    spec: &ImportSpec,
    hints: &[Option<ColumnType>],
) -> Result<Imported, Failure> {
    let source = Source::open(
        path,
        spec.max_decompressed_bytes,
        spec.limits.max_line_bytes,
    )?;
    let Source {
        mut reader,
        exceeded,
        compression,
        raw,
    } = source;
    let format = match reader.fill_buf() {
        Ok(head) => Format::pick(&spec.format, head)?,
        Err(e) => return Err(Failure::Api(unreadable(&e, &exceeded, spec))),
    };
    let workers = workers();
    let in_flight = workers + IN_FLIGHT_SPARE;
    let (work_sender, work) = std::sync::mpsc::sync_channel::<(u64, Work)>(workers);
    let work = std::sync::Mutex::new(work);
    let (done_sender, done) = std::sync::mpsc::sync_channel(in_flight);
    // A token per chunk in flight: the reader takes one per chunk, the writer gives it back.
    let (token_sender, tokens) = std::sync::mpsc::sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        token_sender.send(()).expect("room for every token");
    }
    let (read, written) = std::thread::scope(|scope| {
        let pool: Vec<_> = (0..workers)
            .map(|_| {
                let done_sender = done_sender.clone();
                let work = &work;
                scope.spawn(move || {
                    loop {
                        let next = work.lock().map(|work| work.recv());
                        let Ok(Ok((seq, chunk))) = next else { break };
                        // A panic is this chunk's error: the writer waits for every chunk.
                        let prepared =
                            std::panic::catch_unwind(AssertUnwindSafe(|| prepare(chunk, spec)))
                                .unwrap_or_else(|_| {
                                    Err(Failure::Api(ApiError::internal(
                                        "an import worker panicked".to_string(),
                                    )))
                                });
                        if done_sender.send((seq, prepared)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        drop(done_sender);
        let writer = scope.spawn(move || assemble(done, token_sender, spec, hints));
        let read = {
            let mut seq = 0u64;
            let stopped = || CsvError::Io("the writer stopped".into());
            let mut emit = |chunk: Work| {
                // A closed channel means the writer stopped; its error is the one reported.
                tokens.recv().map_err(|_| stopped())?;
                work_sender.send((seq, chunk)).map_err(|_| stopped())?;
                seq += 1;
                Ok(())
            };
            let mut out = Output::new(spec.limits, spec.chunk_values, hints, &mut emit);
            match format {
                Format::Csv => read_csv(&mut reader, &spec.options, &spec.rules, &mut out),
                Format::JsonLines => read_jsonl(&mut reader, &spec.rules, &mut out),
                Format::Parquet => parquet_file(reader, path, compression != "none", &spec.tmp_dir)
                    .and_then(|file| read_parquet(file, &spec.rules, &mut out)),
            }
        };
        drop(work_sender);
        for worker in pool {
            // Panics are caught per chunk, above.
            let _ = worker.join();
        }
        let written = writer.join().unwrap_or_else(|_| {
            Err(Failure::Api(ApiError::internal(
                "the Parquet writer panicked".to_string(),
            )))
        });
        (read, written)
    });
    if exceeded.load(Ordering::Relaxed) {
        return Err(Failure::Api(bomb(spec)));
    }
    // The writer's error comes from earlier in the data than anything the reader met after it
    // (or is why the reader stopped).
    let (tally, report, written) = written?;
    read?;
    let tally = tally.finish()?;
    let (Some(report), Some(written)) = (report, written) else {
        return Err(CsvError::NoRows.into());
    };
    let Written {
        parquet,
        digest,
        size_bytes,
        columns,
        profile,
    } = written;
    let report = report.finish(&tally, &spec.masking)?;
    let (raw_bytes, raw_sha256) = raw.finish();
    Ok(Imported {
        parquet,
        digest,
        size_bytes,
        rows: tally.rows,
        columns,
        details: VersionDetails {
            report: Some(report),
            profile: profile.finish(),
            masking: spec.masking.clone(),
            // Filled in against the previous version when it is stored.
            schema_change: None,
            source: Some(DatasetSource {
                format: format.name().into(),
                compression: compression.into(),
                size_bytes: raw_bytes,
                sha256: raw_sha256,
                ..Default::default()
            }),
        },
    })
}

/// A chunk parsed, counted for the report, masked and profiled: ready to be written in order.
struct Prepared {
    meta: ChunkMeta,
    /// The columns before masking, for the report.
    names: Vec<String>,
    report: ReportPart,
    profile: ProfileBuilder,
    masked: Vec<ParsedColumn>,
}

/// A worker's share: everything that needs only the chunk itself. The report sees the values
/// before masking (it holds counts, never values of masked columns); the profile and the file
/// see them after.
fn prepare(work: Work, spec: &ImportSpec) -> Result<Prepared, Failure> {
    let Chunk {
        mut columns,
        mut meta,
    } = work.parse()?;
    // Duplicates are counted by sorting: sorted here, in parallel, the chunks merge quickly.
    radsort::sort(&mut meta.row_hashes);
    let names = columns.iter().map(|c| c.name.clone()).collect();
    let report = ReportPart::of(&columns, &spec.rules);
    quality::apply_masking(&spec.masking, &mut columns, spec.masking_key.as_bytes())?;
    let profile = ProfileBuilder::of(&columns);
    Ok(Prepared {
        meta,
        names,
        report,
        profile,
        masked: columns,
    })
}

type Assembled = (Tallier, Option<ReportBuilder>, Option<Written>);

/// The writer: takes prepared chunks as they come and handles them in the source's order
/// (tally, report, profile, one Parquet row group each), giving a token back for each.
fn assemble(
    done: std::sync::mpsc::Receiver<(u64, Result<Prepared, Failure>)>,
    tokens: std::sync::mpsc::SyncSender<()>,
    spec: &ImportSpec,
    hints: &[Option<ColumnType>],
) -> Result<Assembled, Failure> {
    let mut tally = Tallier::new(hints, spec.limits.max_rows, &spec.tmp_dir);
    let mut report: Option<ReportBuilder> = None;
    let mut sink: Option<Sink> = None;
    let mut waiting = std::collections::BTreeMap::new();
    let mut next = 0u64;
    for (seq, prepared) in done {
        waiting.insert(seq, prepared);
        while let Some(prepared) = waiting.remove(&next) {
            next += 1;
            let Prepared {
                meta,
                names,
                report: part,
                profile,
                masked,
            } = prepared?;
            tally.add(meta)?;
            report
                .get_or_insert_with(|| {
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    ReportBuilder::new(&names, &spec.rules, &spec.tmp_dir)
                })
                .add(part)?;
            match &mut sink {
                Some(sink) => sink.profile.merge(profile),
                None => sink = Some(Sink::start(&masked, profile, &spec.tmp_dir)?),
            }
            sink.as_mut().expect("started above").write(masked)?;
            // The reader may have finished: a token nobody takes is fine.
            let _ = tokens.try_send(());
        }
    }
    let written = sink.map(Sink::close).transpose()?;
    Ok((tally, report, written))
}

fn bomb(spec: &ImportSpec) -> ApiError {
    ApiError::resource_exhausted(format!(
        "the upload decompresses to more than ingestion.max_decompressed_bytes ({} bytes): \
         refused as a likely compression bomb",
        spec.max_decompressed_bytes
    ))
}

/// A read that failed on the data itself (an overlong line, a corrupt stream) is the client's
/// error; anything else is ours.
fn unreadable(error: &std::io::Error, exceeded: &AtomicBool, spec: &ImportSpec) -> ApiError {
    if exceeded.load(Ordering::Relaxed) {
        return bomb(spec);
    }
    match error.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
            ApiError::invalid_argument(format!("unreadable input: {error}"))
        }
        _ => ApiError::internal(format!("reading the input: {error}")),
    }
}

/// Parquet needs random access: an uncompressed file is read where it is (passed through the
/// reader once, for the source digest), a compressed one is first spooled (bounded like any
/// upload).
fn parquet_file(
    mut reader: impl Read,
    path: &Path,
    compressed: bool,
    tmp_dir: &Path,
) -> Result<std::fs::File, CsvError> {
    let io = |e: std::io::Error| CsvError::Malformed {
        line: 0,
        message: e.to_string(),
    };
    if !compressed {
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(io)?;
        return std::fs::File::open(path).map_err(io);
    }
    let mut file = tempfile::tempfile_in(tmp_dir).map_err(io)?;
    std::io::copy(&mut reader, &mut file).map_err(io)?;
    Ok(file)
}

/// What the writer produced.
struct Written {
    parquet: tempfile::NamedTempFile,
    digest: String,
    size_bytes: u64,
    columns: Vec<Column>,
    profile: ProfileBuilder,
}

struct Sink {
    writer: ArrowWriter<HashingWriter>,
    schema: Arc<Schema>,
    parquet: tempfile::NamedTempFile,
    columns: Vec<Column>,
    profile: ProfileBuilder,
}

impl Sink {
    fn start(
        masked: &[ParsedColumn],
        profile: ProfileBuilder,
        tmp_dir: &Path,
    ) -> Result<Self, ApiError> {
        if masked.is_empty() {
            return Err(ApiError::invalid_argument(
                "masking: every column would be dropped",
            ));
        }
        let schema = Arc::new(Schema::new(
            masked
                .iter()
                .map(|c| Field::new(&c.name, c.data.column_type().arrow(), true))
                .collect::<Vec<_>>(),
        ));
        // Created as a blob would be (0666 less the umask), since the store links it into place.
        let parquet = tempfile::Builder::new()
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(tmp_dir)?;
        let out = HashingWriter {
            inner: std::io::BufWriter::with_capacity(1 << 20, parquet.reopen()?),
            hasher: Sha256::new(),
            written: 0,
        };
        // Dictionary encoding pays off for text (categories repeat); numbers are mostly
        // distinct, and building a dictionary that is then abandoned costs more than it saves.
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_dictionary_enabled(false);
        for column in masked {
            let path = || ColumnPath::from(column.name.as_str());
            if matches!(column.data, Data::Str(_)) {
                props = props.set_column_dictionary_enabled(path(), true);
            }
            if !snappy_pays(&column.data) {
                props = props.set_column_compression(path(), Compression::UNCOMPRESSED);
            }
        }
        let props = props.build();
        let writer = ArrowWriter::try_new(out, schema.clone(), Some(props))
            .map_err(|e| ApiError::internal(format!("parquet writer: {e}")))?;
        Ok(Self {
            writer,
            schema,
            parquet,
            columns: masked
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    data_type: quality::data_type(c.data.column_type()) as i32,
                })
                .collect(),
            profile,
        })
    }

    /// One chunk, one row group: the same chunks always give the same bytes.
    fn write(&mut self, masked: Vec<ParsedColumn>) -> Result<(), ApiError> {
        let rows = masked.first().map_or(0, |c| c.data.len());
        let arrays = masked
            .into_iter()
            .map(|c| {
                c.data.into_array().ok_or_else(|| {
                    ApiError::resource_exhausted(format!(
                        "column {:?}: more than 2 GiB of text in {rows} rows, more than \
                         one Parquet column chunk holds: split the long values",
                        c.name
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| ApiError::internal(format!("building a record batch: {e}")))?;
        self.writer
            .write(&batch)
            .and_then(|()| self.writer.flush())
            .map_err(|e| ApiError::internal(format!("parquet write: {e}")))
    }

    fn close(self) -> Result<Written, ApiError> {
        let mut out = self
            .writer
            .into_inner()
            .map_err(|e| ApiError::internal(format!("parquet close: {e}")))?;
        out.inner.flush()?;
        Ok(Written {
            parquet: self.parquet,
            digest: hex::encode(out.hasher.finalize()),
            size_bytes: out.written,
            columns: self.columns,
            profile: self.profile,
        })
    }
}

/// Whether Snappy shrinks a column's values by at least an eighth, judged on the first chunk's
/// first values (the same data always decides the same). Measurements and ids written in full
/// precision hardly compress, and compressing them anyway cost a twentieth of an import.
fn snappy_pays(data: &Data) -> bool {
    const SAMPLE: usize = 8192;
    let bytes: Vec<u8> = match data {
        Data::Int(v) | Data::Time(v) => v
            .iter()
            .take(SAMPLE)
            .flat_map(|x| x.unwrap_or_default().to_le_bytes())
            .collect(),
        Data::Float(v) => v
            .iter()
            .take(SAMPLE)
            .flat_map(|x| x.unwrap_or_default().to_le_bytes())
            .collect(),
        // Booleans are bits already; text is dictionary encoded, and its indices compress.
        Data::Bool(_) | Data::Str(_) => return true,
    };
    match snap::raw::Encoder::new().compress_vec(&bytes) {
        Ok(compressed) => compressed.len() < bytes.len() - bytes.len() / 8,
        Err(_) => true,
    }
}

/// Writes through, hashing and counting what passes.
struct HashingWriter {
    inner: std::io::BufWriter<std::fs::File>,
    hasher: Sha256,
    written: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Reads through, hashing and counting the source's raw (possibly compressed) bytes.
struct RawDigest<R> {
    inner: R,
    state: Arc<std::sync::Mutex<(u64, Sha256)>>,
}

impl<R: Read> Read for RawDigest<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut state = self.state.lock().expect("not poisoned");
        state.0 += n as u64;
        state.1.update(&buf[..n]);
        Ok(n)
    }
}

struct RawTotals(Arc<std::sync::Mutex<(u64, Sha256)>>);

impl RawTotals {
    fn finish(self) -> (u64, String) {
        let state = self.0.lock().expect("not poisoned");
        (state.0, hex::encode(state.1.clone().finalize()))
    }
}

/// Stops reading past `remaining` bytes, and says so: decompressed input is bounded whatever
/// the compressed size.
struct Limited<R> {
    inner: R,
    remaining: u64,
    exceeded: Arc<AtomicBool>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            // One byte more would be over the limit: probe, so an exact fit still passes.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.exceeded.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("decompressed size limit exceeded"));
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Refuses a line longer than the limit before it is buffered (a 2 GB single line), naming it.
/// Parquet never passes through here.
struct LineLimit<R> {
    inner: R,
    max: u64,
    /// Bytes since the last line break.
    current: u64,
    line: u64,
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut rest = &buf[..n];
        while let Some(at) = memchr::memchr(b'\n', rest) {
            self.check(at as u64)?;
            self.current = 0;
            self.line += 1;
            rest = &rest[at + 1..];
        }
        self.check(rest.len() as u64)?;
        self.current += rest.len() as u64;
        Ok(n)
    }
}

impl<R> LineLimit<R> {
    fn check(&self, more: u64) -> std::io::Result<()> {
        if self.current + more > self.max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "line {} is longer than ingestion.max_line_bytes ({} bytes)",
                    self.line, self.max
                ),
            ));
        }
        Ok(())
    }
}

/// The source as a buffered reader: gzip and zstd (recognised by their magic bytes) are
/// decompressed on the fly up to a limit, and lines are bounded for the text formats.
struct Source {
    reader: Box<dyn BufRead + Send>,
    exceeded: Arc<AtomicBool>,
    compression: &'static str,
    raw: RawTotals,
}

impl Source {
    fn open(path: &Path, max_decompressed: u64, max_line_bytes: u64) -> Result<Self, ApiError> {
        let mut magic = [0u8; 4];
        let read = std::fs::File::open(path)?.read(&mut magic)?;
        let totals = Arc::new(std::sync::Mutex::new((0u64, Sha256::new())));
        let file = BufReader::with_capacity(
            1 << 20,
            RawDigest {
                inner: std::fs::File::open(path)?,
                state: totals.clone(),
            },
        );
        let exceeded = Arc::new(AtomicBool::new(false));
        let limited = |inner: Box<dyn Read + Send>| -> Box<dyn Read + Send> {
            Box::new(Limited {
                inner,
                remaining: max_decompressed,
                exceeded: exceeded.clone(),
            })
        };
        let (decoded, compression): (Box<dyn Read + Send>, _) = match &magic[..read] {
            [0x1f, 0x8b, ..] => (
                limited(Box::new(flate2::read::MultiGzDecoder::new(file))),
                "gzip",
            ),
            [0x28, 0xb5, 0x2f, 0xfd] => {
                let decoder = ruzstd::decoding::StreamingDecoder::new(file).map_err(|e| {
                    ApiError::invalid_argument(format!(
                        "the upload is not a valid zstd stream: {e}"
                    ))
                })?;
                (limited(Box::new(decoder)), "zstd")
            }
            _ => (Box::new(file), "none"),
        };
        let mut reader: Box<dyn BufRead + Send> =
            Box::new(BufReader::with_capacity(1 << 20, decoded));
        // Parquet is binary: the line bound applies to text only.
        if !reader.fill_buf()?.starts_with(b"PAR1") {
            reader = Box::new(BufReader::with_capacity(
                1 << 20,
                LineLimit {
                    inner: reader,
                    max: max_line_bytes,
                    current: 0,
                    line: 1,
                },
            ));
        }
        Ok(Self {
            reader,
            exceeded,
            compression,
            raw: RawTotals(totals),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csv_import::CHUNK_VALUES;

    fn spec(dir: &Path, chunk_values: usize) -> ImportSpec {
        ImportSpec {
            format: String::new(),
            options: CsvOptions::default(),
            rules: Vec::new(),
            masking: Vec::new(),
            masking_key: String::new(),
            limits: CsvLimits::default(),
            max_decompressed_bytes: 1 << 30,
            tmp_dir: dir.to_path_buf(),
            chunk_values,
        }
    }

    fn file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn chunked_imports_are_deterministic_and_formats_agree() {
        let dir = tempfile::tempdir().unwrap();
        let mut csv = String::from("a,b,when,label\n");
        for i in 0..1000 {
            // "a" turns from integers to numbers in a late chunk: the import starts over.
            let a = if i == 900 {
                "2.5".to_string()
            } else {
                i.to_string()
            };
            csv.push_str(&format!(
                "{a},{},2024-01-{:02},c{}\n",
                i % 7,
                i % 28 + 1,
                i % 3
            ));
        }
        let path = file(dir.path(), "x.csv", csv.as_bytes());
        let first = import(&path, &spec(dir.path(), 200)).unwrap();
        let again = import(&path, &spec(dir.path(), 200)).unwrap();
        assert_eq!(first.digest, again.digest);
        assert_eq!(first.rows, 1000);
        assert_eq!(
            first.columns[0].data_type,
            mlops_proto::v1::DataType::Float64 as i32
        );
        let report = first.details.report.as_ref().unwrap();
        assert_eq!(report.row_count, 1000);
        let source = first.details.source.as_ref().unwrap();
        assert_eq!(
            (source.format.as_str(), source.size_bytes),
            ("csv", csv.len() as u64)
        );
        assert_eq!(
            source.sha256,
            mlops_core::storage::sha256_hex(csv.as_bytes())
        );
        // The stored Parquet file, read back as a source, is the same version.
        let stored = std::fs::read(first.parquet.path()).unwrap();
        assert_eq!(mlops_core::storage::sha256_hex(&stored), first.digest);
        let parquet = file(dir.path(), "x.parquet", &stored);
        let round_trip = import(&parquet, &spec(dir.path(), 200)).unwrap();
        assert_eq!(round_trip.digest, first.digest);
        // So is the same data as gzipped CSV.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(csv.as_bytes()).unwrap();
        let gzipped = file(dir.path(), "x.csv.gz", &gz.finish().unwrap());
        let unzipped = import(&gzipped, &spec(dir.path(), 200)).unwrap();
        assert_eq!(unzipped.digest, first.digest);
        assert_eq!(unzipped.details.source.unwrap().compression, "gzip");
        // The profile saw every row.
        let a = &first.details.profile[0];
        assert_eq!(a.count, 1000);
        assert_eq!(a.histogram_counts.iter().sum::<u64>(), 1000);
    }

    #[test]
    fn an_error_in_the_first_block_is_reported_while_later_blocks_wait_for_it() {
        // Ten rows per block: the first block's ragged row fails the import, and the blocks
        // the reader cut meanwhile (waiting for the types the first would settle) are let go.
        let dir = tempfile::tempdir().unwrap();
        let mut csv = String::from("a,b\n1,2\n3\n");
        for i in 0..1000 {
            csv.push_str(&format!("{i},{i}\n"));
        }
        let path = file(dir.path(), "ragged.csv", csv.as_bytes());
        let error = import(&path, &spec(dir.path(), 20)).err().unwrap();
        assert!(
            error
                .to_string()
                .contains("line 3: 1 fields, but the header has 2"),
            "{error}"
        );
        // A later block's error, once the first settled the types, is the one reported.
        csv.push_str("x,1\n");
        let path = file(
            dir.path(),
            "late.csv",
            csv.replace("\n3\n", "\n3,4\n").as_bytes(),
        );
        let error = import(&path, &spec(dir.path(), 20)).err().unwrap();
        assert!(error.to_string().contains("line 1004"), "{error}");
    }

    #[test]
    fn an_overlong_line_is_refused_by_number_before_it_is_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = b"a,b\n1,2\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 5000));
        text.extend(b",3\n");
        let path = file(dir.path(), "long.csv", &text);
        let mut spec = spec(dir.path(), CHUNK_VALUES);
        spec.limits.max_line_bytes = 4096;
        let error = import(&path, &spec).err().unwrap();
        assert!(
            error.to_string().contains("line 3 is longer than"),
            "{error}"
        );
    }
}
