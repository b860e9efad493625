//! The user's role in a community: what VK says now, or the last proof of it. The one owner of "may this user
//! administer this community".
//!
//! VK tells a user token someone's role only with the `groups` scope ("Required scope = groups",
//! https://dev.vk.com/en/reference/objects/group), which VK grants an app only on request. So a role is proven in
//! three ways, freshest first:
//! 1. the user's token, when it has `groups`: `groups.getById` (`admin_level`; `is_admin: 0` is a plain no);
//! 2. the community key: `groups.getMembers(filter=managers)` (its `access_token_type` in the schema includes
//!    community tokens; VK does not document that it answers them, https://dev.vk.com/ru/method/groups.getMembers,
//!    so a refusal means "cannot tell", never "not an administrator");
//! 3. a community consent: "Получить ключ доступа сообщества может только администратор этого сообщества"
//!    (https://dev.vk.com/ru/api/access-token/authcode-flow-community), so a granted consent proves "administrator"
//!    at that moment ([`Roles::prove_by_consent`]).
//!
//! What VK said is remembered for the time to live and written back to the stored list with the time of the proof.
//! When VK cannot tell now, the last proof stands with its age ([`Standing::Proven`]). A missing field never removes
//! a community from anyone's list; only VK's plain "not a manager" does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vk::GroupId;
use vk::UserId;

mod list;

pub use list::{parse_community_link, AddByLink, ListRefresh};

use crate::accounts::{AccountError, Accounts};
use crate::credentials::Credentials;
use crate::model::Role;
use crate::store::{now_ms, CommunityRow, Store, StoreResult};

/// At most this many communities per `groups.getById` (its `group_ids`: "не более 500", dev.vk.com/ru/method/groups.getById).
const GET_BY_ID_MAX: usize = 500;

/// Where a user stands in a community.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// VK says so now (asked within the time to live).
    Confirmed(Role),
    /// VK cannot tell now; the last proof, at `at` (Unix ms), said `role`.
    Proven { role: Role, at: i64 },
    /// Never proven: added by link while VK does not say, and VK cannot tell now. A community consent proves it.
    Unproven,
    /// VK says the user does not manage the community.
    Gone,
}

impl Standing {
    /// The role it stands on, if any.
    pub fn role(self) -> Option<Role> {
        match self {
            Standing::Confirmed(role) | Standing::Proven { role, .. } => Some(role),
            Standing::Unproven | Standing::Gone => None,
        }
    }

    /// May change the community (connect, disconnect, the bot, event types, replays): an administrator, confirmed
    /// by VK now or by the last proof, however old — VK gives no way to ask again, and the admin still runs it.
    pub fn may_change(self) -> bool {
        self.role() == Some(Role::Administrator)
    }

    /// May see what only administrators see (secrets, private message texts, raw events, endpoints, alert
    /// settings) and hand out access (endpoints, their secrets, the manual secret): an administrator confirmed by
    /// VK now, or proven no longer than `fresh` ago. An older proof asks for a fresh consent.
    pub fn may_see_private(self, now: i64, fresh: Duration) -> bool {
        match self {
            Standing::Confirmed(role) => role == Role::Administrator,
            Standing::Proven { role, at } => role == Role::Administrator && now - at <= fresh.as_millis() as i64,
            Standing::Unproven | Standing::Gone => false,
        }
    }

    /// How old the proof is, when VK could not confirm the role now.
    pub fn proof_age_ms(self, now: i64) -> Option<i64> {
        match self {
            Standing::Proven { at, .. } => Some((now - at).max(0)),
            _ => None,
        }
    }
}

/// (user, community) → what VK said, and when.
type Seen = HashMap<(UserId, GroupId), (Standing, Instant)>;

/// What roles are asked with.
#[derive(Clone)]
pub struct Roles {
    accounts: Accounts,
    credentials: Credentials,
    vk: vk::Client,
    store: Store,
    ttl: Duration,
    seen: Arc<Mutex<Seen>>,
}

impl Roles {
    pub fn new(accounts: Accounts, credentials: Credentials, vk: vk::Client, store: Store, ttl: Duration) -> Roles {
        Roles { accounts, credentials, vk, store, ttl, seen: Arc::default() }
    }

    /// Where `user_id` stands in `group_id` (VK asked at most once per time to live).
    pub async fn standing(&self, user_id: UserId, group_id: GroupId) -> Result<Standing, AccountError> {
        let mut all = self.standings(user_id, &[GroupId(group_id.0)]).await?;
        Ok(all.pop().unwrap_or(Standing::Gone))
    }

