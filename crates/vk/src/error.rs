//! One error type for everything that can go wrong talking to VK.
//!
//! Policy: an [`Error`] never carries a token, a client secret or an OAuth code. VK echoes the request parameters
//! in its error envelope; [`ApiError::request_params`] keeps them minus anything secret. Network errors are kept
//! as text without the URL (a URL may carry `client_secret` or `code`).

use std::fmt;

/// VK error codes that vkhook reacts to by name: https://dev.vk.com/ru/reference/errors and the vendored schema's
/// `vendor/vk-api-schema/errors.json`.
pub mod code {
    pub const UNKNOWN: i64 = 1;
    pub const UNKNOWN_METHOD: i64 = 3;
    pub const USER_AUTH_FAILED: i64 = 5;
    pub const TOO_MANY_REQUESTS: i64 = 6;
    pub const PERMISSION_DENIED: i64 = 7;
    pub const INVALID_REQUEST: i64 = 8;
    pub const FLOOD_CONTROL: i64 = 9;
    pub const INTERNAL_SERVER_ERROR: i64 = 10;
    pub const CAPTCHA_NEEDED: i64 = 14;
    pub const ACCESS_DENIED: i64 = 15;
    pub const GROUP_AUTH_FAILED: i64 = 27;
    pub const APP_AUTH_FAILED: i64 = 28;
    pub const RATE_LIMIT_REACHED: i64 = 29;
    pub const INVALID_PARAM: i64 = 100;
    pub const NOT_FOUND: i64 = 104;
    pub const GROUP_ACCESS_DENIED: i64 = 203;
    pub const WALL_REPLIES_DENIED: i64 = 212;
    pub const WALL_ADD_REPLY_DENIED: i64 = 213;
    pub const WALL_LINKS_FORBIDDEN: i64 = 222;
    pub const WALL_TOO_MANY_REPLIES: i64 = 223;
    pub const GROUPS_LIST_HIDDEN: i64 = 260;
    pub const MESSAGES_USER_BLOCKED: i64 = 900;
    pub const MESSAGES_DENY_SEND: i64 = 901;
    pub const MESSAGES_PRIVACY: i64 = 902;
    pub const MESSAGES_INTENT_CANT_USE: i64 = 943;
    pub const MESSAGES_INTENT_LIMIT: i64 = 944;
    pub const MESSAGES_CHAT_DISABLED: i64 = 945;
    pub const MESSAGES_REPLY_TIMED_OUT: i64 = 950;
    pub const MESSAGES_NOTIFICATIONS_ONLY: i64 = 985;
    pub const MESSAGES_NEED_REQUEST: i64 = 987;
    pub const MESSAGES_PENDING_REQUEST: i64 = 988;
    pub const CALLBACK_SERVERS_LIMIT: i64 = 2000;
}

/// VK's error envelope: `{"error": {"error_code", "error_msg", "request_params"}}`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: i64,
    pub message: String,
    /// What VK echoed back, without `access_token`, secrets or codes.
    pub request_params: Vec<(String, String)>,
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("code", &self.code)
            .field("message", &self.message)
            .field("request_params", &self.request_params)
            .finish()
    }
}

/// An OAuth error: `{"error", "error_description"}` from oauth.vk.com or id.vk.com, or the same pair
/// carried back on a redirect (`?error=access_denied&error_description=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub error: String,
    pub description: String,
}

impl OAuthError {
    /// The user pressed «Отмена» (or VK refused on their behalf).
    pub fn is_access_denied(&self) -> bool {
        self.error == "access_denied"
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// VK answered with its error envelope.
    #[error("VK error {}: {}", .0.code, .0.message)]
    Api(ApiError),
    /// An OAuth endpoint refused.
    #[error("OAuth error {}: {}", .0.error, .0.description)]
    OAuth(OAuthError),
    /// The request did not complete: connection refused, reset, DNS, TLS.
    #[error("network error talking to VK: {0}")]
    Network(String),
    /// No answer within the request timeout.
    #[error("VK did not answer in time")]
    Timeout,
    /// VK answered with a non-success HTTP status and no readable error envelope.
    #[error("VK answered HTTP {0}")]
    Http(u16),
    /// VK answered, but the body is not what the method returns.
    #[error("unreadable answer from VK: {0}")]
    Decode(String),
    /// A parameter breaks a limit VK enforces; the request was not sent.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParam { name: &'static str, reason: String },
}

impl Error {
    /// VK's error code, when VK answered with its envelope.
    pub fn code(&self) -> Option<i64> {
        match self {
            Error::Api(e) => Some(e.code),
            _ => None,
        }
    }

