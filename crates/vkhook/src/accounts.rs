//! Signing in with VK ID and keeping the user's VK ID tokens fresh. No HTTP types here.

use secrecy::SecretString;
use sha2::{Digest, Sha256};
use url::Url;
use vk::UserId;
use vk::{AccessToken, Pkce};

use std::collections::HashMap;
use std::sync::Arc;

use crate::logging::Untrusted;
use crate::model::OAuthPurpose;
use crate::store::{now_ms, OAuthStateRow, Store, StoreError, UserRow, UserTokensRow};
use crate::urls::PublicUrl;
use crate::vault::{Sealed, Slot, Vault};

/// SHA-256 as hex: how sessions and OAuth states are stored (a database leak does not give usable values).
pub fn hash_hex(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A pending authorization expires after this long (VK's codes live ten minutes).
pub const OAUTH_STATE_TTL_MS: i64 = 15 * 60 * 1000;

pub use crate::urls::VKID_CALLBACK_PATH;

/// Why a sign-in did not happen, for the page the user sees.
#[derive(Debug)]
pub enum SignInFailure {
    /// The user pressed «Отмена».
    Denied,
    /// Unknown, reused, expired or foreign `state` (or no code).
    BadState,
    /// VK ID refused the code or did not answer.
    VkId(vk::Error),
    Store(StoreError),
}

impl From<StoreError> for SignInFailure {
    fn from(e: StoreError) -> Self {
        SignInFailure::Store(e)
    }
}

/// Why a user's VK ID token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// There is none, it does not open, or refreshing it failed: the user must sign in again.
    #[error("the user must sign in again")]
    SignInAgain,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vk(#[from] vk::Error),
}

/// Signing in and the user's tokens: what it uses.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    vault: Arc<Vault>,
    oauth: vk::OAuthClient,
    /// What VK ID sign-in asks for.
    scopes: Vec<String>,
    public_url: PublicUrl,
    /// One refresh at a time per user in this process: VK ID rotates the refresh token, so a second refresh with
    /// the old one is refused.
    refreshing: Arc<std::sync::Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>>,
}

/// How long a refresh that VK refused waits for another instance's refresh of the same user to land in the store.
const REFRESH_SETTLE: std::time::Duration = std::time::Duration::from_secs(3);

impl Accounts {
    pub fn new(
        store: Store,
        vault: Arc<Vault>,
        oauth: vk::OAuthClient,
        scopes: Vec<String>,
        public_url: PublicUrl,
    ) -> Accounts {
        Accounts { store, vault, oauth, scopes, public_url, refreshing: Arc::default() }
    }

    /// Starts VK ID sign-in for the session: a fresh `state` and PKCE verifier kept server-side.
    pub async fn begin_sign_in(&self, session_hash: &str) -> Result<Url, StoreError> {
        let app = self;
        let state = vk::oauth::random_urlsafe(32);
        let pkce = Pkce::generate();
        let state_hash = hash_hex(&state);
        let verifier = app.vault.seal(&Slot::new(Sealed::OAuthVerifier, state_hash.as_str()), &pkce.verifier);
        app.store
            .replace_sign_in_state(&OAuthStateRow {
                state_hash,
                session_hash: session_hash.to_owned(),
                kind: OAuthPurpose::SignIn,
                verifier: Some(verifier),
                group_id: None,
                created_at: now_ms(),
                group_ids: None,
                bulk_id: None,
            })
            .await?;
        let scopes: Vec<&str> = app.scopes.iter().map(String::as_str).collect();
        Ok(app.oauth.vkid_authorize_url(&app.public_url.join(VKID_CALLBACK_PATH), &state, &pkce.challenge, &scopes))
    }
}

/// What VK ID put on the redirect back.
#[derive(Debug, Default, serde::Deserialize)]
pub struct VkIdRedirect {
    pub code: Option<String>,
    pub state: Option<String>,
    pub device_id: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl Accounts {
    /// Finishes sign-in: checks `state` against the session, exchanges the code, stores the user and sealed tokens.
    /// Returns the user id.
    pub async fn finish_sign_in(&self, session_hash: &str, back: &VkIdRedirect) -> Result<i64, SignInFailure> {
        let app = self;
        // A state is single-use whatever happens next.
        let pending = match back.state.as_deref() {
            Some(state) if !state.is_empty() => app.store.take_oauth_state(&hash_hex(state)).await?,
            _ => None,
        };
        if let Some(err) = vk::oauth::redirect_error(back.error.as_deref(), back.error_description.as_deref()) {
            tracing::info!(
                error = %Untrusted(&err.error),
                description = %Untrusted(&err.description),
                "VK ID sign-in was not granted"
            );
            return Err(if err.is_access_denied() {
                SignInFailure::Denied
            } else {
                SignInFailure::VkId(vk::Error::OAuth(err))
            });
        }
        let pending = pending
            .filter(|p| {
                p.kind == OAuthPurpose::SignIn
                    && p.session_hash == session_hash
                    && now_ms() - p.created_at < OAUTH_STATE_TTL_MS
            })
            .ok_or(SignInFailure::BadState)?;
        let (Some(code), Some(device_id), Some(state)) = (&back.code, &back.device_id, &back.state) else {
            return Err(SignInFailure::BadState);
        };
        let verifier = pending
            .verifier
            .as_deref()
            .and_then(|v| app.vault.open(&Slot::new(Sealed::OAuthVerifier, pending.state_hash.as_str()), v).ok())
            .ok_or(SignInFailure::BadState)?;
        let tokens = app
            .oauth
            .vkid_exchange_code(
                &SecretString::from(code.clone()),
                &verifier,
                device_id,
                &app.public_url.join(VKID_CALLBACK_PATH),
                state,
            )
            .await
            .map_err(SignInFailure::VkId)?;
        let user = app.oauth.vkid_user_info(&tokens.access_token).await.map_err(SignInFailure::VkId)?;
        if user.user_id != tokens.user_id.0 {
            return Err(SignInFailure::VkId(vk::Error::Decode("user_info is for another user".into())));
        }
        app.store
            .upsert_user(&UserRow {
                id: user.user_id,
                first_name: user.first_name,
                last_name: user.last_name,
                avatar: user.avatar,
            })
            .await?;
        app.save_tokens(UserId(user.user_id), &tokens, device_id).await?;
        tracing::info!(user_id = user.user_id, "signed in with VK ID");
        Ok(user.user_id)
    }

    async fn save_tokens(&self, user_id: UserId, tokens: &vk::VkIdTokens, device_id: &str) -> Result<(), StoreError> {
        let app = self;
        let row = user_id.to_string();
        let access = app.vault.seal(&Slot::new(Sealed::UserAccessToken, row.as_str()), &tokens.access_token);
        let refresh = app.vault.seal(&Slot::new(Sealed::UserRefreshToken, row.as_str()), &tokens.refresh_token);
        app.store
            .save_user_tokens(&UserTokensRow {
                user_id: user_id.0,
                access_token: access,
                refresh_token: refresh,
                device_id: device_id.to_owned(),
                scopes: tokens.scope.clone(),
                expires_at: now_ms() + tokens.expires_in.max(0) * 1000,
            })
            .await?;
        Ok(())
    }

    /// A user's VK ID access token and its scopes, refreshed when it is about to expire.
    /// `AccountError::SignInAgain` when there is none or refreshing fails.
    pub async fn user_token(&self, user_id: UserId) -> Result<(AccessToken, String), AccountError> {
        let app = self;
        let row = app.store.user_tokens(user_id).await?.ok_or(AccountError::SignInAgain)?;
        if let Some(fresh) = app.fresh_access(&row)? {
            return Ok(fresh);
        }
        app.refresh(row).await
    }

    /// Refreshes after VK said the access token is dead (error 5), then returns the new one.
    pub async fn user_token_after_rejection(&self, user_id: UserId) -> Result<(AccessToken, String), AccountError> {
        let app = self;
        let row = app.store.user_tokens(user_id).await?.ok_or(AccountError::SignInAgain)?;
        app.refresh(row).await
    }

    /// A user token that does not open (its key is not configured): the user signs in again, and the new tokens are
    /// sealed with the current key. Logged with the key id, so an operator sees the missing key.
    fn unreadable_user_token(user_id: UserId, sealed: &str) -> AccountError {
        let key_id = Vault::key_id_of(sealed).ok();
        tracing::error!(user_id = user_id.0, key_id = ?key_id, "a stored VK ID token does not open: the user must sign in again");
        AccountError::SignInAgain
    }

    /// A usable access token from the stored row, if it is still fresh.
    fn fresh_access(&self, row: &UserTokensRow) -> Result<Option<(AccessToken, String)>, AccountError> {
        if row.expires_at - 60_000 <= now_ms() {
            return Ok(None);
        }
        let key = row.user_id.to_string();
        let access = self
            .vault
            .open(&Slot::new(Sealed::UserAccessToken, key.as_str()), &row.access_token)
            .map_err(|_| Self::unreadable_user_token(UserId(row.user_id), &row.access_token))?;
        Ok(Some((AccessToken::user(access), row.scopes.clone())))
    }

    /// Refreshes the user's tokens — once, however many requests of this process ask at the same time.
    async fn refresh(&self, row: UserTokensRow) -> Result<(AccessToken, String), AccountError> {
        let lock = {
            let mut locks = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(row.user_id).or_default().clone()
        };
        let _one_at_a_time = lock.lock().await;
        // Another request may have refreshed while this one waited: use its result.
        let current = self.store.user_tokens(UserId(row.user_id)).await?.ok_or(AccountError::SignInAgain)?;
        if current.refresh_token != row.refresh_token {
            if let Some(fresh) = self.fresh_access(&current)? {
                return Ok(fresh);
            }
        }
        self.refresh_now(current).await
    }

    async fn refresh_now(&self, row: UserTokensRow) -> Result<(AccessToken, String), AccountError> {
        let app = self;
        let key = row.user_id.to_string();
        let refresh_token = app
            .vault
            .open(&Slot::new(Sealed::UserRefreshToken, key.as_str()), &row.refresh_token)
            .map_err(|_| Self::unreadable_user_token(UserId(row.user_id), &row.refresh_token))?;
        match app.oauth.vkid_refresh(&refresh_token, &row.device_id, &vk::oauth::random_urlsafe(16)).await {
            Ok(tokens) => {
                app.save_tokens(UserId(row.user_id), &tokens, &row.device_id).await?;
                tracing::info!(user_id = row.user_id, "VK ID access token refreshed");
                Ok((AccessToken::user(tokens.access_token), tokens.scope))
            }
            Err(vk::Error::OAuth(e)) => {
                // Another instance may have refreshed (and rotated the refresh token) at the same moment: give its
                // result a moment to reach the store, and use it.
                let deadline = std::time::Instant::now() + REFRESH_SETTLE;
                loop {
                    if let Some(current) = app.store.user_tokens(UserId(row.user_id)).await? {
                        if current.refresh_token != row.refresh_token {
                            if let Some(fresh) = app.fresh_access(&current)? {
                                return Ok(fresh);
                            }
                        }
                    }
                    if std::time::Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                tracing::info!(user_id = row.user_id, error = %Untrusted(&e.error), "VK ID refresh refused; the user must sign in again");
                app.store.delete_user_tokens(UserId(row.user_id)).await?;
                Err(AccountError::SignInAgain)
            }
            Err(e) => Err(AccountError::Vk(e)),
        }
    }

    /// Runs a user-token VK call; on error 5 refreshes once and tries again.
    pub async fn with_user_token<T, F, Fut>(&self, user_id: UserId, call: F) -> Result<T, AccountError>
    where
        F: Fn(AccessToken, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, vk::Error>>,
    {
        let (token, scopes) = self.user_token(user_id).await?;
        match call(token, scopes).await {
            Err(e) if e.needs_reauth() => {
                let (token, scopes) = self.user_token_after_rejection(user_id).await?;
                Ok(call(token, scopes).await?)
            }
            other => Ok(other?),
        }
    }
}
