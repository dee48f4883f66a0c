use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Vendored protoc: a fresh machine needs no system protobuf compiler.
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "mlops/v1/common.proto",
        "mlops/v1/ingestion.proto",
        "mlops/v1/training.proto",
        "mlops/v1/registry.proto",
        "mlops/v1/orchestrator.proto",
        "mlops/v1/auth.proto",
        "inference/open_inference.proto",
        "onnx/onnx_subset.proto",
    ]
    .map(|f| root.join(f));
    let descriptor = PathBuf::from(std::env::var("OUT_DIR")?).join("descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor)
        .compile_with_config(config, &files, std::slice::from_ref(&root))?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
