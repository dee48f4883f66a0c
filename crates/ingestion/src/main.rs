//! The `mlops-ingestion` binary: settings, telemetry, then the library's `serve`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: mlops_ingestion::Settings = mlops_core::config::load_for_process()?;
    mlops_core::telemetry::init(&settings.telemetry);
    mlops_ingestion::serve(settings, mlops_core::server::shutdown_on_signal()).await?;
    Ok(())
}
