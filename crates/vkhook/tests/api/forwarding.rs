//! Forwarding: every event reaches the admin's endpoints signed (Standard Webhooks), at least once, under one
//! `webhook-id`, retried and replayable; URLs into internal networks are refused.

use vk::GroupId;
use vkhook::model::DeliveryStatus;

use std::sync::atomic::Ordering;

use crate::helpers::*;

/// Adds an endpoint through the card's form; its id.
pub async fn add_endpoint(app: &TestApp, group_id: i64, url: &str, types: &[&str]) -> String {
    let mut form = vec![("url", url), ("name", "CRM")];
    form.extend(types.iter().map(|t| ("type", *t)));
    let page = format!("/communities/{group_id}");
    let r = app.post_with_csrf(&page, &format!("/communities/{group_id}/endpoints"), &form).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    to.split("/endpoints/").nth(1).unwrap().split('?').next().unwrap().to_owned()
}

/// The endpoint's signing secret, as its page shows it once: on the first view after it was made or rotated. Every
/// later view shows it masked.
pub async fn endpoint_secret(app: &TestApp, group_id: i64, endpoint: &str) -> String {
    let page = format!("/communities/{group_id}/endpoints/{endpoint}");
    let r = app.get(&page).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    let start = html.find("id=\"endpoint-secret\">").expect("the secret is shown") + "id=\"endpoint-secret\">".len();
    let secret = html[start..].split('<').next().unwrap().to_owned();
    let again = app.get(&page).await.text().await.unwrap();
    assert!(!again.contains(&secret) && again.contains("id=\"secret-masked\""), "shown once, then masked");
    secret
}

async fn press(app: &TestApp, group_id: i64, endpoint: &str, action: &str, form: &[(&str, &str)]) {
    let page = format!("/communities/{group_id}/endpoints/{endpoint}");
    let r = app.post_with_csrf(&page, &format!("{page}/{action}"), form).await;
    assert_eq!(r.status(), 303, "{action}: {}", r.text().await.unwrap());
}

