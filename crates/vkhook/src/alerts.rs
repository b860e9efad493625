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
//! - an e-mail through `VKHOOK_SMTP_URL`, to the address an administrator gave on the card.
//!
//! Callers say [`Alerts::raise`] or [`Alerts::resolve`]; sending happens on a task of its own and never fails them.

use std::sync::Arc;
use std::time::Duration;

use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use crate::config::PublicUrl;
use crate::credentials::Credentials;
use crate::dedup::random_id_of;
use crate::i18n::{fill, Lang, Msg};
use crate::model::{AlertKind, AlertOutcome, DisabledReason, Reason};
use crate::store::{now_ms, AlertRow, Store, StoreResult};

/// How long VK's word on whether the community may write to its admin is kept (the card asks at most daily).
const PERMISSION_FRESH_MS: i64 = 24 * 3600 * 1000;

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
    pub fn raise(&self, group_id: i64, kind: AlertKind, subject: &str, detail: &str) {
        let (this, subject, detail) = (self.clone(), subject.to_owned(), detail.to_owned());
        tokio::spawn(async move {
            let result = async {
                if let Some(id) = this.store.open_alert(group_id, kind, &subject, &detail, now_ms()).await? {
                    this.tell(id).await?;
                }
                StoreResult::Ok(())
            };
            if let Err(e) = result.await {
                tracing::warn!(group_id, %kind, error = %e, "could not record an alert");
            }
        });
    }

    /// The trouble is over: the next time it starts, the admin is told again.
    pub async fn resolve(&self, group_id: i64, kind: AlertKind, subject: Option<&str>) -> StoreResult<()> {
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

    /// Tells the admin about alert `id`, if this instance wins the right to now.
    async fn tell(&self, id: i64) -> StoreResult<()> {
        let Some(alert) = self.store.claim_alert_send(id, now_ms(), self.remind_before()).await? else { return Ok(()) };
        let t = Lang::Ru.msg();
        let text = self.text(t, &alert).await?;
        let (vk, vk_reason) = self.by_vk(&alert, &text).await;
        // The e-mail goes whatever VK did with the message: where VK refused it, it is the way that arrives.
        let email = self.by_email(t, &alert, &text).await;
        tracing::info!(group_id = alert.group_id, kind = %alert.kind, %vk, ?vk_reason, %email, "admin told");
        self.store.record_alert_results(id, Some(vk), vk_reason, Some(email)).await
    }

    /// Whether a message from the community would reach the admin who connected it, before any alert is sent:
    /// `messages.isMessagesFromGroupAllowed` (https://dev.vk.com/ru/method/messages.isMessagesFromGroupAllowed),
    /// asked at most once a day and kept with the person's own `message_allow` / `message_deny` events, which
    /// update it as they are stored. `None`: nobody to tell, or VK cannot say now.
    pub async fn vk_reachable(&self, group_id: i64) -> StoreResult<Option<bool>> {
        let Some(user_id) = self.store.community_settings(group_id).await?.and_then(|s| s.connected_by) else {
            return Ok(None);
        };
        let now = now_ms();
        if let Some((allowed, at)) = self.store.message_permission(group_id, user_id).await? {
            if now - at < PERMISSION_FRESH_MS {
                return Ok(Some(allowed));
            }
        }
        let Some(key) = self.credentials.community_key(group_id).await? else { return Ok(None) };
        match self.vk.messages_is_allowed_from_group(&key.token, vk::GroupId(group_id), vk::UserId(user_id)).await {
            Ok(allowed) => {
                self.store.set_message_permission(group_id, user_id, allowed, now).await?;
                Ok(Some(allowed))
            }
            Err(e) => {
                tracing::info!(group_id, error = %e, "VK did not say whether the community may write to its admin");
                Ok(None)
            }
        }
    }

    async fn text(&self, t: &'static Msg, alert: &AlertRow) -> StoreResult<String> {
        let name = self.store.community_name(alert.group_id).await?.unwrap_or_default();
        let url = self.public_url.join(&format!("/communities/{}", alert.group_id));
        let body = match alert.kind {
            AlertKind::BotPaused => fill(t.alert_bot_paused, &[("name", &name), ("url", &url)]),
            AlertKind::VkFailed => fill(t.alert_vk_failed, &[("name", &name), ("url", &url)]),
            AlertKind::EndpointDisabled => {
                let why = match DisabledReason::parse(alert.detail.rsplit('\n').next().unwrap_or_default()) {
                    Some(DisabledReason::Gone) => t.alert_why_gone,
                    _ => t.alert_why_failing,
                };
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
    async fn by_vk(&self, alert: &AlertRow, text: &str) -> (AlertOutcome, Option<Reason>) {
        if alert.kind == AlertKind::BotPaused {
            return (AlertOutcome::NoKey, None); // the key is what VK refused
        }
        let admin = match self.store.community_settings(alert.group_id).await {
            Ok(Some(s)) => s.connected_by,
            _ => None,
        };
        let (Some(admin), Ok(Some(key))) = (admin, self.credentials.community_key(alert.group_id).await) else {
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

    async fn by_email(&self, t: &'static Msg, alert: &AlertRow, text: &str) -> AlertOutcome {
        let Some(mailer) = &self.mailer else { return AlertOutcome::NotConfigured };
        let Ok(Some(to)) = self.store.alert_email(alert.group_id).await else { return AlertOutcome::NoAddress };
        let name = self.store.community_name(alert.group_id).await.ok().flatten().unwrap_or_default();
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
