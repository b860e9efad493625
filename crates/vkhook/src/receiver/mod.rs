//! `POST /vk/callback`, the hot path: parse (pure), find the community, check the secret in constant time,
//! answer `confirmation` with the stored code, and store every other event durably before answering `ok`.
//!
//! - Concurrent requests share commits: a writer task takes every event waiting and inserts them in one
//!   transaction (one fsync), then answers them all.
//! - Secrets are cached in memory; a mismatch re-reads the store before refusing, so a changed secret is never
//!   served stale. Codes are always read from the store (confirmations are rare and must be current).
//! - No session layer, no templates, no VK calls here.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::app::AppState;
use crate::metrics::Metrics;
use crate::store::{now_ms, Inserted, NewInboxEvent, Store, StoreError};
use crate::vault::{Slot, Vault};

/// Crash point for tests: the next event is refused with 503 (as if the store were down) before storing.
pub const FAIL_NEXT_EVENT: &str = "receiver:fail_next_event";

/// Largest request body VK may send us.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// How long a cached community is trusted before it is read again.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// What we ask VK to wait when the store cannot commit.
const RETRY_AFTER_SECS: &str = "10";

/// What the receiver knows about a community.
struct Entry {
    /// Known here but not set up (never, or disconnected): VK should drop its server.
    disconnected: bool,
    secret: Option<SecretString>,
    previous_secret: Option<SecretString>,
    manual_waiting: bool,
    loaded: Instant,
}

pub struct Receiver {
    cache: RwLock<HashMap<i64, Arc<Entry>>>,
    queue: mpsc::Sender<Pending>,
}

struct Pending {
    event: NewInboxEvent,
    done: oneshot::Sender<Result<Inserted, Arc<StoreError>>>,
}

impl Receiver {
    /// Starts the group-commit writers (one for SQLite, which has a single writer anyway; several for PostgreSQL).
    pub fn start(store: Store, writers: usize, metrics: Arc<Metrics>) -> Receiver {
        let (queue, rx) = mpsc::channel::<Pending>(8192);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_batches(store.clone(), rx.clone(), metrics.clone()));
        }
        Receiver { cache: RwLock::new(HashMap::new()), queue }
    }

    /// Forgets what is cached for a community (after connecting, disconnecting or a new secret here).
    pub fn invalidate(&self, group_id: i64) {
        self.cache.write().unwrap_or_else(|e| e.into_inner()).remove(&group_id);
    }

    fn cached(&self, group_id: i64) -> Option<Arc<Entry>> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        cache.get(&group_id).filter(|e| e.loaded.elapsed() < CACHE_TTL).cloned()
    }

    async fn load(&self, store: &Store, vault: &Vault, group_id: i64) -> Result<Option<Arc<Entry>>, StoreError> {
        let Some(s) = store.community_settings(group_id).await? else {
            self.invalidate(group_id);
            return Ok(None);
        };
        let row = group_id.to_string();
        let open = |column: &'static str, sealed: &Option<String>| {
            sealed.as_deref().and_then(|v| vault.open(Slot { table: "community_settings", column, row: &row }, v).ok())
        };
        let entry = Arc::new(Entry {
            disconnected: s.secret.is_none() && s.confirmation_code.is_none(),
            secret: open("secret", &s.secret),
            previous_secret: open("previous_secret", &s.previous_secret),
            manual_waiting: s.setup_mode == "manual" && !s.callback_configured,
            loaded: Instant::now(),
        });
        self.cache.write().unwrap_or_else(|e| e.into_inner()).insert(group_id, entry.clone());
        Ok(Some(entry))
    }

    /// Queues an event for the next group commit and waits until it is durable.
    async fn store_event(&self, event: NewInboxEvent) -> Result<Inserted, Arc<StoreError>> {
        let (done, wait) = oneshot::channel();
        let closed = || Arc::new(StoreError::Io(std::io::Error::other("the inbox writer stopped")));
        self.queue.send(Pending { event, done }).await.map_err(|_| closed())?;
        wait.await.map_err(|_| closed())?
    }
}

/// Most events one commit takes.
const MAX_BATCH: usize = 512;

async fn write_batches(store: Store, rx: Arc<Mutex<mpsc::Receiver<Pending>>>, metrics: Arc<Metrics>) {
    let mut events: Vec<NewInboxEvent> = Vec::with_capacity(MAX_BATCH);
    let mut waiting: Vec<oneshot::Sender<Result<Inserted, Arc<StoreError>>>> = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            events.push(first.event);
            waiting.push(first.done);
            while events.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => {
                        events.push(p.event);
                        waiting.push(p.done);
                    }
                    Err(_) => break,
                }
            }
        }
        metrics.observe_batch(events.len());
        match store.insert_inbox_batch(&events).await {
            Ok(results) => {
                for (done, r) in waiting.drain(..).zip(results) {
                    let _ = done.send(Ok(r));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = events.len(), "inbox commit failed; VK will retry");
                let e = Arc::new(e);
                for done in waiting.drain(..) {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
        events.clear();
    }
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], body).into_response()
}

fn unavailable() -> Response {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable, retry later");
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    r
}

fn matches(secret: &Option<SecretString>, supplied: &[u8]) -> bool {
    secret.as_ref().is_some_and(|s| vk::callback::secret_eq(s, supplied))
}

enum SecretCheck {
    Current,
    Previous,
    NotRequired,
    Wrong,
}

fn check_secret(entry: &Entry, supplied: Option<&[u8]>) -> SecretCheck {
    if entry.secret.is_none() && entry.previous_secret.is_none() {
        return SecretCheck::NotRequired;
    }
    let supplied = supplied.unwrap_or_default();
    if matches(&entry.secret, supplied) {
        SecretCheck::Current
    } else if matches(&entry.previous_secret, supplied) {
        SecretCheck::Previous
    } else {
        SecretCheck::Wrong
    }
}

