-- One append-only table is both the outbox that WatchRegistry replays and the audit log:
-- every mutation writes its event in its own transaction, so an event exists exactly when the
-- change does. `kind` is the RegistryEventKind number; before/after are JSON ('' = absent).
CREATE TABLE registry_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    model_name TEXT NOT NULL,
    version INTEGER NOT NULL,
    key TEXT NOT NULL,
    principal TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL
);
CREATE INDEX registry_events_model ON registry_events (model_name, seq);
CREATE INDEX registry_events_principal ON registry_events (principal, seq);

-- The alias history becomes part of the event log (6 = ALIAS_SET, 7 = ALIAS_DELETED).
INSERT INTO registry_events (kind, model_name, version, key, principal, time_ms, before, after)
SELECT
    CASE WHEN to_version = 0 THEN 7 ELSE 6 END,
    model_name,
    CASE WHEN to_version = 0 THEN from_version ELSE to_version END,
    alias,
    principal,
    time_ms,
    CASE WHEN from_version = 0 THEN '' ELSE '{"version":' || from_version || '}' END,
    CASE WHEN to_version = 0 THEN '' ELSE '{"version":' || to_version || '}' END
FROM alias_history ORDER BY id;
DROP TABLE alias_history;

-- 1 = READY, 2 = ARCHIVED.
ALTER TABLE model_versions ADD COLUMN status INTEGER NOT NULL DEFAULT 1;
ALTER TABLE model_versions ADD COLUMN signature TEXT NOT NULL DEFAULT '{}';
ALTER TABLE model_versions ADD COLUMN format TEXT NOT NULL DEFAULT 'mlops';
ALTER TABLE model_versions ADD COLUMN size_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE model_versions ADD COLUMN pipeline_run_id TEXT NOT NULL DEFAULT '';
ALTER TABLE model_versions ADD COLUMN parent_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE model_versions ADD COLUMN source TEXT NOT NULL DEFAULT '';
CREATE INDEX model_versions_digest ON model_versions (artifact_digest);

-- Version numbers are never reused, not even after the latest version is deleted: the model
-- keeps the last number it handed out.
ALTER TABLE registered_models ADD COLUMN last_version INTEGER NOT NULL DEFAULT 0;
UPDATE registered_models SET last_version =
    (SELECT COALESCE(MAX(version), 0) FROM model_versions v WHERE v.model_name = registered_models.name);

-- One row per metric: threshold filters and metric ordering walk an index, not every row's JSON.
CREATE TABLE model_version_metrics (
    model_name TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (model_name, version, name),
    FOREIGN KEY (model_name, version) REFERENCES model_versions (model_name, version) ON DELETE CASCADE
);
CREATE INDEX model_version_metrics_value ON model_version_metrics (name, value, model_name, version);
INSERT INTO model_version_metrics (model_name, version, name, value)
SELECT v.model_name, v.version, m.key, m.value FROM model_versions v, json_each(v.metrics) m;

-- Search's default order walks this index backwards.
DROP INDEX model_versions_created;
CREATE INDEX model_versions_created ON model_versions (created_at_ms DESC, model_name DESC, version DESC);

-- Bundles of deleted versions, until garbage collection deletes them.
CREATE TABLE orphaned_artifacts (
    digest TEXT PRIMARY KEY NOT NULL,
    since_ms INTEGER NOT NULL,
    -- 'orphan', or 'collecting' once garbage collection has committed to deleting the blob.
    state TEXT NOT NULL DEFAULT 'orphan'
);
