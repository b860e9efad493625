//! «Проверить путь»: proves, from the admin's side, that VK can reach vkhook. A synthetic event goes to
//! `VKHOOK_PUBLIC_URL/vk/callback` — through the admin's DNS, proxy and TLS, the way VK would come — signed with the
//! community's secret. The receiver answers it `ok` without storing it (`urls::PATH_CHECK_TYPE`), so the bot
//! and forwarding never see it and it is not counted as a VK event. What came back is recorded and shown: arrived
//! (and how fast), no connection, a TLS error, a redirect (VK does not follow them), or an answer other than `ok`.

use std::time::{Duration, Instant};
use vk::GroupId;

use secrecy::ExposeSecret;

use super::Reconciler;
use crate::model::PathOutcome;
use crate::store::{now_ms, StoreResult};

/// How long the proof waits (VK itself gives a server a few seconds).
const TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a wrong answer is kept.
const KEEP: usize = 200;

impl Reconciler {
    /// Sends the synthetic event and records what came of it; `None` when the community has no secret (not
    /// connected).
    pub async fn prove_path(&self, group_id: GroupId) -> StoreResult<Option<(PathOutcome, String)>> {
        let secrets = self.credentials.callback_secrets(group_id, true).await?;
        let Some(secret) = secrets.and_then(|s| s.secret.clone()) else { return Ok(None) };
        let url = self.connector.callback_url();
        let body = serde_json::json!({"type": crate::urls::PATH_CHECK_TYPE, "object": {}, "group_id": group_id,
            "event_id": format!("path-check-{}", vk::oauth::random_urlsafe(12)), "v": vk::API_VERSION,
            "secret": secret.expose_secret()})
        .to_string();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .expect("a reqwest client with rustls builds");
        let started = Instant::now();
        let (outcome, detail) = match client.post(&url).body(body).send().await {
            Ok(answer) => {
                let status = answer.status();
                let location =
                    answer.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_owned();
                let text = answer.text().await.unwrap_or_default();
                if status.is_success() && text == "ok" {
                    // Through a local proxy it can take well under a millisecond: "< 1", not "0".
                    let ms = match started.elapsed().as_millis() {
                        0 => "< 1".to_owned(),
                        ms => ms.to_string(),
                    };
                    (PathOutcome::Arrived, ms)
                } else if status.is_redirection() {
                    (PathOutcome::Redirect, format!("{} → {}", status.as_u16(), cut(&location)))
                } else {
                    (PathOutcome::Answered, format!("{}: {}", status.as_u16(), cut(&text)))
                }
            }
            Err(e) if e.is_timeout() => (PathOutcome::Timeout, format!("{} s", TIMEOUT.as_secs())),
            Err(e) => {
                let words = crate::logging::describe(&e);
                let tls = ["certificate", "tls", "handshake", "ssl"].iter().any(|w| words.to_lowercase().contains(w));
                (if tls { PathOutcome::Tls } else { PathOutcome::Unreachable }, words)
            }
        };
        if outcome == PathOutcome::Arrived {
            tracing::info!(group_id = group_id.0, ms = %detail, "the path from VK's side works");
        } else {
            tracing::warn!(group_id = group_id.0, %outcome, detail = %crate::logging::Untrusted(&detail), "the path from VK's side fails");
        }
        self.store.record_path_check(group_id, now_ms(), outcome, &detail).await?;
        Ok(Some((outcome, detail)))
    }
}

fn cut(text: &str) -> String {
    text.trim().chars().take(KEEP).collect()
}
