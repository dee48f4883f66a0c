//! Registry metadata in SQL. Versions are immutable; aliases, tags and status are what move,
//! and every move appends its event (the outbox WatchRegistry replays, and the audit log) in
//! the same transaction.

use std::collections::HashMap;
use std::sync::Arc;

use mlops_core::db::{self, Pool};
use mlops_core::db::{Connection, Location, Row as DbRow};
use mlops_core::storage::ArtifactStore;
use mlops_core::{ApiError, ErrorKind, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;
use tokio::sync::watch;

use crate::model_file;
use crate::search::{Cursor, MetricFilter, Order};
use mlops_proto::v1::{
    AliasChange, Lineage, ModelVersion, ModelVersionStatus, RegisteredModel, RegistryEvent,
    RegistryEventKind, Signature, TensorSpec,
};

const MIGRATIONS: db::Migrations = db::Migrations {
    sqlite: &[
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
        (
            4,
            "events, archive and garbage collection",
            include_str!("migrations/0004_events_archive_gc.sql"),
        ),
        (
            5,
            "idempotency keys",
            include_str!("migrations/0005_idempotency.sql"),
        ),
    ],
    postgres: &[
        (
            1,
            "models",
            include_str!("migrations/postgres/0001_models.sql"),
        ),
        (
            2,
            "alias history",
            include_str!("migrations/postgres/0002_alias_history.sql"),
        ),
        (
            3,
            "tags and search",
            include_str!("migrations/postgres/0003_tags_and_search.sql"),
        ),
        (
            4,
            "events, archive and garbage collection",
            include_str!("migrations/postgres/0004_events_archive_gc.sql"),
        ),
        (
            5,
            "idempotency keys",
            include_str!("migrations/postgres/0005_idempotency.sql"),
        ),
    ],
};

/// What `SearchModelVersions` asks for, already parsed and validated.
pub struct Search<'a> {
    pub model_name: &'a str,
    pub filters: Vec<MetricFilter>,
    pub tags: Vec<(&'a str, &'a str)>,
    pub alias: &'a str,
    pub dataset: &'a str,
    pub dataset_version: u32,
    pub order: Order,
    pub after: Option<Cursor>,
    pub limit: u32,
    pub include_archived: bool,
    /// The caller's model grants (`name` or `prefix*`); None: every model.
    pub visible: Option<Vec<String>>,
}

enum Bind {
    Text(String),
    Int(i64),
    Real(f64),
}

/// `column` matching one of the grant patterns (exact, or `prefix*`); no pattern: nothing.
fn grant_filter(column: &str, patterns: &[String], binds: &mut Binds) -> String {
    if patterns.is_empty() {
        return "1 = 0".into();
    }
    let conditions: Vec<String> = patterns
        .iter()
        .map(|pattern| match pattern.strip_suffix('*') {
            // substr, not LIKE: LIKE ignores case on SQLite, and `_` and `%` are wildcards.
            Some(prefix) => format!(
                "substr({column}, 1, CAST({} AS INTEGER)) = {}",
                binds.int(prefix.chars().count() as i64),
                binds.text(prefix)
            ),
            None => format!("{column} = {}", binds.text(pattern)),
        })
        .collect();
    format!("({})", conditions.join(" OR "))
}

/// Values for a query built at run time; each method returns its placeholder.
#[derive(Default)]
struct Binds(Vec<Bind>);

impl Binds {
    /// The statement with every value bound, in order.
    fn query(self, sql: String) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        self.0.into_iter().fold(
            sqlx::query(sqlx::AssertSqlSafe(sql)),
            |query, bind| match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Int(int) => query.bind(int),
                Bind::Real(real) => query.bind(real),
            },
        )
    }

    fn push(&mut self, bind: Bind) -> String {
        self.0.push(bind);
        format!("${}", self.0.len())
    }
    fn text(&mut self, text: &str) -> String {
        self.push(Bind::Text(text.to_string()))
    }
    fn int(&mut self, int: i64) -> String {
        self.push(Bind::Int(int))
    }
    fn real(&mut self, real: f64) -> String {
        self.push(Bind::Real(real))
    }
}

/// One alias to point at `version`, optionally only if it currently points at `expected`
/// (0: only if it does not exist yet).
pub struct AliasMove<'a> {
    pub alias: &'a str,
    pub version: u32,
    pub expected: Option<u32>,
}

/// A version to create, from CreateModelVersion or an import. Empty fields are taken from the
/// bundle itself.
pub struct NewVersion<'a> {
    pub model_name: &'a str,
    pub model_type: &'a str,
    pub digest: &'a str,
    pub format: &'a str,
    pub metrics: &'a HashMap<String, f64>,
    pub params: &'a HashMap<String, String>,
    pub tags: &'a HashMap<String, String>,
    pub lineage: Lineage,
    pub feature_names: &'a [String],
    pub target: &'a str,
    /// A retried request with the same key gets the version the first one created.
    pub idempotency_key: &'a str,
}

/// Which audit events to list.
pub struct EventQuery<'a> {
    pub model_name: &'a str,
    pub principal: &'a str,
    pub kinds: Vec<i32>,
    pub before_seq: u64,
    pub limit: u32,
    pub visible: Option<Vec<String>>,
}

pub struct Garbage {
    pub digests: Vec<String>,
    pub bytes: u64,
}

#[derive(Clone)]
pub struct Store {
    pool: Pool,
    artifacts: ArtifactStore,
    /// The newest committed event's seq: wakes watchers.
    committed: Arc<watch::Sender<u64>>,
}

