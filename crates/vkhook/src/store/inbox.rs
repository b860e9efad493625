//! The inbox: every event VK delivered, stored durably before we answer `ok`; workers claim events with a lease.

use super::{now_ms, on_pool, Backend, Store, StoreResult};
use crate::model::EventStatus;

/// An event to store.
#[derive(Debug, Clone)]
pub struct NewInboxEvent {
    pub group_id: i64,
    pub event_id: String,
    pub event_type: String,
    /// The body without `secret`.
    pub payload: String,
    pub received_at: i64,
    /// Decided at ingest that no consumer wants it: stored `ignored` at once with this result (JSON), in the same
    /// commit, and no worker ever touches it.
    pub done_at_ingest: Option<String>,
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
    pub result: Option<String>,
    pub last_error: Option<String>,
    pub processed_at: Option<i64>,
}

const INBOX_COLUMNS: &str = "id, group_id, event_id, event_type, payload, received_at, status, attempts, \
    next_attempt_at, result, last_error, processed_at";

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

impl Store {
    /// Inserts a batch with one statement (one commit, one fsync): VK's retries of stored events change nothing.
    /// PostgreSQL takes the batch as arrays (one prepared statement whatever the batch size); SQLite as a
    /// multi-row `VALUES`.
    pub async fn insert_inbox_batch(&self, events: &[NewInboxEvent]) -> StoreResult<Vec<Inserted>> {
        let inserted: Vec<(i64, String)> = match &self.backend {
            Backend::Postgres(pool) => {
                let q = "INSERT INTO inbox_events (group_id, event_id, event_type, payload, received_at, next_attempt_at, \
                         status, result, processed_at) \
                         SELECT g, e, t, p, r, r, s, res, CASE WHEN res IS NULL THEN NULL ELSE r END \
                         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[]) \
                         AS batch(g, e, t, p, r, s, res) \
                         ON CONFLICT (group_id, event_id) DO NOTHING RETURNING group_id, event_id";
                sqlx::query_as::<_, (i64, String)>(q)
                    .bind(events.iter().map(|e| e.group_id).collect::<Vec<_>>())
                    .bind(events.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>())
                    .bind(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
                    .bind(events.iter().map(|e| e.payload.as_str()).collect::<Vec<_>>())
                    .bind(events.iter().map(|e| e.received_at).collect::<Vec<_>>())
                    .bind(events.iter().map(|e| e.initial_status().as_str()).collect::<Vec<_>>())
                    .bind(events.iter().map(|e| e.done_at_ingest.as_deref()).collect::<Vec<_>>())
                    .fetch_all(pool)
                    .await?
            }
            Backend::Sqlite(pool) => {
                let mut inserted = Vec::with_capacity(events.len());
                // Statements stay well under SQLite's 32766 bound variables.
                for chunk in events.chunks(1000) {
                    let mut q = sqlx::QueryBuilder::new(
                        "INSERT INTO inbox_events (group_id, event_id, event_type, payload, received_at, \
                         next_attempt_at, status, result, processed_at) ",
                    );
                    q.push_values(chunk, |mut row, e| {
                        row.push_bind(e.group_id)
                            .push_bind(&e.event_id)
                            .push_bind(&e.event_type)
                            .push_bind(&e.payload)
                            .push_bind(e.received_at)
                            .push_bind(e.received_at)
                            .push_bind(e.initial_status())
                            .push_bind(&e.done_at_ingest)
                            .push_bind(e.done_at_ingest.as_ref().map(|_| e.received_at));
                    });
                    q.push(" ON CONFLICT (group_id, event_id) DO NOTHING RETURNING group_id, event_id");
                    inserted.extend(q.build_query_as::<(i64, String)>().fetch_all(pool).await?);
                }
                inserted
            }
        };
        let mut new: std::collections::HashSet<(i64, &str)> = inserted.iter().map(|(g, e)| (*g, e.as_str())).collect();
        // The first of repeated events within the batch is the one that was stored.
        Ok(events
            .iter()
            .map(|e| if new.remove(&(e.group_id, e.event_id.as_str())) { Inserted::New } else { Inserted::Duplicate })
            .collect())
    }

    /// Events of `group_id` received in `since..=until` that were finished at ingest (never claimed: no attempt)
    /// with one of `results` go back to `pending`: a switch turned on, and an instance may have decided with the
    /// old one.
    pub async fn revive_ingest_decisions(
        &self,
        group_id: i64,
        results: &[String],
        since: i64,
        until: i64,
    ) -> StoreResult<u64> {
        let mut n = 0;
        for result in results {
            let q = "UPDATE inbox_events SET status = 'pending', result = NULL, processed_at = NULL, \
                     next_attempt_at = received_at WHERE group_id = $1 AND status = 'ignored' AND attempts = 0 \
                     AND received_at >= $2 AND received_at <= $4 AND result = $3";
            n += on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(since).bind(result).bind(until)
                .execute(pool).await?.rows_affected());
        }
        Ok(n)
    }

