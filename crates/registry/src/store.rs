//! Registry metadata in SQL. Versions are immutable; aliases are the only thing that moves.

use std::collections::HashMap;
use std::path::Path;

use mlops_core::db::{self, Pool};
use mlops_core::{ApiError, now_ms};

use crate::search::{MetricFilter, Order, metric_path};
use mlops_proto::v1::{
    AliasChange, CreateModelVersionRequest, Lineage, ModelVersion, RegisteredModel,
};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "models", include_str!("migrations/0001_models.sql")),
    (
        2,
        "alias history",
        include_str!("migrations/0002_alias_history.sql"),
    ),
    (
        3,
        "tags and search",
        include_str!("migrations/0003_tags_and_search.sql"),
    ),
];

/// What `SearchModelVersions` asks for, already parsed and validated.
pub struct Search<'a> {
    pub model_name: &'a str,
    pub filters: Vec<MetricFilter>,
    pub tags: Vec<(&'a str, &'a str)>,
    pub alias: &'a str,
    pub dataset: &'a str,
    pub dataset_version: u32,
    pub order: Order,
    pub offset: u64,
    pub limit: u32,
}

enum Bind {
    Text(String),
    Int(i64),
    Real(f64),
}

/// One alias to point at `version`, optionally only if it currently points at `expected`
/// (0: only if it does not exist yet).
pub struct AliasMove<'a> {
    pub alias: &'a str,
    pub version: u32,
    pub expected: Option<u32>,
}

#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

fn model_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("model {name:?} not found"))
}

impl Store {
    pub async fn open(path: &Path) -> Result<Self, ApiError> {
        Ok(Self {
            pool: db::open(path, MIGRATIONS).await?,
        })
    }

    pub async fn create_model(
        &self,
        name: &str,
        description: &str,
    ) -> Result<RegisteredModel, ApiError> {
        let inserted = sqlx::query("INSERT INTO registered_models (name, description, created_at_ms) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(description)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        if inserted.rows_affected() == 0 {
            return Err(ApiError::already_exists(format!(
                "model {name:?} already exists"
            )));
        }
        self.model(name).await
    }

