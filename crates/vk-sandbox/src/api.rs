//! `{sandbox}/api/method/<name>`: api.vk.com. Every call is checked as VK checks it — version, method, token,
//! token type, rate limit, parameters (against the official schema) — then runs against the world.

use std::collections::{BTreeSet, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use crate::delivery::{self, version_at_least};
use crate::schema::{self, schema};
use crate::world::{random_hex, Token, TokenOwner, World};
use crate::Shared;

/// A VK error: code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: i64,
    pub message: String,
}

impl ApiError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    fn param(detail: impl AsRef<str>) -> Self {
        Self::new(100, format!("One of the parameters specified was missing or invalid: {}", detail.as_ref()))
    }
}

/// VK's standard message for an error code (used for injected faults too).
pub fn standard_error(code: i64) -> ApiError {
    let message = match code {
        1 => "Unknown error occurred",
        3 => "Unknown method passed",
        5 => "User authorization failed: invalid access_token (4).",
        6 => "Too many requests per second",
        7 => "Permission to perform this action is denied",
        9 => "Flood control",
        10 => "Internal server error",
        14 => "Captcha needed",
        15 => "Access denied",
        27 => "Group authorization failed: method is unavailable with group auth.",
        28 => "Application authorization failed: method is unavailable with service token.",
        29 => "Rate limit reached",
        100 => "One of the parameters specified was missing or invalid",
        104 => "Not found",
        203 => "Access to group denied: access to the group is denied.",
        212 => "Access to post comments denied",
        213 => "Access to status replies denied",
        222 => "Hyperlinks are forbidden",
        223 => "Too many replies",
        260 => "Access to the groups list is denied due to the user's privacy settings.",
        900 => "Can't send messages for users from blacklist",
        901 => "Can't send messages for users without permission",
        902 => "Can't send messages to this user due to their privacy settings",
        943 => "Cannot use this intent",
        944 => "Limits overflow for this intent",
        945 => "Chat was disabled",
        950 => "Can't send message, reply timed out",
        985 => "Cannot write to notifications only groups",
        987 => "Need message request",
        988 => "Pending message request",
        2000 => "Servers number limit is reached",
        _ => "Unknown error occurred",
    };
    ApiError::new(code, message)
}

type ApiResult = Result<Value, ApiError>;

/// Form body and query string, as VK reads them (the body wins).
fn collect_args(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Vec<(String, String)> {
    let mut args: Vec<(String, String)> =
        query.map(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default()).unwrap_or_default();
    let is_form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        if let Ok(form) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) {
            for (k, v) in form {
                args.retain(|(key, _)| *key != k);
                args.push((k, v));
            }
        }
    }
    args
}

pub async fn call_method(
    State(shared): State<Shared>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    let args = collect_args(query.as_deref(), &headers, &body);
    let result = run(&shared, &method, &args).await;
    Json(match result {
        Ok(response) => json!({ "response": response }),
        Err(e) => {
            let mut params = vec![json!({"key": "method", "value": method}), json!({"key": "oauth", "value": "1"})];
            params.extend(args.iter().filter(|(k, _)| k != "access_token").map(|(k, v)| json!({"key": k, "value": v})));
            json!({"error": {"error_code": e.code, "error_msg": e.message, "request_params": params}})
        }
    })
}

