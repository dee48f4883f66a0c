//! Runs persisted as their protobuf message, with the pipeline file they ran.

use std::collections::BTreeMap;

use mlops_core::db::{self, MessageTable};
use mlops_core::{ApiError, now_ms};
use mlops_proto::v1::{JobState, PipelineRun, RegisteredPipeline};

const MIGRATIONS: db::Migrations = db::Migrations {
    sqlite: &[
        (1, "runs", include_str!("migrations/0001_runs.sql")),
        (
            2,
            "step cache",
            include_str!("migrations/0002_step_cache.sql"),
        ),
        (
            3,
            "registered pipelines",
            include_str!("migrations/0003_registered_pipelines.sql"),
        ),
    ],
    postgres: &[
        (1, "runs", include_str!("migrations/postgres/0001_runs.sql")),
        (
            2,
            "step cache",
            include_str!("migrations/postgres/0002_step_cache.sql"),
        ),
        (
            3,
            "registered pipelines",
            include_str!("migrations/postgres/0003_registered_pipelines.sql"),
        ),
    ],
};

#[derive(Clone)]
pub struct Store {
    runs: MessageTable<PipelineRun>,
    registered: MessageTable<RegisteredPipeline>,
}

impl Store {
    pub async fn open(location: &db::Location) -> Result<Self, ApiError> {
        let pool = db::open(location, &MIGRATIONS).await?;
        Ok(Self {
            runs: MessageTable::new(pool.clone(), "pipeline_runs", "pipeline run"),
            registered: MessageTable::new(pool, "registered_pipelines", "registered pipeline"),
        })
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

    /// The pipeline file a run was started with.
    pub async fn pipeline_yaml(&self, run_id: &str) -> Result<String, ApiError> {
        sqlx::query_scalar("SELECT pipeline_yaml FROM pipeline_files WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(self.runs.pool())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no pipeline file for run {run_id}")))
    }

    /// Runs an earlier orchestrator process left pending or running (it stopped or was
    /// killed): they are continued, not failed.
    pub async fn interrupted(&self) -> Result<Vec<PipelineRun>, ApiError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter(|run| matches!(run.state(), JobState::Pending | JobState::Running))
            .collect())
    }

    /// The run whose step produced the outputs for this key, if any.
    pub async fn cached(
        &self,
        pipeline: &str,
        step: &str,
        key: &str,
    ) -> Result<Option<String>, ApiError> {
        Ok(sqlx::query_scalar(
            "SELECT run_id FROM step_cache WHERE pipeline = $1 AND step = $2 AND cache_key = $3",
        )
        .bind(pipeline)
        .bind(step)
        .bind(key)
        .fetch_optional(self.runs.pool())
        .await?)
    }

    /// The parts of the newest entry for the step, to say what changed on a miss.
    pub async fn latest_cache_parts(
        &self,
        pipeline: &str,
        step: &str,
    ) -> Result<Option<BTreeMap<String, String>>, ApiError> {
        let parts: Option<String> = sqlx::query_scalar(
            "SELECT parts FROM step_cache WHERE pipeline = $1 AND step = $2 \
             ORDER BY created_at_ms DESC LIMIT 1",
        )
        .bind(pipeline)
        .bind(step)
        .fetch_optional(self.runs.pool())
        .await?;
        Ok(parts.and_then(|p| serde_json::from_str(&p).ok()))
    }

    /// Records that `run_id`'s step produced the outputs for this key (the newest run wins).
    pub async fn put_cache(
        &self,
        pipeline: &str,
        step: &str,
        key: &str,
        parts: &BTreeMap<String, String>,
        run_id: &str,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO step_cache (pipeline, step, cache_key, parts, run_id, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pipeline, step, cache_key) \
             DO UPDATE SET run_id = excluded.run_id, created_at_ms = excluded.created_at_ms",
        )
        .bind(pipeline)
        .bind(step)
        .bind(key)
        .bind(serde_json::to_string(parts).expect("strings serialize"))
        .bind(run_id)
        .bind(now_ms())
        .execute(self.runs.pool())
        .await?;
        Ok(())
    }

    /// Registers a pipeline under its name, replacing an earlier registration (and its
    /// registration time, which tells the two apart) in one statement.
    pub async fn register(&self, pipeline: &RegisteredPipeline) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO registered_pipelines (id, created_at_ms, state, message) \
             VALUES ($1, $2, 0, $3) ON CONFLICT (id) DO UPDATE SET \
             created_at_ms = excluded.created_at_ms, message = excluded.message",
        )
        .bind(&pipeline.name)
        .bind(pipeline.registered_at_ms)
        .bind(prost::Message::encode_to_vec(pipeline))
        .execute(self.registered.pool())
        .await?;
        Ok(())
    }

    /// Saves a registered pipeline's trigger state, unless it was unregistered or registered
    /// again since it was read: then this state is stale, is dropped, and false is returned.
    pub async fn update_registered(&self, pipeline: &RegisteredPipeline) -> Result<bool, ApiError> {
        let updated = sqlx::query(
            "UPDATE registered_pipelines SET message = $1 WHERE id = $2 AND created_at_ms = $3",
        )
        .bind(prost::Message::encode_to_vec(pipeline))
        .bind(&pipeline.name)
        .bind(pipeline.registered_at_ms)
        .execute(self.registered.pool())
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// Registered pipelines, oldest first.
    pub async fn registered(&self) -> Result<Vec<RegisteredPipeline>, ApiError> {
        self.registered.list().await
    }

    pub async fn delete_registered(&self, name: &str) -> Result<(), ApiError> {
        let deleted = sqlx::query("DELETE FROM registered_pipelines WHERE id = $1")
            .bind(name)
            .execute(self.registered.pool())
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(ApiError::not_found(format!(
                "pipeline {name:?} is not registered"
            )));
        }
        Ok(())
    }
}
