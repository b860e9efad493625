//! Landing page, VK ID sign-in, sign-out and the language switch.

use askama::Template;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::accounts::{SignInFailure, VkIdRedirect};
use crate::app::AppState;
use crate::error::{AppError, AppResult, Problem};
use crate::i18n::Lang;
use crate::logging::Untrusted;

use super::notice::Notice;
use super::render::{render, Layout};
use super::session::{self, SignedIn, Viewer, LANG_COOKIE};

#[derive(Template)]
#[template(path = "landing.html")]
struct LandingPage {
    layout: Layout,
    notice: Option<&'static str>,
}

#[derive(Deserialize)]
pub struct LandingQuery {
    notice: Option<String>,
}

pub async fn show_landing(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(q): Query<LandingQuery>,
) -> AppResult<Response> {
    let t = viewer.lang.msg();
    let notice = Notice::from_query(q.notice.as_deref())
        .filter(|n| matches!(n, Notice::SigninAgain | Notice::SignedOut | Notice::AlertsConfirmed))
        .map(|n| n.text(t));
    let user_name = user_name(&app, &viewer).await?;
    render(LandingPage { layout: Layout::new(&viewer, user_name, "/"), notice })
}

/// The signed-in user's name for the header.
pub async fn user_name(app: &AppState, viewer: &Viewer) -> AppResult<Option<String>> {
    let Some(user_id) = viewer.session.as_ref().and_then(|s| s.user_id) else { return Ok(None) };
    Ok(app.store.user(user_id).await?.map(|u| format!("{} {}", u.first_name, u.last_name)))
}

/// «Войти через VK ID»: a session (anonymous until signed in) holds the pending state and verifier, which a new start
/// replaces. Each start writes rows, so every start is limited per client address, with a cookie or without.
pub async fn start_login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    viewer: Viewer,
) -> AppResult<Response> {
    let client = super::limits::client_address(peer, &headers);
    if let Err(wait) = app.login_limit.hit(client) {
        tracing::info!(%client, "sign-in starts over the limit: 429");
        return Err(AppError::shown(Problem::TooMany { retry_after_secs: wait.as_secs().max(1) }, |t| {
            t.error_too_many
        }));
    }
    let (cookie, session) = match viewer.session {
        Some(s) => (None, s),
        None => {
            let (cookie, s) = session::start_session(&app, None).await?;
            (Some(cookie), s)
        }
    };
    let url = app.accounts.begin_sign_in(&session.id_hash).await?;
    let mut response = Redirect::to(url.as_str()).into_response();
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// VK ID's redirect back: exchange, then a new session (fresh id) for the user.
pub async fn finish_login(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(back): Query<VkIdRedirect>,
) -> AppResult<Response> {
    let Some(session) = viewer.session else {
        // An error redirect says what happened even without our session: never "bad state" for it.
        return Err(match vk::oauth::redirect_error(back.error.as_deref(), back.error_description.as_deref()) {
            Some(e) if e.is_access_denied() => {
                AppError::shown_with_back(Problem::Forbidden, |t| t.signin_denied, "/auth/vk/login")
            }
            Some(_) => AppError::shown_with_back(Problem::VkUnavailable, |t| t.signin_failed, "/auth/vk/login"),
            None => AppError::shown_with_back(Problem::BadRequest, |t| t.signin_state, "/auth/vk/login"),
        });
    };
    match app.accounts.finish_sign_in(&session.id_hash, &back).await {
        Ok(user_id) => {
            // A fresh session id at sign-in: the pre-login id (known to anyone who planted it) dies here.
            app.store.delete_session(&session.id_hash).await?;
            let (cookie, _) = session::start_session(&app, Some(user_id)).await?;
            let mut response = Redirect::to("/communities").into_response();
            response.headers_mut().append(header::SET_COOKIE, cookie);
            Ok(response)
        }
        Err(SignInFailure::Denied) => {
            Err(AppError::shown_with_back(Problem::Forbidden, |t| t.signin_denied, "/auth/vk/login"))
        }
        Err(SignInFailure::BadState) => {
            Err(AppError::shown_with_back(Problem::BadRequest, |t| t.signin_state, "/auth/vk/login"))
        }
        Err(SignInFailure::VkId(e)) => {
            tracing::warn!(error = %Untrusted(&e.to_string()), "VK ID sign-in failed");
            Err(AppError::shown_with_back(Problem::VkUnavailable, |t| t.signin_failed, "/auth/vk/login"))
        }
        Err(SignInFailure::Store(e)) => Err(e.into()),
    }
}

pub async fn logout(State(app): State<AppState>, user: SignedIn) -> AppResult<Response> {
    app.store.delete_session(&user.session.id_hash).await?;
    tracing::info!(user_id = user.user_id.0, "signed out");
    let mut response = Redirect::to(&format!("/?notice={}", Notice::SignedOut)).into_response();
    response.headers_mut().append(header::SET_COOKIE, session::clear_session_cookie(&app));
    Ok(response)
}

#[derive(Deserialize)]
pub struct LangForm {
    lang: String,
    #[serde(default)]
    back: String,
}

/// The language switch: a preference cookie, then back where the user was (same-site paths only).
pub async fn switch_lang(State(app): State<AppState>, Form(form): Form<LangForm>) -> AppResult<Response> {
    let lang = Lang::parse(&form.lang).ok_or_else(|| AppError::shown(Problem::BadRequest, |t| t.error_bad_request))?;
    let back = same_origin_path(&form.back).unwrap_or("/").to_owned();
    let mut headers = HeaderMap::new();
    let cookie = format!(
        "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax{}",
        lang.code(),
        if app.secure_cookies() { "; Secure" } else { "" }
    );
    headers.insert(header::SET_COOKIE, cookie.parse().expect("ascii cookie"));
    Ok((headers, Redirect::to(&back)).into_response())
}

/// `back` if it is a path on this site and nothing else: browsers read `//host`, `/\host` and paths with tabs or
/// new lines as another site, so those (and anything with a scheme) are refused.
pub fn same_origin_path(back: &str) -> Option<&str> {
    if !back.starts_with('/') || back.starts_with("//") || back.contains('\\') {
        return None;
    }
    if back.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    let base = url::Url::parse("http://vkhook.invalid/").expect("a valid base");
    let joined = base.join(back).ok()?;
    (joined.origin() == base.origin() && joined.host_str() == Some("vkhook.invalid")).then_some(back)
}

#[cfg(test)]
mod tests {
    use super::same_origin_path;

    #[test]
    fn only_paths_on_this_site_are_followed_back() {
        for good in ["/", "/communities/1001?notice=x#bot", "/communities/1001/events?type=like_add", "/%2F%2Fevil"] {
            assert_eq!(same_origin_path(good), Some(good), "{good:?}");
        }
        for bad in [
            "",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\evil.example",
            "/\tevil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n//evil.example",
            " /x",
            "https://evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/\u{0}x",
            "/\u{a0}//evil",
        ] {
            assert_eq!(same_origin_path(bad), None, "{bad:?}");
        }
    }
}