    /// Worth trying again later: 1, 6, 9, 10, 29, network failures, timeouts and HTTP 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api(e) => matches!(
                e.code,
                code::UNKNOWN
                    | code::TOO_MANY_REQUESTS
                    | code::FLOOD_CONTROL
                    | code::INTERNAL_SERVER_ERROR
                    | code::RATE_LIMIT_REACHED
            ),
            Error::Network(_) | Error::Timeout => true,
            Error::Http(status) => *status >= 500 || *status == 429,
            Error::OAuth(_) | Error::Decode(_) | Error::InvalidParam { .. } => false,
        }
    }

    /// VK certainly did not run the method: the request was refused before it was executed. Only these are safe
    /// to retry for a method that is not idempotent.
    pub fn was_not_executed(&self) -> bool {
        matches!(self.code(), Some(code::TOO_MANY_REQUESTS | code::FLOOD_CONTROL | code::RATE_LIMIT_REACHED))
    }

    /// The token is dead (revoked, expired, password changed): someone must authorize again. Only error 5 means
    /// that — "User authorization failed" in VK's error list (https://dev.vk.com/ru/reference/errors; the schema's
    /// `vendor/vk-api-schema/errors.json`, `api_error_auth`).
    pub fn needs_reauth(&self) -> bool {
        self.code() == Some(code::USER_AUTH_FAILED)
    }

    /// We called a method with the wrong kind of token: 27 "Group authorization failed" (the method is unavailable
    /// with a community token) or 28 "Application authorization failed" (… with a service token). This is a bug of
    /// the caller, not a dead key: nobody needs to authorize again (https://dev.vk.com/ru/reference/errors;
    /// `vendor/vk-api-schema/errors.json`, `api_error_group_auth`/`api_error_app_auth`).
    pub fn is_wrong_token_kind(&self) -> bool {
        matches!(self.code(), Some(code::GROUP_AUTH_FAILED | code::APP_AUTH_FAILED))
    }

    /// The community already has ten callback servers (error 2000).
    pub fn is_callback_servers_limit(&self) -> bool {
        self.code() == Some(code::CALLBACK_SERVERS_LIMIT)
    }

    /// Access to the community was refused: the user is no longer its admin (15, 203).
    pub fn is_access_denied(&self) -> bool {
        matches!(self.code(), Some(code::ACCESS_DENIED | code::GROUP_ACCESS_DENIED | code::PERMISSION_DENIED))
    }

    pub(crate) fn from_reqwest(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            return Error::Timeout;
        }
        if let Some(status) = err.status() {
            return Error::Http(status.as_u16());
        }
        if err.is_decode() {
            return Error::Decode(err.without_url().to_string());
        }
        Error::Network(describe_chain(&err.without_url()))
    }
}

/// The error and its sources in one line, so "error sending request" says why.
fn describe_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Parameter names whose values never leave this crate in an error.
pub(crate) fn is_secret_param(name: &str) -> bool {
    matches!(name, "access_token" | "secret_key" | "client_secret" | "code" | "code_verifier" | "refresh_token")
        || name.contains("token")
        || name.contains("secret")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: i64) -> Error {
        Error::Api(ApiError { code, message: String::new(), request_params: vec![] })
    }

    #[test]
    fn retryable_codes_are_exactly_the_transient_ones() {
        for c in [1, 6, 9, 10, 29] {
            assert!(api(c).is_retryable(), "{c} should be retryable");
        }
        for c in [5, 7, 14, 15, 27, 28, 100, 104, 203, 900, 901, 902, 2000] {
            assert!(!api(c).is_retryable(), "{c} should not be retryable");
        }
        assert!(Error::Network("reset".into()).is_retryable());
        assert!(Error::Timeout.is_retryable());
        assert!(Error::Http(502).is_retryable());
        assert!(!Error::Http(404).is_retryable());
    }

    #[test]
    fn only_error_5_means_the_token_is_dead() {
        assert!(api(5).needs_reauth());
        for c in [1, 6, 7, 15, 27, 28, 100, 2000] {
            assert!(!api(c).needs_reauth(), "{c} must not ask to authorize again");
        }
        for c in [27, 28] {
            assert!(api(c).is_wrong_token_kind(), "{c} is a wrong token kind");
        }
        assert!(!api(5).is_wrong_token_kind());
        assert!(api(2000).is_callback_servers_limit());
    }

    #[test]
    fn secret_parameter_names_are_recognised() {
        for name in ["access_token", "secret_key", "client_secret", "code", "refresh_token", "code_verifier"] {
            assert!(is_secret_param(name), "{name}");
        }
        for name in ["group_id", "url", "title", "message"] {
            assert!(!is_secret_param(name), "{name}");
        }
    }
}
