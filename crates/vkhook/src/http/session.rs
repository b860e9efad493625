//! Server-side sessions, the language, and CSRF — one layer for every UI route (not the VK callback).
//!
//! The cookie holds a random id; the store keeps only its SHA-256. Sessions end after an idle period and an
//! absolute lifetime. Every POST must carry the session's CSRF token (compared in constant time) or gets 403
//! before any handler runs.

use axum::body::{to_bytes, Body};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use vk::UserId;

use crate::accounts::hash_hex;
use crate::app::AppState;
use crate::error::{AppError, AppResult, EndSession, ErrorPage, Problem};
use crate::i18n::Lang;
use crate::store::{now_ms, SessionRow};

pub const SESSION_COOKIE: &str = "vkhook_session";
pub const LANG_COOKIE: &str = "vkhook_lang";
/// Largest UI form body.
const FORM_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Session {
    pub id_hash: String,
    pub user_id: Option<i64>,
    pub csrf: String,
    pub last_seen_at: i64,
}

/// Who is asking, in which language: available to every UI handler.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub session: Option<Session>,
    pub lang: Lang,
}

/// A signed-in user. Handlers that take it redirect anonymous visitors to the landing page.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: UserId,
    pub session: Session,
    pub lang: Lang,
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> AppResult<Self> {
        parts.extensions.get::<Viewer>().cloned().ok_or_else(|| anyhow::anyhow!("UI layer missing").into())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> AppResult<Self> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        match viewer.session {
            Some(session) => match session.user_id {
                Some(user_id) => Ok(SignedIn { user_id: UserId(user_id), session, lang: viewer.lang }),
                None => Err(AppError::SignInRequired),
            },
            None => Err(AppError::SignInRequired),
        }
    }
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A fresh random value for session ids and CSRF tokens.
pub fn new_secret() -> String {
    vk::oauth::random_urlsafe(32)
}

pub fn set_cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}"))
        .expect("cookie values are URL-safe")
}

/// Starts a session with a fresh id; returns the `Set-Cookie` header value and the session.
pub async fn start_session(app: &AppState, user_id: Option<i64>) -> AppResult<(HeaderValue, Session)> {
    let id = new_secret();
    let now = now_ms();
    let row =
        SessionRow { id_hash: hash_hex(&id), user_id, csrf_token: new_secret(), created_at: now, last_seen_at: now };
    app.store.insert_session(&row).await?;
    let max_age = app.settings.timing.session_absolute.as_secs() as i64;
    let cookie = set_cookie(SESSION_COOKIE, &id, max_age, app.secure_cookies());
    Ok((cookie, Session { id_hash: row.id_hash, user_id, csrf: row.csrf_token, last_seen_at: now }))
}

pub fn clear_session_cookie(app: &AppState) -> HeaderValue {
    set_cookie(SESSION_COOKIE, "", 0, app.secure_cookies())
}

async fn load_session(app: &AppState, headers: &HeaderMap) -> AppResult<Option<Session>> {
    let Some(id) = cookie(headers, SESSION_COOKIE).filter(|v| !v.is_empty()) else { return Ok(None) };
    let hash = hash_hex(id);
    let Some(row) = app.store.session(&hash).await? else { return Ok(None) };
    let now = now_ms();
    let idle = app.settings.timing.session_idle.as_millis() as i64;
    let absolute = app.settings.timing.session_absolute.as_millis() as i64;
    if now - row.last_seen_at > idle || now - row.created_at > absolute {
        app.store.delete_session(&hash).await?;
        return Ok(None);
    }
    Ok(Some(Session {
        id_hash: row.id_hash,
        user_id: row.user_id,
        csrf: row.csrf_token,
        last_seen_at: row.last_seen_at,
    }))
}

fn request_lang(headers: &HeaderMap) -> Lang {
    if let Some(lang) = cookie(headers, LANG_COOKIE).and_then(Lang::parse) {
        return lang;
    }
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map(Lang::from_accept_language)
        .unwrap_or_default()
}

/// Whether `supplied` is the session's CSRF token, in constant time.
pub fn csrf_matches(session: &Session, supplied: &str) -> bool {
    supplied.len() == session.csrf.len() && bool::from(supplied.as_bytes().ct_eq(session.csrf.as_bytes()))
}

