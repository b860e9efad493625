//! What an admin does, in a real browser.

use super::browser::Browser;
use crate::helpers::TestApp;
use vk::UserId;

/// Presses «Войти через VK ID» and allows as «Анна Админова» on the sandbox's VK ID page.
async fn allow_sign_in_as_anna(browser: &Browser, app: &TestApp) {
    browser.goto(&app.url).await;
    browser.click("#sign-in").await;
    browser.click("input[name=user_id][value='1']").await;
    browser.click("button[value=allow]").await;
}

/// Signs in as «Анна Админова»; returns the communities page's text.
async fn sign_in_as_anna(browser: &Browser, app: &TestApp) -> String {
    allow_sign_in_as_anna(browser, app).await;
    browser.text_when(".community-list").await
}

/// Presses «Подключить Callback API» on 1001 and approves the community consent as Анна.
async fn connect_1001(browser: &Browser, app: &TestApp) -> String {
    browser.goto(&format!("{}/communities/1001", app.url)).await;
    browser.click("#connect").await;
    let consent = browser.text_when("button[value=allow]").await;
    assert!(consent.contains("Кофейня «Зерно»"));
    browser.screenshot("04-community-consent").await;
    browser.click("input[name=user_id][value='1']").await;
    browser.click("button[value=allow]").await;
    browser.wait_for_text("Callback API подключен", 20).await
}

/// Adds a rule on 1001's page: «если текст содержит `keywords` → ответить `reply`».
async fn add_rule_on_1001(browser: &Browser, app: &TestApp, keywords: &str, reply: &str) {
    browser.goto(&format!("{}/communities/1001", app.url)).await;
    browser.type_into("input[name=keywords]", keywords).await;
    browser.type_into("textarea[name=reply]", reply).await;
    browser.click("#rule-add").await;
    browser.wait_for_text(reply, 10).await;
}

