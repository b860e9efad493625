//! The group-commit writer: concurrent callbacks share commits. A writer task takes every event waiting (up to
//! [`MAX_BATCH`]) and inserts them with one statement in one transaction (one fsync), then answers them all.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::metrics::Metrics;
use crate::store::{Inserted, NewInboxEvent, Store, StoreError};

/// Most events one commit takes.
const MAX_BATCH: usize = 512;

type Done = oneshot::Sender<Result<Inserted, Arc<StoreError>>>;

struct Pending {
    event: NewInboxEvent,
    done: Done,
}

#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Pending>,
}

impl Writer {
    /// Starts `writers` writer tasks (one for SQLite, which has a single writer anyway; several for PostgreSQL).
    pub fn start(store: Store, writers: usize, metrics: Arc<Metrics>) -> Writer {
        let (queue, rx) = mpsc::channel::<Pending>(8192);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_batches(store.clone(), rx.clone(), metrics.clone()));
        }
        Writer { queue }
    }

    /// Queues an event for the next group commit and waits until it is durable.
    pub async fn store(&self, event: NewInboxEvent) -> Result<Inserted, Arc<StoreError>> {
        let (done, wait) = oneshot::channel();
        let closed = || Arc::new(StoreError::Io(std::io::Error::other("the inbox writer stopped")));
        self.queue.send(Pending { event, done }).await.map_err(|_| closed())?;
        wait.await.map_err(|_| closed())?
    }
}

async fn write_batches(store: Store, rx: Arc<Mutex<mpsc::Receiver<Pending>>>, metrics: Arc<Metrics>) {
    let mut events: Vec<NewInboxEvent> = Vec::with_capacity(MAX_BATCH);
    let mut waiting: Vec<Done> = Vec::with_capacity(MAX_BATCH);
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
