//! The user's role in a community, confirmed at VK before any change.
//!
//! The stored role comes from the last time the user's list was read, so an administrator VK has since removed
//! would keep control here. Before a change (connect, disconnect, rules, replies, replay, «Проверить») the role is
//! asked of VK (`groups.getById` with the user's token: `admin_level` is there only for the community's managers,
//! VK-FACTS.md "Community info"), remembered for [`Roles`]' time to live, and written back to the stored list.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::accounts::{AccountError, Accounts};
use crate::model::Role;
use crate::store::{CommunityRow, Store};

/// (user, community) → the role VK gave (none: not a manager), and when.
type Seen = HashMap<(i64, i64), (Option<Role>, Instant)>;

pub struct Roles {
    accounts: Accounts,
    vk: vk::Client,
    store: Store,
    ttl: Duration,
    seen: Mutex<Seen>,
}

impl Roles {
    pub fn new(accounts: Accounts, vk: vk::Client, store: Store, ttl: Duration) -> Roles {
        Roles { accounts, vk, store, ttl, seen: Mutex::new(HashMap::new()) }
    }

    /// Whether VK still says `user_id` administers `group_id` (asked at most once per time to live).
    pub async fn is_admin_at_vk(&self, user_id: i64, group_id: i64) -> Result<bool, AccountError> {
        let cached = self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(&(user_id, group_id)).copied();
        if let Some((role, _)) = cached.filter(|(_, at)| at.elapsed() < self.ttl) {
            return Ok(role == Some(Role::Administrator));
        }
        let id = group_id.to_string();
        let groups = self
            .accounts
            .with_user_token(user_id, |token, _| {
                let (vk, id) = (self.vk.clone(), id.clone());
                async move { vk.groups_get_by_id(&token, &[id.as_str()]).await }
            })
            .await?;
        let group = groups.into_iter().find(|g| g.id.0 == group_id);
        let role = group.as_ref().and_then(|g| g.admin_level).map(Role::from_admin_level);
        match (&group, role) {
            (Some(g), Some(role)) => self.store.add_user_community(user_id, &CommunityRow::from_vk(g), role).await?,
            _ => self.store.remove_user_community(user_id, group_id).await?,
        }
        if role != Some(Role::Administrator) {
            tracing::info!(user_id, group_id, ?role, "VK says the user no longer administers the community");
        }
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert((user_id, group_id), (role, Instant::now()));
        Ok(role == Some(Role::Administrator))
    }
}
