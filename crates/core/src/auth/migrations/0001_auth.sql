CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    -- sha256 of the token text: the token itself is never stored.
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    resources TEXT NOT NULL,      -- JSON array of "kind:pattern"
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL, -- 0: never
    revoked_at_ms INTEGER NOT NULL, -- 0: not revoked
    created_by TEXT NOT NULL
);

CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    service TEXT NOT NULL,
    principal TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE INDEX audit_events_principal ON audit_events (principal, id);