/// An event about to be appended.
struct Event<'a> {
    kind: RegistryEventKind,
    model: &'a str,
    version: u32,
    key: &'a str,
    before: String,
    after: String,
}

fn model_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("model {name:?} not found"))
}

fn no_version(model: &str, version: u32) -> ApiError {
    ApiError::not_found(format!("model {model:?} has no version {version}"))
}

const READY: i64 = ModelVersionStatus::Ready as i64;
const ARCHIVED: i64 = ModelVersionStatus::Archived as i64;

impl Store {
    pub async fn open(location: &Location, artifacts: ArtifactStore) -> Result<Self, ApiError> {
        let store = Self {
            pool: db::open(location, &MIGRATIONS).await?,
            artifacts,
            committed: Arc::new(watch::Sender::new(0)),
        };
        store.committed.send_replace(store.newest_seq().await?);
        Ok(store)
    }

    /// The seq of the newest committed event (0: none yet).
    pub async fn newest_seq(&self) -> Result<u64, ApiError> {
        let newest: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM registry_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(newest as u64)
    }

    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    /// A receiver that changes whenever events are committed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// Appends the mutation's event, commits, and wakes the watchers.
    async fn commit(
        &self,
        mut tx: db::Transaction,
        event: Event<'_>,
        principal: &str,
    ) -> Result<(), ApiError> {
        let seq = record(&mut tx, event, principal).await?;
        tx.commit().await?;
        self.notify(seq);
        Ok(())
    }

    fn notify(&self, seq: i64) {
        self.committed
            .send_modify(|newest| *newest = (*newest).max(seq as u64));
    }

    pub async fn create_model(
        &self,
        name: &str,
        description: &str,
        principal: &str,
    ) -> Result<RegisteredModel, ApiError> {
        let mut tx = db::begin_write(&self.pool).await?;
        let inserted = sqlx::query("INSERT INTO registered_models (name, description, created_at_ms) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(description)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        if inserted.rows_affected() == 0 {
            return Err(ApiError::already_exists(format!(
                "model {name:?} already exists"
            )));
        }
        self.commit(
            tx,
            Event {
                kind: RegistryEventKind::ModelCreated,
                model: name,
                version: 0,
                key: "",
                before: String::new(),
                after: json!({ "description": description }).to_string(),
            },
            principal,
        )
        .await?;
        self.model(name).await
    }

