//! `{sandbox}/id/…` (id.vk.com: VK ID, OAuth 2.1 with PKCE) and `{sandbox}/oauth/…` (oauth.vk.com: community
//! tokens). Consent pages are real HTML: pick a test user, press «Разрешить», get redirected back.
//! Codes are single-use and expire; VK ID access tokens expire after an hour of sandbox time.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::world::{random_token, CommunityCode, RefreshToken, TokenOwner, User, VkIdCode, World};
use crate::Shared;

const SANDBOX_USER_COOKIE: &str = "vk_sandbox_user";

#[derive(Template)]
#[template(path = "consent_vkid.html")]
struct VkIdConsentPage<'a> {
    client_id: &'a str,
    scopes: Vec<String>,
    action: String,
    hidden: Vec<(String, String)>,
    users: Vec<User>,
    base_url: &'a str,
}

#[derive(Template)]
#[template(path = "consent_community.html")]
struct CommunityConsentPage<'a> {
    groups: Vec<crate::world::Group>,
    scopes: Vec<String>,
    action: String,
    hidden: Vec<(String, String)>,
    users: Vec<User>,
    base_url: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    message: &'a str,
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let html = ErrorPage { message }.render().unwrap_or_else(|_| message.to_owned());
    (status, Html(html)).into_response()
}

fn render(page: impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("template: {e}")),
    }
}

/// Whether `uri` may receive codes for this app: listed exactly, or any loopback http(s) URL when none are listed.
fn redirect_allowed(world: &World, uri: &str) -> bool {
    if !world.app.redirect_uris.is_empty() {
        return world.app.redirect_uris.iter().any(|u| u == uri);
    }
    url::Url::parse(uri).is_ok_and(|u| {
        let loopback = match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        matches!(u.scheme(), "http" | "https") && loopback
    })
}

fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(uri).expect("checked redirect URI");
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    url.into()
}

fn sandbox_user(headers: &HeaderMap) -> Option<i64> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (name, value) = c.trim().split_once('=')?;
        (name == SANDBOX_USER_COOKIE).then(|| value.parse().ok()).flatten()
    })
}

/// Users with the remembered one (the last who signed in here) first.
fn users_for_page(world: &World, remembered: Option<i64>, only: impl Fn(&User) -> bool) -> Vec<User> {
    let mut users: Vec<User> = world.users.values().filter(|u| only(u)).cloned().collect();
    if let Some(id) = remembered {
        users.sort_by_key(|u| u.id != id);
    }
    users
}

// ---------------------------------------------------------------- VK ID

const VKID_PARAMS: [&str; 7] =
    ["response_type", "client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method", "scope"];

pub async fn vkid_authorize_page(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let world = shared.world();
    if let Err(resp) = check_vkid_request(&world, &q) {
        return resp;
    }
    let hidden = VKID_PARAMS.iter().filter_map(|k| q.get(*k).map(|v| ((*k).to_owned(), v.clone()))).collect();
    let scopes = q.get("scope").map(|s| s.split_whitespace().map(str::to_owned).collect()).unwrap_or_default();
    render(VkIdConsentPage {
        client_id: &world.app.client_id,
        scopes,
        action: format!("{}/id/authorize", shared.base_url),
        hidden,
        users: users_for_page(&world, sandbox_user(&headers), |_| true),
        base_url: &shared.base_url,
    })
}

/// Checks an authorization request. Bad client or redirect URI: an error page (never redirect to an unknown
/// address); other problems: a redirect with `error`.
#[allow(clippy::result_large_err)]
fn check_vkid_request(world: &World, q: &HashMap<String, String>) -> Result<(), Response> {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    if get("client_id") != world.app.client_id {
        return Err(error_page(StatusCode::BAD_REQUEST, "Неизвестное приложение (client_id)."));
    }
    if !redirect_allowed(world, get("redirect_uri")) {
        return Err(error_page(StatusCode::BAD_REQUEST, "Адрес redirect_uri не разрешён для этого приложения."));
    }
    let problem = if get("response_type") != "code" {
        Some("response_type must be code")
    } else if get("code_challenge").is_empty() {
        Some("code_challenge is required")
    } else if !get("code_challenge_method").eq_ignore_ascii_case("s256") {
        Some("code_challenge_method must be s256")
    } else if get("state").len() < 32 {
        Some("state must be at least 32 characters")
    } else {
        None
    };
    match problem {
        Some(p) => Err(Redirect::to(&with_query(
            get("redirect_uri"),
            &[("error", "invalid_request"), ("error_description", p), ("state", get("state"))],
        ))
        .into_response()),
        None => Ok(()),
    }
}

