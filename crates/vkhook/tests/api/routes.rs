//! Every route of the router, as anonymous, as another community's administrator, as an editor and as an administrator
//! VK has just removed: each gets what its role allows and nothing more. The list of routes is read from the router's
//! source, so a new route that is not in the matrix fails this test until someone decides who may use it.

use std::collections::BTreeSet;
use vk::GroupId;
use vk::UserId;

use vk_sandbox::testing::Consent;
use vkhook::model::Role;

use crate::helpers::*;

/// Who a route is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone, signed in or not (the landing page, sign-in, the language switch, the e-mail link, machine routes).
    Public,
    /// A signed-in user, about their own things (their list, their bulk runs).
    SignedIn,
    /// A community's managers, any role (its page, its log without private texts, its progress).
    Manager,
    /// A community's administrator as VK says now: changes, secrets, private texts, raw events, endpoints.
    Admin,
}

/// (method, path as the router names it, who it is for).
const MATRIX: &[(&str, &str, Access)] = &[
    ("GET", "/", Access::Public),
    ("GET", "/auth/vk/login", Access::Public),
    ("GET", "/auth/vk/callback", Access::Public),
    ("POST", "/lang", Access::Public),
    ("GET", "/alerts/confirm", Access::Public),
    ("GET", "/healthz", Access::Public),
    ("GET", "/metrics", Access::Public),
    ("GET", "/static/style.css", Access::Public),
    ("GET", "/static/setup.js", Access::Public),
    ("GET", "/static/favicon.svg", Access::Public),
    ("POST", "/vk/callback", Access::Public),
    ("POST", "/logout", Access::SignedIn),
    ("GET", "/communities", Access::SignedIn),
    ("POST", "/communities/add", Access::SignedIn),
    ("POST", "/communities/bulk", Access::SignedIn),
    ("GET", "/communities/bulk/{bulk}", Access::SignedIn),
    ("POST", "/communities/bulk/{bulk}/continue", Access::SignedIn),
    ("GET", "/auth/vk/community-callback", Access::SignedIn),
    ("GET", "/communities/{id}", Access::Manager),
    ("GET", "/communities/{id}/setup", Access::Manager),
    ("GET", "/communities/{id}/setup/status", Access::Manager),
    ("GET", "/communities/{id}/events", Access::Manager),
    ("GET", "/communities/{id}/manual", Access::Manager),
    ("POST", "/communities/{id}/connect", Access::Admin),
    ("POST", "/communities/{id}/disconnect", Access::Admin),
    ("POST", "/communities/{id}/event-types", Access::Admin),
    ("POST", "/communities/{id}/manual", Access::Admin),
    ("POST", "/communities/{id}/manual/secret", Access::Admin),
    ("POST", "/communities/{id}/bot", Access::Admin),
    ("POST", "/communities/{id}/rules", Access::Admin),
    ("POST", "/communities/{id}/rules/{rule}/delete", Access::Admin),
    ("POST", "/communities/{id}/rules/{rule}/move", Access::Admin),
    ("POST", "/communities/{id}/check", Access::Admin),
    ("POST", "/communities/{id}/check-path", Access::Admin),
    ("GET", "/communities/{id}/events/{event}", Access::Admin),
    ("POST", "/communities/{id}/events/{event}/replay", Access::Admin),
    ("POST", "/communities/{id}/alerts", Access::Admin),
    ("POST", "/communities/{id}/endpoints", Access::Admin),
    ("GET", "/communities/{id}/endpoints/{endpoint}", Access::Admin),
    ("POST", "/communities/{id}/endpoints/{endpoint}/test", Access::Admin),
    ("POST", "/communities/{id}/endpoints/{endpoint}/rotate", Access::Admin),
    ("POST", "/communities/{id}/endpoints/{endpoint}/replay", Access::Admin),
    ("POST", "/communities/{id}/endpoints/{endpoint}/disable", Access::Admin),
    ("POST", "/communities/{id}/endpoints/{endpoint}/enable", Access::Admin),
    ("POST", "/communities/{id}/endpoints/{endpoint}/delete", Access::Admin),
];

