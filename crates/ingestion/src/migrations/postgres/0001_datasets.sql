CREATE TABLE datasets (
    name TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE dataset_versions (
    dataset TEXT NOT NULL REFERENCES datasets (name),
    version BIGINT NOT NULL,
    digest TEXT NOT NULL,
    row_count BIGINT NOT NULL,
    -- JSON array of {"name", "data_type"} in column order.
    columns TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (dataset, version)
);
