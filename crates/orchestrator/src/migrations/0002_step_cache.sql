-- Step caching: a step's outputs are reused when its cache key (a digest of its definition and
-- inputs) matches an earlier successful run of the same pipeline. `parts` (JSON: part -> digest)
-- lets a miss name what changed since the last entry.
CREATE TABLE step_cache (
    pipeline TEXT NOT NULL,
    step TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    parts TEXT NOT NULL,
    run_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (pipeline, step, cache_key)
);
CREATE INDEX step_cache_latest ON step_cache (pipeline, step, created_at_ms);
