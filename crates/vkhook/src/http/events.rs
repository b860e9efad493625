//! The delivery log: every stored event with what the bot did, the raw event, and «Повторить».

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::app::AppState;
use crate::error::{AppError, AppResult, Problem};
use crate::i18n::{fill, Msg};
use crate::model::{EventResult, EventStatus, Reason};
use crate::store::{InboxRow, LogFilter, UserCommunity};

use super::access::{Administered, Managed};
use super::auth::user_name;
use super::notice::Notice;
use super::render::{format_time, render, Layout};
use super::session::Viewer;

pub struct EventView {
    pub id: i64,
    pub time: String,
    pub event_type: String,
    pub who: String,
    pub who_link: Option<String>,
    pub text: String,
    pub status: &'static str,
    pub status_label: &'static str,
    pub status_class: &'static str,
    pub did: String,
    pub can_replay: bool,
    /// A private message shown to someone who is not an administrator: no text, no reply, no raw event.
    pub hidden: bool,
}

fn status_label(t: &'static Msg, status: EventStatus) -> (&'static str, &'static str) {
    match status {
        EventStatus::Pending => (t.ev_pending, "warn"),
        EventStatus::Processing => (t.ev_processing, "warn"),
        EventStatus::Done => (t.ev_done, "ok"),
        EventStatus::Ignored => (t.ev_ignored, ""),
        EventStatus::Failed => (t.ev_failed, "err"),
        EventStatus::Dead => (t.ev_dead, "err"),
    }
}

pub fn reason_words(t: &'static Msg, reason: Option<Reason>) -> &'static str {
    let Some(reason) = reason else { return t.why_vk_error };
    match reason {
        Reason::CommentsOff => t.why_comments_off,
        Reason::MessagesOff => t.why_messages_off,
        Reason::Own => t.why_own,
        Reason::FromCommunity => t.why_from_community,
        Reason::Chat => t.why_chat,
        Reason::NoRule => t.why_no_rule,
        Reason::NoAnswerNeeded => t.why_no_answer_needed,
        Reason::Unreadable | Reason::UnknownCommunity => t.why_unreadable,
        Reason::NoToken => t.why_no_token,
        Reason::MessagesForbidden => t.why_messages_forbidden,
        Reason::Blacklisted => t.why_blacklisted,
        Reason::MessagesNotAllowed => t.why_messages_not_allowed,
        Reason::MessagesPrivacy => t.why_messages_privacy,
        Reason::IntentCantUse => t.why_intent_cant_use,
        Reason::IntentLimit => t.why_intent_limit,
        Reason::ChatDisabled => t.why_chat_disabled,
        Reason::ReplyTimedOut => t.why_reply_timed_out,
        Reason::NotificationsOnly => t.why_notifications_only,
        Reason::NeedMessageRequest => t.why_need_message_request,
        Reason::PendingMessageRequest => t.why_pending_message_request,
        Reason::CommentsClosed => t.why_comments_closed,
        Reason::TooManyReplies => t.why_too_many_replies,
        Reason::GaveUp => t.why_gave_up,
        Reason::VkError => t.why_vk_error,
    }
}

/// What the bot did with an event, or why not, in words.
pub fn describe(t: &'static Msg, row: &InboxRow) -> String {
    match (row.status, row.event_result()) {
        (EventStatus::Done, Some(EventResult::Replied { rule, reply, vk_id, .. })) => {
            let mut text = match rule {
                Some(rule) => fill(t.did_rule, &[("rule", &rule), ("reply", &reply)]),
                None => fill(t.did_default, &[("reply", &reply)]),
            };
            if let Some(id) = vk_id {
                text.push_str(" · ");
                text.push_str(&fill(t.did_vk_id, &[("id", &id.to_string())]));
            }
            text
        }
        (_, Some(EventResult::Failed { reason, error_code, .. })) => {
            let mut text = reason_words(t, Some(reason)).to_owned();
            if let Some(code) = error_code {
                text.push_str(&format!(" ({code})"));
            }
            text
        }
        (status, _) if status.is_open() && row.last_error.is_some() => t.why_retrying.to_owned(),
        (status, _) if status.is_open() => t.why_waiting.to_owned(),
        (_, result) => reason_words(t, result.as_ref().and_then(EventResult::nothing_reason)).to_owned(),
    }
}

/// Private messages between a person and the community: VK shows them to the community's administrators only, not
/// to editors or moderators (dev.vk.com, "Управление сообществом": messages are an administrator's right). So do we,
/// for the text, the bot's reply and the raw event.
pub fn is_private_message(event_type: &str) -> bool {
    event_type.starts_with("message_")
}

/// Who and what, from the stored event.
fn who_and_text(row: &InboxRow) -> (Option<i64>, String) {
    let Ok(envelope) = vk::parse(row.payload.as_bytes()) else { return (None, String::new()) };
    let Ok(event) = envelope.event() else { return (None, String::new()) };
    let text: String = event.text().unwrap_or_default().chars().take(140).collect();
    (event.actor(), text)
}

/// One row of the log, as `is_admin` may see it.
pub fn event_view(t: &'static Msg, row: &InboxRow, is_admin: bool) -> EventView {
    let hidden = !is_admin && is_private_message(&row.event_type);
    let (who, text) = who_and_text(row);
    let text = if hidden { t.private_message_hidden.to_owned() } else { text };
    let (status_label, status_class) = status_label(t, row.status);
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
        status: row.status.as_str(),
        status_label,
        status_class,
        did: if hidden { String::new() } else { describe(t, row) },
        can_replay: row.status.can_replay(),
        hidden,
    }
}

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
    managed: Managed,
    viewer: Viewer,
    Query(q): Query<LogQuery>,
) -> AppResult<Response> {
    // Private message texts only for an administrator VK confirms now.
    let is_admin = managed.sees_private(&app);
    let Managed { user, community, .. } = managed;
    let t = user.lang.msg();
    let filter_type = q.event_type.clone().filter(|v| !v.is_empty());
    let filter_status = q.status.as_deref().and_then(EventStatus::parse);
    let rows = app
        .store
        .inbox_log(
            community.id,
            &LogFilter { event_type: filter_type.clone(), status: filter_status, before_id: q.before, limit: PAGE + 1 },
        )
        .await?;
    let more = rows.len() as i64 > PAGE;
    let events: Vec<EventView> = rows.iter().take(PAGE as usize).map(|r| event_view(t, r, is_admin)).collect();
    let older = more.then(|| {
        let last = events.last().map(|e| e.id).unwrap_or_default();
        let mut pairs = vec![("before", last.to_string())];
        if let Some(ty) = &filter_type {
            pairs.push(("type", ty.clone()));
        }
        if let Some(st) = filter_status {
            pairs.push(("status", st.as_str().to_owned()));
        }
        format!("/communities/{}/events?{}", community.id, serde_urlencoded::to_string(pairs).unwrap_or_default())
    });
    render(EventLogPage {
        layout: Layout::new(&viewer, user_name(&app, &viewer).await?, &format!("/communities/{}/events", community.id)),
        csrf: user.session.csrf.clone(),
        is_admin,
        events,
        types: vk::EVENT_TYPES.iter().copied().filter(|ty| *ty != "confirmation").collect(),
        statuses: EventStatus::ALL.iter().map(|s| (s.as_str(), status_label(t, *s).0)).collect(),
        filter_type: filter_type.unwrap_or_default(),
        filter_status: filter_status.map(EventStatus::as_str).unwrap_or_default().to_owned(),
        older,
        notice: (Notice::from_query(q.notice.as_deref()) == Some(Notice::Replayed)).then_some(t.replayed),
        community,
    })
}

