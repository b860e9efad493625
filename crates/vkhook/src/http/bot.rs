//! The bot's settings and rules, the health card and «Проверить», and the delivery log with «Повторить».

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::app::AppState;
use crate::bot::rules::{self, Decision};
use crate::error::{AppError, AppResult};
use crate::health::{self, Repair};
use crate::i18n::{fill, Msg};
use crate::store::{InboxRow, LogFilter, UserCommunity};

use super::auth::user_name;
use super::connect::{administered, managed};
use super::forms::FormPairs;
use super::render::{format_time, render, Layout};
use super::session::{SignedIn, Viewer};

fn back_to(id: i64, notice: &str) -> Response {
    Redirect::to(&format!("/communities/{id}?notice={notice}#bot")).into_response()
}

pub async fn save_bot(
    State(app): State<AppState>,
    user: SignedIn,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let c = administered(&app, &user, &id).await?;
    let form = FormPairs::parse(&body);
    let default_reply: Option<String> = form.text("default_reply").map(|r| r.chars().take(4000).collect());
    app.store.set_bot_settings(c.id, form.has("comments"), form.has("messages"), default_reply.as_deref()).await?;
    Ok(back_to(c.id, "bot_saved"))
}

pub async fn add_rule(
    State(app): State<AppState>,
    user: SignedIn,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let c = administered(&app, &user, &id).await?;
    let form = FormPairs::parse(&body);
    let keywords = form.text("keywords").unwrap_or_default();
    let reply = form.text("reply").unwrap_or_default();
    if rules::keywords(keywords).is_empty()
        || reply.is_empty()
        || keywords.chars().count() > 1000
        || reply.chars().count() > 4000
    {
        return Err(AppError::shown_with_back(
            StatusCode::UNPROCESSABLE_ENTITY,
            |t| t.rule_invalid,
            format!("/communities/{}#bot", c.id),
        ));
    }
    app.store.add_rule(c.id, keywords, reply).await?;
    Ok(back_to(c.id, "bot_saved"))
}

pub async fn delete_rule(
    State(app): State<AppState>,
    user: SignedIn,
    Path((id, rule)): Path<(String, i64)>,
) -> AppResult<Response> {
    let c = administered(&app, &user, &id).await?;
    if !app.store.delete_rule(c.id, rule).await? {
        return Err(AppError::NotFound);
    }
    Ok(back_to(c.id, "bot_saved"))
}

pub async fn move_rule(
    State(app): State<AppState>,
    user: SignedIn,
    Path((id, rule)): Path<(String, i64)>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let c = administered(&app, &user, &id).await?;
    app.store.move_rule(c.id, rule, FormPairs::parse(&body).get("dir") == Some("up")).await?;
    Ok(back_to(c.id, "bot_saved"))
}

/// «Проверить»: a reconcile pass for this community, now.
pub async fn check_now(State(app): State<AppState>, user: SignedIn, Path(id): Path<String>) -> AppResult<Response> {
    let c = managed(&app, &user, &id).await?;
    let notice = match health::reconcile(&app, c.id).await? {
        Repair::InOrder | Repair::Skipped => "checked_in_order",
        Repair::SetupStarted(_) | Repair::SettingsRestored => "checked_repaired",
        Repair::NeedsReauth => "checked_repaired",
        Repair::VkUnavailable => "checked_unavailable",
    };
    Ok(Redirect::to(&format!("/communities/{}?notice={notice}#health", c.id)).into_response())
}

pub struct RuleView {
    pub id: i64,
    pub keywords: String,
    pub reply: String,
}

pub struct BotView {
    pub comments: bool,
    pub messages: bool,
    pub default_reply: String,
    pub paused: bool,
    pub rules: Vec<RuleView>,
    pub preview_text: String,
    pub preview: Option<String>,
}

