CREATE TABLE training_jobs (
    id TEXT PRIMARY KEY NOT NULL,
    created_at_ms BIGINT NOT NULL,
    state BIGINT NOT NULL,
    -- The mlops.v1.TrainingJob message, protobuf-encoded: the contract is the schema.
    message BYTEA NOT NULL
);
CREATE INDEX training_jobs_created ON training_jobs (created_at_ms);
