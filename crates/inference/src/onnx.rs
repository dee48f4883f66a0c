//! ONNX models imported into the registry (skl2onnx exports), run by tract: pure Rust, planned
//! once per version with a symbolic batch size so any number of rows runs on the same plan.

use std::sync::Arc;

use mlops_core::ApiError;
use mlops_proto::inference::model_infer_response::InferOutputTensor;
use mlops_proto::v1::{Signature, TensorSpec};
use ndarray::Array2;
use tract_onnx::prelude::*;

pub struct OnnxModel {
    plan: Arc<TypedRunnableModel>,
    pub input: TensorSpec,
    pub outputs: Vec<TensorSpec>,
}

/// One output: its metadata and raw little-endian bytes.
pub type Output = (InferOutputTensor, Vec<u8>);

impl OnnxModel {
    /// Plans the model for FP32 `[N, features]` input, `features` taken from the signature the
    /// registry read at import.
    pub fn load(bytes: &[u8], signature: &Signature) -> Result<Self, String> {
        let [input] = signature.inputs.as_slice() else {
            return Err(format!(
                "it takes {} inputs; one [N, features] tensor is supported",
                signature.inputs.len()
            ));
        };
        let features = match input.shape.as_slice() {
            [_, f] if *f > 0 && input.datatype == "FP32" => *f as usize,
            _ => {
                return Err(format!(
                    "its input {:?} is {} {:?}; FP32 [N, features] is supported",
                    input.name, input.datatype, input.shape
                ));
            }
        };
        let plan = (|| -> TractResult<_> {
            let mut model = tract_onnx::onnx().model_for_read(&mut &bytes[..])?;
            let batch = model.symbols.sym("N");
            model.set_input_fact(
                0,
                f32::fact(&[TDim::from(batch), TDim::from(features)]).into(),
            )?;
            model.into_optimized()?.into_runnable()
        })()
        .map_err(|e| format!("{e:#}"))?;
        Ok(Self {
            plan,
            input: input.clone(),
            outputs: signature.outputs.clone(),
        })
    }

    pub fn features(&self) -> usize {
        self.input.shape[1] as usize
    }

    /// Runs the rows and returns every graph output, named as the model names them.
    pub fn predict(&self, rows: &Array2<f64>) -> Result<Vec<Output>, ApiError> {
        let input: Tensor = rows.mapv(|v| v as f32).into_dyn().into();
        let values = self.plan.run(tvec![input.into()]).map_err(|e| {
            ApiError::invalid_argument(format!("input tensor {:?}: {e:#}", self.input.name))
        })?;
        values
            .iter()
            .zip(&self.outputs)
            .map(|(value, spec)| encode(value, &spec.name))
            .collect()
    }
}

fn encode(value: &TValue, name: &str) -> Result<Output, ApiError> {
    let failed = |e: TractError| ApiError::internal(format!("output {name:?}: {e:#}"));
    let (datatype, raw): (&str, Vec<u8>) = match value.datum_type() {
        DatumType::F32 => (
            "FP32",
            value
                .to_plain_array_view::<f32>()
                .map_err(failed)?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        DatumType::F64 => (
            "FP64",
            value
                .to_plain_array_view::<f64>()
                .map_err(failed)?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        DatumType::I64 => (
            "INT64",
            value
                .to_plain_array_view::<i64>()
                .map_err(failed)?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        DatumType::I32 => (
            "INT32",
            value
                .to_plain_array_view::<i32>()
                .map_err(failed)?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        other => {
            return Err(ApiError::failed_precondition(format!(
                "output {name:?} is {other:?}, which has no inference datatype here"
            )));
        }
    };
    let tensor = InferOutputTensor {
        name: name.to_string(),
        datatype: datatype.into(),
        shape: value.shape().iter().map(|d| *d as i64).collect(),
        ..Default::default()
    };
    Ok((tensor, raw))
}
