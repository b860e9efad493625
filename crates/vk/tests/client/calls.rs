//! API calls: typed answers, error classes, retries, rate limits, and limits checked before sending.

use vk::{AccessToken, Error, GroupId, Params};
use vk_sandbox::Fault;

use crate::helpers::{client, community, sandbox};

#[tokio::test]
async fn groups_get_lists_administered_communities_with_roles() {
    let sandbox = sandbox().await;
    let api = client(&sandbox);
    let token = AccessToken::user(sandbox.issue_user_token(1, &["groups"]));
    let list = api.groups_get(&token, &["moder"]).await.unwrap();
    let roles: Vec<(i64, Option<vk::AdminLevel>)> = list.items.iter().map(|g| (g.id.0, g.admin_level)).collect();
    assert_eq!(
        roles,
        vec![
            (1001, Some(vk::AdminLevel::Administrator)),
            (1002, Some(vk::AdminLevel::Administrator)),
            (1003, Some(vk::AdminLevel::Editor)),
        ]
    );
    let by_name = api.groups_get_by_id(&token, &["zerno_coffee", "club1004"]).await.unwrap();
    assert_eq!(by_name.iter().map(|g| g.id.0).collect::<Vec<_>>(), vec![1001, 1004]);
    assert_eq!(by_name[1].admin_level, None);
}

#[tokio::test]
async fn retryable_errors_are_retried_and_others_return_at_once() {
    let sandbox = sandbox().await;
    let api = client(&sandbox);
    let token = community(&sandbox, 1001);
    sandbox.inject_fault(Fault {
        method: Some("groups.getCallbackServers".into()),
        error_code: Some(10),
        latency_ms: None,
        remaining: Some(2),
    });
    let servers = api.groups_get_callback_servers(&token, GroupId(1001)).await.unwrap();
    assert!(servers.is_empty());
    assert!(sandbox.world().faults.is_empty(), "both injected errors were consumed by retries");

    sandbox.inject_fault(Fault {
        method: Some("groups.getCallbackServers".into()),
        error_code: Some(15),
        latency_ms: None,
        remaining: Some(3),
    });
    let err = api.groups_get_callback_servers(&token, GroupId(1001)).await.unwrap_err();
    assert_eq!(err.code(), Some(15));
    assert!(!err.is_retryable());
    assert_eq!(sandbox.world().faults[0].remaining, Some(2), "a non-retryable error is not retried");
}

#[tokio::test]
async fn a_dead_token_needs_reauthorization() {
    let sandbox = sandbox().await;
    let api = client(&sandbox);
    let err = api.groups_get_token_permissions(&AccessToken::community("vk1.a.revoked")).await.unwrap_err();
    assert_eq!(err.code(), Some(5));
    assert!(err.needs_reauth());
}

#[tokio::test]
async fn the_eleventh_server_is_error_2000() {
    let sandbox = sandbox().await;
    let api = client(&sandbox);
    let token = community(&sandbox, 1001);
    for i in 0..10 {
        api.groups_add_callback_server(&token, GroupId(1001), &format!("http://127.0.0.1:9/{i}"), "other", None)
            .await
            .unwrap();
    }
    let err = api.groups_add_callback_server(&token, GroupId(1001), "http://127.0.0.1:9/x", "vkhook", None).await;
    assert!(err.unwrap_err().is_callback_servers_limit());
}

#[tokio::test]
async fn limits_are_checked_before_sending() {
    let sandbox = sandbox().await;
    let api = client(&sandbox);
    let token = community(&sandbox, 1001);
    let err = api
        .groups_add_callback_server(&token, GroupId(1001), "http://127.0.0.1:9/", "fifteen chars!!", None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidParam { name: "title", .. }));
    // The sandbox never saw it: nothing was added.
    assert!(sandbox.servers(1001).is_empty());
}

#[tokio::test]
async fn the_rate_limiter_spreads_a_burst_over_vk_windows() {
    let sandbox = sandbox().await;
    let api = client(&sandbox);
    let token = community(&sandbox, 1001);
    let started = std::time::Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let (api, token) = (api.clone(), token.clone());
        calls.spawn(async move { api.groups_get_callback_servers(&token, GroupId(1001)).await });
    }
    while let Some(result) = calls.join_next().await {
        result.unwrap().unwrap();
    }
    // 30 calls at 20 per window cannot all start inside the first window (1.1 s: VK's second plus a margin).
    assert!(started.elapsed() >= std::time::Duration::from_millis(1100), "{:?}", started.elapsed());
}

#[tokio::test]
async fn raw_calls_reach_any_method() {
    let sandbox = sandbox().await;
    let api = client(&sandbox);
    let token = community(&sandbox, 1001);
    let value = api.call_raw(&token, "groups.getById", &Params::new()).await.unwrap();
    assert_eq!(value["groups"][0]["id"], 1001);
    let err = api.call_raw(&token, "groups.setCallbackServer", &Params::new()).await.unwrap_err();
    assert_eq!(err.code(), Some(3), "removed in 5.68: unknown method");
}

#[tokio::test]
async fn without_groups_vk_does_not_say_who_manages_a_community() {
    let sandbox = sandbox().await;
    let api = client(&sandbox);
    let token = AccessToken::user(sandbox.issue_user_token(1, &["vkid.personal_info"]));
    let groups = api.groups_get_by_id(&token, &["zerno_coffee"]).await.unwrap();
    assert_eq!((groups[0].id.0, groups[0].is_admin, groups[0].admin_level), (1001, None, None), "unknown, not \"no\"");
    let token = AccessToken::user(sandbox.issue_user_token(1, &["groups"]));
    let groups = api.groups_get_by_id(&token, &["1001", "1004"]).await.unwrap();
    assert_eq!(groups[0].is_admin, Some(true));
    assert_eq!(groups[1].is_admin, Some(false), "with `groups` a plain no");
}

#[tokio::test]
async fn managers_and_the_message_permission_are_read_with_a_community_key() {
    let sandbox = sandbox().await;
    let api = client(&sandbox);
    let key = community(&sandbox, 1003);
    let managers = api.groups_get_managers(&key, GroupId(1003)).await.unwrap();
    let roles: Vec<(i64, Option<vk::AdminLevel>)> = managers.iter().map(|m| (m.id.0, m.role.admin_level())).collect();
    assert_eq!(roles, vec![(1, Some(vk::AdminLevel::Editor)), (4, Some(vk::AdminLevel::Administrator))]);
    assert_eq!(managers[1].role, vk::ManagerRole::Creator);
    let user = vk::UserId(2);
    assert!(!api.messages_is_allowed_from_group(&key, GroupId(1003), user).await.unwrap());
    sandbox.message(1003, 2, "привет").unwrap();
    assert!(api.messages_is_allowed_from_group(&key, GroupId(1003), user).await.unwrap(), "writing first allows");
}
