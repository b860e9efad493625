//! The community's credentials: its key (community token), the callback secrets and the confirmation code.
//!
//! They are sealed in the store and opened only here. The receiver reads the secrets through
//! [`Credentials::callback_secrets`], which caches them; every change made here drops the cached copy, so a changed
//! secret is never served stale by this instance (other instances re-read on a mismatch and after
//! [`CACHE_TTL`]).
//!
//! A value that is stored but does not open (a key missing from `VKHOOK_TOKEN_KEYS`, a restored backup) is never
//! taken for "no value": the receiver then refuses with 503 rather than accept events without a secret.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use vk::GroupId;

use rand::distributions::Alphanumeric;
use rand::Rng;
use secrecy::SecretString;
use vk::AccessToken;

use crate::model::{CommunityStatus, SetupMode};
use crate::store::{now_ms, Store, StoreError, StoreResult};
use crate::vault::{Sealed, Slot, Vault};

/// How long the previous callback secret is still accepted after a rotation. VK retries a failed delivery after
/// 10 s, 3 min, 10 min, 30 min and 1 h (https://dev.vk.com/ru/api/callback/getting-started), about two hours in all, with the body
/// (and the secret) it first built.
pub const PREVIOUS_SECRET_WINDOW: Duration = Duration::from_secs(2 * 3600);

/// How long a cached community is trusted before it is read again.
pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// A community key: the community token and the scopes VK said it has (`groups.getTokenPermissions`).
#[derive(Clone)]
pub struct CommunityKey {
    pub token: AccessToken,
    pub scopes: Vec<String>,
}

impl CommunityKey {
    pub fn has(&self, scope: vk::CommunityScope) -> bool {
        self.scopes.iter().any(|s| s == scope.as_str())
    }
}

/// A stored value that is there but does not open with the configured keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub column: &'static str,
    /// The key id it was sealed with (not secret), when the value says.
    pub key_id: Option<String>,
}

impl From<Unreadable> for StoreError {
    fn from(u: Unreadable) -> Self {
        StoreError::Unreadable { column: u.column, key_id: u.key_id }
    }
}

/// What the receiver checks a request against.
#[derive(Debug)]
pub struct CallbackSecrets {
    /// Known here but not set up (never, or disconnected): VK should drop its server.
    pub disconnected: bool,
    pub secret: Option<SecretString>,
    /// The secret before the last rotation, accepted until `previous_until`.
    pub previous: Option<SecretString>,
    /// Unix ms; `None` with a previous secret only on rows from before the window existed (not accepted).
    pub previous_until: Option<i64>,
    /// Set up by hand and waiting for its first event.
    pub manual_waiting: bool,
    /// A secret is stored but does not open: refuse everything until an operator fixes the keys.
    pub unreadable: Option<Unreadable>,
    loaded: Instant,
}

impl CallbackSecrets {
    /// The previous secret, while its window lasts.
    pub fn previous_in_window(&self, now: i64) -> Option<&SecretString> {
        self.previous.as_ref().filter(|_| self.previous_until.is_some_and(|until| now < until))
    }

    /// No secret was ever stored: VK sends none (a manual setup before the admin created one).
    pub fn none_required(&self) -> bool {
        self.secret.is_none() && self.previous.is_none() && self.unreadable.is_none()
    }
}

#[derive(Clone)]
pub struct Credentials {
    store: Store,
    vault: Arc<Vault>,
    cache: Arc<RwLock<HashMap<GroupId, Arc<CallbackSecrets>>>>,
    previous_window: Duration,
}

/// A fresh 32-character secret of latin letters and digits (VK accepts up to 50: `secret_key` in
/// `groups.addCallbackServer`, `vendor/vk-api-schema/groups/methods.json`).
pub fn new_callback_secret() -> SecretString {
    let s: String = rand::thread_rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect();
    SecretString::from(s)
}

impl Credentials {
    pub fn new(store: Store, vault: Arc<Vault>) -> Credentials {
        Credentials { store, vault, cache: Arc::default(), previous_window: PREVIOUS_SECRET_WINDOW }
    }

    /// Accepts the previous secret for `window` after a rotation (tests shorten it).
    pub fn with_previous_window(mut self, window: Duration) -> Credentials {
        self.previous_window = window;
        self
    }

