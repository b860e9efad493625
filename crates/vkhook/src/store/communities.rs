//! Communities, who administers them, and their settings.

use super::{now_ms, on_pool, Store, StoreResult};
use crate::model::{CommunityStatus, Role};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CommunityRow {
    pub id: i64,
    pub name: String,
    pub screen_name: String,
    pub photo: Option<String>,
}

impl CommunityRow {
    /// The row for a community as VK describes it (`groups.get` / `groups.getById`).
    pub fn from_vk(g: &vk::Group) -> CommunityRow {
        CommunityRow {
            id: g.id.0,
            name: g.name.clone(),
            screen_name: g.screen_name.clone(),
            photo: g.photo_100.clone(),
        }
    }
}

/// A community as one of its managers sees it in the list.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserCommunity {
    pub id: i64,
    pub name: String,
    pub screen_name: String,
    pub photo: Option<String>,
    pub role: Role,
    pub callback_configured: bool,
    pub status: CommunityStatus,
}

impl Store {
    pub async fn upsert_community(&self, c: &CommunityRow) -> StoreResult<()> {
        let now = now_ms();
        let q = "INSERT INTO communities (id, name, screen_name, photo, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, screen_name = excluded.screen_name, \
                 photo = excluded.photo, updated_at = excluded.updated_at";
        on_pool!(self, pool => sqlx::query(q)
            .bind(c.id).bind(&c.name).bind(&c.screen_name).bind(&c.photo).bind(now)
            .execute(pool).await?.rows_affected());
        let q =
            "INSERT INTO community_settings (group_id, updated_at) VALUES ($1, $2) ON CONFLICT (group_id) DO NOTHING";
        on_pool!(self, pool => sqlx::query(q).bind(c.id).bind(now).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// The community's name, as VK last told us.
    pub async fn community_name(&self, group_id: i64) -> StoreResult<Option<String>> {
        let q = "SELECT name FROM communities WHERE id = $1";
        Ok(on_pool!(self, pool => sqlx::query_scalar(q).bind(group_id).fetch_optional(pool).await?))
    }

    /// Records that `user_id` manages `community` with `role`.
    pub async fn add_user_community(&self, user_id: i64, community: &CommunityRow, role: Role) -> StoreResult<()> {
        self.upsert_community(community).await?;
        let q = "INSERT INTO community_admins (user_id, group_id, role, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, group_id) DO UPDATE SET role = excluded.role, updated_at = excluded.updated_at";
        on_pool!(self, pool => sqlx::query(q).bind(user_id).bind(community.id).bind(role).bind(now_ms())
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Replaces the set of communities `user_id` manages with what VK just listed.
    pub async fn set_user_communities(&self, user_id: i64, list: &[(CommunityRow, Role)]) -> StoreResult<()> {
        for (community, role) in list {
            self.add_user_community(user_id, community, *role).await?;
        }
        let ids: Vec<i64> = list.iter().map(|(c, _)| c.id).collect();
        let current: Vec<i64> = {
            let q = "SELECT group_id FROM community_admins WHERE user_id = $1";
            on_pool!(self, pool => sqlx::query_scalar(q).bind(user_id).fetch_all(pool).await?)
        };
        for gone in current.into_iter().filter(|id| !ids.contains(id)) {
            self.remove_user_community(user_id, gone).await?;
        }
        Ok(())
    }

    pub async fn remove_user_community(&self, user_id: i64, group_id: i64) -> StoreResult<()> {
        let q = "DELETE FROM community_admins WHERE user_id = $1 AND group_id = $2";
        on_pool!(self, pool => sqlx::query(q).bind(user_id).bind(group_id).execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn user_communities(&self, user_id: i64) -> StoreResult<Vec<UserCommunity>> {
        let q = "SELECT c.id, c.name, c.screen_name, c.photo, a.role, s.callback_configured, s.status \
                 FROM community_admins a JOIN communities c ON c.id = a.group_id \
                 JOIN community_settings s ON s.group_id = c.id \
                 WHERE a.user_id = $1 ORDER BY c.name, c.id";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, UserCommunity>(q).bind(user_id).fetch_all(pool).await?))
    }

    /// The community, if `user_id` manages it.
    pub async fn community_for_user(&self, user_id: i64, group_id: i64) -> StoreResult<Option<UserCommunity>> {
        let q = "SELECT c.id, c.name, c.screen_name, c.photo, a.role, s.callback_configured, s.status \
                 FROM community_admins a JOIN communities c ON c.id = a.group_id \
                 JOIN community_settings s ON s.group_id = c.id \
                 WHERE a.user_id = $1 AND a.group_id = $2";
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, UserCommunity>(q).bind(user_id).bind(group_id).fetch_optional(pool).await?),
        )
    }
}
