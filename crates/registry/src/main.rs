//! The `mlops-registry` binary: settings, telemetry, then the library's `serve`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: mlops_registry::Settings = mlops_core::config::load_for_process()?;
    mlops_core::telemetry::init(&settings.telemetry);
    mlops_registry::serve(settings, mlops_core::server::shutdown_on_signal()).await?;
    Ok(())
}
