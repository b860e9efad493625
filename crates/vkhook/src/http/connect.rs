//! The connect button, the community authorization's redirect, the progress page, the status card's actions
//! (events, «Перенастроить», «Отключить») and the manual setup.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::app::AppState;
use crate::connect::{self, AuthFailure, CommunityRedirect, ConnectOptions, Started, VkProblem};
use crate::error::{AppError, AppResult};
use crate::i18n::{fill, Msg};
use crate::store::{now_ms, SetupRow, Step, UserCommunity};

use super::auth::user_name;
use super::forms::FormPairs;
use super::render::{render, Layout};
use super::session::{SignedIn, Viewer};

/// The community, if the signed-in user manages it (404 otherwise: another user's community does not exist).
pub async fn managed(app: &AppState, user: &SignedIn, id: &str) -> AppResult<UserCommunity> {
    let id: i64 = id.parse().map_err(|_| AppError::NotFound)?;
    app.store.community_for_user(user.user_id, id).await?.ok_or(AppError::NotFound)
}

/// The community, if the signed-in user is its administrator: only an administrator changes the connection or
/// the bot (others get 403 with a way back; non-managers 404).
pub async fn administered(app: &AppState, user: &SignedIn, id: &str) -> AppResult<UserCommunity> {
    let community = managed(app, user, id).await?;
    if community.role != "administrator" {
        return Err(AppError::shown_with_back(
            StatusCode::FORBIDDEN,
            |t| t.error_forbidden,
            format!("/communities/{}", community.id),
        ));
    }
    Ok(community)
}

/// Pages with secrets or live state are not cached.
pub fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

pub async fn connect_community(
    State(app): State<AppState>,
    user: SignedIn,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let community = administered(&app, &user, &id).await?;
    let form = FormPairs::parse(&body);
    let options = ConnectOptions {
        replace_server_id: form.get("replace_server_id").and_then(|v| v.parse().ok()),
        reauthorize: form.get("reauth") == Some("1"),
        bot_enabled: form.has("bot_enabled"),
        bot_reply: form.text("bot_reply").map(|r| r.chars().take(4000).collect()),
    };
    tracing::info!(group_id = community.id, user_id = user.user_id, "connect pressed");
    match connect::start(&app, community.id, user.user_id, &user.session.id_hash, options).await? {
        Started::Running | Started::AlreadyRunning => {
            Ok(Redirect::to(&format!("/communities/{}/setup", community.id)).into_response())
        }
        Started::NeedsToken(url) => Ok(Redirect::to(url.as_str()).into_response()),
    }
}

/// oauth.vk.com's redirect after the admin granted (or refused) the community token.
pub async fn finish_community_auth(
    State(app): State<AppState>,
    user: SignedIn,
    Query(back): Query<CommunityRedirect>,
) -> AppResult<Response> {
    match connect::finish_community_auth(&app, &user.session.id_hash, user.user_id, &back).await {
        Ok(group_id) => Ok(Redirect::to(&format!("/communities/{group_id}/setup")).into_response()),
        Err(AuthFailure::BadState) => {
            Err(AppError::shown_with_back(StatusCode::BAD_REQUEST, |t| t.signin_state, "/communities"))
        }
        Err(AuthFailure::Denied(g)) => {
            Err(AppError::shown_with_back(StatusCode::FORBIDDEN, |t| t.err_denied, format!("/communities/{g}")))
        }
        Err(AuthFailure::NoManage(g)) => {
            Err(AppError::shown_with_back(StatusCode::FORBIDDEN, |t| t.err_no_manage, format!("/communities/{g}")))
        }
        Err(AuthFailure::NotAdmin(g)) => {
            Err(AppError::shown_with_back(StatusCode::FORBIDDEN, |t| t.err_not_admin, format!("/communities/{g}")))
        }
        Err(AuthFailure::Vk(g, e)) => {
            tracing::warn!(group_id = g, error = %e, "community authorization failed at VK");
            Err(AppError::shown_with_back(
                StatusCode::BAD_GATEWAY,
                |t| t.err_vk_unavailable,
                format!("/communities/{g}"),
            ))
        }
        Err(AuthFailure::Other(e)) => Err(e),
    }
}

pub struct StepView {
    pub key: &'static str,
    pub name: &'static str,
    pub state: String,
    pub state_label: &'static str,
}

pub fn step_views(t: &'static Msg, setup: &SetupRow) -> Vec<StepView> {
    Step::ALL
        .iter()
        .map(|step| {
            let (key, name) = match step {
                Step::Token => ("token", t.step_token),
                Step::Code => ("code", t.step_code),
                Step::Server => ("server", t.step_server),
                Step::Events => ("events", t.step_events),
                Step::Confirm => ("confirm", t.step_confirm),
            };
            let state = setup.step(*step).to_owned();
            StepView { key, name, state_label: step_label(t, &state), state }
        })
        .collect()
}

