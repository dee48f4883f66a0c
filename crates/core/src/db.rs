//! The SQL pool: a SQLite file under the data directory, migrated on start.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::ApiError;

pub type Pool = SqlitePool;

/// Opens (creating if needed) the database file and applies `migrations`, given as
/// `(version, description, sql)` in order. Migrations never change once landed.
pub async fn open(
    path: &Path,
    migrations: &[(i64, &'static str, &'static str)],
) -> Result<Pool, ApiError> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    let migrator = Migrator::with_migrations(
        migrations
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sqlx::AssertSqlSafe(*sql).into_sql_str(),
                    false,
                )
            })
            .collect(),
    );
    // Several processes may open a shared file (auth.db) at once and race to migrate it; the
    // loser sees the winner's migrations on its next attempt.
    (|| migrator.run(&pool))
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(50))
                .with_max_times(6),
        )
        .notify(|error, _| tracing::debug!(%error, "migration attempt failed; retrying"))
        .await
        .map_err(|e| ApiError::internal(format!("migrating {}: {e}", path.display())))?;
    Ok(pool)
}

/// A table of long-running records (jobs, runs) kept as their protobuf message: the contract is
/// the schema. The table has columns `id`, `created_at_ms`, `state` and `message`.
#[derive(Clone)]
pub struct MessageTable<M> {
    pool: Pool,
    table: &'static str,
    noun: &'static str,
    _message: std::marker::PhantomData<fn() -> M>,
}

impl<M: prost::Message + Default> MessageTable<M> {
    /// `table` is a compile-time constant, never client input.
    pub fn new(pool: Pool, table: &'static str, noun: &'static str) -> Self {
        Self {
            pool,
            table,
            noun,
            _message: std::marker::PhantomData,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub async fn save(
        &self,
        id: &str,
        created_at_ms: i64,
        state: i32,
        message: &M,
    ) -> Result<(), ApiError> {
        let sql = format!(
            "INSERT INTO {} (id, created_at_ms, state, message) VALUES (?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, message = excluded.message",
            self.table
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(created_at_ms)
            .bind(state)
            .bind(message.encode_to_vec())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<M, ApiError> {
        let sql = format!("SELECT message FROM {} WHERE id = ?", self.table);
        let bytes: Vec<u8> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("{} {id:?} not found", self.noun)))?;
        self.decode(&bytes)
    }

    /// Oldest first.
    pub async fn list(&self) -> Result<Vec<M>, ApiError> {
        let sql = format!(
            "SELECT message FROM {} ORDER BY created_at_ms, id",
            self.table
        );
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|b| self.decode(b)).collect()
    }

    fn decode(&self, bytes: &[u8]) -> Result<M, ApiError> {
        M::decode(bytes).map_err(|e| ApiError::internal(format!("stored {}: {e}", self.noun)))
    }
}
