//! Server-side sessions and the single-use OAuth `state` records.

use super::{on_pool, Store, StoreResult};
use crate::model::OAuthPurpose;
use vk::GroupId;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    /// SHA-256 of the cookie value, hex: the cookie itself is never stored.
    pub id_hash: String,
    pub user_id: Option<i64>,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// A pending authorization: VK ID sign-in or a community authorization.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OAuthStateRow {
    pub state_hash: String,
    pub session_hash: String,
    pub kind: OAuthPurpose,
    /// Vault value: the PKCE verifier (VK ID).
    pub verifier: Option<String>,
    pub group_id: Option<i64>,
    pub created_at: i64,
    /// A consent for several communities: all of them, comma-separated (then `group_id` is none).
    pub group_ids: Option<String>,
    /// The bulk run the consent belongs to.
    pub bulk_id: Option<String>,
}

impl OAuthStateRow {
    /// The communities this authorization asks for.
    pub fn communities(&self) -> Vec<GroupId> {
        match &self.group_ids {
            Some(ids) => ids.split(",").filter_map(|id| id.parse().ok()).map(GroupId).collect(),
            None => self.group_id.into_iter().map(GroupId).collect(),
        }
    }
}

impl Store {
    pub async fn insert_session(&self, s: &SessionRow) -> StoreResult<()> {
        let q =
            "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $5)";
        on_pool!(self, pool => sqlx::query(q)
            .bind(&s.id_hash).bind(s.user_id).bind(&s.csrf_token).bind(s.created_at).bind(s.last_seen_at)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn session(&self, id_hash: &str) -> StoreResult<Option<SessionRow>> {
        let q = "SELECT id_hash, user_id, csrf_token, created_at, last_seen_at FROM sessions WHERE id_hash = $1";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, SessionRow>(q).bind(id_hash).fetch_optional(pool).await?))
    }

    pub async fn touch_session(&self, id_hash: &str, now: i64) -> StoreResult<()> {
        let q = "UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1";
        on_pool!(self, pool => sqlx::query(q).bind(id_hash).bind(now).execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        let q = "DELETE FROM sessions WHERE id_hash = $1";
        on_pool!(self, pool => sqlx::query(q).bind(id_hash).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Removes sessions idle since `idle_before` or created before `created_before`, anonymous ones (nobody signed
    /// in) idle since `anonymous_idle_before`, and stale OAuth states. Returns how many sessions went.
    pub async fn delete_expired_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
        anonymous_idle_before: i64,
        states_before: i64,
    ) -> StoreResult<u64> {
        let q = "DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2 \
                 OR (user_id IS NULL AND last_seen_at < $3)";
        let n = on_pool!(self, pool => sqlx::query(q)
            .bind(idle_before).bind(created_before).bind(anonymous_idle_before)
            .execute(pool).await?.rows_affected());
        // A pending authorization lives as long as its session, at most its own TTL.
        let q = "DELETE FROM oauth_states WHERE created_at < $1 \
                 OR NOT EXISTS (SELECT 1 FROM sessions WHERE sessions.id_hash = oauth_states.session_hash)";
        on_pool!(self, pool => sqlx::query(q).bind(states_before).execute(pool).await?.rows_affected());
        Ok(n)
    }

    pub async fn insert_oauth_state(&self, s: &OAuthStateRow) -> StoreResult<()> {
        let q = "INSERT INTO oauth_states \
                 (state_hash, session_hash, kind, verifier, group_id, created_at, group_ids, bulk_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        on_pool!(self, pool => sqlx::query(q)
            .bind(&s.state_hash).bind(&s.session_hash).bind(s.kind).bind(&s.verifier).bind(s.group_id).bind(s.created_at)
            .bind(&s.group_ids).bind(&s.bulk_id)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// A session's new sign-in: its pending one (if any) is dropped with it, in one transaction, so a browser that
    /// keeps its cookie and starts again and again holds one pending sign-in, not hundreds.
    pub async fn replace_sign_in_state(&self, s: &OAuthStateRow) -> StoreResult<()> {
        let drop = "DELETE FROM oauth_states WHERE session_hash = $1 AND kind = $2";
        let q = "INSERT INTO oauth_states \
                 (state_hash, session_hash, kind, verifier, group_id, created_at, group_ids, bulk_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(drop).bind(&s.session_hash).bind(s.kind).execute(&mut *tx).await?;
            sqlx::query(q)
                .bind(&s.state_hash).bind(&s.session_hash).bind(s.kind).bind(&s.verifier).bind(s.group_id)
                .bind(s.created_at).bind(&s.group_ids).bind(&s.bulk_id)
                .execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Removes and returns a pending authorization: a `state` works once.
    pub async fn take_oauth_state(&self, state_hash: &str) -> StoreResult<Option<OAuthStateRow>> {
        let q = "DELETE FROM oauth_states WHERE state_hash = $1 \
                 RETURNING state_hash, session_hash, kind, verifier, group_id, created_at, group_ids, bulk_id";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, OAuthStateRow>(q).bind(state_hash).fetch_optional(pool).await?))
    }
}
