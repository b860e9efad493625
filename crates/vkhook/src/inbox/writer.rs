//! The group-commit writer: one writer, many producers. A writer task takes everything waiting (new events from
//! callbacks, results and lease renewals from the bot's workers, forwarding results; up to [`MAX_BATCH`] items) and writes it in one
//! transaction (one fsync), then answers every producer. On SQLite's single writer a busy bot thus adds rows to
//! commits that happen anyway instead of adding commits of its own.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::metrics::Metrics;
use crate::store::{
    DeliveriesSettled, DeliveryResults, InboxWrite, Inserted, LeaseRenewal, NewInboxEvent, Settlement, SourceCursor,
    Store, StoreError,
};

/// Most items (events, settlements, renewals) one commit takes.
const MAX_BATCH: usize = 512;

type Answer<T> = oneshot::Sender<Result<T, Arc<StoreError>>>;

/// A poller's batch as written: each event's fate, and whether its place moved (false: the poller lost the
/// community to another instance, which reads from where it left off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchWritten {
    pub inserted: Vec<Inserted>,
    pub cursor_moved: bool,
}

enum Job {
    Event(NewInboxEvent, Answer<Inserted>),
    Batch(Vec<NewInboxEvent>, SourceCursor, Answer<BatchWritten>),
    Settle(Vec<Settlement>, Answer<Vec<bool>>),
    Renew(LeaseRenewal, Answer<u64>),
    Deliveries(DeliveryResults, Answer<DeliveriesSettled>),
}

/// A commit of at least this many new events means VK is sending as fast as we store.
const BUSY_BATCH: usize = 32;
/// How long such a commit counts as "ingest is busy".
const BUSY_FOR_MS: i64 = 50;

#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
    /// Until when (Unix ms) ingest counts as busy.
    busy_until: Arc<std::sync::atomic::AtomicI64>,
}

impl Writer {
    /// Starts `writers` writer tasks (one for SQLite, which has a single writer anyway; several for PostgreSQL).
    pub fn start(store: Store, writers: usize, metrics: Arc<Metrics>) -> Writer {
        let (queue, rx) = mpsc::channel::<Job>(8192);
        let rx = Arc::new(Mutex::new(rx));
        let busy_until = Arc::new(std::sync::atomic::AtomicI64::new(0));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_batches(store.clone(), rx.clone(), metrics.clone(), busy_until.clone()));
        }
        Writer { queue, busy_until }
    }

    /// VK is sending as fast as we store (a recent commit took many new events): work that can wait (forwarding)
    /// leaves the CPU and the single SQLite writer to ingest.
    pub fn ingest_busy(&self) -> bool {
        crate::store::now_ms() < self.busy_until.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues an event for the next group commit and waits until it is durable.
    pub async fn store(&self, event: NewInboxEvent) -> Result<Inserted, Arc<StoreError>> {
        self.send(|done| Job::Event(event, done)).await
    }

    /// Queues a poller's batch and its new place for one commit (never split across two), and waits until it is
    /// durable.
    pub async fn store_batch(
        &self,
        events: Vec<NewInboxEvent>,
        cursor: SourceCursor,
    ) -> Result<BatchWritten, Arc<StoreError>> {
        self.send(|done| Job::Batch(events, cursor, done)).await
    }

    /// Records how a worker left its events, in the next group commit: false where an event was no longer the
    /// worker's.
    pub async fn settle(&self, settlements: Vec<Settlement>) -> Result<Vec<bool>, Arc<StoreError>> {
        if settlements.is_empty() {
            return Ok(Vec::new());
        }
        self.send(|done| Job::Settle(settlements, done)).await
    }

    /// Records a forwarding batch's results (and gives its endpoint back) in the next group commit.
    pub async fn deliveries(&self, results: DeliveryResults) -> Result<DeliveriesSettled, Arc<StoreError>> {
        self.send(|done| Job::Deliveries(results, done)).await
    }

    /// Extends a run's leases in the next group commit: how many of its events were still held.
    pub async fn renew(&self, renewal: LeaseRenewal) -> Result<u64, Arc<StoreError>> {
        self.send(|done| Job::Renew(renewal, done)).await
    }

    async fn send<T>(&self, job: impl FnOnce(Answer<T>) -> Job) -> Result<T, Arc<StoreError>> {
        let (done, wait) = oneshot::channel();
        let closed = || Arc::new(StoreError::Io(std::io::Error::other("the inbox writer stopped")));
        self.queue.send(job(done)).await.map_err(|_| closed())?;
        wait.await.map_err(|_| closed())?
    }
}

