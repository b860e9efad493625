//! `/_sandbox/…`: the control API (JSON) for tests and the demo page, and `GET /`, the world page where a person
//! comments and writes as user 2.

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::message_new_object;
use crate::delivery;
use crate::world::{Fault, TokenOwner, World};
use crate::Shared;

type JsonResult = Result<Json<Value>, (StatusCode, Json<Value>)>;

fn bad(status: StatusCode, message: impl Into<String>) -> (StatusCode, Json<Value>) {
    (status, Json(json!({"error": message.into()})))
}

#[derive(Debug, Deserialize)]
pub struct NewComment {
    pub group_id: i64,
    pub from_id: i64,
    pub text: String,
    #[serde(default)]
    pub post_id: Option<i64>,
    #[serde(default)]
    pub reply_to_comment: Option<i64>,
}

/// Adds a comment as a user (fires `wall_reply_new`). Returns (comment_id, post_id).
pub fn add_comment(shared: &Shared, c: &NewComment) -> Result<(i64, i64), String> {
    let (comment, group_id) = {
        let mut world = shared.world();
        if !world.users.contains_key(&c.from_id) {
            return Err(format!("no user {}", c.from_id));
        }
        let now = world.now();
        let group = world.group_mut(c.group_id).ok_or_else(|| format!("no community {}", c.group_id))?;
        let post_id = match (c.post_id, c.reply_to_comment) {
            (Some(p), _) => p,
            (None, Some(r)) => group.comment(r).map(|x| x.post_id).ok_or_else(|| format!("no comment {r}"))?,
            (None, None) => group.posts.first().map(|p| p.id).ok_or("the wall is empty")?,
        };
        let post = group.post(post_id).ok_or_else(|| format!("no post {post_id}"))?;
        if post.comments_closed {
            return Err("comments on this post are closed".into());
        }
        if let Some(r) = c.reply_to_comment {
            if group.comment(r).is_none_or(|x| x.post_id != post_id) {
                return Err(format!("no comment {r} under post {post_id}"));
            }
        }
        (group.add_comment(post_id, c.from_id, &c.text, c.reply_to_comment, None, now), c.group_id)
    };
    let object = comment.to_json(group_id);
    delivery::emit(shared, group_id, "wall_reply_new", move |_| object.clone());
    Ok((comment.id, comment.post_id))
}

#[derive(Debug, Deserialize)]
pub struct NewMessage {
    pub group_id: i64,
    pub from_id: i64,
    pub text: String,
}

/// A user writes to the community (fires `message_new`; writing first allows the community to answer).
pub fn add_message(shared: &Shared, m: &NewMessage) -> Result<i64, String> {
    let message = {
        let mut world = shared.world();
        if !world.users.contains_key(&m.from_id) {
            return Err(format!("no user {}", m.from_id));
        }
        let now = world.now();
        let group = world.group_mut(m.group_id).ok_or_else(|| format!("no community {}", m.group_id))?;
        group.messages_allowed.insert(m.from_id);
        group.add_message(m.from_id, m.from_id, &m.text, 0, now)
    };
    let object = message.to_json();
    delivery::emit(shared, m.group_id, "message_new", move |version| message_new_object(&object, version));
    Ok(message.id)
}

pub async fn post_comment(State(shared): State<Shared>, Json(c): Json<NewComment>) -> JsonResult {
    let (comment_id, post_id) = add_comment(&shared, &c).map_err(|e| bad(StatusCode::BAD_REQUEST, e))?;
    Ok(Json(json!({"comment_id": comment_id, "post_id": post_id})))
}

pub async fn post_message(State(shared): State<Shared>, Json(m): Json<NewMessage>) -> JsonResult {
    let message_id = add_message(&shared, &m).map_err(|e| bad(StatusCode::BAD_REQUEST, e))?;
    Ok(Json(json!({"message_id": message_id})))
}

#[derive(Debug, Deserialize)]
pub struct NewEvent {
    pub group_id: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub object: Value,
}

/// Fires any event with the given object (for event types the world does not model).
pub async fn post_event(State(shared): State<Shared>, Json(e): Json<NewEvent>) -> JsonResult {
    if shared.world().group(e.group_id).is_none() {
        return Err(bad(StatusCode::NOT_FOUND, format!("no community {}", e.group_id)));
    }
    let object = e.object;
    let event_id = delivery::emit(&shared, e.group_id, &e.event_type, move |_| object.clone());
    Ok(Json(json!({"event_id": event_id})))
}

