//! Any text as a pipeline file: parsed with every name validated, or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlops_orchestrator::Pipeline;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(pipeline) = Pipeline::parse(text) {
        if let Some(source) = &pipeline.dataset.source {
            assert!(!source.contains('/') && !source.contains("..") && !source.starts_with('.'));
        }
    }
});
