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

use rand::distributions::Alphanumeric;
use rand::Rng;
use secrecy::SecretString;
use vk::AccessToken;

use crate::model::{CommunityStatus, SetupMode};
use crate::store::{Store, StoreError, StoreResult};
use crate::vault::{Sealed, Slot, Vault};

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
    /// The secret before the last rotation, accepted until an event arrives with the new one.
    pub previous: Option<SecretString>,
    /// Set up by hand and waiting for its first event.
    pub manual_waiting: bool,
    /// A secret is stored but does not open: refuse everything until an operator fixes the keys.
    pub unreadable: Option<Unreadable>,
    loaded: Instant,
}

impl CallbackSecrets {
    /// No secret was ever stored: VK sends none (a manual setup before the admin created one).
    pub fn none_required(&self) -> bool {
        self.secret.is_none() && self.previous.is_none() && self.unreadable.is_none()
    }
}

#[derive(Clone)]
pub struct Credentials {
    store: Store,
    vault: Arc<Vault>,
    cache: Arc<RwLock<HashMap<i64, Arc<CallbackSecrets>>>>,
}

/// A fresh 32-character secret of latin letters and digits (VK accepts up to 50: `secret_key` in
/// `groups.addCallbackServer`, `vendor/vk-api-schema/groups/methods.json`).
pub fn new_callback_secret() -> SecretString {
    let s: String = rand::thread_rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect();
    SecretString::from(s)
}

impl Credentials {
    pub fn new(store: Store, vault: Arc<Vault>) -> Credentials {
        Credentials { store, vault, cache: Arc::default() }
    }

    fn open(&self, column: Sealed, group_id: i64, sealed: Option<&str>) -> Result<Option<SecretString>, Unreadable> {
        let Some(sealed) = sealed else { return Ok(None) };
        self.vault.open(&Slot::new(column, group_id.to_string()), sealed).map(Some).map_err(|e| {
            let (_, _, name) = column.location();
            let key_id = Vault::key_id_of(sealed).ok().map(str::to_owned);
            tracing::error!(group_id, column = name, key_id = ?key_id, error = %e, "a stored value does not open");
            Unreadable { column: name, key_id }
        })
    }

    fn seal(&self, column: Sealed, group_id: i64, value: &SecretString) -> String {
        self.vault.seal(&Slot::new(column, group_id.to_string()), value)
    }

    /// The community key, if one is stored. One that is stored but does not open is an error
    /// ([`StoreError::Unreadable`]), never "no key": the bot holds its events, nobody is asked to reconnect.
    pub async fn community_key(&self, group_id: i64) -> StoreResult<Option<CommunityKey>> {
        let Some(settings) = self.store.community_settings(group_id).await? else { return Ok(None) };
        let token = self.open(Sealed::CommunityToken, group_id, settings.community_token.as_deref())?;
        Ok(token.map(|t| CommunityKey {
            token: AccessToken::community(t),
            scopes: settings.token_scopes.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        }))
    }

    /// Stores a community key (sealed) with the scopes VK reported for it.
    pub async fn save_community_key(&self, group_id: i64, token: &SecretString, scopes: &[String]) -> StoreResult<()> {
        let sealed = self.seal(Sealed::CommunityToken, group_id, token);
        self.store.save_community_token(group_id, &sealed, &scopes.join(",")).await
    }

    /// Commits VK's confirmation code with a fresh secret (the current one becomes the previous one, still
    /// accepted) **before** the server is added or edited, so our endpoint can answer VK's confirmation the moment
    /// it comes. Returns the new secret to give VK.
    pub async fn rotate_for_setup(&self, group_id: i64, code: &str) -> StoreResult<SecretString> {
        let settings = self.store.community_settings(group_id).await?;
        let current = settings.as_ref().and_then(|s| s.secret.as_deref());
        let previous = self.open(Sealed::CallbackSecret, group_id, current).ok().flatten();
        let secret = new_callback_secret();
        let sealed = self.seal(Sealed::CallbackSecret, group_id, &secret);
        let sealed_previous = previous.map(|p| self.seal(Sealed::PreviousCallbackSecret, group_id, &p));
        self.store
            .commit_confirmation(group_id, code, Some(&sealed), sealed_previous.as_deref(), SetupMode::Api)
            .await?;
        self.invalidate(group_id);
        Ok(secret)
    }

