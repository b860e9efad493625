//! Sending one claimed batch: the endpoint's deliveries, at most [`ForwardSettings::concurrency`] at once, each
//! signed and judged; then the batch's results in one group commit, which also gives the endpoint back.
//!
//! - A delivery that fails waits for its next attempt by the schedule (or the endpoint's `Retry-After`); after the
//!   last one it is given up.
//! - When the endpoint itself fails (no connection, a timeout, 429 or 5xx), the rest of the batch is not tried now:
//!   it goes back, untried, to wait as long as the failed one does. A 4xx for one event does not hold the others.
//! - 410 disables the endpoint at once; failing without a success for `disable_after` disables it too.
//! - A batch stops taking new deliveries after half its lease, so the lease never runs out while it sends.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use vk::GroupId;

use axum::http::{header, StatusCode};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::attempt::{self, Judgement, Next};
use super::signing::{signature_header, webhook_id, SigningKey};
use super::Forwarding;
use crate::logging::describe;
use crate::model::DisabledReason;
use crate::store::{
    now_ms, AttemptRecord, ClaimedBatch, ClaimedDelivery, DeliveryNext, DeliveryOutcome, DeliveryResults,
    EndpointHealth,
};

/// How much of an answer is read (the rest is dropped with the connection) and how much of it is kept.
const READ_LIMIT: usize = 64 * 1024;
const KEEP: usize = 300;
/// A batch records its results every this many deliveries.
const RECORD_EVERY: usize = 64;

/// One attempt's result, before the batch decides what it means for the rest.
struct Tried {
    record: AttemptRecord,
    judgement: Judgement,
    /// The endpoint itself failed (not this event): hold the rest of the batch.
    endpoint_down: bool,
}

impl Forwarding {
    /// Sends a claimed batch and records its results (then the endpoint is free to be claimed again).
    pub async fn deliver_batch(&self, owner: &str, batch: ClaimedBatch) {
        let ClaimedBatch { endpoint, deliveries } = batch;
        let started = Instant::now();
        let keys = match self.signing_keys(&endpoint, now_ms()) {
            Ok(keys) => Arc::new(keys),
            Err(e) => {
                // Never sent unsigned: the batch waits until an operator gives the key back.
                tracing::error!(endpoint = %endpoint.id, error = %e, "endpoint secret does not open: deliveries wait");
                let later = now_ms() + self.settings.lease.as_millis() as i64;
                let outcomes = deliveries.iter().map(|d| release(d.id, later)).collect();
                self.record(owner, &endpoint, outcomes, None, None, true).await;
                return;
            }
        };
        let url = Arc::new(endpoint.url.clone());
        let gate = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        // Set when the endpoint fails: (until when the rest waits).
        let held = Arc::new(std::sync::Mutex::new(None::<i64>));
        let budget = self.settings.lease / 2;
        let mut tasks = JoinSet::new();
        let mut outcomes = Vec::with_capacity(RECORD_EVERY);
        let mut fared = Fared::default();
        for d in deliveries {
            let permit = gate.clone().acquire_owned().await.expect("the gate is never closed");
            let hold = *held.lock().expect("not poisoned");
            if hold.is_some() || started.elapsed() > budget {
                outcomes.push(release(d.id, hold.unwrap_or(0)));
                continue;
            }
            let (this, keys, url, held) = (self.clone(), keys.clone(), url.clone(), held.clone());
            tasks.spawn(async move {
                let tried = this.attempt(&url, &keys, &d).await;
                if tried.endpoint_down {
                    let next = this.next_after(&d, &tried.judgement);
                    if let DeliveryNext::RetryAt(at) = next {
                        held.lock().expect("not poisoned").get_or_insert(at);
                    }
                }
                drop(permit);
                (d, tried)
            });
            // Collect what finished; a long batch records its results in parts, so each commit stays small (ingest
            // shares it) and a crash re-sends less.
            while let Some(done) = tasks.try_join_next() {
                outcomes.push(self.outcome(done));
            }
            if outcomes.len() >= RECORD_EVERY {
                fared.add(&outcomes);
                self.record(owner, &endpoint, std::mem::take(&mut outcomes), None, None, false).await;
            }
        }
        while let Some(done) = tasks.join_next().await {
            outcomes.push(self.outcome(done));
        }
        fared.add(&outcomes);
        // The endpoint itself failed: it backs off with every delivery it has, new events' too, so a dead endpoint
        // does not come back for each new event and hold a sender's slot again.
        let backoff = *held.lock().expect("not poisoned");
        self.record(owner, &endpoint, outcomes, fared.health(), backoff, true).await;
    }

    fn outcome(&self, done: Result<(ClaimedDelivery, Tried), tokio::task::JoinError>) -> DeliveryOutcome {
        let (d, tried) = done.expect("an attempt does not panic");
        DeliveryOutcome { delivery_id: d.id, next: self.next_after(&d, &tried.judgement), attempt: Some(tried.record) }
    }

    fn next_after(&self, d: &ClaimedDelivery, judgement: &Judgement) -> DeliveryNext {
        match attempt::next(&self.settings.schedule, d.attempts.max(1) as u32, judgement) {
            Next::Done => DeliveryNext::Delivered,
            Next::RetryIn(wait) => DeliveryNext::RetryAt(now_ms() + wait.as_millis() as i64),
            Next::GiveUp | Next::DisableEndpoint => DeliveryNext::Failed,
        }
    }