    pub async fn model(&self, name: &str) -> Result<RegisteredModel, ApiError> {
        let row = sqlx::query(
            "SELECT name, description, created_at_ms, \
             (SELECT COALESCE(MAX(version), 0) FROM model_versions v WHERE v.model_name = m.name) AS latest \
             FROM registered_models m WHERE name = $1",
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

    async fn model_from_row(&self, row: &DbRow) -> Result<RegisteredModel, ApiError> {
        let name: String = row.try_get("name")?;
        let aliases = sqlx::query("SELECT alias, version FROM model_aliases WHERE model_name = $1")
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

    /// Creates the next version (and the model, when new) in one transaction. The bundle is
    /// read and checked first; inside the transaction, a bundle garbage collection has already
    /// claimed is refused, and any other leaves the garbage list, so GC can never delete a
    /// bundle a version references.
    pub async fn create_version(
        &self,
        new: &NewVersion<'_>,
        principal: &str,
    ) -> Result<ModelVersion, ApiError> {
        let bytes = match self.artifacts.get(new.digest).await {
            Err(error) if error.kind == ErrorKind::NotFound => {
                return Err(ApiError::failed_precondition(format!(
                    "artifact_digest {} is not in the artifact store",
                    new.digest
                )));
            }
            other => other?,
        };
        let inspected = model_file::inspect(&bytes, new.format)?;
        if !new.model_type.is_empty() && new.model_type != inspected.model_type {
            return Err(ApiError::invalid_argument(format!(
                "model_type {:?} does not match the bundle's {:?}",
                new.model_type, inspected.model_type
            )));
        }
        if !new.feature_names.is_empty()
            && !inspected.feature_names.is_empty()
            && new.feature_names != inspected.feature_names.as_slice()
        {
            return Err(ApiError::invalid_argument(
                "feature_names do not match the bundle's",
            ));
        }
        let feature_names = if inspected.feature_names.is_empty() {
            new.feature_names.to_vec()
        } else {
            inspected.feature_names.clone()
        };
        let target = if inspected.target.is_empty() {
            new.target
        } else {
            &inspected.target
        };
        let mut tx = db::begin_write(&self.pool).await?;
        if !new.idempotency_key.is_empty() {
            let earlier: Option<i64> = sqlx::query_scalar(
                "SELECT version FROM version_idempotency WHERE model_name = $1 AND idempotency_key = $2",
            )
            .bind(new.model_name)
            .bind(new.idempotency_key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(version) = earlier {
                tx.rollback().await?;
                let earlier = self.version(new.model_name, version as u32).await?;
                if earlier.artifact_digest != new.digest {
                    return Err(ApiError::failed_precondition(format!(
                        "idempotency_key {:?} already created {}:{} from another artifact",
                        new.idempotency_key, new.model_name, version
                    )));
                }
                return Ok(earlier);
            }
        }
        claim(&mut tx, new.digest).await?;
        let now = now_ms();
        let model_created = sqlx::query("INSERT INTO registered_models (name, description, created_at_ms) VALUES ($1, '', $2) ON CONFLICT (name) DO NOTHING")
            .bind(new.model_name)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if model_created {
            record(
                &mut tx,
                Event {
                    kind: RegistryEventKind::ModelCreated,
                    model: new.model_name,
                    version: 0,
                    key: "",
                    before: String::new(),
                    after: json!({ "description": "" }).to_string(),
                },
                principal,
            )
            .await?;
        }
        let version: i64 = sqlx::query_scalar(
            "UPDATE registered_models SET last_version = last_version + 1 WHERE name = $1 \
             RETURNING last_version",
        )
        .bind(new.model_name)
        .fetch_one(&mut *tx)
        .await?;
        let lineage = &new.lineage;
        sqlx::query(
            "INSERT INTO model_versions (model_name, version, model_type, artifact_digest, metrics, params, \
             feature_names, target, dataset, dataset_version, dataset_digest, training_job_id, created_at_ms, created_by, \
             status, signature, format, size_bytes, pipeline_run_id, parent_version, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
        )
        .bind(new.model_name)
        .bind(version)
        .bind(&inspected.model_type)
        .bind(new.digest)
        .bind(to_json(new.metrics))
        .bind(to_json(new.params))
        .bind(to_json(&feature_names))
        .bind(target)
        .bind(&lineage.dataset)
        .bind(lineage.dataset_version as i64)
        .bind(&lineage.dataset_digest)
        .bind(&lineage.training_job_id)
        .bind(now)
        .bind(principal)
        .bind(READY)
        .bind(to_json(&SignatureJson::from(&inspected.signature)))
        .bind(inspected.format)
        .bind(bytes.len() as i64)
        .bind(&lineage.pipeline_run_id)
        .bind(lineage.parent_version as i64)
        .bind(&lineage.source)
        .execute(&mut *tx)
        .await?;
        if !new.idempotency_key.is_empty() {
            sqlx::query("INSERT INTO version_idempotency (model_name, idempotency_key, version, created_at_ms) VALUES ($1, $2, $3, $4)")
                .bind(new.model_name)
                .bind(new.idempotency_key)
                .bind(version)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        for (name, value) in new.metrics {
            sqlx::query("INSERT INTO model_version_metrics (model_name, version, name, value) VALUES ($1, $2, $3, $4)")
                .bind(new.model_name)
                .bind(version)
                .bind(name)
                .bind(value)
                .execute(&mut *tx)
                .await?;
        }
        for (key, value) in new.tags {
            sqlx::query("INSERT INTO model_version_tags (model_name, version, key, value) VALUES ($1, $2, $3, $4)")
                .bind(new.model_name)
                .bind(version)
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await?;
        }
        let after = snapshot(&mut tx, new.model_name, version as u32).await?;
        self.commit(
            tx,
            Event {
                kind: RegistryEventKind::VersionCreated,
                model: new.model_name,
                version: version as u32,
                key: "",
                before: String::new(),
                after,
            },
            principal,
        )
        .await?;
        self.version(new.model_name, version as u32).await
    }

    pub async fn version(&self, model: &str, version: u32) -> Result<ModelVersion, ApiError> {
        let row =
            sqlx::query("SELECT * FROM model_versions WHERE model_name = $1 AND version = $2")
                .bind(model)
                .bind(version as i64)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some(row) => Ok(self
                .versions_from_rows(std::slice::from_ref(&row))
                .await?
                .remove(0)),
            None => {
                self.model(model).await?;
                Err(no_version(model, version))
            }
        }
    }

    /// The newest version that is not archived.
    pub async fn latest_version(&self, model: &str) -> Result<ModelVersion, ApiError> {
        self.model(model).await?;
        let latest: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM model_versions WHERE model_name = $1 AND status = $2",
        )
        .bind(model)
        .bind(READY)
        .fetch_one(&self.pool)
        .await?;
        match latest {
            Some(latest) => self.version(model, latest as u32).await,
            None => Err(ApiError::not_found(format!(
                "model {model:?} has no versions yet (or only archived ones)"
            ))),
        }
    }

    pub async fn alias_target(&self, model: &str, alias: &str) -> Result<u32, ApiError> {
        let version: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM model_aliases WHERE model_name = $1 AND alias = $2",
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
            sqlx::query("SELECT * FROM model_versions WHERE model_name = $1 ORDER BY version")
                .bind(model)
                .fetch_all(&self.pool)
                .await?;
        self.versions_from_rows(&rows).await
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
        let mut tx = db::begin_write(&self.pool).await?;
        let now = now_ms();
        let mut previous_versions = Vec::with_capacity(moves.len());
        let mut seq = 0;
        for change in moves {
            match status_of(&mut tx, model, change.version).await? {
                None => {
                    return Err(ApiError::not_found(format!(
                        "model {model:?} has no version {} for alias {:?}",
                        change.version, change.alias
                    )));
                }
                Some(ARCHIVED) => {
                    return Err(ApiError::failed_precondition(format!(
                        "model {model:?} version {} is archived: restore it before pointing alias {:?} at it",
                        change.version, change.alias
                    )));
                }
                Some(_) => {}
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
                "INSERT INTO model_aliases (model_name, alias, version, updated_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (model_name, alias) DO UPDATE SET version = excluded.version, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(model)
            .bind(change.alias)
            .bind(change.version as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            seq = record(
                &mut tx,
                Event {
                    kind: RegistryEventKind::AliasSet,
                    model,
                    version: change.version,
                    key: change.alias,
                    before: version_json(previous),
                    after: version_json(change.version),
                },
                principal,
            )
            .await?;
            previous_versions.push(previous);
        }
        tx.commit().await?;
        self.notify(seq);
        Ok(previous_versions)
    }

    pub async fn delete_alias(
        &self,
        model: &str,
        alias: &str,
        principal: &str,
    ) -> Result<(), ApiError> {
        let mut tx = db::begin_write(&self.pool).await?;
        let previous = current_alias(&mut tx, model, alias).await?;
        if previous == 0 {
            drop(tx);
            self.model(model).await?;
            return Err(ApiError::not_found(format!(
                "model {model:?} has no alias {alias:?}"
            )));
        }
        sqlx::query("DELETE FROM model_aliases WHERE model_name = $1 AND alias = $2")
            .bind(model)
            .bind(alias)
            .execute(&mut *tx)
            .await?;
        self.commit(
            tx,
            Event {
                kind: RegistryEventKind::AliasDeleted,
                model,
                version: previous,
                key: alias,
                before: version_json(previous),
                after: String::new(),
            },
            principal,
        )
        .await?;
        Ok(())
    }

    pub async fn set_tag(
        &self,
        model: &str,
        version: u32,
        key: &str,
        value: &str,
        principal: &str,
    ) -> Result<(), ApiError> {
        let mut tx = db::begin_write(&self.pool).await?;
        if status_of(&mut tx, model, version).await?.is_none() {
            drop(tx);
            return Err(self.missing_version(model, version).await);
        }
        let previous = current_tag(&mut tx, model, version, key).await?;
        sqlx::query(
            "INSERT INTO model_version_tags (model_name, version, key, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (model_name, version, key) DO UPDATE SET value = excluded.value",
        )
        .bind(model)
        .bind(version as i64)
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        self.commit(
            tx,
            Event {
                kind: RegistryEventKind::TagSet,
                model,
                version,
                key,
                before: previous
                    .map(|v| json!({ "value": v }).to_string())
                    .unwrap_or_default(),
                after: json!({ "value": value }).to_string(),
            },
            principal,
        )
        .await?;
        Ok(())
    }

    pub async fn delete_tag(
        &self,
        model: &str,
        version: u32,
        key: &str,
        principal: &str,
    ) -> Result<(), ApiError> {
        let mut tx = db::begin_write(&self.pool).await?;
        let Some(previous) = current_tag(&mut tx, model, version, key).await? else {
            drop(tx);
            self.version(model, version).await?;
            return Err(ApiError::not_found(format!(
                "model {model:?} version {version} has no tag {key:?}"
            )));
        };
        sqlx::query(
            "DELETE FROM model_version_tags WHERE model_name = $1 AND version = $2 AND key = $3",
        )
        .bind(model)
        .bind(version as i64)
        .bind(key)
        .execute(&mut *tx)
        .await?;
        self.commit(
            tx,
            Event {
                kind: RegistryEventKind::TagDeleted,
                model,
                version,
                key,
                before: json!({ "value": previous }).to_string(),
                after: String::new(),
            },
            principal,
        )
        .await?;
        Ok(())
    }

    async fn missing_version(&self, model: &str, version: u32) -> ApiError {
        match self.model(model).await {
            Err(error) => error,
            Ok(_) => no_version(model, version),
        }
    }

    /// One page of matching versions, and the cursor of its last row when more follow.
    pub async fn search(
        &self,
        search: &Search<'_>,
    ) -> Result<(Vec<ModelVersion>, Option<Cursor>), ApiError> {
        let mut binds = Binds::default();
        let mut sql = match &search.order {
            Order::Created => String::from(
                "SELECT v.*, CAST(v.created_at_ms AS DOUBLE PRECISION) AS sort_key FROM model_versions v WHERE 1 = 1",
            ),
            // Versions without the metric have no place in its order: the join leaves them out.
            Order::Metric { name, .. } => format!(
                "SELECT v.*, o.value AS sort_key FROM model_version_metrics o JOIN model_versions v \
                 ON v.model_name = o.model_name AND v.version = o.version WHERE o.name = {}",
                binds.text(name)
            ),
        };
        if !search.model_name.is_empty() {
            sql += &format!(" AND v.model_name = {}", binds.text(search.model_name));
        }
        // Grants filter in SQL, so pages and cursors only ever hold what the caller may see.
        if let Some(patterns) = &search.visible {
            sql += &format!(
                " AND {}",
                grant_filter("v.model_name", patterns, &mut binds)
            );
        }
        if !search.include_archived {
            sql += &format!(" AND v.status = {}", binds.int(READY));
        }
        for filter in &search.filters {
            // `op` comes from a fixed set; everything else is bound.
            sql += &format!(
                " AND EXISTS (SELECT 1 FROM model_version_metrics m WHERE m.model_name = v.model_name \
                 AND m.version = v.version AND m.name = {} AND m.value {} {})",
                binds.text(&filter.metric),
                filter.op,
                binds.real(filter.value)
            );
        }
        // Tags and aliases are selective: as IN lists they drive the query from their own
        // index instead of being probed for every version in order.
        for (key, value) in &search.tags {
            sql += &format!(
                " AND (v.model_name, v.version) IN (SELECT t.model_name, t.version FROM model_version_tags t \
                 WHERE t.key = {} AND t.value = {})",
                binds.text(key),
                binds.text(value)
            );
        }
        if !search.alias.is_empty() {
            sql += &format!(
                " AND (v.model_name, v.version) IN (SELECT a.model_name, a.version FROM model_aliases a \
                 WHERE a.alias = {})",
                binds.text(search.alias)
            );
        }
        if !search.dataset.is_empty() {
            sql += &format!(" AND v.dataset = {}", binds.text(search.dataset));
            if search.dataset_version != 0 {
                sql += &format!(
                    " AND v.dataset_version = {}",
                    binds.int(search.dataset_version as i64)
                );
            }
        }
        // Keyset pagination: rows strictly after the cursor, in an order an index provides.
        let (key, direction, comparison) = match &search.order {
            Order::Created => ("v.created_at_ms, v.model_name, v.version", "DESC", "<"),
            Order::Metric {
                descending: true, ..
            } => ("o.value, o.model_name, o.version", "DESC", "<"),
            Order::Metric { .. } => ("o.value, o.model_name, o.version", "ASC", ">"),
        };
        if let Some(cursor) = &search.after {
            let sort_key = match search.order {
                Order::Created => binds.int(cursor.key as i64),
                Order::Metric { .. } => binds.real(cursor.key),
            };
            sql += &format!(
                " AND ({key}) {comparison} ({sort_key}, {}, {})",
                binds.text(&cursor.model),
                binds.int(cursor.version as i64)
            );
        }
        let order_by = key
            .split(", ")
            .map(|column| format!("{column} {direction}"))
            .collect::<Vec<_>>()
            .join(", ");
        // One extra row tells whether another page exists.
        sql += &format!(
            " ORDER BY {order_by} LIMIT {}",
            binds.int(search.limit as i64 + 1)
        );

        let rows = binds.query(sql).fetch_all(&self.pool).await?;
        let more = rows.len() > search.limit as usize;
        let page = &rows[..rows.len().min(search.limit as usize)];
        let versions = self.versions_from_rows(page).await?;
        let next = match (more, page.last()) {
            (true, Some(last)) => Some(Cursor {
                order: search.order.canonical(),
                key: last.try_get("sort_key")?,
                model: last.try_get("model_name")?,
                version: last.try_get::<i64, _>("version")? as u32,
            }),
            _ => None,
        };
        Ok((versions, next))
    }

    /// Newest first; only `alias` when it is not empty. Read from the event log.
    pub async fn alias_history(
        &self,
        model: &str,
        alias: &str,
    ) -> Result<Vec<AliasChange>, ApiError> {
        self.model(model).await?;
        let rows = sqlx::query(
            "SELECT * FROM registry_events WHERE model_name = $1 AND kind IN ($2, $3) \
             AND ($4 = '' OR key = $5) ORDER BY seq DESC",
        )
        .bind(model)
        .bind(RegistryEventKind::AliasSet as i32)
        .bind(RegistryEventKind::AliasDeleted as i32)
        .bind(alias)
        .bind(alias)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let event = event_from_row(row)?;
                Ok(AliasChange {
                    alias: event.key,
                    from_version: version_of(&event.before),
                    to_version: version_of(&event.after),
                    principal: event.principal,
                    time_ms: event.time_ms,
                })
            })
            .collect()
    }

    /// Deletes a version's record; refused while an alias points at it. Its bundle becomes
    /// garbage once no other version references it.
    pub async fn delete_version(
        &self,
        model: &str,
        version: u32,
        principal: &str,
    ) -> Result<(), ApiError> {
        let mut tx = db::begin_write(&self.pool).await?;
        refuse_if_aliased(&mut tx, model, version, "deleted").await?;
        let before = snapshot(&mut tx, model, version).await?;
        let digest: Option<String> = sqlx::query_scalar(
            "DELETE FROM model_versions WHERE model_name = $1 AND version = $2 RETURNING artifact_digest",
        )
        .bind(model)
        .bind(version as i64)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(digest) = digest else {
            drop(tx);
            return Err(self.missing_version(model, version).await);
        };
        orphan(&mut *tx, &digest).await?;
        self.commit(
            tx,
            Event {
                kind: RegistryEventKind::VersionDeleted,
                model,
                version,
                key: "",
                before,
                after: String::new(),
            },
            principal,
        )
        .await?;
        Ok(())
    }

    /// Archives (`archive`) or restores a version.
    pub async fn set_archived(
        &self,
        model: &str,
        version: u32,
        archive: bool,
        principal: &str,
    ) -> Result<ModelVersion, ApiError> {
        let mut tx = db::begin_write(&self.pool).await?;
        let Some(status) = status_of(&mut tx, model, version).await? else {
            drop(tx);
            return Err(self.missing_version(model, version).await);
        };
        let (from, to, kind) = if archive {
            (READY, ARCHIVED, RegistryEventKind::VersionArchived)
        } else {
            (ARCHIVED, READY, RegistryEventKind::VersionRestored)
        };
        if status != from {
            return Err(ApiError::failed_precondition(format!(
                "model {model:?} version {version} is already {}",
                status_name(status)
            )));
        }
        if archive {
            refuse_if_aliased(&mut tx, model, version, "archived").await?;
        }
        sqlx::query("UPDATE model_versions SET status = $1 WHERE model_name = $2 AND version = $3")
            .bind(to)
            .bind(model)
            .bind(version as i64)
            .execute(&mut *tx)
            .await?;
        self.commit(
            tx,
            Event {
                kind,
                model,
                version,
                key: "",
                before: json!({ "status": status_name(from) }).to_string(),
                after: json!({ "status": status_name(to) }).to_string(),
            },
            principal,
        )
        .await?;
        self.version(model, version).await
    }

    /// Deletes (or with `dry_run` lists) the bundles of deleted versions that no version
    /// references and that were orphaned at least `min_age_ms` ago. Under the write lock it
    /// only marks them `collecting` (versions can no longer claim them) and records the event;
    /// the blobs are deleted after the commit, and a run that dies midway is finished by the
    /// next one.
    pub async fn collect_garbage(
        &self,
        dry_run: bool,
        min_age_ms: i64,
        principal: &str,
    ) -> Result<Garbage, ApiError> {
        let mut tx = db::begin_write(&self.pool).await?;
        let digests: Vec<String> = sqlx::query_scalar(
            "SELECT digest FROM orphaned_artifacts o WHERE (state = 'collecting' OR since_ms <= $1) \
             AND NOT EXISTS (SELECT 1 FROM model_versions v WHERE v.artifact_digest = o.digest) ORDER BY digest",
        )
        .bind(now_ms().saturating_sub(min_age_ms))
        .fetch_all(&mut *tx)
        .await?;
        if dry_run || digests.is_empty() {
            drop(tx);
            let bytes = self.sizes(&digests).await?;
            return Ok(Garbage { digests, bytes });
        }
        for digest in &digests {
            sqlx::query("UPDATE orphaned_artifacts SET state = 'collecting' WHERE digest = $1")
                .bind(digest)
                .execute(&mut *tx)
                .await?;
        }
        self.commit(
            tx,
            Event {
                kind: RegistryEventKind::ArtifactsCollected,
                model: "",
                version: 0,
                key: "",
                before: String::new(),
                after: json!({ "digests": digests }).to_string(),
            },
            principal,
        )
        .await?;
        let bytes = self.sizes(&digests).await?;
        for digest in &digests {
            self.artifacts.delete(digest).await?;
            sqlx::query(
                "DELETE FROM orphaned_artifacts WHERE digest = $1 AND state = 'collecting'",
            )
            .bind(digest)
            .execute(&self.pool)
            .await?;
        }
        Ok(Garbage { digests, bytes })
    }

    async fn sizes(&self, digests: &[String]) -> Result<u64, ApiError> {
        let mut bytes = 0;
        for digest in digests {
            bytes += match self.artifacts.size(digest).await {
                Err(error) if error.kind == ErrorKind::NotFound => 0,
                other => other?,
            };
        }
        Ok(bytes)
    }

    /// Takes a bundle off the garbage list before it is stored again (an import): refused while
    /// garbage collection is deleting it.
    pub async fn claim_artifact(&self, digest: &str) -> Result<(), ApiError> {
        let mut tx = db::begin_write(&self.pool).await?;
        claim(&mut tx, digest).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks a stored bundle that no version references as garbage.
    pub async fn forget_artifact(&self, digest: &str) -> Result<(), ApiError> {
        orphan(&self.pool, digest).await
    }

    /// Events after `after_seq`, oldest first, at most `limit`; only `model` when not empty.
    pub async fn events_after(
        &self,
        after_seq: u64,
        model: &str,
        limit: u32,
    ) -> Result<Vec<RegistryEvent>, ApiError> {
        sqlx::query(
            "SELECT * FROM registry_events WHERE seq > $1 AND ($2 = '' OR model_name = $3) ORDER BY seq LIMIT $4",
        )
        .bind(after_seq.min(i64::MAX as u64) as i64)
        .bind(model)
        .bind(model)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(event_from_row)
        .collect()
    }

    /// The audit log, newest first.
    pub async fn events(&self, query: &EventQuery<'_>) -> Result<Vec<RegistryEvent>, ApiError> {
        let mut binds = Binds::default();
        let before = if query.before_seq == 0 {
            i64::MAX
        } else {
            query.before_seq.min(i64::MAX as u64) as i64
        };
        let mut sql = format!(
            "SELECT * FROM registry_events WHERE seq < {}",
            binds.int(before)
        );
        if !query.model_name.is_empty() {
            sql += &format!(" AND model_name = {}", binds.text(query.model_name));
        }
        if !query.principal.is_empty() {
            sql += &format!(" AND principal = {}", binds.text(query.principal));
        }
        if let Some(patterns) = &query.visible {
            // Registry-wide events (garbage collection) name no model: visible to all.
            sql += &format!(
                " AND (model_name = '' OR {})",
                grant_filter("model_name", patterns, &mut binds)
            );
        }
        if !query.kinds.is_empty() {
            // Kinds are validated enum numbers, not client text.
            let kinds: Vec<String> = query.kinds.iter().map(i32::to_string).collect();
            sql += &format!(" AND kind IN ({})", kinds.join(", "));
        }
        sql += &format!(" ORDER BY seq DESC LIMIT {}", binds.int(query.limit as i64));
        binds
            .query(sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(event_from_row)
            .collect()
    }

    /// Versions from their rows, with aliases and tags fetched for all of them at once.
    async fn versions_from_rows(&self, rows: &[DbRow]) -> Result<Vec<ModelVersion>, ApiError> {
        // Bound parameters are limited per statement: hydrate long lists in slices.
        const SLICE: usize = 500;
        if rows.len() > SLICE {
            let mut versions = Vec::with_capacity(rows.len());
            for slice in rows.chunks(SLICE) {
                versions.extend(Box::pin(self.versions_from_rows(slice)).await?);
            }
            return Ok(versions);
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let keys = rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>("model_name")?,
                    row.try_get::<i64, _>("version")?,
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let values = (0..keys.len())
            .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let fetch = |sql: String| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (model, version) in &keys {
                query = query.bind(model.clone()).bind(*version);
            }
            query.fetch_all(&self.pool)
        };
        let mut aliases: HashMap<(String, i64), Vec<String>> = HashMap::new();
        for row in fetch(format!(
            "SELECT model_name, version, alias FROM model_aliases \
             WHERE (model_name, version) IN (VALUES {values}) ORDER BY alias"
        ))
        .await?
        {
            aliases
                .entry((row.try_get("model_name")?, row.try_get("version")?))
                .or_default()
                .push(row.try_get("alias")?);
        }
        let mut tags: HashMap<(String, i64), HashMap<String, String>> = HashMap::new();
        for row in fetch(format!(
            "SELECT model_name, version, key, value FROM model_version_tags \
             WHERE (model_name, version) IN (VALUES {values})"
        ))
        .await?
        {
            tags.entry((row.try_get("model_name")?, row.try_get("version")?))
                .or_default()
                .insert(row.try_get("key")?, row.try_get("value")?);
        }
        rows.iter()
            .zip(keys)
            .map(|(row, key)| {
                let signature: SignatureJson = parse(row, "signature")?;
                Ok(ModelVersion {
                    version: key.1 as u32,
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
                        pipeline_run_id: row.try_get("pipeline_run_id")?,
                        parent_version: row.try_get::<i64, _>("parent_version")? as u32,
                        source: row.try_get("source")?,
                    }),
                    aliases: aliases.remove(&key).unwrap_or_default(),
                    created_at_ms: row.try_get("created_at_ms")?,
                    created_by: row.try_get("created_by")?,
                    tags: tags.remove(&key).unwrap_or_default(),
                    status: row.try_get::<i64, _>("status")? as i32,
                    signature: Some(signature.into()),
                    format: row.try_get("format")?,
                    size_bytes: row.try_get::<i64, _>("size_bytes")? as u64,
                    model_name: key.0,
                })
            })
            .collect()
    }
}

/// A version's status, None when there is no such version.
async fn status_of(
    tx: &mut Connection,
    model: &str,
    version: u32,
) -> Result<Option<i64>, ApiError> {
    Ok(sqlx::query_scalar(
        "SELECT status FROM model_versions WHERE model_name = $1 AND version = $2",
    )
    .bind(model)
    .bind(version as i64)
    .fetch_optional(&mut *tx)
    .await?)
}

/// Puts a bundle on the garbage list unless a version references it.
async fn orphan<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    digest: &str,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO orphaned_artifacts (digest, since_ms) SELECT $1, $2 \
         WHERE NOT EXISTS (SELECT 1 FROM model_versions WHERE artifact_digest = $3) \
         ON CONFLICT (digest) DO NOTHING",
    )
    .bind(digest)
    .bind(now_ms())
    .bind(digest)
    .execute(executor)
    .await?;
    Ok(())
}

/// A bundle about to be referenced leaves the garbage list; one that garbage collection is
/// deleting cannot be referenced (UNAVAILABLE: store it again, then retry).
async fn claim(tx: &mut Connection, digest: &str) -> Result<(), ApiError> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM orphaned_artifacts WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&mut *tx)
            .await?;
    if state.as_deref() == Some("collecting") {
        return Err(ApiError::unavailable(format!(
            "artifact {digest} is being garbage collected: store it again and retry"
        )));
    }
    sqlx::query("DELETE FROM orphaned_artifacts WHERE digest = $1")
        .bind(digest)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Appends an event in the caller's transaction and returns its seq.
