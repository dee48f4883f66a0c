//! Dataset metadata in SQL. Versions are immutable rows; the next number is taken inside an
//! immediate transaction so concurrent uploads never collide.

use mlops_core::db::{self, Pool};
use mlops_core::{ApiError, now_ms};
use mlops_proto::v1::{
    Column, DataType, Dataset, DatasetAlias, DatasetVersion, RetypedColumn, SchemaChange,
    VersionDetails,
};
use prost::Message;
use serde::{Deserialize, Serialize};
use sqlx::Row;

const MIGRATIONS: db::Migrations = db::Migrations {
    sqlite: &[
        (1, "datasets", include_str!("migrations/0001_datasets.sql")),
        (2, "details", include_str!("migrations/0002_details.sql")),
        (3, "aliases", include_str!("migrations/0003_aliases.sql")),
    ],
    postgres: &[
        (
            1,
            "datasets",
            include_str!("migrations/postgres/0001_datasets.sql"),
        ),
        (
            2,
            "details",
            include_str!("migrations/postgres/0002_details.sql"),
        ),
        (
            3,
            "aliases",
            include_str!("migrations/postgres/0003_aliases.sql"),
        ),
    ],
};

#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

#[derive(Serialize, Deserialize)]
struct StoredColumn {
    name: String,
    data_type: i32,
}

/// A version to record, already stored as a blob.
pub struct NewVersion<'a> {
    pub dataset: &'a str,
    pub description: &'a str,
    pub digest: &'a str,
    pub row_count: u64,
    pub columns: Vec<Column>,
    pub size_bytes: u64,
    pub details: VersionDetails,
}

impl Store {
    pub async fn open(location: &db::Location) -> Result<Self, ApiError> {
        Ok(Self {
            pool: db::open(location, &MIGRATIONS).await?,
        })
    }

