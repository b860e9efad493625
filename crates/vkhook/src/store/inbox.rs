//! The inbox: every event VK delivered, stored durably before we answer `ok`; workers claim events with a lease.

use super::{now_ms, on_pool, Backend, Store, StoreResult};
use crate::model::{EventResult, EventStatus, Reason, Source};
use vk::GroupId;

/// A community's recent pace: events in a window, and when the first and the last came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Activity {
    pub events: i64,
    pub first_at: Option<i64>,
    pub last_at: Option<i64>,
}

/// An event to store.
#[derive(Debug, Clone)]
pub struct NewInboxEvent {
    pub group_id: i64,
    pub event_id: String,
    pub event_type: String,
    /// The body without `secret`.
    pub payload: String,
    pub received_at: i64,
    /// Decided at ingest that no consumer wants it: stored `ignored` at once with this result, in the same commit,
    /// and no worker ever touches it.
    pub done_at_ingest: Option<EventResult>,
    /// Which way it came.
    pub source: Source,
    /// The key of the object it creates (`vk::Event::natural_key`): a copy from another source is a duplicate.
    pub natural_key: Option<String>,
}

impl InboxRow {
    /// What the bot did with it, or why not (none: not finished, or written by a newer vkhook).
    pub fn event_result(&self) -> Option<EventResult> {
        self.result.as_deref().and_then(EventResult::from_json)
    }
}

impl NewInboxEvent {
    /// `ignored` when decided at ingest, `pending` otherwise.
    pub fn initial_status(&self) -> EventStatus {
        if self.done_at_ingest.is_some() {
            EventStatus::Ignored
        } else {
            EventStatus::Pending
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// VK's retry of an event we already have: nothing was stored.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InboxRow {
    pub id: i64,
    pub group_id: i64,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    pub received_at: i64,
    pub status: EventStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    /// As stored: JSON of an [`EventResult`] (see [`InboxRow::event_result`]).
    pub result: Option<String>,
    pub last_error: Option<String>,
    pub processed_at: Option<i64>,
    /// The community's `random_id` counter value reserved for this event's reply (a `message_new` claimed by a
    /// worker): the same on every attempt (see `dedup`).
    pub reply_random_id: Option<i64>,
    /// Which way it came first.
    pub source: Source,
}

const INBOX_COLUMNS: &str = "id, group_id, event_id, event_type, payload, received_at, status, attempts, \
    next_attempt_at, result, last_error, processed_at, reply_random_id, source";

/// The claim's three statements (see [`Store::claim_inbox_runs`]).
struct ClaimSql {
    /// Each community's head: `$1` now, `$2` how many communities, `$3` the owner.
    heads: String,
    /// A community's open events from its head on: `$1` group, `$2` head, `$3` how many.
    next: String,
    /// Takes a run: `$1` group, `$2` first id, `$3` owner, `$4` lease end, `$5` last id.
    claim: String,
}

impl Store {
    fn claim_sql(&self) -> ClaimSql {
        // Each community's next event (its oldest unfinished one), found by walking the partial index
        // `inbox_open` community by community: the cost grows with the number of communities that have work, not
        // with the backlog. Of those, the ones that are due, not held, and whose community no other instance holds.
        let heads = format!(
            "WITH RECURSIVE heads(group_id) AS ( \
                SELECT MIN(group_id) FROM inbox_events WHERE {OPEN} \
                UNION ALL \
                SELECT (SELECT MIN(i.group_id) FROM inbox_events i WHERE i.{OPEN} AND i.group_id > h.group_id) \
                FROM heads h WHERE h.group_id IS NOT NULL) \
            SELECT e.id, e.group_id FROM inbox_events e \
            WHERE e.id IN (SELECT (SELECT i.id FROM inbox_events i{by_group} WHERE i.group_id = h.group_id AND i.{OPEN} \
                                   ORDER BY i.id LIMIT 1) \
                           FROM heads h WHERE h.group_id IS NOT NULL) \
              AND e.{OPEN} AND e.next_attempt_at <= $1 AND (e.lease_until IS NULL OR e.lease_until < $1) \
              AND NOT EXISTS (SELECT 1 FROM community_leases l WHERE l.group_id = e.group_id \
                              AND l.owner <> $3 AND l.until >= $1) \
            ORDER BY e.id LIMIT $2{lock}",
            by_group = self.open_by_group(),
            // Two instances never claim the same head; the rest of a run follows its head.
            lock = match self.backend {
                Backend::Postgres(_) => " FOR UPDATE SKIP LOCKED",
                Backend::Sqlite(_) => "",
            }
        );
        // The community's open events from its head on, one step of `inbox_open` each.
        let next = format!(
            "SELECT id, next_attempt_at, lease_until FROM inbox_events{by_group} \
             WHERE group_id = $1 AND {OPEN} AND id >= $2 ORDER BY id LIMIT $3",
            by_group = self.open_by_group()
        );
        let claim = format!(
            "UPDATE inbox_events{by_group} SET status = 'processing', lease_owner = $3, lease_until = $4, \
             attempts = attempts + 1 WHERE group_id = $1 AND id >= $2 AND id <= $5 AND {OPEN} RETURNING {INBOX_COLUMNS}",
            by_group = self.open_by_group()
        );
        ClaimSql { heads, next, claim }
    }
}

/// A page of the delivery log.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub event_type: Option<String>,
    pub status: Option<EventStatus>,
    /// Events with a smaller id than this (paging, newest first).
    pub before_id: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CountRow {
    pub key: String,
    pub n: i64,
}

/// How a worker leaves an event it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Finished: `done`, `failed`, `dead` or `ignored`, with what happened (JSON) and the error, if any.
    Finish { status: EventStatus, result: EventResult, error: Option<String> },
    /// Back to `pending` for another attempt at `next_attempt_at`.
    Retry { next_attempt_at: i64, error: String },
    /// Not handled (an earlier event of its run waits for a retry, so this one must too): back to `pending` as
    /// it was, the claim's attempt undone.
    Release,
}

/// One event's [`Settle`], by the worker that holds it, and the reply the bot sent (or VK refused) for it: recorded
/// in the same commit, and only if the event was still the worker's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub id: i64,
    pub owner: String,
    pub settle: Settle,
    pub reply: Option<super::ReplyRow>,
}

