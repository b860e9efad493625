//! HTTP: the UI routes (behind the session/CSRF/language layer), static assets, and the machine endpoints
//! (`/vk/callback`, `/healthz`, `/metrics`), which have no session layer. Handlers are thin: they take an
//! extractor that proves who may do what ([`access`]), call one domain module, and render.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::app::AppState;
use crate::urls;

pub mod access;
pub mod alerts;
pub mod auth;
pub mod bot;
pub mod bulk;
pub mod callback;
pub mod communities;
pub mod connect;
pub mod events;
pub mod forms;
pub mod forward;
pub mod health;
pub mod limits;
pub mod notice;
pub mod render;
pub mod session;

pub fn router(state: AppState) -> Router {
    let ui = Router::new()
        .route("/", get(auth::show_landing))
        .route("/auth/vk/login", get(auth::start_login))
        .route(urls::VKID_CALLBACK_PATH, get(auth::finish_login))
        .route("/logout", post(auth::logout))
        .route("/lang", post(auth::switch_lang))
        .route("/communities", get(communities::list_communities))
        .route("/communities/add", post(communities::add_community))
        .route("/communities/bulk", post(bulk::bulk_action))
        .route("/communities/bulk/{bulk}", get(bulk::show_bulk))
        .route("/communities/bulk/{bulk}/continue", post(bulk::continue_bulk))
        .route("/communities/{id}", get(communities::show_community))
        .route("/communities/{id}/connect", post(connect::connect_community))
        .route(urls::COMMUNITY_CALLBACK_PATH, get(connect::finish_community_auth))
        .route("/communities/{id}/setup", get(connect::show_setup))
        .route("/communities/{id}/setup/status", get(connect::setup_status))
        .route("/communities/{id}/disconnect", post(connect::disconnect_community))
        .route("/communities/{id}/event-types", post(connect::save_events))
        .route("/communities/{id}/manual", get(connect::show_manual).post(connect::save_manual))
        .route("/communities/{id}/manual/secret", post(connect::create_manual_secret))
        .route("/communities/{id}/bot", post(bot::save_bot))
        .route("/communities/{id}/rules", post(bot::add_rule))
        .route("/communities/{id}/rules/{rule}/delete", post(bot::delete_rule))
        .route("/communities/{id}/rules/{rule}/move", post(bot::move_rule))
        .route("/communities/{id}/check", post(health::check_now))
        .route("/communities/{id}/check-path", post(health::prove_path))
        .route("/communities/{id}/events", get(events::show_events))
        .route("/communities/{id}/events/{event}", get(events::show_raw_event))
        .route("/communities/{id}/events/{event}/replay", post(events::replay_event))
        .route("/communities/{id}/alerts", post(alerts::save_email))
        .route(urls::ALERT_CONFIRM_PATH, get(alerts::confirm_email))
        .route("/communities/{id}/endpoints", post(forward::add_endpoint))
        .route("/communities/{id}/endpoints/{endpoint}", get(forward::show_endpoint))
        .route("/communities/{id}/endpoints/{endpoint}/test", post(forward::send_test))
        .route("/communities/{id}/endpoints/{endpoint}/rotate", post(forward::rotate_secret))
        .route("/communities/{id}/endpoints/{endpoint}/replay", post(forward::replay))
        .route("/communities/{id}/endpoints/{endpoint}/disable", post(forward::disable))
        .route("/communities/{id}/endpoints/{endpoint}/enable", post(forward::enable))
        .route("/communities/{id}/endpoints/{endpoint}/delete", post(forward::delete))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), session::ui_layer));
    let callback = Router::new()
        .route(urls::CALLBACK_PATH, post(callback::receive_callback))
        .layer(axum::extract::DefaultBodyLimit::max(crate::receiver::BODY_LIMIT));
    // With its own address, /metrics is not on the public port at all.
    machine_routes(state.settings.metrics.bind.is_none())
        .route(
            "/static/style.css",
            get(|| async { asset("text/css; charset=utf-8", include_str!("../../static/style.css")) }),
        )
        .route(
            "/static/setup.js",
            get(|| async { asset("text/javascript; charset=utf-8", include_str!("../../static/setup.js")) }),
        )
        .route(
            "/static/favicon.svg",
            get(|| async { asset("image/svg+xml", include_str!("../../static/favicon.svg")) }),
        )
        .merge(callback)
        .merge(ui)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Every response: no framing, no type sniffing, no referrer to other sites, and scripts, styles and forms from this
/// site only (no inline script exists; images may come from VK's CDN or the sandbox, as community photos do).
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; img-src 'self' https: http: data:; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

async fn security_headers(request: axum::extract::Request, next: middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, header::HeaderValue::from_static(value));
    }
    response
}

async fn not_found() -> crate::error::AppError {
    crate::error::AppError::NotFound
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

/// 200 when the database answers, 503 otherwise; `x-vkhook-instance` says which process answered (a load balancer's
/// or a test's check that it reached the instance it meant).
async fn healthz(State(app): State<AppState>) -> Response {
    let instance = [("x-vkhook-instance", app.instance_id.clone())];
    match app.store.ping().await {
        Ok(()) => (crate::error::health_status(true), instance, "ok").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (crate::error::health_status(false), "database unavailable").into_response()
        }
    }
}

/// Prometheus text; with `VKHOOK_METRICS_TOKEN`, only for `Authorization: Bearer <token>` (compared in constant
/// time).
async fn metrics(State(app): State<AppState>, headers: header::HeaderMap) -> Response {
    if let Some(token) = &app.settings.metrics.token {
        let supplied = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !vk::callback::secret_eq(token, supplied.as_bytes()) {
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "metrics need a bearer token")
                .into_response();
        }
    }
    let backlog = async {
        let depth = app.store.inbox_depth(None).await?;
        let oldest = app.store.oldest_open_event_at(None).await?;
        let age = oldest.map_or(0.0, |at| (crate::store::now_ms() - at).max(0) as f64 / 1000.0);
        let forwarding = app.store.forward_depth().await?;
        crate::store::StoreResult::Ok((depth, age, forwarding))
    };
    let backlog = backlog.await.ok();
    let long_poll = app.store.long_poll_health().await.ok().map(|h| (h, crate::store::now_ms()));
    let text = app.metrics.render(backlog, long_poll);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

fn machine_routes(with_metrics: bool) -> Router<AppState> {
    let healthz = Router::new().route("/healthz", get(healthz));
    if with_metrics {
        healthz.route("/metrics", get(metrics))
    } else {
        healthz
    }
}

/// `/healthz`, and `/metrics` when `with_metrics` (a worker-only instance, or the metrics port).
pub fn machine_router(state: AppState, with_metrics: bool) -> Router {
    machine_routes(with_metrics).with_state(state)
}
