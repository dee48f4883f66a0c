//! What a model file is: a platform bundle or an ONNX model, checked before a version may
//! point at it, with its signature read from the file itself.

use mlops_core::ApiError;
use mlops_core::tensor::{INPUT_NAME, OUTPUT_NAME, PROBABILITIES_NAME};
use mlops_ml::bundle::ModelBundle;
use mlops_ml::frame::ColumnKind;
use mlops_ml::model::Task;
use mlops_proto::onnx::{ModelProto, tensor_shape_proto, type_proto};
use mlops_proto::v1::{Signature, TensorSpec};
use prost::Message;

pub const FORMAT_MLOPS: &str = "mlops";
pub const FORMAT_ONNX: &str = "onnx";

#[derive(Debug, Clone, PartialEq)]
pub struct Inspected {
    pub format: &'static str,
    /// The bundle's own model type ("linear"), or "onnx".
    pub model_type: String,
    pub signature: Signature,
    pub feature_names: Vec<String>,
    pub target: String,
}

/// Checks `bytes` as the given format ("" detects it) and describes it.
pub fn inspect(bytes: &[u8], format: &str) -> Result<Inspected, ApiError> {
    match format {
        FORMAT_MLOPS => inspect_bundle(bytes),
        FORMAT_ONNX => inspect_onnx(bytes),
        // A bundle is a JSON object; anything else can only be ONNX's protobuf.
        "" if bytes.trim_ascii_start().starts_with(b"{") => inspect_bundle(bytes),
        "" => inspect_onnx(bytes),
        other => Err(ApiError::invalid_argument(format!(
            "format {other:?} is not supported: use \"{FORMAT_ONNX}\" or \"{FORMAT_MLOPS}\""
        ))),
    }
}

fn inspect_bundle(bytes: &[u8]) -> Result<Inspected, ApiError> {
    let bundle = ModelBundle::from_json(bytes)
        .map_err(|e| ApiError::invalid_argument(format!("not a valid model bundle: {e}")))?;
    let spec = |name: &str, datatype: &str, shape: Vec<i64>| TensorSpec {
        name: name.into(),
        datatype: datatype.into(),
        shape,
    };
    // Numeric inputs come as one [N, F] matrix; with a categorical input, one tensor per input.
    let inputs = if bundle.numeric_inputs() {
        vec![spec(
            INPUT_NAME,
            "FP64",
            vec![-1, bundle.feature_count() as i64],
        )]
    } else {
        bundle
            .inputs
            .iter()
            .map(|i| match i.kind {
                ColumnKind::Numeric => spec(&i.name, "FP64", vec![-1]),
                ColumnKind::Categorical => spec(&i.name, "BYTES", vec![-1]),
            })
            .collect()
    };
    let outputs = match bundle.task {
        Task::Regression => vec![spec(OUTPUT_NAME, "FP64", vec![-1])],
        Task::Classification => vec![
            spec(OUTPUT_NAME, "BYTES", vec![-1]),
            spec(
                PROBABILITIES_NAME,
                "FP64",
                vec![-1, bundle.classes.len() as i64],
            ),
        ],
    };
    Ok(Inspected {
        format: FORMAT_MLOPS,
        signature: Signature { inputs, outputs },
        feature_names: bundle.input_names(),
        model_type: bundle.model_type,
        target: bundle.target,
    })
}

