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

/// At most this many communities per `groups.getById` (its `group_ids`: "не более 500", dev.vk.com/ru/method/groups.getById).
const GET_BY_ID_MAX: usize = 500;

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
        Ok(self.administered_at_vk(user_id, &[group_id]).await?.contains(&group_id))
    }

    /// Those of `group_ids` VK says `user_id` administers, in their order. The ones not seen within the time to live
    /// are asked in one `groups.getById` per [`GET_BY_ID_MAX`] communities (a user key allows 3 calls a second,
    /// VK-FACTS.md "Rate limits", so fifty communities are one call, not fifty).
    pub async fn administered_at_vk(&self, user_id: i64, group_ids: &[i64]) -> Result<Vec<i64>, AccountError> {
        let mut known: HashMap<i64, Option<Role>> = HashMap::new();
        {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            for id in group_ids {
                if let Some((role, _)) = seen.get(&(user_id, *id)).filter(|(_, at)| at.elapsed() < self.ttl) {
                    known.insert(*id, *role);
                }
            }
        }
        let unknown: Vec<String> = group_ids.iter().filter(|id| !known.contains_key(id)).map(i64::to_string).collect();
        for chunk in unknown.chunks(GET_BY_ID_MAX) {
            let groups = self
                .accounts
                .with_user_token(user_id, |token, _| {
                    let vk = self.vk.clone();
                    let ids: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    async move { vk.groups_get_by_id(&token, &ids).await }
                })
                .await?;
            for id in chunk.iter().filter_map(|id| id.parse::<i64>().ok()) {
                let group = groups.iter().find(|g| g.id.0 == id);
                let role = group.and_then(|g| g.admin_level).map(Role::from_admin_level);
                match (group, role) {
                    (Some(g), Some(role)) => {
                        self.store.add_user_community(user_id, &CommunityRow::from_vk(g), role).await?
                    }
                    _ => self.store.remove_user_community(user_id, id).await?,
                }
                if role != Some(Role::Administrator) {
                    tracing::info!(
                        user_id,
                        group_id = id,
                        ?role,
                        "VK says the user no longer administers the community"
                    );
                }
                self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert((user_id, id), (role, Instant::now()));
                known.insert(id, role);
            }
        }
        Ok(group_ids.iter().copied().filter(|id| known.get(id) == Some(&Some(Role::Administrator))).collect())
    }
}