async fn run(shared: &Shared, method: &str, args: &[(String, String)]) -> ApiResult {
    let fault = shared.world().called(method);
    if let Some(fault) = &fault {
        if let Some(ms) = fault.latency_ms {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        if let Some(code) = fault.error_code {
            return Err(standard_error(code));
        }
    }
    let args: HashMap<String, String> = args.iter().cloned().collect();
    match args.get("v") {
        None => return Err(ApiError::new(8, "Invalid request: v (version) is required")),
        Some(v) if !version_at_least(v, (5, 81)) => {
            return Err(ApiError::new(8, "Invalid request: versions below 5.81 are deprecated"))
        }
        Some(_) => {}
    }
    let def = schema().method(method).ok_or_else(|| standard_error(3))?;

    let mut world = shared.world();
    let token = authenticate(&world, args.get("access_token").map(String::as_str))?;
    let allowed = &def.access_token_type;
    match token.owner {
        TokenOwner::Group(_) if !allowed.iter().any(|t| t == "group") => return Err(standard_error(27)),
        TokenOwner::User(_) if !allowed.iter().any(|t| t == "user") => {
            return Err(ApiError::new(15, "Access denied: this method is available with community authorization only"))
        }
        _ => {}
    }
    let per_second = match token.owner {
        TokenOwner::User(_) => shared.cfg.user_per_second,
        TokenOwner::Group(_) => shared.cfg.community_per_second,
    };
    if !world.rate_allows(&token.value, per_second, shared.cfg.rate_window) {
        return Err(standard_error(6));
    }
    schema::check_params(def, &args).map_err(ApiError::param)?;
    let call = Call { args: &args, token: &token, base_url: &shared.base_url };
    let mut effects = Effects::default();
    let result = dispatch(&mut world, method, &call, &mut effects);
    drop(world);
    effects.apply(shared);
    result
}

fn authenticate(world: &World, value: Option<&str>) -> Result<Token, ApiError> {
    let value = value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::new(5, "User authorization failed: no access_token passed."))?;
    let token = world.tokens.get(value).filter(|t| !t.revoked).ok_or_else(|| standard_error(5))?;
    if token.expires_at.is_some_and(|at| world.now() >= at) {
        return Err(ApiError::new(5, "User authorization failed: access_token has expired."));
    }
    Ok(token.clone())
}

/// One call's input.
struct Call<'a> {
    args: &'a HashMap<String, String>,
    token: &'a Token,
    base_url: &'a str,
}

impl Call<'_> {
    fn str(&self, name: &str) -> Option<&str> {
        self.args.get(name).map(String::as_str)
    }

    fn int(&self, name: &str) -> Option<i64> {
        self.str(name).and_then(|v| v.trim().parse().ok())
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.str(name), Some("1" | "true"))
    }

    fn require_int(&self, name: &str) -> Result<i64, ApiError> {
        self.int(name).ok_or_else(|| ApiError::param(format!("{name} is undefined")))
    }

    fn user_id(&self) -> Option<i64> {
        match self.token.owner {
            TokenOwner::User(id) => Some(id),
            TokenOwner::Group(_) => None,
        }
    }
}

/// What a call set in motion, done after the world's lock is released.
#[derive(Default)]
struct Effects {
    confirmations: Vec<(i64, i64)>,
    /// (community, event type, object — the same for every API version).
    events: Vec<(i64, &'static str, Value)>,
    /// A community's Long Poll setting changed: held checks look again.
    long_poll_changed: bool,
}

impl Effects {
    fn apply(self, shared: &Shared) {
        for (group_id, server_id) in self.confirmations {
            delivery::start_confirmation(shared, group_id, server_id);
        }
        for (group_id, event_type, object) in self.events {
            delivery::emit(shared, group_id, event_type, move |_| object.clone());
        }
        if self.long_poll_changed {
            shared.long_poll_wakeup.notify_waiters();
        }
    }
}

fn dispatch(world: &mut World, method: &str, call: &Call, fx: &mut Effects) -> ApiResult {
    match method {
        "groups.get" => groups_get(world, call),
        "groups.getById" => groups_get_by_id(world, call),
        "groups.getTokenPermissions" => groups_get_token_permissions(call),
        "groups.getMembers" => groups_get_members(world, call),
        "messages.isMessagesFromGroupAllowed" => messages_is_allowed(world, call),
        "groups.getCallbackConfirmationCode" => get_confirmation_code(world, call),
        "groups.getCallbackServers" => get_callback_servers(world, call),
        "groups.addCallbackServer" => add_callback_server(world, call, fx),
        "groups.editCallbackServer" => edit_callback_server(world, call, fx),
        "groups.deleteCallbackServer" => delete_callback_server(world, call),
        "groups.setCallbackSettings" => set_callback_settings(world, call),
        "groups.getCallbackSettings" => get_callback_settings(world, call),
        "groups.setLongPollSettings" => set_long_poll_settings(world, call, fx),
        "groups.getLongPollSettings" => get_long_poll_settings(world, call),
        "groups.getLongPollServer" => get_long_poll_server(world, call),
        "messages.send" => messages_send(world, call, fx),
        "wall.createComment" => wall_create_comment(world, call, fx),
        "users.get" => users_get(world, call),
        other => Err(ApiError::new(1, format!("Unknown error occurred: the VK sandbox does not implement {other}"))),
    }
}

/// A new code every time: VK's code "changes from time to time", so a client must fetch it right before add/edit.
fn get_confirmation_code(world: &mut World, call: &Call) -> ApiResult {
    let group_id = manage_group(world, call)?;
    let group = world.group_mut(group_id).expect("checked");
    group.confirmation_code = random_hex(8);
    Ok(json!({ "code": group.confirmation_code }))
}

fn get_callback_servers(world: &mut World, call: &Call) -> ApiResult {
    let group_id = manage_group(world, call)?;
    let only: Option<BTreeSet<i64>> =
        call.str("server_ids").map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect());
    let items: Vec<Value> = world
        .group(group_id)
        .expect("checked")
        .servers
        .iter()
        .filter(|s| only.as_ref().is_none_or(|o| o.contains(&s.id)))
        .map(|s| {
            json!({"id": s.id, "title": s.title, "creator_id": s.creator_id, "url": s.url,
                        "secret_key": s.secret_key, "status": s.status.as_str()})
        })
        .collect();
    Ok(json!({"count": items.len(), "items": items}))
}