/// Every (method, path) the router declares, read from its source.
fn declared_routes() -> BTreeSet<(String, String)> {
    let source = include_str!("../../src/http/mod.rs");
    let urls = include_str!("../../src/urls.rs");
    let mut routes = BTreeSet::new();
    for (i, _) in source.match_indices(".route(") {
        let rest = source[i + ".route(".len()..].trim_start();
        // A literal path, or one of `urls`' constants (`urls::CALLBACK_PATH`), read from there.
        let (path, rest) = match rest.strip_prefix('"') {
            Some(rest) => (rest.split('"').next().unwrap().to_owned(), &rest[rest.find('"').unwrap()..]),
            None => {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
                let constant = name.rsplit("::").next().unwrap();
                let at = urls.find(&format!("pub const {constant}: &str = \"")).unwrap_or_else(|| panic!("{name}"));
                let value = urls[at..].split('"').nth(1).unwrap().to_owned();
                (value, &rest[name.len() - 1..])
            }
        };
        // The handlers up to the end of the `.route(…)` call: `get(…)`, `post(…)`, `get(…).post(…)`.
        let mut depth = 1;
        let call: String = rest[1..]
            .chars()
            .take_while(|c| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth > 0
            })
            .collect();
        for (method, marker) in [("GET", "get("), ("POST", "post(")] {
            if call.contains(marker) {
                routes.insert((method.to_owned(), path.clone()));
            }
        }
    }
    routes
}

#[test]
fn every_route_of_the_router_is_in_the_matrix() {
    let declared = declared_routes();
    assert!(declared.len() > 30, "the router's routes were read: {declared:?}");
    let matrix: BTreeSet<(String, String)> =
        MATRIX.iter().map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned())).collect();
    let missing: Vec<_> = declared.difference(&matrix).collect();
    assert!(missing.is_empty(), "routes nobody decided who may use (add them to MATRIX): {missing:?}");
    let stale: Vec<_> = matrix.difference(&declared).collect();
    assert!(stale.is_empty(), "MATRIX names routes the router no longer has: {stale:?}");
}

/// The ids the paths are filled with, for one community.
struct Ids {
    group: i64,
    rule: i64,
    event: i64,
    endpoint: String,
    bulk: String,
}

impl Ids {
    fn path(&self, template: &str) -> String {
        template
            .replace("{id}", &self.group.to_string())
            .replace("{rule}", &self.rule.to_string())
            .replace("{event}", &self.event.to_string())
            .replace("{endpoint}", &self.endpoint)
            .replace("{bulk}", &self.bulk)
    }
}

/// A rule, an event and an endpoint of `group`, made in the store as its administrator would have.
async fn things_of(app: &TestApp, group: i64) -> (i64, i64, String) {
    app.store().add_rule(GroupId(group), "цена", "Дёшево").await.unwrap();
    let rule = app.store().rules(GroupId(group)).await.unwrap()[0].id;
    let event = vkhook::store::NewInboxEvent {
        group_id: group,
        event_id: format!("{group:040x}"),
        event_type: "message_new".into(),
        payload: format!(
            r#"{{"type":"message_new","group_id":{group},"object":{{"message":{{"id":1,"from_id":2,"peer_id":2,"text":"тайна","out":0}}}}}}"#
        ),
        received_at: vkhook::store::now_ms(),
        done_at_ingest: Some(vkhook::model::EventResult::Nothing { reason: vkhook::model::Reason::NoRule }),
        source: vkhook::model::Source::Callback,
        natural_key: None,
    };
    app.store().insert_inbox_batch(&[event]).await.unwrap();
    let event = app.events(group, None, None).await[0].id;
    let endpoint = format!("ep_matrix{group}");
    let new = vkhook::store::NewEndpoint {
        id: endpoint.clone(),
        group_id: group,
        name: "CRM".into(),
        url: "https://crm.example.com/vk".into(),
        event_types: String::new(),
        secret: "v1.k.sealed".into(),
        created_by: 1,
    };
    assert!(app.store().add_endpoint(&new, 10).await.unwrap());
    (rule, event, endpoint)
}

/// A request as `client` would make it: a POST carries that session's CSRF token (read from `/communities`, or from
/// `/` for someone signed out), so what answers is the route's access check, not the CSRF layer.
async fn request(app: &TestApp, client: &reqwest::Client, method: &str, path: &str) -> reqwest::Response {
    let url = format!("{}{path}", app.url);
    if method == "GET" {
        return client.get(url).send().await.unwrap();
    }
    let html = client.get(format!("{}/communities", app.url)).send().await.unwrap().text().await.unwrap();
    let csrf = csrf_from(&html).unwrap_or_default();
    client.post(url).form(&[("csrf", csrf.as_str())]).send().await.unwrap()
}

