//! The user's list of communities: refreshed from VK when their token may read it, and added to by link when it may
//! not. Both write roles with the time VK said them (a role VK did not say stays unknown until a consent proves it).

use vk::UserId;

use super::Roles;
use crate::accounts::AccountError;
use crate::model::Role;
use crate::store::{now_ms, CommunityRow};

/// How a refresh of the list from VK went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListRefresh {
    /// VK's list is stored.
    Refreshed,
    /// The token has no `groups`, or VK refused it: the list is what was added by link.
    NoGroupsScope,
    /// The user hides their communities at VK (error 260).
    Hidden,
    /// VK did not answer; the stored list is shown.
    VkUnavailable,
}

/// How adding a community by its link went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddByLink {
    /// On the list now, with the role VK said (`Unknown` when it said nothing).
    Added { group_id: vk::GroupId, role: Role },
    /// Not a community link or id.
    BadInput,
    /// VK knows no such community.
    NotFound,
    /// VK says plainly that the user does not manage it.
    NotManaged,
}

impl Roles {
    /// Refreshes the user's communities from VK (`groups.get filter=moder extended=1`) when the token allows it.
    /// VK's list with `groups` is the proof of each role; a community listed without its level keeps the stored role
    /// (a missing field never removes or demotes anyone).
    pub async fn refresh_list(&self, user_id: UserId) -> Result<ListRefresh, AccountError> {
        let vk = self.vk.clone();
        let result = self
            .accounts
            .with_user_token(user_id, |token, scopes| {
                let vk = vk.clone();
                async move {
                    if !vk::oauth::scope_listed(&scopes, "groups") {
                        return Ok(None);
                    }
                    vk.groups_get(&token, &["moder"]).await.map(Some)
                }
            })
            .await;
        match result {
            Ok(None) => Ok(ListRefresh::NoGroupsScope),
            Ok(Some(list)) => {
                let managed: Vec<(CommunityRow, Option<Role>)> = list
                    .items
                    .iter()
                    .map(|g| (CommunityRow::from_vk(g), g.admin_level.map(Role::from_admin_level)))
                    .collect();
                self.store.set_user_communities(user_id, &managed).await?;
                Ok(ListRefresh::Refreshed)
            }
            Err(AccountError::Vk(e))
                if matches!(e.code(), Some(vk::code::ACCESS_DENIED | vk::code::PERMISSION_DENIED)) =>
            {
                Ok(ListRefresh::NoGroupsScope)
            }
            Err(AccountError::Vk(e)) if e.code() == Some(vk::code::GROUPS_LIST_HIDDEN) => Ok(ListRefresh::Hidden),
            Err(AccountError::Vk(e)) if !e.needs_reauth() => {
                tracing::warn!(user_id = user_id.0, error = %e, "could not list communities at VK");
                Ok(ListRefresh::VkUnavailable)
            }
            // VK refused the refreshed token too: the user signs in again.
            Err(AccountError::Vk(_)) => Err(AccountError::SignInAgain),
            Err(e) => Err(e),
        }
    }

    /// «Добавить сообщество»: the community behind what the admin typed, asked of VK (`groups.getById`), goes on their
    /// list. VK tells roles only to a user token with `groups` (https://dev.vk.com/en/reference/objects/group): its
    /// level, or its plain "not a manager" (`is_admin: 0`), decides; when it says nothing, the community is added
    /// with its role unknown, and the community consent proves it.
    pub async fn add_by_link(&self, user_id: UserId, typed: &str) -> Result<AddByLink, AccountError> {
        let Some(key) = parse_community_link(typed) else { return Ok(AddByLink::BadInput) };
        let vk = self.vk.clone();
        let result = self
            .accounts
            .with_user_token(user_id, |token, _| {
                let (vk, key) = (vk.clone(), key.clone());
                async move { vk.groups_get_by_id(&token, &[key.as_str()]).await }
            })
            .await;
        let group = match result {
            Ok(groups) => groups.into_iter().next(),
            Err(AccountError::Vk(e)) if matches!(e.code(), Some(vk::code::INVALID_PARAM | vk::code::NOT_FOUND)) => None,
            Err(AccountError::Vk(e)) if e.needs_reauth() => return Err(AccountError::SignInAgain),
            Err(e) => return Err(e),
        };
        let Some(group) = group else { return Ok(AddByLink::NotFound) };
        let role = match (group.admin_level, group.is_admin) {
            (Some(level), _) => Some(Role::from_admin_level(level)),
            (None, Some(false)) => return Ok(AddByLink::NotManaged),
            (None, _) => None,
        };
        let proven_at = role.map(|_| now_ms());
        let role = role.unwrap_or(Role::Unknown);
        self.store.add_user_community(user_id, &CommunityRow::from_vk(&group), role, proven_at).await?;
        tracing::info!(user_id = user_id.0, group_id = group.id.0, %role, "community added by link");
        Ok(AddByLink::Added { group_id: group.id, role })
    }
}

/// What the admin typed into «Добавить сообщество»: a community key for `groups.getById`.
pub fn parse_community_link(input: &str) -> Option<String> {
    let mut s = input.trim();
    for prefix in ["https://", "http://"] {
        s = s.strip_prefix(prefix).unwrap_or(s);
    }
    for prefix in ["www.", "m."] {
        s = s.strip_prefix(prefix).unwrap_or(s);
    }
    for host in ["vk.com/", "vk.ru/", "vkontakte.ru/"] {
        s = s.strip_prefix(host).unwrap_or(s);
    }
    let s = s.split(['?', '#', '/']).next().unwrap_or_default().trim().trim_start_matches('@');
    if s.is_empty() || s.len() > 64 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return None;
    }
    if let Ok(id) = s.parse::<i64>() {
        return (id > 0).then(|| id.to_string());
    }
    Some(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::parse_community_link;

    #[test]
    fn community_links_in_the_shapes_admins_paste() {
        for (input, key) in [
            ("vk.com/club1001", "club1001"),
            ("https://vk.com/zerno_coffee", "zerno_coffee"),
            ("https://m.vk.com/public1002?w=wall", "public1002"),
            ("  1001 ", "1001"),
            ("@zerno_coffee", "zerno_coffee"),
            ("vk.ru/club7/", "club7"),
        ] {
            assert_eq!(parse_community_link(input).as_deref(), Some(key), "{input}");
        }
        for bad in ["", "   ", "https://vk.com/", "-5", "<script>", "a b"] {
            assert_eq!(parse_community_link(bad), None, "{bad}");
        }
    }
}
