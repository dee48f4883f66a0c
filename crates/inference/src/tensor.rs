//! Decoding the OIP input tensor and encoding the output, with every mismatch named.

use mlops_core::ApiError;
use mlops_core::tensor::{fp32_from_raw, fp64_from_raw, fp64_to_raw};
use mlops_ml::bundle::InputField;
use mlops_ml::frame::{Column, ColumnKind, Frame, Values};
use mlops_proto::inference::model_infer_request::InferInputTensor;
use mlops_proto::inference::model_infer_response::InferOutputTensor;
use mlops_proto::inference::{InferTensorContents, ModelInferRequest};
use ndarray::Array2;

pub use mlops_core::tensor::{INPUT_NAME, OUTPUT_NAME, bytes_elements};

fn invalid(message: String) -> ApiError {
    ApiError::invalid_argument(message)
}

/// The `[N, features]` matrix of the request's one input tensor `expected` (named as the model
/// names it), from raw or typed contents.
pub fn decode_input(
    request: &ModelInferRequest,
    expected: &str,
    features: usize,
) -> Result<Array2<f64>, ApiError> {
    let [input] = request.inputs.as_slice() else {
        return Err(invalid(format!(
            "expected exactly one input tensor named {expected:?}, got {}",
            request.inputs.len()
        )));
    };
    if input.name != expected {
        return Err(invalid(format!(
            "unknown input tensor {:?}: the model takes {expected:?}",
            input.name
        )));
    }
    let name = &input.name;
    let element_size =
        element_size(&input.datatype).ok_or_else(|| unsupported(name, &input.datatype))?;
    let &[rows, cols] = input.shape.as_slice() else {
        return Err(invalid(format!(
            "input tensor {name:?}: shape {:?} must have two dimensions [N, {features}]",
            input.shape
        )));
    };
    if rows < 0 || cols < 0 {
        return Err(invalid(format!(
            "input tensor {name:?}: shape {:?} has a negative dimension",
            input.shape
        )));
    }
    if cols as usize != features {
        return Err(invalid(format!(
            "input tensor {name:?}: shape {:?} has {cols} features, the model takes {features}",
            input.shape
        )));
    }
    let (rows, cols) = (rows as usize, cols as usize);
    let elements = rows
        .checked_mul(cols)
        .filter(|n| n.checked_mul(element_size).is_some())
        .ok_or_else(|| {
            invalid(format!(
                "input tensor {name:?}: shape {:?} is too large",
                input.shape
            ))
        })?;

    let typed = input
        .contents
        .as_ref()
        .filter(|c| *c != &InferTensorContents::default());
    let values: Vec<f64> = match (request.raw_input_contents.as_slice(), typed) {
        ([], None) if elements == 0 => Vec::new(),
        ([], None) => return Err(invalid(format!("input tensor {name:?} has no data"))),
        ([_, ..], Some(_)) => {
            return Err(invalid(format!(
                "input tensor {name:?}: give raw_input_contents or contents, not both"
            )));
        }
        ([raw], None) => {
            if raw.len() != elements * element_size {
                return Err(invalid(format!(
                    "input tensor {name:?}: raw data has {} bytes, shape {:?} of {} needs {}",
                    raw.len(),
                    input.shape,
                    input.datatype,
                    elements * element_size
                )));
            }
            raw_values(&input.datatype, raw)
        }
        (raw, None) => {
            return Err(invalid(format!(
                "{} raw_input_contents entries for 1 input tensor",
                raw.len()
            )));
        }
        ([], Some(contents)) => {
            let values = typed_values(&input.datatype, contents);
            if values.len() != elements {
                return Err(invalid(format!(
                    "input tensor {name:?}: {} {} values, shape {:?} needs {elements}",
                    values.len(),
                    input.datatype,
                    input.shape
                )));
            }
            values
        }
    };
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(invalid(format!(
            "input tensor {name:?}: element {index} is not a finite number"
        )));
    }
    Ok(Array2::from_shape_vec((rows, cols), values).expect("length checked against the shape"))
}

