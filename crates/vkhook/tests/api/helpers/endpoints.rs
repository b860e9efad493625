//! What vkhook talks to besides VK: a developer's endpoint for forwarded events and an SMTP server.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// One request a [`Hook`] received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What the hook answered.
    pub status: u16,
    /// When the request arrived.
    pub at: std::time::Instant,
}

impl Received {
    pub fn webhook_id(&self) -> &str {
        self.headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    pub fn signature(&self) -> &str {
        self.headers.get("webhook-signature").and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    pub fn event(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The Standard Webhooks reference library accepts the request under `secret`.
    pub fn verifies_with(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret).unwrap().verify(&self.body, &self.headers).is_ok()
    }
}

#[derive(Default)]
struct HookState {
    received: Mutex<Vec<Received>>,
    /// Answers for the next requests, in order (a status and a `Retry-After`); 200 once they are used up.
    script: Mutex<std::collections::VecDeque<(u16, Option<u64>)>>,
    /// The answer once the script is used up.
    otherwise: std::sync::atomic::AtomicU16,
    /// How long each answer takes.
    delay_ms: std::sync::atomic::AtomicU64,
    inflight: AtomicUsize,
    max_inflight: AtomicUsize,
    /// webhook-ids being answered right now; set when one arrives while it is.
    active: Mutex<std::collections::HashSet<String>>,
    same_id_at_once: AtomicBool,
}

/// A developer's endpoint for forwarded events, on loopback: records every request, answers as scripted.
pub struct Hook {
    pub url: String,
    state: Arc<HookState>,
}

/// Marks one request in flight; unmarks it when the request ends, also when the sender hung up (a killed
/// process) and the answer is dropped unfinished.
struct InFlight(Arc<HookState>, String);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
        self.0.active.lock().unwrap().remove(&self.1);
    }
}

async fn hook_answer(State(s): State<Arc<HookState>>, headers: HeaderMap, body: Bytes) -> Response {
    let at = std::time::Instant::now();
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if !s.active.lock().unwrap().insert(id.clone()) {
        s.same_id_at_once.store(true, Ordering::SeqCst);
    }
    let now = s.inflight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_inflight.fetch_max(now, Ordering::SeqCst);
    let _in_flight = InFlight(s.clone(), id);
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let otherwise = match s.otherwise.load(Ordering::SeqCst) {
        0 => 200,
        status => status,
    };
    let (status, retry_after) = s.script.lock().unwrap().pop_front().unwrap_or((otherwise, None));
    s.received.lock().unwrap().push(Received { headers, body, status, at });
    let mut answer = (StatusCode::from_u16(status).unwrap(), "thanks").into_response();
    if let Some(secs) = retry_after {
        answer.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
    }
    answer
}

impl Hook {
    pub async fn start() -> Hook {
        let state = Arc::new(HookState::default());
        let app = axum::Router::new().fallback(hook_answer).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Hook { url, state }
    }

    /// The next requests get these statuses.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.state.script.lock().unwrap().extend(statuses.iter().map(|s| (*s, None)));
    }

    /// The next request gets `status` with `Retry-After: secs`.
    pub fn answer_next_retry_after(&self, status: u16, secs: u64) {
        self.state.script.lock().unwrap().push_back((status, Some(secs)));
    }

    /// Every request after the script gets `status`.
    pub fn answer_always(&self, status: u16) {
        self.state.otherwise.store(status, Ordering::SeqCst);
    }

    pub fn set_delay(&self, d: Duration) {
        self.state.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Requests for the event with VK's `event_id`.
    pub fn of_event(&self, event_id: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.event()["event_id"] == event_id).collect()
    }

    /// Most requests it was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_inflight.load(Ordering::SeqCst)
    }

    /// One event was being answered twice at the same time.
    pub fn saw_the_same_event_at_once(&self) -> bool {
        self.state.same_id_at_once.load(Ordering::SeqCst)
    }
}

/// An SMTP server for the tests (plain SMTP on loopback, no TLS): takes every message and keeps it.
pub struct SmtpSink {
    pub url: String,
    mails: Arc<Mutex<Vec<Mail>>>,
}

#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    /// The message as sent (headers and body).
    pub data: String,
}

impl Mail {
    /// The body, decoded (lettre sends non-ASCII text as quoted-printable or base64).
    pub fn text(&self) -> String {
        let (headers, body) = self.data.split_once("\r\n\r\n").unwrap_or(("", &self.data));
        let lower = headers.to_ascii_lowercase();
        if lower.contains("content-transfer-encoding: base64") {
            use base64::Engine;
            let clean: String = body.split_whitespace().collect();
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(clean).unwrap()).unwrap()
        } else if lower.contains("content-transfer-encoding: quoted-printable") {
            let joined = body.replace("=\r\n", "");
            let mut bytes = Vec::new();
            let mut it = joined.bytes();
            while let Some(b) = it.next() {
                if b == b'=' {
                    let hex: Vec<u8> = it.by_ref().take(2).collect();
                    bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
                } else {
                    bytes.push(b);
                }
            }
            String::from_utf8(bytes).unwrap()
        } else {
            body.to_owned()
        }
    }
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let kept = mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 sink ESMTP\r\n").await?;
                    let (mut to, mut data, mut in_data) = (Vec::new(), String::new(), false);
                    while let Some(line) = lines.next_line().await? {
                        if in_data {
                            if line == "." {
                                in_data = false;
                                kept.lock()
                                    .unwrap()
                                    .push(Mail { to: std::mem::take(&mut to), data: std::mem::take(&mut data) });
                                write.write_all(b"250 kept\r\n").await?;
                            } else {
                                data.push_str(
                                    line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line),
                                );
                                data.push_str("\r\n");
                            }
                            continue;
                        }
                        let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
                        let answer: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250 sink\r\n",
                            "RCPT" => {
                                to.push(line.split(['<', '>']).nth(1).unwrap_or_default().to_owned());
                                b"250 ok\r\n"
                            }
                            "DATA" => {
                                in_data = true;
                                b"354 go on\r\n"
                            }
                            "QUIT" => {
                                write.write_all(b"221 bye\r\n").await?;
                                break;
                            }
                            _ => b"250 ok\r\n",
                        };
                        write.write_all(answer).await?;
                    }
                    std::io::Result::Ok(())
                });
            }
        });
        SmtpSink { url, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}
