//! The background loops: the bot workers (claim events, let [`crate::bot::Bot`] handle them), the forwarding sender
//! (claim deliveries, let [`crate::forward::Forwarding`] send them) and the periodic reconcile pass; at start, setups a previous process left half-done are resumed.

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::app::AppState;
use crate::store::now_ms;

/// After a wake-up for a stored event that found nothing to claim, how long the bot loop waits before claiming
/// again: new events are claimed at most this often, however fast they arrive.
const CLAIM_COALESCE: std::time::Duration = std::time::Duration::from_millis(10);
/// The same for forwarding, shorter: a forwarded event's latency is the product.
const FORWARD_COALESCE: std::time::Duration = std::time::Duration::from_millis(5);
/// While ingest is busy, a forwarding claim takes at most this many deliveries of an endpoint.
const BATCH_UNDER_LOAD: i64 = 100;
/// While ingest is busy, forwarding claims at most this often.
const FORWARD_UNDER_LOAD: std::time::Duration = std::time::Duration::from_millis(100);

/// The running loops; [`Workers::stop`] ends them and waits.
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts what this instance's role runs.
pub fn start(app: AppState) -> Workers {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    let resume = app.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = resume.connector.resume_abandoned().await {
            tracing::warn!(error = %e, "could not look for interrupted setups");
        }
    }));
    tasks.push(tokio::spawn(run_housekeeping(app.clone(), stopped.clone())));
    if app.settings.role.runs_workers() {
        tasks.push(tokio::spawn(run_bot(app.clone(), stopped.clone())));
        tasks.push(tokio::spawn(run_forwarder(app.clone(), stopped.clone())));
        tasks.push(tokio::spawn(app.poller.owned_by(&app.instance_id).run(stopped.clone())));
        tasks.push(tokio::spawn(run_reconciler(app, stopped)));
    }
    Workers { stop, tasks }
}

