//! What an admin does, in a real browser.

use crate::browser::Browser;
use crate::helpers::TestApp;

#[tokio::test]
async fn sign_in_see_communities_open_one_and_switch_to_english() {
    let Some(browser) = Browser::start("the sign-in journey").await else { return };
    let app = TestApp::spawn().await;

    browser.goto(&app.url).await;
    browser.click("#sign-in").await;
    // The sandbox's VK ID page: Анна Админова is the first choice; «Разрешить».
    let consent = browser.text_when("button[value=allow]").await;
    assert!(consent.contains("Анна Админова"));
    browser.click("input[name=user_id][value='1']").await;
    browser.click("button[value=allow]").await;

    let list = browser.text_when(".community-list").await;
    assert!(browser.url().await.ends_with("/communities"));
    for name in ["Кофейня «Зерно»", "Книжный клуб", "Городские новости"] {
        assert!(list.contains(name), "{name}");
    }
    browser.click("a.community-name[href='/communities/1001']").await;
    let detail = browser.text_when("#connect").await;
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

    browser.goto(&app.url).await;
    browser.click("#sign-in").await;
    browser.click("input[name=user_id][value='1']").await;
    browser.click("button[value=allow]").await;
    browser.text_when(".community-list").await;
    browser.click("a.community-name[href='/communities/1001']").await;
    browser.click("#connect").await;
    // The sandbox's community consent page: Анна is remembered from signing in; «Разрешить».
    let consent = browser.text_when("button[value=allow]").await;
    assert!(consent.contains("Кофейня «Зерно»"));
    browser.click("input[name=user_id][value='1']").await;
    browser.click("button[value=allow]").await;
    // The progress page finishes by itself.
    let done = browser.wait_for_text("Callback API подключен", 20).await;
    assert_eq!(done.matches("готово").count(), 5, "all steps done:\n{done}");
    assert_eq!(app.sandbox.servers(1001).len(), 1);
    browser.click("a.btn.primary[href='/communities/1001']").await;
    let detail = browser.wait_for_text("Статус у ВКонтакте", 10).await;
    assert!(detail.contains("ok"));
    browser.close().await;
}
