//! Forwarding events to the admin's own endpoints: the contract is `docs/forwarding.md`.
//!
//! - [`Forwarding`] owns the endpoints' decisions: adding one (its URL checked by [`target`]), its signing secret
//!   (made here, sealed in the vault, shown only to administrators), rotating it, the test event, replays.
//! - Which events an endpoint gets is decided at ingest, by the database, in the statement that stores the event
//!   (the `inbox_forward` trigger): a delivery per enabled endpoint that wants the type.
//! - [`deliver`] sends a claimed batch: signed ([`signing`], Standard Webhooks), judged ([`attempt`]), results
//!   recorded through the group-commit writer.

/// The delivery contract (`docs/forwarding.md`), here so that its Rust verification example is compiled as a doctest.
#[doc = include_str!("../../../../docs/forwarding.md")]
pub mod contract {}

pub mod attempt;
pub mod deliver;
pub mod signing;
pub mod target;

use std::sync::Arc;
use std::time::Duration;
use vk::GroupId;

use secrecy::SecretString;
use tokio::sync::Notify;
use url::Url;

use crate::inbox::Writer;
use crate::store::{now_ms, EndpointRow, NewEndpoint, Store, StoreError, StoreResult};
use crate::vault::{Sealed, Slot, Vault};

use signing::SigningKey;
use target::Refused;