/// Иван comments `text` on 1001's first post on the sandbox's page, and the page shows `reply` under it.
async fn ivan_comments_and_sees_the_reply(browser: &Browser, app: &TestApp, text: &str, reply: &str) {
    browser.goto(app.sandbox.url()).await;
    let field = "#club1001 input[name=text]";
    browser.client.wait().for_element(fantoccini::Locator::Css(field)).await.unwrap().send_keys(text).await.unwrap();
    browser.click("#club1001 form[action$='/_sandbox/ui/comment'] button").await;
    // The form posts and redirects back to the page that shows the comment. Wait for the comment itself: a refresh
    // while the post is still under way would cancel it (seen once in CI: no comment, so no reply).
    browser.wait_for_text(text, 10).await;
    // The reply appears under the comment (reload the sandbox page until it does).
    let deadline = std::time::Instant::now() + vk_sandbox::testing::scaled(std::time::Duration::from_secs(15));
    loop {
        browser.client.refresh().await.unwrap();
        let page = browser.text_when("#club1001").await;
        if page.contains(reply) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no reply on the sandbox page:\n{page}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn sign_in_see_communities_open_one_and_switch_to_english() {
    let Some(browser) = Browser::start("the sign-in journey").await else { return };
    let app = TestApp::spawn().await;

    browser.goto(&app.url).await;
    browser.click("#sign-in").await;
    // The sandbox's VK ID page: Анна Админова is the first choice; «Разрешить».
    let consent = browser.text_when("button[value=allow]").await;
    browser.screenshot("01-vkid-consent").await;
    assert!(consent.contains("Анна Админова"));
    browser.click("input[name=user_id][value='1']").await;
    browser.click("button[value=allow]").await;

    let list = browser.text_when(".community-list").await;
    browser.screenshot("02-communities").await;
    assert!(browser.url().await.ends_with("/communities"));
    for name in ["Кофейня «Зерно»", "Книжный клуб", "Городские новости"] {
        assert!(list.contains(name), "{name}");
    }
    browser.click("a.community-name[href='/communities/1001']").await;
    let detail = browser.text_when("#connect").await;
    browser.screenshot("03-community").await;
    assert!(detail.contains("Подключить Callback API"), "{detail}");

    browser.click("#lang-switch").await;
    let english = browser.wait_for_text("Connect Callback API", 10).await;
    assert!(english.contains("Your role"));
    assert!(browser.url().await.ends_with("/communities/1001"));
    browser.close().await;
}

#[tokio::test]
async fn connect_a_community_from_the_browser() {
    let Some(browser) = Browser::start("the connect journey").await else { return };
    let app = TestApp::spawn().await;

    sign_in_as_anna(&browser, &app).await;
    // The progress page finishes by itself.
    let done = connect_1001(&browser, &app).await;
    browser.screenshot("05-setup-done").await;
    assert_eq!(done.matches("готово").count(), 5, "all steps done:\n{done}");
    assert_eq!(app.sandbox.servers(1001).len(), 1);
    browser.click("a.btn.primary[href='/communities/1001']").await;
    let detail = browser.wait_for_text("Статус у ВКонтакте", 10).await;
    browser.screenshot("06-connected").await;
    assert!(detail.contains("Статус у ВКонтакте"));
    assert_eq!(browser.element_text("#vk-status").await, "ok", "VK's own status for our server");
    browser.close().await;
}

#[tokio::test]
async fn the_bot_answers_a_comment_written_on_the_sandbox_page() {
    let Some(browser) = Browser::start("the bot journey").await else { return };
    let app = TestApp::spawn().await;

    sign_in_as_anna(&browser, &app).await;
    // «Сразу включить бота» is ticked by default.
    connect_1001(&browser, &app).await;

    add_rule_on_1001(&browser, &app, "до скольки", "Работаем до 22:00!").await;

    ivan_comments_and_sees_the_reply(&browser, &app, "До скольки вы открыты?", "Работаем до 22:00!").await;
    browser.screenshot("07-sandbox-reply").await;
    // And vkhook's delivery log shows the event with its reply.
    browser.goto(&format!("{}/communities/1001/events", app.url)).await;
    let log = browser.wait_for_text("Ответил по правилу «до скольки»", 10).await;
    browser.screenshot("08-event-log").await;
    assert!(log.contains("До скольки вы открыты?"));
    browser.close().await;
}

#[tokio::test]
async fn when_vk_id_drops_groups_the_admin_adds_a_community_by_link_and_connects_it() {
    let Some(browser) = Browser::start("the journey without the groups scope").await else { return };
    let app = TestApp::spawn().await;
    // An app VK support has not granted `groups`: VK ID signs the user in and leaves `groups` out of the scope.
    app.sandbox_control("/_sandbox/app", serde_json::json!({"grants_groups": false})).await;

    allow_sign_in_as_anna(&browser, &app).await;
    let notice = browser.element_text("#list-notice").await;
    browser.screenshot("09-no-groups").await;
    assert!(notice.contains("не дал приложению доступ к списку"), "{notice}");
    assert!(browser.url().await.ends_with("/communities"), "signed in all the same");

    browser.type_into("form[action='/communities/add'] input[name=link]", "vk.com/club1001").await;
    browser.click("form[action='/communities/add'] button").await;
    // VK did not say who manages it: the page asks for the proof, which the community consent is.
    let detail = browser.text_when("#unproven").await;
    browser.screenshot("09b-role-unknown").await;
    assert!(detail.contains("Подтвердите, что вы администратор"), "{detail}");
    let done = connect_1001(&browser, &app).await;
    assert_eq!(done.matches("готово").count(), 5, "all steps done:\n{done}");
    assert_eq!(app.sandbox.servers(1001).len(), 1);

    // The bot answers.
    add_rule_on_1001(&browser, &app, "меню", "Меню на сайте.").await;
    ivan_comments_and_sees_the_reply(&browser, &app, "Где посмотреть меню?", "Меню на сайте.").await;

    // An hour later: the VK ID token has expired (refreshed on use) and the role is asked of VK again — without
    // `groups`, through the community key's list of managers — so the next change passes its role check.
    app.sandbox_control("/_sandbox/clock", serde_json::json!({"advance_secs": 3700})).await;
    app.state.roles.forget(UserId(1));
    let asked_before = managers_asked(&app).await;
    add_rule_on_1001(&browser, &app, "часы", "С 8 до 22.").await;
    assert!(managers_asked(&app).await > asked_before, "VK was asked who manages 1001");
    let list = {
        browser.goto(&format!("{}/communities", app.url)).await;
        browser.text_when(".community-list").await
    };
    assert!(list.contains("Кофейня «Зерно»"), "nothing disappears from the list: {list}");
    browser.close().await;
}

/// How many times vkhook asked the sandbox for a community's managers.
async fn managers_asked(app: &TestApp) -> u64 {
    let calls: serde_json::Value =
        reqwest::get(format!("{}/_sandbox/calls", app.sandbox.url())).await.unwrap().json().await.unwrap();
    calls["calls"]["groups.getMembers"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn the_community_consent_asks_only_for_documented_rights_and_vk_refuses_others() {
    let Some(browser) = Browser::start("the community rights journey").await else { return };
    let app = TestApp::spawn().await;
    sign_in_as_anna(&browser, &app).await;
    browser.goto(&format!("{}/communities/1001", app.url)).await;
    browser.click("#connect").await;
    let consent = browser.text_when("button[value=allow]").await;
    let url = browser.url().await;
    let asked: Vec<(String, String)> =
        url::Url::parse(&url).unwrap().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let scope = asked.iter().find(|(k, _)| k == "scope").map(|(_, v)| v.as_str());
    assert_eq!(scope, Some("manage,messages"), "vkhook asks for community rights only");
    assert!(!consent.contains("wall"), "{consent}");

    // The same request with `wall` added: VK's own error page, and no way back with a code.
    let with_wall = url.replace("scope=manage%2Cmessages", "scope=manage%2Cmessages%2Cwall");
    assert_ne!(with_wall, url, "the scope is in the address: {url}");
    browser.goto(&with_wall).await;
    let page = browser.wait_for_text("scope", 10).await;
    browser.screenshot("10-invalid-scope").await;
    assert!(page.contains("«wall» is not a community right"), "{page}");
    assert!(browser.url().await.starts_with(app.sandbox.url()), "no redirect to vkhook");
    assert!(app.sandbox.servers(1001).is_empty());
    browser.close().await;
}

/// Forwarding, as an admin does it in the browser: add an endpoint (a test HTTP server); Иван comments and one
/// signed delivery arrives; the endpoint answers 503 once and the retry carries the same webhook-id; a test event;
/// «Сменить секрет» gives two signatures; «Повторить» re-sends under the same id; the attempts list shows it all.
#[tokio::test]
async fn forward_events_to_an_endpoint_from_the_browser() {
    let Some(browser) = Browser::start("the forwarding journey").await else { return };
    let app = TestApp::spawn().await;
    let hook = crate::helpers::Hook::start().await;
    sign_in_as_anna(&browser, &app).await;
    connect_1001(&browser, &app).await;

    // 1. «Добавить адрес» on the card.
    browser.goto(&format!("{}/communities/1001#forwarding", app.url)).await;
    browser.type_into("#forwarding input[name=url]", &hook.url).await;
    browser.type_into("#forwarding input[name=name]", "Моя CRM").await;
    browser.click("#endpoint-add").await;
    let page = browser.wait_for_text("Адрес добавлен", 10).await;
    browser.screenshot("20-endpoint-added").await;
    assert!(page.contains("Моя CRM"));
    let secret = browser.element_text("#endpoint-secret").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let endpoint_page = browser.url().await.split('?').next().unwrap().to_owned();

    // 2–3. Иван comments; the endpoint says 503 once, then takes the retry: the same webhook-id, signed. (The
    // bot, switched on while connecting, answers him, and VK delivers that comment too: look at Иван's.)
    hook.answer_next(&[503]);
    browser.goto(app.sandbox.url()).await;
    browser.type_into("#club1001 input[name=text]", "Есть ли у вас овсяное молоко?").await;
    browser.click("#club1001 form[action$='/_sandbox/ui/comment'] button").await;
    let got = crate::helpers::eventually(15, "the comment, after one 503", || async {
        let ivans =
            |r: &crate::helpers::Received| r.event()["type"] == "wall_reply_new" && r.event()["object"]["from_id"] == 2;
        let got: Vec<_> = hook.received().into_iter().filter(ivans).collect();
        (got.len() == 2).then_some(got)
    })
    .await;
    assert_eq!((got[0].status, got[1].status), (503, 200));
    assert_eq!(got[0].webhook_id(), got[1].webhook_id());
    assert!(got.iter().all(|r| r.verifies_with(&secret)), "the signature verifies");
    assert_eq!(got[1].event()["object"]["text"], "Есть ли у вас овсяное молоко?");
    let event_id = got[1].event()["event_id"].as_str().unwrap().to_owned();

    // 4. «Отправить тестовое событие».
    browser.goto(&endpoint_page).await;
    browser.click("#send-test").await;
    browser.wait_for_text("Тестовое событие отправлено", 10).await;
    let test = crate::helpers::eventually(10, "the test event", || async {
        hook.received().into_iter().find(|r| r.event()["event_id"].as_str().is_some_and(|e| e.starts_with("test-")))
    })
    .await;
    assert!(test.verifies_with(&secret));

    // 5. «Сменить секрет»: the next delivery carries two signatures, one per secret.
    browser.click("#rotate").await;
    browser.wait_for_text("Секрет сменён", 10).await;
    let new_secret = browser.element_text("#endpoint-secret").await;
    assert_ne!(new_secret, secret);
    let before = hook.received().len();
    browser.click("#send-test").await;
    let rotated = crate::helpers::eventually(10, "a delivery after the rotation", || async {
        hook.received().into_iter().nth(before)
    })
    .await;
    assert_eq!(rotated.signature().split(' ').count(), 2);
    assert!(rotated.verifies_with(&new_secret) && rotated.verifies_with(&secret));

    // 6. «Повторить» on the comment: the same webhook-id once more.
    browser.goto(&endpoint_page).await;
    let row = format!("tr.attempt[data-event-id='{event_id}'] button.replay");
    browser.click(&row).await;
    browser.wait_for_text("Отправим ещё раз", 10).await;
    let again = crate::helpers::eventually(10, "the replay", || async {
        let got = hook.of_event(&event_id);
        (got.len() == 3).then_some(got)
    })
    .await;
    assert_eq!(again[2].webhook_id(), got[0].webhook_id());

    // 7. The attempts list shows all of it: the 503, the successes, both test events and the replay.
    let deadline = std::time::Instant::now() + vk_sandbox::testing::scaled(std::time::Duration::from_secs(10));
    let text = loop {
        browser.goto(&endpoint_page).await;
        let text = browser.text_when("#attempts").await;
        if text.matches(&event_id).count() == 3 {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "the attempts list:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    browser.screenshot("21-endpoint-attempts").await;
    assert!(text.contains("HTTP 503") && text.contains("HTTP 200"));
    assert_eq!(text.matches("test-").count(), 2, "{text}");
    assert!(!text.contains(&new_secret), "the secret only when asked for");
    browser.close().await;
}

/// On `/communities`, ticks `ids` and presses the bulk button `button` (`#bulk-connect`, `#bulk-disconnect`).
async fn tick_and_press(browser: &Browser, app: &TestApp, ids: &[i64], button: &str) {
    browser.goto(&format!("{}/communities", app.url)).await;
    for id in ids {
        browser.click(&format!("#pick-{id}")).await;
    }
    browser.screenshot("29-bulk-ticked").await;
    browser.click(button).await;
}

/// On the sandbox's community consent page: checks it lists `asked`, unticks `untick`, allows as Анна.
async fn consent_to(browser: &Browser, asked: &[i64], untick: &[i64]) {
    let page = browser.text_when("button[value=allow]").await;
    for id in asked {
        assert!(page.contains(&format!("club{id}")), "the consent lists {id}:\n{page}");
    }
    for id in untick {
        browser.click(&format!("input[name=community][value='{id}']")).await;
    }
    browser.click("input[name=user_id][value='1']").await;
    browser.click("button[value=allow]").await;
}

#[tokio::test]
async fn connect_and_disconnect_many_communities_from_the_browser() {
    let Some(browser) = Browser::start("the bulk journey").await else { return };
    let app = TestApp::spawn_with(crate::helpers::Options { extra_communities: 15, ..Default::default() }).await;
    sign_in_as_anna(&browser, &app).await;

    // 1–2. Five ticked, one consent: all five connected, each with exactly one server of ours.
    let five = [2001, 2002, 2003, 2004, 2005];
    tick_and_press(&browser, &app, &five, "#bulk-connect").await;
    consent_to(&browser, &five, &[]).await;
    let page = browser.wait_for_text("Подключено 5 из 5", 20).await;
    browser.screenshot("30-bulk-connected").await;
    assert_eq!(page.matches("Callback API подключен").count(), 5, "{page}");
    for id in five {
        assert_eq!(app.our_servers(id).len(), 1, "{id}: one server of ours");
    }

    // 3. One unticked on VK's page: four connected, the fifth was not granted.
    let next = [2006, 2007, 2008, 2009, 2010];
    tick_and_press(&browser, &app, &next, "#bulk-connect").await;
    consent_to(&browser, &next, &[2010]).await;
    let page = browser.wait_for_all(&["Подключено 4 из 5", "Доступ к этому сообществу не выдан"], 20).await;
    browser.screenshot("31-bulk-not-granted").await;
    let line = browser.element_text("#bulk-2010").await;
    assert!(line.contains("Доступ к этому сообществу не выдан"), "{line}");
    assert!(app.sandbox.servers(2010).is_empty());
    assert_eq!(page.matches("Callback API подключен").count(), 4, "{page}");

    // 4. One community's ten slots taken beforehand: that one fails with the slots message, the others succeed.
    app.fill_server_slots(2013).await;
    let last = [2011, 2012, 2013, 2014, 2015];
    tick_and_press(&browser, &app, &last, "#bulk-connect").await;
    consent_to(&browser, &last, &[]).await;
    // Wait for what is asserted: the four connected *and* 2013's failure (the four may finish first).
    browser.wait_for_all(&["Подключено 4 из 5", "10 серверов"], 20).await;
    let line = browser.element_text("#bulk-2013").await;
    browser.screenshot("32-bulk-slots").await;
    assert!(line.contains("10 серверов"), "{line}");
    assert!(browser.element_text("#bulk-2013").await.contains("Попробовать снова"));
    assert_eq!(app.sandbox.servers(2013).len(), 10, "nobody else's server touched");
    assert!(app.our_servers(2013).is_empty());

    // 5. «Отключить выбранные» removes our servers only: a CRM's server in 2001 stays.
    app.add_foreign_server(2001, "CRM", "http://127.0.0.1:9/crm").await;
    tick_and_press(&browser, &app, &five, "#bulk-disconnect").await;
    let page = browser.wait_for_text("Отключено 5 из 5", 20).await;
    browser.screenshot("33-bulk-disconnected").await;
    assert_eq!(page.matches("Наш сервер удалён во ВКонтакте").count(), 5, "{page}");
    for id in five {
        assert!(app.our_servers(id).is_empty(), "{id}: ours removed");
    }
    let left: Vec<String> = app.sandbox.servers(2001).into_iter().map(|s| s.title).collect();
    assert_eq!(left, ["CRM"]);
    assert_eq!(app.our_servers(2006).len(), 1, "the others stay connected");
    browser.close().await;
}
