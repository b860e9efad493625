//! The communities list when VK does not give it, and adding a community by link.

use vk::GroupId;
use vk::UserId;
use vk_sandbox::testing::Consent;
use vkhook::model::Role;

use crate::helpers::*;

/// Without `groups` VK does not say who manages a community (https://dev.vk.com/en/reference/objects/group): a
/// community added by link has its role unknown, its page shows nothing of it but the way to prove it, and the
/// community consent — which only an administrator can give — proves it.
#[tokio::test]
async fn without_the_groups_scope_a_community_added_by_link_is_proven_by_its_consent() {
    let app =
        TestApp::spawn_with(Options { vkid_scopes: vec!["vkid.personal_info".into()], ..Default::default() }).await;
    let html = app.sign_in(1).await.text().await.unwrap();
    assert!(html.contains("не дал приложению доступ к списку"), "says why in plain words");
    assert!(html.contains("Добавить сообщество"));
    let r = app.post_with_csrf("/communities", "/communities/add", &[("link", "https://vk.com/club1001")]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/communities/1001");
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(page.contains("Кофейня «Зерно»") && page.contains("Роль не подтверждена"), "{page}");
    assert!(page.contains("id=\"unproven\"") && !page.contains("id=\"bot\""), "nothing of its state yet");
    for path in ["/communities/1001/events", "/communities/1001/manual", "/communities/1001/setup"] {
        assert_eq!(app.get(path).await.status(), 403, "{path} before the proof");
    }
    let r =
        app.post_with_csrf("/communities/1001", "/communities/1001/rules", &[("keywords", "x"), ("reply", "y")]).await;
    assert_eq!(r.status(), 403, "no change before the proof");

    // The consent proves it; the setup goes on at once.
    let setup = app.connect(1001).await;
    assert_eq!(setup.state, vkhook::model::SetupState::Done);
    let c = app.store().community_for_user(UserId(1), GroupId(1001)).await.unwrap().unwrap();
    assert_eq!(c.role, Role::Administrator);
    assert!(c.proven_at.is_some());
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(page.contains("Администратор") && page.contains("id=\"bot\""));
    let list = app.get("/communities").await.text().await.unwrap();
    assert!(list.contains("Кофейня «Зерно»"), "nothing disappears from the list");
}

/// Without `groups` nobody is told «вы не управляете»: VK did not say. The consent is where VK refuses someone who
/// is not an administrator — an editor, or someone who does not manage it at all — and nothing is stored.
#[tokio::test]
async fn without_groups_a_community_one_does_not_administer_is_refused_by_vk_at_the_consent() {
    let app =
        TestApp::spawn_with(Options { vkid_scopes: vec!["vkid.personal_info".into()], ..Default::default() }).await;
    app.sign_in(1).await;
    for (link, id) in [("1004", 1004), ("vk.com/city_news", 1003)] {
        let r = app.post_with_csrf("/communities", "/communities/add", &[("link", link)]).await;
        assert_eq!(r.status(), 303, "{link}");
        let r = app.press_connect(id, &[], Some(Consent::allow(1))).await;
        assert_eq!(r.status(), 403, "{link}");
        assert!(r.text().await.unwrap().contains("только администратор сообщества"), "VK's refusal in plain words");
        assert!(app.state.credentials.community_key(GroupId(id)).await.unwrap().is_none(), "no key stored for {id}");
        let c = app.store().community_for_user(UserId(1), GroupId(id)).await.unwrap().unwrap();
        assert_eq!(c.role, Role::Unknown, "still unproven, still listed");
    }
    let r = app.post_with_csrf("/communities", "/communities/add", &[("link", "vk.com/no_such_group")]).await;
    assert!(r.text().await.unwrap().contains("не нашлось"));
    let r = app.post_with_csrf("/communities", "/communities/add", &[("link", "<script>")]).await;
    assert!(r.text().await.unwrap().contains("Не понимаю эту ссылку"));
}

/// With `groups`, VK says plainly who manages a community: a link to one the user does not manage is refused, and
/// one they manage is added with its role, proven.
#[tokio::test]
async fn with_groups_vk_says_plainly_and_the_role_comes_with_the_link() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    app.store().remove_user_community(UserId(1), GroupId(1003)).await.unwrap();
    let r = app.post_with_csrf("/communities", "/communities/add", &[("link", "1004")]).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("Вы не управляете этим сообществом"));
    assert_eq!(app.get("/communities/1004").await.status(), 404);
    let r = app.post_with_csrf("/communities", "/communities/add", &[("link", "vk.com/city_news")]).await;
    assert_eq!(r.status(), 303);
    let c = app.store().community_for_user(UserId(1), GroupId(1003)).await.unwrap().unwrap();
    assert_eq!(c.role, Role::Editor);
    assert!(c.proven_at.is_some());
}