pub async fn bot_view(app: &AppState, t: &'static Msg, group_id: i64, preview: Option<&str>) -> AppResult<BotView> {
    let bot = app.store.bot_settings(group_id).await?.ok_or(AppError::NotFound)?;
    let rules = app.store.rules(group_id).await?;
    let preview_text = preview.map(str::trim).unwrap_or_default().to_owned();
    let preview =
        (!preview_text.is_empty()).then(|| match rules::decide(&preview_text, &rules, bot.default_reply.as_deref()) {
            Decision::Rule(r) => fill(t.preview_rule, &[("rule", &r.keywords), ("reply", &r.reply)]),
            Decision::Default(d) => fill(t.preview_default, &[("reply", d)]),
            Decision::Nothing => t.preview_nothing.to_owned(),
        });
    Ok(BotView {
        comments: bot.bot_comments,
        messages: bot.bot_messages,
        default_reply: bot.default_reply.unwrap_or_default(),
        paused: bot.paused_reason.is_some(),
        rules: rules.into_iter().map(|r| RuleView { id: r.id, keywords: r.keywords, reply: r.reply }).collect(),
        preview_text,
        preview,
    })
}

pub struct HealthView {
    pub vk_status: String,
    pub vk_status_class: &'static str,
    pub last_check: String,
    pub last_event: String,
    pub events_24h: Vec<(String, i64)>,
    pub replies: String,
    pub queue_depth: i64,
    pub last_error: String,
    pub log: Vec<(String, String)>,
}

pub async fn health_view(app: &AppState, t: &'static Msg, group_id: i64) -> AppResult<HealthView> {
    let h = health::health(app, group_id).await?;
    let none = || t.health_none.to_owned();
    let vk_status_class = match h.vk_status.as_deref() {
        Some("ok") => "ok",
        Some("wait") | None => "warn",
        _ => "err",
    };
    Ok(HealthView {
        vk_status: h.vk_status.clone().unwrap_or_else(none),
        vk_status_class,
        last_check: h.last_check_at.map(format_time).unwrap_or_else(none),
        last_event: h.last_event_at.map(format_time).unwrap_or_else(none),
        events_24h: h.events_24h.into_iter().map(|c| (c.key, c.n)).collect(),
        replies: fill(
            t.health_replies_counts,
            &[("sent", &h.replies_sent_24h.to_string()), ("failed", &h.replies_failed_24h.to_string())],
        ),
        queue_depth: h.queue_depth,
        last_error: h
            .last_error
            .map(|(e, at)| format!("{} — {}", format_time(at), error_words(t, &e)))
            .unwrap_or_else(none),
        log: h.log.into_iter().map(|l| (format_time(l.at), log_words(t, &l.kind, &l.message))).collect(),
    })
}

/// An error as stored (VK's words, or one of our kinds) for the admin.
fn error_words(t: &'static Msg, error: &str) -> String {
    match error {
        "reauth" => t.err_reauth.to_owned(),
        kind if !kind.contains(' ') => super::connect::error_message(t, kind, ""),
        other => other.chars().take(200).collect(),
    }
}

