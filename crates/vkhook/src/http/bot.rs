//! The bot card: its switches and default reply, the rules (add, delete, move) and the preview. Each handler makes
//! one call to the bot's control, which owns what follows a change (the cache, the revival, the wake-up).

use axum::extract::{Path, State};
use axum::response::Response;
use vk::GroupId;

use crate::app::AppState;
use crate::bot::rules::{self, Decision, NewRule};
use crate::error::{AppError, AppResult, Problem};
use crate::i18n::{fill, Msg};

use super::access::Administered;
use super::forms::FormPairs;
use super::notice::Notice;

fn saved(group_id: GroupId) -> Response {
    Notice::BotSaved.redirect(group_id, "#bot")
}

pub async fn save_bot(
    State(app): State<AppState>,
    Administered { community, .. }: Administered,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let form = FormPairs::parse(&body);
    let default_reply = form.text("default_reply").and_then(rules::default_reply);
    let (comments, messages) = (form.has("comments"), form.has("messages"));
    app.bot.control().set_switches(community.id, comments, messages, default_reply.as_deref()).await?;
    Ok(saved(community.id))
}

pub async fn add_rule(
    State(app): State<AppState>,
    Administered { community, .. }: Administered,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let form = FormPairs::parse(&body);
    let Ok(rule) = NewRule::parse(form.text("keywords").unwrap_or_default(), form.text("reply").unwrap_or_default())
    else {
        let back = format!("/communities/{}#bot", community.id);
        return Err(AppError::shown_with_back(Problem::Invalid, |t| t.rule_invalid, back));
    };
    app.bot.control().add_rule(community.id, &rule).await?;
    Ok(saved(community.id))
}

pub async fn delete_rule(
    State(app): State<AppState>,
    Administered { community, .. }: Administered,
    Path((_, rule)): Path<(String, i64)>,
) -> AppResult<Response> {
    if !app.bot.control().delete_rule(community.id, rule).await? {
        return Err(AppError::NotFound);
    }
    Ok(saved(community.id))
}

pub async fn move_rule(
    State(app): State<AppState>,
    Administered { community, .. }: Administered,
    Path((_, rule)): Path<(String, i64)>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let up = FormPairs::parse(&body).get("dir") == Some("up");
    app.bot.control().move_rule(community.id, rule, up).await?;
    Ok(saved(community.id))
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

pub async fn bot_view(app: &AppState, t: &'static Msg, group_id: GroupId, preview: Option<&str>) -> AppResult<BotView> {
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