fn with_group<T>(
    shared: &Shared,
    id: i64,
    f: impl FnOnce(&crate::world::Group) -> T,
) -> Result<T, (StatusCode, Json<Value>)> {
    let world = shared.world();
    world.group(id).map(f).ok_or_else(|| bad(StatusCode::NOT_FOUND, format!("no community {id}")))
}

pub async fn get_comments(State(shared): State<Shared>, Path(id): Path<i64>) -> JsonResult {
    with_group(&shared, id, |g| Json(json!(g.comments)))
}

pub async fn get_messages(State(shared): State<Shared>, Path(id): Path<i64>) -> JsonResult {
    with_group(&shared, id, |g| Json(json!(g.messages)))
}

pub async fn get_servers(State(shared): State<Shared>, Path(id): Path<i64>) -> JsonResult {
    with_group(&shared, id, |g| Json(json!(g.servers)))
}

#[derive(Debug, Deserialize)]
pub struct ForeignServer {
    pub title: String,
    pub url: String,
    #[serde(default)]
    pub secret_key: String,
}

/// Adds a server as another service would (through its own token), to occupy a slot.
pub async fn post_server(
    State(shared): State<Shared>,
    Path(id): Path<i64>,
    Json(s): Json<ForeignServer>,
) -> JsonResult {
    let server_id = {
        let mut world = shared.world();
        let group = world.group_mut(id).ok_or_else(|| bad(StatusCode::NOT_FOUND, format!("no community {id}")))?;
        if group.servers.len() >= 10 {
            return Err(bad(StatusCode::CONFLICT, "Servers number limit is reached"));
        }
        let creator = group.admins.iter().find(|(_, l)| **l == 3).map(|(u, _)| *u).unwrap_or(0);
        group.add_server(&s.title, &s.url, &s.secret_key, creator).id
    };
    delivery::start_confirmation(&shared, id, server_id);
    Ok(Json(json!({"server_id": server_id})))
}

#[derive(Debug, Deserialize)]
pub struct DeliveryFilter {
    pub group_id: Option<i64>,
}

pub async fn get_deliveries(State(shared): State<Shared>, Query(q): Query<DeliveryFilter>) -> Json<Value> {
    let world = shared.world();
    let list: Vec<&crate::world::Delivery> =
        world.deliveries.iter().filter(|d| q.group_id.is_none_or(|g| d.group_id == g)).collect();
    Json(json!(list))
}

pub async fn post_fault(State(shared): State<Shared>, Json(f): Json<Fault>) -> Json<Value> {
    let mut world = shared.world();
    world.faults.push(f);
    Json(json!({"faults": world.faults}))
}

/// `GET /_sandbox/calls`: how many times each API method (and `oauth.access_token`) was called.
pub async fn get_calls(State(shared): State<Shared>) -> Json<Value> {
    Json(json!({"calls": shared.world().calls}))
}

pub async fn get_faults(State(shared): State<Shared>) -> Json<Value> {
    Json(json!({"faults": shared.world().faults}))
}

pub async fn clear_faults(State(shared): State<Shared>) -> Json<Value> {
    shared.world().faults.clear();
    Json(json!({"faults": []}))
}

pub async fn get_tokens(State(shared): State<Shared>) -> Json<Value> {
    let world = shared.world();
    let tokens: Vec<Value> = world
        .token_order
        .iter()
        .filter_map(|v| world.tokens.get(v))
        .map(|t| {
            let (user_id, group_id) = match t.owner {
                TokenOwner::User(u) => (Some(u), None),
                TokenOwner::Group(g) => (None, Some(g)),
            };
            json!({"value": t.value, "type": t.kind, "user_id": user_id, "group_id": group_id,
                   "scopes": t.scopes, "expires_at": t.expires_at, "revoked": t.revoked, "granted_by": t.granted_by})
        })
        .collect();
    let refresh: Vec<Value> = world
        .refresh_tokens
        .iter()
        .map(|(v, r)| json!({"value": v, "type": "refresh", "user_id": r.user_id, "revoked": r.revoked}))
        .collect();
    Json(json!({"tokens": tokens, "refresh_tokens": refresh}))
}

#[derive(Debug, Deserialize)]
pub struct Revoke {
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub user_id: Option<i64>,
    #[serde(default)]
    pub group_id: Option<i64>,
    /// Also revoke the user's refresh tokens (so refreshing fails).
    #[serde(default)]
    pub refresh: bool,
}