async fn record(tx: &mut Connection, event: Event<'_>, principal: &str) -> Result<i64, ApiError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO registry_events (kind, model_name, version, key, principal, time_ms, before, after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
    )
    .bind(event.kind as i32)
    .bind(event.model)
    .bind(event.version as i64)
    .bind(event.key)
    .bind(principal)
    .bind(now_ms())
    .bind(event.before)
    .bind(event.after)
    .fetch_one(&mut *tx)
    .await?)
}

fn event_from_row(row: &DbRow) -> Result<RegistryEvent, ApiError> {
    Ok(RegistryEvent {
        seq: row.try_get::<i64, _>("seq")? as u64,
        kind: row.try_get("kind")?,
        model_name: row.try_get("model_name")?,
        version: row.try_get::<i64, _>("version")? as u32,
        key: row.try_get("key")?,
        principal: row.try_get("principal")?,
        time_ms: row.try_get("time_ms")?,
        before: row.try_get("before")?,
        after: row.try_get("after")?,
    })
}

/// A version's record as JSON, for an event's before/after ("" when there is no such version).
async fn snapshot(tx: &mut Connection, model: &str, version: u32) -> Result<String, ApiError> {
    let Some(row) =
        sqlx::query("SELECT * FROM model_versions WHERE model_name = $1 AND version = $2")
            .bind(model)
            .bind(version as i64)
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(String::new());
    };
    let status: i64 = row.try_get("status")?;
    Ok(json!({
        "model_type": row.try_get::<String, _>("model_type")?,
        "format": row.try_get::<String, _>("format")?,
        "artifact_digest": row.try_get::<String, _>("artifact_digest")?,
        "size_bytes": row.try_get::<i64, _>("size_bytes")?,
        "status": status_name(status),
        "metrics": parse::<Value>(&row, "metrics")?,
        "params": parse::<Value>(&row, "params")?,
        "feature_names": parse::<Value>(&row, "feature_names")?,
        "target": row.try_get::<String, _>("target")?,
        "signature": parse::<Value>(&row, "signature")?,
        "lineage": {
            "dataset": row.try_get::<String, _>("dataset")?,
            "dataset_version": row.try_get::<i64, _>("dataset_version")?,
            "dataset_digest": row.try_get::<String, _>("dataset_digest")?,
            "training_job_id": row.try_get::<String, _>("training_job_id")?,
            "pipeline_run_id": row.try_get::<String, _>("pipeline_run_id")?,
            "parent_version": row.try_get::<i64, _>("parent_version")?,
            "source": row.try_get::<String, _>("source")?,
        },
        "created_by": row.try_get::<String, _>("created_by")?,
        "created_at_ms": row.try_get::<i64, _>("created_at_ms")?,
    })
    .to_string())
}

