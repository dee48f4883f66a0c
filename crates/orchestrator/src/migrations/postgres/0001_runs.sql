CREATE TABLE pipeline_runs (
    id TEXT PRIMARY KEY NOT NULL,
    created_at_ms BIGINT NOT NULL,
    state BIGINT NOT NULL,
    -- The mlops.v1.PipelineRun message, protobuf-encoded.
    message BYTEA NOT NULL
);
CREATE INDEX pipeline_runs_created ON pipeline_runs (created_at_ms);

-- The pipeline file each run was started with, so a run can be reproduced.
CREATE TABLE pipeline_files (
    run_id TEXT PRIMARY KEY NOT NULL REFERENCES pipeline_runs (id),
    pipeline_yaml TEXT NOT NULL
);
