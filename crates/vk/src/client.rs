//! The VK API client: form-encoded POSTs to `{api_url}/method/<name>` with `v`, a token per call, a per-token rate
//! limit, a timeout, and retries of transient errors.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use url::Url;

use crate::error::{is_secret_param, ApiError, Error};
use crate::ratelimit::RateLimiter;
use crate::retry::RetryPolicy;
use crate::types::*;

/// The API version vkhook speaks.
pub const API_VERSION: &str = "5.199";
/// `groups.addCallbackServer`/`editCallbackServer`: VK's limit on `title`.
pub const MAX_SERVER_TITLE_CHARS: usize = 14;
/// `groups.addCallbackServer`/`editCallbackServer`: VK's limit on `secret_key`.
pub const MAX_SECRET_KEY_CHARS: usize = 50;
/// `messages.send`: VK's limit on `message`.
pub const MAX_MESSAGE_CHARS: usize = 9000;

/// Who a token belongs to: it decides the rate limit and which methods VK allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    User,
    Community,
}

/// An access token. Its value is only ever exposed to build a request; `Debug` shows the kind alone.
#[derive(Clone)]
pub struct AccessToken {
    value: SecretString,
    kind: TokenKind,
}

impl AccessToken {
    pub fn user(value: impl Into<SecretString>) -> Self {
        Self { value: value.into(), kind: TokenKind::User }
    }

    pub fn community(value: impl Into<SecretString>) -> Self {
        Self { value: value.into(), kind: TokenKind::Community }
    }

    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    pub fn secret(&self) -> &SecretString {
        &self.value
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken({:?}, [redacted])", self.kind)
    }
}

/// What happened to one request, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    /// VK's error code.
    Api(i64),
    Network,
    Timeout,
    Http(u16),
    Decode,
}

impl CallOutcome {
    fn of(result: &Result<serde_json::Value, Error>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(Error::Api(e)) => Self::Api(e.code),
            Err(Error::Timeout) => Self::Timeout,
            Err(Error::Http(s)) => Self::Http(*s),
            Err(Error::Decode(_)) => Self::Decode,
            Err(_) => Self::Network,
        }
    }
}

/// Told about every request the client sends (after it completes), e.g. to count calls by method and error code.
pub trait CallObserver: Send + Sync {
    fn observe(&self, method: &str, outcome: CallOutcome, elapsed: Duration);
}

#[derive(Clone)]
pub struct ClientConfig {
    /// `https://api.vk.com` (the client appends `/method/<name>`).
    pub api_url: Url,
    pub version: String,
    pub timeout: Duration,
    pub user_per_second: u32,
    pub community_per_second: u32,
    pub retry: RetryPolicy,
    pub observer: Option<Arc<dyn CallObserver>>,
}

