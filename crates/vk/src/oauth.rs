//! OAuth: VK ID (OAuth 2.1 with PKCE) to sign a user in, and the community authorization at oauth.vk.com that
//! issues community tokens (VK ID cannot).

use std::fmt;
use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use url::Url;

use crate::client::AccessToken;
use crate::error::{Error, OAuthError};
use crate::types::{GroupId, UserId};

/// `n` random bytes as URL-safe base64 without padding (for `state`, PKCE verifiers, secrets).
pub fn random_urlsafe(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A PKCE pair: the verifier stays on the server, the S256 challenge goes to VK ID.
pub struct Pkce {
    pub verifier: SecretString,
    pub challenge: String,
}

impl Pkce {
    pub fn generate() -> Self {
        let verifier = random_urlsafe(48); // 64 characters, within RFC 7636's 43..128
        let challenge = Self::challenge_for(&verifier);
        Self { verifier: SecretString::from(verifier), challenge }
    }

    /// `BASE64URL(SHA256(verifier))`.
    pub fn challenge_for(verifier: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
    }
}

/// Where to find VK's OAuth hosts and who we are there.
#[derive(Clone)]
pub struct OAuthConfig {
    /// `https://id.vk.com`
    pub id_url: Url,
    /// `https://oauth.vk.com`
    pub oauth_url: Url,
    pub client_id: String,
    pub client_secret: SecretString,
    pub timeout: Duration,
}

impl fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("id_url", &self.id_url.as_str())
            .field("oauth_url", &self.oauth_url.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Tokens from VK ID.
pub struct VkIdTokens {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    /// Seconds the access token lives (an hour at VK).
    pub expires_in: i64,
    pub user_id: UserId,
    /// Space-separated scopes granted.
    pub scope: String,
}

impl fmt::Debug for VkIdTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VkIdTokens")
            .field("expires_in", &self.expires_in)
            .field("user_id", &self.user_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl VkIdTokens {
    pub fn has_scope(&self, scope: &str) -> bool {
        scope_listed(&self.scope, scope)
    }
}

/// Whether `scope` is in a list of scopes as VK writes them (separated by spaces or commas).
pub fn scope_listed(scopes: &str, scope: &str) -> bool {
    scopes.split([' ', ',']).any(|s| s == scope)
}

/// `user_info` from VK ID.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VkIdUser {
    #[serde(deserialize_with = "id_from_number_or_text")]
    pub user_id: i64,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub avatar: Option<String>,
}

fn id_from_number_or_text<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(i64),
        Text(String),
    }
    match Id::deserialize(d)? {
        Id::Number(n) => Ok(n),
        Id::Text(s) => s.parse().map_err(|_| serde::de::Error::custom(format!("user_id {s:?} is not a number"))),
    }
}

#[derive(Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    cfg: OAuthConfig,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient").field("cfg", &self.cfg).finish()
    }
}