pub async fn vkid_authorize_submit(State(shared): State<Shared>, Form(f): Form<HashMap<String, String>>) -> Response {
    let mut world = shared.world();
    if let Err(resp) = check_vkid_request(&world, &f) {
        return resp;
    }
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    let redirect_uri = get("redirect_uri").to_owned();
    let state = get("state").to_owned();
    if get("decision") != "allow" {
        return Redirect::to(&with_query(
            &redirect_uri,
            &[("error", "access_denied"), ("error_description", "User denied access"), ("state", &state)],
        ))
        .into_response();
    }
    let Some(user_id) = get("user_id").parse::<i64>().ok().filter(|id| world.users.contains_key(id)) else {
        return error_page(StatusCode::BAD_REQUEST, "Выберите пользователя.");
    };
    let grants_groups = world.app.grants_groups;
    let code = random_token("", 48);
    let device_id = random_token("", 32);
    let expires_at = world.now() + shared.cfg.code_ttl_secs;
    world.vkid_codes.insert(
        code.clone(),
        VkIdCode {
            user_id,
            client_id: get("client_id").to_owned(),
            redirect_uri: redirect_uri.clone(),
            code_challenge: get("code_challenge").to_owned(),
            scopes: get("scope")
                .split_whitespace()
                .filter(|s| *s != "groups" || grants_groups)
                .map(str::to_owned)
                .collect(),
            device_id: device_id.clone(),
            expires_at,
        },
    );
    let location = with_query(
        &redirect_uri,
        &[
            ("code", &code),
            ("state", &state),
            ("device_id", &device_id),
            ("expires_in", &shared.cfg.code_ttl_secs.to_string()),
            ("type", "code_v2"),
        ],
    );
    let cookie = format!("{SANDBOX_USER_COOKIE}={user_id}; Path=/; HttpOnly; SameSite=Lax");
    ([(header::SET_COOKIE, cookie)], Redirect::to(&location)).into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(json!({"error": error, "error_description": description}))).into_response()
}

/// `POST /id/oauth2/auth`: `authorization_code` and `refresh_token` grants.
pub async fn vkid_token(State(shared): State<Shared>, Form(f): Form<HashMap<String, String>>) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    let mut world = shared.world();
    if get("client_id") != world.app.client_id {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client_id is invalid");
    }
    let (user_id, scopes, device_id) = match get("grant_type") {
        "authorization_code" => {
            // Single use: the code is gone whatever happens next.
            let Some(code) = world.vkid_codes.remove(get("code")) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "code is invalid or already used");
            };
            if world.now() >= code.expires_at {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "code is expired");
            }
            if code.redirect_uri != get("redirect_uri") {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "redirect_uri does not match");
            }
            if code.device_id != get("device_id") {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "device_id does not match");
            }
            let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(get("code_verifier").as_bytes()));
            if challenge != code.code_challenge {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "code_verifier is invalid");
            }
            (code.user_id, code.scopes, code.device_id)
        }
        "refresh_token" => {
            let Some(refresh) = world.refresh_tokens.get(get("refresh_token")).filter(|r| !r.revoked).cloned() else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "refresh_token is invalid or expired");
            };
            if refresh.device_id != get("device_id") {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "device_id does not match");
            }
            // VK ID rotates refresh tokens: the old one stops working.
            world.refresh_tokens.remove(get("refresh_token"));
            (refresh.user_id, refresh.scopes, refresh.device_id)
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant_type is not supported"),
    };
    let client_id = world.app.client_id.clone();
    let ttl = shared.cfg.vkid_token_ttl_secs;
    let access = world.issue_token(TokenOwner::User(user_id), scopes.clone(), Some(ttl), user_id, &client_id);
    let refresh = random_token("vk2.r.", 80);
    world.refresh_tokens.insert(
        refresh.clone(),
        RefreshToken { user_id, scopes: scopes.clone(), device_id, client_id, revoked: false },
    );
    let scope = scopes.into_iter().collect::<Vec<_>>().join(" ");
    Json(json!({
        "access_token": access,
        "refresh_token": refresh,
        "id_token": random_token("", 64),
        "token_type": "Bearer",
        "expires_in": ttl,
        "user_id": user_id,
        "state": get("state"),
        "scope": scope,
    }))
    .into_response()
}

