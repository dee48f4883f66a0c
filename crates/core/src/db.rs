//! The SQL pool: a SQLite file under the data directory, migrated on start.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;

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
        .busy_timeout(std::time::Duration::from_secs(10));
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
    migrator
        .run(&pool)
        .await
        .map_err(|e| ApiError::internal(format!("migrating {}: {e}", path.display())))?;
    Ok(pool)
}