impl OAuthClient {
    pub fn new(cfg: OAuthConfig) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(Error::from_reqwest)?;
        Ok(Self { http, cfg })
    }

    pub fn config(&self) -> &OAuthConfig {
        &self.cfg
    }

    /// The VK ID authorization page: `{id_url}/authorize?response_type=code&client_id&redirect_uri&state&
    /// code_challenge&code_challenge_method=s256&scope` (scopes space-separated).
    pub fn vkid_authorize_url(&self, redirect_uri: &str, state: &str, challenge: &str, scopes: &[&str]) -> Url {
        let mut url = join(&self.cfg.id_url, &["authorize"]);
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "s256")
            .append_pair("scope", &scopes.join(" "));
        url
    }

    /// Exchanges the code from VK ID's redirect for tokens.
    pub async fn vkid_exchange_code(
        &self,
        code: &SecretString,
        verifier: &SecretString,
        device_id: &str,
        redirect_uri: &str,
        state: &str,
    ) -> Result<VkIdTokens, Error> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("code_verifier", verifier.expose_secret()),
            ("client_id", &self.cfg.client_id),
            ("device_id", device_id),
            ("redirect_uri", redirect_uri),
            ("state", state),
        ];
        self.vkid_tokens(&form).await
    }

    /// A fresh access token (and a new refresh token: VK ID rotates them).
    pub async fn vkid_refresh(
        &self,
        refresh_token: &SecretString,
        device_id: &str,
        state: &str,
    ) -> Result<VkIdTokens, Error> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
            ("client_id", &self.cfg.client_id),
            ("device_id", device_id),
            ("state", state),
        ];
        self.vkid_tokens(&form).await
    }

    async fn vkid_tokens(&self, form: &[(&str, &str)]) -> Result<VkIdTokens, Error> {
        #[derive(Deserialize)]
        struct Wire {
            access_token: String,
            refresh_token: String,
            expires_in: i64,
            #[serde(deserialize_with = "id_from_number_or_text")]
            user_id: i64,
            #[serde(default)]
            scope: String,
        }
        let url = join(&self.cfg.id_url, &["oauth2", "auth"]);
        let wire: Wire = self.post_json(url, form).await?;
        Ok(VkIdTokens {
            access_token: SecretString::from(wire.access_token),
            refresh_token: SecretString::from(wire.refresh_token),
            expires_in: wire.expires_in,
            user_id: UserId(wire.user_id),
            scope: wire.scope,
        })
    }

    /// The signed-in user's name and avatar.
    pub async fn vkid_user_info(&self, access_token: &SecretString) -> Result<VkIdUser, Error> {
        #[derive(Deserialize)]
        struct Wire {
            user: VkIdUser,
        }
        let url = join(&self.cfg.id_url, &["oauth2", "user_info"]);
        let form = [("client_id", self.cfg.client_id.as_str()), ("access_token", access_token.expose_secret())];
        let wire: Wire = self.post_json(url, &form).await?;
        Ok(wire.user)
    }

    /// The community authorization page at oauth.vk.com for `group_ids` with `scopes` (`manage`, `messages`, …).
    pub fn community_authorize_url(
        &self,
        redirect_uri: &str,
        group_ids: &[GroupId],
        scopes: &[&str],
        state: &str,
    ) -> Url {
        let ids = group_ids.iter().map(|g| g.0.to_string()).collect::<Vec<_>>().join(",");
        let mut url = join(&self.cfg.oauth_url, &["authorize"]);
        url.query_pairs_mut()
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("group_ids", &ids)
            .append_pair("scope", &scopes.join(","))
            .append_pair("response_type", "code")
            .append_pair("v", crate::client::API_VERSION)
            .append_pair("state", state);
        url
    }

    /// Exchanges a community authorization code: one token per `access_token_<group_id>` key.
    pub async fn community_exchange_code(
        &self,
        code: &SecretString,
        redirect_uri: &str,
    ) -> Result<Vec<(GroupId, AccessToken)>, Error> {
        let mut url = join(&self.cfg.oauth_url, &["access_token"]);
        url.query_pairs_mut()
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("client_secret", self.cfg.client_secret.expose_secret())
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code", code.expose_secret());
        let response = self.http.get(url).send().await.map_err(Error::from_reqwest)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(Error::from_reqwest)?;
        let value = read_oauth_json(status, &body)?;
        read_community_tokens(&value)
    }

    async fn post_json<T: serde::de::DeserializeOwned>(&self, url: Url, form: &[(&str, &str)]) -> Result<T, Error> {
        let response = self.http.post(url).form(form).send().await.map_err(Error::from_reqwest)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(Error::from_reqwest)?;
        let value = read_oauth_json(status, &body)?;
        serde_json::from_value(value).map_err(|e| Error::Decode(e.to_string()))
    }
}

/// The keys in a community code exchange's answer: `access_token_<id>` per community, and/or the `groups` array.
fn read_community_tokens(value: &serde_json::Value) -> Result<Vec<(GroupId, AccessToken)>, Error> {
    let object = value.as_object().ok_or_else(|| Error::Decode("token answer is not an object".into()))?;
    let mut tokens = Vec::new();
    for (key, value) in object {
        let Some(id) = key.strip_prefix("access_token_") else { continue };
        let id: i64 = id.parse().map_err(|_| Error::Decode(format!("unexpected key {key}")))?;
        let token = value.as_str().ok_or_else(|| Error::Decode(format!("{key} is not a string")))?;
        tokens.push((GroupId(id), AccessToken::community(token.to_owned())));
    }
    // Some answers also (or only) carry `groups: [{group_id, access_token}]`; a community already read from its
    // `access_token_<id>` key is not read twice.
    if let Some(groups) = object.get("groups").and_then(|g| g.as_array()) {
        for entry in groups {
            let id = entry.get("group_id").and_then(|v| v.as_i64());
            let token = entry.get("access_token").and_then(|v| v.as_str());
            let (Some(id), Some(token)) = (id, token) else {
                return Err(Error::Decode("a `groups` entry without group_id or access_token".into()));
            };
            if !tokens.iter().any(|(g, _)| g.0 == id) {
                tokens.push((GroupId(id), AccessToken::community(token.to_owned())));
            }
        }
    }
    if tokens.is_empty() {
        return Err(Error::Decode("no access_token_<group_id> in the answer".into()));
    }
    tokens.sort_by_key(|(id, _)| *id);
    Ok(tokens)
}