/// Extends the leases on the events of one run (and on their community) that `owner` still holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRenewal {
    pub owner: String,
    pub group_id: i64,
    pub ids: Vec<i64>,
    pub until: i64,
}

/// Everything one commit writes to the inbox: new events, workers' results and lease renewals, so that on
/// SQLite's single writer a busy bot adds rows to commits that happen anyway instead of adding commits.
#[derive(Debug, Clone, Default)]
pub struct InboxWrite {
    pub events: Vec<NewInboxEvent>,
    pub settlements: Vec<Settlement>,
    pub renewals: Vec<LeaseRenewal>,
    /// Forwarding senders' batch results.
    pub deliveries: Vec<super::DeliveryResults>,
    /// Pollers' places, moved in the commit that stores the events before them.
    pub cursors: Vec<super::SourceCursor>,
}

/// What an [`InboxWrite`] did, item by item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxWritten {
    pub inserted: Vec<Inserted>,
    /// False where the event was no longer the owner's (its lease ran out and another worker took it).
    pub settled: Vec<bool>,
    /// How many of each renewal's events were still held.
    pub renewed: Vec<u64>,
    pub deliveries: Vec<super::DeliveriesSettled>,
    /// False where the poller no longer held its community (its place stayed where the holder put it).
    pub cursors: Vec<bool>,
}

impl InboxWrite {
    /// New events and nothing else: one statement, no transaction.
    fn only_events(&self) -> bool {
        self.settlements.is_empty() && self.renewals.is_empty() && self.deliveries.is_empty() && self.cursors.is_empty()
    }
}

const OPEN: &str = "status IN ('pending', 'processing')";

impl Store {
    /// Where a query looks for one community's open events, it must walk the partial index `inbox_open`: the
    /// plain `inbox_group` has the same leading columns, and SQLite (without statistics) would take it and step
    /// through every finished event of the community first — a claim then costs as much as the community's whole
    /// history (1.3 s was seen). PostgreSQL's planner has statistics and picks the partial index itself.
    pub(crate) fn open_by_group(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => " INDEXED BY inbox_open",
            Backend::Postgres(_) => "",
        }
    }
}

