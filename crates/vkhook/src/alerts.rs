//! Telling the admin who connected a community that something needs them: its bot paused on a dead key, a forwarding
//! endpoint disabled, VK's status for our server `failed`. Once when it starts, again at most every
//! [`AlertSettings::remind_every`] (a day) while it lasts; two instances that see the same trouble tell once (the
//! store's conditional writes decide).
//!
//! Two ways, each recorded with how it went (the «Уведомления» card shows them):
//! - a message from the community (`messages.send` with the community key, to the admin who connected it). VK
//!   delivers it only if the admin allowed messages from the community (901/902 otherwise, https://dev.vk.com/ru/method/messages.send).
//!   When the trouble is the key itself (error 5, https://dev.vk.com/ru/reference/errors), there is no key to send with: that alert
//!   goes by e-mail only.
//! - an e-mail through `VKHOOK_SMTP_URL`, to the address an administrator gave on the card — once they confirmed it
//!   by the link sent there ([`Alerts::request_email`]): nothing else ever goes to an address nobody confirmed.
//!
//! Bounded, whoever triggers them: at most one telling per community and kind a reminder period (a day),
//! [`DAILY_PER_COMMUNITY`] per community and [`DAILY_PER_RECIPIENT`] per admin or address in the same period, counted
//! over what was sent (resolving an alert does not reset it). The words are vkhook's: an endpoint is named by its host, never by the free text an admin gave
//! it.
//!
//! Callers say [`Alerts::raise`] or [`Alerts::resolve`]; sending happens on a task of its own and never fails them.

use std::sync::Arc;
use std::time::Duration;
use vk::GroupId;
use vk::UserId;

use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use crate::credentials::Credentials;
use crate::dedup::random_id_of;
use crate::i18n::{fill, Lang, Msg};
use crate::model::{AlertKind, AlertOutcome, DisabledReason, Reason};
use crate::store::{now_ms, AlertRow, Store, StoreResult};
use crate::urls::PublicUrl;

/// How long VK's word on whether the community may write to its admin is kept (the card asks at most daily).
const PERMISSION_FRESH_MS: i64 = 24 * 3600 * 1000;
const DAY_MS: i64 = 24 * 3600 * 1000;
/// Tellings of one community, any kind, a reminder period (a day).
pub const DAILY_PER_COMMUNITY: i64 = 3;
/// Tellings to one admin or one address, any community, a reminder period (a day).
pub const DAILY_PER_RECIPIENT: i64 = 10;
/// A new confirmation link goes out at most this often per community.
const CONFIRMATION_GAP_MS: i64 = 10 * 60 * 1000;
/// A confirmation link works this long.
const CONFIRMATION_VALID_MS: i64 = 2 * DAY_MS;

/// How alerts go out.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// `smtp://host:port`, `smtps://user:password@host`, … (lettre's URL form); none: no e-mail.
    pub smtp_url: Option<SecretString>,
    /// The `From` of alert e-mails.
    pub smtp_from: String,
    /// While trouble lasts, the admin is reminded this often at most.
    pub remind_every: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            smtp_url: None,
            smtp_from: "vkhook <vkhook@localhost>".into(),
            remind_every: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Clone)]
pub struct Alerts {
    store: Store,
    credentials: Credentials,
    vk: vk::Client,
    public_url: PublicUrl,
    mailer: Option<Arc<AsyncSmtpTransport<Tokio1Executor>>>,
    settings: Arc<AlertSettings>,
}

impl Alerts {
    /// `serve` checked `smtp_url` at start-up ([`mailer`]); one that still does not read means no e-mail, said
    /// in the log.
    pub fn new(
        store: Store,
        credentials: Credentials,
        vk: vk::Client,
        public_url: PublicUrl,
        settings: AlertSettings,
    ) -> Alerts {
        let mailer = settings.smtp_url.as_ref().and_then(|url| match mailer(url) {
            Ok(m) => Some(Arc::new(m)),
            Err(e) => {
                tracing::error!(error = %e, "alert e-mails are off");
                None
            }
        });
        Alerts { store, credentials, vk, public_url, mailer, settings: Arc::new(settings) }
    }