    fn open(
        &self,
        column: Sealed,
        group_id: GroupId,
        sealed: Option<&str>,
    ) -> Result<Option<SecretString>, Unreadable> {
        let Some(sealed) = sealed else { return Ok(None) };
        self.vault.open(&Slot::new(column, group_id.to_string()), sealed).map(Some).map_err(|e| {
            let (_, _, name) = column.location();
            let key_id = Vault::key_id_of(sealed).ok().map(str::to_owned);
            tracing::error!(group_id = group_id.0, column = name, key_id = ?key_id, error = %e, "a stored value does not open");
            Unreadable { column: name, key_id }
        })
    }

    fn seal(&self, column: Sealed, group_id: GroupId, value: &SecretString) -> String {
        self.vault.seal(&Slot::new(column, group_id.to_string()), value)
    }

    /// The community key, if one is stored. One that is stored but does not open is an error
    /// ([`StoreError::Unreadable`]), never "no key": the bot holds its events, nobody is asked to reconnect.
    pub async fn community_key(&self, group_id: GroupId) -> StoreResult<Option<CommunityKey>> {
        let Some(settings) = self.store.community_settings(group_id).await? else { return Ok(None) };
        let token = self.open(Sealed::CommunityToken, group_id, settings.community_token.as_deref())?;
        Ok(token.map(|t| CommunityKey {
            token: AccessToken::community(t),
            scopes: settings.token_scopes.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        }))
    }

    /// Stores a community key (sealed) with the scopes VK reported for it.
    pub async fn save_community_key(
        &self,
        group_id: GroupId,
        token: &SecretString,
        scopes: &[String],
    ) -> StoreResult<()> {
        let sealed = self.seal(Sealed::CommunityToken, group_id, token);
        self.store.save_community_token(group_id, &sealed, &scopes.join(",")).await
    }

    /// The secret for a setup run by `by_user`, with VK's confirmation code committed **before** the server is added
    /// or edited, so our endpoint can answer VK's confirmation the moment it comes.
    ///
    /// The secret is kept unless something needs a new one: none is stored, the stored one does not open, or someone
    /// other than the admin who connected the community last is connecting it now (the old one may leave with them).
    /// A repair or a reconnect by the same admin keeps it, so none of VK's retries in flight is refused.
    pub async fn secret_for_setup(&self, group_id: GroupId, code: &str, by_user: i64) -> StoreResult<SecretString> {
        let settings = self.store.community_settings(group_id).await?;
        let current = settings.as_ref().and_then(|s| s.secret.as_deref());
        let same_hands = settings.as_ref().and_then(|s| s.connected_by).is_none_or(|u| u == by_user);
        let current = self.open(Sealed::CallbackSecret, group_id, current);
        if let (Ok(Some(secret)), true) = (&current, same_hands) {
            self.store.commit_code(group_id, code, SetupMode::Api).await?;
            self.invalidate(group_id);
            return Ok(secret.clone());
        }
        self.rotate(group_id, code, current.ok().flatten()).await
    }

    /// Commits VK's confirmation code with a fresh secret. The current one, if it opens, becomes the previous one,
    /// still accepted for the window: VK retries an event for about two hours with the secret it first built.
    pub async fn rotate_for_setup(&self, group_id: GroupId, code: &str) -> StoreResult<SecretString> {
        let settings = self.store.community_settings(group_id).await?;
        let current = settings.as_ref().and_then(|s| s.secret.as_deref());
        let current = self.open(Sealed::CallbackSecret, group_id, current).ok().flatten();
        self.rotate(group_id, code, current).await
    }

    /// A fresh secret with `code`; `previous` (the current one, opened) stays accepted for the window.
    async fn rotate(&self, group_id: GroupId, code: &str, previous: Option<SecretString>) -> StoreResult<SecretString> {
        let secret = new_callback_secret();
        let sealed = self.seal(Sealed::CallbackSecret, group_id, &secret);
        let sealed_previous = previous.map(|p| self.seal(Sealed::PreviousCallbackSecret, group_id, &p));
        let until = now_ms() + self.previous_window.as_millis() as i64;
        let previous = sealed_previous.as_deref().map(|p| (p, until));
        self.store.commit_confirmation(group_id, code, Some(&sealed), previous, SetupMode::Api).await?;
        self.invalidate(group_id);
        Ok(secret)
    }