impl Store {
    /// Writes new events, results and lease renewals in one transaction (one commit, one fsync). New events go
    /// in with one statement: PostgreSQL takes them as arrays (one prepared statement whatever the batch size),
    /// SQLite as a multi-row `VALUES`. VK's retries of stored events change nothing.
    pub async fn write_inbox(&self, write: &InboxWrite) -> StoreResult<InboxWritten> {
        let events = &write.events;
        // The replies of the settlements that went through.
        macro_rules! insert_replies {
            ($tx:ident, $settled:expr) => {{
                for (s, _) in write.settlements.iter().zip($settled).filter(|(_, ok)| **ok) {
                    if let Some(r) = &s.reply {
                        let q = "INSERT INTO replies (group_id, inbox_id, kind, rule_id, text, vk_id, status, error, \
                                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
                        sqlx::query(q)
                            .bind(r.group_id)
                            .bind(r.inbox_id)
                            .bind(r.kind)
                            .bind(r.rule_id)
                            .bind(&r.text)
                            .bind(r.vk_id)
                            .bind(r.status)
                            .bind(&r.error)
                            .bind(r.created_at)
                            .execute(&mut *$tx)
                            .await?;
                    }
                }
            }};
        }
        // The same statements on either backend's transaction.
        macro_rules! renew {
            ($tx:ident) => {{
                let mut renewed = Vec::with_capacity(write.renewals.len());
                for r in &write.renewals {
                    let mut n = 0;
                    for id in &r.ids {
                        let q = "UPDATE inbox_events SET lease_until = $3 \
                                 WHERE id = $1 AND lease_owner = $2 AND status = 'processing'";
                        n += sqlx::query(q)
                            .bind(id)
                            .bind(&r.owner)
                            .bind(r.until)
                            .execute(&mut *$tx)
                            .await?
                            .rows_affected();
                    }
                    if n > 0 {
                        let q = "UPDATE community_leases SET until = $3 WHERE group_id = $1 AND owner = $2";
                        sqlx::query(q).bind(r.group_id).bind(&r.owner).bind(r.until).execute(&mut *$tx).await?;
                    }
                    renewed.push(n);
                }
                renewed
            }};
        }
        macro_rules! move_cursors {
            ($tx:ident) => {{
                let mut moved = Vec::with_capacity(write.cursors.len());
                for c in &write.cursors {
                    let q = "UPDATE long_poll SET ts = $3, last_check_at = $4 WHERE group_id = $1 AND owner = $2";
                    let n = sqlx::query(q)
                        .bind(c.group_id)
                        .bind(&c.owner)
                        .bind(&c.ts)
                        .bind(c.at)
                        .execute(&mut *$tx)
                        .await?
                        .rows_affected();
                    moved.push(n == 1);
                }
                moved
            }};
        }
        let columns = "INSERT INTO inbox_events (group_id, event_id, event_type, payload, received_at, \
                       next_attempt_at, status, result, processed_at, source, natural_key) ";
        let (inserted, settled, renewed, deliveries, cursors) = match &self.backend {
            Backend::Postgres(pool) => {
                // A duplicate by event_id or by the object's key: nothing is stored (any conflict).
                let q = format!(
                    "{columns} SELECT g, e, t, p, r, r, s, res, CASE WHEN res IS NULL THEN NULL ELSE r END, src, nk \
                     FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], \
                     $7::text[], $8::text[], $9::text[]) AS batch(g, e, t, p, r, s, res, src, nk) \
                     ON CONFLICT DO NOTHING RETURNING group_id, event_id"
                );
                let results: Vec<Option<String>> =
                    events.iter().map(|e| e.done_at_ingest.as_ref().map(EventResult::to_json)).collect();
                let insert = || {
                    sqlx::query_as::<_, (i64, String)>(&q)
                        .bind(events.iter().map(|e| e.group_id).collect::<Vec<_>>())
                        .bind(events.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>())
                        .bind(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
                        .bind(events.iter().map(|e| e.payload.as_str()).collect::<Vec<_>>())
                        .bind(events.iter().map(|e| e.received_at).collect::<Vec<_>>())
                        .bind(events.iter().map(|e| e.initial_status().as_str()).collect::<Vec<_>>())
                        .bind(results.clone())
                        .bind(events.iter().map(|e| e.source.as_str()).collect::<Vec<_>>())
                        .bind(events.iter().map(|e| e.natural_key.as_deref()).collect::<Vec<_>>())
                };
                if write.only_events() {
                    // A single statement commits by itself: no BEGIN and COMMIT round trips.
                    (insert().fetch_all(pool).await?, Vec::new(), Vec::new(), Vec::new(), Vec::new())
                } else {
                    let mut tx = pool.begin().await?;
                    let inserted = if events.is_empty() { Vec::new() } else { insert().fetch_all(&mut *tx).await? };
                    let settled = settle_postgres(&mut tx, &write.settlements).await?;
                    insert_replies!(tx, &settled);
                    let renewed = renew!(tx);
                    let mut delivered = Vec::with_capacity(write.deliveries.len());
                    for r in &write.deliveries {
                        delivered.push(super::settle_deliveries!(tx, r, sqlx::Postgres));
                    }
                    let moved = move_cursors!(tx);
                    tx.commit().await?;
                    (inserted, settled, renewed, delivered, moved)
                }
            }
            Backend::Sqlite(pool) => {
                let insert = |chunk| sqlite_insert(columns, chunk);
                if write.only_events() && events.len() <= 1000 {
                    // A single statement commits by itself: no BEGIN and COMMIT round trips to SQLite's thread.
                    let inserted = insert(events).build_query_as::<(i64, String)>().fetch_all(pool).await?;
                    (inserted, Vec::new(), Vec::new(), Vec::new(), Vec::new())
                } else {
                    let mut tx = pool.begin().await?;
                    let mut inserted = Vec::with_capacity(events.len());
                    for chunk in events.chunks(1000) {
                        inserted.extend(insert(chunk).build_query_as::<(i64, String)>().fetch_all(&mut *tx).await?);
                    }
                    let settled = settle_sqlite(&mut tx, &write.settlements).await?;
                    insert_replies!(tx, &settled);
                    let renewed = renew!(tx);
                    let mut delivered = Vec::with_capacity(write.deliveries.len());
                    for r in &write.deliveries {
                        delivered.push(super::settle_deliveries!(tx, r, sqlx::Sqlite));
                    }
                    let moved = move_cursors!(tx);
                    tx.commit().await?;
                    (inserted, settled, renewed, delivered, moved)
                }
            }
        };
        let mut new: std::collections::HashSet<(i64, &str)> = inserted.iter().map(|(g, e)| (*g, e.as_str())).collect();
        // The first of repeated events within the batch is the one that was stored.
        let inserted = events
            .iter()
            .map(|e| if new.remove(&(e.group_id, e.event_id.as_str())) { Inserted::New } else { Inserted::Duplicate })
            .collect();
        Ok(InboxWritten { inserted, settled, renewed, deliveries, cursors })
    }

    /// Inserts a batch of new events in one commit ([`Store::write_inbox`] with nothing else).
    pub async fn insert_inbox_batch(&self, events: &[NewInboxEvent]) -> StoreResult<Vec<Inserted>> {
        let write = InboxWrite { events: events.to_vec(), ..Default::default() };
        Ok(self.write_inbox(&write).await?.inserted)
    }

    /// Events of `group_id` received in `since..=until` that were finished at ingest (never claimed: no attempt)
    /// for one of `reasons` go back to `pending`: a switch turned on, and an instance may have decided with the old
    /// one. The result is read as an [`EventResult`], never compared as text.
    pub async fn revive_ingest_decisions(
        &self,
        group_id: GroupId,
        reasons: &[Reason],
        since: i64,
        until: i64,
    ) -> StoreResult<u64> {
        let q = "SELECT id, result FROM inbox_events WHERE group_id = $1 AND status = 'ignored' AND attempts = 0 \
                 AND received_at >= $2 AND received_at <= $3";
        let finished: Vec<(i64, Option<String>)> =
            on_pool!(self, pool => sqlx::query_as(q).bind(group_id).bind(since).bind(until).fetch_all(pool).await?);
        let ids: Vec<i64> = finished
            .into_iter()
            .filter(|(_, result)| {
                let reason = result.as_deref().and_then(EventResult::from_json).and_then(|r| r.nothing_reason());
                reason.is_some_and(|r| reasons.contains(&r))
            })
            .map(|(id, _)| id)
            .collect();
        let mut n = 0;
        for chunk in ids.chunks(500) {
            // Only integers go into the list.
            let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            let q = format!(
                "UPDATE inbox_events SET status = 'pending', result = NULL, processed_at = NULL, \
                 next_attempt_at = received_at WHERE id IN ({list}) AND status = 'ignored' AND attempts = 0"
            );
            n += on_pool!(self, pool => sqlx::query(&q).execute(pool).await?.rows_affected());
        }
        Ok(n)
    }

    /// When the oldest unfinished event was received (Unix ms), of one community or of all: the backlog's age.
    /// One step of a partial index either way (`inbox_open`, `inbox_open_by_id`).
    pub async fn oldest_open_event_at(&self, group_id: Option<GroupId>) -> StoreResult<Option<i64>> {
        let (open, by_group) = (OPEN, self.open_by_group());
        Ok(match group_id {
            Some(g) => {
                let q = format!(
                    "SELECT received_at FROM inbox_events{by_group} WHERE group_id = $1 AND {open} ORDER BY id LIMIT 1"
                );
                on_pool!(self, pool => sqlx::query_scalar::<_, i64>(&q).bind(g).fetch_optional(pool).await?)
            }
            None => {
                let q = format!("SELECT received_at FROM inbox_events WHERE {open} ORDER BY id LIMIT 1");
                on_pool!(self, pool => sqlx::query_scalar::<_, i64>(&q).fetch_optional(pool).await?)
            }
        })
    }

    /// Claims, for `owner` until `lease_until`, runs of consecutive due events of up to `communities`
    /// communities, at most `run` events each, oldest community first: each run holds its community's oldest
    /// unfinished events in order, up to the first that is not due or is held (so each community's events are
    /// handled in order). Skips communities with an event in flight and communities another instance holds the
    /// lease of, and takes (or renews) the community leases of what it claimed. Each run is in id order.
    pub async fn claim_inbox_runs(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        communities: i64,
        run: i64,
    ) -> StoreResult<Vec<Vec<InboxRow>>> {
        let ClaimSql { heads, next, claim } = self.claim_sql();
        let take = "INSERT INTO community_leases (group_id, owner, until) VALUES ($1, $2, $3) \
                    ON CONFLICT (group_id) DO UPDATE SET owner = excluded.owner, until = excluded.until \
                    WHERE community_leases.owner = excluded.owner OR community_leases.until < $4";
        let runs = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let heads = sqlx::query_as::<_, (i64, i64)>(&heads)
                .bind(now).bind(communities).bind(owner)
                .fetch_all(&mut *tx).await?;
            let mut runs = Vec::with_capacity(heads.len());
            for (head, group_id) in heads {
                let open = sqlx::query_as::<_, (i64, i64, Option<i64>)>(&next)
                    .bind(group_id).bind(head).bind(run.max(1))
                    .fetch_all(&mut *tx).await?;
                let last = open
                    .iter()
                    .take_while(|(_, due, lease)| *due <= now && lease.is_none_or(|l| l < now))
                    .last()
                    .map_or(head, |(id, _, _)| *id);
                let mut rows = sqlx::query_as::<_, InboxRow>(&claim)
                    .bind(group_id).bind(head).bind(owner).bind(lease_until).bind(last)
                    .fetch_all(&mut *tx).await?;
                sqlx::query(take).bind(group_id).bind(owner).bind(lease_until).bind(now).execute(&mut *tx).await?;
                rows.sort_by_key(|r| r.id);
                // A message's `random_id` is reserved with its claim, before any send, once: a retry reuses it.
                let need: Vec<usize> = (0..rows.len())
                    .filter(|i| rows[*i].event_type == "message_new" && rows[*i].reply_random_id.is_none())
                    .collect();
                if let Some(start) = super::reserve_random_ids!(tx, group_id, need.len()) {
                    for (k, i) in need.into_iter().enumerate() {
                        let value = start + k as i64;
                        sqlx::query("UPDATE inbox_events SET reply_random_id = $2 WHERE id = $1")
                            .bind(rows[i].id).bind(value).execute(&mut *tx).await?;
                        rows[i].reply_random_id = Some(value);
                    }
                }
                runs.push(rows);
            }
            tx.commit().await?;
            runs
        });
        Ok(runs)
    }

    /// Gives up this instance's community leases (it is stopping): others take over at once.
    pub async fn release_community_leases(&self, owner: &str) -> StoreResult<u64> {
        let q = "DELETE FROM community_leases WHERE owner = $1";
        Ok(on_pool!(self, pool => sqlx::query(q).bind(owner).execute(pool).await?.rows_affected()))
    }

    /// «Повторить»: a failed or dead event runs again (the bot's dedup keys make a sent reply a no-op at VK).
    pub async fn replay_inbox_event(&self, group_id: GroupId, id: i64) -> StoreResult<bool> {
        let q = "UPDATE inbox_events SET status = 'pending', attempts = 0, next_attempt_at = $3, lease_owner = NULL, \
                 lease_until = NULL WHERE group_id = $1 AND id = $2 AND status IN ('failed', 'dead')";
        let n = on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(id).bind(now_ms()).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// Releases a paused community's held-back events for processing now.
    pub async fn wake_community_events(&self, group_id: GroupId) -> StoreResult<u64> {
        let q = "UPDATE inbox_events SET next_attempt_at = $2 WHERE group_id = $1 AND status = 'pending'";
        Ok(on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(now_ms()).execute(pool).await?.rows_affected()))
    }

    pub async fn inbox_event(&self, group_id: GroupId, id: i64) -> StoreResult<Option<InboxRow>> {
        let q = format!("SELECT {INBOX_COLUMNS} FROM inbox_events WHERE group_id = $1 AND id = $2");
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, InboxRow>(&q).bind(group_id).bind(id).fetch_optional(pool).await?),
        )
    }

    pub async fn inbox_event_by_event_id(&self, group_id: GroupId, event_id: &str) -> StoreResult<Option<InboxRow>> {
        let q = format!("SELECT {INBOX_COLUMNS} FROM inbox_events WHERE group_id = $1 AND event_id = $2");
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, InboxRow>(&q).bind(group_id).bind(event_id).fetch_optional(pool).await?),
        )
    }

    /// The delivery log, newest first.
    pub async fn inbox_log(&self, group_id: GroupId, f: &LogFilter) -> StoreResult<Vec<InboxRow>> {
        let q = format!(
            "SELECT {INBOX_COLUMNS} FROM inbox_events WHERE group_id = $1 \
             AND ($2 IS NULL OR event_type = $2) AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5"
        );
        Ok(on_pool!(self, pool => sqlx::query_as::<_, InboxRow>(&q)
            .bind(group_id).bind(&f.event_type).bind(f.status).bind(f.before_id).bind(f.limit)
            .fetch_all(pool).await?))
    }

    /// Events not finished yet (all communities, or one). Counted in a partial index (`inbox_open_by_id`,
    /// `inbox_open`) without touching the table: a deep backlog is counted fast, and is polled while it drains.
    pub async fn inbox_depth(&self, group_id: Option<GroupId>) -> StoreResult<i64> {
        Ok(match group_id {
            Some(g) => {
                let by_group = self.open_by_group();
                let q = format!("SELECT COUNT(*) FROM inbox_events{by_group} WHERE group_id = $1 AND {OPEN}");
                on_pool!(self, pool => sqlx::query_scalar(&q).bind(g).fetch_one(pool).await?)
            }
            None => {
                let q = format!("SELECT COUNT(*) FROM inbox_events WHERE {OPEN}");
                on_pool!(self, pool => sqlx::query_scalar(&q).fetch_one(pool).await?)
            }
        })
    }

    /// Events received since `since`, by type.
    pub async fn inbox_counts_by_type(&self, group_id: GroupId, since: i64) -> StoreResult<Vec<CountRow>> {
        let q = "SELECT event_type AS key, COUNT(*) AS n FROM inbox_events WHERE group_id = $1 AND received_at >= $2 \
                 GROUP BY event_type ORDER BY n DESC, event_type";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, CountRow>(q).bind(group_id).bind(since).fetch_all(pool).await?))
    }

    /// How many events the community received since `since`, and when the first and the last of them came: its
    /// usual pace, for the silence signal (`health::Silence`).
    pub async fn activity(&self, group_id: GroupId, since: i64) -> StoreResult<Activity> {
        let q = "SELECT COUNT(*), MIN(received_at), MAX(received_at) FROM inbox_events \
                 WHERE group_id = $1 AND received_at >= $2";
        let (events, first_at, last_at): (i64, Option<i64>, Option<i64>) =
            on_pool!(self, pool => sqlx::query_as(q).bind(group_id).bind(since).fetch_one(pool).await?);
        Ok(Activity { events, first_at, last_at })
    }

    pub async fn last_event_at(&self, group_id: GroupId) -> StoreResult<Option<i64>> {
        let q = "SELECT MAX(received_at) FROM inbox_events WHERE group_id = $1";
        Ok(on_pool!(self, pool => sqlx::query_scalar(q).bind(group_id).fetch_one(pool).await?))
    }

    /// The most recent error of the community's events, with its time.
    pub async fn last_inbox_error(&self, group_id: GroupId) -> StoreResult<Option<(String, i64)>> {
        let q = "SELECT last_error, COALESCE(processed_at, received_at) FROM inbox_events \
                 WHERE group_id = $1 AND last_error IS NOT NULL ORDER BY COALESCE(processed_at, received_at) DESC LIMIT 1";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, (String, i64)>(q).bind(group_id).fetch_optional(pool).await?))
    }
}

