//! The error policy of the web layer, in one place.
//!
//! - Domain modules return their own errors (`StoreError`, `vk::Error`, `connect::ConnectError`,
//!   `accounts::AccountError`, …) and never this one; handlers turn them into an [`AppError`] with `?` (the
//!   `From` impls below) or by matching the cases they explain to the user.
//! - Status codes are chosen here and nowhere else in the UI: a handler names the [`Problem`], not the code
//!   (the Callback API endpoint has its own fixed answers in `http/callback.rs`).
//! - 4xx errors show a page with a plain message in the user's language (a typed `Msg` field, never free text from
//!   a dependency). 5xx errors log the cause chain and show a generic page.
//! - No token, secret or code ever enters an error message: `vk::Error` and `StoreError` do not carry them, and
//!   pages only show catalogue strings.
//!
//! An error response carries an [`ErrorPage`] extension; the UI layer renders it with the request's language.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::accounts::AccountError;
use crate::connect::ConnectError;
use crate::i18n::Msg;
use crate::logging::Untrusted;
use crate::store::StoreError;

/// Picks a message from the catalogue.
pub type MsgFn = fn(&'static Msg) -> &'static str;

/// What kind of refusal a page explains; each has its status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The request makes no sense (a bad `state`, a bad language).
    BadRequest,
    /// Not allowed for this user (a role, a refused consent).
    Forbidden,
    /// A form with values we cannot take; the page shows the form again.
    Invalid,
    /// The thing is not in a state where this can be done.
    Conflict,
    /// The form body is too large.
    TooLarge,
    /// VK refused or did not answer.
    VkUnavailable,
    /// Over an abuse limit: try again after this many seconds (sent as `Retry-After`).
    TooMany { retry_after_secs: u64 },
}

impl Problem {
    pub fn status(self) -> StatusCode {
        match self {
            Problem::BadRequest => StatusCode::BAD_REQUEST,
            Problem::Forbidden => StatusCode::FORBIDDEN,
            Problem::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            Problem::Conflict => StatusCode::CONFLICT,
            Problem::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Problem::VkUnavailable => StatusCode::BAD_GATEWAY,
            Problem::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    #[error("missing or wrong CSRF token")]
    Csrf,
    /// A page with a message for the user and a link to go on.
    #[error("shown to the user")]
    Shown { problem: Problem, message: MsgFn, back: Option<String> },
    #[error("sign-in required")]
    SignInRequired,
    /// The VK ID session cannot be refreshed: the user must sign in again.
    #[error("sign in again")]
    SignInAgain,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vk(#[from] vk::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn shown(problem: Problem, message: MsgFn) -> Self {
        AppError::Shown { problem, message, back: None }
    }

    pub fn shown_with_back(problem: Problem, message: MsgFn, back: impl Into<String>) -> Self {
        AppError::Shown { problem, message, back: Some(back.into()) }
    }
}

impl From<AccountError> for AppError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::SignInAgain => AppError::SignInAgain,
            AccountError::Store(e) => AppError::Store(e),
            AccountError::Vk(e) => AppError::Vk(e),
        }
    }
}

impl From<ConnectError> for AppError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Store(e) => AppError::Store(e),
            ConnectError::Vk(e) => AppError::Vk(e),
            ConnectError::NotConnected | ConnectError::OtherCommunity => AppError::NotFound,
        }
    }
}

/// `/healthz`: 200 when the database answers, 503 when it does not (what load balancers and monitors expect).
pub fn health_status(database_answers: bool) -> StatusCode {
    if database_answers {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// A page rendered normally that still tells the browser something went wrong (a form shown again with its error).
pub fn with_problem(mut response: Response, problem: Problem) -> Response {
    *response.status_mut() = problem.status();
    response
}

/// Tells the UI layer to end the session (the user must sign in again).
#[derive(Debug, Clone, Copy)]
pub struct EndSession;

/// What the UI layer renders as an error page.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub status: StatusCode,
    pub message: MsgFn,
    pub back: Option<String>,
}

impl ErrorPage {
    fn response(self) -> Response {
        let status = self.status;
        let mut response =
            (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], status.to_string()).into_response();
        response.extensions_mut().insert(self);
        response
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let page = |status, message: MsgFn| ErrorPage { status, message, back: None }.response();
        match self {
            AppError::NotFound => page(StatusCode::NOT_FOUND, |t| t.error_not_found),
            AppError::Forbidden => page(StatusCode::FORBIDDEN, |t| t.error_forbidden),
            AppError::Csrf => page(StatusCode::FORBIDDEN, |t| t.error_csrf),
            AppError::Shown { problem, message, back } => {
                let mut response = ErrorPage { status: problem.status(), message, back }.response();
                if let Problem::TooMany { retry_after_secs } = problem {
                    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(retry_after_secs));
                }
                response
            }
            AppError::SignInRequired => Redirect::to("/").into_response(),
            AppError::SignInAgain => {
                let mut response = Redirect::to("/?notice=signin_again").into_response();
                response.extensions_mut().insert(EndSession);
                response
            }
            AppError::Store(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "database unavailable");
                page(StatusCode::SERVICE_UNAVAILABLE, |t| t.error_unavailable)
            }
            AppError::Store(e) => {
                tracing::error!(error = %e, "database error");
                page(StatusCode::INTERNAL_SERVER_ERROR, |t| t.error_internal)
            }
            AppError::Vk(e) => {
                tracing::warn!(error = %Untrusted(&e.to_string()), "VK error");
                page(StatusCode::BAD_GATEWAY, |t| t.vk_unavailable)
            }
            AppError::Unexpected(e) => {
                tracing::error!(error = format!("{e:#}"), "unexpected error");
                page(StatusCode::INTERNAL_SERVER_ERROR, |t| t.error_internal)
            }
        }
    }
}