/// At most ten servers per community (error 2000); VK asks the new URL for the code right after.
fn add_callback_server(world: &mut World, call: &Call, fx: &mut Effects) -> ApiResult {
    let group_id = manage_group(world, call)?;
    let url = check_url(call.str("url").unwrap_or_default())?;
    let creator = call.token.granted_by;
    let group = world.group_mut(group_id).expect("checked");
    if group.servers.len() >= 10 {
        return Err(standard_error(2000));
    }
    let title = call.str("title").unwrap_or_default();
    let server = group.add_server(title, &url, call.str("secret_key").unwrap_or_default(), creator);
    let server_id = server.id;
    fx.confirmations.push((group_id, server_id));
    Ok(json!({ "server_id": server_id }))
}

fn edit_callback_server(world: &mut World, call: &Call, fx: &mut Effects) -> ApiResult {
    let group_id = manage_group(world, call)?;
    let server_id = call.require_int("server_id")?;
    let url = check_url(call.str("url").unwrap_or_default())?;
    let keeps_failed = world.edit_keeps_failed;
    let group = world.group_mut(group_id).expect("checked");
    let server = group.server_mut(server_id).ok_or_else(|| standard_error(104))?;
    server.url = url;
    server.title = call.str("title").unwrap_or_default().to_owned();
    if let Some(secret) = call.str("secret_key") {
        server.secret_key = secret.to_owned();
    }
    if !(keeps_failed && server.status == crate::world::ServerStatus::Failed) {
        fx.confirmations.push((group_id, server_id));
    }
    Ok(json!(1))
}

fn delete_callback_server(world: &mut World, call: &Call) -> ApiResult {
    let group_id = manage_group(world, call)?;
    let server_id = call.require_int("server_id")?;
    let group = world.group_mut(group_id).expect("checked");
    let before = group.servers.len();
    group.servers.retain(|s| s.id != server_id);
    if group.servers.len() == before {
        return Err(standard_error(104));
    }
    Ok(json!(1))
}

fn set_callback_settings(world: &mut World, call: &Call) -> ApiResult {
    let group_id = manage_group(world, call)?;
    // server_id names the server the settings are for (https://dev.vk.com/ru/method/groups.setCallbackSettings);
    // with several servers per community a call without it is ambiguous. The sandbox is stricter than VK and
    // refuses a call without it.
    let server_id = call.require_int("server_id")?;
    let version = call.str("api_version").map(str::to_owned);
    if let Some(v) = &version {
        if !version_at_least(v, (5, 81)) {
            return Err(ApiError::param("api_version is invalid"));
        }
    }
    let event_names = callback_event_names();
    let group = world.group_mut(group_id).expect("checked");
    let server = group.server_mut(server_id).ok_or_else(|| standard_error(104))?;
    if let Some(v) = version {
        server.api_version = v;
    }
    for name in event_names {
        match call.str(name) {
            Some("1" | "true") => {
                server.events.insert((*name).to_owned());
            }
            Some(_) => {
                server.events.remove(*name);
            }
            None => {}
        }
    }
    Ok(json!(1))
}