/// Whether an answer let the client in: anything but a refusal (403, 404), a redirect to the landing page, or the
/// CSRF layer's 403.
fn let_in(r: &reqwest::Response) -> bool {
    let status = r.status().as_u16();
    let to_landing = r.headers().get("location").and_then(|l| l.to_str().ok()).is_some_and(|l| l == "/");
    !(status == 403 || status == 404 || to_landing)
}

#[tokio::test]
async fn every_route_refuses_whoever_may_not_use_it() {
    let app = TestApp::spawn().await;
    // Анна administers 1001 (connected) and is an editor of 1003.
    app.sign_in(1).await;
    app.connect(1001).await;
    let bulk = {
        let form = [("group", "1002"), ("action", "connect")];
        let r = app.post_with_csrf("/communities", "/communities/bulk", &form).await;
        let to = r.headers()["location"].to_str().unwrap().to_owned();
        let back = vk_sandbox::testing::consent(&to, &Consent::allow(1)).await.unwrap();
        let r = app.http.get(back.as_str()).send().await.unwrap();
        r.headers()["location"].to_str().unwrap().trim_start_matches("/communities/bulk/").to_owned()
    };
    let (rule, event, endpoint) = things_of(&app, 1001).await;
    let anna_1001 = Ids { group: 1001, rule, event, endpoint, bulk: bulk.clone() };
    let (rule, event, endpoint) = things_of(&app, 1003).await;
    // Мария's finished setup of 1003, for its progress page.
    let setup = vkhook::store::SetupRow {
        group_id: 1003,
        run_id: "run-1003".into(),
        state: vkhook::model::SetupState::Done,
        step_token: vkhook::model::StepState::Done,
        step_code: vkhook::model::StepState::Done,
        step_server: vkhook::model::StepState::Done,
        step_events: vkhook::model::StepState::Done,
        step_confirm: vkhook::model::StepState::Done,
        error_kind: None,
        error_detail: None,
        started_by: 4,
        started_at: 1,
        updated_at: 1,
        finished_at: Some(1),
        vk_calls: 5,
        replace_server_id: None,
        lease_until: 0,
        bot_enabled: false,
        bot_reply: None,
        mode: vkhook::model::SetupMode::Api,
    };
    assert!(app.store().begin_setup(&setup, vkhook::store::now_ms()).await.unwrap());
    let anna_1003 = Ids { group: 1003, rule, event, endpoint, bulk: bulk.clone() };
    let anonymous = browser();
    let petr = TestApp::sign_in_elsewhere(&app, 3).await; // administers 1004 only

    for (method, template, access) in MATRIX {
        if template.starts_with("/static") || *template == "/vk/callback" || *template == "/healthz" {
            continue; // machine routes: no session, nothing of a community
        }
        let path = anna_1001.path(template);
        // Anonymous: sent to the landing page (GET) or refused by the CSRF layer (POST), unless the route is public.
        let r = request(&app, &anonymous, method, &path).await;
        if *access != Access::Public {
            assert!(!let_in(&r), "anonymous {method} {path}: {}", r.status());
        }
        // Another community's administrator: someone else's community, run and things do not exist for them.
        if matches!(access, Access::Manager | Access::Admin) || template.contains("{bulk}") {
            let r = request(&app, &petr, method, &path).await;
            assert!(matches!(r.status().as_u16(), 403 | 404), "Пётр {method} {path}: {}", r.status());
        }
        // An editor: a manager's pages, never an administrator's.
        if matches!(access, Access::Manager | Access::Admin) {
            let path = anna_1003.path(template);
            let r = request(&app, &app.http, method, &path).await;
            match access {
                Access::Manager => assert!(let_in(&r), "the editor {method} {path}: {}", r.status()),
                _ => assert_eq!(r.status(), 403, "the editor {method} {path}"),
            }
        }
    }

    // VK removes Анна from 1001 (another administrator did it at VK): no route of 1001 lets her in any more.
    app.sandbox_control("/_sandbox/groups/1001/managers", serde_json::json!({"user_id": 1, "role": "none"})).await;
    app.state.roles.forget(UserId(1));
    for (method, template, access) in MATRIX {
        if !matches!(access, Access::Manager | Access::Admin) {
            continue;
        }
        let path = anna_1001.path(template);
        let r = request(&app, &app.http, method, &path).await;
        assert!(matches!(r.status().as_u16(), 403 | 404), "the removed admin {method} {path}: {}", r.status());
    }
    assert!(app.store().community_for_user(UserId(1), GroupId(1001)).await.unwrap().is_none(), "gone from her list");
    assert_eq!(app.store().community_for_user(UserId(1), GroupId(1003)).await.unwrap().unwrap().role, Role::Editor);
}
