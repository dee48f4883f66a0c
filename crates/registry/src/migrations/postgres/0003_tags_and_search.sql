CREATE TABLE model_version_tags (
    model_name TEXT NOT NULL,
    version BIGINT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_name, version, key),
    FOREIGN KEY (model_name, version) REFERENCES model_versions (model_name, version) ON DELETE CASCADE
);
CREATE INDEX model_version_tags_key ON model_version_tags (key, value);

CREATE INDEX model_versions_created ON model_versions (created_at_ms, model_name, version);
CREATE INDEX model_versions_dataset ON model_versions (dataset, dataset_version);
CREATE INDEX model_aliases_version ON model_aliases (model_name, version);
