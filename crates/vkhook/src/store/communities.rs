//! Communities, who administers them, and their settings.

use super::{now_ms, on_pool, Store, StoreResult};
use crate::model::{CommunityStatus, Role};
use vk::GroupId;
use vk::UserId;

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
    pub id: GroupId,
    pub name: String,
    pub screen_name: String,
    pub photo: Option<String>,
    pub role: Role,
    /// When VK last confirmed the role (Unix ms); none: never (a community added by link).
    pub proven_at: Option<i64>,
    pub callback_configured: bool,
    pub status: CommunityStatus,
}

/// A [`UserCommunity`]'s columns, and where they come from (`a` the admin row, `c` the community, `s` its settings).
pub(super) const USER_COMMUNITY_COLUMNS: &str =
    "c.id, c.name, c.screen_name, c.photo, a.role, a.proven_at, s.callback_configured, s.status";
const USER_COMMUNITY_FROM: &str = "FROM community_admins a JOIN communities c ON c.id = a.group_id \
    JOIN community_settings s ON s.group_id = c.id";

const UPSERT_COMMUNITY: &str = "INSERT INTO communities (id, name, screen_name, photo, updated_at) \
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
    screen_name = excluded.screen_name, photo = excluded.photo, updated_at = excluded.updated_at";
const INSERT_SETTINGS: &str =
    "INSERT INTO community_settings (group_id, updated_at) VALUES ($1, $2) ON CONFLICT (group_id) DO NOTHING";
/// A proof (`$5` not null) sets the role and its time; `unknown` without a proof never overwrites a known role.
const UPSERT_ADMIN: &str =
    "INSERT INTO community_admins (user_id, group_id, role, updated_at, proven_at) VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (user_id, group_id) DO UPDATE SET \
    role = CASE WHEN excluded.proven_at IS NOT NULL OR community_admins.proven_at IS NULL THEN excluded.role \
                ELSE community_admins.role END, \
    proven_at = COALESCE(excluded.proven_at, community_admins.proven_at), updated_at = excluded.updated_at";

/// A proof from VK's list is written again when older than this (so a list the same as before writes nothing).
pub const PROOF_REFRESH_MS: i64 = 60_000;

/// A community on the overview (`/communities`): everything one row shows, from one query for the whole page.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OverviewRow {
    #[sqlx(flatten)]
    pub community: UserCommunity,
    /// VK's status for our server, as the last reconcile or check stored it.
    pub vk_server_status: Option<crate::model::VkServerView>,
    pub last_error: Option<String>,
    pub bot_comments: bool,
    pub bot_messages: bool,
    pub paused: bool,
    pub last_event_at: Option<i64>,
    pub events_24h: i64,
    /// Events, and the first one's time, in the silence signal's window (the usual pace).
    pub events_window: i64,
    pub window_first_at: Option<i64>,
    /// Events not handled yet.
    pub backlog: i64,
    pub endpoints: i64,
    /// Endpoints disabled or failing.
    pub endpoints_in_trouble: i64,
    /// Forwarded events not delivered yet.
    pub forward_backlog: i64,
    /// VK delivers by Callback (set up by vkhook or by hand, and confirmed).
    pub callback_configured: bool,
    /// vkhook polls Bots Long Poll for it.
    pub polled: bool,
    /// Why Long Poll does not run, if it does not.
    pub long_poll_trouble: Option<String>,
}

