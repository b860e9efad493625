//! The VK (VKontakte) API as a library: an API client with rate limits and retries, one error type, OAuth
//! (VK ID sign-in and community tokens), and the Callback API request parser with typed events.
//!
//! It holds no vkhook logic. Tokens and secrets are [`secrecy::SecretString`]s; no `Debug` or error shows them.

pub mod callback;
pub mod client;
pub mod error;
pub mod longpoll;
pub mod oauth;
pub mod ratelimit;
pub mod retry;
pub mod types;

pub use callback::{parse, Envelope, Event, ParseError, DEFAULT_SUBSCRIPTION, EVENT_TYPES};
pub use client::{
    AccessToken, CallObserver, CallOutcome, Client, ClientConfig, CommentReply, Idempotency, Params, TokenKind,
    API_VERSION,
};
pub use error::{code, ApiError, Error, OAuthError};
pub use longpoll::{Check as LongPollCheck, LongPollServer, LongPollSettings};
pub use oauth::{OAuthClient, OAuthConfig, Pkce, VkIdTokens, VkIdUser};
pub use retry::{Backoff, RetryPolicy};
pub use types::*;

/// Re-exported so users of this crate name the same secret type.
pub use secrecy;
