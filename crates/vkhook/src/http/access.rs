//! "Signed in and manages this community" and "… administers it", as extractors: a handler that takes one never
//! runs for anyone else. Another user's community does not exist (404); a manager who is not an administrator
//! gets 403 with a way back.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;

use crate::app::AppState;
use crate::error::{AppError, AppResult, Problem};
use crate::model::Role;
use crate::store::UserCommunity;

use super::session::SignedIn;

/// The signed-in user and a community they manage (any role), from the route's `{id}`.
pub struct Managed {
    pub user: SignedIn,
    pub community: UserCommunity,
}

/// The signed-in user and a community they administer: only an administrator changes the connection, the bot or
/// the event log.
pub struct Administered {
    pub user: SignedIn,
    pub community: UserCommunity,
}

impl Managed {
    pub fn is_admin(&self) -> bool {
        self.community.role == Role::Administrator
    }
}

async fn community_id(parts: &mut Parts, app: &AppState) -> AppResult<i64> {
    let params = RawPathParams::from_request_parts(parts, app).await.map_err(|_| AppError::NotFound)?;
    let id = params.iter().find(|(name, _)| *name == "id").map(|(_, value)| value);
    id.and_then(|v| v.parse().ok()).ok_or(AppError::NotFound)
}

impl FromRequestParts<AppState> for Managed {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> AppResult<Self> {
        let user = SignedIn::from_request_parts(parts, app).await?;
        let id = community_id(parts, app).await?;
        let community = app.store.community_for_user(user.user_id, id).await?.ok_or(AppError::NotFound)?;
        Ok(Managed { user, community })
    }
}

impl FromRequestParts<AppState> for Administered {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> AppResult<Self> {
        let managed = Managed::from_request_parts(parts, app).await?;
        let back = format!("/communities/{}", managed.community.id);
        if !managed.is_admin() {
            return Err(AppError::shown_with_back(Problem::Forbidden, |t| t.error_forbidden, back));
        }
        // The stored role may be stale: VK decides, before any change.
        if !app.roles.is_admin_at_vk(managed.user.user_id, managed.community.id).await? {
            return Err(AppError::shown_with_back(Problem::Forbidden, |t| t.err_no_longer_admin, "/communities"));
        }
        Ok(Administered { user: managed.user, community: managed.community })
    }
}