    /// Records a new version, or returns the existing one with the same digest (the same
    /// stored content and schema) unchanged.
    pub async fn add_version(
        &self,
        new: NewVersion<'_>,
    ) -> Result<(DatasetVersion, bool), ApiError> {
        let mut tx = db::begin_write(&self.pool).await?;
        let now = now_ms();
        sqlx::query("INSERT INTO datasets (name, description, created_at_ms) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(new.dataset)
            .bind(new.description)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let existing = sqlx::query(
            "SELECT * FROM dataset_versions WHERE dataset = $1 AND digest = $2 ORDER BY version LIMIT 1",
        )
        .bind(new.dataset)
        .bind(new.digest)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            return Ok((version_from_row(&row)?, false));
        }
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM dataset_versions WHERE dataset = $1",
        )
        .bind(new.dataset)
        .fetch_one(&mut *tx)
        .await?;
        let previous = sqlx::query(
            "SELECT * FROM dataset_versions WHERE dataset = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(new.dataset)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| version_from_row(&row))
        .transpose()?;
        let mut details = new.details;
        details.schema_change = Some(schema_change(previous.as_ref(), &new.columns));
        let columns: Vec<StoredColumn> = new
            .columns
            .iter()
            .map(|c| StoredColumn {
                name: c.name.clone(),
                data_type: c.data_type,
            })
            .collect();
        sqlx::query(
            "INSERT INTO dataset_versions (dataset, version, digest, row_count, columns, size_bytes, created_at_ms, details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new.dataset)
        .bind(version)
        .bind(new.digest)
        .bind(new.row_count as i64)
        .bind(serde_json::to_string(&columns).expect("columns serialize"))
        .bind(new.size_bytes as i64)
        .bind(now)
        .bind(details.encode_to_vec())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((
            DatasetVersion {
                id: format!("{}@{version}", new.dataset),
                dataset: new.dataset.to_string(),
                version: version as u32,
                digest: new.digest.to_string(),
                row_count: new.row_count,
                column_count: new.columns.len() as u32,
                columns: new.columns,
                size_bytes: new.size_bytes,
                created_at_ms: now,
                report: details.report,
                profile: details.profile,
                masking: details.masking,
                schema_change: details.schema_change,
                source: details.source,
            },
            true,
        ))
    }

    pub async fn dataset(&self, name: &str) -> Result<Dataset, ApiError> {
        let row = sqlx::query(
            "SELECT d.name, d.description, d.created_at_ms, \
             (SELECT COALESCE(MAX(version), 0) FROM dataset_versions v WHERE v.dataset = d.name) AS latest \
             FROM datasets d WHERE d.name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found(name))?;
        let mut dataset = dataset_from_row(&row)?;
        dataset.aliases = self.aliases(name).await?;
        Ok(dataset)
    }

    pub async fn datasets(&self) -> Result<Vec<Dataset>, ApiError> {
        sqlx::query(
            "SELECT d.name, d.description, d.created_at_ms, \
             (SELECT COALESCE(MAX(version), 0) FROM dataset_versions v WHERE v.dataset = d.name) AS latest \
             FROM datasets d ORDER BY d.name",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(dataset_from_row)
        .collect()
    }

    /// `version` 0 is the latest.
    pub async fn version(&self, dataset: &str, version: u32) -> Result<DatasetVersion, ApiError> {
        let row = if version == 0 {
            sqlx::query(
                "SELECT * FROM dataset_versions WHERE dataset = $1 ORDER BY version DESC LIMIT 1",
            )
            .bind(dataset)
            .fetch_optional(&self.pool)
            .await?
        } else {
            sqlx::query("SELECT * FROM dataset_versions WHERE dataset = $1 AND version = $2")
                .bind(dataset)
                .bind(version as i64)
                .fetch_optional(&self.pool)
                .await?
        };
        match row {
            Some(row) => version_from_row(&row),
            None if version == 0 => Err(not_found(dataset)),
            None => {
                self.dataset(dataset).await?;
                Err(ApiError::not_found(format!(
                    "dataset {dataset:?} has no version {version}"
                )))
            }
        }
    }

    /// Points `alias` at an existing version.
    pub async fn set_alias(
        &self,
        dataset: &str,
        alias: &str,
        version: u32,
    ) -> Result<DatasetAlias, ApiError> {
        let mut tx = db::begin_write(&self.pool).await?;
        let exists =
            sqlx::query("SELECT version FROM dataset_versions WHERE dataset = $1 AND version = $2")
                .bind(dataset)
                .bind(version as i64)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            self.dataset(dataset).await?;
            return Err(ApiError::not_found(format!(
                "dataset {dataset:?} has no version {version}"
            )));
        }
        let now = now_ms();
        sqlx::query(
            "INSERT INTO dataset_aliases (dataset, alias, version, updated_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (dataset, alias) DO UPDATE SET version = excluded.version, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(dataset)
        .bind(alias)
        .bind(version as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(DatasetAlias {
            dataset: dataset.into(),
            alias: alias.into(),
            version,
            updated_at_ms: now,
        })
    }

    /// The version an alias points at (`latest`: the newest).
    pub async fn resolve_alias(&self, dataset: &str, alias: &str) -> Result<u32, ApiError> {
        if alias == "latest" {
            return Ok(self.version(dataset, 0).await?.version);
        }
        let version: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM dataset_aliases WHERE dataset = $1 AND alias = $2",
        )
        .bind(dataset)
        .bind(alias)
        .fetch_optional(&self.pool)
        .await?;
        match version {
            Some(v) => Ok(v as u32),
            None => {
                self.dataset(dataset).await?;
                Err(ApiError::not_found(format!(
                    "dataset {dataset:?} has no alias {alias:?}"
                )))
            }
        }
    }

    async fn aliases(
        &self,
        dataset: &str,
    ) -> Result<std::collections::HashMap<String, u32>, ApiError> {
        let rows = sqlx::query("SELECT alias, version FROM dataset_aliases WHERE dataset = $1")
            .bind(dataset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("alias")?,
                    r.try_get::<i64, _>("version")? as u32,
                ))
            })
            .collect()
    }

