//! Users and their VK ID tokens.

use super::{now_ms, on_pool, Store, StoreResult};
use vk::UserId;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub first_name: String,
    pub last_name: String,
    pub avatar: Option<String>,
}

/// A user's VK ID tokens; `access_token` and `refresh_token` are vault values.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserTokensRow {
    pub user_id: i64,
    pub access_token: String,
    pub refresh_token: String,
    pub device_id: String,
    pub scopes: String,
    pub expires_at: i64,
}

impl Store {
    pub async fn upsert_user(&self, user: &UserRow) -> StoreResult<()> {
        let q = "INSERT INTO users (id, first_name, last_name, avatar, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5) \
                 ON CONFLICT (id) DO UPDATE SET first_name = excluded.first_name, last_name = excluded.last_name, \
                 avatar = excluded.avatar, updated_at = excluded.updated_at";
        on_pool!(self, pool => sqlx::query(q)
            .bind(user.id).bind(&user.first_name).bind(&user.last_name).bind(&user.avatar).bind(now_ms())
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn user(&self, id: i64) -> StoreResult<Option<UserRow>> {
        let q = "SELECT id, first_name, last_name, avatar FROM users WHERE id = $1";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, UserRow>(q).bind(id).fetch_optional(pool).await?))
    }

    pub async fn save_user_tokens(&self, t: &UserTokensRow) -> StoreResult<()> {
        let q = "INSERT INTO user_tokens (user_id, access_token, refresh_token, device_id, scopes, expires_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (user_id) DO UPDATE SET access_token = excluded.access_token, \
                 refresh_token = excluded.refresh_token, device_id = excluded.device_id, scopes = excluded.scopes, \
                 expires_at = excluded.expires_at, updated_at = excluded.updated_at";
        on_pool!(self, pool => sqlx::query(q)
            .bind(t.user_id).bind(&t.access_token).bind(&t.refresh_token).bind(&t.device_id).bind(&t.scopes)
            .bind(t.expires_at).bind(now_ms())
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn user_tokens(&self, user_id: UserId) -> StoreResult<Option<UserTokensRow>> {
        let q = "SELECT user_id, access_token, refresh_token, device_id, scopes, expires_at FROM user_tokens WHERE user_id = $1";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, UserTokensRow>(q).bind(user_id).fetch_optional(pool).await?))
    }

    /// Forgets a user's tokens (refreshing failed or they signed out everywhere).
    pub async fn delete_user_tokens(&self, user_id: UserId) -> StoreResult<()> {
        let q = "DELETE FROM user_tokens WHERE user_id = $1";
        on_pool!(self, pool => sqlx::query(q).bind(user_id).execute(pool).await?.rows_affected());
        Ok(())
    }
}
