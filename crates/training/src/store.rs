//! Jobs persisted as their protobuf message, so a restart keeps history.

use std::path::Path;

use mlops_core::db::{self, Pool};
use mlops_core::{ApiError, now_ms};
use mlops_proto::v1::{JobState, TrainingJob};
use prost::Message;

const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "jobs", include_str!("migrations/0001_jobs.sql"))];

#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    pub async fn open(path: &Path) -> Result<Self, ApiError> {
        let store = Self {
            pool: db::open(path, MIGRATIONS).await?,
        };
        store.fail_interrupted().await?;
        Ok(store)
    }

    pub async fn save(&self, job: &TrainingJob) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO training_jobs (id, created_at_ms, state, job) VALUES (?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, job = excluded.job",
        )
        .bind(&job.id)
        .bind(job.created_at_ms)
        .bind(job.state)
        .bind(job.encode_to_vec())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<TrainingJob, ApiError> {
        let bytes: Vec<u8> = sqlx::query_scalar("SELECT job FROM training_jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("training job {id:?} not found")))?;
        decode(&bytes)
    }

    pub async fn list(&self) -> Result<Vec<TrainingJob>, ApiError> {
        let rows: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT job FROM training_jobs ORDER BY created_at_ms, id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|b| decode(b)).collect()
    }

    /// Jobs that were in flight when the process stopped did not finish: say so.
    async fn fail_interrupted(&self) -> Result<(), ApiError> {
        for mut job in self.list().await? {
            if matches!(job.state(), JobState::Pending | JobState::Running) {
                job.set_state(JobState::Failed);
                job.error = "interrupted: the training service restarted".into();
                job.finished_at_ms = now_ms();
                self.save(&job).await?;
            }
        }
        Ok(())
    }
}

fn decode(bytes: &[u8]) -> Result<TrainingJob, ApiError> {
    TrainingJob::decode(bytes).map_err(|e| ApiError::internal(format!("stored job: {e}")))
}
