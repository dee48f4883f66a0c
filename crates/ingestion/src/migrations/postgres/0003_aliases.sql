-- Movable names for versions (prod, candidate, ...); `latest` is built in, never stored.
CREATE TABLE dataset_aliases (
    dataset TEXT NOT NULL REFERENCES datasets (name),
    alias TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (dataset, alias)
);