/// The `[N, features]` matrix from one tensor per feature, each named like its feature, shaped
/// `[N]` or `[N, 1]`, in any order (FP64, FP32, INT64, INT32 or BOOL; raw or typed).
pub fn decode_columns(
    request: &ModelInferRequest,
    inputs: &[InputField],
) -> Result<Array2<f64>, ApiError> {
    decode_frame(request, inputs)?
        .to_matrix()
        .map_err(|e| invalid(e.to_string()))
}

/// Named columns from one tensor per model input: numeric inputs as for [`decode_columns`],
/// categorical ones as BYTES (UTF-8 text; raw elements length-prefixed, or `bytes_contents`).
pub fn decode_frame(request: &ModelInferRequest, fields: &[InputField]) -> Result<Frame, ApiError> {
    let raw = request.raw_input_contents.as_slice();
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(invalid(format!(
            "{} raw_input_contents entries for {} input tensors",
            raw.len(),
            request.inputs.len()
        )));
    }
    let names = || {
        fields
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut columns: Vec<Option<Values>> = vec![None; fields.len()];
    let mut rows = None;
    for (index, input) in request.inputs.iter().enumerate() {
        let name = &input.name;
        let Some(position) = fields.iter().position(|f| &f.name == name) else {
            return Err(invalid(format!(
                "unknown input tensor {name:?}: the model takes one tensor per input ({}){}",
                names(),
                if fields.iter().all(|f| f.kind == ColumnKind::Numeric) {
                    format!(" or {INPUT_NAME:?} [N, {}]", fields.len())
                } else {
                    String::new()
                }
            )));
        };
        if columns[position].is_some() {
            return Err(invalid(format!("input tensor {name:?} appears twice")));
        }
        let n = match input.shape.as_slice() {
            [n] | [n, 1] if *n >= 0 => *n as usize,
            _ => {
                return Err(invalid(format!(
                    "input tensor {name:?}: shape {:?} must be [N] or [N, 1]",
                    input.shape
                )));
            }
        };
        if *rows.get_or_insert(n) != n {
            return Err(invalid(format!(
                "input tensor {name:?} has {n} rows, the others {}",
                rows.unwrap_or_default()
            )));
        }
        let typed = input
            .contents
            .as_ref()
            .filter(|c| *c != &InferTensorContents::default());
        let values = match (raw.get(index), typed) {
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "input tensor {name:?}: give raw_input_contents or contents, not both"
                )));
            }
            (None, None) => return Err(invalid(format!("input tensor {name:?} has no data"))),
            (bytes, typed) => match fields[position].kind {
                ColumnKind::Numeric => Values::Numeric(numeric_column(input, n, bytes, typed)?),
                ColumnKind::Categorical => {
                    Values::Categorical(text_column(input, n, bytes, typed)?)
                }
            },
        };
        columns[position] = Some(values);
    }
    if let Some(missing) = columns.iter().position(Option::is_none) {
        return Err(invalid(format!(
            "missing input tensor {:?}: give every input ({})",
            fields[missing].name,
            names()
        )));
    }
    Frame::new(
        fields
            .iter()
            .zip(columns.into_iter().flatten())
            .map(|(f, values)| Column {
                name: f.name.clone(),
                values,
            })
            .collect(),
    )
    .map_err(|e| invalid(e.to_string()))
}

