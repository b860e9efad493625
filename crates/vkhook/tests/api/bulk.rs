//! Several communities at once: one consent for the ticked ones, their setups in parallel, a run page with one
//! line per community, partial failures with their own retry, resumption, and «Отключить выбранные».

use vk::GroupId;
use vk::UserId;
use vk_sandbox::testing::{consent, query_param, Consent};
use vk_sandbox::ServerStatus;
use vkhook::hooks::CrashPoint;
use vkhook::model::{ErrorKind, SetupState};

use crate::helpers::*;

async fn app_with(extra: usize) -> TestApp {
    let app = TestApp::spawn_with(Options { extra_communities: extra, ..Default::default() }).await;
    app.sign_in(1).await;
    app
}

/// Presses a bulk button on `/communities` with `groups` ticked; returns where it redirects.
async fn press_bulk(app: &TestApp, action: &str, groups: &[i64]) -> String {
    let ids: Vec<String> = groups.iter().map(i64::to_string).collect();
    let mut form: Vec<(&str, &str)> = ids.iter().map(|id| ("group", id.as_str())).collect();
    form.push(("action", action));
    form.push(("bot_enabled", "1"));
    let r = app.post_with_csrf("/communities", "/communities/bulk", &form).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// Answers a community consent page as `choice` says and follows the app's redirect; returns where the app sends
/// the browser next (the run's page, or the next consent).
async fn answer_consent(app: &TestApp, authorize: &str, choice: &Consent) -> String {
    assert!(authorize.starts_with(&app.sandbox.oauth_url()), "a consent at VK: {authorize}");
    let back = consent(authorize, choice).await.unwrap();
    let r = app.http.get(back.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    r.headers()["location"].to_str().unwrap().to_owned()
}

fn group_ids_of(authorize: &str) -> Vec<i64> {
    let url = url::Url::parse(authorize).unwrap();
    query_param(&url, "group_ids").unwrap().split(',').map(|id| id.parse().unwrap()).collect()
}

async fn wait_all_finished(app: &TestApp, ids: &[i64]) {
    for id in ids {
        app.finished_setup(*id).await;
    }
}

#[tokio::test]
async fn ticked_communities_connect_with_one_consent_and_fail_one_by_one() {
    let app = app_with(5).await;
    app.fill_server_slots(2004).await;
    let consent_url = press_bulk(&app, "connect", &[2001, 2002, 2003, 2004, 2005]).await;
    assert_eq!(group_ids_of(&consent_url), [2001, 2002, 2003, 2004, 2005], "one consent for all five");
    // The admin unticks 2005 on VK's page.
    let page = answer_consent(&app, &consent_url, &Consent::ticking(1, &[2001, 2002, 2003, 2004])).await;
    assert!(page.starts_with("/communities/bulk/"), "{page}");
    wait_all_finished(&app, &[2001, 2002, 2003, 2004, 2005]).await;

    for id in [2001, 2002, 2003] {
        assert_eq!(app.store().setup(GroupId(id)).await.unwrap().unwrap().state, SetupState::Done, "{id}");
        let ours = app.our_servers(id);
        assert_eq!(ours.len(), 1, "{id}: exactly one server of ours");
        assert_eq!(ours[0].status, ServerStatus::Ok);
    }
    let full = app.store().setup(GroupId(2004)).await.unwrap().unwrap();
    assert_eq!((full.state, full.error_kind), (SetupState::Failed, Some(ErrorKind::ServersLimit)));
    assert_eq!(app.sandbox.servers(2004).len(), 10, "nothing of anyone else's touched");
    let ungranted = app.store().setup(GroupId(2005)).await.unwrap().unwrap();
    assert_eq!((ungranted.state, ungranted.error_kind), (SetupState::Failed, Some(ErrorKind::NotGranted)));
    assert!(app.sandbox.servers(2005).is_empty());
    assert!(app.store().community_settings(GroupId(2005)).await.unwrap().unwrap().community_token.is_none(), "no key");

    let html = app.get(&page).await.text().await.unwrap();
    assert!(html.contains("Подключено 3 из 5"), "{html}");
    assert_eq!(html.matches("✅ Callback API подключен").count(), 3);
    assert!(html.contains("10 серверов") || html.contains("10 callback"), "the slots message: {html}");
    assert!(html.contains("Доступ к этому сообществу не выдан"), "{html}");
    assert_eq!(html.matches("class=\"btn secondary small retry\"").count(), 2, "a retry per failed community");

    // «Попробовать снова» for 2005: its own consent, back to the run's page, connected.
    let csrf = csrf_from(&html).unwrap();
    let bulk_id = page.rsplit('/').next().unwrap().to_owned();
    let r =
        app.post_form("/communities/2005/connect", &[("csrf", &csrf), ("bulk", &bulk_id), ("bot_enabled", "1")]).await;
    let authorize = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(group_ids_of(&authorize), [2005]);
    assert_eq!(answer_consent(&app, &authorize, &Consent::allow(1)).await, page);
    assert_eq!(app.finished_setup(2005).await.state, SetupState::Done);
    let html = app.get(&page).await.text().await.unwrap();
    assert!(html.contains("Подключено 4 из 5"), "{html}");
}

#[tokio::test]
async fn a_second_click_and_a_crash_resume_without_duplicates() {
    let app =
        TestApp::spawn_with(Options { extra_communities: 3, timing: short_setup_lease(300), ..Default::default() })
            .await;
    app.sign_in(1).await;
    let ids = [2001, 2002, 2003];
    // One of the three runners dies right after adding its server.
    app.state.hooks.arm(CrashPoint::SetupAfterServer);
    let consent_url = press_bulk(&app, "connect", &ids).await;
    let page = answer_consent(&app, &consent_url, &Consent::allow(1)).await;
    eventually(5, "every server added", || async {
        ids.iter().all(|id| app.our_servers(*id).len() == 1).then_some(())
    })
    .await;
    // The dead runner's lease runs out; reloading the run's page picks it up.
    let stuck = eventually(5, "the crashed run's lease to run out", || async {
        for id in ids {
            let s = app.store().setup(GroupId(id)).await.unwrap().unwrap();
            if s.state == SetupState::Running && s.lease_until < vkhook::store::now_ms() {
                return Some(id);
            }
        }
        None
    })
    .await;
    app.get(&page).await;
    wait_all_finished(&app, &ids).await;
    for id in ids {
        assert_eq!(
            app.store().setup(GroupId(id)).await.unwrap().unwrap().state,
            SetupState::Done,
            "{id} (crashed: {stuck})"
        );
        assert_eq!(app.our_servers(id).len(), 1, "{id}: one server");
    }
    // A second click on the same selection: the keys are stored, so no consent; each server is edited, not added.
    let again = press_bulk(&app, "connect", &ids).await;
    assert!(again.starts_with("/communities/bulk/"), "{again}");
    wait_all_finished(&app, &ids).await;
    for id in ids {
        assert_eq!(app.store().setup(GroupId(id)).await.unwrap().unwrap().state, SetupState::Done, "{id}");
        assert_eq!(app.our_servers(id).len(), 1, "{id}: still one server");
    }
}

#[tokio::test]
async fn more_communities_than_one_consent_takes_are_asked_in_a_chain() {
    let extra = vkhook::connect::CONSENT_MAX_COMMUNITIES + 10;
    let app = app_with(extra).await;
    // «Подключить все неподключённые»: 1001, 1002 and the extra ones (1003 is only edited by Анна).
    let first = press_bulk(&app, "connect_all", &[]).await;
    let asked = group_ids_of(&first);
    assert_eq!(asked.len(), vkhook::connect::CONSENT_MAX_COMMUNITIES);
    let second = answer_consent(&app, &first, &Consent::allow(1)).await;
    let rest = group_ids_of(&second);
    assert_eq!(rest.len(), extra + 2 - asked.len(), "the rest in a second consent");
    assert!(rest.iter().all(|id| !asked.contains(id)));
    let page = answer_consent(&app, &second, &Consent::allow(1)).await;
    assert!(page.starts_with("/communities/bulk/"), "{page}");
    let all: Vec<i64> = asked.iter().chain(&rest).copied().collect();
    assert!(!all.contains(&1003), "an editor's community is not connected");
    wait_all_finished(&app, &all).await;
    for id in &all {
        assert_eq!(app.store().setup(GroupId(*id)).await.unwrap().unwrap().state, SetupState::Done, "{id}");
    }
    let html = app.get(&page).await.text().await.unwrap();
    assert!(html.contains(&format!("Подключено {0} из {0}", all.len())), "{html}");
}

#[tokio::test]
async fn bulk_disconnect_removes_only_our_servers() {
    let app = app_with(3).await;
    let consent_url = press_bulk(&app, "connect", &[2001, 2002, 2003]).await;
    answer_consent(&app, &consent_url, &Consent::allow(1)).await;
    wait_all_finished(&app, &[2001, 2002, 2003]).await;
    app.add_foreign_server(2001, "CRM", "http://127.0.0.1:9/crm").await;

    let page = press_bulk(&app, "disconnect", &[2001, 2002]).await;
    assert!(page.starts_with("/communities/bulk/"), "{page}");
    let left: Vec<String> = app.sandbox.servers(2001).into_iter().map(|s| s.title).collect();
    assert_eq!(left, ["CRM"], "someone else's server stays");
    assert!(app.sandbox.servers(2002).is_empty());
    assert_eq!(app.our_servers(2003).len(), 1, "the unticked one is untouched");
    for id in [2001, 2002] {
        let s = app.store().community_settings(GroupId(id)).await.unwrap().unwrap();
        assert_eq!((s.community_token, s.secret), (None, None), "{id}: key and secret forgotten");
    }
    let html = app.get(&page).await.text().await.unwrap();
    assert!(html.contains("Отключено 2 из 2"), "{html}");
    assert_eq!(html.matches("Наш сервер удалён во ВКонтакте").count(), 2);

    // Nothing ticked: back to the list with a plain hint, nothing done.
    let r = press_bulk(&app, "disconnect", &[]).await;
    assert_eq!(r, "/communities?bulk=none");
    let html = app.get(&r).await.text().await.unwrap();
    assert!(html.contains("Отметьте хотя бы одно сообщество"));
    assert_eq!(app.our_servers(2003).len(), 1);
}

#[tokio::test]
async fn another_users_run_page_does_not_exist() {
    let app = app_with(1).await;
    let consent_url = press_bulk(&app, "connect", &[2001]).await;
    let page = answer_consent(&app, &consent_url, &Consent::allow(1)).await;
    let other = TestApp::sign_in_elsewhere(&app, 3).await;
    let r = other.get(format!("{}{page}", app.url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

/// Someone VK no longer counts as an administrator ticks a community in bulk: it is listed as refused, and the
/// community's setup record — here another administrator's run waiting at VK's consent page — is left as it was.
#[tokio::test]
async fn a_refused_community_in_a_bulk_run_leaves_another_admins_waiting_setup_alone() {
    let app = app_with(0).await;
    // Мария, 1003's administrator, pressed «Подключить» and is on VK's consent page.
    let maria = Driver::new(browser(), app.url.clone(), &app.sandbox, app.store().clone());
    maria.sign_in(4).await;
    let r = maria.post_with_csrf("/communities/1003", "/communities/1003/connect", &[]).await;
    assert_eq!(r.status(), 303);
    let waiting = app.store().setup(GroupId(1003)).await.unwrap().expect("Мария's run");
    assert_eq!((waiting.state, waiting.started_by), (SetupState::WaitingToken, 4));
    // Анна's stored role says administrator (stale: the list was read before she was made an editor); VK says
    // editor. (The form is posted from another page, so `/communities` does not read the list again first.)
    app.store()
        .set_user_role(UserId(1), GroupId(1003), vkhook::model::Role::Administrator, vkhook::store::now_ms())
        .await
        .unwrap();
    let form = [("group", "1001"), ("group", "1003"), ("action", "connect")];
    let r = app.post_with_csrf("/communities/1001", "/communities/bulk", &form).await;
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(group_ids_of(&to), [1001], "only the community VK confirms goes to the consent");
    let page = answer_consent(&app, &to, &Consent::allow(1)).await;
    wait_all_finished(&app, &[1001]).await;
    let html = app.get(&page).await.text().await.unwrap();
    assert!(html.contains("больше не администратор"), "1003 listed as refused: {html}");
    assert_eq!(app.store().setup(GroupId(1003)).await.unwrap(), Some(waiting), "Мария's run untouched");
}