impl Workers {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Claims runs of due events (one run per community, in order) while there is room, and handles each run on a
/// task of its own; sleeps until woken, a task ends, or the poll interval passes. On stop, finishes what it holds and
/// gives up its community leases so another instance takes over at once.
async fn run_bot(app: AppState, mut stop: watch::Receiver<bool>) {
    let owner = app.instance_id.clone();
    let timing = app.settings.timing.clone();
    let mut inflight: JoinSet<()> = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let room = timing.bot_concurrency.saturating_sub(inflight.len());
        let mut claimed = 0;
        if room > 0 {
            let now = now_ms();
            let lease_until = now + timing.bot_lease.as_millis() as i64;
            match app.store.claim_inbox_runs(&owner, now, lease_until, room as i64, timing.bot_run).await {
                Ok(runs) => {
                    claimed = runs.len();
                    for run in runs {
                        let (bot, owner) = (app.bot.clone(), owner.clone());
                        inflight.spawn(async move { bot.process_run(&owner, run).await });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "bot: could not claim events"),
            }
        }
        if claimed > 0 && inflight.len() < timing.bot_concurrency {
            continue;
        }
        let stored_event = tokio::select! {
            _ = app.bot.control().wakeup().notified() => true,
            Some(_) = inflight.join_next(), if !inflight.is_empty() => false,
            _ = tokio::time::sleep(timing.bot_poll) => false,
            _ = stop.changed() => false,
        };
        if stored_event && claimed == 0 {
            // A burst stores thousands of events a second, each waking us; a claim per event would queue write
            // transactions against the receiver's commits. Let the burst gather first (a reply waits ≤ this).
            tokio::time::sleep(CLAIM_COALESCE).await;
        }
    }
    while inflight.join_next().await.is_some() {}
    if let Err(e) = app.store.release_community_leases(&owner).await {
        tracing::warn!(error = %e, "could not release community leases");
    }
}

/// Claims batches of due deliveries (one batch per endpoint, under the endpoint's lease) while there is room, and
/// sends each on a task of its own; sleeps until woken by a stored event, a batch ends, or the poll interval passes.
/// On stop, finishes its batches (recording them gives their endpoints back) and releases what it still holds.
async fn run_forwarder(app: AppState, mut stop: watch::Receiver<bool>) {
    let owner = app.instance_id.clone();
    let settings = app.forwarding.settings().clone();
    let mut inflight: JoinSet<()> = JoinSet::new();
    let mut last_claim = std::time::Instant::now();
    loop {
        if *stop.borrow() {
            break;
        }
        let room = settings.endpoints_at_once.saturating_sub(inflight.len());
        let mut claimed = 0;
        // While VK sends as fast as we store, ingest comes first: claims (and the sending they start) are spaced
        // out, so a burst is stored at full speed and forwarded right after (its queue is durable).
        let yielding = app.forwarding.ingest_busy() && last_claim.elapsed() < FORWARD_UNDER_LOAD;
        if room > 0 && !yielding {
            last_claim = std::time::Instant::now();
            let now = now_ms();
            let lease_until = now + settings.lease.as_millis() as i64;
            // Under load, smaller claims: each is a write transaction beside ingest's commits.
            let batch =
                if app.forwarding.ingest_busy() { settings.batch.min(BATCH_UNDER_LOAD) } else { settings.batch };
            let share = settings.community_share;
            match app.store.claim_deliveries(&owner, now, lease_until, room as i64, batch, share).await {
                Ok(batches) => {
                    claimed = batches.len();
                    for batch in batches {
                        let (forwarding, owner) = (app.forwarding.clone(), owner.clone());
                        inflight.spawn(async move { forwarding.deliver_batch(&owner, batch).await });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "forwarding: could not claim deliveries"),
            }
        }
        if claimed > 0 && inflight.len() < settings.endpoints_at_once {
            continue;
        }
        let stored_event = tokio::select! {
            _ = app.forwarding.wakeup().notified() => true,
            Some(_) = inflight.join_next(), if !inflight.is_empty() => false,
            _ = tokio::time::sleep(settings.poll) => false,
            _ = stop.changed() => false,
        };
        if stored_event && claimed == 0 {
            // As for the bot: let a burst gather instead of a claim per event.
            tokio::time::sleep(FORWARD_COALESCE).await;
        }
    }
    while inflight.join_next().await.is_some() {}
    if let Err(e) = app.store.release_endpoint_leases(&owner).await {
        tracing::warn!(error = %e, "could not release endpoint leases");
    }
}

/// Waits `every`; false when the loops are told to stop (then at once).
async fn tick(every: std::time::Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(every) => {}
        _ = stop.changed() => return false,
    }
    !*stop.borrow()
}

/// Every `housekeeping_every`, on every instance: removes expired sessions (anonymous ones after minutes unused),
/// stale pending authorizations and previous secrets past their window.
async fn run_housekeeping(app: AppState, mut stop: watch::Receiver<bool>) {
    let timing = app.settings.timing.clone();
    let every = timing.housekeeping_every.max(std::time::Duration::from_millis(10));
    while tick(every, &mut stop).await {
        let now = now_ms();
        let before = |d: std::time::Duration| now - d.as_millis() as i64;
        let sessions = app
            .store
            .delete_expired_sessions(
                before(timing.session_idle),
                before(timing.session_absolute),
                before(timing.anonymous_session_idle),
                now - crate::accounts::OAUTH_STATE_TTL_MS,
            )
            .await;
        match sessions {
            Ok(n) if n > 0 => tracing::debug!(sessions = n, "expired sessions removed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not remove expired sessions"),
        }
        if let Err(e) = app.credentials.retire_expired_previous_secrets().await {
            tracing::warn!(error = %e, "could not drop expired previous secrets");
        }
        if let Err(e) = app.store.retire_endpoint_secrets(now).await {
            tracing::warn!(error = %e, "could not drop expired previous signing secrets");
        }
        if let Err(e) = app.alerts.remind().await {
            tracing::warn!(error = %e, "could not send alert reminders");
        }
    }
}

/// Runs a reconcile pass every `reconcile_every` (and resumes interrupted setups) until stopped.
async fn run_reconciler(app: AppState, mut stop: watch::Receiver<bool>) {
    let every = app.settings.timing.reconcile_every.max(std::time::Duration::from_millis(100));
    while tick(every, &mut stop).await {
        if let Err(e) = app.connector.resume_abandoned().await {
            tracing::warn!(error = %e, "could not look for interrupted setups");
        }
        match app.reconciler.reconcile_all().await {
            Ok(n) => tracing::debug!(communities = n, "reconcile pass done"),
            Err(e) => tracing::warn!(error = %e, "reconcile pass failed"),
        }
    }
}
