CREATE TABLE datasets (
    name TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE dataset_versions (
    dataset TEXT NOT NULL REFERENCES datasets (name),
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    row_count INTEGER NOT NULL,
    -- JSON array of {"name", "data_type"} in column order.
    columns TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (dataset, version)
);