    pub fn email_configured(&self) -> bool {
        self.mailer.is_some()
    }

    /// Trouble started (or is seen again): the admin is told, unless an open alert of the same kind and subject
    /// already told them.
    pub fn raise(&self, group_id: GroupId, kind: AlertKind, subject: &str, detail: &str) {
        let (this, subject, detail) = (self.clone(), subject.to_owned(), detail.to_owned());
        tokio::spawn(async move {
            let result = async {
                if let Some(id) = this.store.open_alert(group_id, kind, &subject, &detail, now_ms()).await? {
                    this.tell(id).await?;
                }
                StoreResult::Ok(())
            };
            if let Err(e) = result.await {
                tracing::warn!(group_id = group_id.0, %kind, error = %e, "could not record an alert");
            }
        });
    }

    /// The trouble is over: the next time it starts, the admin is told again.
    pub async fn resolve(&self, group_id: GroupId, kind: AlertKind, subject: Option<&str>) -> StoreResult<()> {
        self.store.resolve_alerts(group_id, kind, subject, now_ms()).await?;
        Ok(())
    }

    /// Reminds about what still lasts (the housekeeping loop calls this).
    pub async fn remind(&self) -> StoreResult<()> {
        for id in self.store.alerts_to_remind(self.remind_before()).await? {
            self.tell(id).await?;
        }
        Ok(())
    }

    fn remind_before(&self) -> i64 {
        now_ms() - self.settings.remind_every.as_millis() as i64
    }

    /// Tells the admin about alert `id`, if this instance wins the right to now and the daily limits allow.
    async fn tell(&self, id: i64) -> StoreResult<()> {
        let now = now_ms();
        let Some(alert) = self.store.claim_alert_send(id, now, self.remind_before()).await? else { return Ok(()) };
        let admin = self.store.community_settings(GroupId(alert.group_id)).await?.and_then(|s| s.connected_by);
        let address = self.store.alert_email(GroupId(alert.group_id)).await?;
        let window = self.settings.remind_every.as_millis() as i64;
        let told = self.store.alert_tellings_since(
            GroupId(alert.group_id),
            alert.kind,
            admin,
            address.as_deref(),
            now - window,
        );
        let told = told.await?;
        if told.same_kind >= 1 || told.community >= DAILY_PER_COMMUNITY {
            tracing::info!(group_id = alert.group_id, kind = %alert.kind, "alert held back: the community's daily limit");
            let limited = Some(AlertOutcome::Limited);
            return self.store.record_alert_results(id, limited, None, limited).await;
        }
        let t = Lang::Ru.msg();
        let text = self.text(t, &alert).await?;
        let (vk, vk_reason) = match admin {
            Some(_) if told.user >= DAILY_PER_RECIPIENT => (AlertOutcome::Limited, None),
            _ => self.by_vk(&alert, admin, &text).await,
        };
        // The e-mail goes whatever VK did with the message: where VK refused it, it is the way that arrives.
        let email = match &address {
            Some(_) if told.email >= DAILY_PER_RECIPIENT => AlertOutcome::Limited,
            _ => self.by_email(t, &alert, address.as_deref(), &text).await,
        };
        tracing::info!(group_id = alert.group_id, kind = %alert.kind, %vk, ?vk_reason, %email, "admin told");
        let vk_to = admin.filter(|_| vk == AlertOutcome::Sent);
        let email_to = address.as_deref().filter(|_| email == AlertOutcome::Sent);
        if vk_to.is_some() || email_to.is_some() {
            self.store.record_alert_telling(&alert, vk_to, email_to, now).await?;
        }
        self.store.record_alert_results(id, Some(vk), vk_reason, Some(email)).await
    }

