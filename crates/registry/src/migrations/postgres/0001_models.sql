CREATE TABLE registered_models (
    name TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE model_versions (
    model_name TEXT NOT NULL REFERENCES registered_models (name),
    version BIGINT NOT NULL,
    model_type TEXT NOT NULL,
    artifact_digest TEXT NOT NULL,
    metrics TEXT NOT NULL,
    params TEXT NOT NULL,
    feature_names TEXT NOT NULL,
    target TEXT NOT NULL,
    dataset TEXT NOT NULL,
    dataset_version BIGINT NOT NULL,
    dataset_digest TEXT NOT NULL,
    training_job_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (model_name, version)
);

CREATE TABLE model_aliases (
    model_name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (model_name, alias),
    FOREIGN KEY (model_name, version) REFERENCES model_versions (model_name, version)
);
