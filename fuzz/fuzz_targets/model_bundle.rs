//! Any bytes as a stored model bundle: parsed and usable, or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlops_ml::ModelBundle;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = ModelBundle::from_json(data) {
        let row = ndarray::Array2::<f64>::zeros((1, bundle.feature_count()));
        let _ = bundle.predict(row.view());
    }
});
