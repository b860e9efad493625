//! Log output, and text from outside in it.
//!
//! Strings an attacker can choose reach log lines: a callback's `type` and `event_id`, the `error` and
//! `error_description` VK (or anyone) puts in an OAuth redirect, a parser's words about a body. Written raw, a
//! newline forges a log line and an ESC sequence recolours or rewrites a terminal. Two guards, both here:
//! - [`Untrusted`] wraps such a string where it is logged: control and bidi characters escaped, cut to
//!   [`MAX_UNTRUSTED_CHARS`]. It works for both formats.
//! - The text format escapes control characters in every field, so a call site that forgets the wrapper still cannot
//!   forge a line. The JSON format (`VKHOOK_LOG_FORMAT=json`) is one JSON object per line; serde_json escapes every
//!   control character in strings.

use std::fmt::{self, Write as _};

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::EnvFilter;

/// Longest untrusted string a log line carries (characters; longer ones end in `…`).
pub const MAX_UNTRUSTED_CHARS: usize = 200;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// `VKHOOK_LOG_FORMAT`: `text` (or unset) or `json`.
    pub fn from_env() -> Result<LogFormat, String> {
        match std::env::var("VKHOOK_LOG_FORMAT").ok().as_deref().map(str::trim) {
            None | Some("") | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(format!("VKHOOK_LOG_FORMAT must be text or json, not {:?}", Untrusted(other))),
        }
    }
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info,sqlx=warn`), `format` writes.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Colours only for a terminal: a log file or a collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder
            .fmt_fields(
                tracing_subscriber::fmt::format::debug_fn(|w: &mut Writer<'_>, field, value| {
                    let text = format!("{value:?}");
                    if field.name() == "message" {
                        write!(w, "{}", Escaped(&text))
                    } else {
                        write!(w, "{}={}", field.name(), Escaped(&text))
                    }
                })
                .delimited(" "),
            )
            .init(),
    }
}

/// A string from outside, fit for a log line: escaped and cut. Use as `field = %Untrusted(&text)`.
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(MAX_UNTRUSTED_CHARS) {
            write_escaped(f, c)?;
        }
        if chars.next().is_some() {
            f.write_char('…')?;
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Control characters escaped, nothing cut (the text format's guard for every field).
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.chars().try_for_each(|c| write_escaped(f, c))
    }
}

/// Characters that change what a terminal or a reader sees: C0/C1 controls (newline, ESC, …) and the bidi
/// overrides and isolates that reorder text.
fn is_dangerous(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn write_escaped(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    match c {
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        c if is_dangerous(c) => write!(f, "\\u{{{:x}}}", c as u32),
        c => f.write_char(c),
    }
}

/// A secret-free description of `e` (never the URL: it may carry a token in its query).
pub fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_cannot_break_a_line_or_drive_a_terminal() {
        let forged = "x\n2026-12-02T00:00:00Z  INFO vkhook: admin signed in\u{1b}[31m\u{202e}";
        let shown = Untrusted(forged).to_string();
        assert!(!shown.chars().any(is_dangerous), "{shown}");
        assert_eq!(shown, "x\\n2026-12-02T00:00:00Z  INFO vkhook: admin signed in\\u{1b}[31m\\u{202e}");
        assert_eq!(Untrusted("Иван: привет").to_string(), "Иван: привет", "ordinary text stays as it is");
    }

    #[test]
    fn untrusted_text_is_cut() {
        let long = "я".repeat(MAX_UNTRUSTED_CHARS + 50);
        let shown = Untrusted(&long).to_string();
        assert_eq!(shown.chars().count(), MAX_UNTRUSTED_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(Untrusted(&long[..2 * MAX_UNTRUSTED_CHARS]).to_string().chars().count(), MAX_UNTRUSTED_CHARS);
    }
}