    async fn record(
        &self,
        owner: &str,
        endpoint: &crate::store::EndpointRow,
        outcomes: Vec<DeliveryOutcome>,
        health: Option<EndpointHealth>,
        backoff_until: Option<i64>,
        release: bool,
    ) {
        let endpoint_id = endpoint.id.as_str();
        let results = DeliveryResults {
            endpoint_id: endpoint_id.to_owned(),
            owner: owner.to_owned(),
            outcomes,
            health,
            failing_cutoff: now_ms() - self.settings.disable_after.as_millis() as i64,
            release,
            backoff_until,
        };
        match self.writer.deliveries(results).await {
            Ok(settled) => {
                let lost = settled.settled.iter().filter(|s| !**s).count();
                if lost > 0 {
                    tracing::warn!(endpoint = %endpoint_id, lost, "deliveries were taken over before their results");
                }
                if let Some(reason) = settled.disabled {
                    match reason {
                        DisabledReason::Gone => {
                            tracing::warn!(endpoint = %endpoint_id, "endpoint answered 410 Gone: disabled")
                        }
                        _ => tracing::warn!(endpoint = %endpoint_id, %reason, "endpoint disabled"),
                    }
                    self.disabled(endpoint, reason);
                }
            }
            // Its deliveries are sent again once their lease runs out: at least once.
            Err(e) => tracing::warn!(endpoint = %endpoint_id, error = %e, "could not record deliveries"),
        }
    }

    /// One signed POST, judged. The address is checked again first: a stored address that names an internal IP
    /// literal (stored before a policy change, or by hand) is never dialled — names are checked after DNS by the
    /// client's resolver, literals are not resolved.
    async fn attempt(&self, url: &str, keys: &[SigningKey], d: &ClaimedDelivery) -> Tried {
        let checked = url::Url::parse(url).map_err(|_| super::target::Refused::NoHost);
        if let Err(refused) = checked.and_then(|u| super::target::check_url(&u, self.settings.policy)) {
            let record = AttemptRecord {
                attempt: d.attempts,
                at: now_ms(),
                status_code: None,
                error: Some(refused.to_string()),
                duration_ms: 0,
                response: None,
            };
            return Tried { record, judgement: Judgement::Failed { at_least: None }, endpoint_down: true };
        }
        let id = webhook_id(GroupId(d.group_id), &d.event_id);
        let timestamp = (now_ms() / 1000).to_string();
        let refs: Vec<&SigningKey> = keys.iter().collect();
        let signature = signature_header(&refs, &id, timestamp.parse().unwrap_or_default(), d.payload.as_bytes());
        let at = now_ms();
        let started = Instant::now();
        let sent = self
            .client
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, concat!("vkhook/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", &id)
            .header("webhook-timestamp", &timestamp)
            .header("webhook-signature", signature)
            .body(d.payload.clone())
            .send()
            .await;
        let (status_code, error, response, judgement, endpoint_down) = match sent {
            Ok(mut answer) => {
                let status = answer.status();
                let judgement = attempt::judge(status, answer.headers(), SystemTime::now());
                let mut body = Vec::new();
                let mut read_error = None;
                while body.len() < READ_LIMIT {
                    match answer.chunk().await {
                        Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(READ_LIMIT - body.len())]),
                        Ok(None) => break,
                        Err(e) => {
                            read_error = Some(describe(&e));
                            break;
                        }
                    }
                }
                let text: String = String::from_utf8_lossy(&body).chars().take(KEEP).collect();
                let down = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                let error = read_error.or_else(|| (!status.is_success()).then(|| format!("HTTP {}", status.as_u16())));
                (Some(status.as_u16() as i64), error, Some(text), judgement, down)
            }
            Err(e) => (None, Some(describe(&e)), None, Judgement::Failed { at_least: None }, true),
        };
        let duration_ms = started.elapsed().min(Duration::from_secs(3600)).as_millis() as i64;
        let record = AttemptRecord { attempt: d.attempts, at, status_code, error, duration_ms, response };
        Tried { record, judgement, endpoint_down }
    }
}

fn release(delivery_id: i64, not_before: i64) -> DeliveryOutcome {
    DeliveryOutcome { delivery_id, attempt: None, next: DeliveryNext::Release { not_before } }
}

/// How the endpoint fared over a batch: gone if it said 410; healthy if anything got through; failing since the
/// first failure otherwise; unknown if nothing was tried.
#[derive(Default)]
struct Fared {
    gone: bool,
    succeeded: bool,
    first_failure: Option<i64>,
}

impl Fared {
    fn add(&mut self, outcomes: &[DeliveryOutcome]) {
        for o in outcomes {
            let Some(a) = &o.attempt else { continue };
            self.gone |= a.status_code == Some(410);
            if o.next == DeliveryNext::Delivered {
                self.succeeded = true;
            } else {
                self.first_failure = Some(self.first_failure.map_or(a.at, |f| f.min(a.at)));
            }
        }
    }

    fn health(&self) -> Option<EndpointHealth> {
        if self.gone {
            Some(EndpointHealth::Gone)
        } else if self.succeeded {
            Some(EndpointHealth::Succeeded)
        } else {
            self.first_failure.map(|at| EndpointHealth::Failed { at })
        }
    }
}