/// Settles a batch on SQLite, a statement per settlement (in-process, cheap); [`settle_postgres`] does the same in
/// one statement. Only events still held by the settling owner change.
async fn settle_sqlite(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    settlements: &[Settlement],
) -> StoreResult<Vec<bool>> {
    let mut settled = Vec::with_capacity(settlements.len());
    for s in settlements {
        let q = match &s.settle {
            Settle::Finish { status, result, error } => sqlx::query(
                "UPDATE inbox_events SET status = $3, result = $4, last_error = $5, processed_at = $6, \
                 lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2",
            )
            .bind(s.id)
            .bind(&s.owner)
            .bind(*status)
            .bind(result.to_json())
            .bind(error)
            .bind(now_ms()),
            Settle::Retry { next_attempt_at, error } => sqlx::query(
                "UPDATE inbox_events SET status = 'pending', next_attempt_at = $3, last_error = $4, \
                 lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2",
            )
            .bind(s.id)
            .bind(&s.owner)
            .bind(*next_attempt_at)
            .bind(error),
            Settle::Release => sqlx::query(
                "UPDATE inbox_events SET status = 'pending', attempts = attempts - 1, \
                 lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2",
            )
            .bind(s.id)
            .bind(&s.owner),
        };
        settled.push(q.execute(&mut **tx).await?.rows_affected() == 1);
    }
    Ok(settled)
}

