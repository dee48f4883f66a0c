//! The OrchestratorService API.

use mlops_core::ApiError;
use mlops_core::auth::{Principal, ResourceKind, authorize, authorize_visible};
use mlops_core::ids::{validate_id, validate_name};
use mlops_core::watch::{self, WatchStream};
use mlops_proto::v1::orchestrator_service_server::OrchestratorService;
use mlops_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::pipeline::{Pipeline, substitute_parameters};
use crate::runner::Runner;
use crate::triggers::Triggers;

/// Pipeline files are small; anything bigger is a mistake.
const MAX_PIPELINE_BYTES: usize = 64 * 1024;

pub struct Orchestrator {
    pub runner: Runner,
    pub triggers: Triggers,
}

impl Orchestrator {
    /// A run, visible when the caller may see its pipeline.
    async fn run(&self, caller: Option<&Principal>, id: &str) -> Result<PipelineRun, ApiError> {
        validate_id("id", id)?;
        let run = match self.runner.subscribe(id) {
            Some(receiver) => receiver.borrow().clone(),
            None => self.runner.store().get(id).await?,
        };
        authorize(caller, ResourceKind::Pipeline, &run.pipeline)?;
        Ok(run)
    }
}

/// The pipeline file with its parameters substituted, parsed, and allowed for the caller.
fn checked_pipeline(
    caller: Option<&Principal>,
    pipeline_yaml: &str,
    parameters: &std::collections::HashMap<String, String>,
) -> Result<(Pipeline, String), ApiError> {
    if pipeline_yaml.len() > MAX_PIPELINE_BYTES {
        return Err(ApiError::invalid_argument(format!(
            "pipeline_yaml is over {MAX_PIPELINE_BYTES} bytes"
        )));
    }
    let yaml = substitute_parameters(pipeline_yaml, parameters)?;
    let pipeline = Pipeline::parse(&yaml)?;
    pipeline.authorize(caller)?;
    Ok((pipeline, yaml))
}

fn is_terminal(run: &PipelineRun) -> bool {
    matches!(run.state(), JobState::Succeeded | JobState::Failed)
}

#[tonic::async_trait]
impl OrchestratorService for Orchestrator {
    async fn run_pipeline(
        &self,
        request: Request<RunPipelineRequest>,
    ) -> Result<Response<PipelineRun>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        let (pipeline, yaml) =
            checked_pipeline(caller.as_ref(), &request.pipeline_yaml, &request.parameters)?;
        Ok(Response::new(
            self.runner.start(pipeline, &yaml, "", 0).await?,
        ))
    }

    async fn register_pipeline(
        &self,
        request: Request<RegisterPipelineRequest>,
    ) -> Result<Response<RegisteredPipeline>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        let (pipeline, yaml) =
            checked_pipeline(caller.as_ref(), &request.pipeline_yaml, &request.parameters)?;
        let by = caller.as_ref().map_or("", |c| c.subject.as_str());
        Ok(Response::new(
            self.triggers.register(&pipeline, &yaml, by).await?,
        ))
    }

    async fn list_registered_pipelines(
        &self,
        request: Request<ListRegisteredPipelinesRequest>,
    ) -> Result<Response<ListRegisteredPipelinesResponse>, Status> {
        let pipelines = authorize_visible(
            request.extensions().get::<Principal>(),
            ResourceKind::Pipeline,
            self.runner.store().registered().await?,
            |p| &p.name,
        )?;
        Ok(Response::new(ListRegisteredPipelinesResponse { pipelines }))
    }

    async fn unregister_pipeline(
        &self,
        request: Request<UnregisterPipelineRequest>,
    ) -> Result<Response<UnregisterPipelineResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let name = request.into_inner().name;
        validate_name("name", &name)?;
        authorize(caller.as_ref(), ResourceKind::Pipeline, &name)?;
        self.runner.store().delete_registered(&name).await?;
        tracing::info!(pipeline = %name, "pipeline unregistered");
        Ok(Response::new(UnregisterPipelineResponse {}))
    }

    async fn get_pipeline_run(
        &self,
        request: Request<GetPipelineRunRequest>,
    ) -> Result<Response<PipelineRun>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        Ok(Response::new(
            self.run(caller.as_ref(), &request.into_inner().id).await?,
        ))
    }

    async fn list_pipeline_runs(
        &self,
        request: Request<ListPipelineRunsRequest>,
    ) -> Result<Response<ListPipelineRunsResponse>, Status> {
        let runs = authorize_visible(
            request.extensions().get::<Principal>(),
            ResourceKind::Pipeline,
            self.runner.store().list().await?,
            |r| &r.pipeline,
        )?;
        Ok(Response::new(ListPipelineRunsResponse { runs }))
    }

    async fn resume_pipeline_run(
        &self,
        request: Request<ResumePipelineRunRequest>,
    ) -> Result<Response<PipelineRun>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let id = request.into_inner().id;
        self.run(caller.as_ref(), &id).await?;
        Ok(Response::new(self.runner.resume(&id).await?))
    }

    async fn cancel_pipeline_run(
        &self,
        request: Request<CancelPipelineRunRequest>,
    ) -> Result<Response<PipelineRun>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let id = request.into_inner().id;
        let run = self.run(caller.as_ref(), &id).await?;
        self.runner.cancel(&id)?;
        Ok(Response::new(run))
    }

    type WatchPipelineRunStream = WatchStream<PipelineRun>;

    async fn watch_pipeline_run(
        &self,
        request: Request<WatchPipelineRunRequest>,
    ) -> Result<Response<Self::WatchPipelineRunStream>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let id = request.into_inner().id;
        let current = self.run(caller.as_ref(), &id).await?;
        Ok(Response::new(match self.runner.subscribe(&id) {
            Some(receiver) => watch::until_terminal(receiver, is_terminal),
            None => watch::once(current),
        }))
    }
}
