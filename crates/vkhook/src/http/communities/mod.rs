//! `/communities`: the communities the user manages and adding one by link ([`list`]), and a community's page
//! ([`page`]); the words both use for roles and states.

mod list;
mod page;

pub use list::{add_community, duration_words, list_communities};
pub use page::show_community;

use crate::i18n::Msg;
use crate::model::{CommunityStatus, Role};

pub fn role_label(t: &'static Msg, role: Role) -> &'static str {
    match role {
        Role::Administrator => t.role_administrator,
        Role::Editor => t.role_editor,
        Role::Moderator => t.role_moderator,
        Role::Unknown => t.role_unknown,
    }
}

/// The status badge: (text, css class).
pub fn status_label(t: &'static Msg, status: CommunityStatus) -> (&'static str, &'static str) {
    match status {
        CommunityStatus::Connected => (t.status_connected, "ok"),
        CommunityStatus::Connecting => (t.status_connecting, "warn"),
        CommunityStatus::Failed => (t.status_failed, "err"),
        CommunityStatus::NeedsReauth => (t.status_needs_reauth, "err"),
        CommunityStatus::NotConnected => (t.status_not_connected, ""),
    }
}