/// The journey, over HTTP: a comment arrives signed; a 503 is retried under the same id; a test event; a
/// rotated secret signs twice; «Повторить» re-sends under the same id; the attempts list shows all of it.
#[tokio::test]
async fn an_event_reaches_the_endpoint_signed_retried_tested_rotated_and_replayed() {
    let app = TestApp::spawn().await;
    app.connected_with_rules(1001, &[]).await;
    let hook = Hook::start().await;
    let endpoint = add_endpoint(&app, 1001, &hook.url, &[]).await;
    let secret = endpoint_secret(&app, 1001, &endpoint).await;
    assert!(secret.starts_with("whsec_"), "{secret}");

    // Иван comments; the endpoint says 503 once, then takes it.
    hook.answer_next(&[503]);
    app.sandbox.comment(1001, 2, "Когда откроетесь?").unwrap();
    let got = eventually(10, "the comment delivered after one 503", || async {
        let got: Vec<Received> =
            hook.received().into_iter().filter(|r| r.event()["type"] == "wall_reply_new").collect();
        (got.len() == 2).then_some(got)
    })
    .await;
    let event_id = got[0].event()["event_id"].as_str().unwrap().to_owned();
    assert_eq!((got[0].status, got[1].status), (503, 200));
    assert_eq!(got[0].webhook_id(), got[1].webhook_id(), "the retry carries the same webhook-id");
    assert!(got[0].webhook_id().starts_with("evt_"));
    for r in &got {
        assert!(r.verifies_with(&secret), "the signature verifies");
        assert_eq!(r.headers["content-type"], "application/json");
    }
    // The body is VK's event as stored, without `secret`.
    let stored = app.store().inbox_event_by_event_id(GroupId(1001), &event_id).await.unwrap().unwrap();
    assert_eq!(got[1].body, stored.payload.as_bytes());
    let body = got[1].event();
    assert!(body.get("secret").is_none());
    assert_eq!(body["object"]["text"], "Когда откроетесь?");
    assert_eq!((body["group_id"].as_i64(), body["v"].as_str()), (Some(1001), Some("5.199")));
    eventually(5, "the delivery recorded as delivered", || async {
        let s = app.store().delivery_status(&endpoint, &event_id).await.unwrap();
        (s == Some(DeliveryStatus::Delivered)).then_some(())
    })
    .await;

    // «Отправить тестовое событие»: VK's shape, a realistic object, an event_id beginning with test-.
    press(&app, 1001, &endpoint, "test", &[("type", "wall_reply_new")]).await;
    let test = eventually(10, "the test event", || async {
        hook.received().into_iter().find(|r| r.event()["event_id"].as_str().unwrap().starts_with("test-"))
    })
    .await;
    let t = test.event();
    assert_eq!((t["type"].as_str(), t["group_id"].as_i64()), (Some("wall_reply_new"), Some(1001)));
    assert!(t["object"]["text"].is_string() && t["object"]["post_id"].is_i64(), "{t}");
    assert!(test.verifies_with(&secret));

    // «Сменить секрет»: for a day both secrets sign, as two signatures.
    press(&app, 1001, &endpoint, "rotate", &[]).await;
    let new_secret = endpoint_secret(&app, 1001, &endpoint).await;
    assert_ne!(new_secret, secret);
    let before = hook.received().len();
    press(&app, 1001, &endpoint, "test", &[("type", "message_new")]).await;
    let rotated =
        eventually(10, "a test event after the rotation", || async { hook.received().into_iter().nth(before) }).await;
    assert_eq!(rotated.signature().split(' ').count(), 2, "{}", rotated.signature());
    assert!(rotated.verifies_with(&new_secret) && rotated.verifies_with(&secret));
    assert_eq!(rotated.event()["object"]["message"]["text"].as_str().map(|t| !t.is_empty()), Some(true));

    // «Повторить» on the comment's delivery: the same webhook-id once more.
    let page = app.get(&format!("/communities/1001/endpoints/{endpoint}")).await.text().await.unwrap();
    let marker = format!("data-event-id=\"{event_id}\" data-delivery-id=\"");
    let at = page.find(&marker).expect("the comment is in the attempts list") + marker.len();
    let delivery = page[at..].split('"').next().unwrap().to_owned();
    press(&app, 1001, &endpoint, "replay", &[("delivery", &delivery)]).await;
    let again = eventually(10, "the replay", || async {
        let got = hook.of_event(&event_id);
        (got.len() == 3).then_some(got)
    })
    .await;
    assert_eq!(again[2].webhook_id(), got[0].webhook_id(), "a replay keeps the webhook-id");
    assert!(again[2].verifies_with(&new_secret));

    // The attempts list: newest first, every attempt with its status.
    let page = eventually(5, "the replay's attempt listed", || async {
        let page = app.get(&format!("/communities/1001/endpoints/{endpoint}")).await.text().await.unwrap();
        (page.matches(&format!("data-event-id=\"{event_id}\"")).count() == 3).then_some(page)
    })
    .await;
    assert!(page.contains("HTTP 503") && page.contains("HTTP 200"), "{page}");
    assert_eq!(page.matches("data-event-id=\"test-").count(), 2);
    assert!(!page.contains(&new_secret) && !page.contains(&secret), "the secret only when asked for");
}

