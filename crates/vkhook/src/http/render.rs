//! Page structs ↔ templates, and the layout every page shares.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};

use crate::error::{AppError, AppResult, ErrorPage};
use crate::i18n::{Lang, Msg};

use super::session::Viewer;

/// What the base layout needs: the catalogue, who is signed in, the CSRF token for header forms.
pub struct Layout {
    pub t: &'static Msg,
    pub lang: Lang,
    pub user_name: Option<String>,
    pub csrf: Option<String>,
    /// Where the language switch returns to.
    pub here: String,
}

impl Layout {
    pub fn new(viewer: &Viewer, user_name: Option<String>, here: &str) -> Layout {
        Layout {
            t: viewer.lang.msg(),
            lang: viewer.lang,
            user_name,
            csrf: viewer.session.as_ref().map(|s| s.csrf.clone()),
            here: here.to_owned(),
        }
    }

    pub fn anonymous(lang: Lang) -> Layout {
        Layout { t: lang.msg(), lang, user_name: None, csrf: None, here: "/".into() }
    }

    pub fn other_lang(&self) -> &'static str {
        self.lang.other().code()
    }
}

pub fn render(page: impl Template) -> AppResult<Response> {
    let html = page.render().map_err(|e| AppError::Unexpected(anyhow::anyhow!("template: {e}")))?;
    Ok(Html(html).into_response())
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTemplate<'a> {
    layout: Layout,
    message: &'a str,
    back: Option<String>,
}

pub fn error_page(lang: Lang, page: &ErrorPage) -> String {
    let t = lang.msg();
    ErrorTemplate { layout: Layout::anonymous(lang), message: (page.message)(t), back: page.back.clone() }
        .render()
        .unwrap_or_else(|_| (page.message)(t).to_owned())
}
