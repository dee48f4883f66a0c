//! Jobs persisted as their protobuf message, so a restart keeps history.

use mlops_core::db::{self, MessageTable};
use mlops_core::{ApiError, now_ms};
use mlops_proto::v1::{JobState, TrainingJob};

const MIGRATIONS: db::Migrations = db::Migrations {
    sqlite: &[(1, "jobs", include_str!("migrations/0001_jobs.sql"))],
    postgres: &[(1, "jobs", include_str!("migrations/postgres/0001_jobs.sql"))],
};

#[derive(Clone)]
pub struct Store {
    jobs: MessageTable<TrainingJob>,
}

impl Store {
    pub async fn open(location: &db::Location) -> Result<Self, ApiError> {
        let pool = db::open(location, &MIGRATIONS).await?;
        let store = Self {
            jobs: MessageTable::new(pool, "training_jobs", "training job"),
        };
        store.fail_interrupted().await?;
        Ok(store)
    }

    pub async fn save(&self, job: &TrainingJob) -> Result<(), ApiError> {
        self.jobs
            .save(&job.id, job.created_at_ms, job.state, job)
            .await
    }

    pub async fn get(&self, id: &str) -> Result<TrainingJob, ApiError> {
        self.jobs.get(id).await
    }

    pub async fn list(&self) -> Result<Vec<TrainingJob>, ApiError> {
        self.jobs.list().await
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
