//! OAuth hosts: consent pages, single-use expiring codes, PKCE, token lifetimes.

use vk_sandbox::testing::{consent, query_param, Consent};

use crate::helpers::*;

fn vkid_url(sandbox: &vk_sandbox::Sandbox, challenge: &str) -> String {
    let mut url = url::Url::parse(&format!("{}/authorize", sandbox.id_url())).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &sandbox.config().client_id)
        .append_pair("redirect_uri", "http://127.0.0.1:9/cb")
        .append_pair("state", "0123456789abcdef0123456789abcdef")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "s256")
        .append_pair("scope", "vkid.personal_info groups");
    url.into()
}

async fn exchange(sandbox: &vk_sandbox::Sandbox, form: &[(&str, String)]) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new().post(format!("{}/oauth2/auth", sandbox.id_url())).form(form).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn the_vk_id_page_shows_the_test_users() {
    let sandbox = sandbox().await;
    let html = reqwest::get(vkid_url(&sandbox, "abc")).await.unwrap().text().await.unwrap();
    for name in ["Анна Админова", "Иван Читатель", "Пётр Соседов", "Разрешить", "Отмена"]
    {
        assert!(html.contains(name), "{name}");
    }
}

#[tokio::test]
async fn an_unknown_client_or_redirect_uri_gets_an_error_page_not_a_redirect() {
    let sandbox = sandbox().await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let bad_client = vkid_url(&sandbox, "abc").replace(&sandbox.config().client_id, "999");
    let r = http.get(bad_client).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let bad_redirect = vkid_url(&sandbox, "abc").replace("127.0.0.1%3A9", "evil.example");
    let r = http.get(bad_redirect).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
}

#[tokio::test]
async fn a_vk_id_code_is_single_use_expires_and_needs_the_verifier() {
    let sandbox = sandbox().await;
    let verifier = "v".repeat(64);
    let challenge = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    let url = vkid_url(&sandbox, &challenge);
    let client_id = sandbox.config().client_id.clone();

    let back = consent(&url, &Consent::allow(1)).await.unwrap();
    let (code, device) = (query_param(&back, "code").unwrap(), query_param(&back, "device_id").unwrap());
    let form = |code: &str, verifier: &str, device: &str| -> Vec<(&'static str, String)> {
        vec![
            ("grant_type", "authorization_code".into()),
            ("code", code.into()),
            ("code_verifier", verifier.into()),
            ("client_id", client_id.clone()),
            ("device_id", device.into()),
            ("redirect_uri", "http://127.0.0.1:9/cb".into()),
        ]
    };
    let f = form(&code, &verifier, &device);
    let (status, tokens) = exchange(&sandbox, &f).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["user_id"], 1);
    assert_eq!(tokens["expires_in"], 3600);
    let (status, again) = exchange(&sandbox, &f).await;
    assert_eq!((status, again["error"].as_str()), (400, Some("invalid_grant")));

    // Expired: ten minutes of sandbox time.
    let back = consent(&url, &Consent::allow(1)).await.unwrap();
    let (code, device) = (query_param(&back, "code").unwrap(), query_param(&back, "device_id").unwrap());
    sandbox.advance_clock(601);
    let f = form(&code, &verifier, &device);
    let (status, expired) = exchange(&sandbox, &f).await;
    assert_eq!((status, expired["error_description"].as_str()), (400, Some("code is expired")));
}

#[tokio::test]
async fn a_short_state_is_refused_with_a_redirect_error() {
    let sandbox = sandbox().await;
    let url = vkid_url(&sandbox, "abc").replace("0123456789abcdef0123456789abcdef", "short");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(url).send().await.unwrap();
    let location = r.headers().get("location").unwrap().to_str().unwrap().to_owned();
    assert!(location.contains("error=invalid_request"), "{location}");
}

#[tokio::test]
async fn a_consent_for_several_communities_issues_keys_for_the_ticked_ones_only() {
    let sandbox =
        sandbox_with(vk_sandbox::SandboxConfig { time_factor: 0.001, extra_communities: 3, ..Default::default() })
            .await;
    let mut url = url::Url::parse(&format!("{}/authorize", sandbox.oauth_url())).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", &sandbox.config().client_id)
        .append_pair("redirect_uri", "http://127.0.0.1:9/cb")
        .append_pair("group_ids", "1001,2001,2002,2003")
        .append_pair("scope", "manage,messages")
        .append_pair("response_type", "code")
        .append_pair("v", "5.199")
        .append_pair("state", "s");
    let html = reqwest::get(url.as_str()).await.unwrap().text().await.unwrap();
    for id in ["club1001", "club2001", "club2002", "club2003"] {
        assert!(html.contains(id), "the page lists {id}");
    }
    assert_eq!(html.matches("name=\"community\"").count(), 4, "one tick per community");

    let back = consent(url.as_str(), &Consent::ticking(1, &[1001, 2002])).await.unwrap();
    let code = query_param(&back, "code").expect("a code");
    let answer: serde_json::Value = reqwest::get(format!(
        "{}/access_token?client_id={}&client_secret={}&redirect_uri=http://127.0.0.1:9/cb&code={code}",
        sandbox.oauth_url(),
        sandbox.config().client_id,
        sandbox.config().client_secret
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let mut keys: Vec<&str> =
        answer.as_object().unwrap().keys().map(String::as_str).filter(|k| k.starts_with("access_token_")).collect();
    keys.sort();
    assert_eq!(keys, ["access_token_1001", "access_token_2002"], "{answer}");
    // The same keys as `groups: [{group_id, access_token}]`, which some clients read instead.
    let groups = answer["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    for g in groups {
        let id = g["group_id"].as_i64().unwrap();
        assert_eq!(g["access_token"], answer[format!("access_token_{id}")], "{answer}");
    }

    // Nothing ticked is a refusal, as «Отмена».
    let back = consent(url.as_str(), &Consent::ticking(1, &[])).await.unwrap();
    assert_eq!(query_param(&back, "error").as_deref(), Some("access_denied"));
}