/// Who waits for which part of a commit.
#[derive(Default)]
struct Waiting {
    /// In the order of the commit's events and cursors.
    events: Vec<EventWaiter>,
    /// Each settle job's answer and how many settlements it gave.
    settles: Vec<(Answer<Vec<bool>>, usize)>,
    renewals: Vec<Answer<u64>>,
    deliveries: Vec<Answer<DeliveriesSettled>>,
}

enum EventWaiter {
    One(Answer<Inserted>),
    /// A batch of `events` events and one cursor.
    Batch {
        events: usize,
        done: Answer<BatchWritten>,
    },
}

impl EventWaiter {
    fn fail(self, e: &Arc<StoreError>) {
        match self {
            EventWaiter::One(done) => drop(done.send(Err(e.clone()))),
            EventWaiter::Batch { done, .. } => drop(done.send(Err(e.clone()))),
        }
    }
}

impl Waiting {
    fn take(&mut self, job: Job, write: &mut InboxWrite) -> usize {
        match job {
            Job::Event(event, done) => {
                write.events.push(event);
                self.events.push(EventWaiter::One(done));
                1
            }
            Job::Batch(events, cursor, done) => {
                let n = events.len();
                write.events.extend(events);
                write.cursors.push(cursor);
                self.events.push(EventWaiter::Batch { events: n, done });
                n.max(1)
            }
            Job::Settle(settlements, done) => {
                let n = settlements.len();
                write.settlements.extend(settlements);
                self.settles.push((done, n));
                n
            }
            Job::Renew(renewal, done) => {
                write.renewals.push(renewal);
                self.renewals.push(done);
                1
            }
            Job::Deliveries(results, done) => {
                let n = results.outcomes.len().max(1);
                write.deliveries.push(results);
                self.deliveries.push(done);
                n
            }
        }
    }

    fn fail(&mut self, e: StoreError) {
        let e = Arc::new(e);
        self.events.drain(..).for_each(|waiter| waiter.fail(&e));
        self.settles.drain(..).for_each(|(done, _)| drop(done.send(Err(e.clone()))));
        self.renewals.drain(..).for_each(|done| drop(done.send(Err(e.clone()))));
        self.deliveries.drain(..).for_each(|done| drop(done.send(Err(e.clone()))));
    }
}

async fn write_batches(
    store: Store,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    metrics: Arc<Metrics>,
    busy_until: Arc<std::sync::atomic::AtomicI64>,
) {
    let mut write = InboxWrite::default();
    let mut waiting = Waiting::default();
    loop {
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut items = waiting.take(first, &mut write);
            while items < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => items += waiting.take(job, &mut write),
                    Err(_) => break,
                }
            }
        }
        if !write.events.is_empty() {
            metrics.observe_batch(write.events.len());
        }
        if write.events.len() >= BUSY_BATCH {
            let until = crate::store::now_ms() + BUSY_FOR_MS;
            busy_until.store(until, std::sync::atomic::Ordering::Relaxed);
        }
        match store.write_inbox(&write).await {
            Ok(written) => {
                for (event, inserted) in write.events.iter().zip(&written.inserted) {
                    metrics.observe_stored(event.source, *inserted == Inserted::New);
                }
                let (mut inserted, mut cursors) = (written.inserted.into_iter(), written.cursors.into_iter());
                for waiter in waiting.events.drain(..) {
                    match waiter {
                        EventWaiter::One(done) => {
                            let _ = done.send(inserted.next().ok_or_else(lost_answer));
                        }
                        EventWaiter::Batch { events, done } => {
                            let batch = BatchWritten {
                                inserted: inserted.by_ref().take(events).collect(),
                                cursor_moved: cursors.next().unwrap_or(false),
                            };
                            let _ = done.send(Ok(batch));
                        }
                    }
                }
                let mut settled = written.settled.into_iter();
                for (done, n) in waiting.settles.drain(..) {
                    let _ = done.send(Ok(settled.by_ref().take(n).collect()));
                }
                for (done, n) in waiting.renewals.drain(..).zip(written.renewed) {
                    let _ = done.send(Ok(n));
                }
                for (done, d) in waiting.deliveries.drain(..).zip(written.deliveries) {
                    let _ = done.send(Ok(d));
                }
            }
            Err(e) => {
                if !write.events.is_empty() {
                    tracing::error!(error = %e, events = write.events.len(), "inbox commit failed; VK will retry");
                } else {
                    tracing::warn!(error = %e, "inbox commit of results failed");
                }
                waiting.fail(e);
            }
        }
        write.events.clear();
        write.settlements.clear();
        write.renewals.clear();
        write.deliveries.clear();
        write.cursors.clear();
    }
}

/// The store answered fewer items than it was given (a bug): the producer hears an error, not a made-up result.
fn lost_answer() -> Arc<StoreError> {
    Arc::new(StoreError::Io(std::io::Error::other("the inbox commit gave no answer for an event")))
}
