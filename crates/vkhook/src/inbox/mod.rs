//! The inbox: an event from any source — VK's Callback API today, Bots Long Poll and backfill after a gap — is stored
//! the same way, here. Sources hand events in ([`Inbox::ingest`]); consumers (the bot, forwarding) read them out of
//! the store and record their results through the same group-commit [`Writer`]; neither side knows the other.
//!
//! - **Once.** An event VK sent twice (its `event_id`), or the same object from two sources (its natural key:
//!   `vk::Event::natural_key`), is stored once; the second is a [`Inserted::Duplicate`].
//! - **Decided at ingest.** What no consumer wants is stored finished in the same commit: the bot says which
//!   ([`Decider`], the wiring hands it in), forwarding decides in the statement that stores the event (the database's
//!   `inbox_forward` trigger). No worker ever touches such an event.
//! - **Durable first.** [`Inbox::ingest`] returns once the event's commit is durable (one fsync shared by every event
//!   of a group commit), then wakes the consumers that have something new.

pub mod writer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use vk::GroupId;

use tokio::sync::Notify;

use crate::model::{EventResult, Reason, Source};
use crate::store::{now_ms, Inserted, NewInboxEvent, SourceCursor, StoreError};

pub use writer::{BatchWritten, Writer};

/// The bot's part at ingest: whether it will do nothing with an event, and a wake-up for the ones it wants. The
/// inbox asks through this, so that it never depends on the bot (the bot depends on the inbox's writer).
pub trait Decider: Send + Sync + 'static {
    /// Why the consumer will do nothing with the event (`None`: its object did not parse), when that is already
    /// clear; `None` when in doubt.
    fn nothing_to_do<'a>(
        &'a self,
        group_id: GroupId,
        event: Option<&'a vk::Event>,
    ) -> Pin<Box<dyn Future<Output = Option<Reason>> + Send + 'a>>;

    /// An event it wants was stored.
    fn wake(&self);
}

/// An event as a source hands it in.
pub struct Incoming<'a> {
    pub group_id: GroupId,
    /// The parsed body (VK's `secret`, if the source had one, is never stored).
    pub envelope: &'a vk::Envelope,
    pub event_id: String,
    pub source: Source,
}

/// Storing events, and telling their consumers.
#[derive(Clone)]
pub struct Inbox {
    writer: Writer,
    bot: Arc<dyn Decider>,
    /// Wakes the forwarding sender: a new event may have made deliveries (the database decides which).
    forward_wakeup: Arc<Notify>,
}

impl Inbox {
    pub fn new(writer: Writer, bot: Arc<dyn Decider>, forward_wakeup: Arc<Notify>) -> Inbox {
        Inbox { writer, bot, forward_wakeup }
    }

    /// The group-commit writer the consumers record their results through.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Stores the event durably — once, whichever source brings it, and whatever its `event_id` — and returns when
    /// its commit is on disk; what no consumer wants is stored finished in the same commit.
    pub async fn ingest(&self, incoming: Incoming<'_>) -> Result<Inserted, Arc<StoreError>> {
        let event = self.prepare(incoming).await;
        let wants = event.done_at_ingest.is_none();
        let inserted = self.writer.store(event).await?;
        self.tell(inserted == Inserted::New, wants && inserted == Inserted::New);
        Ok(inserted)
    }

    /// Stores a poller's batch and moves its place (`cursor`) in the same commit, so that a crash at any point
    /// neither loses an event (the place never passes an event that is not stored) nor stores one twice (a batch
    /// read again is recognised by `event_id` and the object's key).
    pub async fn ingest_batch(
        &self,
        batch: Vec<Incoming<'_>>,
        cursor: SourceCursor,
    ) -> Result<BatchWritten, Arc<StoreError>> {
        let mut events = Vec::with_capacity(batch.len());
        for incoming in batch {
            events.push(self.prepare(incoming).await);
        }
        let wanted: Vec<bool> = events.iter().map(|e| e.done_at_ingest.is_none()).collect();
        let written = self.writer.store_batch(events, cursor).await?;
        let new = written.inserted.contains(&Inserted::New);
        let bot = written.inserted.iter().zip(&wanted).any(|(i, wants)| *i == Inserted::New && *wants);
        self.tell(new, bot);
        Ok(written)
    }

    /// An event as stored: parsed once, for the bot's decision and the object's key.
    async fn prepare(&self, incoming: Incoming<'_>) -> NewInboxEvent {
        let Incoming { group_id, envelope, event_id, source } = incoming;
        let event = envelope.event().ok();
        let nothing = self.bot.nothing_to_do(group_id, event.as_ref()).await;
        NewInboxEvent {
            group_id: group_id.0,
            event_type: envelope.event_type.clone(),
            payload: envelope.to_json_without_secret(),
            event_id,
            received_at: now_ms(),
            done_at_ingest: nothing.map(|reason| EventResult::Nothing { reason }),
            source,
            natural_key: event.as_ref().and_then(vk::Event::natural_key),
        }
    }

    /// Wakes the consumers after new events were stored: forwarding for any, the bot for one it wants.
    fn tell(&self, new: bool, bot: bool) {
        if bot {
            self.bot.wake();
        }
        if new {
            self.forward_wakeup.notify_one();
        }
    }
}