fn step_label(t: &'static Msg, state: &str) -> &'static str {
    match state {
        "running" => t.step_running,
        "done" => t.step_done,
        "failed" => t.step_failed,
        _ => t.step_pending,
    }
}

/// The admin-facing message for a stored error kind.
pub fn error_message(t: &'static Msg, kind: &str, callback_url: &str) -> String {
    match kind {
        "denied" => t.err_denied.into(),
        "no_manage" => t.err_no_manage.into(),
        "reauth" => t.err_reauth.into(),
        "not_admin" => t.err_not_admin.into(),
        "vk_unavailable" => t.err_vk_unavailable.into(),
        "servers_limit" => t.err_servers_limit.into(),
        "confirm_unreached" => fill(t.err_confirm_unreached, &[("url", callback_url)]),
        "confirm_rejected" => t.err_confirm_rejected.into(),
        "confirm_timeout" => t.err_confirm_timeout.into(),
        "server_gone" => t.err_server_gone.into(),
        "internal" => t.error_internal.into(),
        _ => t.err_vk_error.into(),
    }
}

#[derive(Template)]
#[template(path = "communities/setup.html")]
struct SetupPage {
    layout: Layout,
    community: UserCommunity,
    steps: Vec<StepView>,
    running: bool,
    waiting_token: bool,
    done: bool,
    error: Option<String>,
    took: Option<String>,
}

pub async fn show_setup(
    State(app): State<AppState>,
    user: SignedIn,
    viewer: Viewer,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let community = managed(&app, &user, &id).await?;
    let Some(setup) = app.store.setup(community.id).await? else {
        return Ok(Redirect::to(&format!("/communities/{}", community.id)).into_response());
    };
    // A run whose runner died (its lease ran out) is picked up again when someone looks at it.
    if setup.state == "running" && setup.lease_until < now_ms() {
        connect::spawn_run(&app, setup.group_id, setup.run_id.clone(), None);
    }
    let t = user.lang.msg();
    let took = (setup.state == "done").then(|| {
        let ms = setup.finished_at.unwrap_or(setup.updated_at) - setup.started_at;
        // Two decimals: a connect usually takes well under a second.
        let seconds = format!("{:.2}", ms as f64 / 1000.0);
        let seconds = if t.lang_code == "ru" { seconds.replace('.', ",") } else { seconds };
        fill(t.setup_took, &[("seconds", &seconds), ("calls", &setup.vk_calls.to_string())])
    });
    let error = (setup.state == "failed")
        .then(|| error_message(t, setup.error_kind.as_deref().unwrap_or_default(), &connect::callback_url(&app)));
    render(SetupPage {
        layout: Layout::new(&viewer, user_name(&app, &viewer).await?, &format!("/communities/{}/setup", community.id)),
        steps: step_views(t, &setup),
        running: !setup.is_finished(),
        waiting_token: setup.state == "waiting_token",
        done: setup.state == "done",
        error,
        took,
        community,
    })
}

/// The same, as JSON, for the progress page's small script.
pub async fn setup_status(State(app): State<AppState>, user: SignedIn, Path(id): Path<String>) -> AppResult<Response> {
    let community = managed(&app, &user, &id).await?;
    let setup = app.store.setup(community.id).await?.ok_or(AppError::NotFound)?;
    let t = user.lang.msg();
    let steps: Vec<serde_json::Value> = step_views(t, &setup)
        .into_iter()
        .map(|s| serde_json::json!({"key": s.key, "state": s.state, "label": s.state_label}))
        .collect();
    Ok(no_store(
        Json(serde_json::json!({"state": setup.state, "finished": setup.is_finished(), "steps": steps}))
            .into_response(),
    ))
}

pub async fn disconnect_community(
    State(app): State<AppState>,
    user: SignedIn,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let community = administered(&app, &user, &id).await?;
    let notice = match connect::disconnect(&app, community.id).await? {
        connect::Disconnected::Removed | connect::Disconnected::NothingAtVk => "disconnected",
        connect::Disconnected::TokenDead => "disconnected_token_dead",
    };
    Ok(Redirect::to(&format!("/communities/{}?notice={notice}", community.id)).into_response())
}

pub async fn save_events(
    State(app): State<AppState>,
    user: SignedIn,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let community = administered(&app, &user, &id).await?;
    let chosen = FormPairs::parse(&body).all("event");
    let notice = match connect::save_events(&app, community.id, &chosen).await? {
        Ok(()) => "events_saved",
        Err(VkProblem::Vk(e)) => {
            tracing::warn!(group_id = community.id, error = %e, "could not save events at VK");
            "events_failed"
        }
        Err(_) => "events_failed",
    };
    Ok(Redirect::to(&format!("/communities/{}?notice={notice}", community.id)).into_response())
}

#[derive(Template)]
#[template(path = "communities/manual.html")]
struct ManualPage {
    layout: Layout,
    csrf: String,
    community: UserCommunity,
    is_admin: bool,
    callback_url: String,
    secret: Option<String>,
    events: Vec<&'static str>,
    steps: Vec<&'static str>,
    confirmation: Option<String>,
    notice: Option<String>,
    error: Option<&'static str>,
}

#[derive(Deserialize)]
pub struct ManualQuery {
    notice: Option<String>,
    scopes: Option<String>,
}

pub async fn show_manual(
    State(app): State<AppState>,
    user: SignedIn,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<ManualQuery>,
) -> AppResult<Response> {
    let community = managed(&app, &user, &id).await?;
    manual_page(&app, &user, &viewer, community, q, None).await
}

async fn manual_page(
    app: &AppState,
    user: &SignedIn,
    viewer: &Viewer,
    community: UserCommunity,
    q: ManualQuery,
    error: Option<&'static str>,
) -> AppResult<Response> {
    let t = user.lang.msg();
    let is_admin = community.role == "administrator";
    // The secret is shown to the community's administrator only: it is what they paste at VK.
    let secret = if is_admin { connect::manual_secret(app, community.id, false).await? } else { None };
    let settings = app.store.community_settings(community.id).await?;
    let confirmation = settings.filter(|s| s.setup_mode == "manual").and_then(|s| s.confirmation_code);
    let notice = match q.notice.as_deref() {
        Some("saved") => Some(t.manual_saved.to_owned()),
        Some("key_saved") => Some(fill(t.manual_key_saved, &[("scopes", q.scopes.as_deref().unwrap_or_default())])),
        _ => None,
    };
    let mut response = render(ManualPage {
        layout: Layout::new(viewer, user_name(app, viewer).await?, &format!("/communities/{}/manual", community.id)),
        csrf: user.session.csrf.clone(),
        is_admin,
        callback_url: connect::callback_url(app),
        secret: secret.map(|s| s.expose_secret().to_owned()),
        events: connect::EVENTS.to_vec(),
        steps: t.manual_steps.split('|').collect(),
        confirmation,
        notice,
        error,
        community,
    })?;
    if error.is_some() {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(no_store(response))
}

pub async fn create_manual_secret(
    State(app): State<AppState>,
    user: SignedIn,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let community = administered(&app, &user, &id).await?;
    connect::manual_secret(&app, community.id, true).await?;
    Ok(Redirect::to(&format!("/communities/{}/manual", community.id)).into_response())
}

pub async fn save_manual(
    State(app): State<AppState>,
    user: SignedIn,
    viewer: Viewer,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let community = administered(&app, &user, &id).await?;
    let form = FormPairs::parse(&body);
    let group_id = community.id;
    if let Some(key) = form.text("key") {
        return match connect::save_manual_key(&app, group_id, SecretString::from(key.to_owned())).await? {
            Ok(scopes) => {
                let scopes = scopes.join(", ");
                let q = serde_urlencoded::to_string([("notice", "key_saved"), ("scopes", scopes.as_str())])
                    .unwrap_or_default();
                Ok(Redirect::to(&format!("/communities/{group_id}/manual?{q}")).into_response())
            }
            Err(problem) => {
                tracing::info!(group_id, problem = ?problem_kind(&problem), "hand-made community key refused");
                let q = ManualQuery { notice: None, scopes: None };
                manual_page(&app, &user, &viewer, community, q, Some(user.lang.msg().manual_key_bad)).await
            }
        };
    }
    let code = form.text("confirmation").unwrap_or_default();
    if code.is_empty() || code.len() > 64 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        let q = ManualQuery { notice: None, scopes: None };
        return manual_page(&app, &user, &viewer, community, q, Some(user.lang.msg().error_bad_request)).await;
    }
    connect::manual_secret(&app, group_id, true).await?;
    connect::save_manual_confirmation(&app, group_id, code).await?;
    Ok(Redirect::to(&format!("/communities/{group_id}/manual?notice=saved")).into_response())
}

fn problem_kind(p: &VkProblem) -> String {
    match p {
        VkProblem::NotConnected => "not connected".into(),
        VkProblem::OtherCommunity => "another community's key".into(),
        VkProblem::Vk(e) => e.to_string(),
    }
}