    /// The admin gave `email` for the community's alerts: a confirmation link goes there, and until it is followed
    /// nothing else does (anyone with a community could otherwise make this server mail any address). False when a
    /// link went out less than ten minutes ago, or e-mail is off.
    pub async fn request_email(&self, group_id: GroupId, email: &str) -> StoreResult<bool> {
        let Some(mailer) = &self.mailer else { return Ok(false) };
        let token = vk::oauth::random_urlsafe(32);
        let hash = crate::accounts::hash_hex(&token);
        if !self.store.request_alert_email(group_id, email, &hash, now_ms(), CONFIRMATION_GAP_MS).await? {
            return Ok(false);
        }
        let t = Lang::Ru.msg();
        let name = self.store.community_name(group_id).await?.unwrap_or_default();
        let link = self.public_url.join(&format!("{}?token={token}", crate::urls::ALERT_CONFIRM_PATH));
        let body = fill(t.alerts_confirm_body, &[("name", &name), ("link", &link)]);
        let message = (|| {
            lettre::Message::builder()
                .from(self.settings.smtp_from.parse().ok()?)
                .to(email.parse().ok()?)
                .subject(fill(t.alerts_confirm_subject, &[("name", &name)]))
                .header(lettre::message::header::ContentType::TEXT_PLAIN)
                .body(body)
                .ok()
        })();
        match message {
            Some(message) => {
                if let Err(e) = mailer.send(message).await {
                    tracing::warn!(group_id = group_id.0, error = %e, "the confirmation e-mail was not sent");
                }
            }
            None => tracing::warn!(group_id = group_id.0, "the confirmation e-mail could not be written"),
        }
        Ok(true)
    }

    /// The confirmation link with `token` was followed: the community it was for, whose alerts now go to that
    /// address; none for an unknown, used or expired link.
    pub async fn confirm_email(&self, token: &str) -> StoreResult<Option<i64>> {
        let hash = crate::accounts::hash_hex(token);
        self.store.confirm_alert_email(&hash, now_ms() - CONFIRMATION_VALID_MS).await
    }

    /// Whether a message from the community would reach the admin who connected it, before any alert is sent:
    /// `messages.isMessagesFromGroupAllowed` (https://dev.vk.com/ru/method/messages.isMessagesFromGroupAllowed),
    /// asked at most once a day and kept with the person's own `message_allow` / `message_deny` events, which
    /// update it as they are stored. `None`: nobody to tell, or VK cannot say now.
    pub async fn vk_reachable(&self, group_id: GroupId) -> StoreResult<Option<bool>> {
        let Some(user_id) = self.store.community_settings(group_id).await?.and_then(|s| s.connected_by) else {
            return Ok(None);
        };
        let now = now_ms();
        if let Some((allowed, at)) = self.store.message_permission(group_id, UserId(user_id)).await? {
            if now - at < PERMISSION_FRESH_MS {
                return Ok(Some(allowed));
            }
        }
        let Some(key) = self.credentials.community_key(group_id).await? else { return Ok(None) };
        match self.vk.messages_is_allowed_from_group(&key.token, group_id, vk::UserId(user_id)).await {
            Ok(allowed) => {
                self.store.set_message_permission(group_id, UserId(user_id), allowed, now).await?;
                Ok(Some(allowed))
            }
            Err(e) => {
                tracing::info!(group_id = group_id.0, error = %e, "VK did not say whether the community may write to its admin");
                Ok(None)
            }
        }
    }

