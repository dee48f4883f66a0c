ALTER TABLE model_versions ADD COLUMN created_by TEXT NOT NULL DEFAULT '';

-- Every alias move, kept forever: from_version 0 = created, to_version 0 = deleted.
CREATE TABLE alias_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_name TEXT NOT NULL,
    alias TEXT NOT NULL,
    from_version INTEGER NOT NULL,
    to_version INTEGER NOT NULL,
    principal TEXT NOT NULL,
    time_ms INTEGER NOT NULL
);
CREATE INDEX alias_history_model ON alias_history (model_name, id);