/// Settles a batch on PostgreSQL in one statement (one round trip, however long the run), with the same effect as
/// [`settle_sqlite`]: `Finish` sets the status, result, error and time; `Retry` puts the event back
/// with its error and next attempt; `Release` puts it back with the claim's attempt undone. Only events still held
/// by the settling owner change.
async fn settle_postgres(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    settlements: &[Settlement],
) -> StoreResult<Vec<bool>> {
    if settlements.is_empty() {
        return Ok(Vec::new());
    }
    let q = "UPDATE inbox_events AS e SET \
             status = b.status, \
             result = CASE WHEN b.kind = 'finish' THEN b.result ELSE e.result END, \
             last_error = CASE WHEN b.kind = 'release' THEN e.last_error ELSE b.error END, \
             processed_at = CASE WHEN b.kind = 'finish' THEN $8 ELSE e.processed_at END, \
             next_attempt_at = CASE WHEN b.kind = 'retry' THEN b.next ELSE e.next_attempt_at END, \
             attempts = CASE WHEN b.kind = 'release' THEN e.attempts - 1 ELSE e.attempts END, \
             lease_owner = NULL, lease_until = NULL \
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[]) \
             AS b(id, owner, kind, status, result, error, next) \
             WHERE e.id = b.id AND e.lease_owner = b.owner RETURNING e.id, b.owner";
    let (mut kind, mut status, mut result, mut error, mut next) = (vec![], vec![], vec![], vec![], vec![]);
    for s in settlements {
        let (k, st, r, e, n) = match &s.settle {
            Settle::Finish { status, result, error } => {
                ("finish", *status, Some(result.to_json()), error.as_ref(), None)
            }
            Settle::Retry { next_attempt_at, error } => {
                ("retry", EventStatus::Pending, None, Some(error), Some(*next_attempt_at))
            }
            Settle::Release => ("release", EventStatus::Pending, None, None, None),
        };
        kind.push(k);
        status.push(st.as_str());
        result.push(r);
        error.push(e.map(String::as_str));
        next.push(n);
    }
    let changed: Vec<(i64, String)> = sqlx::query_as(q)
        .bind(settlements.iter().map(|s| s.id).collect::<Vec<_>>())
        .bind(settlements.iter().map(|s| s.owner.as_str()).collect::<Vec<_>>())
        .bind(kind)
        .bind(status)
        .bind(result)
        .bind(error)
        .bind(next)
        .bind(now_ms())
        .fetch_all(&mut **tx)
        .await?;
    let mut changed: std::collections::HashSet<(i64, String)> = changed.into_iter().collect();
    Ok(settlements.iter().map(|s| changed.remove(&(s.id, s.owner.clone()))).collect())
}

