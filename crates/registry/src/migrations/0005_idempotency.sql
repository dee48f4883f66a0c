-- A client's idempotency key per created version: a retried CreateModelVersion with the same
-- key returns the version the first attempt created instead of a second one.
CREATE TABLE version_idempotency (
    model_name TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (model_name, idempotency_key)
);