#[tokio::test]
async fn a_hidden_list_is_explained() {
    let app = TestApp::spawn().await;
    app.sandbox.world().users.get_mut(&1).unwrap().groups_hidden = true;
    let html = app.sign_in(1).await.text().await.unwrap();
    assert!(html.contains("скрыт настройками приватности"));
    assert!(html.contains("<details class=\"card add-community\" open"));
}

#[tokio::test]
async fn vk_being_down_shows_the_saved_list() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    app.sandbox.inject_fault(vk_sandbox::Fault {
        method: Some("groups.get".into()),
        error_code: Some(10),
        latency_ms: None,
        remaining: None,
    });
    let r = app.get("/communities").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("ВКонтакте сейчас не отвечает"));
    assert!(html.contains("Кофейня «Зерно»"), "the saved list");
}

#[tokio::test]
async fn every_asset_a_page_uses_is_served_by_vkhook() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    app.connect(1001).await;
    let mut html = String::new();
    for page in ["/", "/communities", "/communities/1001", "/communities/1001/setup", "/communities/1001/manual"] {
        html.push_str(&app.get(page).await.text().await.unwrap());
    }
    let mut seen = 0;
    for attr in ["href=\"/static/", "src=\"/static/"] {
        for (i, _) in html.match_indices(attr) {
            let path = html[i + attr.len() - "/static/".len()..].split('"').next().unwrap().to_owned();
            let r = app.get(&path).await;
            assert_eq!(r.status(), 200, "{path}");
            seen += 1;
        }
    }
    assert!(seen >= 2, "style and icon");
    // The progress script appears while a setup runs.
    assert_eq!(app.get("/static/setup.js").await.status(), 200);
    // No external assets (CDN, fonts): no script, style or font from another host. (Community photos are VK's
    // images; text may show an https address, as the forwarding form's example does.)
    for external in ["<script src=\"http", "<script src=\"//", "@import", "url(http", "url(//"] {
        assert!(!html.contains(external), "an external asset: {external}");
    }
    assert!(!html.lines().any(|l| l.contains("<link") && l.contains("://")), "no external stylesheet or font");
}