/// The CSRF check of a POST: a session's form must carry its token (`csrf` in the urlencoded body). Without a session
/// only choosing a language works: it only sets a preference cookie.
pub fn post_allowed(session: Option<&Session>, body: &[u8], path: &str) -> bool {
    let supplied = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v));
    match (session, supplied) {
        (Some(s), Some(token)) => csrf_matches(s, &token),
        (None, _) => path == "/lang",
        (Some(_), None) => false,
    }
}

/// The UI layer: session, language, CSRF on every POST, and error pages in the user's language.
pub async fn ui_layer(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let lang = request_lang(request.headers());
    let session = match load_session(&app, request.headers()).await {
        Ok(s) => s,
        Err(e) => return render_error_response(e.into_response(), lang),
    };
    let mut request = request;
    if request.method() == Method::POST {
        let (parts, body) = request.into_parts();
        let bytes = match to_bytes(body, FORM_LIMIT).await {
            Ok(b) => b,
            Err(_) => {
                let page = AppError::shown(Problem::TooLarge, |t| t.error_bad_request);
                return render_error_response(page.into_response(), lang);
            }
        };
        if !post_allowed(session.as_ref(), &bytes, parts.uri.path()) {
            tracing::info!(path = parts.uri.path(), "POST refused: missing or wrong CSRF token");
            return render_error_response(AppError::Csrf.into_response(), lang);
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    let touch = session.as_ref().filter(|s| now_ms() - s.last_seen_at > 60_000).map(|s| s.id_hash.clone());
    let session_hash = session.as_ref().map(|s| s.id_hash.clone());
    request.extensions_mut().insert(Viewer { session, lang });
    let mut response = next.run(request).await;
    if let (Some(hash), Some(EndSession)) = (&session_hash, response.extensions().get::<EndSession>().copied()) {
        if let Err(e) = app.store.delete_session(hash).await {
            tracing::warn!(error = %e, "could not end the session");
        }
        response.headers_mut().append(header::SET_COOKIE, clear_session_cookie(&app));
        return response;
    }
    if let Some(hash) = touch {
        if let Err(e) = app.store.touch_session(&hash, now_ms()).await {
            tracing::warn!(error = %e, "could not record session activity");
        }
    }
    // A page for someone with a session carries a CSRF token (and often private data): never cached.
    if session_hash.is_some() {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    render_error_response(response, lang)
}

/// Renders an [`ErrorPage`] response as HTML in `lang`; other responses pass through.
fn render_error_response(response: Response, lang: Lang) -> Response {
    let Some(page) = response.extensions().get::<ErrorPage>().cloned() else { return response };
    let (mut parts, _) = response.into_parts();
    let html = super::render::error_page(lang, &page);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(html))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(csrf: &str) -> Session {
        Session { id_hash: "h".into(), user_id: Some(1), csrf: csrf.into(), last_seen_at: 0 }
    }

    #[test]
    fn a_post_needs_its_sessions_token_and_only_the_language_works_without_a_session() {
        let s = session("tok3n");
        assert!(post_allowed(Some(&s), b"csrf=tok3n&name=x", "/communities/1/bot"));
        assert!(post_allowed(Some(&s), b"name=x&csrf=tok3n", "/lang"), "wherever the field is");
        assert!(!post_allowed(Some(&s), b"csrf=tok3N", "/communities/1/bot"), "one letter off");
        assert!(!post_allowed(Some(&s), b"csrf=tok3", "/communities/1/bot"), "a prefix");
        assert!(!post_allowed(Some(&s), b"csrf=tok3nn", "/communities/1/bot"), "longer");
        assert!(!post_allowed(Some(&s), b"csrf=", "/communities/1/bot"));
        assert!(!post_allowed(Some(&s), b"name=x", "/communities/1/bot"), "no token");
        assert!(!post_allowed(Some(&s), b"name=x", "/lang"), "a session's form carries its token, /lang too");
        assert!(!post_allowed(Some(&s), b"\xff\xfe", "/communities/1/bot"), "not a form");
        assert!(post_allowed(None, b"lang=en", "/lang"));
        assert!(!post_allowed(None, b"csrf=tok3n", "/communities/1/bot"), "no session: nothing but /lang");
        assert!(!post_allowed(None, b"", "/lang/"));
        assert!(csrf_matches(&session(""), ""), "an empty token matches only an empty one");
        assert!(!csrf_matches(&session(""), "x"));
    }
}