/// Revokes tokens: one by value, a user's, or a community's. Returns how many.
pub async fn revoke_tokens(State(shared): State<Shared>, Json(r): Json<Revoke>) -> Json<Value> {
    let mut world = shared.world();
    let mut count = 0;
    for t in world.tokens.values_mut() {
        let hit = r.value.as_deref() == Some(t.value.as_str())
            || matches!(t.owner, TokenOwner::User(u) if Some(u) == r.user_id)
            || matches!(t.owner, TokenOwner::Group(g) if Some(g) == r.group_id);
        if hit && !t.revoked {
            t.revoked = true;
            count += 1;
        }
    }
    if r.refresh {
        for (value, t) in world.refresh_tokens.iter_mut() {
            if Some(t.user_id) == r.user_id || r.value.as_deref() == Some(value.as_str()) {
                t.revoked = true;
                count += 1;
            }
        }
    }
    Json(json!({"revoked": count}))
}

#[derive(Debug, Deserialize)]
pub struct Clock {
    pub advance_secs: i64,
}

/// Moves sandbox time forward (token and code expiry).
#[derive(Debug, Deserialize)]
pub struct Dedup {
    /// Forget every `random_id` and `guid` at once (VK's memory of them is undocumented).
    pub forget: bool,
}

/// `{"forget": true}`: from now on a repeated `random_id` or `guid` sends again.
pub async fn post_dedup(State(shared): State<Shared>, Json(d): Json<Dedup>) -> Json<Value> {
    shared.world().forget_dedup_keys = d.forget;
    Json(json!({"forget": d.forget}))
}

/// VK's behaviour where its documentation is silent (see the fields of `World`).
#[derive(Debug, Deserialize)]
pub struct Behaviour {
    pub edit_keeps_failed: Option<bool>,
    pub managers_refuse_community_key: Option<bool>,
    pub long_poll_own_event_ids: Option<bool>,
}

pub async fn post_behaviour(State(shared): State<Shared>, Json(b): Json<Behaviour>) -> Json<Value> {
    let mut world = shared.world();
    if let Some(keep) = b.edit_keeps_failed {
        world.edit_keeps_failed = keep;
    }
    if let Some(refuse) = b.managers_refuse_community_key {
        world.managers_refuse_community_key = refuse;
    }
    if let Some(own) = b.long_poll_own_event_ids {
        world.long_poll_own_event_ids = own;
    }
    Json(json!({"edit_keeps_failed": world.edit_keeps_failed,
                "managers_refuse_community_key": world.managers_refuse_community_key,
                "long_poll_own_event_ids": world.long_poll_own_event_ids}))
}

#[derive(Debug, Deserialize)]
pub struct ManagerChange {
    pub user_id: i64,
    /// `none`, `moderator`, `editor` or `administrator`.
    pub role: String,
}

/// `POST /_sandbox/groups/{id}/managers {user_id, role}`: another administrator changes a user's level in VK's
/// settings (promotes, demotes, removes). Nobody is told: vkhook learns it only by asking VK.
pub async fn post_manager(
    State(shared): State<Shared>,
    Path(id): Path<i64>,
    Json(c): Json<ManagerChange>,
) -> JsonResult {
    let level = match c.role.as_str() {
        "none" => None,
        "moderator" => Some(1),
        "editor" => Some(2),
        "administrator" => Some(3),
        other => return Err(bad(StatusCode::BAD_REQUEST, format!("unknown role {other}"))),
    };
    let mut world = shared.world();
    if !world.users.contains_key(&c.user_id) {
        return Err(bad(StatusCode::NOT_FOUND, format!("no user {}", c.user_id)));
    }
    let group = world.group_mut(id).ok_or_else(|| bad(StatusCode::NOT_FOUND, format!("no community {id}")))?;
    group.set_admin_level(c.user_id, level);
    Ok(Json(json!({"admins": group.admins})))
}

#[derive(Debug, Deserialize)]
pub struct Messaging {
    /// The community's messages switched on or off (off: `messages.send` answers 945).
    pub enabled: Option<bool>,
    /// People whose reply window is over (`messages.send` to them answers 950); replaces the list.
    pub reply_window_over: Option<Vec<i64>>,
}

