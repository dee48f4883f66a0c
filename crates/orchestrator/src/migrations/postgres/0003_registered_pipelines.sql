-- Pipelines registered with triggers: the mlops.v1.RegisteredPipeline message, protobuf-encoded
-- (its file and its trigger state). id is the pipeline's name.
CREATE TABLE registered_pipelines (
    id TEXT PRIMARY KEY NOT NULL,
    created_at_ms BIGINT NOT NULL,
    state BIGINT NOT NULL,
    message BYTEA NOT NULL
);