/// `POST /id/oauth2/user_info`.
pub async fn vkid_user_info(State(shared): State<Shared>, Form(f): Form<HashMap<String, String>>) -> Response {
    let world = shared.world();
    if f.get("client_id").map(String::as_str) != Some(world.app.client_id.as_str()) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client_id is invalid");
    }
    let token = f.get("access_token").and_then(|t| world.tokens.get(t)).filter(|t| !t.revoked);
    let Some(token) = token else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", "access token is invalid");
    };
    if token.expires_at.is_some_and(|at| world.now() >= at) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", "access token is expired");
    }
    let TokenOwner::User(user_id) = token.owner else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", "not a user token");
    };
    let user = &world.users[&user_id];
    Json(json!({"user": {
        "user_id": user_id.to_string(),
        "first_name": user.first_name,
        "last_name": user.last_name,
        "avatar": format!("{}/avatars/user/{}.svg", shared.base_url, user_id),
        "verified": false,
    }}))
    .into_response()
}

// ---------------------------------------------------------------- oauth.vk.com (community tokens)

const COMMUNITY_PARAMS: [&str; 7] = ["client_id", "redirect_uri", "group_ids", "scope", "response_type", "v", "state"];

/// Community scope names from `scope`: names separated by commas or spaces, or a bit mask. A right VK does not
/// document for community tokens (`wall`, say) makes the whole request invalid, as VK refuses an invalid scope
/// (dev.vk.com "Права доступа для токена сообщества", https://dev.vk.com/ru/reference/access-rights).
fn community_scopes(scope: &str) -> Result<BTreeSet<String>, String> {
    use crate::world::COMMUNITY_RIGHTS;
    if let Ok(mask) = scope.trim().parse::<u64>() {
        let known: u64 = COMMUNITY_RIGHTS.iter().map(|(_, b)| b).sum();
        if mask & !known != 0 {
            return Err(format!("scope {mask} has bits no community right has"));
        }
        return Ok(COMMUNITY_RIGHTS.iter().filter(|(_, b)| mask & b != 0).map(|(n, _)| (*n).to_owned()).collect());
    }
    let mut names = BTreeSet::new();
    for name in scope.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
        if !COMMUNITY_RIGHTS.iter().any(|(n, _)| *n == name) {
            return Err(format!("«{name}» is not a community right"));
        }
        names.insert(name.to_owned());
    }
    Ok(names)
}

#[allow(clippy::result_large_err)]
fn check_community_request(world: &World, q: &HashMap<String, String>) -> Result<Vec<i64>, Response> {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    if get("client_id") != world.app.client_id {
        return Err(error_page(StatusCode::BAD_REQUEST, "Неизвестное приложение (client_id)."));
    }
    if !redirect_allowed(world, get("redirect_uri")) {
        return Err(error_page(StatusCode::BAD_REQUEST, "Адрес redirect_uri не разрешён для этого приложения."));
    }
    // VK answers an invalid scope with its own error page and no redirect (vk-android-sdk#518, https://github.com/VKCOM/vk-android-sdk/issues/518).
    match community_scopes(get("scope")) {
        Err(why) => {
            return Err(error_page(StatusCode::BAD_REQUEST, &format!("Неверный параметр scope: {why}.")));
        }
        Ok(s) if s.is_empty() => {
            return Err(error_page(StatusCode::BAD_REQUEST, "Неверный параметр scope: пусто."));
        }
        Ok(_) => {}
    }
    let ids: Vec<i64> = get("group_ids").split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let problem = if get("response_type") != "code" {
        Some("response_type must be code")
    } else if ids.is_empty() || ids.iter().any(|id| world.group(*id).is_none()) {
        Some("group_ids is invalid")
    } else {
        None
    };
    match problem {
        Some(p) => Err(Redirect::to(&with_query(
            get("redirect_uri"),
            &[("error", "invalid_request"), ("error_description", p), ("state", get("state"))],
        ))
        .into_response()),
        None => Ok(ids),
    }
}

pub async fn community_authorize_page(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let world = shared.world();
    let ids = match check_community_request(&world, &q) {
        Ok(ids) => ids,
        Err(resp) => return resp,
    };
    let hidden = COMMUNITY_PARAMS.iter().filter_map(|k| q.get(*k).map(|v| ((*k).to_owned(), v.clone()))).collect();
    render(CommunityConsentPage {
        groups: ids.iter().filter_map(|id| world.group(*id).cloned()).collect(),
        scopes: community_scopes(q.get("scope").map(String::as_str).unwrap_or_default())
            .unwrap_or_default()
            .into_iter()
            .collect(),
        action: format!("{}/oauth/authorize", shared.base_url),
        hidden,
        users: users_for_page(&world, sandbox_user(&headers), |_| true),
        base_url: &shared.base_url,
    })
}