fn log_words(t: &'static Msg, kind: &str, message: &str) -> String {
    match (kind, message) {
        ("repair", "server_missing") => t.log_server_missing.to_owned(),
        ("repair", "server_failed") => t.log_server_failed.to_owned(),
        ("repair", m) => m
            .split(';')
            .map(|part| match part.split_once(':') {
                Some(("events_restored", events)) => {
                    fill(t.log_events_restored, &[("events", &events.replace(',', ", "))])
                }
                Some(("version_restored", version)) => fill(t.log_version_restored, &[("version", version)]),
                _ => part.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        ("paused", _) => t.log_paused.to_owned(),
        ("resumed", _) => t.log_resumed.to_owned(),
        (_, m) => m.to_owned(),
    }
}

// ---------------------------------------------------------------- the delivery log

pub struct EventView {
    pub id: i64,
    pub time: String,
    pub event_type: String,
    pub who: String,
    pub who_link: Option<String>,
    pub text: String,
    pub status: String,
    pub status_label: &'static str,
    pub status_class: &'static str,
    pub did: String,
    pub can_replay: bool,
}

fn status_label(t: &'static Msg, status: &str) -> (&'static str, &'static str) {
    match status {
        "pending" => (t.ev_pending, "warn"),
        "processing" => (t.ev_processing, "warn"),
        "done" => (t.ev_done, "ok"),
        "ignored" => (t.ev_ignored, ""),
        "failed" => (t.ev_failed, "err"),
        _ => (t.ev_dead, "err"),
    }
}

fn reason_words(t: &'static Msg, reason: &str) -> &'static str {
    match reason {
        "comments_off" => t.why_comments_off,
        "messages_off" => t.why_messages_off,
        "own" => t.why_own,
        "from_community" => t.why_from_community,
        "chat" => t.why_chat,
        "no_rule" => t.why_no_rule,
        "no_answer_needed" => t.why_no_answer_needed,
        "unreadable" | "unknown_community" => t.why_unreadable,
        "no_token" => t.why_no_token,
        "messages_forbidden" => t.why_messages_forbidden,
        "comments_closed" => t.why_comments_closed,
        "too_many_replies" => t.why_too_many_replies,
        "gave_up" => t.why_gave_up,
        _ => t.why_vk_error,
    }
}

/// What the bot did with an event, or why not, in words.
pub fn describe(t: &'static Msg, row: &InboxRow) -> String {
    let result: serde_json::Value =
        row.result.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
    let reply = result["reply"].as_str().unwrap_or_default();
    match (row.status.as_str(), result["action"].as_str()) {
        ("done", Some("replied")) => {
            let mut text = match result["rule"].as_str() {
                Some(rule) => fill(t.did_rule, &[("rule", rule), ("reply", reply)]),
                None => fill(t.did_default, &[("reply", reply)]),
            };
            if let Some(id) = result["vk_id"].as_i64() {
                text.push_str(" · ");
                text.push_str(&fill(t.did_vk_id, &[("id", &id.to_string())]));
            }
            text
        }
        (_, Some("failed")) => {
            let mut text = reason_words(t, result["reason"].as_str().unwrap_or_default()).to_owned();
            if let Some(code) = result["error_code"].as_i64() {
                text.push_str(&format!(" ({code})"));
            }
            text
        }
        ("pending" | "processing", _) if row.last_error.is_some() => t.why_retrying.to_owned(),
        ("pending" | "processing", _) => t.why_waiting.to_owned(),
        (_, _) => reason_words(t, result["reason"].as_str().unwrap_or_default()).to_owned(),
    }
}

/// Who and what, from the stored event.
fn who_and_text(row: &InboxRow) -> (Option<i64>, String) {
    let Ok(envelope) = vk::parse(row.payload.as_bytes()) else { return (None, String::new()) };
    let Ok(event) = envelope.event() else { return (None, String::new()) };
    let text: String = event.text().unwrap_or_default().chars().take(140).collect();
    (event.actor(), text)
}

pub fn event_view(t: &'static Msg, row: &InboxRow) -> EventView {
    let (who, text) = who_and_text(row);
    let (status_label, status_class) = status_label(t, &row.status);
    let (who, who_link) = match who {
        Some(id) if id > 0 => (format!("id{id}"), Some(format!("https://vk.com/id{id}"))),
        Some(id) if id < 0 => (format!("club{}", -id), Some(format!("https://vk.com/club{}", -id))),
        _ => (String::new(), None),
    };
    EventView {
        id: row.id,
        time: format_time(row.received_at),
        event_type: row.event_type.clone(),
        who,
        who_link,
        text,
        status: row.status.clone(),
        status_label,
        status_class,
        did: describe(t, row),
        can_replay: matches!(row.status.as_str(), "failed" | "dead"),
    }
}

const EVENT_TYPES: [&str; 12] = [
    "message_new",
    "message_reply",
    "wall_reply_new",
    "wall_reply_edit",
    "wall_reply_delete",
    "wall_post_new",
    "like_add",
    "like_remove",
    "group_join",
    "group_leave",
    "message_allow",
    "message_deny",
];
const STATUSES: [&str; 6] = ["pending", "processing", "done", "ignored", "failed", "dead"];

#[derive(Template)]
#[template(path = "communities/events.html")]
struct EventLogPage {
    layout: Layout,
    csrf: String,
    community: UserCommunity,
    events: Vec<EventView>,
    types: Vec<&'static str>,
    statuses: Vec<(&'static str, &'static str)>,
    filter_type: String,
    filter_status: String,
    older: Option<String>,
    notice: Option<&'static str>,
    is_admin: bool,
}

#[derive(Deserialize)]
pub struct LogQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    status: Option<String>,
    before: Option<i64>,
    notice: Option<String>,
}

const PAGE: i64 = 50;

pub async fn show_events(
    State(app): State<AppState>,
    user: SignedIn,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> AppResult<Response> {
    let community = managed(&app, &user, &id).await?;
    let t = user.lang.msg();
    let filter_type = q.event_type.clone().filter(|v| !v.is_empty());
    let filter_status = q.status.clone().filter(|v| STATUSES.contains(&v.as_str()));
    let rows = app
        .store
        .inbox_log(
            community.id,
            &LogFilter {
                event_type: filter_type.clone(),
                status: filter_status.clone(),
                before_id: q.before,
                limit: PAGE + 1,
            },
        )
        .await?;
    let more = rows.len() as i64 > PAGE;
    let events: Vec<EventView> = rows.iter().take(PAGE as usize).map(|r| event_view(t, r)).collect();
    let older = more.then(|| {
        let last = events.last().map(|e| e.id).unwrap_or_default();
        let mut pairs = vec![("before", last.to_string())];
        if let Some(ty) = &filter_type {
            pairs.push(("type", ty.clone()));
        }
        if let Some(st) = &filter_status {
            pairs.push(("status", st.clone()));
        }
        format!("/communities/{}/events?{}", community.id, serde_urlencoded::to_string(pairs).unwrap_or_default())
    });
    render(EventLogPage {
        layout: Layout::new(&viewer, user_name(&app, &viewer).await?, &format!("/communities/{}/events", community.id)),
        csrf: user.session.csrf.clone(),
        is_admin: community.role == "administrator",
        events,
        types: EVENT_TYPES.to_vec(),
        statuses: STATUSES.iter().map(|s| (*s, status_label(t, s).0)).collect(),
        filter_type: filter_type.unwrap_or_default(),
        filter_status: filter_status.unwrap_or_default(),
        older,
        notice: (q.notice.as_deref() == Some("replayed")).then_some(t.replayed),
        community,
    })
}

/// The raw event (as stored: without `secret`), pretty-printed.
pub async fn show_raw_event(
    State(app): State<AppState>,
    user: SignedIn,
    Path((id, event)): Path<(String, i64)>,
) -> AppResult<Response> {
    let community = managed(&app, &user, &id).await?;
    let row = app.store.inbox_event(community.id, event).await?.ok_or(AppError::NotFound)?;
    let pretty = serde_json::from_str::<serde_json::Value>(&row.payload)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or(row.payload);
    Ok(([(header::CONTENT_TYPE, "application/json; charset=utf-8")], pretty).into_response())
}

/// «Повторить»: a failed or dead event runs again.
pub async fn replay_event(
    State(app): State<AppState>,
    user: SignedIn,
    Path((id, event)): Path<(String, i64)>,
) -> AppResult<Response> {
    let community = administered(&app, &user, &id).await?;
    if !app.store.replay_inbox_event(community.id, event).await? {
        return Err(AppError::shown_with_back(
            StatusCode::CONFLICT,
            |t| t.error_bad_request,
            format!("/communities/{}/events", community.id),
        ));
    }
    app.bot_wakeup.notify_one();
    tracing::info!(group_id = community.id, inbox_id = event, "event replayed by the admin");
    Ok(Redirect::to(&format!("/communities/{}/events?notice=replayed", community.id)).into_response())
}
