//! Who may do what with a community, as extractors: a handler that takes one never runs for anyone else. Another
//! user's community does not exist (404); a manager who may not do a thing gets 403 with a way back.
//!
//! - [`Listed`]: the community is on the user's list, whatever the role — `unknown` too (added by link; VK did not
//!   say). Its page and the connect button, whose consent at VK is the proof.
//! - [`Managed`]: a known role: what any manager may see. What only an administrator may see is asked of VK first
//!   ([`Managed::sees_private`]).
//! - [`Administered`]: changes; VK confirms an administrator now, or by the last proof ([`Standing::may_change`]).
//! - [`Trusted`]: secrets, private texts, raw events, endpoints, alert settings, and handing out access; VK confirms
//!   an administrator now, or a proof fresh enough ([`Standing::may_see_private`]).
//!
//! The decisions are [`crate::roles`]'; this module only turns them into answers.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use vk::GroupId;

use crate::app::AppState;
use crate::error::{AppError, AppResult, Problem};
use crate::model::Role;
use crate::roles::Standing;
use crate::store::{now_ms, UserCommunity};

use super::session::SignedIn;

/// The signed-in user and a community on their list (any role, `unknown` too).
pub struct Listed {
    pub user: SignedIn,
    pub community: UserCommunity,
}

/// The signed-in user and a community they manage (a known role, which VK still confirms or proved last).
pub struct Managed {
    pub user: SignedIn,
    pub community: UserCommunity,
    /// Where VK says the user stands (the community's `role` is VK's).
    pub standing: Standing,
}

/// The signed-in user and a community VK says they administer (now, or by the last proof).
pub struct Administered {
    pub user: SignedIn,
    pub community: UserCommunity,
}

/// The signed-in user and a community they may connect: VK says they administer it, or VK has not said yet and the
/// community consent will prove it (`must_prove`: the consent is asked even if a key is stored).
pub struct Connecting {
    pub user: SignedIn,
    pub community: UserCommunity,
    pub must_prove: bool,
}

/// The signed-in user and a community VK says they administer now (or proved it recently enough).
pub struct Trusted {
    pub user: SignedIn,
    pub community: UserCommunity,
}

impl Managed {
    /// Whether this user may see what only administrators see: an administrator VK confirms now (or who proved it
    /// recently enough).
    pub fn sees_private(&self, app: &AppState) -> bool {
        self.standing.may_see_private(now_ms(), app.settings.timing.proof_fresh)
    }
}

/// The `{id}` of the path, parsed here at the edge: a path that is no community id is a 404.
async fn community_id(parts: &mut Parts, app: &AppState) -> AppResult<GroupId> {
    let params = RawPathParams::from_request_parts(parts, app).await.map_err(|_| AppError::NotFound)?;
    let id = params.iter().find(|(name, _)| *name == "id").map(|(_, value)| value);
    id.and_then(|v| v.parse().ok()).map(GroupId).ok_or(AppError::NotFound)
}

impl FromRequestParts<AppState> for Listed {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> AppResult<Self> {
        let user = SignedIn::from_request_parts(parts, app).await?;
        let id = community_id(parts, app).await?;
        let community = app.store.community_for_user(user.user_id, id).await?.ok_or(AppError::NotFound)?;
        Ok(Listed { user, community })
    }
}

impl FromRequestParts<AppState> for Managed {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> AppResult<Self> {
        let Listed { user, mut community } = Listed::from_request_parts(parts, app).await?;
        if community.role == Role::Unknown {
            return Err(prove_first(community.id));
        }
        // The stored role may be stale: a manager VK has removed reads nothing (VK is asked at most once per the
        // role cache's lifetime).
        let standing = app.roles.standing(user.user_id, community.id).await?;
        match standing.role() {
            Some(role) => community.role = role,
            None => {
                return Err(AppError::shown_with_back(Problem::Forbidden, |t| t.err_no_longer_admin, "/communities"))
            }
        }
        Ok(Managed { user, community, standing })
    }
}

/// The refusal for someone whose role VK has not confirmed yet: the community page asks for the consent.
fn prove_first(group_id: GroupId) -> AppError {
    AppError::shown_with_back(Problem::Forbidden, |t| t.err_prove_first, format!("/communities/{group_id}"))
}

/// An administrator, as VK says now or proved last (the stored role may be stale: VK decides, before any change).
async fn admin_standing(parts: &mut Parts, app: &AppState) -> AppResult<(Managed, Standing)> {
    let stored = Listed::from_request_parts(parts, app).await?.community.role;
    let managed = Managed::from_request_parts(parts, app).await?;
    if !managed.standing.may_change() {
        // Someone VK has just demoted is told so; someone who never was an administrator, that it is not theirs.
        return Err(if stored == Role::Administrator {
            AppError::shown_with_back(Problem::Forbidden, |t| t.err_no_longer_admin, "/communities")
        } else {
            let back = format!("/communities/{}", managed.community.id);
            AppError::shown_with_back(Problem::Forbidden, |t| t.error_forbidden, back)
        });
    }
    let standing = managed.standing;
    Ok((managed, standing))
}

impl FromRequestParts<AppState> for Administered {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> AppResult<Self> {
        let (Managed { user, community, .. }, _) = admin_standing(parts, app).await?;
        Ok(Administered { user, community })
    }
}

impl FromRequestParts<AppState> for Connecting {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> AppResult<Self> {
        let Listed { user, community } = Listed::from_request_parts(parts, app).await?;
        if !matches!(community.role, Role::Administrator | Role::Unknown) {
            let back = format!("/communities/{}", community.id);
            return Err(AppError::shown_with_back(Problem::Forbidden, |t| t.error_forbidden, back));
        }
        match app.roles.standing(user.user_id, community.id).await? {
            // VK has not said: the consent will.
            Standing::Unproven => Ok(Connecting { user, community, must_prove: true }),
            s if s.may_change() => Ok(Connecting { user, community, must_prove: false }),
            _ => Err(AppError::shown_with_back(Problem::Forbidden, |t| t.err_no_longer_admin, "/communities")),
        }
    }
}

impl FromRequestParts<AppState> for Trusted {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> AppResult<Self> {
        let (Managed { user, community, .. }, standing) = admin_standing(parts, app).await?;
        if !standing.may_see_private(now_ms(), app.settings.timing.proof_fresh) {
            let back = format!("/communities/{}", community.id);
            return Err(AppError::shown_with_back(Problem::Forbidden, |t| t.err_proof_too_old, back));
        }
        Ok(Trusted { user, community })
    }
}