/// An OAuth answer: JSON, or `{error, error_description}` (with any status).
fn read_oauth_json(status: u16, body: &[u8]) -> Result<serde_json::Value, Error> {
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) if !(200..300).contains(&status) => return Err(Error::Http(status)),
        Err(e) => return Err(Error::Decode(e.to_string())),
    };
    if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
        let description = value.get("error_description").and_then(|d| d.as_str()).unwrap_or_default().to_owned();
        return Err(Error::OAuth(OAuthError { error: error.to_owned(), description }));
    }
    if !(200..300).contains(&status) {
        return Err(Error::Http(status));
    }
    Ok(value)
}

/// The error VK put on a redirect back to us (`?error=…&error_description=…`), if any.
pub fn redirect_error(error: Option<&str>, description: Option<&str>) -> Option<OAuthError> {
    error.map(|e| OAuthError { error: e.to_owned(), description: description.unwrap_or_default().to_owned() })
}

fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_is_rfc7636_s256() {
        // RFC 7636, appendix B.
        assert_eq!(
            Pkce::challenge_for("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let p = Pkce::generate();
        assert_eq!(p.verifier.expose_secret().len(), 64);
        assert_eq!(p.challenge, Pkce::challenge_for(p.verifier.expose_secret()));
    }

    #[test]
    fn community_keys_are_read_from_either_form_of_the_answer() {
        let ids = |v: serde_json::Value| {
            read_community_tokens(&v)
                .unwrap()
                .into_iter()
                .map(|(g, t)| (g.0, t.secret().expose_secret().to_owned()))
                .collect::<Vec<_>>()
        };
        let both = serde_json::json!({"access_token_7": "a", "groups": [{"group_id": 7, "access_token": "a"}],
                                      "expires_in": 0});
        assert_eq!(ids(both), vec![(7, "a".to_owned())], "one key per community");
        let only_array = serde_json::json!({"groups": [{"group_id": 9, "access_token": "b"},
                                                       {"group_id": 8, "access_token": "c"}], "expires_in": 0});
        assert_eq!(ids(only_array), vec![(8, "c".to_owned()), (9, "b".to_owned())]);
        assert!(read_community_tokens(&serde_json::json!({"expires_in": 0})).is_err());
        assert!(read_community_tokens(&serde_json::json!({"groups": [{"group_id": 9}]})).is_err());
    }

    #[test]
    fn oauth_errors_are_typed() {
        let err =
            read_oauth_json(400, br#"{"error":"invalid_grant","error_description":"code is expired"}"#).unwrap_err();
        match err {
            Error::OAuth(e) => {
                assert_eq!(e.error, "invalid_grant");
                assert_eq!(e.description, "code is expired");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(read_oauth_json(500, b"oops"), Err(Error::Http(500))));
    }

    #[test]
    fn authorize_urls_carry_what_vk_needs() {
        let client = OAuthClient::new(OAuthConfig {
            id_url: Url::parse("https://id.vk.com").unwrap(),
            oauth_url: Url::parse("https://oauth.vk.com/").unwrap(),
            client_id: "51".into(),
            client_secret: SecretString::from("s"),
            timeout: Duration::from_secs(5),
        })
        .unwrap();
        let url = client.vkid_authorize_url("https://app/cb", "st", "ch", &["vkid.personal_info", "groups"]);
        assert_eq!(url.path(), "/authorize");
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert!(q.contains(&("code_challenge_method".into(), "s256".into())));
        assert!(q.contains(&("scope".into(), "vkid.personal_info groups".into())));
        let url = client.community_authorize_url(
            "https://app/cc",
            &[GroupId(1001), GroupId(1002)],
            &["manage", "messages"],
            "x",
        );
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert!(q.contains(&("group_ids".into(), "1001,1002".into())));
        assert!(q.contains(&("scope".into(), "manage,messages".into())));
        assert!(!url.as_str().contains("client_secret"));
    }
}