pub async fn community_authorize_submit(State(shared): State<Shared>, body: axum::body::Bytes) -> Response {
    // Repeated `grant` fields: read the form as pairs.
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let f: HashMap<String, String> = pairs.iter().filter(|(k, _)| k != "grant" && k != "community").cloned().collect();
    let granted: BTreeSet<String> = pairs.iter().filter(|(k, _)| k == "grant").map(|(_, v)| v.clone()).collect();
    let ticked: BTreeSet<i64> =
        pairs.iter().filter(|(k, _)| k == "community").filter_map(|(_, v)| v.parse().ok()).collect();
    let mut world = shared.world();
    let requested = match check_community_request(&world, &f) {
        Ok(ids) => ids,
        Err(resp) => return resp,
    };
    // The person may untick communities: keys are issued for the ticked ones only, as on VK's page for several
    // communities (`group_ids=a,b,c`: dev.vk.com/ru/api/access-token/authcode-flow-community).
    let ids: Vec<i64> = requested.into_iter().filter(|id| ticked.contains(id)).collect();
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    let redirect_uri = get("redirect_uri").to_owned();
    let state = get("state").to_owned();
    if get("decision") != "allow" || ids.is_empty() {
        return Redirect::to(&with_query(
            &redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_reason", "user_denied"),
                ("error_description", "User denied your request"),
                ("state", &state),
            ],
        ))
        .into_response();
    }
    let Some(user_id) = get("user_id").parse::<i64>().ok().filter(|id| world.users.contains_key(id)) else {
        return error_page(StatusCode::BAD_REQUEST, "Выберите пользователя.");
    };
    // Only a community's administrator can grant its token.
    if ids.iter().any(|id| world.group(*id).and_then(|g| g.admin_level(user_id)) != Some(3)) {
        return Redirect::to(&with_query(
            &redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_reason", "not_admin"),
                ("error_description", "Only a community administrator can grant access"),
                ("state", &state),
            ],
        ))
        .into_response();
    }
    let requested = community_scopes(get("scope")).unwrap_or_default();
    let scopes: BTreeSet<String> = requested.intersection(&granted).cloned().collect();
    let code = random_token("", 32);
    let expires_at = world.now() + shared.cfg.code_ttl_secs;
    world.community_codes.insert(
        code.clone(),
        CommunityCode {
            user_id,
            client_id: get("client_id").to_owned(),
            redirect_uri: redirect_uri.clone(),
            grants: ids.iter().map(|id| (*id, scopes.clone())).collect::<BTreeMap<_, _>>(),
            expires_at,
        },
    );
    Redirect::to(&with_query(&redirect_uri, &[("code", &code), ("state", &state)])).into_response()
}

/// The community code exchange's name in faults and call counts.
pub const EXCHANGE: &str = "oauth.access_token";

/// `GET /oauth/access_token?client_id&client_secret&redirect_uri&code` → `{"access_token_<id>": …, "expires_in": 0}`.
pub async fn community_access_token(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    // Counted and slowed like an API method (`oauth.access_token` in faults and counts).
    let latency = shared.world().called(EXCHANGE).and_then(|f| f.latency_ms);
    if let Some(ms) = latency {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let mut world = shared.world();
    if get("client_id") != world.app.client_id || get("client_secret") != world.app.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client_id or client_secret is incorrect");
    }
    let Some(code) = world.community_codes.remove(get("code")) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Code is invalid or expired.");
    };
    if world.now() >= code.expires_at {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Code is invalid or expired.");
    }
    if code.redirect_uri != get("redirect_uri") {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "redirect_uri is incorrect");
    }
    let client_id = world.app.client_id.clone();
    // One `access_token_<id>` per community, and the same keys as `groups: [{group_id, access_token}]`, the
    // array some clients read instead (both are in VK's answer for a community code).
    let mut answer = serde_json::Map::new();
    let mut groups = Vec::new();
    for (group_id, scopes) in code.grants {
        let token = world.issue_token(TokenOwner::Group(group_id), scopes, None, code.user_id, &client_id);
        answer.insert(format!("access_token_{group_id}"), json!(token));
        groups.push(json!({"group_id": group_id, "access_token": token}));
    }
    answer.insert("groups".into(), json!(groups));
    answer.insert("expires_in".into(), json!(0));
    Json(answer).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn community_scopes_read_names_and_masks() {
        let both = ["manage", "messages"].map(String::from).into_iter().collect();
        assert_eq!(community_scopes("manage,messages"), Ok(both));
        let s = community_scopes("266240").unwrap(); // manage + messages
        assert_eq!(s, ["manage", "messages"].map(String::from).into_iter().collect());
    }

    #[test]
    fn a_right_vk_does_not_document_for_communities_is_refused() {
        assert!(community_scopes("manage,messages,wall").is_err());
        assert!(community_scopes("manage bogus").is_err());
        assert!(community_scopes("274432").is_err(), "manage + messages + the wall bit");
    }
}
