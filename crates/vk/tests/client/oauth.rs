//! VK ID sign-in and community authorization, end to end against the sandbox.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use vk::{AccessToken, CommunityScope, Error, GroupId, OAuthClient, OAuthConfig, Pkce};
use vk_sandbox::testing::{consent, query_param, Consent};
use vk_sandbox::Sandbox;

use crate::helpers::{client, sandbox};

const REDIRECT: &str = "http://127.0.0.1:9/auth/vk/callback";

fn oauth(sandbox: &Sandbox) -> OAuthClient {
    OAuthClient::new(OAuthConfig {
        id_url: sandbox.id_url().parse().unwrap(),
        oauth_url: sandbox.oauth_url().parse().unwrap(),
        client_id: sandbox.config().client_id.clone(),
        client_secret: SecretString::from(sandbox.config().client_secret.clone()),
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

#[tokio::test]
async fn vk_id_sign_in_exchanges_refreshes_and_reads_the_user() {
    let sandbox = sandbox().await;
    let oauth = oauth(&sandbox);
    let pkce = Pkce::generate();
    let state = vk::oauth::random_urlsafe(32);
    let url = oauth.vkid_authorize_url(REDIRECT, &state, &pkce.challenge, &["vkid.personal_info", "groups"]);

    let back = consent(url.as_str(), &Consent::allow(1)).await.unwrap();
    assert!(back.as_str().starts_with(REDIRECT));
    assert_eq!(query_param(&back, "state").as_deref(), Some(state.as_str()));
    let code = SecretString::from(query_param(&back, "code").expect("code"));
    let device_id = query_param(&back, "device_id").expect("device_id");

    let tokens = oauth.vkid_exchange_code(&code, &pkce.verifier, &device_id, REDIRECT, &state).await.unwrap();
    assert_eq!(tokens.user_id.0, 1);
    assert_eq!(tokens.expires_in, 3600);
    assert!(tokens.has_scope("groups"));

    let user = oauth.vkid_user_info(&tokens.access_token).await.unwrap();
    assert_eq!((user.user_id, user.first_name.as_str(), user.last_name.as_str()), (1, "Анна", "Админова"));

    // The code is single-use.
    let replay = oauth.vkid_exchange_code(&code, &pkce.verifier, &device_id, REDIRECT, &state).await.unwrap_err();
    assert!(matches!(&replay, Error::OAuth(e) if e.error == "invalid_grant"), "{replay:?}");

    // An hour later the access token is dead; the refresh token gives a new one.
    sandbox.advance_clock(3601);
    let api = client(&sandbox);
    let expired = api.groups_get(&AccessToken::user(tokens.access_token.clone()), &["admin"]).await.unwrap_err();
    assert!(expired.needs_reauth(), "{expired:?}");
    let fresh = oauth.vkid_refresh(&tokens.refresh_token, &device_id, &state).await.unwrap();
    assert_ne!(fresh.access_token.expose_secret(), tokens.access_token.expose_secret());
    let groups = api.groups_get(&AccessToken::user(fresh.access_token.clone()), &["admin"]).await.unwrap();
    assert_eq!(groups.items.iter().map(|g| g.id.0).collect::<Vec<_>>(), vec![1001, 1002]);

    // VK ID rotates refresh tokens: the old one no longer works.
    let stale = oauth.vkid_refresh(&tokens.refresh_token, &device_id, &state).await.unwrap_err();
    assert!(matches!(stale, Error::OAuth(_)));
}

#[tokio::test]
async fn a_wrong_pkce_verifier_or_denied_consent_gives_no_token() {
    let sandbox = sandbox().await;
    let oauth = oauth(&sandbox);
    let pkce = Pkce::generate();
    let state = vk::oauth::random_urlsafe(32);
    let url = oauth.vkid_authorize_url(REDIRECT, &state, &pkce.challenge, &["groups"]);
    let back = consent(url.as_str(), &Consent::allow(2)).await.unwrap();
    let code = SecretString::from(query_param(&back, "code").unwrap());
    let device_id = query_param(&back, "device_id").unwrap();
    let other = Pkce::generate();
    let err = oauth.vkid_exchange_code(&code, &other.verifier, &device_id, REDIRECT, &state).await.unwrap_err();
    assert!(matches!(&err, Error::OAuth(e) if e.description.contains("code_verifier")), "{err:?}");

    let back = consent(url.as_str(), &Consent::deny(1)).await.unwrap();
    let err = vk::oauth::redirect_error(query_param(&back, "error").as_deref(), None).unwrap();
    assert!(err.is_access_denied());
    assert!(query_param(&back, "code").is_none());
}

#[tokio::test]
async fn one_community_authorization_gives_tokens_for_two_communities() {
    let sandbox = sandbox().await;
    let oauth = oauth(&sandbox);
    let redirect = "http://127.0.0.1:9/auth/vk/community-callback";
    let url =
        oauth.community_authorize_url(redirect, &[GroupId(1001), GroupId(1002)], &["manage", "messages"], "state-xyz");
    let back = consent(url.as_str(), &Consent::allow(1)).await.unwrap();
    assert_eq!(query_param(&back, "state").as_deref(), Some("state-xyz"));
    let code = SecretString::from(query_param(&back, "code").unwrap());
    let tokens = oauth.community_exchange_code(&code, redirect).await.unwrap();
    assert_eq!(tokens.iter().map(|(g, _)| g.0).collect::<Vec<_>>(), vec![1001, 1002]);

    let api = client(&sandbox);
    for (group_id, token) in &tokens {
        let perms = api.groups_get_token_permissions(token).await.unwrap();
        assert!(perms.has(CommunityScope::Manage) && perms.has(CommunityScope::Messages));
        let me = api.groups_get_by_id(token, &[]).await.unwrap();
        assert_eq!(me[0].id, *group_id);
    }
    // The code was used up.
    assert!(oauth.community_exchange_code(&code, redirect).await.is_err());
}

#[tokio::test]
async fn a_community_token_carries_only_the_scopes_left_ticked() {
    let sandbox = sandbox().await;
    let oauth = oauth(&sandbox);
    let redirect = "http://127.0.0.1:9/cc";
    let url = oauth.community_authorize_url(redirect, &[GroupId(1001)], &["manage", "messages"], "s");
    let back = consent(url.as_str(), &Consent::granting(1, &["messages"])).await.unwrap();
    let code = SecretString::from(query_param(&back, "code").unwrap());
    let tokens = oauth.community_exchange_code(&code, redirect).await.unwrap();
    let perms = client(&sandbox).groups_get_token_permissions(&tokens[0].1).await.unwrap();
    assert!(!perms.has(CommunityScope::Manage));
    assert_eq!(perms.names(), vec!["messages".to_owned()]);
}

#[tokio::test]
async fn only_an_administrator_can_grant_a_community_token() {
    let sandbox = sandbox().await;
    let oauth = oauth(&sandbox);
    let redirect = "http://127.0.0.1:9/cc";
    // User 1 is only an editor of 1003.
    let url = oauth.community_authorize_url(redirect, &[GroupId(1003)], &["manage"], "s");
    let back = consent(url.as_str(), &Consent::allow(1)).await.unwrap();
    assert_eq!(query_param(&back, "error").as_deref(), Some("access_denied"));
    assert!(query_param(&back, "code").is_none());
}