fn numeric_column(
    input: &InferInputTensor,
    n: usize,
    raw: Option<&Vec<u8>>,
    typed: Option<&InferTensorContents>,
) -> Result<Vec<f64>, ApiError> {
    let name = &input.name;
    let size = element_size(&input.datatype).ok_or_else(|| unsupported(name, &input.datatype))?;
    let values = match (raw, typed) {
        (Some(bytes), _) => {
            if n.checked_mul(size) != Some(bytes.len()) {
                return Err(invalid(format!(
                    "input tensor {name:?}: raw data has {} bytes, shape {:?} of {} needs {}",
                    bytes.len(),
                    input.shape,
                    input.datatype,
                    n.saturating_mul(size)
                )));
            }
            raw_values(&input.datatype, bytes)
        }
        (None, Some(contents)) => typed_values(&input.datatype, contents),
        (None, None) => Vec::new(),
    };
    if values.len() != n {
        return Err(invalid(format!(
            "input tensor {name:?}: {} values, shape {:?} needs {n}",
            values.len(),
            input.shape
        )));
    }
    if let Some(row) = values.iter().position(|v| !v.is_finite()) {
        return Err(invalid(format!(
            "input tensor {name:?}: element {row} is not a finite number"
        )));
    }
    Ok(values)
}

fn text_column(
    input: &InferInputTensor,
    n: usize,
    raw: Option<&Vec<u8>>,
    typed: Option<&InferTensorContents>,
) -> Result<Vec<Option<String>>, ApiError> {
    let name = &input.name;
    if input.datatype != "BYTES" {
        return Err(invalid(format!(
            "input tensor {name:?}: datatype {:?} is not accepted, this input is categorical \
             (use BYTES)",
            input.datatype
        )));
    }
    let elements: Vec<&[u8]> = match (raw, typed) {
        (Some(bytes), _) => bytes_elements(bytes).ok_or_else(|| {
            invalid(format!(
                "input tensor {name:?}: a BYTES element's 4-byte length prefix runs past the end \
                 of the data"
            ))
        })?,
        (None, Some(contents)) => contents.bytes_contents.iter().map(Vec::as_slice).collect(),
        (None, None) => Vec::new(),
    };
    if elements.len() != n {
        return Err(invalid(format!(
            "input tensor {name:?}: {} elements, shape {:?} needs {n}",
            elements.len(),
            input.shape
        )));
    }
    elements
        .into_iter()
        .enumerate()
        .map(|(row, bytes)| {
            std::str::from_utf8(bytes)
                .map(|text| Some(text.to_string()))
                .map_err(|_| invalid(format!("input tensor {name:?}: element {row} is not UTF-8")))
        })
        .collect()
}

fn unsupported(name: &str, datatype: &str) -> ApiError {
    invalid(format!(
        "input tensor {name:?}: datatype {datatype:?} is not supported (use FP64, FP32, INT64, \
         INT32 or BOOL)"
    ))
}

/// Bytes per element of the numeric datatypes a model input takes.
fn element_size(datatype: &str) -> Option<usize> {
    match datatype {
        "FP64" | "INT64" => Some(8),
        "FP32" | "INT32" => Some(4),
        "BOOL" => Some(1),
        _ => None,
    }
}

/// Raw little-endian elements as numbers; the length was checked against the shape.
fn raw_values(datatype: &str, bytes: &[u8]) -> Vec<f64> {
    match datatype {
        "FP64" => fp64_from_raw(bytes),
        "FP32" => fp32_from_raw(bytes),
        "INT64" => bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64)
            .collect(),
        "INT32" => bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as f64)
            .collect(),
        _ => bytes.iter().map(|b| f64::from(*b != 0)).collect(),
    }
}

/// Typed contents as numbers, from the field the datatype uses.
fn typed_values(datatype: &str, contents: &InferTensorContents) -> Vec<f64> {
    match datatype {
        "FP64" => contents.fp64_contents.clone(),
        "FP32" => contents.fp32_contents.iter().map(|v| *v as f64).collect(),
        "INT64" => contents.int64_contents.iter().map(|v| *v as f64).collect(),
        "INT32" => contents.int_contents.iter().map(|v| *v as f64).collect(),
        _ => contents
            .bool_contents
            .iter()
            .map(|b| f64::from(*b))
            .collect(),
    }
}