async fn refuse_if_aliased(
    tx: &mut Connection,
    model: &str,
    version: u32,
    verb: &str,
) -> Result<(), ApiError> {
    let aliases: Vec<String> = sqlx::query_scalar(
        "SELECT alias FROM model_aliases WHERE model_name = $1 AND version = $2 ORDER BY alias",
    )
    .bind(model)
    .bind(version as i64)
    .fetch_all(&mut *tx)
    .await?;
    if aliases.is_empty() {
        Ok(())
    } else {
        Err(ApiError::failed_precondition(format!(
            "model {model:?} version {version} is behind alias {} and cannot be {verb}: move or delete the alias first",
            aliases.join(", ")
        )))
    }
}

async fn current_alias(tx: &mut Connection, model: &str, alias: &str) -> Result<u32, ApiError> {
    let version: Option<i64> = sqlx::query_scalar(
        "SELECT version FROM model_aliases WHERE model_name = $1 AND alias = $2",
    )
    .bind(model)
    .bind(alias)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(version.unwrap_or_default() as u32)
}

async fn current_tag(
    tx: &mut Connection,
    model: &str,
    version: u32,
    key: &str,
) -> Result<Option<String>, ApiError> {
    Ok(sqlx::query_scalar(
        "SELECT value FROM model_version_tags WHERE model_name = $1 AND version = $2 AND key = $3",
    )
    .bind(model)
    .bind(version as i64)
    .bind(key)
    .fetch_optional(&mut *tx)
    .await?)
}

