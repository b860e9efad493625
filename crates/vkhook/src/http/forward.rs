//! Forwarding's pages: the «Пересылка событий» card on the community page, the endpoint page, and its actions
//! (add, test, rotate, replay, disable, enable, delete). Administrators only: every handler takes [`Administered`]
//! — or [`Trusted`] where it shows an endpoint or hands out access (a new endpoint, a secret) — and every form goes
//! through the CSRF layer.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::ExposeSecret;
use serde::Deserialize;
use vk::GroupId;

use crate::app::AppState;
use crate::error::{AppError, AppResult, MsgFn, Problem};
use crate::forward::target::Refused;
use crate::forward::AddError;
use crate::i18n::Msg;
use crate::model::{DeliveryStatus, DisabledReason};
use crate::store::{EndpointRow, UserCommunity};

use super::access::{Administered, Trusted};
use super::auth::user_name;
use super::forms::FormPairs;
use super::notice::Notice;
use super::render::{format_time, render, Layout};
use super::session::Viewer;

/// Attempts the endpoint page lists.
const ATTEMPTS_SHOWN: i64 = 100;

/// One endpoint on the card and at the top of its page.
pub struct EndpointView {
    pub id: String,
    pub name: String,
    pub url: String,
    pub types: String,
    pub enabled: bool,
    pub state: &'static str,
    pub state_class: &'static str,
    pub failing_since: Option<String>,
    pub queued: i64,
    pub failed: i64,
}

fn state_label(t: &'static Msg, e: &EndpointRow) -> (&'static str, &'static str) {
    match (e.enabled, e.disabled_reason) {
        (true, _) if e.failing_since.is_some() => (t.endpoint_state_enabled, "warn"),
        (true, _) => (t.endpoint_state_enabled, "ok"),
        (false, Some(DisabledReason::Gone)) => (t.endpoint_state_gone, "err"),
        (false, Some(DisabledReason::Failing)) => (t.endpoint_state_failing, "err"),
        (false, _) => (t.endpoint_state_admin, ""),
    }
}

async fn endpoint_view(app: &AppState, t: &'static Msg, e: &EndpointRow) -> AppResult<EndpointView> {
    let queue = app.store.endpoint_queue(&e.id).await?;
    let (state, state_class) = state_label(t, e);
    let types = e.types();
    Ok(EndpointView {
        id: e.id.clone(),
        name: e.name.clone(),
        url: e.url.clone(),
        types: if types.is_empty() { t.forward_all_types.to_owned() } else { types.join(", ") },
        enabled: e.enabled,
        state,
        state_class,
        failing_since: e.failing_since.filter(|_| e.enabled).map(format_time),
        queued: queue.open,
        failed: queue.failed,
    })
}

/// The card's endpoints (for administrators; others do not see the card).
pub async fn forwarding_card(app: &AppState, t: &'static Msg, group_id: GroupId) -> AppResult<Vec<EndpointView>> {
    let mut views = Vec::new();
    for e in app.store.endpoints(group_id).await? {
        views.push(endpoint_view(app, t, &e).await?);
    }
    Ok(views)
}

/// What the admin reads for a refused address. An address refused for where it leads — an internal literal, a name
/// that resolves inside, a name that does not resolve — gets one message: telling them apart would let anyone with a
/// community map the operator's internal DNS.
fn refused_message(e: &AddError) -> MsgFn {
    match e {
        AddError::NotUrl | AddError::Refused(Refused::NoHost | Refused::Credentials) => |t| t.endpoint_url_invalid,
        AddError::Refused(Refused::NotHttps) => |t| t.endpoint_url_not_https,
        AddError::Refused(Refused::Internal(_) | Refused::Unresolved) => |t| t.endpoint_url_refused,
        AddError::UnknownType(_) => |t| t.endpoint_types_invalid,
        AddError::TooMany(_) => |t| t.endpoint_too_many,
        AddError::Store(_) => |t| t.error_internal,
    }
}