    async fn text(&self, t: &'static Msg, alert: &AlertRow) -> StoreResult<String> {
        let name = self.store.community_name(GroupId(alert.group_id)).await?.unwrap_or_default();
        let url = self.public_url.join(&format!("/communities/{}", alert.group_id));
        let body = match alert.kind {
            AlertKind::BotPaused => fill(t.alert_bot_paused, &[("name", &name), ("url", &url)]),
            AlertKind::VkFailed => fill(t.alert_vk_failed, &[("name", &name), ("url", &url)]),
            AlertKind::EndpointDisabled => {
                let why = match DisabledReason::parse(alert.detail.rsplit('\n').next().unwrap_or_default()) {
                    Some(DisabledReason::Gone) => t.alert_why_gone,
                    _ => t.alert_why_failing,
                };
                // The endpoint's host (`Forwarding::disabled` writes it), never the name an admin typed.
                let endpoint = alert.detail.split('\n').next().unwrap_or_default();
                let url = format!("{url}/endpoints/{}", alert.subject);
                fill(t.alert_endpoint_disabled, &[("name", &name), ("endpoint", endpoint), ("why", why), ("url", &url)])
            }
        };
        Ok(if alert.sends > 1 { format!("{}{body}", t.alert_reminder) } else { body })
    }

    /// A message from the community to the admin who connected it, with the `random_id` reserved for this telling
    /// from the community's counter (`dedup`), so a repeated call never sends twice. A refusal VK states is kept
    /// with its reason (`Reason::message_refusal`).
    async fn by_vk(&self, alert: &AlertRow, admin: Option<i64>, text: &str) -> (AlertOutcome, Option<Reason>) {
        if alert.kind == AlertKind::BotPaused {
            return (AlertOutcome::NoKey, None); // the key is what VK refused
        }
        let (Some(admin), Ok(Some(key))) = (admin, self.credentials.community_key(GroupId(alert.group_id)).await)
        else {
            return (AlertOutcome::NoKey, None);
        };
        let Some(counter) = alert.random_id else { return (AlertOutcome::Failed, None) };
        match self.vk.messages_send(&key.token, admin, random_id_of(counter), text).await {
            Ok(_) => (AlertOutcome::Sent, None),
            Err(e) if e.needs_reauth() => (AlertOutcome::NoKey, None),
            Err(e) => match Reason::message_refusal(&e) {
                Some(reason) => {
                    tracing::info!(group_id = alert.group_id, %reason, "alert: VK refused the message; e-mail goes");
                    (AlertOutcome::Refused, Some(reason))
                }
                None => {
                    tracing::warn!(group_id = alert.group_id, error = %e, "alert: VK did not take the message");
                    (AlertOutcome::Failed, None)
                }
            },
        }
    }

    async fn by_email(&self, t: &'static Msg, alert: &AlertRow, to: Option<&str>, text: &str) -> AlertOutcome {
        let Some(mailer) = &self.mailer else { return AlertOutcome::NotConfigured };
        let Some(to) = to else { return AlertOutcome::NoAddress };
        let name = self.store.community_name(GroupId(alert.group_id)).await.ok().flatten().unwrap_or_default();
        let message = (|| {
            lettre::Message::builder()
                .from(self.settings.smtp_from.parse().ok()?)
                .to(to.parse().ok()?)
                .subject(fill(t.alert_subject, &[("name", &name)]))
                .header(lettre::message::header::ContentType::TEXT_PLAIN)
                .body(text.to_owned())
                .ok()
        })();
        let Some(message) = message else { return AlertOutcome::Failed };
        match mailer.send(message).await {
            Ok(_) => AlertOutcome::Sent,
            Err(e) => {
                tracing::warn!(group_id = alert.group_id, error = %e, "alert: the e-mail was not sent");
                AlertOutcome::Failed
            }
        }
    }
}

/// The SMTP transport of `VKHOOK_SMTP_URL` (its error never shows the URL, which may hold a password).
pub fn mailer(url: &SecretString) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
        .map_err(|_| "VKHOOK_SMTP_URL is not an smtp:// or smtps:// URL".to_owned())?;
    Ok(transport.timeout(Some(Duration::from_secs(20))).build())
}

/// Whether `text` looks like an e-mail address lettre can send to.
pub fn valid_email(text: &str) -> bool {
    text.len() <= 254 && text.parse::<lettre::Address>().is_ok()
}