impl Store {
    /// The overview of every community `user_id` manages, in one query (VK's status is the stored one, never a VK
    /// call per row). `since`: the start of "the last 24 hours"; `window`: the start of the silence signal's window.
    pub async fn community_overview(&self, user_id: UserId, since: i64, window: i64) -> StoreResult<Vec<OverviewRow>> {
        let by_group = self.open_by_group();
        let q = format!(
            "SELECT {USER_COMMUNITY_COLUMNS}, s.vk_server_status, s.last_error, s.bot_comments, s.bot_messages, \
                    s.paused_reason IS NOT NULL AS paused, \
                    (SELECT i.received_at FROM inbox_events i WHERE i.group_id = c.id ORDER BY i.id DESC LIMIT 1) \
                        AS last_event_at, \
                    (SELECT COUNT(*) FROM inbox_events i WHERE i.group_id = c.id AND i.received_at >= $2) AS events_24h, \
                    (SELECT COUNT(*) FROM inbox_events i WHERE i.group_id = c.id AND i.received_at >= $3) \
                        AS events_window, \
                    (SELECT MIN(i.received_at) FROM inbox_events i WHERE i.group_id = c.id AND i.received_at >= $3) \
                        AS window_first_at, \
                    (SELECT COUNT(*) FROM inbox_events i{by_group} WHERE i.group_id = c.id \
                        AND i.status IN ('pending', 'processing')) AS backlog, \
                    (SELECT COUNT(*) FROM endpoints e WHERE e.group_id = c.id) AS endpoints, \
                    (SELECT COUNT(*) FROM endpoints e WHERE e.group_id = c.id \
                        AND (NOT e.enabled OR e.failing_since IS NOT NULL)) AS endpoints_in_trouble, \
                    (SELECT COUNT(*) FROM endpoints e JOIN deliveries d ON d.endpoint_id = e.id \
                        WHERE e.group_id = c.id AND d.status IN ('pending', 'sending')) AS forward_backlog, \
                    COALESCE(s.callback_configured, FALSE) AS callback_configured, \
                    EXISTS (SELECT 1 FROM long_poll lp WHERE lp.group_id = c.id) AS polled, \
                    (SELECT lp.trouble FROM long_poll lp WHERE lp.group_id = c.id) AS long_poll_trouble \
             {USER_COMMUNITY_FROM} WHERE a.user_id = $1 ORDER BY c.name, c.id"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, OverviewRow>(&q).bind(user_id).bind(since).bind(window).fetch_all(pool).await?),
        )
    }

    pub async fn upsert_community(&self, c: &CommunityRow) -> StoreResult<()> {
        let now = now_ms();
        on_pool!(self, pool => sqlx::query(UPSERT_COMMUNITY)
            .bind(c.id).bind(&c.name).bind(&c.screen_name).bind(&c.photo).bind(now)
            .execute(pool).await?.rows_affected());
        on_pool!(self, pool => sqlx::query(INSERT_SETTINGS).bind(c.id).bind(now).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Records what «Проверить путь» found.
    pub async fn record_path_check(
        &self,
        group_id: GroupId,
        at: i64,
        outcome: crate::model::PathOutcome,
        detail: &str,
    ) -> StoreResult<()> {
        let q = "UPDATE community_settings SET path_check_at = $2, path_check_outcome = $3, path_check_detail = $4 \
                 WHERE group_id = $1";
        on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(at).bind(outcome).bind(detail)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// The last «Проверить путь»: when, what, and the detail.
    pub async fn path_check(&self, group_id: GroupId) -> StoreResult<Option<(i64, crate::model::PathOutcome, String)>> {
        let q = "SELECT path_check_at, path_check_outcome, path_check_detail FROM community_settings \
                 WHERE group_id = $1 AND path_check_at IS NOT NULL";
        type Row = (i64, crate::model::PathOutcome, Option<String>);
        let row: Option<Row> = on_pool!(self, pool => sqlx::query_as(q).bind(group_id).fetch_optional(pool).await?);
        Ok(row.map(|(at, outcome, detail)| (at, outcome, detail.unwrap_or_default())))
    }

    /// The community's name, as VK last told us.
    pub async fn community_name(&self, group_id: GroupId) -> StoreResult<Option<String>> {
        let q = "SELECT name FROM communities WHERE id = $1";
        Ok(on_pool!(self, pool => sqlx::query_scalar(q).bind(group_id).fetch_optional(pool).await?))
    }

    /// Records that `user_id` manages `community` with `role`, proven by VK at `proven_at` (none: not proven, e.g.
    /// `unknown` when added by link — which never overwrites a role VK proved).
    pub async fn add_user_community(
        &self,
        user_id: UserId,
        community: &CommunityRow,
        role: Role,
        proven_at: Option<i64>,
    ) -> StoreResult<()> {
        self.upsert_community(community).await?;
        on_pool!(self, pool => sqlx::query(UPSERT_ADMIN).bind(user_id).bind(community.id).bind(role).bind(now_ms())
            .bind(proven_at).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// VK proved `user_id`'s `role` in a community of their list at `at`.
    pub async fn set_user_role(&self, user_id: UserId, group_id: GroupId, role: Role, at: i64) -> StoreResult<()> {
        let q = "UPDATE community_admins SET role = $3, proven_at = $4, updated_at = $4 \
                 WHERE user_id = $1 AND group_id = $2";
        on_pool!(self, pool => sqlx::query(q).bind(user_id).bind(group_id).bind(role).bind(at)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Replaces the set of communities `user_id` manages with what VK just listed (a role: VK's proof of it, now;
    /// none: VK listed the community without saying the role, and the stored one stays). Writes only what changed,
    /// in one transaction: the list is refreshed on every visit of `/communities`, and an admin of 200 communities
    /// must not pay 600 commits for a list that is the same as before (a proof older than [`PROOF_REFRESH_MS`] is
    /// renewed).
    pub async fn set_user_communities(
        &self,
        user_id: UserId,
        list: &[(CommunityRow, Option<Role>)],
    ) -> StoreResult<()> {
        type Stored = (i64, String, String, Option<String>, Role, Option<i64>);
        let q = "SELECT c.id, c.name, c.screen_name, c.photo, a.role, a.proven_at FROM community_admins a \
                 JOIN communities c ON c.id = a.group_id WHERE a.user_id = $1";
        let current: Vec<Stored> = on_pool!(self, pool => sqlx::query_as(q).bind(user_id).fetch_all(pool).await?);
        let now = now_ms();
        let changed: Vec<&(CommunityRow, Option<Role>)> = list
            .iter()
            .filter(|(c, role)| {
                !current.iter().any(|(id, name, screen, photo, r, proven)| {
                    let same_role = match role {
                        Some(role) => r == role && proven.is_some_and(|at| now - at < PROOF_REFRESH_MS),
                        None => true,
                    };
                    *id == c.id && *name == c.name && *screen == c.screen_name && *photo == c.photo && same_role
                })
            })
            .collect();
        let gone: Vec<i64> = current.iter().map(|s| s.0).filter(|id| !list.iter().any(|(c, _)| c.id == *id)).collect();
        if changed.is_empty() && gone.is_empty() {
            return Ok(());
        }
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for (c, role) in &changed {
                sqlx::query(UPSERT_COMMUNITY).bind(c.id).bind(&c.name).bind(&c.screen_name).bind(&c.photo).bind(now)
                    .execute(&mut *tx).await?;
                sqlx::query(INSERT_SETTINGS).bind(c.id).bind(now).execute(&mut *tx).await?;
                let proven_at = role.map(|_| now);
                sqlx::query(UPSERT_ADMIN).bind(user_id).bind(c.id).bind(role.unwrap_or(Role::Unknown)).bind(now)
                    .bind(proven_at).execute(&mut *tx).await?;
            }
            for id in &gone {
                sqlx::query("DELETE FROM community_admins WHERE user_id = $1 AND group_id = $2")
                    .bind(user_id).bind(id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn remove_user_community(&self, user_id: UserId, group_id: GroupId) -> StoreResult<()> {
        let q = "DELETE FROM community_admins WHERE user_id = $1 AND group_id = $2";
        on_pool!(self, pool => sqlx::query(q).bind(user_id).bind(group_id).execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn user_communities(&self, user_id: UserId) -> StoreResult<Vec<UserCommunity>> {
        let q =
            format!("SELECT {USER_COMMUNITY_COLUMNS} {USER_COMMUNITY_FROM} WHERE a.user_id = $1 ORDER BY c.name, c.id");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, UserCommunity>(&q).bind(user_id).fetch_all(pool).await?))
    }

    /// The community, if `user_id` manages it.
    pub async fn community_for_user(&self, user_id: UserId, group_id: GroupId) -> StoreResult<Option<UserCommunity>> {
        let q =
            format!("SELECT {USER_COMMUNITY_COLUMNS} {USER_COMMUNITY_FROM} WHERE a.user_id = $1 AND a.group_id = $2");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, UserCommunity>(&q).bind(user_id).bind(group_id)
            .fetch_optional(pool).await?))
    }
}
