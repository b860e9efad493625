//! `POST /vk/callback`: the receiver's verdict as VK expects it — exactly `ok` (HTTP 200, no newline) for a stored
//! event, the code as plain text for `confirmation`, `remove` to make VK delete a server we no longer serve, and
//! 400/403/404/503 (with `Retry-After`) otherwise, never `ok`
//! (https://dev.vk.com/ru/api/callback/getting-started). No session layer, no templates.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::receiver::Verdict;

/// What we ask VK to wait when we cannot take an event now.
const RETRY_AFTER_SECS: &str = "10";

fn text(status: StatusCode, body: impl Into<Body>) -> Response {
    let content_type = HeaderValue::from_static("text/plain; charset=utf-8");
    (status, [(header::CONTENT_TYPE, content_type)], body.into()).into_response()
}

/// The answer for a verdict.
pub fn respond(verdict: Verdict) -> Response {
    match verdict {
        Verdict::Stored(_) | Verdict::PathChecked => text(StatusCode::OK, "ok"),
        Verdict::Confirmation(code) => text(StatusCode::OK, code),
        Verdict::Remove => text(StatusCode::OK, "remove"),
        Verdict::Malformed(why) => text(StatusCode::BAD_REQUEST, why),
        Verdict::UnknownCommunity => text(StatusCode::NOT_FOUND, "unknown community"),
        Verdict::NoCode => text(StatusCode::NOT_FOUND, "no confirmation code"),
        Verdict::WrongSecret => text(StatusCode::FORBIDDEN, "wrong secret"),
        Verdict::Unavailable => {
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable, retry later");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            r
        }
    }
}

pub async fn receive_callback(
    State(app): State<AppState>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let started = Instant::now();
    let body = match body {
        Ok(body) => body,
        // Larger than BODY_LIMIT (413), or the connection broke mid-body: counted, never stored.
        Err(rejection) => {
            let response = rejection.into_response();
            let result = if response.status() == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "unreadable" };
            app.metrics.observe_callback("other", response.status().as_u16(), result, started.elapsed());
            return response;
        }
    };
    let (verdict, kind) = app.receiver.accept(&body).await;
    let result = verdict.label();
    let response = respond(verdict);
    app.metrics.observe_callback(kind, response.status().as_u16(), result, started.elapsed());
    response
}