fn get_callback_settings(world: &mut World, call: &Call) -> ApiResult {
    let group_id = manage_group(world, call)?;
    let server_id = call.require_int("server_id")?;
    let group = world.group(group_id).expect("checked");
    let server = group.server(server_id).ok_or_else(|| standard_error(104))?;
    let events: serde_json::Map<String, Value> = callback_event_names()
        .iter()
        .map(|name| ((*name).to_owned(), json!(i64::from(server.events.contains(*name)))))
        .collect();
    Ok(json!({"api_version": server.api_version, "events": events}))
}

/// `groups.setLongPollSettings`: the community's one Long Poll setting. Only what the call names changes (another
/// tool's flags and version stay as they are).
fn set_long_poll_settings(world: &mut World, call: &Call, fx: &mut Effects) -> ApiResult {
    let group_id = manage_group(world, call)?;
    let version = call.str("api_version").map(str::to_owned);
    if let Some(v) = &version {
        if !version_at_least(v, (5, 81)) {
            return Err(ApiError::param("api_version is invalid"));
        }
    }
    let names = long_poll_event_names();
    let lp = &mut world.group_mut(group_id).expect("checked").long_poll;
    match call.str("enabled") {
        Some("1" | "true") => lp.enabled = true,
        Some(_) => lp.enabled = false,
        None => {}
    }
    if let Some(v) = version {
        lp.api_version = v;
    }
    for name in names {
        match call.str(name) {
            Some("1" | "true") => {
                lp.events.insert((*name).to_owned());
            }
            Some(_) => {
                lp.events.remove(*name);
            }
            None => {}
        }
    }
    fx.long_poll_changed = true;
    Ok(json!(1))
}

fn get_long_poll_settings(world: &mut World, call: &Call) -> ApiResult {
    let group_id = manage_group(world, call)?;
    let lp = &world.group(group_id).expect("checked").long_poll;
    let events: serde_json::Map<String, Value> = long_poll_event_names()
        .iter()
        .map(|name| ((*name).to_owned(), json!(i64::from(lp.events.contains(*name)))))
        .collect();
    Ok(json!({"is_enabled": lp.enabled, "api_version": lp.api_version, "events": events}))
}

/// `groups.getLongPollServer`: a session — a new key, the server and the current `ts` (a string, as VK sends it).
/// Error 15 when Long Poll is off for the community.
fn get_long_poll_server(world: &mut World, call: &Call) -> ApiResult {
    let group_id = manage_group(world, call)?;
    let lp = &mut world.group_mut(group_id).expect("checked").long_poll;
    if !lp.enabled {
        return Err(ApiError::new(15, "Access denied: longpoll for this group is not enabled"));
    }
    let key = lp.new_key();
    Ok(json!({"key": key, "server": format!("{}/lp/{group_id}", call.base_url), "ts": lp.next_ts.to_string()}))
}

/// The event types Long Poll can have: `setLongPollSettings`' boolean parameters in the schema.
pub fn long_poll_event_names() -> &'static [&'static str] {
    use std::sync::OnceLock;
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let def = schema().method("groups.setLongPollSettings").expect("the schema has setLongPollSettings");
        def.params
            .iter()
            .filter(|p| p.types.iter().any(|t| t == "boolean") && p.name != "enabled")
            .map(|p| &*Box::leak(p.name.clone().into_boxed_str()))
            .collect()
    })
}

/// The event types a callback server can have: `setCallbackSettings`' boolean parameters in the schema (a superset
/// of `groups_long_poll_events`, which lacks `like_add`/`like_remove`).
pub fn callback_event_names() -> &'static [&'static str] {
    use std::sync::OnceLock;
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let def = schema().method("groups.setCallbackSettings").expect("the schema has setCallbackSettings");
        def.params
            .iter()
            .filter(|p| p.types.iter().any(|t| t == "boolean"))
            .map(|p| &*Box::leak(p.name.clone().into_boxed_str()))
            .collect()
    })
}