    /// When the oldest unfinished event was received (Unix ms), of one community or of all: the backlog's age.
    /// One step of a partial index either way (`inbox_open`, `inbox_open_by_id`).
    pub async fn oldest_open_event_at(&self, group_id: Option<i64>) -> StoreResult<Option<i64>> {
        let open = "status IN ('pending', 'processing')";
        Ok(match group_id {
            Some(g) => {
                let q =
                    format!("SELECT received_at FROM inbox_events WHERE group_id = $1 AND {open} ORDER BY id LIMIT 1");
                on_pool!(self, pool => sqlx::query_scalar::<_, i64>(&q).bind(g).fetch_optional(pool).await?)
            }
            None => {
                let q = format!("SELECT received_at FROM inbox_events WHERE {open} ORDER BY id LIMIT 1");
                on_pool!(self, pool => sqlx::query_scalar::<_, i64>(&q).fetch_optional(pool).await?)
            }
        })
    }

    /// Claims up to `limit` due events for `owner` until `lease_until`, oldest first, at most one per community
    /// (so each community's events are handled in order), skipping communities with an event in flight and
    /// communities another instance holds the lease of. Takes (or renews) the community leases of what it claimed.
    pub async fn claim_inbox_batch(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<InboxRow>> {
        // Each community's next event (its oldest unfinished one), found by walking the partial index
        // `inbox_open` community by community: the cost grows with the number of communities that have work, not
        // with the backlog. Of those, the ones that are due, not held, and whose community no other instance holds.
        let pick = "WITH RECURSIVE heads(group_id) AS ( \
                SELECT MIN(group_id) FROM inbox_events WHERE status IN ('pending', 'processing') \
                UNION ALL \
                SELECT (SELECT MIN(i.group_id) FROM inbox_events i \
                        WHERE i.status IN ('pending', 'processing') AND i.group_id > h.group_id) \
                FROM heads h WHERE h.group_id IS NOT NULL) \
            SELECT e.id FROM inbox_events e \
            WHERE e.id IN (SELECT (SELECT i.id FROM inbox_events i \
                                   WHERE i.group_id = h.group_id AND i.status IN ('pending', 'processing') \
                                   ORDER BY i.id LIMIT 1) \
                           FROM heads h WHERE h.group_id IS NOT NULL) \
              AND e.status IN ('pending', 'processing') AND e.next_attempt_at <= $1 \
              AND (e.lease_until IS NULL OR e.lease_until < $1) \
              AND NOT EXISTS (SELECT 1 FROM community_leases l WHERE l.group_id = e.group_id \
                              AND l.owner <> $3 AND l.until >= $1) \
            ORDER BY e.id LIMIT $2";
        let lock = match self.backend {
            Backend::Postgres(_) => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite(_) => "",
        };
        let claim = format!(
            "UPDATE inbox_events SET status = 'processing', lease_owner = $3, lease_until = $4, attempts = attempts + 1 \
             WHERE id IN ({pick}{lock}) RETURNING {INBOX_COLUMNS}"
        );
        let take = "INSERT INTO community_leases (group_id, owner, until) VALUES ($1, $2, $3) \
                    ON CONFLICT (group_id) DO UPDATE SET owner = excluded.owner, until = excluded.until \
                    WHERE community_leases.owner = excluded.owner OR community_leases.until < $4";
        let rows = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rows = sqlx::query_as::<_, InboxRow>(&claim)
                .bind(now).bind(limit).bind(owner).bind(lease_until)
                .fetch_all(&mut *tx).await?;
            for row in &rows {
                sqlx::query(take).bind(row.group_id).bind(owner).bind(lease_until).bind(now).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            rows
        });
        Ok(rows)
    }

