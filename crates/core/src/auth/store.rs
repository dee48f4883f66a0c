//! Tokens (as hashes) and the audit log, in one SQL store every service shares.

use sqlx::Row;

use crate::auth::principal::{Grant, Principal, Role};
use crate::db::{self, Pool};
use crate::storage::sha256_hex;
use crate::{ApiError, ErrorKind, now_ms};

const MIGRATIONS: db::Migrations = db::Migrations {
    sqlite: &[(1, "auth", include_str!("migrations/0001_auth.sql"))],
    postgres: &[(1, "auth", include_str!("migrations/postgres/0001_auth.sql"))],
};

#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: String,
    pub resources: Vec<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub revoked_at_ms: i64,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub time_ms: i64,
    pub service: String,
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub result: String,
}

#[derive(Clone)]
pub struct AuthStore {
    pool: Pool,
}

fn unauthenticated() -> ApiError {
    // One message for unknown, revoked and expired tokens: no oracle for guessing.
    ApiError::new(
        ErrorKind::Unauthenticated,
        "invalid, expired or revoked token",
    )
}

impl AuthStore {
    pub async fn open(location: &db::Location) -> Result<Self, ApiError> {
        Ok(Self {
            pool: db::open(location, &MIGRATIONS).await?,
        })
    }

    /// Stores a token's hash; returns its record.
    pub async fn create_token(
        &self,
        token: &str,
        name: &str,
        role: Role,
        grants: &[Grant],
        ttl_seconds: u64,
        created_by: &str,
    ) -> Result<TokenRecord, ApiError> {
        let now = now_ms();
        let expires = if ttl_seconds == 0 {
            0
        } else {
            now.saturating_add((ttl_seconds as i64).saturating_mul(1000))
        };
        let resources: Vec<String> = grants.iter().map(Grant::text).collect();
        let id = crate::ids::new_id();
        sqlx::query(
            "INSERT INTO api_tokens (id, name, token_hash, role, resources, created_at_ms, expires_at_ms, revoked_at_ms, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8)",
        )
        .bind(&id)
        .bind(name)
        .bind(sha256_hex(token.as_bytes()))
        .bind(role.name())
        .bind(serde_json::to_string(&resources).expect("strings serialize"))
        .bind(now)
        .bind(expires)
        .bind(created_by)
        .execute(&self.pool)
        .await?;
        Ok(TokenRecord {
            id,
            name: name.into(),
            role: role.name().into(),
            resources,
            created_at_ms: now,
            expires_at_ms: expires,
            revoked_at_ms: 0,
            created_by: created_by.into(),
        })
    }

    /// Installs the first admin token unless an admin token exists. Returns whether it did.
    pub async fn bootstrap_admin(&self, token: &str) -> Result<bool, ApiError> {
        let mut tx = db::begin_write(&self.pool).await?;
        let admins: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_tokens WHERE role = 'admin' AND revoked_at_ms = 0",
        )
        .fetch_one(&mut *tx)
        .await?;
        if admins > 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO api_tokens (id, name, token_hash, role, resources, created_at_ms, expires_at_ms, revoked_at_ms, created_by) \
             VALUES ($1, 'admin', $2, 'admin', '[]', $3, 0, 0, 'bootstrap') ON CONFLICT (token_hash) DO NOTHING",
        )
        .bind(crate::ids::new_id())
        .bind(sha256_hex(token.as_bytes()))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The principal of an opaque token, if it is known, unexpired and not revoked.
    pub async fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1")
            .bind(sha256_hex(token.as_bytes()))
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(unauthenticated)?;
        let record = token_from_row(&row)?;
        let now = now_ms();
        if record.revoked_at_ms != 0 || (record.expires_at_ms != 0 && record.expires_at_ms <= now) {
            return Err(unauthenticated());
        }
        let role = Role::parse(&record.role)
            .map_err(|_| ApiError::internal("stored token has an unknown role"))?;
        let grants = record
            .resources
            .iter()
            .map(|r| Grant::parse(r))
            .collect::<Result<_, _>>()?;
        Ok(Principal {
            subject: record.name,
            role,
            grants,
        })
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, ApiError> {
        sqlx::query("SELECT * FROM api_tokens ORDER BY created_at_ms, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(token_from_row)
            .collect()
    }

    pub async fn revoke(&self, id: &str) -> Result<(), ApiError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms = 0",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(ApiError::not_found(format!(
                "active token {id:?} not found"
            )));
        }
        Ok(())
    }

    pub async fn record(&self, event: &AuditRecord) -> Result<(), ApiError> {
        sqlx::query("INSERT INTO audit_events (time_ms, service, principal, action, resource, result) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(event.time_ms)
            .bind(&event.service)
            .bind(&event.principal)
            .bind(&event.action)
            .bind(&event.resource)
            .bind(&event.result)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Newest first.
    pub async fn audit_events(
        &self,
        limit: u32,
        principal: &str,
    ) -> Result<Vec<AuditRecord>, ApiError> {
        let limit = if limit == 0 { 100 } else { limit.min(10_000) } as i64;
        sqlx::query(
            "SELECT * FROM audit_events WHERE ($1 = '' OR principal = $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(principal)
        .bind(principal)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(AuditRecord {
                id: row.try_get("id")?,
                time_ms: row.try_get("time_ms")?,
                service: row.try_get("service")?,
                principal: row.try_get("principal")?,
                action: row.try_get("action")?,
                resource: row.try_get("resource")?,
                result: row.try_get("result")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(ApiError::from)
    }
}

fn token_from_row(row: &db::Row) -> Result<TokenRecord, ApiError> {
    Ok(TokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        resources: serde_json::from_str(&row.try_get::<String, _>("resources")?)
            .map_err(|e| ApiError::internal(format!("stored token resources: {e}")))?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
        created_by: row.try_get("created_by")?,
    })
}