fn check_url(url: &str) -> Result<String, ApiError> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(url.to_owned()),
        _ => Err(ApiError::param("url is invalid")),
    }
}

/// Callback-server methods need a community token with `manage` for that very community. A user token is refused
/// (VK allows one only for Standalone apps that VK support granted `groups`; ours is not one).
fn manage_group(world: &World, call: &Call) -> Result<i64, ApiError> {
    let group_id = call.require_int("group_id")?;
    if world.group(group_id).is_none() {
        return Err(ApiError::param("group_id is invalid"));
    }
    match call.token.owner {
        TokenOwner::User(_) => Err(ApiError::new(15, "Access denied: no access to call this method")),
        TokenOwner::Group(g) if g != group_id => Err(ApiError::new(15, "Access denied: no access to this community")),
        TokenOwner::Group(_) if !call.token.scopes.contains("manage") => {
            Err(ApiError::new(15, "Access denied: no access to call this method"))
        }
        TokenOwner::Group(_) => Ok(group_id),
    }
}

fn groups_get(world: &World, call: &Call) -> ApiResult {
    let me = call.user_id().expect("groups.get accepts user tokens only (checked by type)");
    if !call.token.scopes.contains("groups") {
        return Err(ApiError::new(15, "Access denied: no access to call this method"));
    }
    let user_id = call.int("user_id").unwrap_or(me);
    let user = world.users.get(&user_id).ok_or_else(|| ApiError::param("user_id is invalid"))?;
    if user.groups_hidden || (user_id != me) {
        return Err(standard_error(260));
    }
    let filters: Vec<&str> = call.str("filter").map(|f| f.split(',').map(str::trim).collect()).unwrap_or_default();
    let min_level = if filters.contains(&"admin") {
        Some(3)
    } else if filters.contains(&"editor") {
        Some(2)
    } else if filters.contains(&"moder") {
        Some(1)
    } else {
        None
    };
    let groups: Vec<_> = world
        .groups
        .values()
        .filter(|g| match min_level {
            Some(level) => g.admin_level(user_id).is_some_and(|l| l >= level),
            None => g.members.contains(&user_id),
        })
        .filter(|g| {
            (!filters.contains(&"groups") || g.kind == "group") && (!filters.contains(&"publics") || g.kind == "page")
        })
        .collect();
    let offset = call.int("offset").unwrap_or(0).max(0) as usize;
    let count = call.int("count").unwrap_or(1000).max(0) as usize;
    let page = groups.iter().skip(offset).take(count);
    let items: Vec<Value> = if call.flag("extended") {
        page.map(|g| g.to_json(Some(me), call.base_url)).collect()
    } else {
        page.map(|g| json!(g.id)).collect()
    };
    Ok(json!({"count": groups.len(), "items": items}))
}

fn groups_get_by_id(world: &World, call: &Call) -> ApiResult {
    let mut keys: Vec<String> = Vec::new();
    for name in ["group_ids", "group_id"] {
        if let Some(v) = call.str(name) {
            keys.extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned));
        }
    }
    // Roles only for a user token with `groups` ("Required scope = groups", https://dev.vk.com/en/reference/objects/group).
    let viewer = call.user_id().filter(|_| call.token.scopes.contains("groups"));
    if keys.is_empty() {
        match call.token.owner {
            TokenOwner::Group(g) => keys.push(g.to_string()),
            TokenOwner::User(_) => return Err(ApiError::param("group_ids is undefined")),
        }
    }
    let mut groups = Vec::new();
    for key in &keys {
        let group = world.find_group(key).ok_or_else(|| ApiError::param("group_ids is invalid"))?;
        groups.push(group.to_json(viewer, call.base_url));
    }
    Ok(json!({"groups": groups, "profiles": []}))
}