/// The predictions tensor's metadata and its raw little-endian bytes.
pub fn encode_output(predictions: &[f64]) -> (InferOutputTensor, Vec<u8>) {
    let tensor = InferOutputTensor {
        name: OUTPUT_NAME.into(),
        datatype: "FP64".into(),
        shape: vec![predictions.len() as i64],
        ..Default::default()
    };
    (tensor, fp64_to_raw(predictions.iter().copied()))
}

/// A classifier's outputs: `predictions` BYTES `[N]` (the most probable class's label) and
/// `probabilities` FP64 `[N, classes]`.
pub fn encode_classes(
    proba: &ndarray::Array2<f64>,
    classes: &[String],
) -> [(InferOutputTensor, Vec<u8>); 2] {
    let labels = mlops_ml::metrics::argmax_rows(proba.view());
    let mut raw = Vec::with_capacity(labels.len() * 12);
    for k in labels {
        let label = classes[k].as_bytes();
        raw.extend_from_slice(&(label.len() as u32).to_le_bytes());
        raw.extend_from_slice(label);
    }
    let predictions = InferOutputTensor {
        name: OUTPUT_NAME.into(),
        datatype: "BYTES".into(),
        shape: vec![proba.nrows() as i64],
        ..Default::default()
    };
    let probabilities = InferOutputTensor {
        name: mlops_core::tensor::PROBABILITIES_NAME.into(),
        datatype: "FP64".into(),
        shape: vec![proba.nrows() as i64, proba.ncols() as i64],
        ..Default::default()
    };
    [
        (predictions, raw),
        (probabilities, fp64_to_raw(proba.iter().copied())),
    ]
}

/// Explanation outputs: `contributions` FP64 `[N, features]` and `base_value` FP64 `[N]`, which
/// sum row by row to `predictions`.
pub fn encode_explanation(
    shares: &ndarray::Array2<f64>,
    base_value: f64,
) -> [(InferOutputTensor, Vec<u8>); 2] {
    let contributions = InferOutputTensor {
        name: "contributions".into(),
        datatype: "FP64".into(),
        shape: vec![shares.nrows() as i64, shares.ncols() as i64],
        ..Default::default()
    };
    let base = InferOutputTensor {
        name: "base_value".into(),
        datatype: "FP64".into(),
        shape: vec![shares.nrows() as i64],
        ..Default::default()
    };
    [
        (contributions, fp64_to_raw(shares.iter().copied())),
        (
            base,
            fp64_to_raw(std::iter::repeat_n(base_value, shares.nrows())),
        ),
    ]
}