fn inspect_onnx(bytes: &[u8]) -> Result<Inspected, ApiError> {
    let invalid =
        |why: String| ApiError::invalid_argument(format!("not a valid ONNX model: {why}"));
    let model = ModelProto::decode(bytes).map_err(|e| invalid(e.to_string()))?;
    if model.ir_version <= 0 {
        return Err(invalid("ir_version is missing".into()));
    }
    if model.opset_import.is_empty() {
        return Err(invalid("it imports no operator set".into()));
    }
    let graph = model
        .graph
        .ok_or_else(|| invalid("it has no graph".into()))?;
    if graph.node.is_empty() || graph.input.is_empty() || graph.output.is_empty() {
        return Err(invalid(
            "its graph needs at least one node, one input and one output".into(),
        ));
    }
    let specs = |values: &[mlops_proto::onnx::ValueInfoProto]| {
        values
            .iter()
            .map(|value| {
                let tensor = match value.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                    Some(type_proto::Value::TensorType(tensor)) => tensor,
                    // Described, not served: the signature says what it is.
                    Some(other) => {
                        return Ok(TensorSpec {
                            name: value.name.clone(),
                            datatype: match other {
                                type_proto::Value::SequenceType(_) => "SEQUENCE",
                                type_proto::Value::MapType(_) => "MAP",
                                type_proto::Value::SparseTensorType(_) => "SPARSE",
                                _ => "OPTIONAL",
                            }
                            .into(),
                            shape: Vec::new(),
                        });
                    }
                    None => return Err(invalid(format!("{:?} has no type", value.name))),
                };
                Ok(TensorSpec {
                    name: value.name.clone(),
                    datatype: oip_datatype(tensor.elem_type)
                        .ok_or_else(|| {
                            invalid(format!(
                                "{:?} has element type {}, which has no inference datatype",
                                value.name, tensor.elem_type
                            ))
                        })?
                        .into(),
                    shape: tensor
                        .shape
                        .iter()
                        .flat_map(|shape| &shape.dim)
                        .map(|dim| match dim.value {
                            Some(tensor_shape_proto::dimension::Value::DimValue(n)) if n > 0 => n,
                            // Symbolic or unknown dimensions are any size.
                            _ => -1,
                        })
                        .collect(),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()
    };
    let signature = Signature {
        inputs: specs(&graph.input)?,
        outputs: specs(&graph.output)?,
    };
    Ok(Inspected {
        format: FORMAT_ONNX,
        model_type: FORMAT_ONNX.into(),
        feature_names: Vec::new(),
        target: String::new(),
        signature,
    })
}

/// ONNX `TensorProto.DataType` to the Open Inference Protocol's datatype names.
fn oip_datatype(elem_type: i32) -> Option<&'static str> {
    Some(match elem_type {
        1 => "FP32",
        2 => "UINT8",
        3 => "INT8",
        4 => "UINT16",
        5 => "INT16",
        6 => "INT32",
        7 => "INT64",
        8 => "BYTES",
        9 => "BOOL",
        10 => "FP16",
        11 => "FP64",
        12 => "UINT32",
        13 => "UINT64",
        16 => "BF16",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUNDLE: &str = r#"{"format_version":1,"model_type":"linear","feature_names":["a","b"],"target":"y","coefficients":[1.5,-2.0],"intercept":3.0}"#;

    #[test]
    fn a_bundle_gives_its_signature() {
        let inspected = inspect(BUNDLE.as_bytes(), "").unwrap();
        assert_eq!(inspected.format, FORMAT_MLOPS);
        assert_eq!(inspected.signature.inputs[0].shape, vec![-1, 2]);
        assert_eq!(inspected.feature_names, vec!["a", "b"]);
    }

    /// The signatures skl2onnx wrote, as the `onnx` package reads them (scripts/export_onnx.py).
    #[test]
    fn onnx_signatures_match_what_onnx_reads() {
        let fixtures =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx");
        for name in ["diabetes_linear", "iris_logistic"] {
            let bytes = std::fs::read(fixtures.join(format!("{name}.onnx"))).unwrap();
            let golden: serde_json::Value = serde_json::from_slice(
                &std::fs::read(fixtures.join(format!("{name}.signature.json"))).unwrap(),
            )
            .unwrap();
            let inspected = inspect(&bytes, "").unwrap();
            assert_eq!(inspected.format, FORMAT_ONNX);
            let specs = |specs: &[TensorSpec]| -> serde_json::Value {
                specs
                    .iter()
                    .map(|s| serde_json::json!({"name": s.name, "datatype": s.datatype, "shape": s.shape}))
                    .collect()
            };
            assert_eq!(
                specs(&inspected.signature.inputs),
                golden["inputs"],
                "{name}"
            );
            assert_eq!(
                specs(&inspected.signature.outputs),
                golden["outputs"],
                "{name}"
            );
            // Truncated files are refused, not half-read.
            assert!(
                inspect(&bytes[..bytes.len() / 2], "onnx").is_err(),
                "{name}"
            );
        }
    }

    #[test]
    fn junk_is_refused_with_the_reason() {
        for (bytes, format) in [
            (&b"hello, world"[..], ""),
            (b"{\"format_version\": 1}", ""),
            (b"", "onnx"),
            (BUNDLE.as_bytes(), "onnx"),
            (b"\x08\x07", "onnx"),
        ] {
            let error = inspect(bytes, format).unwrap_err();
            assert_eq!(error.kind, mlops_core::ErrorKind::InvalidArgument);
            assert!(
                error.message.starts_with("not a valid"),
                "{}",
                error.message
            );
        }
        assert!(
            inspect(BUNDLE.as_bytes(), "pickle")
                .unwrap_err()
                .message
                .contains("format")
        );
    }
}