pub async fn add_endpoint(
    State(app): State<AppState>,
    Trusted { user, community }: Trusted,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let form = FormPairs::parse(&body);
    let (name, url) = (form.get("name").unwrap_or_default(), form.get("url").unwrap_or_default());
    match app.forwarding.add(community.id, user.user_id.0, name, url, &form.all("type")).await {
        Ok(endpoint) => {
            tracing::info!(group_id = community.id.0, endpoint = %endpoint.id, "forwarding endpoint added");
            Ok(redirect(&endpoint, Notice::EndpointAdded, "#secret"))
        }
        Err(AddError::Store(e)) => Err(e.into()),
        Err(e) => {
            tracing::info!(group_id = community.id.0, reason = %e, "forwarding endpoint refused");
            let back = format!("/communities/{}#forwarding", community.id);
            Err(AppError::shown_with_back(Problem::Invalid, refused_message(&e), back))
        }
    }
}

fn redirect(e: &EndpointRow, notice: Notice, rest: &str) -> Response {
    let to = format!("/communities/{}/endpoints/{}?notice={}{rest}", e.group_id, e.id, notice.as_str());
    Redirect::to(&to).into_response()
}

async fn find(app: &AppState, community: &UserCommunity, endpoint: &str) -> AppResult<EndpointRow> {
    app.store.endpoint(community.id, endpoint).await?.ok_or(AppError::NotFound)
}

pub struct AttemptView {
    pub delivery_id: i64,
    pub event_id: String,
    pub event_type: String,
    pub attempt: i64,
    pub time: String,
    pub result: String,
    pub ok: bool,
    pub duration: String,
    pub response: String,
    pub delivery: &'static str,
}

fn delivery_label(t: &'static Msg, s: DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::Pending => t.delivery_pending,
        DeliveryStatus::Sending => t.delivery_sending,
        DeliveryStatus::Delivered => t.delivery_delivered,
        DeliveryStatus::Failed => t.delivery_failed,
    }
}

#[derive(Template)]
#[template(path = "communities/endpoint.html")]
struct EndpointPage {
    layout: Layout,
    csrf: String,
    community: UserCommunity,
    endpoint: EndpointView,
    notice: Option<&'static str>,
    secret: Option<String>,
    test_types: &'static [&'static str],
    attempts: Vec<AttemptView>,
}

#[derive(Deserialize)]
pub struct EndpointQuery {
    notice: Option<String>,
}

const ENDPOINT_NOTICES: [Notice; 6] = [
    Notice::EndpointAdded,
    Notice::EndpointTestSent,
    Notice::EndpointRotated,
    Notice::EndpointReplayQueued,
    Notice::EndpointDisabled,
    Notice::EndpointEnabled,
];

pub async fn show_endpoint(
    State(app): State<AppState>,
    Trusted { user, community }: Trusted,
    viewer: Viewer,
    Path((_, endpoint)): Path<(String, String)>,
    Query(q): Query<EndpointQuery>,
) -> AppResult<Response> {
    let t = user.lang.msg();
    let row = find(&app, &community, &endpoint).await?;
    // Shown once, on the first view after it was made or rotated, and never cached; masked after.
    let secret = if app.store.take_endpoint_reveal(community.id, &row.id).await? {
        Some(app.forwarding.reveal_secret(&row)?.expose_secret().to_owned())
    } else {
        None
    };
    let attempts = app
        .store
        .endpoint_attempts(&row.id, ATTEMPTS_SHOWN)
        .await?
        .into_iter()
        .map(|a| AttemptView {
            delivery_id: a.delivery_id,
            event_id: a.event_id,
            event_type: a.event_type,
            attempt: a.attempt,
            time: format_time(a.at),
            ok: a.status_code.is_some_and(|c| (200..300).contains(&c)),
            result: match (a.status_code, a.error) {
                (Some(code), _) => format!("HTTP {code}"),
                (None, Some(error)) => error,
                (None, None) => String::new(),
            },
            duration: format!("{} ms", a.duration_ms),
            response: a.response.unwrap_or_default(),
            delivery: delivery_label(t, a.delivery_status),
        })
        .collect();
    let notice = Notice::from_query(q.notice.as_deref()).filter(|n| ENDPOINT_NOTICES.contains(n)).map(|n| n.text(t));
    let here = format!("/communities/{}/endpoints/{}", community.id, row.id);
    let page = EndpointPage {
        layout: Layout::new(&viewer, user_name(&app, &viewer).await?, &here),
        csrf: user.session.csrf.clone(),
        endpoint: endpoint_view(&app, t, &row).await?,
        notice,
        secret,
        test_types: &vk::DEFAULT_SUBSCRIPTION,
        attempts,
        community,
    };
    let mut response = render(page)?;
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    Ok(response)
}

