//! The raw tensor encoding of the Open Inference Protocol: elements flattened row-major,
//! little-endian, no padding. One implementation for servers, clients and tests.

/// The tensor names of a platform bundle: the registry records them in each version's
/// signature, and the inference server serves them.
pub const INPUT_NAME: &str = "input";
pub const OUTPUT_NAME: &str = "predictions";
/// A classifier's class probabilities, one column per class.
pub const PROBABILITIES_NAME: &str = "probabilities";

/// The elements of a raw BYTES tensor: each a 4-byte little-endian length, then the bytes.
pub fn bytes_elements(raw: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let (length, tail) = rest.split_first_chunk::<4>()?;
        let length = u32::from_le_bytes(*length) as usize;
        if tail.len() < length {
            return None;
        }
        out.push(&tail[..length]);
        rest = &tail[length..];
    }
    Some(out)
}

/// FP64 values as raw bytes.
pub fn fp64_to_raw(values: impl IntoIterator<Item = f64>) -> Vec<u8> {
    values.into_iter().flat_map(f64::to_le_bytes).collect()
}

/// Raw bytes as FP64 values. Callers check the length against the shape first; a trailing
/// partial element is ignored.
pub fn fp64_from_raw(raw: &[u8]) -> Vec<f64> {
    raw.chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8")))
        .collect()
}

/// Raw bytes as FP32 values, widened to f64.
pub fn fp32_from_raw(raw: &[u8]) -> Vec<f64> {
    raw.chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("chunks of 4")) as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_little_endian() {
        let raw = fp64_to_raw([1.0, -2.5]);
        assert_eq!(&raw[..8], &1.0f64.to_le_bytes());
        assert_eq!(fp64_from_raw(&raw), vec![1.0, -2.5]);
        let raw32: Vec<u8> = [1.5f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(fp32_from_raw(&raw32), vec![1.5, 2.0]);
    }
}