impl ClientConfig {
    pub fn new(api_url: Url) -> Self {
        Self {
            api_url,
            version: API_VERSION.to_owned(),
            timeout: Duration::from_secs(10),
            user_per_second: 3,
            community_per_second: 20,
            retry: RetryPolicy::default(),
            observer: None,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("api_url", &self.api_url.as_str())
            .field("version", &self.version)
            .field("timeout", &self.timeout)
            .field("user_per_second", &self.user_per_second)
            .field("community_per_second", &self.community_per_second)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Request parameters, in order. Values are plain text; secrets are added by the client only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(mut self, name: &str, value: impl ToString) -> Self {
        self.0.push((name.to_owned(), value.to_string()));
        self
    }

    pub fn opt(self, name: &str, value: Option<impl ToString>) -> Self {
        match value {
            Some(v) => self.add(name, v),
            None => self,
        }
    }

    pub fn flag(self, name: &str, on: bool) -> Self {
        self.add(name, if on { 1 } else { 0 })
    }

    pub fn list<T: ToString>(self, name: &str, values: &[T]) -> Self {
        let joined = values.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        self.add(name, joined)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Whether a method may be sent twice. A method that is not idempotent is retried only when VK certainly did not
/// run it (errors 6, 9, 29).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    Idempotent,
    NotIdempotent,
}

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    cfg: ClientConfig,
    limiter: RateLimiter,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("cfg", &self.inner.cfg).finish()
    }
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("vkhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::from_reqwest)?;
        Ok(Self { inner: Arc::new(Inner { http, cfg, limiter: RateLimiter::default() }) })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// The HTTP client, for the requests that are not API methods (Long Poll's check).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// Any method, with retries as for an idempotent method. Returns VK's `response`.
    pub async fn call_raw(
        &self,
        token: &AccessToken,
        method: &str,
        params: &Params,
    ) -> Result<serde_json::Value, Error> {
        self.call_with(token, method, params, Idempotency::Idempotent).await
    }

    /// Any method, typed.
    pub async fn call<T: DeserializeOwned>(
        &self,
        token: &AccessToken,
        method: &str,
        params: &Params,
        idempotency: Idempotency,
    ) -> Result<T, Error> {
        let value = self.call_with(token, method, params, idempotency).await?;
        serde_json::from_value(value).map_err(|e| Error::Decode(format!("{method}: {e}")))
    }

    async fn call_with(
        &self,
        token: &AccessToken,
        method: &str,
        params: &Params,
        idempotency: Idempotency,
    ) -> Result<serde_json::Value, Error> {
        let policy = self.inner.cfg.retry;
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            let result = self.call_once(token, method, params).await;
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let may_retry = match idempotency {
                Idempotency::Idempotent => err.is_retryable(),
                Idempotency::NotIdempotent => err.was_not_executed(),
            };
            attempt += 1;
            if !may_retry || attempt >= policy.max_attempts {
                return Err(err);
            }
            let delay = policy.backoff.delay(attempt - 1);
            if started.elapsed() + delay > policy.deadline {
                return Err(err);
            }
            tracing::debug!(method, error = %err, attempt, delay_ms = delay.as_millis() as u64, "retrying VK call");
            tokio::time::sleep(delay).await;
        }
    }

    async fn call_once(&self, token: &AccessToken, method: &str, params: &Params) -> Result<serde_json::Value, Error> {
        let inner = &*self.inner;
        let per_second = match token.kind {
            TokenKind::User => inner.cfg.user_per_second,
            TokenKind::Community => inner.cfg.community_per_second,
        };
        let key = inner.limiter.key_for(token.value.expose_secret());
        inner.limiter.acquire(key, per_second).await;

        let mut url = inner.cfg.api_url.clone();
        url.path_segments_mut()
            .map_err(|_| Error::Network("the API URL cannot take a path".into()))?
            .pop_if_empty()
            .extend(["method", method]);
        let mut form: Vec<(&str, &str)> = params.iter().collect();
        form.push(("access_token", token.value.expose_secret()));
        form.push(("v", &inner.cfg.version));
        let started = Instant::now();
        let result = async {
            let response = inner.http.post(url).form(&form).send().await.map_err(Error::from_reqwest)?;
            let status = response.status();
            let body = response.bytes().await.map_err(Error::from_reqwest)?;
            decode_envelope(status.as_u16(), &body)
        }
        .await;
        if let Some(observer) = &inner.cfg.observer {
            observer.observe(method, CallOutcome::of(&result), started.elapsed());
        }
        result
    }

    // ---- groups ----

    /// `groups.get` with `extended=1` (user token with `groups`).
    pub async fn groups_get(&self, token: &AccessToken, filter: &[&str]) -> Result<GroupList, Error> {
        let params = Params::new().add("extended", 1).list("filter", filter).add("count", 1000);
        self.call(token, "groups.get", &params, Idempotency::Idempotent).await
    }

    /// `groups.getById` for ids or screen names; with a community token and no ids, that token's community.
    pub async fn groups_get_by_id(&self, token: &AccessToken, ids: &[&str]) -> Result<Vec<Group>, Error> {
        let mut params = Params::new().add("fields", "photo_100,screen_name,admin_level,is_admin");
        if !ids.is_empty() {
            params = params.list("group_ids", ids);
        }
        let by_id: GroupsById = self.call(token, "groups.getById", &params, Idempotency::Idempotent).await?;
        Ok(by_id.groups)
    }

    /// Every manager of the community: `groups.getMembers(group_id, filter=managers)`, page by page (1000 a page,
    /// the method's `count` maximum in the schema). The schema allows user, community and service tokens; whether
    /// VK answers a community token here is not documented, so a caller must be ready for a refusal.
    pub async fn groups_get_managers(&self, token: &AccessToken, group_id: GroupId) -> Result<Vec<Manager>, Error> {
        const PAGE: i64 = 1000;
        let mut all = Vec::new();
        loop {
            let params = Params::new()
                .add("group_id", group_id)
                .add("filter", "managers")
                .add("offset", all.len())
                .add("count", PAGE);
            let page: Managers = self.call(token, "groups.getMembers", &params, Idempotency::Idempotent).await?;
            let got = page.items.len();
            all.extend(page.items);
            if got == 0 || all.len() as i64 >= page.count {
                return Ok(all);
            }
        }
    }

    /// `groups.getTokenPermissions` (community token).
    pub async fn groups_get_token_permissions(&self, token: &AccessToken) -> Result<TokenPermissions, Error> {
        self.call(token, "groups.getTokenPermissions", &Params::new(), Idempotency::Idempotent).await
    }

    /// `groups.getCallbackConfirmationCode`.
    pub async fn groups_get_callback_confirmation_code(
        &self,
        token: &AccessToken,
        group_id: GroupId,
    ) -> Result<SecretString, Error> {
        #[derive(Deserialize)]
        struct Code {
            code: String,
        }
        let params = Params::new().add("group_id", group_id);
        let code: Code =
            self.call(token, "groups.getCallbackConfirmationCode", &params, Idempotency::Idempotent).await?;
        Ok(SecretString::from(code.code))
    }

    /// `groups.getCallbackServers`.
    pub async fn groups_get_callback_servers(
        &self,
        token: &AccessToken,
        group_id: GroupId,
    ) -> Result<Vec<CallbackServer>, Error> {
        let params = Params::new().add("group_id", group_id);
        let servers: CallbackServers =
            self.call(token, "groups.getCallbackServers", &params, Idempotency::Idempotent).await?;
        Ok(servers.items)
    }

    /// `groups.addCallbackServer` → the new server's id. Not retried unless VK surely did not run it.
    pub async fn groups_add_callback_server(
        &self,
        token: &AccessToken,
        group_id: GroupId,
        url: &str,
        title: &str,
        secret_key: Option<&SecretString>,
    ) -> Result<i64, Error> {
        #[derive(Deserialize)]
        struct Added {
            server_id: i64,
        }
        check_server_params(title, secret_key)?;
        let params = Params::new()
            .add("group_id", group_id)
            .add("url", url)
            .add("title", title)
            .opt("secret_key", secret_key.map(|s| s.expose_secret()));
        let added: Added = self.call(token, "groups.addCallbackServer", &params, Idempotency::NotIdempotent).await?;
        Ok(added.server_id)
    }

    /// `groups.editCallbackServer`.
    pub async fn groups_edit_callback_server(
        &self,
        token: &AccessToken,
        group_id: GroupId,
        server_id: i64,
        url: &str,
        title: &str,
        secret_key: Option<&SecretString>,
    ) -> Result<(), Error> {
        check_server_params(title, secret_key)?;
        let params = Params::new()
            .add("group_id", group_id)
            .add("server_id", server_id)
            .add("url", url)
            .add("title", title)
            .opt("secret_key", secret_key.map(|s| s.expose_secret()));
        self.call_ok(token, "groups.editCallbackServer", &params).await
    }

    /// `groups.deleteCallbackServer`.
    pub async fn groups_delete_callback_server(
        &self,
        token: &AccessToken,
        group_id: GroupId,
        server_id: i64,
    ) -> Result<(), Error> {
        let params = Params::new().add("group_id", group_id).add("server_id", server_id);
        self.call_ok(token, "groups.deleteCallbackServer", &params).await
    }

    /// `groups.setCallbackSettings`: the API version and every event in `events` switched on; `off` switched off.
    pub async fn groups_set_callback_settings(
        &self,
        token: &AccessToken,
        group_id: GroupId,
        server_id: i64,
        api_version: &str,
        on: &[&str],
        off: &[&str],
    ) -> Result<(), Error> {
        let mut params =
            Params::new().add("group_id", group_id).add("server_id", server_id).add("api_version", api_version);
        for event in on {
            params = params.flag(event, true);
        }
        for event in off.iter().filter(|e| !on.contains(e)) {
            params = params.flag(event, false);
        }
        self.call_ok(token, "groups.setCallbackSettings", &params).await
    }

    /// `groups.getCallbackSettings`.
    pub async fn groups_get_callback_settings(
        &self,
        token: &AccessToken,
        group_id: GroupId,
        server_id: i64,
    ) -> Result<CallbackSettings, Error> {
        let params = Params::new().add("group_id", group_id).add("server_id", server_id);
        self.call(token, "groups.getCallbackSettings", &params, Idempotency::Idempotent).await
    }

    // ---- replies ----

    /// `messages.send` to one peer → the message id. `random_id` makes a repeat a no-op at VK.
    pub async fn messages_send(
        &self,
        token: &AccessToken,
        peer_id: i64,
        random_id: i32,
        message: &str,
    ) -> Result<i64, Error> {
        if message.is_empty() {
            return Err(Error::InvalidParam { name: "message", reason: "must not be empty".into() });
        }
        if message.chars().count() > MAX_MESSAGE_CHARS {
            return Err(Error::InvalidParam {
                name: "message",
                reason: format!("longer than {MAX_MESSAGE_CHARS} characters"),
            });
        }
        let params = Params::new().add("peer_id", peer_id).add("random_id", random_id).add("message", message);
        self.call(token, "messages.send", &params, Idempotency::Idempotent).await
    }

    /// `messages.isMessagesFromGroupAllowed`: whether the community may write to the user now (user or community
    /// token, https://dev.vk.com/ru/method/messages.isMessagesFromGroupAllowed).
    pub async fn messages_is_allowed_from_group(
        &self,
        token: &AccessToken,
        group_id: GroupId,
        user_id: UserId,
    ) -> Result<bool, Error> {
        #[derive(Deserialize)]
        struct Allowed {
            #[serde(deserialize_with = "crate::types::bool_int")]
            is_allowed: bool,
        }
        let params = Params::new().add("group_id", group_id).add("user_id", user_id);
        let answer: Allowed =
            self.call(token, "messages.isMessagesFromGroupAllowed", &params, Idempotency::Idempotent).await?;
        Ok(answer.is_allowed)
    }

    /// `wall.createComment` as the community, replying to a comment. `guid` makes a repeat a no-op at VK.
    pub async fn wall_create_comment(
        &self,
        token: &AccessToken,
        reply: &CommentReply<'_>,
    ) -> Result<CreatedComment, Error> {
        if reply.message.is_empty() {
            return Err(Error::InvalidParam { name: "message", reason: "must not be empty".into() });
        }
        let params = Params::new()
            .add("owner_id", reply.owner_id)
            .add("post_id", reply.post_id)
            .add("from_group", reply.from_group)
            .opt("reply_to_comment", reply.reply_to_comment)
            .add("message", reply.message)
            .add("guid", reply.guid);
        self.call(token, "wall.createComment", &params, Idempotency::Idempotent).await
    }

    /// `users.get`.
    pub async fn users_get(&self, token: &AccessToken, ids: &[UserId]) -> Result<Vec<User>, Error> {
        let params = Params::new().list("user_ids", ids).add("fields", "photo_100");
        self.call(token, "users.get", &params, Idempotency::Idempotent).await
    }

    pub(crate) async fn call_ok(&self, token: &AccessToken, method: &str, params: &Params) -> Result<(), Error> {
        let value: serde_json::Value = self.call(token, method, params, Idempotency::Idempotent).await?;
        match value.as_i64() {
            Some(1) => Ok(()),
            _ => Err(Error::Decode(format!("{method}: expected 1, got {value}"))),
        }
    }
}

/// A reply to a wall comment.
#[derive(Debug, Clone)]
pub struct CommentReply<'a> {
    /// The wall's owner (negative for a community).
    pub owner_id: i64,
    pub post_id: i64,
    /// The community id to post as.
    pub from_group: i64,
    pub reply_to_comment: Option<i64>,
    pub message: &'a str,
    pub guid: &'a str,
}