pub async fn receive_callback(State(app): State<AppState>, body: Bytes) -> Response {
    let started = Instant::now();
    let response = handle(&app, &body).await;
    app.metrics.observe_callback(response.1, response.0.status().as_u16(), started.elapsed());
    response.0
}

/// The response and the event type (for metrics).
async fn handle(app: &AppState, body: &[u8]) -> (Response, &'static str) {
    let envelope = match vk::parse(body) {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(error = %e, "malformed callback body");
            return (
                (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], e.0).into_response(),
                "malformed",
            );
        }
    };
    let kind = crate::metrics::event_label(&envelope.event_type);
    let Some(group_id) = envelope.group_id else {
        return (text(StatusCode::BAD_REQUEST, "missing field \"group_id\""), kind);
    };
    let receiver = &app.receiver;
    let mut entry = match receiver.cached(group_id) {
        Some(e) => Some(e),
        None => match receiver.load(&app.store, &app.vault, group_id).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(group_id, error = %e, "store unavailable while receiving");
                return (unavailable(), kind);
            }
        },
    };
    let Some(mut current) = entry.take() else {
        tracing::info!(group_id, "callback for an unknown community");
        return (text(StatusCode::NOT_FOUND, "unknown community"), kind);
    };
    let mut check = check_secret(&current, envelope.secret_bytes());
    if matches!(check, SecretCheck::Wrong) || current.disconnected {
        // Maybe it changed (another instance, a new setup): read again before refusing.
        match receiver.load(&app.store, &app.vault, group_id).await {
            Ok(Some(fresh)) => {
                check = check_secret(&fresh, envelope.secret_bytes());
                current = fresh;
            }
            Ok(None) => return (text(StatusCode::NOT_FOUND, "unknown community"), kind),
            Err(_) => return (unavailable(), kind),
        }
    }
    if current.disconnected {
        // Disconnected here but VK still sends: `remove` makes VK delete the server.
        tracing::info!(group_id, "callback for a disconnected community: answering remove");
        return (text(StatusCode::OK, "remove"), kind);
    }
    if matches!(check, SecretCheck::Wrong) {
        tracing::warn!(group_id, event_type = %envelope.event_type, "callback with a wrong secret refused");
        return (text(StatusCode::FORBIDDEN, "wrong secret"), kind);
    }
    if envelope.is_confirmation() {
        return (confirm(app, group_id).await, kind);
    }
    let event_id = match envelope.event_id.as_deref() {
        Some(id) if !id.is_empty() && id.len() <= 128 => id.to_owned(),
        _ => return (text(StatusCode::BAD_REQUEST, "missing field \"event_id\""), kind),
    };
    if app.hooks.fire(FAIL_NEXT_EVENT) {
        return (unavailable(), kind);
    }
    let event = NewInboxEvent {
        group_id,
        event_type: envelope.event_type.clone(),
        payload: envelope.to_json_without_secret(),
        event_id,
        received_at: now_ms(),
    };
    match receiver.store_event(event).await {
        Ok(inserted) => {
            if inserted == Inserted::New {
                app.bot_wakeup.notify_one();
            }
            if matches!(check, SecretCheck::Current) && current.previous_secret.is_some() {
                after_new_secret(app, group_id);
            }
            if current.manual_waiting {
                first_manual_event(app, group_id);
            }
            // Exactly `ok`: no newline, HTTP 200.
            (text(StatusCode::OK, "ok"), kind)
        }
        Err(e) => {
            tracing::warn!(group_id, error = %e, "event not stored: 503, VK will retry");
            (unavailable(), kind)
        }
    }
}

async fn confirm(app: &AppState, group_id: i64) -> Response {
    // Always the stored code, never a cached one: it was committed just before VK asks.
    match app.store.community_settings(group_id).await {
        Ok(Some(settings)) => {
            if let Err(e) = app.store.record_confirmation_request(group_id).await {
                tracing::warn!(group_id, error = %e, "could not record the confirmation request");
            }
            match settings.confirmation_code {
                Some(code) if !code.is_empty() => {
                    tracing::info!(group_id, "answered VK's confirmation request");
                    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], code).into_response()
                }
                _ => text(StatusCode::NOT_FOUND, "no confirmation code"),
            }
        }
        Ok(None) => text(StatusCode::NOT_FOUND, "unknown community"),
        Err(_) => unavailable(),
    }
}

/// An event came with the new secret: stop accepting the previous one.
fn after_new_secret(app: &AppState, group_id: i64) {
    let app = app.clone();
    tokio::spawn(async move {
        match app.store.retire_previous_secret(group_id).await {
            Ok(()) => app.receiver.invalidate(group_id),
            Err(e) => tracing::warn!(group_id, error = %e, "could not retire the previous secret"),
        }
    });
}

/// The first event of a manually set up community: it is connected.
fn first_manual_event(app: &AppState, group_id: i64) {
    let app = app.clone();
    tokio::spawn(async move {
        match app.store.mark_manual_connected(group_id).await {
            Ok(true) => {
                tracing::info!(group_id, "first event of a manually connected community");
                app.receiver.invalidate(group_id);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(group_id, error = %e, "could not mark the manual connection"),
        }
    });
}

/// The secret VK must send for a community, decrypted (for tests and the load benchmark).
pub fn current_secret(vault: &Vault, group_id: i64, sealed: &str) -> Option<SecretString> {
    let row = group_id.to_string();
    vault.open(Slot { table: "community_settings", column: "secret", row: &row }, sealed).ok()
}