    pub async fn model(&self, name: &str) -> Result<RegisteredModel, ApiError> {
        let row = sqlx::query(
            "SELECT name, description, created_at_ms, \
             (SELECT COALESCE(MAX(version), 0) FROM model_versions v WHERE v.model_name = m.name) AS latest \
             FROM registered_models m WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| model_not_found(name))?;
        self.model_from_row(&row).await
    }

    pub async fn models(&self) -> Result<Vec<RegisteredModel>, ApiError> {
        let rows = sqlx::query(
            "SELECT name, description, created_at_ms, \
             (SELECT COALESCE(MAX(version), 0) FROM model_versions v WHERE v.model_name = m.name) AS latest \
             FROM registered_models m ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut models = Vec::with_capacity(rows.len());
        for row in &rows {
            models.push(self.model_from_row(row).await?);
        }
        Ok(models)
    }

    async fn model_from_row(&self, row: &SqliteRow) -> Result<RegisteredModel, ApiError> {
        let name: String = row.try_get("name")?;
        let aliases = sqlx::query("SELECT alias, version FROM model_aliases WHERE model_name = ?")
            .bind(&name)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("alias")?, r.try_get::<i64, _>("version")? as u32)))
            .collect::<Result<HashMap<String, u32>, sqlx::Error>>()?;
        Ok(RegisteredModel {
            description: row.try_get("description")?,
            latest_version: row.try_get::<i64, _>("latest")? as u32,
            created_at_ms: row.try_get("created_at_ms")?,
            aliases,
            name,
        })
    }

    /// Creates the next version (and the model, when new) in one transaction.
    pub async fn create_version(
        &self,
        request: &CreateModelVersionRequest,
        created_by: &str,
    ) -> Result<ModelVersion, ApiError> {
        let lineage = request.lineage.clone().unwrap_or_default();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = now_ms();
        sqlx::query("INSERT INTO registered_models (name, description, created_at_ms) VALUES (?, '', ?) ON CONFLICT (name) DO NOTHING")
            .bind(&request.model_name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE model_name = ?",
        )
        .bind(&request.model_name)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO model_versions (model_name, version, model_type, artifact_digest, metrics, params, \
             feature_names, target, dataset, dataset_version, dataset_digest, training_job_id, created_at_ms, created_by) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&request.model_name)
        .bind(version)
        .bind(&request.model_type)
        .bind(&request.artifact_digest)
        .bind(json(&request.metrics))
        .bind(json(&request.params))
        .bind(json(&request.feature_names))
        .bind(&request.target)
        .bind(&lineage.dataset)
        .bind(lineage.dataset_version as i64)
        .bind(&lineage.dataset_digest)
        .bind(&lineage.training_job_id)
        .bind(now)
        .bind(created_by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.version(&request.model_name, version as u32).await
    }

    pub async fn version(&self, model: &str, version: u32) -> Result<ModelVersion, ApiError> {
        let row = sqlx::query("SELECT * FROM model_versions WHERE model_name = ? AND version = ?")
            .bind(model)
            .bind(version as i64)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => self.version_from_row(&row).await,
            None => {
                self.model(model).await?;
                Err(ApiError::not_found(format!(
                    "model {model:?} has no version {version}"
                )))
            }
        }
    }

    pub async fn latest_version(&self, model: &str) -> Result<ModelVersion, ApiError> {
        let latest = self.model(model).await?.latest_version;
        if latest == 0 {
            return Err(ApiError::not_found(format!(
                "model {model:?} has no versions yet"
            )));
        }
        self.version(model, latest).await
    }

    pub async fn alias_target(&self, model: &str, alias: &str) -> Result<u32, ApiError> {
        let version: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM model_aliases WHERE model_name = ? AND alias = ?",
        )
        .bind(model)
        .bind(alias)
        .fetch_optional(&self.pool)
        .await?;
        match version {
            Some(v) => Ok(v as u32),
            None => {
                self.model(model).await?;
                Err(ApiError::not_found(format!(
                    "model {model:?} has no alias {alias:?}"
                )))
            }
        }
    }

    pub async fn versions(&self, model: &str) -> Result<Vec<ModelVersion>, ApiError> {
        self.model(model).await?;
        let rows =
            sqlx::query("SELECT * FROM model_versions WHERE model_name = ? ORDER BY version")
                .bind(model)
                .fetch_all(&self.pool)
                .await?;
        let mut versions = Vec::with_capacity(rows.len());
        for row in &rows {
            versions.push(self.version_from_row(row).await?);
        }
        Ok(versions)
    }

    /// Moves every alias in `moves` in one transaction, checking each compare-and-swap
    /// expectation first: all move or none. Returns the previous version of each (0: new).
    pub async fn set_aliases(
        &self,
        model: &str,
        moves: &[AliasMove<'_>],
        principal: &str,
    ) -> Result<Vec<u32>, ApiError> {
        self.model(model).await?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = now_ms();
        let mut previous_versions = Vec::with_capacity(moves.len());
        for change in moves {
            let exists: Option<i64> = sqlx::query_scalar(
                "SELECT version FROM model_versions WHERE model_name = ? AND version = ?",
            )
            .bind(model)
            .bind(change.version as i64)
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_none() {
                return Err(ApiError::not_found(format!(
                    "model {model:?} has no version {} for alias {:?}",
                    change.version, change.alias
                )));
            }
            let previous = current_alias(&mut tx, model, change.alias).await?;
            if let Some(expected) = change.expected
                && expected != previous
            {
                return Err(ApiError::aborted(format!(
                    "alias {:?} points at version {previous}, not the expected {expected}: someone moved it; re-read and retry",
                    change.alias
                )));
            }
            sqlx::query(
                "INSERT INTO model_aliases (model_name, alias, version, updated_at_ms) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (model_name, alias) DO UPDATE SET version = excluded.version, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(model)
            .bind(change.alias)
            .bind(change.version as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            record_alias_change(
                &mut tx,
                model,
                change.alias,
                previous,
                change.version,
                principal,
                now,
            )
            .await?;
            previous_versions.push(previous);
        }
        tx.commit().await?;
        Ok(previous_versions)
    }

    pub async fn delete_alias(
        &self,
        model: &str,
        alias: &str,
        principal: &str,
    ) -> Result<(), ApiError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let previous = current_alias(&mut tx, model, alias).await?;
        if previous == 0 {
            drop(tx);
            self.model(model).await?;
            return Err(ApiError::not_found(format!(
                "model {model:?} has no alias {alias:?}"
            )));
        }
        sqlx::query("DELETE FROM model_aliases WHERE model_name = ? AND alias = ?")
            .bind(model)
            .bind(alias)
            .execute(&mut *tx)
            .await?;
        record_alias_change(&mut tx, model, alias, previous, 0, principal, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_tag(
        &self,
        model: &str,
        version: u32,
        key: &str,
        value: &str,
    ) -> Result<(), ApiError> {
        self.version(model, version).await?;
        sqlx::query(
            "INSERT INTO model_version_tags (model_name, version, key, value) VALUES (?, ?, ?, ?) \
             ON CONFLICT (model_name, version, key) DO UPDATE SET value = excluded.value",
        )
        .bind(model)
        .bind(version as i64)
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_tag(&self, model: &str, version: u32, key: &str) -> Result<(), ApiError> {
        let deleted = sqlx::query(
            "DELETE FROM model_version_tags WHERE model_name = ? AND version = ? AND key = ?",
        )
        .bind(model)
        .bind(version as i64)
        .bind(key)
        .execute(&self.pool)
        .await?;
        if deleted.rows_affected() == 0 {
            self.version(model, version).await?;
            return Err(ApiError::not_found(format!(
                "model {model:?} version {version} has no tag {key:?}"
            )));
        }
        Ok(())
    }

    /// One page of matching versions, and whether more follow.
    pub async fn search(&self, search: &Search<'_>) -> Result<(Vec<ModelVersion>, bool), ApiError> {
        let mut sql = String::from("SELECT v.* FROM model_versions v WHERE 1 = 1");
        let mut binds = Vec::new();
        if !search.model_name.is_empty() {
            sql.push_str(" AND v.model_name = ?");
            binds.push(Bind::Text(search.model_name.into()));
        }
        for filter in &search.filters {
            // `op` comes from a fixed set; the metric travels as a bound JSON path.
            sql.push_str(&format!(" AND json_extract(v.metrics, ?) {} ?", filter.op));
            binds.push(Bind::Text(metric_path(&filter.metric)));
            binds.push(Bind::Real(filter.value));
        }
        for (key, value) in &search.tags {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM model_version_tags t WHERE t.model_name = v.model_name \
                 AND t.version = v.version AND t.key = ? AND t.value = ?)",
            );
            binds.push(Bind::Text(key.to_string()));
            binds.push(Bind::Text(value.to_string()));
        }
        if !search.alias.is_empty() {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM model_aliases a WHERE a.model_name = v.model_name \
                 AND a.version = v.version AND a.alias = ?)",
            );
            binds.push(Bind::Text(search.alias.into()));
        }
        if !search.dataset.is_empty() {
            sql.push_str(" AND v.dataset = ?");
            binds.push(Bind::Text(search.dataset.into()));
            if search.dataset_version != 0 {
                sql.push_str(" AND v.dataset_version = ?");
                binds.push(Bind::Int(search.dataset_version as i64));
            }
        }
        match &search.order {
            Order::Created => {
                sql.push_str(" ORDER BY v.created_at_ms DESC, v.model_name, v.version DESC")
            }
            Order::Metric { name, descending } => {
                let direction = if *descending { "DESC" } else { "ASC" };
                sql.push_str(&format!(
                    " ORDER BY json_extract(v.metrics, ?) IS NULL, json_extract(v.metrics, ?) {direction}, v.model_name, v.version"
                ));
                binds.push(Bind::Text(metric_path(name)));
                binds.push(Bind::Text(metric_path(name)));
            }
        }
        // One extra row tells whether another page exists.
        sql.push_str(" LIMIT ? OFFSET ?");
        binds.push(Bind::Int(search.limit as i64 + 1));
        binds.push(Bind::Int(search.offset.min(i64::MAX as u64) as i64));

        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for bind in binds {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Int(int) => query.bind(int),
                Bind::Real(real) => query.bind(real),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        let more = rows.len() > search.limit as usize;
        let mut versions = Vec::with_capacity(rows.len().min(search.limit as usize));
        for row in rows.iter().take(search.limit as usize) {
            versions.push(self.version_from_row(row).await?);
        }
        Ok((versions, more))
    }

    /// Newest first; only `alias` when it is not empty.
    pub async fn alias_history(
        &self,
        model: &str,
        alias: &str,
    ) -> Result<Vec<AliasChange>, ApiError> {
        self.model(model).await?;
        sqlx::query("SELECT * FROM alias_history WHERE model_name = ? AND (? = '' OR alias = ?) ORDER BY id DESC")
            .bind(model)
            .bind(alias)
            .bind(alias)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(AliasChange {
                    alias: row.try_get("alias")?,
                    from_version: row.try_get::<i64, _>("from_version")? as u32,
                    to_version: row.try_get::<i64, _>("to_version")? as u32,
                    principal: row.try_get("principal")?,
                    time_ms: row.try_get("time_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ApiError::from)
    }

    /// Deletes a version's record; refused while an alias points at it.
    pub async fn delete_version(&self, model: &str, version: u32) -> Result<(), ApiError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let aliases: Vec<String> = sqlx::query_scalar(
            "SELECT alias FROM model_aliases WHERE model_name = ? AND version = ? ORDER BY alias",
        )
        .bind(model)
        .bind(version as i64)
        .fetch_all(&mut *tx)
        .await?;
        if !aliases.is_empty() {
            return Err(ApiError::failed_precondition(format!(
                "model {model:?} version {version} is behind alias {}: move or delete the alias first",
                aliases.join(", ")
            )));
        }
        let deleted =
            sqlx::query("DELETE FROM model_versions WHERE model_name = ? AND version = ?")
                .bind(model)
                .bind(version as i64)
                .execute(&mut *tx)
                .await?;
        if deleted.rows_affected() == 0 {
            drop(tx);
            self.model(model).await?;
            return Err(ApiError::not_found(format!(
                "model {model:?} has no version {version}"
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn version_from_row(&self, row: &SqliteRow) -> Result<ModelVersion, ApiError> {
        let model_name: String = row.try_get("model_name")?;
        let version = row.try_get::<i64, _>("version")?;
        let aliases = sqlx::query_scalar(
            "SELECT alias FROM model_aliases WHERE model_name = ? AND version = ? ORDER BY alias",
        )
        .bind(&model_name)
        .bind(version)
        .fetch_all(&self.pool)
        .await?;
        Ok(ModelVersion {
            version: version as u32,
            model_type: row.try_get("model_type")?,
            artifact_digest: row.try_get("artifact_digest")?,
            metrics: parse(row, "metrics")?,
            params: parse(row, "params")?,
            feature_names: parse(row, "feature_names")?,
            target: row.try_get("target")?,
            lineage: Some(Lineage {
                dataset: row.try_get("dataset")?,
                dataset_version: row.try_get::<i64, _>("dataset_version")? as u32,
                dataset_digest: row.try_get("dataset_digest")?,
                training_job_id: row.try_get("training_job_id")?,
            }),
            aliases,
            created_at_ms: row.try_get("created_at_ms")?,
            created_by: row.try_get("created_by")?,
            tags: sqlx::query(
                "SELECT key, value FROM model_version_tags WHERE model_name = ? AND version = ?",
            )
            .bind(&model_name)
            .bind(version)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("key")?, r.try_get("value")?)))
            .collect::<Result<HashMap<String, String>, sqlx::Error>>()?,
            model_name,
        })
    }
}

async fn current_alias(
    tx: &mut sqlx::SqliteConnection,
    model: &str,
    alias: &str,
) -> Result<u32, ApiError> {
    let version: Option<i64> =
        sqlx::query_scalar("SELECT version FROM model_aliases WHERE model_name = ? AND alias = ?")
            .bind(model)
            .bind(alias)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(version.unwrap_or_default() as u32)
}

async fn record_alias_change(
    tx: &mut sqlx::SqliteConnection,
    model: &str,
    alias: &str,
    from: u32,
    to: u32,
    principal: &str,
    time_ms: i64,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO alias_history (model_name, alias, from_version, to_version, principal, time_ms) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(model)
    .bind(alias)
    .bind(from as i64)
    .bind(to as i64)
    .bind(principal)
    .bind(time_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("maps of strings and finite numbers serialize")
}

fn parse<T: serde::de::DeserializeOwned>(row: &SqliteRow, column: &str) -> Result<T, ApiError> {
    serde_json::from_str(&row.try_get::<String, _>(column)?)
        .map_err(|e| ApiError::internal(format!("stored {column}: {e}")))
}