/// `POST /_sandbox/groups/{id}/messaging`: the community's message settings.
pub async fn post_messaging(State(shared): State<Shared>, Path(id): Path<i64>, Json(m): Json<Messaging>) -> JsonResult {
    let mut world = shared.world();
    let group = world.group_mut(id).ok_or_else(|| bad(StatusCode::NOT_FOUND, format!("no community {id}")))?;
    if let Some(enabled) = m.enabled {
        group.messages_enabled = enabled;
    }
    if let Some(list) = m.reply_window_over {
        group.reply_window_over = list.into_iter().collect();
    }
    Ok(Json(json!({"enabled": group.messages_enabled, "reply_window_over": group.reply_window_over})))
}

#[derive(Debug, Deserialize)]
pub struct Permission {
    pub user_id: i64,
    pub allowed: bool,
}

/// `POST /_sandbox/groups/{id}/permission {user_id, allowed}`: the person allows or forbids messages from the
/// community (the button in VK's interface); fires `message_allow` (`{user_id, key}`) or `message_deny`
/// (`{user_id}`), the objects of the Callback API's schema.
pub async fn post_permission(
    State(shared): State<Shared>,
    Path(id): Path<i64>,
    Json(p): Json<Permission>,
) -> JsonResult {
    {
        let mut world = shared.world();
        if !world.users.contains_key(&p.user_id) {
            return Err(bad(StatusCode::NOT_FOUND, format!("no user {}", p.user_id)));
        }
        let group = world.group_mut(id).ok_or_else(|| bad(StatusCode::NOT_FOUND, format!("no community {id}")))?;
        if p.allowed {
            group.messages_allowed.insert(p.user_id);
        } else {
            group.messages_allowed.remove(&p.user_id);
        }
    }
    let (event_type, object) = if p.allowed {
        ("message_allow", json!({"user_id": p.user_id, "key": ""}))
    } else {
        ("message_deny", json!({"user_id": p.user_id}))
    };
    let event_id = delivery::emit(&shared, id, event_type, move |_| object.clone());
    Ok(Json(json!({"event_id": event_id})))
}

/// What VK support granted our app.
#[derive(Debug, Deserialize)]
pub struct AppSettings {
    /// `false`: VK ID silently drops `groups` from what a user grants at sign-in.
    pub grants_groups: Option<bool>,
}

pub async fn post_app(State(shared): State<Shared>, Json(a): Json<AppSettings>) -> Json<Value> {
    let mut world = shared.world();
    if let Some(g) = a.grants_groups {
        world.app.grants_groups = g;
    }
    Json(json!(world.app))
}

pub async fn post_clock(State(shared): State<Shared>, Json(c): Json<Clock>) -> Json<Value> {
    let mut world = shared.world();
    world.clock_offset += c.advance_secs;
    Json(json!({"now": world.now()}))
}

#[derive(Debug, Deserialize)]
pub struct UserSettings {
    #[serde(default)]
    pub groups_hidden: Option<bool>,
}

pub async fn post_user(State(shared): State<Shared>, Path(id): Path<i64>, Json(s): Json<UserSettings>) -> JsonResult {
    let mut world = shared.world();
    let user = world.users.get_mut(&id).ok_or_else(|| bad(StatusCode::NOT_FOUND, format!("no user {id}")))?;
    if let Some(hidden) = s.groups_hidden {
        user.groups_hidden = hidden;
    }
    Ok(Json(json!(user)))
}

// ---------------------------------------------------------------- the world page

struct CommentView {
    id: i64,
    author: String,
    text: String,
    reply: bool,
    from_community: bool,
}

struct PostView {
    id: i64,
    text: String,
    closed: bool,
    comments: Vec<CommentView>,
}

struct MessageView {
    id: i64,
    author: String,
    text: String,
    from_community: bool,
}

struct ServerView {
    id: i64,
    title: String,
    url: String,
    status: &'static str,
    api_version: String,
    events: String,
}

struct GroupView {
    id: i64,
    name: String,
    admins: Vec<String>,
    posts: Vec<PostView>,
    messages: Vec<MessageView>,
    servers: Vec<ServerView>,
}

#[derive(Template)]
#[template(path = "world.html")]
struct WorldPage {
    base_url: String,
    now: i64,
    groups: Vec<GroupView>,
    deliveries: Vec<crate::world::Delivery>,
}

fn author(world: &World, from_id: i64) -> String {
    if from_id < 0 {
        world.group(-from_id).map(|g| g.name.clone()).unwrap_or_else(|| format!("club{}", -from_id))
    } else {
        world
            .users
            .get(&from_id)
            .map(|u| format!("{} {}", u.first_name, u.last_name))
            .unwrap_or_else(|| format!("id{from_id}"))
    }
}