    /// The manual setup's secret (what the admin pastes at VK), created once when `create` is set.
    pub async fn manual_secret(&self, group_id: GroupId, create: bool) -> StoreResult<Option<SecretString>> {
        let settings = self.store.community_settings(group_id).await?;
        if let Ok(Some(secret)) =
            self.open(Sealed::CallbackSecret, group_id, settings.as_ref().and_then(|s| s.secret.as_deref()))
        {
            return Ok(Some(secret));
        }
        if !create {
            return Ok(None);
        }
        let secret = new_callback_secret();
        let sealed = self.seal(Sealed::CallbackSecret, group_id, &secret);
        let code = settings.and_then(|s| s.confirmation_code).unwrap_or_default();
        self.store.commit_confirmation(group_id, &code, Some(&sealed), None, SetupMode::Manual).await?;
        self.invalidate(group_id);
        Ok(Some(secret))
    }

    /// Saves the confirmation string VK shows in the community's settings (manual setup): our endpoint answers it.
    pub async fn save_manual_confirmation(&self, group_id: GroupId, code: &str) -> StoreResult<()> {
        self.store.commit_code(group_id, code, SetupMode::Manual).await?;
        self.store.set_connection_status(group_id, CommunityStatus::Connecting, None).await?;
        self.invalidate(group_id);
        Ok(())
    }

    /// The stored confirmation code: `None` for an unknown community, `Some(None)` when there is none.
    /// Always read from the store: it was committed just before VK asks.
    pub async fn confirmation_code(&self, group_id: GroupId) -> StoreResult<Option<Option<String>>> {
        let Some(settings) = self.store.community_settings(group_id).await? else { return Ok(None) };
        self.store.record_confirmation_request(group_id).await?;
        Ok(Some(settings.confirmation_code.filter(|c| !c.is_empty())))
    }

    /// The secrets to check a callback against: cached unless `fresh`; `None` for an unknown community.
    pub async fn callback_secrets(&self, group_id: GroupId, fresh: bool) -> StoreResult<Option<Arc<CallbackSecrets>>> {
        if !fresh {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = cache.get(&group_id).filter(|e| e.loaded.elapsed() < CACHE_TTL) {
                return Ok(Some(entry.clone()));
            }
        }
        let Some(s) = self.store.community_settings(group_id).await? else {
            self.invalidate(group_id);
            return Ok(None);
        };
        let secret = self.open(Sealed::CallbackSecret, group_id, s.secret.as_deref());
        let previous = self.open(Sealed::PreviousCallbackSecret, group_id, s.previous_secret.as_deref());
        let unreadable = secret.as_ref().err().or(previous.as_ref().err()).cloned();
        let entry = Arc::new(CallbackSecrets {
            disconnected: s.secret.is_none() && s.confirmation_code.is_none(),
            secret: secret.ok().flatten(),
            previous: previous.ok().flatten(),
            previous_until: s.previous_secret_until,
            manual_waiting: s.setup_mode.admin_enters_code() && !s.callback_configured,
            unreadable,
            loaded: Instant::now(),
        });
        self.cache.write().unwrap_or_else(|e| e.into_inner()).insert(group_id, entry.clone());
        Ok(Some(entry))
    }

    /// Drops the previous secrets whose window has passed (the receiver no longer accepts them anyway).
    pub async fn retire_expired_previous_secrets(&self) -> StoreResult<u64> {
        let n = self.store.retire_expired_previous_secrets(now_ms()).await?;
        if n > 0 {
            self.cache.write().unwrap_or_else(|e| e.into_inner()).clear();
        }
        Ok(n)
    }

    /// The first event of a manually set up community arrived: it is connected. True when this call did it.
    pub async fn confirm_manual(&self, group_id: GroupId) -> StoreResult<bool> {
        let changed = self.store.mark_manual_connected(group_id).await?;
        if changed {
            self.invalidate(group_id);
        }
        Ok(changed)
    }

    /// Forgets the key, secrets and code (the community is disconnected).
    pub async fn forget(&self, group_id: GroupId) -> StoreResult<()> {
        self.store.disconnect_community(group_id).await?;
        self.invalidate(group_id);
        Ok(())
    }

    /// Drops the cached secrets of a community (they changed).
    pub fn invalidate(&self, group_id: GroupId) {
        self.cache.write().unwrap_or_else(|e| e.into_inner()).remove(&group_id);
    }

