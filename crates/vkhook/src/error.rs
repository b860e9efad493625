//! The error policy, in one place.
//!
//! - Handlers return `AppResult<T>`; `AppError` picks the status code here and nowhere else.
//! - 4xx errors show a page with a plain message in the user's language (a typed `Msg` field, never free text from
//!   a dependency). 5xx errors log the cause chain and show a generic page.
//! - No token, secret or code ever enters an error message: `vk::Error` and `StoreError` do not carry them, and
//!   pages only show catalogue strings.
//!
//! An error response carries an [`ErrorPage`] extension; the UI layer renders it with the request's language.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::i18n::Msg;
use crate::store::StoreError;

/// Picks a message from the catalogue.
pub type MsgFn = fn(&'static Msg) -> &'static str;

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
    Shown { status: StatusCode, message: MsgFn, back: Option<String> },
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
    pub fn shown(status: StatusCode, message: MsgFn) -> Self {
        AppError::Shown { status, message, back: None }
    }

    pub fn shown_with_back(status: StatusCode, message: MsgFn, back: impl Into<String>) -> Self {
        AppError::Shown { status, message, back: Some(back.into()) }
    }
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
            AppError::Shown { status, message, back } => ErrorPage { status, message, back }.response(),
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
                tracing::warn!(error = %e, "VK error");
                page(StatusCode::BAD_GATEWAY, |t| t.vk_unavailable)
            }
            AppError::Unexpected(e) => {
                tracing::error!(error = format!("{e:#}"), "unexpected error");
                page(StatusCode::INTERNAL_SERVER_ERROR, |t| t.error_internal)
            }
        }
    }
}