/// The raw event (as stored: without `secret`), pretty-printed: for an administrator VK confirms now only (a body
/// holds people's ids and texts; a private message's whole conversation line).
pub async fn show_raw_event(
    State(app): State<AppState>,
    managed: Managed,
    Path((_, event)): Path<(String, i64)>,
) -> AppResult<Response> {
    let community = &managed.community;
    let row = app.store.inbox_event(community.id, event).await?.ok_or(AppError::NotFound)?;
    if !managed.sees_private(&app) {
        let hidden: crate::error::MsgFn =
            if is_private_message(&row.event_type) { |t| t.private_message_hidden } else { |t| t.error_forbidden };
        return Err(AppError::shown_with_back(
            Problem::Forbidden,
            hidden,
            format!("/communities/{}/events", community.id),
        ));
    }
    let pretty = serde_json::from_str::<serde_json::Value>(&row.payload)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or(row.payload);
    Ok(([(header::CONTENT_TYPE, "application/json; charset=utf-8")], pretty).into_response())
}

/// «Повторить»: a failed or dead event runs again.
pub async fn replay_event(
    State(app): State<AppState>,
    Administered { community, .. }: Administered,
    Path((_, event)): Path<(String, i64)>,
) -> AppResult<Response> {
    if !app.bot.control().replay_event(community.id, event).await? {
        return Err(AppError::shown_with_back(
            Problem::Conflict,
            |t| t.error_bad_request,
            format!("/communities/{}/events", community.id),
        ));
    }
    tracing::info!(group_id = community.id.0, inbox_id = event, "event replayed by the admin");
    Ok(Redirect::to(&format!("/communities/{}/events?notice={}", community.id, Notice::Replayed)).into_response())
}