    /// Extends the lease on an event `owner` still holds, and on its community, until `until`. False when the
    /// event is no longer `owner`'s (its lease ran out and another worker took it).
    pub async fn renew_inbox_lease(&self, id: i64, group_id: i64, owner: &str, until: i64) -> StoreResult<bool> {
        let event =
            "UPDATE inbox_events SET lease_until = $3 WHERE id = $1 AND lease_owner = $2 AND status = 'processing'";
        let community = "UPDATE community_leases SET until = $3 WHERE group_id = $1 AND owner = $2";
        let renewed = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(event).bind(id).bind(owner).bind(until).execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                sqlx::query(community).bind(group_id).bind(owner).bind(until).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            n == 1
        });
        Ok(renewed)
    }

    /// Gives up this instance's community leases (it is stopping): others take over at once.
    pub async fn release_community_leases(&self, owner: &str) -> StoreResult<u64> {
        let q = "DELETE FROM community_leases WHERE owner = $1";
        Ok(on_pool!(self, pool => sqlx::query(q).bind(owner).execute(pool).await?.rows_affected()))
    }

    /// Finishes an event the worker still holds: `done`, `failed`, `dead` or `ignored`, with what happened.
    pub async fn finish_inbox_event(
        &self,
        id: i64,
        owner: &str,
        status: EventStatus,
        result: &str,
        error: Option<&str>,
    ) -> StoreResult<bool> {
        let q = "UPDATE inbox_events SET status = $3, result = $4, last_error = $5, processed_at = $6, \
                 lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2";
        let n = on_pool!(self, pool => sqlx::query(q).bind(id).bind(owner).bind(status).bind(result).bind(error).bind(now_ms())
            .execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// Puts an event back for a later attempt.
    pub async fn retry_inbox_event(
        &self,
        id: i64,
        owner: &str,
        next_attempt_at: i64,
        error: &str,
    ) -> StoreResult<bool> {
        let q = "UPDATE inbox_events SET status = 'pending', next_attempt_at = $3, last_error = $4, \
                 lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2";
        let n = on_pool!(self, pool => sqlx::query(q).bind(id).bind(owner).bind(next_attempt_at).bind(error)
            .execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// «Повторить»: a failed or dead event runs again (the bot's dedup keys make a sent reply a no-op at VK).
    pub async fn replay_inbox_event(&self, group_id: i64, id: i64) -> StoreResult<bool> {
        let q = "UPDATE inbox_events SET status = 'pending', attempts = 0, next_attempt_at = $3, lease_owner = NULL, \
                 lease_until = NULL WHERE group_id = $1 AND id = $2 AND status IN ('failed', 'dead')";
        let n = on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(id).bind(now_ms()).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// Releases a paused community's held-back events for processing now.
    pub async fn wake_community_events(&self, group_id: i64) -> StoreResult<u64> {
        let q = "UPDATE inbox_events SET next_attempt_at = $2 WHERE group_id = $1 AND status = 'pending'";
        Ok(on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(now_ms()).execute(pool).await?.rows_affected()))
    }

    pub async fn inbox_event(&self, group_id: i64, id: i64) -> StoreResult<Option<InboxRow>> {
        let q = format!("SELECT {INBOX_COLUMNS} FROM inbox_events WHERE group_id = $1 AND id = $2");
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, InboxRow>(&q).bind(group_id).bind(id).fetch_optional(pool).await?),
        )
    }

    pub async fn inbox_event_by_event_id(&self, group_id: i64, event_id: &str) -> StoreResult<Option<InboxRow>> {
        let q = format!("SELECT {INBOX_COLUMNS} FROM inbox_events WHERE group_id = $1 AND event_id = $2");
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, InboxRow>(&q).bind(group_id).bind(event_id).fetch_optional(pool).await?),
        )
    }

    /// The delivery log, newest first.
    pub async fn inbox_log(&self, group_id: i64, f: &LogFilter) -> StoreResult<Vec<InboxRow>> {
        let q = format!(
            "SELECT {INBOX_COLUMNS} FROM inbox_events WHERE group_id = $1 \
             AND ($2 IS NULL OR event_type = $2) AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5"
        );
        Ok(on_pool!(self, pool => sqlx::query_as::<_, InboxRow>(&q)
            .bind(group_id).bind(&f.event_type).bind(f.status).bind(f.before_id).bind(f.limit)
            .fetch_all(pool).await?))
    }

    /// Events not finished yet (all communities, or one).
    pub async fn inbox_depth(&self, group_id: Option<i64>) -> StoreResult<i64> {
        let q = "SELECT COUNT(*) FROM inbox_events WHERE status IN ('pending', 'processing') AND ($1 IS NULL OR group_id = $1)";
        Ok(on_pool!(self, pool => sqlx::query_scalar(q).bind(group_id).fetch_one(pool).await?))
    }

    /// Events received since `since`, by type.
    pub async fn inbox_counts_by_type(&self, group_id: i64, since: i64) -> StoreResult<Vec<CountRow>> {
        let q = "SELECT event_type AS key, COUNT(*) AS n FROM inbox_events WHERE group_id = $1 AND received_at >= $2 \
                 GROUP BY event_type ORDER BY n DESC, event_type";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, CountRow>(q).bind(group_id).bind(since).fetch_all(pool).await?))
    }

    pub async fn last_event_at(&self, group_id: i64) -> StoreResult<Option<i64>> {
        let q = "SELECT MAX(received_at) FROM inbox_events WHERE group_id = $1";
        Ok(on_pool!(self, pool => sqlx::query_scalar(q).bind(group_id).fetch_one(pool).await?))
    }

    /// The most recent error of the community's events, with its time.
    pub async fn last_inbox_error(&self, group_id: i64) -> StoreResult<Option<(String, i64)>> {
        let q = "SELECT last_error, COALESCE(processed_at, received_at) FROM inbox_events \
                 WHERE group_id = $1 AND last_error IS NOT NULL ORDER BY COALESCE(processed_at, received_at) DESC LIMIT 1";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, (String, i64)>(q).bind(group_id).fetch_optional(pool).await?))
    }
}
