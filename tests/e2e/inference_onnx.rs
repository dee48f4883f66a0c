//! ONNX models exported by skl2onnx, imported into the registry and served by tract through
//! the Open Inference Protocol: answers match scikit-learn's own, with the model's own tensor
//! names, datatypes and outputs.

use mlops_e2e::*;
use mlops_proto::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use mlops_proto::inference::{InferTensorContents, ModelInferRequest, ModelMetadataRequest};
use mlops_proto::v1::import_model_version_request::Part;
use mlops_proto::v1::*;
use tonic::Code;

async fn import_fixture(cluster: &TestCluster, name: &str) -> serde_json::Value {
    let dir = repo_root().join("tests/fixtures/onnx");
    let onnx = std::fs::read(dir.join(format!("{name}.onnx"))).unwrap();
    cluster
        .registry()
        .import_model_version(futures::stream::iter([
            ImportModelVersionRequest {
                part: Some(Part::Header(ImportHeader {
                    model_name: name.replace('_', "-"),
                    ..Default::default()
                })),
            },
            ImportModelVersionRequest {
                part: Some(Part::Chunk(onnx)),
            },
        ]))
        .await
        .unwrap();
    serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.expected.json"))).unwrap())
        .unwrap()
}

fn rows_of(expected: &serde_json::Value) -> Vec<Vec<f64>> {
    serde_json::from_value(expected["rows"].clone()).unwrap()
}

fn fp32_request(model: &str, input: &str, rows: &[Vec<f64>]) -> ModelInferRequest {
    let raw: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|v| (*v as f32).to_le_bytes())
        .collect();
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![InferInputTensor {
            name: input.into(),
            datatype: "FP32".into(),
            shape: vec![rows.len() as i64, rows[0].len() as i64],
            ..Default::default()
        }],
        raw_input_contents: vec![raw],
        ..Default::default()
    }
}

fn f32s(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnx_models_serve_what_scikit_learn_predicts() {
    let cluster = TestCluster::builder().start().await;
    let mut inference = cluster.inference();

    // Regression: one FP32 output [N, 1].
    let expected = import_fixture(&cluster, "diabetes_linear").await;
    let rows = rows_of(&expected);
    let metadata = inference
        .model_metadata(ModelMetadataRequest {
            name: "diabetes-linear".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.platform, "onnx_tract");
    assert_eq!(
        (
            metadata.inputs[0].name.as_str(),
            metadata.inputs[0].shape.as_slice()
        ),
        ("X", &[-1, 10][..])
    );
    let answer = inference
        .model_infer(fp32_request("diabetes-linear", "X", &rows))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.outputs[0].name, "variable");
    assert_eq!(answer.outputs[0].shape, vec![rows.len() as i64, 1]);
    let predicted = f32s(&answer.raw_output_contents[0]);
    let sklearn: Vec<f64> = serde_json::from_value(expected["predict"].clone()).unwrap();
    for (ours, theirs) in predicted.iter().zip(&sklearn) {
        assert!(
            ((*ours as f64) - theirs).abs() < 1e-3 * theirs.abs().max(1.0),
            "{ours} vs {theirs}"
        );
    }

    // Classification: labels (INT64) and probabilities (FP32); typed FP64 input works too.
    let expected = import_fixture(&cluster, "iris_logistic").await;
    let rows = rows_of(&expected);
    let typed = ModelInferRequest {
        model_name: "iris-logistic".into(),
        inputs: vec![InferInputTensor {
            name: "X".into(),
            datatype: "FP64".into(),
            shape: vec![rows.len() as i64, 4],
            contents: Some(InferTensorContents {
                fp64_contents: rows.iter().flatten().copied().collect(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let answer = inference.model_infer(typed).await.unwrap().into_inner();
    let names: Vec<&str> = answer.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["label", "probabilities"]);
    assert_eq!(answer.outputs[0].datatype, "INT64");
    let labels: Vec<i64> = answer.raw_output_contents[0]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let sklearn_labels: Vec<i64> = serde_json::from_value(expected["predict"].clone()).unwrap();
    assert_eq!(labels, sklearn_labels);
    let probabilities = f32s(&answer.raw_output_contents[1]);
    let sklearn_probabilities: Vec<Vec<f64>> =
        serde_json::from_value(expected["predict_proba"].clone()).unwrap();
    for (ours, theirs) in probabilities
        .iter()
        .zip(sklearn_probabilities.iter().flatten())
    {
        assert!(((*ours as f64) - theirs).abs() < 1e-4, "{ours} vs {theirs}");
    }

    // The REST form answers each output in its own datatype.
    let body = serde_json::json!({
        "inputs": [{"name": "X", "shape": [rows.len(), 4], "datatype": "FP32", "data": rows}]
    });
    let (status, text) = http(
        cluster.addrs.inference_http,
        "POST",
        "/v2/models/iris-logistic/infer",
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let rest: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(rest["outputs"][0]["datatype"], "INT64");
    assert_eq!(
        serde_json::from_value::<Vec<i64>>(rest["outputs"][0]["data"].clone()).unwrap(),
        sklearn_labels
    );

    // Only the outputs asked for.
    let mut only = fp32_request("iris-logistic", "X", &rows);
    only.outputs = vec![InferRequestedOutputTensor {
        name: "probabilities".into(),
        ..Default::default()
    }];
    let answer = inference.model_infer(only).await.unwrap().into_inner();
    assert_eq!(answer.outputs.len(), 1);
    assert_eq!(answer.outputs[0].name, "probabilities");

    // Mistakes name the tensor.
    let mut unknown_output = fp32_request("iris-logistic", "X", &rows);
    unknown_output.outputs = vec![InferRequestedOutputTensor {
        name: "logits".into(),
        ..Default::default()
    }];
    for (request, needle) in [
        (fp32_request("iris-logistic", "input", &rows), "\"X\""),
        (
            fp32_request("iris-logistic", "X", &[vec![1.0, 2.0]]),
            "features",
        ),
        (unknown_output, "logits"),
    ] {
        let status = inference.model_infer(request).await.unwrap_err();
        assert_refused(&status, Code::InvalidArgument, needle);
    }
    cluster.stop().await;
}
