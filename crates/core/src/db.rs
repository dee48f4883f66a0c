//! The SQL pool: by default a SQLite file per service under the data directory; with
//! `storage.database_url` set, a PostgreSQL database where each service keeps its tables in a
//! schema of its own. Migrated on start, either way.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection as _, Executor, SqlSafeStr};

use crate::ApiError;

pub type Pool = sqlx::AnyPool;
pub type Row = sqlx::any::AnyRow;
pub type Connection = sqlx::AnyConnection;
pub type Transaction = sqlx::Transaction<'static, sqlx::Any>;

/// `(version, description, sql)`, in order. Migrations never change once landed.
pub type Step = (i64, &'static str, &'static str);

/// One service's migrations, in each SQL dialect. Both lists take the same steps.
pub struct Migrations {
    pub sqlite: &'static [Step],
    pub postgres: &'static [Step],
}

/// Where one service's tables live.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres {
        url: String,
        /// A fixed name from the code, never client input.
        schema: &'static str,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres { schema, .. } => write!(f, "PostgreSQL schema {schema}"),
        }
    }
}

/// Opens (creating if needed) the database and applies the migrations of its dialect.
pub async fn open(location: &Location, migrations: &Migrations) -> Result<Pool, ApiError> {
    sqlx::any::install_default_drivers();
    let (options, steps) = match location {
        Location::Sqlite(path) => {
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let url = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .to_url_lossy();
            (AnyConnectOptions::from_url(&url)?, migrations.sqlite)
        }
        Location::Postgres { url, schema } => {
            create_schema(url, schema).await?;
            let mut url = url::Url::parse(url).map_err(|e| {
                ApiError::invalid_argument(format!("storage.database_url is not a URL: {e}"))
            })?;
            url.query_pairs_mut()
                .append_pair("options", &format!("-c search_path={schema}"));
            (AnyConnectOptions::from_url(&url)?, migrations.postgres)
        }
    };
    let sqlite = matches!(location, Location::Sqlite(_));
    let pool = AnyPoolOptions::new()
        .max_connections(if sqlite { 4 } else { 8 })
        .after_connect(move |connection, _| {
            Box::pin(async move {
                if sqlite {
                    // WAL: readers never wait for the writer. Writers queue instead of failing.
                    connection
                        .execute(
                            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                             PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL;",
                        )
                        .await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    let migrator = Migrator::with_migrations(
        steps
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
    // Several processes may open a shared database (auth) at once and race to migrate it; the
    // loser sees the winner's migrations on its next attempt.
    (|| migrator.run(&pool))
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(50))
                .with_max_times(6),
        )
        .notify(|error, _| tracing::debug!(%error, "migration attempt failed; retrying"))
        .await
        .map_err(|e| ApiError::internal(format!("migrating {location}: {e}")))?;
    Ok(pool)
}

async fn create_schema(url: &str, schema: &str) -> Result<(), ApiError> {
    let options = AnyConnectOptions::from_url(&url::Url::parse(url).map_err(|e| {
        ApiError::invalid_argument(format!("storage.database_url is not a URL: {e}"))
    })?)?;
    let create = || async {
        let mut connection = sqlx::AnyConnection::connect_with(&options).await?;
        // Concurrent starts may both try; the loser retries and finds it there.
        connection
            .execute(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}"
            )))
            .await?;
        connection.close().await
    };
    create
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(50))
                .with_max_times(6),
        )
        .await
        .map_err(|e| ApiError::unavailable(format!("PostgreSQL at storage.database_url: {e}")))
}

/// Starts a transaction that holds the database's write lock from its first statement, so
/// read-then-write sequences (next version number, compare-and-swap) cannot interleave:
/// `BEGIN IMMEDIATE` on SQLite, a transaction-scoped advisory lock per schema on PostgreSQL.
pub async fn begin_write(pool: &Pool) -> Result<Transaction, ApiError> {
    let options = pool.connect_options();
    if options.database_url.scheme() == "sqlite" {
        return Ok(pool.begin_with("BEGIN IMMEDIATE").await?);
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
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
            "INSERT INTO {} (id, created_at_ms, state, message) VALUES ($1, $2, $3, $4) \
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
        let sql = format!("SELECT message FROM {} WHERE id = $1", self.table);
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