/// The overview: per community its status, VK's stored status, the last event, the day's events, the backlog, the bot
/// and forwarding; the one whose key was revoked comes first as needing attention, and the filter shows only it.
#[tokio::test]
async fn the_overview_shows_each_community_and_puts_the_one_needing_attention_first() {
    let app = TestApp::spawn().await;
    app.connected_with_rules(1001, &[("вопрос", "Ответ.")]).await;
    app.connect(1002).await;
    app.store().set_bot_settings(GroupId(1002), true, false, None).await.unwrap();
    app.store().add_rule(GroupId(1002), "вопрос", "Ответ.").await.unwrap();
    app.sandbox.comment(1001, 2, "вопрос").unwrap();
    eventually(10, "the reply", || async { app.bot_comments(1001).into_iter().next() }).await;
    app.wait_until_idle().await;
    // 1002's key dies; the bot meets it on the next comment and pauses.
    let revoked = app.sandbox_control("/_sandbox/tokens/revoke", serde_json::json!({"group_id": 1002})).await;
    assert!(revoked["revoked"].as_i64().unwrap() >= 1);
    app.sandbox.comment(1002, 2, "вопрос").unwrap();
    eventually(10, "1002 paused", || async {
        let s = app.store().bot_settings(GroupId(1002)).await.unwrap()?;
        s.paused_reason.map(|_| ())
    })
    .await;

    let page = app.get("/communities").await.text().await.unwrap();
    let at = |id: i64| page.find(&format!("data-group-id=\"{id}\"")).unwrap_or_else(|| panic!("{id} listed"));
    assert!(at(1002) < at(1001) && at(1002) < at(1003), "the one needing attention first");
    let row = |id: i64| {
        let start = at(id);
        let end = page[start..].find("</li>").map_or(page.len(), |e| start + e);
        page[start..end].to_owned()
    };
    let zerno = row(1001);
    assert!(zerno.contains("ok") && !zerno.contains("Требует внимания"), "{zerno}");
    assert!(zerno.contains("назад"), "the last event's age: {zerno}");
    assert!(zerno.contains("class=\"events-24h\">2<"), "Иван's comment and the bot's own: {zerno}");
    assert!(zerno.contains("class=\"backlog\">0<") && zerno.contains("комментарии и сообщения"), "{zerno}");
    let club = row(1002);
    assert!(club.contains("Требует внимания") && club.contains("ключ сообщества отозван"), "{club}");
    assert!(club.contains("class=\"backlog\">1<"), "the held comment: {club}");
    assert!(page.contains("Только требующие внимания (1)"));
    let only = app.get("/communities?attention=1").await.text().await.unwrap();
    assert!(only.contains("data-group-id=\"1002\"") && !only.contains("data-group-id=\"1001\""));
}

/// VK says our server is `ok`, but a community that gets an event a minute has had none for three hours: the health
/// card warns «события перестали приходить» and the overview lists it as needing attention. The clock is moved by
/// placing the community's past events three hours back. An event arriving clears it.
#[tokio::test]
async fn silence_from_a_busy_community_is_a_warning_until_events_come_back() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    app.connect(1001).await;
    let settings = app.store().community_settings(GroupId(1001)).await.unwrap().unwrap();
    assert_eq!(settings.vk_server_status.as_ref().map(|v| v.as_str()), Some("ok"), "VK says ok");
    let minute = 60_000;
    let quiet_since = vkhook::store::now_ms() - 3 * 3600 * 1000;
    let past: Vec<vkhook::store::NewInboxEvent> = (0..20)
        .map(|i| vkhook::store::NewInboxEvent {
            group_id: 1001,
            event_id: format!("{i:040x}"),
            event_type: "like_add".into(),
            payload: r#"{"type":"like_add","group_id":1001,"object":{}}"#.into(),
            received_at: quiet_since - (19 - i) * minute,
            done_at_ingest: Some(vkhook::model::EventResult::Nothing { reason: vkhook::model::Reason::NoRule }),
            source: vkhook::model::Source::Callback,
            natural_key: None,
        })
        .collect();
    app.store().insert_inbox_batch(&past).await.unwrap();
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(page.contains("id=\"silent\"") && page.contains("События перестали приходить"), "{page}");
    assert!(page.contains("раз в 1 мин"), "the usual pace: {page}");
    let list = app.get("/communities?attention=1").await.text().await.unwrap();
    assert!(list.contains("data-group-id=\"1001\"") && list.contains("события перестали приходить"), "{list}");

    app.sandbox.comment(1001, 2, "Вы тут?").unwrap();
    eventually(10, "the event stored", || async {
        app.events(1001, None, Some("wall_reply_new")).await.into_iter().next()
    })
    .await;
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(!page.contains("id=\"silent\""), "cleared once events come back");
    let list = app.get("/communities?attention=1").await.text().await.unwrap();
    assert!(!list.contains("data-group-id=\"1001\""), "{list}");
}