/// `groups.getMembers`: the community's members, or with `filter=managers` its managers and their roles
/// (`{count, items:[{id, role}]}`, `groups_getMembers_filter_response` in the schema). A user token sees the
/// managers only if its user is one; a community token only for its own community. VK does not document whether
/// it answers a community token with `filter=managers` at all: `World::managers_refuse_community_key` makes the
/// sandbox refuse it, so both answers are tested.
fn groups_get_members(world: &World, call: &Call) -> ApiResult {
    let key = call.str("group_id").ok_or_else(|| ApiError::param("group_id is undefined"))?;
    let group = world.find_group(key).ok_or_else(|| ApiError::param("group_id is invalid"))?;
    let offset = call.int("offset").unwrap_or(0).max(0) as usize;
    let count = call.int("count").unwrap_or(1000).clamp(0, 1000) as usize;
    match call.str("filter") {
        Some("managers") => {
            match call.token.owner {
                TokenOwner::User(u) if group.admin_level(u).is_none() => {
                    return Err(ApiError::new(15, "Access denied: you are not a manager of this community"))
                }
                TokenOwner::Group(g) if g != group.id => {
                    return Err(ApiError::new(15, "Access denied: no access to this community"))
                }
                TokenOwner::Group(_) if world.managers_refuse_community_key => {
                    return Err(ApiError::new(15, "Access denied: no access to call this method"))
                }
                _ => {}
            }
            let managers: Vec<Value> = group
                .admins
                .keys()
                .filter_map(|u| group.manager_role(*u).map(|role| json!({"id": u, "role": role})))
                .collect();
            let page: Vec<&Value> = managers.iter().skip(offset).take(count).collect();
            Ok(json!({"count": managers.len(), "items": page}))
        }
        Some(_) => Ok(json!({"count": 0, "items": []})),
        None => {
            let page: Vec<i64> = group.members.iter().copied().skip(offset).take(count).collect();
            Ok(json!({"count": group.members.len(), "items": page}))
        }
    }
}

/// `messages.isMessagesFromGroupAllowed`: whether the community may write to the user (its messages switched on
/// and the user allowed them). A community token answers for its own community only.
fn messages_is_allowed(world: &World, call: &Call) -> ApiResult {
    let group_id = call.require_int("group_id")?;
    let user_id = call.require_int("user_id")?;
    if let TokenOwner::Group(g) = call.token.owner {
        if g != group_id {
            return Err(ApiError::new(15, "Access denied: no access to this community"));
        }
    }
    let group = world.group(group_id).ok_or_else(|| ApiError::param("group_id is invalid"))?;
    let allowed = group.messages_enabled && group.messages_allowed.contains(&user_id);
    Ok(json!({"is_allowed": i64::from(allowed)}))
}

fn groups_get_token_permissions(call: &Call) -> ApiResult {
    let scopes: Vec<(&str, u64)> =
        crate::world::COMMUNITY_RIGHTS.into_iter().filter(|(name, _)| call.token.scopes.contains(*name)).collect();
    let mask: u64 = scopes.iter().map(|(_, bit)| bit).sum();
    let permissions: Vec<Value> = scopes.iter().map(|(name, bit)| json!({"setting": bit, "name": name})).collect();
    Ok(json!({"mask": mask, "permissions": permissions}))
}

fn messages_send(world: &mut World, call: &Call, fx: &mut Effects) -> ApiResult {
    let TokenOwner::Group(group_id) = call.token.owner else {
        return Err(ApiError::new(15, "Access denied: the sandbox sends messages as a community only"));
    };
    if !call.token.scopes.contains("messages") {
        return Err(ApiError::new(15, "Access denied: no access to call this method"));
    }
    // Since 5.90 VK requires random_id (https://dev.vk.com/ru/reference/versions, 5.90; the method page
    // https://dev.vk.com/ru/method/messages.send marks it required); the schema does not say so.
    let random_id = call.require_int("random_id")?;
    let peer_id =
        call.int("peer_id").or_else(|| call.int("user_id")).ok_or_else(|| ApiError::param("peer_id is undefined"))?;
    let text = call.str("message").unwrap_or_default();
    if text.is_empty() && call.str("attachment").is_none() {
        return Err(ApiError::param("message is empty or invalid"));
    }
    let now = world.now();
    if !world.users.contains_key(&peer_id) {
        return Err(ApiError::param("peer_id is invalid"));
    }
    let forget = world.forget_dedup_keys;
    let group = world.group_mut(group_id).expect("token's community exists");
    if let Some(id) = group.random_ids.get(&(peer_id, random_id)).filter(|_| !forget) {
        return Ok(json!(id));
    }
    if !group.messages_enabled {
        return Err(standard_error(945));
    }
    if !group.messages_allowed.contains(&peer_id) {
        return Err(standard_error(901));
    }
    if group.reply_window_over.contains(&peer_id) {
        return Err(standard_error(950));
    }
    let message = group.add_message(peer_id, -group_id, text, random_id, now);
    group.random_ids.insert((peer_id, random_id), message.id);
    fx.events.push((group_id, "message_reply", message.to_json()));
    Ok(json!(message.id))
}