/// One multi-row INSERT of new events on SQLite; up to 1 000 events keep it well under SQLite's 32 766 bound
/// variables.
fn sqlite_insert<'a>(columns: &str, events: &'a [NewInboxEvent]) -> sqlx::QueryBuilder<'a, sqlx::Sqlite> {
    let mut q = sqlx::QueryBuilder::new(columns);
    q.push_values(events, |mut row, e| {
        row.push_bind(e.group_id)
            .push_bind(&e.event_id)
            .push_bind(&e.event_type)
            .push_bind(&e.payload)
            .push_bind(e.received_at)
            .push_bind(e.received_at)
            .push_bind(e.initial_status())
            .push_bind(e.done_at_ingest.as_ref().map(EventResult::to_json))
            .push_bind(e.done_at_ingest.as_ref().map(|_| e.received_at))
            .push_bind(e.source)
            .push_bind(e.natural_key.as_deref());
    });
    // A duplicate by event_id or by the object's key: nothing is stored (any conflict).
    q.push(" ON CONFLICT DO NOTHING RETURNING group_id, event_id");
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::ScratchDir;

    /// The claim never walks a community's finished events: on SQLite each of its statements looks for open
    /// events in the partial index `inbox_open`, never in the plain `inbox_group` (which SQLite, without
    /// statistics, would otherwise choose). `benches/claim.rs` measures the cost behind a long history.
    #[tokio::test]
    async fn the_claim_walks_only_open_events_on_sqlite() {
        let scratch = ScratchDir::new();
        let store = Store::connect(&format!("sqlite://{}/plan.db", scratch.0.display())).await.unwrap();
        store.migrate().await.unwrap();
        let Backend::Sqlite(pool) = &store.backend else { unreachable!("a sqlite:// URL") };
        let ClaimSql { heads, next, claim } = store.claim_sql();
        for (name, sql) in [("heads", heads), ("next", next), ("claim", claim)] {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}")).fetch_all(pool).await.unwrap();
            let plan: Vec<String> = plan.into_iter().map(|(_, _, _, detail)| detail).collect();
            assert!(plan.iter().any(|d| d.contains("inbox_open ")), "{name}: {plan:#?}");
            assert!(!plan.iter().any(|d| d.contains("inbox_group")), "{name}: {plan:#?}");
        }
        store.close().await;
    }
}