/// What an endpoint's deliveries go through is decided when the event is stored: types it does not want make no
/// delivery, a disabled endpoint gets nothing new, and «Включить» sends what waited.
#[tokio::test]
async fn an_endpoint_gets_only_the_types_it_asked_for_and_nothing_while_disabled() {
    let app = TestApp::spawn().await;
    app.connected_with_rules(1001, &[]).await;
    let hook = Hook::start().await;
    let endpoint = add_endpoint(&app, 1001, &hook.url, &["message_new"]).await;
    app.sandbox.comment(1001, 2, "комментарий").unwrap();
    app.sandbox.message(1001, 2, "сообщение").unwrap();
    let got = eventually(10, "the message", || async { hook.received().into_iter().next() }).await;
    assert_eq!(got.event()["type"], "message_new");
    app.wait_until_idle().await;
    app.wait_forwarding_drained().await;
    let comment = app.events(1001, None, Some("wall_reply_new")).await;
    assert_eq!(comment.len(), 1, "the comment is stored");
    assert_eq!(hook.received().len(), 1, "but not forwarded");

    press(&app, 1001, &endpoint, "disable", &[]).await;
    app.sandbox.message(1001, 2, "пока отключён").unwrap();
    eventually(10, "the message stored", || async {
        (app.events(1001, None, Some("message_new")).await.len() == 2).then_some(())
    })
    .await;
    let page = app.get(&format!("/communities/1001/endpoints/{endpoint}")).await.text().await.unwrap();
    assert!(page.contains("id=\"enable\""), "the page offers «Включить»");
    press(&app, 1001, &endpoint, "enable", &[]).await;
    press(&app, 1001, &endpoint, "test", &[]).await;
    eventually(10, "the test event after «Включить»", || async {
        (hook.received().len() == 2).then_some(())
    })
    .await;
    assert!(hook.received().iter().all(|r| r.event()["object"]["message"]["text"] != "пока отключён"));

    // «Удалить»: gone from the card, and nothing more arrives.
    let r = app
        .post_with_csrf(
            &format!("/communities/1001/endpoints/{endpoint}"),
            &format!("/communities/1001/endpoints/{endpoint}/delete"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    let card = app.get("/communities/1001").await.text().await.unwrap();
    assert!(!card.contains(&endpoint));
    assert_eq!(app.get(&format!("/communities/1001/endpoints/{endpoint}")).await.status(), 404);
}

/// 410 disables the endpoint at once; the card says why.
#[tokio::test]
async fn an_endpoint_that_answers_410_is_disabled() {
    let app = TestApp::spawn().await;
    app.expect_failures(); // the endpoint answers 410: its deliveries end failed
    app.connected_with_rules(1001, &[]).await;
    let hook = Hook::start().await;
    let endpoint = add_endpoint(&app, 1001, &hook.url, &[]).await;
    hook.answer_next(&[410]);
    press(&app, 1001, &endpoint, "test", &[]).await;
    eventually(10, "the endpoint disabled", || async {
        let e = app.store().endpoint(GroupId(1001), &endpoint).await.unwrap().unwrap();
        (!e.enabled).then_some(())
    })
    .await;
    let card = app.get("/communities/1001").await.text().await.unwrap();
    assert!(card.contains("410 Gone"), "the card says why");
    app.wait_forwarding_drained().await;
    assert_eq!(hook.received().len(), 1, "no retries after 410");
}

/// Under `serve` settings an endpoint may not point into an internal network: loopback, private, link-local (the
/// cloud metadata address), IPv6 loopback, or a name that resolves to loopback — nor plain http. Each is refused
/// with words, and nothing is stored.
#[tokio::test]
async fn serve_refuses_endpoints_inside_the_network() {
    const REFUSED: &str = "нужен https-адрес, который открывается из интернета";
    let app = TestApp::spawn_with(Options {
        forward: vkhook::config::ForwardSettings::default(), // what `vkhook serve` runs with
        ..Options::default()
    })
    .await;
    app.connected_with_rules(1001, &[]).await;
    for (url, words) in [
        ("http://127.0.0.1:9/hook", "https://"),
        ("https://127.0.0.1/hook", REFUSED),
        ("https://10.1.2.3/hook", REFUSED),
        ("https://169.254.169.254/latest/meta-data/", REFUSED),
        ("https://[::1]/hook", REFUSED),
        ("https://localhost/hook", REFUSED),
        // IPv6 forms that carry an internal IPv4 address: NAT64, 6to4, IPv4-mapped and -translated, Teredo.
        ("https://[64:ff9b::a9fe:a9fe]/", REFUSED),
        ("https://[64:ff9b:1::a00:1]/", REFUSED),
        ("https://[2002:a9fe:a9fe::1]/", REFUSED),
        ("https://[::ffff:0:a9fe:a9fe]/", REFUSED),
        ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", REFUSED),
        // A name that does not resolve reads the same as one that resolves inside: nothing to map DNS with.
        ("https://no-such-host.invalid/hook", REFUSED),
        ("not a url", "Это не адрес"),
    ] {
        let r = app
            .post_with_csrf("/communities/1001", "/communities/1001/endpoints", &[("url", url), ("name", "x")])
            .await;
        assert_eq!(r.status(), 422, "{url}");
        let page = r.text().await.unwrap();
        assert!(page.contains(words), "{url}: {page}");
    }
    assert!(app.store().endpoints(GroupId(1001)).await.unwrap().is_empty(), "nothing stored");
}

/// Only administrators see the card and use the routes; a form without the CSRF token is refused.
#[tokio::test]
async fn forwarding_is_for_administrators_and_csrf_protected() {
    let app = TestApp::spawn().await;
    app.connected_with_rules(1001, &[]).await;
    let hook = Hook::start().await;
    let endpoint = add_endpoint(&app, 1001, &hook.url, &[]).await;
    let r = app.post_form("/communities/1001/endpoints", &[("url", hook.url.as_str())]).await;
    assert_eq!(r.status(), 403, "no CSRF token");
    let r = app.post_form(&format!("/communities/1001/endpoints/{endpoint}/rotate"), &[]).await;
    assert_eq!(r.status(), 403, "no CSRF token");
    // User 1 is only an editor of 1003: no card there, and its routes refuse.
    let card = app.get("/communities/1003").await.text().await.unwrap();
    assert!(card.contains("Городские новости") && !card.contains("id=\"forwarding\""));
    let r = app.post_with_csrf("/communities/1003", "/communities/1003/endpoints", &[("url", &hook.url)]).await;
    assert_eq!(r.status(), 403);
    assert!(app.store().endpoints(GroupId(1003)).await.unwrap().is_empty());
    // Another user's endpoint does not exist for them.
    let other = TestApp::sign_in_elsewhere(&app, 3).await;
    let page = other.get(format!("{}/communities/1001/endpoints/{endpoint}", app.url)).send().await.unwrap();
    assert_eq!(page.status(), 404);
    assert_eq!(app.store().endpoints(GroupId(1001)).await.unwrap().len(), 1);
}

/// `Retry-After` on 503 is honoured over the (test-scaled, 5 ms) schedule; an endpoint failing without a success
/// for longer than `disable_after` is disabled, and the card says why.
#[tokio::test]
async fn retry_after_is_honoured_and_an_endpoint_failing_too_long_is_disabled() {
    let forward =
        vkhook::config::ForwardSettings { disable_after: std::time::Duration::from_millis(500), ..test_forwarding() };
    let app = TestApp::spawn_with(Options { forward, ..Options::default() }).await;
    app.connected_with_rules(1001, &[]).await;
    let hook = Hook::start().await;
    let endpoint = add_endpoint(&app, 1001, &hook.url, &[]).await;
    hook.answer_next_retry_after(503, 1);
    press(&app, 1001, &endpoint, "test", &[]).await;
    let got = eventually(10, "the retry", || async {
        let got = hook.received();
        (got.len() == 2).then_some(got)
    })
    .await;
    let waited = got[1].at.duration_since(got[0].at);
    assert!(waited >= std::time::Duration::from_secs(1), "waited the second the endpoint asked for: {waited:?}");
    assert_eq!(got[0].webhook_id(), got[1].webhook_id());

    // From now on it answers 500: after 500 ms of nothing but failures, it is disabled.
    hook.answer_always(500);
    press(&app, 1001, &endpoint, "test", &[]).await;
    eventually(15, "the endpoint disabled", || async {
        let e = app.store().endpoint(GroupId(1001), &endpoint).await.unwrap().unwrap();
        (!e.enabled).then_some(())
    })
    .await;
    let card = app.get("/communities/1001").await.text().await.unwrap();
    assert!(card.contains("не принимал события слишком долго"), "the card says why");
    let attempts = hook.received().len();
    assert!(attempts >= 3, "{attempts}");
}

/// The tarpit attack: a tenant adds as many endpoints as the cap allows, all at a server that never answers (each
/// attempt hangs for the real 15 s timeout), and keeps its community busy with events. Another community's test event
/// still arrives within seconds: one community holds at most its share of the sender's slots, a dead endpoint backs
/// off with its new events too, and the endpoint claimed longest ago goes first. The attacker's test events are
/// limited, and the eleventh endpoint is refused in words.
#[tokio::test]
async fn a_tenant_with_endpoints_at_a_tarpit_does_not_delay_another_tenants_forwarding() {
    // The real 15 s timeout, and a sender with fewer slots (5) than the attacker has endpoints (10): the attacker
    // could fill every slot if nothing shared them out.
    let forward = vkhook::config::ForwardSettings {
        attempt_timeout: vkhook::forward::attempt::ATTEMPT_TIMEOUT,
        endpoints_at_once: 5,
        ..test_forwarding()
    };
    let app = TestApp::spawn_with(Options { forward, ..Options::default() }).await;
    // The victim: Анна's «Кофейня «Зерно»», with an endpoint that answers.
    app.connected_with_rules(1001, &[]).await;
    let hook = Hook::start().await;
    let victim = add_endpoint(&app, 1001, &hook.url, &[]).await;
    // The attacker: Пётр's «Соседский чат», ten endpoints at the tarpit.
    let tarpit = Tarpit::start().await;
    let attacker = Driver::new(browser(), app.url.clone(), &app.sandbox, app.store().clone());
    attacker.sign_in(3).await;
    let r = attacker.press_connect(1004, &[], Some(vk_sandbox::testing::Consent::allow(3))).await;
    assert_eq!(r.status(), 200);
    attacker.finished_setup(1004).await;
    let cap = vkhook::config::ForwardSettings::default().max_endpoints;
    let mut theirs = Vec::new();
    for i in 0..cap {
        let form = [("url", tarpit.url.as_str()), ("name", "СРОЧНО")];
        let r = attacker.post_with_csrf("/communities/1004", "/communities/1004/endpoints", &form).await;
        assert_eq!(r.status(), 303, "endpoint {i}");
        let to = r.headers()["location"].to_str().unwrap().to_owned();
        theirs.push(to.split("/endpoints/").nth(1).unwrap().split('?').next().unwrap().to_owned());
    }
    let r = attacker.post_with_csrf("/communities/1004", "/communities/1004/endpoints", &[("url", &tarpit.url)]).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("адресов пересылки — столько, сколько можно"));
    // Its own events keep coming, and its test events hit the limit.
    for i in 0..cap {
        app.sandbox.comment(1004, 3, &format!("шум {i}")).unwrap();
    }
    let page = format!("/communities/1004/endpoints/{}", theirs[0]);
    let mut limited = false;
    for _ in 0..15 {
        let r = attacker.post_with_csrf(&page, &format!("{page}/test"), &[]).await;
        limited |= r.status() == 429;
    }
    assert!(limited, "test events are rate-limited");
    eventually(10, "the tarpit holding the sender", || async {
        (tarpit.connections.load(Ordering::SeqCst) >= 4).then_some(())
    })
    .await;

    // Now the victim's test event.
    let started = std::time::Instant::now();
    let victim_page = format!("/communities/1001/endpoints/{victim}");
    let r = app.post_with_csrf(&victim_page, &format!("{victim_page}/test"), &[]).await;
    assert_eq!(r.status(), 303);
    eventually(10, "the victim's test event", || async {
        hook.received().into_iter().find(|r| r.event()["event_id"].as_str().unwrap().starts_with("test-"))
    })
    .await;
    // It did not wait for the tarpit: not one of the attacker's attempts has timed out yet (each hangs 15 s).
    let mut attacker_attempts = 0;
    for id in &theirs {
        attacker_attempts += app.store().endpoint_attempts(id, 100).await.unwrap().len();
    }
    assert_eq!(attacker_attempts, 0, "arrived while every tarpit attempt still hung ({:?})", started.elapsed());
    // The attacker held at most its share of endpoints, each with at most `concurrency` requests.
    let defaults = vkhook::config::ForwardSettings::default();
    let most = defaults.community_share as usize * defaults.concurrency;
    assert!(
        tarpit.connections.load(Ordering::SeqCst) <= most,
        "{} > {most}",
        tarpit.connections.load(Ordering::SeqCst)
    );
    eprintln!("another tenant's test event under the tarpit attack took {:?}", started.elapsed());
}

/// The failure paths, through the running service (not only the store): an endpoint that never takes an event is
/// given up after the last attempt of the schedule, the page says «не доставлено», and «Повторить неудачные» sends it
/// again; after «Сменить секрет» both secrets sign until the window ends, then only the new one.
#[tokio::test]
async fn a_delivery_is_given_up_after_the_last_attempt_and_two_signatures_end_with_their_window() {
    let forward = vkhook::config::ForwardSettings {
        schedule: vkhook::forward::attempt::Schedule::new(vec![
            std::time::Duration::from_millis(10),
            std::time::Duration::from_millis(20),
        ]),
        previous_secret_window: std::time::Duration::from_millis(300),
        ..test_forwarding()
    };
    let defaults = Options::default();
    let timing = vkhook::config::Timing { test_events_per_minute: 1000, ..defaults.timing };
    let app = TestApp::spawn_with(Options { forward, timing, ..defaults }).await;
    app.connected_with_rules(1001, &[]).await;
    let hook = Hook::start().await;
    let endpoint = add_endpoint(&app, 1001, &hook.url, &[]).await;
    let secret = endpoint_secret(&app, 1001, &endpoint).await;
    hook.answer_always(500);
    press(&app, 1001, &endpoint, "test", &[]).await;
    let event_id = eventually(10, "the test event given up", || async {
        let first = hook.received().into_iter().next()?;
        let id = first.event()["event_id"].as_str()?.to_owned();
        (app.store().delivery_status(&endpoint, &id).await.unwrap() == Some(DeliveryStatus::Failed)).then_some(id)
    })
    .await;
    assert_eq!(hook.of_event(&event_id).len(), 3, "the first attempt and one per wait, then no more");
    let page = app.get(&format!("/communities/1001/endpoints/{endpoint}")).await.text().await.unwrap();
    assert!(page.contains("не доставлено"), "the page says so");
    hook.answer_always(200);
    press(&app, 1001, &endpoint, "replay", &[]).await;
    eventually(10, "sent again after «Повторить неудачные»", || async {
        (app.store().delivery_status(&endpoint, &event_id).await.unwrap() == Some(DeliveryStatus::Delivered))
            .then_some(())
    })
    .await;

    // Rotated: two signatures, until the window ends; then only the new secret signs.
    press(&app, 1001, &endpoint, "rotate", &[]).await;
    let new_secret = endpoint_secret(&app, 1001, &endpoint).await;
    let before = hook.received().len();
    press(&app, 1001, &endpoint, "test", &[]).await;
    let both =
        eventually(10, "a test event within the window", || async { hook.received().into_iter().nth(before) }).await;
    assert_eq!(both.signature().split(' ').count(), 2);
    assert!(both.verifies_with(&secret) && both.verifies_with(&new_secret));
    let after_window = eventually(10, "a test event after the window", || async {
        let n = hook.received().len();
        press(&app, 1001, &endpoint, "test", &[]).await;
        let r = eventually(10, "its arrival", || async { hook.received().into_iter().nth(n) }).await;
        (r.signature().split(' ').count() == 1).then_some(r)
    })
    .await;
    assert!(after_window.verifies_with(&new_secret) && !after_window.verifies_with(&secret), "the old one is over");
}

/// An address stored with an internal IP literal (left by an older vkhook, or written by hand) is never dialled
/// under `serve`'s policy: the check runs again at send time, where a literal is not resolved.
#[tokio::test]
async fn an_internal_ip_literal_stored_as_an_endpoint_is_never_dialled() {
    let app = TestApp::spawn_with(Options {
        forward: vkhook::config::ForwardSettings {
            poll: std::time::Duration::from_millis(20),
            ..vkhook::config::ForwardSettings::default() // what `vkhook serve` runs with
        },
        ..Options::default()
    })
    .await;
    app.connected_with_rules(1001, &[]).await;
    let listener = Tarpit::start().await; // counts every connection made to it
    let url = listener.url.replace("http://", "https://");
    let new = vkhook::store::NewEndpoint {
        id: "ep_literal".into(),
        group_id: 1001,
        name: "CRM".into(),
        url,
        event_types: String::new(),
        secret: app.state.vault.seal(
            &vkhook::vault::Slot::new(vkhook::vault::Sealed::EndpointSecret, "ep_literal"),
            &secrecy::SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()),
        ),
        created_by: 1,
    };
    assert!(app.store().add_endpoint(&new, 10).await.unwrap());
    app.sandbox.comment(1001, 2, "Привет").unwrap();
    let attempt = eventually(10, "the attempt recorded", || async {
        app.store().endpoint_attempts("ep_literal", 10).await.unwrap().into_iter().next()
    })
    .await;
    assert!(attempt.error.as_deref().unwrap_or_default().contains("not on the public internet"), "{attempt:?}");
    assert_eq!(listener.connections.load(Ordering::SeqCst), 0, "nothing was dialled");
}