    /// The secret VK must send for a community, opened (tests and the load benchmark post as VK would).
    #[cfg(feature = "testing")]
    pub async fn current_callback_secret(&self, group_id: GroupId) -> StoreResult<Option<SecretString>> {
        let settings = self.store.community_settings(group_id).await?;
        Ok(self.open(Sealed::CallbackSecret, group_id, settings.and_then(|s| s.secret).as_deref()).ok().flatten())
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::testkit::ScratchDir;

    #[test]
    fn the_previous_secret_outlives_vks_retries() {
        // VK retries after 10 s, 3 min, 10 min, 30 min and 1 h (https://dev.vk.com/ru/api/callback/getting-started).
        let retries = Duration::from_secs(10 + 180 + 600 + 1800 + 3600);
        assert!(PREVIOUS_SECRET_WINDOW > retries, "{PREVIOUS_SECRET_WINDOW:?}");
    }

    #[tokio::test]
    async fn retiring_expired_previous_secrets_drops_them_from_the_cache_too() {
        let kit = crate::testkit::Kit::new().await;
        let g = GroupId(1001);
        kit.connected(g).await;
        let warm = kit.credentials.callback_secrets(g, false).await.unwrap().unwrap();
        assert_eq!(kit.credentials.retire_expired_previous_secrets().await.unwrap(), 0);
        let kept = kit.credentials.callback_secrets(g, false).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&warm, &kept), "nothing retired: the cache stays");
        // A rotation elsewhere with a window of a millisecond; this instance caches the previous secret.
        let other =
            Credentials::new(kit.store.clone(), kit.vault.clone()).with_previous_window(Duration::from_millis(1));
        other.rotate_for_setup(g, "c0de").await.unwrap();
        assert!(kit.credentials.callback_secrets(g, true).await.unwrap().unwrap().previous.is_some());
        // The window is a time span: let it pass.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(kit.credentials.retire_expired_previous_secrets().await.unwrap(), 1);
        let after = kit.credentials.callback_secrets(g, false).await.unwrap().unwrap();
        assert!(after.previous.is_none(), "the cache was dropped with them");
    }

    #[tokio::test]
    async fn secrets_are_cached_until_asked_fresh_and_say_what_the_community_is() {
        let kit = crate::testkit::Kit::new().await;
        let g = GroupId(1001);
        kit.connected(g).await;
        let first = kit.credentials.callback_secrets(g, false).await.unwrap().unwrap();
        assert!(!first.disconnected && !first.manual_waiting && !first.none_required());
        let again = kit.credentials.callback_secrets(g, false).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the cache answers within its lifetime");
        let fresh = kit.credentials.callback_secrets(g, true).await.unwrap().unwrap();
        assert!(!Arc::ptr_eq(&first, &fresh), "fresh reads the store");
        assert!(kit.credentials.callback_secrets(GroupId(4242), false).await.unwrap().is_none(), "unknown");
    }

    async fn fixture() -> (Credentials, Store, ScratchDir) {
        let dir = ScratchDir::new();
        let store = crate::testkit::store(&dir).await;
        let vault = Arc::new(Vault::from_spec(&Vault::generate_spec("k1")).unwrap());
        (Credentials::new(store.clone(), vault), store, dir)
    }

    #[tokio::test]
    async fn a_rotation_keeps_the_previous_secret_and_drops_the_cached_one() {
        let (creds, _store, _dir) = fixture().await;
        let first = creds.rotate_for_setup(GroupId(1001), "code1").await.unwrap();
        let cached = creds.callback_secrets(GroupId(1001), false).await.unwrap().unwrap();
        assert_eq!(cached.secret.as_ref().unwrap().expose_secret(), first.expose_secret());
        assert!(cached.previous.is_none());

        let second = creds.rotate_for_setup(GroupId(1001), "code2").await.unwrap();
        let now = creds.callback_secrets(GroupId(1001), false).await.unwrap().unwrap();
        assert_eq!(now.secret.as_ref().unwrap().expose_secret(), second.expose_secret(), "not served stale");
        assert_eq!(now.previous.as_ref().unwrap().expose_secret(), first.expose_secret());
        assert_eq!(creds.confirmation_code(GroupId(1001)).await.unwrap(), Some(Some("code2".into())));

        assert!(now.previous_in_window(now_ms()).is_some(), "accepted through VK's retry window");
        assert!(now.previous_in_window(now_ms() + PREVIOUS_SECRET_WINDOW.as_millis() as i64).is_none(), "not after");
    }

    #[tokio::test]
    async fn a_setup_keeps_the_secret_unless_something_needs_a_new_one() {
        let (creds, store, _dir) = fixture().await;
        let first = creds.secret_for_setup(GroupId(1001), "code1", 1).await.unwrap();
        store.mark_connected(GroupId(1001), Some(5), "5.199", "message_new", Some(1)).await.unwrap();
        // A repair or a reconnect by the same admin: the same secret, a new code.
        let again = creds.secret_for_setup(GroupId(1001), "code2", 1).await.unwrap();
        assert_eq!(again.expose_secret(), first.expose_secret());
        assert_eq!(creds.confirmation_code(GroupId(1001)).await.unwrap(), Some(Some("code2".into())));
        assert!(
            store.community_settings(GroupId(1001)).await.unwrap().unwrap().previous_secret.is_none(),
            "no rotation"
        );
        // Another admin connects: a new secret, and the old one is kept for VK's retries.
        let other = creds.secret_for_setup(GroupId(1001), "code3", 7).await.unwrap();
        assert_ne!(other.expose_secret(), first.expose_secret());
        let entry = creds.callback_secrets(GroupId(1001), false).await.unwrap().unwrap();
        assert_eq!(entry.previous_in_window(now_ms()).unwrap().expose_secret(), first.expose_secret());
        // A secret that does not open is replaced.
        let elsewhere = Credentials::new(store, Arc::new(Vault::from_spec(&Vault::generate_spec("k2")).unwrap()));
        let fresh = elsewhere.secret_for_setup(GroupId(1001), "code4", 1).await.unwrap();
        assert_ne!(fresh.expose_secret(), other.expose_secret());
        assert!(elsewhere.callback_secrets(GroupId(1001), true).await.unwrap().unwrap().unreadable.is_none());
    }

    #[tokio::test]
    async fn a_secret_that_does_not_open_is_unreadable_not_absent() {
        let (creds, store, _dir) = fixture().await;
        creds.rotate_for_setup(GroupId(1001), "code").await.unwrap();
        let other_keys = Arc::new(Vault::from_spec(&Vault::generate_spec("k2")).unwrap());
        let elsewhere = Credentials::new(store, other_keys);
        let entry = elsewhere.callback_secrets(GroupId(1001), true).await.unwrap().unwrap();
        assert!(!entry.none_required(), "a stored secret is required even when it does not open");
        assert_eq!(entry.unreadable.as_ref().unwrap().key_id.as_deref(), Some("k1"));
    }

    #[tokio::test]
    async fn a_community_key_opens_with_its_scopes_and_forget_drops_everything() {
        let (creds, _store, _dir) = fixture().await;
        assert!(creds.community_key(GroupId(1001)).await.unwrap().is_none());
        creds.save_community_key(GroupId(1001), &SecretString::from("vk1.a.key"), &["manage".into()]).await.unwrap();
        let key = creds.community_key(GroupId(1001)).await.unwrap().unwrap();
        assert!(key.has(vk::CommunityScope::Manage));
        assert!(!key.has(vk::CommunityScope::Messages));
        creds.rotate_for_setup(GroupId(1001), "code").await.unwrap();
        creds.forget(GroupId(1001)).await.unwrap();
        assert!(creds.community_key(GroupId(1001)).await.unwrap().is_none());
        let gone = creds.callback_secrets(GroupId(1001), false).await.unwrap().unwrap();
        assert!(gone.disconnected && gone.none_required(), "no secret and no code: VK should drop its server");
    }

    #[tokio::test]
    async fn a_manual_setup_with_a_code_but_no_secret_is_set_up_and_needs_no_secret() {
        let (creds, store, _dir) = fixture().await;
        let row = crate::store::CommunityRow {
            id: 1001,
            name: "Кофейня".into(),
            screen_name: "club1001".into(),
            photo: None,
        };
        store.upsert_community(&row).await.unwrap();
        creds.save_manual_confirmation(GroupId(1001), "c0de").await.unwrap();
        let waiting = creds.callback_secrets(GroupId(1001), false).await.unwrap().unwrap();
        assert!(!waiting.disconnected, "a code is stored: set up, not disconnected");
        assert!(waiting.none_required() && waiting.manual_waiting);
        creds.manual_secret(GroupId(1001), true).await.unwrap().unwrap();
        let secured = creds.callback_secrets(GroupId(1001), false).await.unwrap().unwrap();
        assert!(!secured.disconnected && !secured.none_required());
    }
}