/// An alias state for an event: `{"version": n}`, or "" for none.
fn version_json(version: u32) -> String {
    if version == 0 {
        String::new()
    } else {
        json!({ "version": version }).to_string()
    }
}

fn version_of(state: &str) -> u32 {
    serde_json::from_str::<Value>(state)
        .ok()
        .and_then(|v| v["version"].as_u64())
        .unwrap_or_default() as u32
}

fn status_name(status: i64) -> &'static str {
    if status == ARCHIVED {
        "archived"
    } else {
        "ready"
    }
}

/// The stored form of a signature.
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct SignatureJson {
    inputs: Vec<SpecJson>,
    outputs: Vec<SpecJson>,
}

#[derive(Serialize, Deserialize)]
struct SpecJson {
    name: String,
    datatype: String,
    shape: Vec<i64>,
}

impl From<&Signature> for SignatureJson {
    fn from(signature: &Signature) -> Self {
        let specs = |specs: &[TensorSpec]| {
            specs
                .iter()
                .map(|s| SpecJson {
                    name: s.name.clone(),
                    datatype: s.datatype.clone(),
                    shape: s.shape.clone(),
                })
                .collect()
        };
        Self {
            inputs: specs(&signature.inputs),
            outputs: specs(&signature.outputs),
        }
    }
}

