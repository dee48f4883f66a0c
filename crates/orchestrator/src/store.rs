//! Runs persisted as their protobuf message, with the pipeline file they ran.

use mlops_core::db::{self, MessageTable};
use mlops_core::{ApiError, now_ms};
use mlops_proto::v1::{JobState, PipelineRun};

const MIGRATIONS: db::Migrations = db::Migrations {
    sqlite: &[(1, "runs", include_str!("migrations/0001_runs.sql"))],
    postgres: &[(1, "runs", include_str!("migrations/postgres/0001_runs.sql"))],
};

#[derive(Clone)]
pub struct Store {
    runs: MessageTable<PipelineRun>,
}

impl Store {
    pub async fn open(location: &db::Location) -> Result<Self, ApiError> {
        let pool = db::open(location, &MIGRATIONS).await?;
        let store = Self {
            runs: MessageTable::new(pool, "pipeline_runs", "pipeline run"),
        };
        store.fail_interrupted().await?;
        Ok(store)
    }

    /// The first save of a run also records its pipeline file.
    pub async fn create(&self, run: &PipelineRun, pipeline_yaml: &str) -> Result<(), ApiError> {
        self.save(run).await?;
        sqlx::query("INSERT INTO pipeline_files (run_id, pipeline_yaml) VALUES ($1, $2)")
            .bind(&run.id)
            .bind(pipeline_yaml)
            .execute(self.runs.pool())
            .await?;
        Ok(())
    }

    pub async fn save(&self, run: &PipelineRun) -> Result<(), ApiError> {
        self.runs
            .save(&run.id, run.created_at_ms, run.state, run)
            .await
    }

    pub async fn get(&self, id: &str) -> Result<PipelineRun, ApiError> {
        self.runs.get(id).await
    }

    pub async fn list(&self) -> Result<Vec<PipelineRun>, ApiError> {
        self.runs.list().await
    }

    async fn fail_interrupted(&self) -> Result<(), ApiError> {
        for mut run in self.list().await? {
            if matches!(run.state(), JobState::Pending | JobState::Running) {
                run.set_state(JobState::Failed);
                run.error = "interrupted: the orchestrator restarted".into();
                run.finished_at_ms = now_ms();
                for step in &mut run.steps {
                    if matches!(step.state(), JobState::Pending | JobState::Running) {
                        step.set_state(JobState::Skipped);
                    }
                }
                self.save(&run).await?;
            }
        }
        Ok(())
    }
}
