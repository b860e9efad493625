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

/// Unix milliseconds as `2026-11-28 06:40 UTC`.
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, (rem % 3600) / 60)
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::format_time;

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(1_795_847_400_000), "2026-11-28 06:30 UTC");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00 UTC");
    }
}