pub async fn world_page(State(shared): State<Shared>) -> Response {
    let world = shared.world();
    let groups = world
        .groups
        .values()
        .map(|g| GroupView {
            id: g.id,
            name: g.name.clone(),
            admins: g
                .admins
                .iter()
                .map(|(u, l)| {
                    let role = match l {
                        3 => "администратор",
                        2 => "редактор",
                        _ => "модератор",
                    };
                    format!("{} ({role})", author(&world, *u))
                })
                .collect(),
            posts: g
                .posts
                .iter()
                .map(|p| {
                    // Threads: each top-level comment followed by its replies.
                    let mut comments = Vec::new();
                    for top in g.comments.iter().filter(|c| c.post_id == p.id && c.parents_stack.is_empty()) {
                        for c in
                            g.comments.iter().filter(|c| c.id == top.id || c.parents_stack.first() == Some(&top.id))
                        {
                            comments.push(CommentView {
                                id: c.id,
                                author: author(&world, c.from_id),
                                text: c.text.clone(),
                                reply: c.id != top.id,
                                from_community: c.from_id == -g.id,
                            });
                        }
                    }
                    PostView { id: p.id, text: p.text.clone(), closed: p.comments_closed, comments }
                })
                .collect(),
            messages: g
                .messages
                .iter()
                .map(|m| MessageView {
                    id: m.id,
                    author: author(&world, m.from_id),
                    text: m.text.clone(),
                    from_community: m.from_id < 0,
                })
                .collect(),
            servers: g
                .servers
                .iter()
                .map(|s| ServerView {
                    id: s.id,
                    title: s.title.clone(),
                    url: s.url.clone(),
                    status: s.status.as_str(),
                    api_version: s.api_version.clone(),
                    events: s.events.iter().cloned().collect::<Vec<_>>().join(", "),
                })
                .collect(),
        })
        .collect();
    let deliveries = world.deliveries.iter().rev().take(50).cloned().collect();
    let page = WorldPage { base_url: shared.base_url.clone(), now: world.now(), groups, deliveries };
    drop(world);
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct UiComment {
    pub group_id: i64,
    pub post_id: i64,
    pub text: String,
    #[serde(default)]
    pub reply_to_comment: String,
}

pub async fn ui_comment(State(shared): State<Shared>, Form(f): Form<UiComment>) -> Response {
    let c = NewComment {
        group_id: f.group_id,
        from_id: 2,
        text: f.text,
        post_id: Some(f.post_id),
        reply_to_comment: f.reply_to_comment.parse().ok(),
    };
    match add_comment(&shared, &c) {
        Ok(_) => Redirect::to(&format!("{}/#club{}", shared.base_url, f.group_id)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct UiMessage {
    pub group_id: i64,
    pub text: String,
}

pub async fn ui_message(State(shared): State<Shared>, Form(f): Form<UiMessage>) -> Response {
    match add_message(&shared, &NewMessage { group_id: f.group_id, from_id: 2, text: f.text }) {
        Ok(_) => Redirect::to(&format!("{}/#club{}", shared.base_url, f.group_id)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

/// A generated avatar: a coloured circle with initials.
pub async fn avatar(State(shared): State<Shared>, Path((kind, file)): Path<(String, String)>) -> Response {
    let id: i64 = file.trim_end_matches(".svg").parse().unwrap_or(0);
    let name = {
        let world = shared.world();
        match kind.as_str() {
            "user" => world.users.get(&id).map(|u| format!("{} {}", u.first_name, u.last_name)),
            _ => world.group(id).map(|g| g.name.clone()),
        }
    };
    let Some(name) = name else { return StatusCode::NOT_FOUND.into_response() };
    let initials: String =
        name.split_whitespace().filter_map(|w| w.chars().find(|c| c.is_alphabetic())).take(2).collect();
    let colors = ["#5181b8", "#e64646", "#4bb34b", "#ffa000", "#792ec0", "#63b9ba"];
    let color = colors[(id.unsigned_abs() as usize) % colors.len()];
    let svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100" viewBox="0 0 100 100"><circle cx="50" cy="50" r="50" fill="{color}"/><text x="50" y="50" dy=".35em" text-anchor="middle" font-family="Arial, sans-serif" font-size="38" fill="#fff">{initials}</text></svg>"##
    );
    ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "max-age=3600")], svg).into_response()
}

pub async fn not_found(uri: axum::http::Uri) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": format!("no such sandbox route: {uri}")}))).into_response()
}