fn check_server_params(title: &str, secret_key: Option<&SecretString>) -> Result<(), Error> {
    if title.is_empty() || title.chars().count() > MAX_SERVER_TITLE_CHARS {
        return Err(Error::InvalidParam {
            name: "title",
            reason: format!("must be 1 to {MAX_SERVER_TITLE_CHARS} characters"),
        });
    }
    if let Some(secret) = secret_key {
        let secret = secret.expose_secret();
        if secret.chars().count() > MAX_SECRET_KEY_CHARS {
            return Err(Error::InvalidParam {
                name: "secret_key",
                reason: format!("longer than {MAX_SECRET_KEY_CHARS} characters"),
            });
        }
        if !secret.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::InvalidParam { name: "secret_key", reason: "must be latin letters and digits".into() });
        }
    }
    Ok(())
}

/// Reads VK's `{"response": …}` / `{"error": …}` envelope.
pub(crate) fn decode_envelope(status: u16, body: &[u8]) -> Result<serde_json::Value, Error> {
    #[derive(Deserialize)]
    struct Envelope {
        response: Option<serde_json::Value>,
        error: Option<WireError>,
    }
    #[derive(Deserialize)]
    struct WireError {
        error_code: i64,
        #[serde(default)]
        error_msg: String,
        #[serde(default)]
        request_params: Vec<WireParam>,
    }
    #[derive(Deserialize)]
    struct WireParam {
        key: String,
        #[serde(default)]
        value: serde_json::Value,
    }
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(_) if !(200..300).contains(&status) => return Err(Error::Http(status)),
        Err(e) => return Err(Error::Decode(format!("not VK's envelope: {e}"))),
    };
    if let Some(err) = envelope.error {
        let request_params = err
            .request_params
            .into_iter()
            .filter(|p| !is_secret_param(&p.key))
            .map(|p| {
                let value = match p.value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (p.key, value)
            })
            .collect();
        return Err(Error::Api(ApiError { code: err.error_code, message: err.error_msg, request_params }));
    }
    if !(200..300).contains(&status) {
        return Err(Error::Http(status));
    }
    envelope.response.ok_or_else(|| Error::Decode("neither response nor error".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_envelope_becomes_an_api_error_without_secrets() {
        let body = br#"{"error":{"error_code":100,"error_msg":"One of the parameters specified was missing or invalid: title should be shorter","request_params":[{"key":"method","value":"groups.addCallbackServer"},{"key":"access_token","value":"vk1.a.SECRET"},{"key":"secret_key","value":"s3cr3t"},{"key":"group_id","value":"1001"}]}}"#;
        let err = decode_envelope(200, body).unwrap_err();
        let Error::Api(api) = &err else { panic!("{err:?}") };
        assert_eq!(api.code, 100);
        assert_eq!(
            api.request_params,
            vec![("method".into(), "groups.addCallbackServer".into()), ("group_id".into(), "1001".into())]
        );
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("SECRET") && !shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn http_errors_without_an_envelope_are_http_errors() {
        assert!(matches!(decode_envelope(502, b"<html>bad gateway</html>"), Err(Error::Http(502))));
        assert!(matches!(decode_envelope(200, b"<html>"), Err(Error::Decode(_))));
        assert!(matches!(decode_envelope(200, b"{}"), Err(Error::Decode(_))));
        assert_eq!(decode_envelope(200, br#"{"response":1}"#).unwrap(), serde_json::json!(1));
    }

    #[test]
    fn server_params_are_checked_before_sending() {
        assert!(check_server_params("vkhook", None).is_ok());
        assert!(check_server_params("fourteen chars", None).is_ok());
        let err = check_server_params("fifteen chars!!", None).unwrap_err();
        assert!(matches!(err, Error::InvalidParam { name: "title", .. }));
        let long = SecretString::from("a".repeat(51));
        assert!(matches!(
            check_server_params("vkhook", Some(&long)),
            Err(Error::InvalidParam { name: "secret_key", .. })
        ));
        let ok = SecretString::from("a".repeat(50));
        assert!(check_server_params("vkhook", Some(&ok)).is_ok());
    }

    #[test]
    fn a_token_debug_shows_no_value() {
        let token = AccessToken::community("vk1.a.very-secret");
        assert_eq!(format!("{token:?}"), "AccessToken(Community, [redacted])");
    }
}
