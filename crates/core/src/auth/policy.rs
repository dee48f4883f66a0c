//! The policy: one explicit rule per RPC and HTTP route. A path without a rule is denied.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Predict,
    WriteData,
    DeleteData,
    Train,
    RegisterModel,
    Deploy,
    DeleteModel,
    RunPipeline,
    ManageAuth,
    ReadAudit,
}

impl Action {
    pub const ALL: [Action; 11] = [
        Action::Read,
        Action::Predict,
        Action::WriteData,
        Action::DeleteData,
        Action::Train,
        Action::RegisterModel,
        Action::Deploy,
        Action::DeleteModel,
        Action::RunPipeline,
        Action::ManageAuth,
        Action::ReadAudit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Predict => "predict",
            Action::WriteData => "write_data",
            Action::DeleteData => "delete_data",
            Action::Train => "train",
            Action::RegisterModel => "register_model",
            Action::Deploy => "deploy",
            Action::DeleteModel => "delete_model",
            Action::RunPipeline => "run_pipeline",
            Action::ManageAuth => "manage_auth",
            Action::ReadAudit => "read_audit",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Liveness and health: open so orchestrators can probe.
    Public,
    /// Any valid token.
    Authenticated,
    Requires(Action),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub access: Access,
    /// Mutations are recorded in the audit log.
    pub mutation: bool,
}

const fn read(action: Action) -> Rule {
    Rule {
        access: Access::Requires(action),
        mutation: false,
    }
}

const fn write(action: Action) -> Rule {
    Rule {
        access: Access::Requires(action),
        mutation: true,
    }
}

const PUBLIC: Rule = Rule {
    access: Access::Public,
    mutation: false,
};

/// gRPC methods by full path. Adding an RPC without a line here makes it unreachable, and the
/// deny-by-default test fails until it has one.
pub const GRPC_RULES: &[(&str, Rule)] = {
    use Action::*;
    &[
        ("/grpc.health.v1.Health/Check", PUBLIC),
        ("/grpc.health.v1.Health/Watch", PUBLIC),
        (
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            read(Read),
        ),
        ("/mlops.v1.IngestionService/UploadDataset", write(WriteData)),
        ("/mlops.v1.IngestionService/GetDataset", read(Read)),
        ("/mlops.v1.IngestionService/ListDatasets", read(Read)),
        ("/mlops.v1.IngestionService/GetDatasetVersion", read(Read)),
        ("/mlops.v1.IngestionService/ListDatasetVersions", read(Read)),
        (
            "/mlops.v1.IngestionService/DeleteDataset",
            write(DeleteData),
        ),
        (
            "/mlops.v1.IngestionService/SetDatasetAlias",
            write(WriteData),
        ),
        (
            "/mlops.v1.IngestionService/PreviewDatasetVersion",
            read(Read),
        ),
        (
            "/mlops.v1.IngestionService/DownloadDatasetVersion",
            read(Read),
        ),
        ("/mlops.v1.TrainingService/SubmitTrainingJob", write(Train)),
        ("/mlops.v1.TrainingService/GetTrainingJob", read(Read)),
        ("/mlops.v1.TrainingService/ListTrainingJobs", read(Read)),
        ("/mlops.v1.TrainingService/WatchTrainingJob", read(Read)),
        ("/mlops.v1.TrainingService/EvaluateModel", read(Read)),
        (
            "/mlops.v1.RegistryService/CreateRegisteredModel",
            write(RegisterModel),
        ),
        ("/mlops.v1.RegistryService/GetRegisteredModel", read(Read)),
        ("/mlops.v1.RegistryService/ListRegisteredModels", read(Read)),
        (
            "/mlops.v1.RegistryService/CreateModelVersion",
            write(RegisterModel),
        ),
        ("/mlops.v1.RegistryService/GetModelVersion", read(Read)),
        ("/mlops.v1.RegistryService/ListModelVersions", read(Read)),
        ("/mlops.v1.RegistryService/SetModelAlias", write(Deploy)),
        ("/mlops.v1.RegistryService/DeleteModelAlias", write(Deploy)),
        ("/mlops.v1.RegistryService/SetModelAliases", write(Deploy)),
        ("/mlops.v1.RegistryService/ListAliasHistory", read(Read)),
        (
            "/mlops.v1.RegistryService/DeleteModelVersion",
            write(DeleteModel),
        ),
        (
            "/mlops.v1.RegistryService/SetModelVersionTag",
            write(RegisterModel),
        ),
        (
            "/mlops.v1.RegistryService/DeleteModelVersionTag",
            write(RegisterModel),
        ),
        ("/mlops.v1.RegistryService/SearchModelVersions", read(Read)),
        (
            "/mlops.v1.RegistryService/ArchiveModelVersion",
            write(DeleteModel),
        ),
        (
            "/mlops.v1.RegistryService/RestoreModelVersion",
            write(DeleteModel),
        ),
        (
            "/mlops.v1.RegistryService/CollectGarbage",
            write(DeleteModel),
        ),
        ("/mlops.v1.RegistryService/WatchRegistry", read(Read)),
        ("/mlops.v1.RegistryService/ListRegistryEvents", read(Read)),
        (
            "/mlops.v1.RegistryService/ImportModelVersion",
            write(RegisterModel),
        ),
        ("/mlops.v1.RegistryService/DownloadModelVersion", read(Read)),
        (
            "/mlops.v1.OrchestratorService/RunPipeline",
            write(RunPipeline),
        ),
        ("/mlops.v1.OrchestratorService/GetPipelineRun", read(Read)),
        ("/mlops.v1.OrchestratorService/ListPipelineRuns", read(Read)),
        ("/mlops.v1.OrchestratorService/WatchPipelineRun", read(Read)),
        (
            "/mlops.v1.OrchestratorService/ResumePipelineRun",
            write(RunPipeline),
        ),
        (
            "/mlops.v1.OrchestratorService/CancelPipelineRun",
            write(RunPipeline),
        ),
        (
            "/mlops.v1.OrchestratorService/RegisterPipeline",
            write(RunPipeline),
        ),
        (
            "/mlops.v1.OrchestratorService/ListRegisteredPipelines",
            read(Read),
        ),
        (
            "/mlops.v1.OrchestratorService/UnregisterPipeline",
            write(RunPipeline),
        ),
        ("/mlops.v1.AuthService/CreateToken", write(ManageAuth)),
        ("/mlops.v1.AuthService/ListTokens", read(ManageAuth)),
        ("/mlops.v1.AuthService/RevokeToken", write(ManageAuth)),
        (
            "/mlops.v1.AuthService/WhoAmI",
            Rule {
                access: Access::Authenticated,
                mutation: false,
            },
        ),
        ("/mlops.v1.AuthService/ListAuditEvents", read(ReadAudit)),
        ("/inference.GRPCInferenceService/ServerLive", PUBLIC),
        ("/inference.GRPCInferenceService/ServerReady", PUBLIC),
        ("/inference.GRPCInferenceService/ModelReady", read(Predict)),
        (
            "/inference.GRPCInferenceService/ServerMetadata",
            read(Predict),
        ),
        (
            "/inference.GRPCInferenceService/ModelMetadata",
            read(Predict),
        ),
        ("/inference.GRPCInferenceService/ModelInfer", read(Predict)),
        ("/inference.GRPCInferenceService/ModelConfig", read(Predict)),
        (
            "/inference.GRPCInferenceService/ModelStatistics",
            read(Predict),
        ),
        ("/inference.GRPCInferenceService/ModelDrift", read(Predict)),
        (
            "/inference.GRPCInferenceService/RepositoryIndex",
            read(Predict),
        ),
        (
            "/inference.GRPCInferenceService/RepositoryModelLoad",
            write(Deploy),
        ),
        (
            "/inference.GRPCInferenceService/RepositoryModelUnload",
            write(Deploy),
        ),
    ]
};

/// The rule for a request path: gRPC methods exactly, HTTP routes by their fixed shape.
pub fn rule(path: &str) -> Option<Rule> {
    if let Some((_, rule)) = GRPC_RULES.iter().find(|(p, _)| *p == path) {
        return Some(*rule);
    }
    match path {
        "/metrics" => Some(read(Action::Read)),
        "/v2/health/live" | "/v2/health/ready" => Some(PUBLIC),
        "/v2" => Some(read(Action::Predict)),
        _ if path.starts_with("/v2/models/") && !path.contains("..") => Some(read(Action::Predict)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_have_no_rule() {
        assert_eq!(rule("/mlops.v1.RegistryService/DropEverything"), None);
        assert_eq!(rule("/admin"), None);
        assert_eq!(rule("/v2/models/../secret"), None);
        assert_eq!(rule("/grpc.health.v1.Health/Check"), Some(PUBLIC));
        assert!(
            rule("/mlops.v1.RegistryService/SetModelAlias")
                .unwrap()
                .mutation
        );
    }
}