/// An output's raw little-endian bytes as JSON numbers, read as its datatype.
pub fn raw_to_json(datatype: &str, raw: &[u8]) -> serde_json::Value {
    fn read<const N: usize, T: Into<serde_json::Value>>(
        raw: &[u8],
        decode: fn([u8; N]) -> T,
    ) -> serde_json::Value {
        serde_json::Value::Array(
            raw.chunks_exact(N)
                .map(|c| decode(c.try_into().expect("chunks of N")).into())
                .collect(),
        )
    }
    match datatype {
        "BYTES" => serde_json::Value::Array(
            bytes_elements(raw)
                .unwrap_or_default()
                .into_iter()
                .map(|e| String::from_utf8_lossy(e).into_owned().into())
                .collect(),
        ),
        "FP32" => read(raw, f32::from_le_bytes),
        "INT64" => read(raw, i64::from_le_bytes),
        "INT32" => read(raw, i32::from_le_bytes),
        _ => read(raw, f64::from_le_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlops_proto::inference::model_infer_request::InferInputTensor;

    fn request(
        name: &str,
        datatype: &str,
        shape: Vec<i64>,
        raw: Option<Vec<u8>>,
        typed: Option<InferTensorContents>,
    ) -> ModelInferRequest {
        ModelInferRequest {
            inputs: vec![InferInputTensor {
                name: name.into(),
                datatype: datatype.into(),
                shape,
                contents: typed,
                ..Default::default()
            }],
            raw_input_contents: raw.into_iter().collect(),
            ..Default::default()
        }
    }

    fn raw64(values: &[f64]) -> Vec<u8> {
        fp64_to_raw(values.iter().copied())
    }

    #[test]
    fn decodes_raw_fp64_raw_fp32_and_typed() {
        let r = request(
            "input",
            "FP64",
            vec![2, 2],
            Some(raw64(&[1.0, 2.0, 3.0, 4.0])),
            None,
        );
        assert_eq!(
            decode_input(&r, INPUT_NAME, 2).unwrap(),
            ndarray::array![[1.0, 2.0], [3.0, 4.0]]
        );
        let raw32: Vec<u8> = [1.5f32, 2.5].iter().flat_map(|v| v.to_le_bytes()).collect();
        let r = request("input", "FP32", vec![1, 2], Some(raw32), None);
        assert_eq!(
            decode_input(&r, INPUT_NAME, 2).unwrap(),
            ndarray::array![[1.5, 2.5]]
        );
        let typed = InferTensorContents {
            fp64_contents: vec![1.0, 2.0],
            ..Default::default()
        };
        let r = request("input", "FP64", vec![1, 2], None, Some(typed));
        assert_eq!(
            decode_input(&r, INPUT_NAME, 2).unwrap(),
            ndarray::array![[1.0, 2.0]]
        );
        let raw_i64: Vec<u8> = [3i64, -4].iter().flat_map(|v| v.to_le_bytes()).collect();
        let r = request("input", "INT64", vec![1, 2], Some(raw_i64), None);
        assert_eq!(
            decode_input(&r, INPUT_NAME, 2).unwrap(),
            ndarray::array![[3.0, -4.0]]
        );
        let r = request("input", "BOOL", vec![1, 2], Some(vec![1, 0]), None);
        assert_eq!(
            decode_input(&r, INPUT_NAME, 2).unwrap(),
            ndarray::array![[1.0, 0.0]]
        );
        let typed = InferTensorContents {
            int_contents: vec![7, 8],
            ..Default::default()
        };
        let r = request("input", "INT32", vec![1, 2], None, Some(typed));
        assert_eq!(
            decode_input(&r, INPUT_NAME, 2).unwrap(),
            ndarray::array![[7.0, 8.0]]
        );
    }

    #[test]
    fn every_mismatch_names_the_tensor() {
        let cases = [
            request("x", "FP64", vec![1, 2], Some(raw64(&[1.0, 2.0])), None),
            request("input", "BYTES", vec![1, 2], Some(vec![0; 8]), None),
            request("input", "FP64", vec![2], Some(raw64(&[1.0, 2.0])), None),
            request(
                "input",
                "FP64",
                vec![1, 3],
                Some(raw64(&[1.0, 2.0, 3.0])),
                None,
            ),
            request("input", "FP64", vec![-1, 2], Some(raw64(&[1.0, 2.0])), None),
            request("input", "FP64", vec![1, 2], Some(raw64(&[1.0])), None),
            request(
                "input",
                "FP64",
                vec![1, 2],
                Some(raw64(&[1.0, f64::NAN])),
                None,
            ),
            request(
                "input",
                "FP64",
                vec![i64::MAX, 2],
                Some(raw64(&[1.0])),
                None,
            ),
            request(
                "input",
                "FP64",
                vec![1, 2],
                Some(raw64(&[1.0, 2.0])),
                Some(InferTensorContents {
                    fp64_contents: vec![1.0, 2.0],
                    ..Default::default()
                }),
            ),
        ];
        for case in &cases {
            let error = decode_input(case, INPUT_NAME, 2).unwrap_err();
            assert_eq!(error.kind, mlops_core::ErrorKind::InvalidArgument);
            let tensor = &case.inputs[0].name;
            assert!(
                error.message.contains(&format!("{tensor:?}")),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn output_is_raw_little_endian_fp64() {
        let (tensor, raw) = encode_output(&[1.0, -2.5]);
        assert_eq!(tensor.shape, vec![2]);
        assert_eq!(raw, raw64(&[1.0, -2.5]));
    }
}