pub async fn send_test(
    State(app): State<AppState>,
    Administered { community, .. }: Administered,
    Path((_, endpoint)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let row = find(&app, &community, &endpoint).await?;
    // A test event costs a request to someone's server: a few a minute per community.
    app.test_limit.hit(community.id.0).map_err(|wait| {
        AppError::shown_with_back(
            Problem::TooMany { retry_after_secs: wait.as_secs().max(1) },
            |t| t.error_too_many,
            format!("/communities/{}/endpoints/{}", community.id, row.id),
        )
    })?;
    let form = FormPairs::parse(&body);
    let event_type = form.text("type").filter(|t| vk::EVENT_TYPES.contains(t)).unwrap_or("message_new");
    app.forwarding.send_test(&row, event_type).await?;
    Ok(redirect(&row, Notice::EndpointTestSent, "#attempts"))
}

pub async fn rotate_secret(
    State(app): State<AppState>,
    Trusted { community, .. }: Trusted,
    Path((_, endpoint)): Path<(String, String)>,
) -> AppResult<Response> {
    let row = find(&app, &community, &endpoint).await?;
    app.forwarding.rotate(&row).await?;
    tracing::info!(group_id = community.id.0, endpoint = %row.id, "forwarding secret rotated");
    Ok(redirect(&row, Notice::EndpointRotated, "#secret"))
}

/// «Повторить» (a `delivery` field: that one) or «Повторить неудачные» (none: every given-up one).
pub async fn replay(
    State(app): State<AppState>,
    Administered { community, .. }: Administered,
    Path((_, endpoint)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let row = find(&app, &community, &endpoint).await?;
    match FormPairs::parse(&body).text("delivery") {
        Some(id) => {
            let id = id.parse().map_err(|_| AppError::NotFound)?;
            if !app.forwarding.replay(&row, id).await? {
                return Err(AppError::shown_with_back(
                    Problem::Conflict,
                    |t| t.endpoint_replay_busy,
                    format!("/communities/{}/endpoints/{}", community.id, row.id),
                ));
            }
        }
        None => {
            app.forwarding.replay_failed(&row).await?;
        }
    }
    Ok(redirect(&row, Notice::EndpointReplayQueued, "#attempts"))
}

pub async fn disable(
    State(app): State<AppState>,
    Administered { community, .. }: Administered,
    Path((_, endpoint)): Path<(String, String)>,
) -> AppResult<Response> {
    switch(&app, &community, &endpoint, false).await
}

pub async fn enable(
    State(app): State<AppState>,
    Administered { community, .. }: Administered,
    Path((_, endpoint)): Path<(String, String)>,
) -> AppResult<Response> {
    switch(&app, &community, &endpoint, true).await
}

/// «Включить» / «Отключить».
async fn switch(app: &AppState, community: &UserCommunity, endpoint: &str, enabled: bool) -> AppResult<Response> {
    let row = find(app, community, endpoint).await?;
    app.forwarding.set_enabled(&row, enabled).await?;
    let notice = if enabled { Notice::EndpointEnabled } else { Notice::EndpointDisabled };
    Ok(redirect(&row, notice, ""))
}

pub async fn delete(
    State(app): State<AppState>,
    Administered { community, .. }: Administered,
    Path((_, endpoint)): Path<(String, String)>,
) -> AppResult<Response> {
    let row = find(&app, &community, &endpoint).await?;
    app.forwarding.delete(&row).await?;
    tracing::info!(group_id = community.id.0, endpoint = %row.id, "forwarding endpoint deleted");
    Ok(Notice::EndpointDeleted.redirect(community.id, "#forwarding"))
}
