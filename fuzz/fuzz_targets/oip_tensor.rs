//! Any bytes as a ModelInferRequest on the wire: decoded or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlops_proto::inference::ModelInferRequest;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&features, wire)) = data.split_first() else { return };
    if let Ok(request) = ModelInferRequest::decode(wire) {
        if let Ok(matrix) = mlops_inference::tensor::decode_input(&request, mlops_inference::INPUT_NAME, features as usize) {
            assert_eq!(matrix.ncols(), features as usize);
            assert!(matrix.iter().all(|v| v.is_finite()));
        }
    }
});