fn wall_create_comment(world: &mut World, call: &Call, fx: &mut Effects) -> ApiResult {
    let owner_id = call.int("owner_id").ok_or_else(|| ApiError::param("owner_id is undefined"))?;
    let group_id = -owner_id;
    let post_id = call.require_int("post_id")?;
    let from_group = call.int("from_group").unwrap_or(0);
    let now = world.now();
    let author = match call.token.owner {
        TokenOwner::Group(g) => {
            if g != group_id || (from_group != 0 && from_group != g) {
                return Err(ApiError::new(15, "Access denied: no access to this community"));
            }
            // A community token needs no right for it: `wall` is a user right, and the schema's
            // `access_token_type` for wall.createComment is [user, group] (https://dev.vk.com/ru/method/wall.createComment).
            -g
        }
        TokenOwner::User(u) => {
            if from_group != 0 {
                let level = world.group(from_group).and_then(|g| g.admin_level(u));
                if from_group != group_id || level.is_none_or(|l| l < 2) {
                    return Err(ApiError::new(15, "Access denied: cannot post as this community"));
                }
                -from_group
            } else {
                u
            }
        }
    };
    let forget = world.forget_dedup_keys;
    let group = world.group_mut(group_id).ok_or_else(|| ApiError::param("owner_id is invalid"))?;
    let post = group.post(post_id).ok_or_else(|| ApiError::param("no post with this post_id"))?;
    if post.comments_closed {
        return Err(standard_error(213));
    }
    let guid = call.str("guid").filter(|g| !g.is_empty()).map(str::to_owned);
    if let Some(guid) = guid.as_ref().filter(|_| !forget) {
        if let Some(existing) = group.guids.get(&(post_id, guid.clone())).and_then(|id| group.comment(*id)) {
            return Ok(json!({"comment_id": existing.id, "parents_stack": existing.parents_stack}));
        }
    }
    let reply_to = call.int("reply_to_comment");
    if let Some(r) = reply_to {
        if group.comment(r).is_none_or(|c| c.post_id != post_id) {
            return Err(ApiError::param("reply_to_comment is invalid"));
        }
    }
    let text = call.str("message").unwrap_or_default();
    if text.is_empty() && call.str("attachments").is_none() && call.str("sticker_id").is_none() {
        return Err(ApiError::param("message is empty"));
    }
    let comment = group.add_comment(post_id, author, text, reply_to, guid.clone(), now);
    if let Some(guid) = guid {
        group.guids.insert((post_id, guid), comment.id);
    }
    fx.events.push((group_id, "wall_reply_new", comment.to_json(group_id)));
    Ok(json!({"comment_id": comment.id, "parents_stack": comment.parents_stack}))
}

fn users_get(world: &World, call: &Call) -> ApiResult {
    let keys: Vec<String> = match call.str("user_ids") {
        Some(ids) => ids.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        None => match call.token.owner {
            TokenOwner::User(u) => vec![u.to_string()],
            TokenOwner::Group(_) => return Ok(json!([])),
        },
    };
    let users: Vec<Value> = keys.iter().filter_map(|k| world.find_user(k)).map(|u| u.to_json(call.base_url)).collect();
    Ok(json!(users))
}

/// Builds a `message_new` object for a server version: `{message, client_info}` since 5.103, the bare message before.
pub fn message_new_object(message: &Value, version: &str) -> Value {
    if version_at_least(version, (5, 103)) {
        json!({
            "message": message,
            "client_info": {
                "button_actions": ["text", "vkpay", "open_app", "location", "open_link", "callback", "intent_subscribe", "intent_unsubscribe"],
                "keyboard": true, "inline_keyboard": true, "carousel": true, "lang_id": 0
            }
        })
    } else {
        message.clone()
    }
}