    /// Where `user_id` stands in each of `group_ids`, in their order. Those not seen within the time to live are
    /// asked: with the user's token in one `groups.getById` per [`GET_BY_ID_MAX`] communities when it has `groups`
    /// (a user key allows 3 calls a second, so fifty communities are one call, not fifty), the rest with each
    /// community's key; what neither can tell stands on its last proof.
    pub async fn standings(&self, user_id: UserId, group_ids: &[GroupId]) -> Result<Vec<Standing>, AccountError> {
        let mut known: HashMap<GroupId, Standing> = HashMap::new();
        {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            for id in group_ids {
                if let Some((standing, _)) = seen.get(&(user_id, *id)).filter(|(_, at)| at.elapsed() < self.ttl) {
                    known.insert(*id, *standing);
                }
            }
        }
        let unknown: Vec<GroupId> = group_ids.iter().copied().filter(|id| !known.contains_key(id)).collect();
        if !unknown.is_empty() {
            let mut told = self.ask_with_user_token(user_id, &unknown).await?;
            let untold: Vec<GroupId> = unknown.iter().copied().filter(|id| !told.contains_key(id)).collect();
            for id in untold {
                if let Some(standing) = self.ask_with_community_key(id, user_id).await {
                    told.insert(id, standing);
                }
            }
            for id in unknown {
                let standing = match told.get(&id) {
                    Some(standing) => {
                        self.write_back(user_id, id, *standing).await?;
                        *standing
                    }
                    None => self.last_proof(user_id, id).await?,
                };
                self.remember(user_id, id, standing);
                known.insert(id, standing);
            }
        }
        Ok(group_ids.iter().map(|id| known.get(id).copied().unwrap_or(Standing::Gone)).collect())
    }

    /// A community consent for `group_id` was granted in `user_id`'s session and brought `key`. Only an
    /// administrator can grant one, but the person at VK's page may have been signed in to VK as someone else: when
    /// the key can list the managers, they decide; when VK refuses that, the consent itself is the proof. Returns
    /// whether `user_id` is proven an administrator.
    pub async fn prove_by_consent(
        &self,
        user_id: UserId,
        group_id: GroupId,
        key: &vk::AccessToken,
    ) -> StoreResult<bool> {
        let standing = match self.vk.groups_get_managers(key, group_id).await {
            Ok(managers) => managers_say(&managers, user_id),
            Err(e) => {
                tracing::info!(group_id = group_id.0, error = %e, "VK does not list the managers to the new key: the consent proves the role");
                Standing::Confirmed(Role::Administrator)
            }
        };
        self.write_back(user_id, group_id, standing).await?;
        self.remember(user_id, group_id, standing);
        Ok(standing == Standing::Confirmed(Role::Administrator))
    }

    /// What the user's token says, for the communities it can tell about (only with `groups`).
    async fn ask_with_user_token(
        &self,
        user_id: UserId,
        ids: &[GroupId],
    ) -> Result<HashMap<GroupId, Standing>, AccountError> {
        let mut told = HashMap::new();
        let keys: Vec<String> = ids.iter().map(GroupId::to_string).collect();
        for chunk in keys.chunks(GET_BY_ID_MAX) {
            let answer = self
                .accounts
                .with_user_token(user_id, |token, scopes| {
                    let vk = self.vk.clone();
                    let ids: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    async move {
                        if !vk::oauth::scope_listed(&scopes, "groups") {
                            return Ok(None);
                        }
                        vk.groups_get_by_id(&token, &ids).await.map(Some)
                    }
                })
                .await;
            let groups = match answer {
                Ok(Some(groups)) => groups,
                // Without `groups` VK says nothing about roles: the community keys and the proofs decide.
                Ok(None) => return Ok(told),
                Err(AccountError::Vk(e)) if !e.needs_reauth() => {
                    tracing::warn!(user_id = user_id.0, error = %e, "VK did not tell the roles now: asking otherwise");
                    return Ok(told);
                }
                Err(e) => return Err(e),
            };
            for group in &groups {
                let standing = match (group.admin_level, group.is_admin) {
                    (Some(level), _) => Standing::Confirmed(Role::from_admin_level(level)),
                    (None, Some(false)) => Standing::Gone,
                    // A missing field is "VK did not say", never "not a manager".
                    (None, _) => continue,
                };
                if let Standing::Confirmed(role) = standing {
                    // VK described the community: keep its name and photo fresh too.
                    self.store.add_user_community(user_id, &CommunityRow::from_vk(group), role, Some(now_ms())).await?;
                }
                told.insert(GroupId(group.id.0), standing);
            }
        }
        Ok(told)
    }