    /// The manual setup's secret (what the admin pastes at VK), created once when `create` is set.
    pub async fn manual_secret(&self, group_id: i64, create: bool) -> StoreResult<Option<SecretString>> {
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
    pub async fn save_manual_confirmation(&self, group_id: i64, code: &str) -> StoreResult<()> {
        let settings = self.store.community_settings(group_id).await?;
        let secret = settings.as_ref().and_then(|s| s.secret.clone());
        self.store.commit_confirmation(group_id, code, secret.as_deref(), None, SetupMode::Manual).await?;
        self.store.set_connection_status(group_id, CommunityStatus::Connecting, None).await?;
        self.invalidate(group_id);
        Ok(())
    }

    /// The stored confirmation code: `None` for an unknown community, `Some(None)` when there is none.
    /// Always read from the store: it was committed just before VK asks.
    pub async fn confirmation_code(&self, group_id: i64) -> StoreResult<Option<Option<String>>> {
        let Some(settings) = self.store.community_settings(group_id).await? else { return Ok(None) };
        self.store.record_confirmation_request(group_id).await?;
        Ok(Some(settings.confirmation_code.filter(|c| !c.is_empty())))
    }

    /// The secrets to check a callback against: cached unless `fresh`; `None` for an unknown community.
    pub async fn callback_secrets(&self, group_id: i64, fresh: bool) -> StoreResult<Option<Arc<CallbackSecrets>>> {
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
            manual_waiting: s.setup_mode == SetupMode::Manual && !s.callback_configured,
            unreadable,
            loaded: Instant::now(),
        });
        self.cache.write().unwrap_or_else(|e| e.into_inner()).insert(group_id, entry.clone());
        Ok(Some(entry))
    }

    /// An event came with the new secret: stop accepting the previous one.
    pub async fn retire_previous_secret(&self, group_id: i64) -> StoreResult<()> {
        self.store.retire_previous_secret(group_id).await?;
        self.invalidate(group_id);
        Ok(())
    }

    /// The first event of a manually set up community arrived: it is connected. True when this call did it.
    pub async fn confirm_manual(&self, group_id: i64) -> StoreResult<bool> {
        let changed = self.store.mark_manual_connected(group_id).await?;
        if changed {
            self.invalidate(group_id);
        }
        Ok(changed)
    }

    /// Forgets the key, secrets and code (the community is disconnected).
    pub async fn forget(&self, group_id: i64) -> StoreResult<()> {
        self.store.disconnect_community(group_id).await?;
        self.invalidate(group_id);
        Ok(())
    }

    /// Drops the cached secrets of a community (they changed).
    pub fn invalidate(&self, group_id: i64) {
        self.cache.write().unwrap_or_else(|e| e.into_inner()).remove(&group_id);
    }

    /// The secret VK must send for a community, opened (tests and the load benchmark post as VK would).
    #[cfg(feature = "testing")]
    pub async fn current_callback_secret(&self, group_id: i64) -> StoreResult<Option<SecretString>> {
        let settings = self.store.community_settings(group_id).await?;
        Ok(self.open(Sealed::CallbackSecret, group_id, settings.and_then(|s| s.secret).as_deref()).ok().flatten())
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::testkit::ScratchDir;

    async fn fixture() -> (Credentials, Store, ScratchDir) {
        let dir = ScratchDir::new();
        let store = crate::testkit::store(&dir).await;
        let vault = Arc::new(Vault::from_spec(&Vault::generate_spec("k1")).unwrap());
        (Credentials::new(store.clone(), vault), store, dir)
    }

    #[tokio::test]
    async fn a_rotation_keeps_the_previous_secret_and_drops_the_cached_one() {
        let (creds, _store, _dir) = fixture().await;
        let first = creds.rotate_for_setup(1001, "code1").await.unwrap();
        let cached = creds.callback_secrets(1001, false).await.unwrap().unwrap();
        assert_eq!(cached.secret.as_ref().unwrap().expose_secret(), first.expose_secret());
        assert!(cached.previous.is_none());

        let second = creds.rotate_for_setup(1001, "code2").await.unwrap();
        let now = creds.callback_secrets(1001, false).await.unwrap().unwrap();
        assert_eq!(now.secret.as_ref().unwrap().expose_secret(), second.expose_secret(), "not served stale");
        assert_eq!(now.previous.as_ref().unwrap().expose_secret(), first.expose_secret());
        assert_eq!(creds.confirmation_code(1001).await.unwrap(), Some(Some("code2".into())));

        creds.retire_previous_secret(1001).await.unwrap();
        assert!(creds.callback_secrets(1001, false).await.unwrap().unwrap().previous.is_none());
    }

    #[tokio::test]
    async fn a_secret_that_does_not_open_is_unreadable_not_absent() {
        let (creds, store, _dir) = fixture().await;
        creds.rotate_for_setup(1001, "code").await.unwrap();
        let other_keys = Arc::new(Vault::from_spec(&Vault::generate_spec("k2")).unwrap());
        let elsewhere = Credentials::new(store, other_keys);
        let entry = elsewhere.callback_secrets(1001, true).await.unwrap().unwrap();
        assert!(!entry.none_required(), "a stored secret is required even when it does not open");
        assert_eq!(entry.unreadable.as_ref().unwrap().key_id.as_deref(), Some("k1"));
    }

    #[tokio::test]
    async fn a_community_key_opens_with_its_scopes_and_forget_drops_everything() {
        let (creds, _store, _dir) = fixture().await;
        assert!(creds.community_key(1001).await.unwrap().is_none());
        creds.save_community_key(1001, &SecretString::from("vk1.a.key"), &["manage".into()]).await.unwrap();
        let key = creds.community_key(1001).await.unwrap().unwrap();
        assert!(key.has(vk::CommunityScope::Manage));
        assert!(!key.has(vk::CommunityScope::Messages));
        creds.rotate_for_setup(1001, "code").await.unwrap();
        creds.forget(1001).await.unwrap();
        assert!(creds.community_key(1001).await.unwrap().is_none());
        assert!(creds.callback_secrets(1001, false).await.unwrap().unwrap().disconnected);
    }
}