/// How events are forwarded to the admins' endpoints (docs/forwarding.md).
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    /// Where deliveries may go: `serve` refuses loopback and private addresses and plain http, unless
    /// `VKHOOK_FORWARD_ALLOW_LOOPBACK_HTTP` says otherwise; the demo and tests allow loopback http.
    pub policy: target::Policy,
    /// The waits between attempts.
    pub schedule: attempt::Schedule,
    /// How long one attempt may take.
    pub attempt_timeout: Duration,
    /// Requests in flight to one endpoint at most (across instances: one instance sends to an endpoint at a time).
    pub concurrency: usize,
    /// Most deliveries one claim takes for an endpoint.
    pub batch: i64,
    /// An instance holds an endpoint and its claimed deliveries this long; if it dies, others send them after.
    pub lease: Duration,
    /// Endpoints sent to at once by one instance.
    pub endpoints_at_once: usize,
    /// How often an idle sender looks for due deliveries (new events wake it at once).
    pub poll: Duration,
    /// An endpoint failing without a success this long is disabled.
    pub disable_after: Duration,
    /// After «Сменить секрет», the old secret signs too for this long.
    pub previous_secret_window: Duration,
    /// Endpoints one community may have.
    pub max_endpoints: i64,
    /// Endpoints of one community sent to at once (across instances): its share of the senders' slots.
    pub community_share: i64,
    /// How long connecting to an endpoint may take (an attempt may take `attempt_timeout` in all).
    pub connect_timeout: Duration,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        Self {
            policy: target::Policy::default(),
            schedule: attempt::Schedule::default(),
            attempt_timeout: attempt::ATTEMPT_TIMEOUT,
            concurrency: 4,
            batch: 500,
            lease: Duration::from_secs(60),
            endpoints_at_once: 32,
            poll: Duration::from_millis(500),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            previous_secret_window: Duration::from_secs(24 * 3600),
            max_endpoints: 10,
            community_share: 4,
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// Longest endpoint name kept.
pub const MAX_NAME: usize = 100;
/// Longest URL accepted.
pub const MAX_URL: usize = 2000;

/// Why an endpoint was not added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("not a URL")]
    NotUrl,
    #[error("{0}")]
    Refused(#[from] Refused),
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// The community has as many endpoints as it may.
    #[error("the community has {0} endpoints already")]
    TooMany(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the endpoint routes and the sender share. Cheap to clone.
#[derive(Clone)]
pub struct Forwarding {
    store: Store,
    vault: Arc<Vault>,
    writer: Writer,
    client: reqwest::Client,
    settings: Arc<ForwardSettings>,
    wakeup: Arc<Notify>,
    /// Tells the admin when an endpoint is disabled on its own.
    alerts: Option<crate::alerts::Alerts>,
}

impl Forwarding {
    /// `wakeup`: what the receiver notifies when it stored new events.
    pub fn new(
        store: Store,
        vault: Arc<Vault>,
        writer: Writer,
        settings: ForwardSettings,
        wakeup: Arc<Notify>,
    ) -> Forwarding {
        let client = target::delivery_client(settings.policy, settings.connect_timeout, settings.attempt_timeout)
            .expect("a reqwest client with rustls builds");
        Forwarding { store, vault, writer, client, settings: Arc::new(settings), wakeup, alerts: None }
    }

    pub fn with_alerts(mut self, alerts: crate::alerts::Alerts) -> Forwarding {
        self.alerts = Some(alerts);
        self
    }

    /// An endpoint was disabled by what it answered: its admin is told.
    pub(crate) fn disabled(&self, endpoint: &EndpointRow, reason: crate::model::DisabledReason) {
        if let Some(alerts) = &self.alerts {
            // The alert names the endpoint by its host: its name is free text an admin (or an attacker) typed.
            let host = Url::parse(&endpoint.url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
            let detail = format!("{host}\n{reason}");
            alerts.raise(GroupId(endpoint.group_id), crate::model::AlertKind::EndpointDisabled, &endpoint.id, &detail);
        }
    }

    /// «Удалить»: the endpoint, its queue and its attempts; an alert about it is over.
    pub async fn delete(&self, endpoint: &EndpointRow) -> StoreResult<bool> {
        let deleted = self.store.delete_endpoint(GroupId(endpoint.group_id), &endpoint.id).await?;
        self.resolve(endpoint).await?;
        Ok(deleted)
    }

    async fn resolve(&self, endpoint: &EndpointRow) -> StoreResult<()> {
        match &self.alerts {
            Some(alerts) => {
                alerts
                    .resolve(GroupId(endpoint.group_id), crate::model::AlertKind::EndpointDisabled, Some(&endpoint.id))
                    .await
            }
            None => Ok(()),
        }
    }

    pub fn settings(&self) -> &ForwardSettings {
        &self.settings
    }

    /// New events (or a replay) may have made deliveries: the sender looks now.
    pub fn wake(&self) {
        self.wakeup.notify_one();
    }

    pub fn wakeup(&self) -> &Notify {
        &self.wakeup
    }

    /// VK is sending as fast as vkhook stores: forwarding, which can wait (its queue is durable), claims less often
    /// so that ingest keeps its pace.
    pub fn ingest_busy(&self) -> bool {
        self.writer.ingest_busy()
    }

    /// «Добавить адрес»: checks the URL (scheme, and every address its host resolves to), makes the signing secret.
    /// `types` empty: every type.
    pub async fn add(
        &self,
        group_id: GroupId,
        by_user: i64,
        name: &str,
        url: &str,
        types: &[String],
    ) -> Result<EndpointRow, AddError> {
        let url = url.trim();
        if url.len() > MAX_URL {
            return Err(AddError::NotUrl);
        }
        let parsed = Url::parse(url).map_err(|_| AddError::NotUrl)?;
        target::check_target(&parsed, self.settings.policy).await?;
        if let Some(unknown) = types.iter().find(|t| !vk::EVENT_TYPES.contains(&t.as_str())) {
            return Err(AddError::UnknownType(unknown.clone()));
        }
        let id = format!("ep_{}", vk::oauth::random_urlsafe(12));
        let (_, secret) = SigningKey::generate();
        let name: String = name.trim().chars().take(MAX_NAME).collect();
        let endpoint = NewEndpoint {
            secret: self.vault.seal(&Slot::new(Sealed::EndpointSecret, id.as_str()), &secret),
            group_id: group_id.0,
            name: if name.is_empty() { parsed.host_str().unwrap_or_default().to_owned() } else { name },
            url: parsed.to_string(),
            event_types: types.join(","),
            created_by: by_user,
            id,
        };
        if !self.store.add_endpoint(&endpoint, self.settings.max_endpoints).await? {
            return Err(AddError::TooMany(self.settings.max_endpoints));
        }
        let row = self.store.endpoint(group_id, &endpoint.id).await?;
        Ok(row.ok_or(StoreError::Io(std::io::Error::other("the endpoint just added is gone")))?)
    }

    /// The current signing secret (`whsec_…`), for an administrator who asked to see it.
    pub fn reveal_secret(&self, endpoint: &EndpointRow) -> StoreResult<SecretString> {
        self.open(Sealed::EndpointSecret, endpoint, &endpoint.secret)
    }

    fn open(&self, column: Sealed, endpoint: &EndpointRow, sealed: &str) -> StoreResult<SecretString> {
        self.vault.open(&Slot::new(column, endpoint.id.as_str()), sealed).map_err(|_| StoreError::Unreadable {
            column: column.location().2,
            key_id: Vault::key_id_of(sealed).ok().map(str::to_owned),
        })
    }

    /// The keys that sign a delivery now: the current one, and the previous one within its day.
    pub fn signing_keys(&self, endpoint: &EndpointRow, now: i64) -> StoreResult<Vec<SigningKey>> {
        let parse = |s: SecretString| SigningKey::parse(&s).map_err(|e| StoreError::Io(std::io::Error::other(e)));
        let mut keys = vec![parse(self.reveal_secret(endpoint)?)?];
        if let (Some(previous), Some(until)) = (&endpoint.previous_secret, endpoint.previous_secret_until) {
            if until > now {
                keys.push(parse(self.open(Sealed::PreviousEndpointSecret, endpoint, previous)?)?);
            }
        }
        Ok(keys)
    }

    /// «Сменить секрет»: a new secret signs from now on; the old one signs too for a day
    /// ([`ForwardSettings::previous_secret_window`]), so receivers can switch without losing a delivery.
    pub async fn rotate(&self, endpoint: &EndpointRow) -> StoreResult<bool> {
        let old = self.reveal_secret(endpoint)?;
        let (_, new) = SigningKey::generate();
        let id = endpoint.id.as_str();
        let sealed = self.vault.seal(&Slot::new(Sealed::EndpointSecret, id), &new);
        let previous = self.vault.seal(&Slot::new(Sealed::PreviousEndpointSecret, id), &old);
        let until = now_ms() + self.settings.previous_secret_window.as_millis() as i64;
        self.store.rotate_endpoint_secret(GroupId(endpoint.group_id), id, &sealed, &previous, until).await
    }

    /// «Отправить тестовое событие»: a realistic event of `event_type` (its `event_id` begins with `test-`), queued
    /// for this endpoint only, signed and retried like any other.
    pub async fn send_test(&self, endpoint: &EndpointRow, event_type: &str) -> StoreResult<String> {
        let event_id = format!("test-{}", vk::oauth::random_urlsafe(16));
        let body = test_event(GroupId(endpoint.group_id), event_type, &event_id);
        self.store.add_test_delivery(endpoint, &event_id, event_type, &body).await?;
        self.wake();
        Ok(event_id)
    }

    /// «Повторить» one delivery.
    pub async fn replay(&self, endpoint: &EndpointRow, delivery_id: i64) -> StoreResult<bool> {
        let replayed = self.store.replay_delivery(&endpoint.id, delivery_id).await?;
        self.wake();
        Ok(replayed)
    }

    /// «Повторить неудачные».
    pub async fn replay_failed(&self, endpoint: &EndpointRow) -> StoreResult<u64> {
        let n = self.store.replay_failed_deliveries(&endpoint.id).await?;
        self.wake();
        Ok(n)
    }

    /// «Включить» (its queue is sent again) / «Отключить».
    pub async fn set_enabled(&self, endpoint: &EndpointRow, enabled: bool) -> StoreResult<bool> {
        let disabled = (!enabled).then_some(crate::model::DisabledReason::Admin);
        let changed = self.store.set_endpoint_disabled(GroupId(endpoint.group_id), &endpoint.id, disabled).await?;
        if enabled {
            self.resolve(endpoint).await?;
        }
        self.wake();
        Ok(changed)
    }
}

/// The body of a test event: VK's shape (`type`, `object`, `group_id`, `event_id`, `v`) with a realistic object of
/// the type, as VK would send it (vendor/vk-callback-samples).
pub fn test_event(group_id: GroupId, event_type: &str, event_id: &str) -> String {
    let now = now_ms() / 1000;
    let object = match event_type {
        "message_new" | "message_reply" | "message_edit" => {
            let message = serde_json::json!({"date": now, "from_id": 1, "id": 1, "out": 0, "peer_id": 1,
                "text": "Тестовое сообщение от vkhook", "conversation_message_id": 1, "attachments": [],
                "fwd_messages": [], "important": false, "is_hidden": false});
            if event_type == "message_new" {
                serde_json::json!({"message": message, "client_info": {"button_actions": ["text"], "keyboard": true,
                    "inline_keyboard": true, "carousel": true, "lang_id": 0}})
            } else {
                message
            }
        }
        "wall_reply_new" | "wall_reply_edit" => serde_json::json!({"id": 1, "from_id": 1, "date": now,
            "text": "Тестовый комментарий от vkhook", "post_owner_id": group_id.as_owner(), "post_id": 1, "owner_id": group_id.as_owner()}),
        "wall_reply_delete" => {
            serde_json::json!({"owner_id": group_id.as_owner(), "id": 1, "deleter_id": 1, "post_id": 1})
        }
        "wall_post_new" | "wall_repost" => {
            serde_json::json!({"id": 1, "owner_id": group_id.as_owner(), "from_id": group_id.as_owner(),
            "created_by": 1, "date": now, "text": "Тестовая запись от vkhook", "marked_as_ads": 0,
            "post_type": "post", "can_edit": 1, "can_delete": 1})
        }
        "like_add" | "like_remove" => serde_json::json!({"liker_id": 1, "object_type": "post",
            "object_owner_id": group_id.as_owner(), "object_id": 1, "thread_reply_id": 0}),
        "message_allow" => serde_json::json!({"user_id": 1, "key": ""}),
        "message_deny" => serde_json::json!({"user_id": 1}),
        "group_join" => serde_json::json!({"user_id": 1, "join_type": "join"}),
        "group_leave" => serde_json::json!({"user_id": 1, "self": 1}),
        _ => serde_json::json!({}),
    };
    serde_json::json!({"type": event_type, "object": object, "group_id": group_id, "event_id": event_id,
        "v": vk::API_VERSION})
    .to_string()
}
