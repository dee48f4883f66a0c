//! The `mlops-orchestrator` binary: settings, telemetry, then the library's `serve`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: mlops_orchestrator::Settings = mlops_core::config::load_for_process()?;
    mlops_core::telemetry::init(&settings.telemetry);
    mlops_orchestrator::serve(settings, mlops_core::server::shutdown_on_signal()).await?;
    Ok(())
}