    /// Removes the dataset and its versions; the blobs stay (content-addressed, possibly shared).
    pub async fn delete(&self, dataset: &str) -> Result<u32, ApiError> {
        let mut tx = db::begin_write(&self.pool).await?;
        sqlx::query("DELETE FROM dataset_aliases WHERE dataset = $1")
            .bind(dataset)
            .execute(&mut *tx)
            .await?;
        let versions = sqlx::query("DELETE FROM dataset_versions WHERE dataset = $1")
            .bind(dataset)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let removed = sqlx::query("DELETE FROM datasets WHERE name = $1")
            .bind(dataset)
            .execute(&mut *tx)
            .await?;
        if removed.rows_affected() == 0 {
            return Err(not_found(dataset));
        }
        tx.commit().await?;
        Ok(versions as u32)
    }

    pub async fn versions(&self, dataset: &str) -> Result<Vec<DatasetVersion>, ApiError> {
        self.dataset(dataset).await?;
        sqlx::query("SELECT * FROM dataset_versions WHERE dataset = $1 ORDER BY version")
            .bind(dataset)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(version_from_row)
            .collect()
    }
}

/// Columns added, removed or retyped relative to the previous version (by name).
fn schema_change(previous: Option<&DatasetVersion>, columns: &[Column]) -> SchemaChange {
    let Some(previous) = previous else {
        return SchemaChange::default();
    };
    let find = |list: &[Column], name: &str| list.iter().find(|c| c.name == name).cloned();
    let added: Vec<Column> = columns
        .iter()
        .filter(|c| find(&previous.columns, &c.name).is_none())
        .cloned()
        .collect();
    let removed: Vec<Column> = previous
        .columns
        .iter()
        .filter(|c| find(columns, &c.name).is_none())
        .cloned()
        .collect();
    let retyped: Vec<RetypedColumn> = columns
        .iter()
        .filter_map(|c| {
            let before = find(&previous.columns, &c.name)?;
            (before.data_type != c.data_type).then(|| RetypedColumn {
                name: c.name.clone(),
                from: before.data_type,
                to: c.data_type,
            })
        })
        .collect();
    SchemaChange {
        previous_version: previous.version,
        changed: !(added.is_empty() && removed.is_empty() && retyped.is_empty()),
        added,
        removed,
        retyped,
    }
}

fn not_found(dataset: &str) -> ApiError {
    ApiError::not_found(format!("dataset {dataset:?} not found"))
}

fn dataset_from_row(row: &db::Row) -> Result<Dataset, ApiError> {
    Ok(Dataset {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        latest_version: row.try_get::<i64, _>("latest")? as u32,
        created_at_ms: row.try_get("created_at_ms")?,
        aliases: Default::default(),
    })
}

fn version_from_row(row: &db::Row) -> Result<DatasetVersion, ApiError> {
    let dataset: String = row.try_get("dataset")?;
    let version = row.try_get::<i64, _>("version")? as u32;
    let columns: Vec<StoredColumn> = serde_json::from_str(&row.try_get::<String, _>("columns")?)
        .map_err(|e| ApiError::internal(format!("stored columns of {dataset}@{version}: {e}")))?;
    let columns: Vec<Column> = columns
        .into_iter()
        .map(|c| Column {
            name: c.name,
            data_type: DataType::try_from(c.data_type).unwrap_or_default() as i32,
        })
        .collect();
    // Versions from before reports have none.
    let details = match row.try_get::<Option<Vec<u8>>, _>("details")? {
        Some(bytes) => VersionDetails::decode(bytes.as_slice()).map_err(|e| {
            ApiError::internal(format!("stored details of {dataset}@{version}: {e}"))
        })?,
        None => VersionDetails::default(),
    };
    Ok(DatasetVersion {
        schema_change: details.schema_change,
        source: details.source,
        report: details.report,
        profile: details.profile,
        masking: details.masking,
        id: format!("{dataset}@{version}"),
        version,
        digest: row.try_get("digest")?,
        row_count: row.try_get::<i64, _>("row_count")? as u64,
        column_count: columns.len() as u32,
        columns,
        size_bytes: row.try_get::<i64, _>("size_bytes")? as u64,
        created_at_ms: row.try_get("created_at_ms")?,
        dataset,
    })
}