    /// What the community's key says (the managers' list); `None` when there is no key or VK will not list them.
    async fn ask_with_community_key(&self, group_id: GroupId, user_id: UserId) -> Option<Standing> {
        let key = match self.credentials.community_key(group_id).await {
            Ok(Some(key)) => key,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(group_id = group_id.0, error = %e, "the community key does not open: the role stands on its proof");
                return None;
            }
        };
        match self.vk.groups_get_managers(&key.token, group_id).await {
            Ok(managers) => Some(managers_say(&managers, user_id)),
            Err(e) => {
                // A dead key (5) is the bot's and the health check's to handle; here it only means "cannot tell".
                tracing::info!(group_id = group_id.0, error = %e, "VK did not list the managers: the role stands on its proof");
                None
            }
        }
    }

    /// The stored role and its proof, when VK cannot tell now.
    async fn last_proof(&self, user_id: UserId, group_id: GroupId) -> StoreResult<Standing> {
        let Some(c) = self.store.community_for_user(user_id, group_id).await? else { return Ok(Standing::Gone) };
        Ok(match (c.role, c.proven_at) {
            (Role::Unknown, _) | (_, None) => Standing::Unproven,
            (role, Some(at)) => Standing::Proven { role, at },
        })
    }

    /// VK's answer, into the stored list: the role with the time of the proof, or the community gone from it.
    async fn write_back(&self, user_id: UserId, group_id: GroupId, standing: Standing) -> StoreResult<()> {
        match standing {
            Standing::Confirmed(role) => {
                self.store.set_user_role(user_id, group_id, role, now_ms()).await?;
                if role != Role::Administrator {
                    tracing::info!(user_id = user_id.0, group_id = group_id.0, %role, "VK says the user is not the community's administrator");
                }
            }
            Standing::Gone => {
                self.store.remove_user_community(user_id, group_id).await?;
                tracing::info!(
                    user_id = user_id.0,
                    group_id = group_id.0,
                    "VK says the user no longer manages the community"
                );
            }
            Standing::Proven { .. } | Standing::Unproven => {}
        }
        Ok(())
    }

    fn remember(&self, user_id: UserId, group_id: GroupId, standing: Standing) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((user_id, GroupId(group_id.0)), (standing, Instant::now()));
    }

    /// Forgets what VK said about `user_id` (a new sign-in, a consent): the next question goes to VK.
    pub fn forget(&self, user_id: UserId) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).retain(|(u, _), _| *u != user_id);
    }
}

/// What a managers' list says about `user_id`.
fn managers_say(managers: &[vk::Manager], user_id: UserId) -> Standing {
    match managers.iter().find(|m| m.id == user_id).and_then(|m| m.role.admin_level()) {
        Some(level) => Standing::Confirmed(Role::from_admin_level(level)),
        None => Standing::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_proof_still_changes_but_no_longer_sees_private_things() {
        let day = Duration::from_secs(24 * 3600);
        let now = 10 * 24 * 3600 * 1000;
        let fresh = Standing::Proven { role: Role::Administrator, at: now - 3600 * 1000 };
        let old = Standing::Proven { role: Role::Administrator, at: now - 3 * 24 * 3600 * 1000 };
        assert!(fresh.may_change() && fresh.may_see_private(now, day));
        assert!(old.may_change(), "the admin still runs the community");
        assert!(!old.may_see_private(now, day), "secrets need a fresh proof");
        assert_eq!(old.proof_age_ms(now), Some(3 * 24 * 3600 * 1000));
        let confirmed = Standing::Confirmed(Role::Administrator);
        assert!(confirmed.may_change() && confirmed.may_see_private(now, day));
        assert_eq!(confirmed.proof_age_ms(now), None);
        for no in [Standing::Confirmed(Role::Editor), Standing::Unproven, Standing::Gone] {
            assert!(!no.may_change() && !no.may_see_private(now, day), "{no:?}");
        }
        let editor = Standing::Proven { role: Role::Editor, at: now };
        assert!(!editor.may_change());
    }

    #[test]
    fn the_managers_list_decides_and_a_creator_is_an_administrator() {
        let managers = [
            vk::Manager { id: vk::UserId(1), role: vk::ManagerRole::Creator },
            vk::Manager { id: vk::UserId(2), role: vk::ManagerRole::Editor },
            vk::Manager { id: vk::UserId(3), role: vk::ManagerRole::Advertiser },
        ];
        assert_eq!(managers_say(&managers, UserId(1)), Standing::Confirmed(Role::Administrator));
        assert_eq!(managers_say(&managers, UserId(2)), Standing::Confirmed(Role::Editor));
        assert_eq!(managers_say(&managers, UserId(3)), Standing::Gone, "an advertiser manages nothing here");
        assert_eq!(managers_say(&managers, UserId(4)), Standing::Gone);
    }
}