impl From<SignatureJson> for Signature {
    fn from(signature: SignatureJson) -> Self {
        let specs = |specs: Vec<SpecJson>| {
            specs
                .into_iter()
                .map(|s| TensorSpec {
                    name: s.name,
                    datatype: s.datatype,
                    shape: s.shape,
                })
                .collect()
        };
        Self {
            inputs: specs(signature.inputs),
            outputs: specs(signature.outputs),
        }
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("maps of strings and finite numbers serialize")
}

fn parse<T: serde::de::DeserializeOwned>(row: &DbRow, column: &str) -> Result<T, ApiError> {
    serde_json::from_str(&row.try_get::<String, _>(column)?)
        .map_err(|e| ApiError::internal(format!("stored {column}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry from before the event log keeps its alias history and metrics on upgrade.
    #[tokio::test]
    async fn upgrading_moves_alias_history_into_the_event_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        let location = Location::Sqlite(path);
        let before_events = db::Migrations {
            sqlite: &MIGRATIONS.sqlite[..3],
            postgres: &MIGRATIONS.postgres[..3],
        };
        let old = db::open(&location, &before_events).await.unwrap();
        for sql in [
            "INSERT INTO registered_models VALUES ('m', '', 1)",
            "INSERT INTO model_versions (model_name, version, model_type, artifact_digest, metrics, params, feature_names, target, dataset, dataset_version, dataset_digest, training_job_id, created_at_ms) VALUES ('m', 1, 'linear', 'd', '{\"rmse\": 3.5}', '{}', '[]', 'y', '', 0, '', '', 1)",
            "INSERT INTO alias_history (model_name, alias, from_version, to_version, principal, time_ms) VALUES ('m', 'champion', 0, 1, 'alice', 10)",
            "INSERT INTO alias_history (model_name, alias, from_version, to_version, principal, time_ms) VALUES ('m', 'champion', 1, 0, 'bob', 20)",
        ] {
            sqlx::query(sql).execute(&old).await.unwrap();
        }
        old.close().await;

        let artifacts = ArtifactStore::local(&dir.path().join("artifacts"), None).unwrap();
        let store = Store::open(&location, artifacts).await.unwrap();
        let history = store.alias_history("m", "").await.unwrap();
        assert_eq!(
            history
                .iter()
                .map(|c| (c.from_version, c.to_version, c.principal.as_str()))
                .collect::<Vec<_>>(),
            [(1, 0, "bob"), (0, 1, "alice")]
        );
        let (found, _) = store
            .search(&Search {
                model_name: "",
                filters: vec![crate::search::parse_filter("rmse < 4").unwrap()],
                tags: vec![],
                alias: "",
                dataset: "",
                dataset_version: 0,
                order: Order::Created,
                after: None,
                limit: 10,
                include_archived: false,
                visible: None,
            })
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(*store.subscribe().borrow(), 2);
    }
}
