//! Forwarding: endpoints, their deliveries and every attempt. Deliveries are made by the database in the statement
//! that stores an event (the `inbox_forward` trigger, migration 4), so an event VK heard `ok` for has its deliveries
//! too. Senders claim a batch of one endpoint's due deliveries under an endpoint lease (one instance sends to an
//! endpoint at a time, so its concurrency bound holds across instances) and record the batch's results in the
//! group commit ([`Store::write_inbox`]).

use super::{now_ms, on_pool, Store, StoreResult};
use crate::model::{DeliveryStatus, DisabledReason};
use vk::GroupId;

/// A new endpoint; its secret is already sealed (the vault row is its id).
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub id: String,
    pub group_id: i64,
    pub name: String,
    pub url: String,
    /// Comma-separated; empty: every type.
    pub event_types: String,
    pub secret: String,
    pub created_by: i64,
}

const ENDPOINT_COLUMNS: &str = "id, group_id, name, url, event_types, secret, previous_secret, \
    previous_secret_until, enabled, disabled_reason, failing_since, created_at, updated_at";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: String,
    pub group_id: i64,
    pub name: String,
    pub url: String,
    pub event_types: String,
    /// Sealed.
    pub secret: String,
    /// Sealed; signs too until `previous_secret_until`.
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<i64>,
    pub enabled: bool,
    pub disabled_reason: Option<DisabledReason>,
    pub failing_since: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl EndpointRow {
    /// The event types it wants; empty: every type.
    pub fn types(&self) -> Vec<&str> {
        self.event_types.split(',').map(str::trim).filter(|t| !t.is_empty()).collect()
    }
}

/// One claimed delivery, with the body to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub group_id: i64,
    pub event_id: String,
    pub event_type: String,
    /// This attempt's number (1 = the first).
    pub attempts: i64,
    /// The body: VK's event without `secret`.
    pub payload: String,
}

/// An endpoint this instance now holds, and its due deliveries.
#[derive(Debug, Clone)]
pub struct ClaimedBatch {
    pub endpoint: EndpointRow,
    pub deliveries: Vec<ClaimedDelivery>,
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub attempt: i64,
    pub at: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// The first bytes of the answer.
    pub response: Option<String>,
}

/// Where a delivery goes after its attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryNext {
    Delivered,
    /// Back to `pending` for another attempt at this time.
    RetryAt(i64),
    /// Given up.
    Failed,
    /// Not attempted (the endpoint failed earlier in the batch, or time ran out): back to `pending` as it was, the
    /// claim's attempt undone, not before this time.
    Release {
        not_before: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    pub delivery_id: i64,
    /// `None` for [`DeliveryNext::Release`].
    pub attempt: Option<AttemptRecord>,
    pub next: DeliveryNext,
}

/// How the endpoint fared in a batch: its last attempt's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointHealth {
    Succeeded,
    /// Failed at this time (kept as `failing_since` if it was not failing yet).
    Failed {
        at: i64,
    },
    /// It answered 410: disabled at once.
    Gone,
}

/// A claimed batch's results, recorded together, and the endpoint given back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryResults {
    pub endpoint_id: String,
    pub owner: String,
    pub outcomes: Vec<DeliveryOutcome>,
    pub health: Option<EndpointHealth>,
    /// An endpoint failing since before this time (Unix ms) is disabled.
    pub failing_cutoff: i64,
    /// The batch is over: the endpoint is given back (a long batch records its results in parts before).
    pub release: bool,
    /// The endpoint itself failed (no connection, a timeout, 429, 5xx): none of its deliveries, not even new
    /// events', is claimed before this time.
    pub backoff_until: Option<i64>,
}

/// What recording [`DeliveryResults`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveriesSettled {
    /// False where the delivery was no longer the sender's (its lease ran out and another took it).
    pub settled: Vec<bool>,
    /// The endpoint was disabled by this batch, and why.
    pub disabled: Option<DisabledReason>,
}

/// A row of an endpoint's attempts list.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AttemptRow {
    pub id: i64,
    pub delivery_id: i64,
    pub event_id: String,
    pub event_type: String,
    pub attempt: i64,
    pub at: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub response: Option<String>,
    pub delivery_status: DeliveryStatus,
}

/// An endpoint's queue at a glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointQueue {
    /// Waiting or being sent.
    pub open: i64,
    /// Given up.
    pub failed: i64,
}

/// Records a batch's results on either backend's transaction (the same statements on both).
macro_rules! settle_deliveries {
    ($tx:expr, $r:expr, $db:ty) => {{
        let r: &$crate::store::DeliveryResults = $r;
        let now = $crate::store::now_ms();
        use $crate::store::DeliveryNext;
        // The common case, delivered, in one statement; the rest (retries, give-ups, releases) one by one.
        let delivered: Vec<i64> =
            r.outcomes.iter().filter(|o| o.next == DeliveryNext::Delivered).map(|o| o.delivery_id).collect();
        let mut done = std::collections::HashSet::new();
        for chunk in delivered.chunks(500) {
            let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE deliveries SET status = 'delivered', finished_at = ");
            q.push_bind(now).push(", lease_owner = NULL, lease_until = NULL WHERE lease_owner = ");
            q.push_bind(&r.owner).push(" AND status = 'sending' AND id IN (");
            let mut ids = q.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            q.push(") RETURNING id");
            done.extend(q.build_query_scalar::<i64>().fetch_all(&mut *$tx).await?);
        }
        for o in r.outcomes.iter().filter(|o| o.next != DeliveryNext::Delivered) {
            let q = match &o.next {
                DeliveryNext::RetryAt(at) => sqlx::query(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = $3, lease_owner = NULL, \
                     lease_until = NULL WHERE id = $1 AND lease_owner = $2 AND status = 'sending'",
                )
                .bind(o.delivery_id)
                .bind(&r.owner)
                .bind(*at),
                DeliveryNext::Failed => sqlx::query(
                    "UPDATE deliveries SET status = 'failed', finished_at = $3, lease_owner = NULL, \
                     lease_until = NULL WHERE id = $1 AND lease_owner = $2 AND status = 'sending'",
                )
                .bind(o.delivery_id)
                .bind(&r.owner)
                .bind(now),
                DeliveryNext::Release { not_before } => sqlx::query(
                    "UPDATE deliveries SET status = 'pending', attempts = attempts - 1, \
                     next_attempt_at = CASE WHEN next_attempt_at < $3 THEN $3 ELSE next_attempt_at END, \
                     lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2 AND status = 'sending'",
                )
                .bind(o.delivery_id)
                .bind(&r.owner)
                .bind(*not_before),
                DeliveryNext::Delivered => unreachable!("filtered out above"),
            };
            if q.execute(&mut *$tx).await?.rows_affected() == 1 {
                done.insert(o.delivery_id);
            }
        }
        let settled: Vec<bool> = r.outcomes.iter().map(|o| done.contains(&o.delivery_id)).collect();
        // The attempts of what was settled, in one statement per 500.
        let attempts: Vec<(i64, &$crate::store::AttemptRecord)> = r
            .outcomes
            .iter()
            .filter(|o| done.contains(&o.delivery_id))
            .filter_map(|o| o.attempt.as_ref().map(|a| (o.delivery_id, a)))
            .collect();
        for chunk in attempts.chunks(500) {
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO delivery_attempts (delivery_id, endpoint_id, attempt, at, status_code, error, \
                 duration_ms, response) ",
            );
            q.push_values(chunk, |mut row, (id, a)| {
                row.push_bind(*id)
                    .push_bind(&r.endpoint_id)
                    .push_bind(a.attempt)
                    .push_bind(a.at)
                    .push_bind(a.status_code)
                    .push_bind(&a.error)
                    .push_bind(a.duration_ms)
                    .push_bind(&a.response);
            });
            q.build().execute(&mut *$tx).await?;
        }
        let mut disabled = None;
        match r.health {
            Some($crate::store::EndpointHealth::Succeeded) => {
                sqlx::query("UPDATE endpoints SET failing_since = NULL WHERE id = $1")
                    .bind(&r.endpoint_id)
                    .execute(&mut *$tx)
                    .await?;
            }
            Some($crate::store::EndpointHealth::Failed { at }) => {
                sqlx::query("UPDATE endpoints SET failing_since = COALESCE(failing_since, $2) WHERE id = $1")
                    .bind(&r.endpoint_id)
                    .bind(at)
                    .execute(&mut *$tx)
                    .await?;
                let off = sqlx::query(
                    "UPDATE endpoints SET enabled = FALSE, disabled_reason = 'failing', updated_at = $3 \
                     WHERE id = $1 AND enabled AND failing_since < $2",
                )
                .bind(&r.endpoint_id)
                .bind(r.failing_cutoff)
                .bind(now)
                .execute(&mut *$tx)
                .await?;
                if off.rows_affected() == 1 {
                    disabled = Some($crate::model::DisabledReason::Failing);
                }
            }
            Some($crate::store::EndpointHealth::Gone) => {
                let off = sqlx::query(
                    "UPDATE endpoints SET enabled = FALSE, disabled_reason = 'gone', updated_at = $2 \
                     WHERE id = $1 AND enabled",
                )
                .bind(&r.endpoint_id)
                .bind(now)
                .execute(&mut *$tx)
                .await?;
                if off.rows_affected() == 1 {
                    disabled = Some($crate::model::DisabledReason::Gone);
                }
            }
            None => {}
        }
        if let Some(until) = r.backoff_until {
            sqlx::query("UPDATE endpoints SET backoff_until = $2 WHERE id = $1 AND backoff_until < $2")
                .bind(&r.endpoint_id)
                .bind(until)
                .execute(&mut *$tx)
                .await?;
        }
        if r.release {
            sqlx::query("UPDATE endpoints SET lease_owner = NULL, lease_until = 0 WHERE id = $1 AND lease_owner = $2")
                .bind(&r.endpoint_id)
                .bind(&r.owner)
                .execute(&mut *$tx)
                .await?;
        }
        $crate::store::DeliveriesSettled { settled, disabled }
    }};
}
pub(crate) use settle_deliveries;

impl Store {
    /// Adds the endpoint unless its community has `cap` already (one statement: two adds at once cannot both pass
    /// the cap); whether it was added. Its secret is shown once ([`Store::take_endpoint_reveal`]).
    pub async fn add_endpoint(&self, e: &NewEndpoint, cap: i64) -> StoreResult<bool> {
        let q = "INSERT INTO endpoints (id, group_id, name, url, event_types, secret, created_by, created_at, \
                 updated_at, reveal_pending) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $8, TRUE \
                 WHERE (SELECT COUNT(*) FROM endpoints WHERE group_id = $2) < $9";
        let lock = match self.backend {
            // Two adds at once would both count the same rows under READ COMMITTED: the community's row serializes
            // them. (SQLite runs one write at a time.)
            super::Backend::Postgres(_) => {
                Some("SELECT group_id FROM community_settings WHERE group_id = $1 FOR UPDATE")
            }
            super::Backend::Sqlite(_) => None,
        };
        let n = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if let Some(lock) = lock {
                sqlx::query(lock).bind(e.group_id).execute(&mut *tx).await?;
            }
            let n = sqlx::query(q).bind(&e.id).bind(e.group_id).bind(&e.name).bind(&e.url).bind(&e.event_types)
                .bind(&e.secret).bind(e.created_by).bind(now_ms()).bind(cap).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            n
        });
        Ok(n == 1)
    }

    /// Whether the endpoint's secret may be shown now: once after it was made or rotated, then never (it reads
    /// masked). True for the one caller that takes it.
    pub async fn take_endpoint_reveal(&self, group_id: GroupId, endpoint_id: &str) -> StoreResult<bool> {
        let q = "UPDATE endpoints SET reveal_pending = FALSE WHERE group_id = $1 AND id = $2 AND reveal_pending";
        let n = on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(endpoint_id).execute(pool).await?
            .rows_affected());
        Ok(n == 1)
    }

    /// A community's endpoints, oldest first.
    pub async fn endpoints(&self, group_id: GroupId) -> StoreResult<Vec<EndpointRow>> {
        let q = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE group_id = $1 ORDER BY created_at, id");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, EndpointRow>(&q).bind(group_id).fetch_all(pool).await?))
    }

    pub async fn endpoint(&self, group_id: GroupId, id: &str) -> StoreResult<Option<EndpointRow>> {
        let q = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE group_id = $1 AND id = $2");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, EndpointRow>(&q).bind(group_id).bind(id)
            .fetch_optional(pool).await?))
    }

    /// «Включить» (`disabled: None`; past failures forgotten) or «Отключить» (with why).
    pub async fn set_endpoint_disabled(
        &self,
        group_id: GroupId,
        id: &str,
        disabled: Option<DisabledReason>,
    ) -> StoreResult<bool> {
        let q = "UPDATE endpoints SET enabled = $3, disabled_reason = $4, failing_since = NULL, updated_at = $5 \
                 WHERE group_id = $1 AND id = $2";
        let n = on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(id).bind(disabled.is_none()).bind(disabled)
            .bind(now_ms()).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// «Удалить»: the endpoint, its deliveries and their attempts.
    pub async fn delete_endpoint(&self, group_id: GroupId, id: &str) -> StoreResult<bool> {
        let q = "DELETE FROM endpoints WHERE group_id = $1 AND id = $2";
        let n = on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(id).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// «Сменить секрет»: `secret` signs from now on, and `previous` (the old one) as well until `previous_until`.
    pub async fn rotate_endpoint_secret(
        &self,
        group_id: GroupId,
        id: &str,
        secret: &str,
        previous: &str,
        previous_until: i64,
    ) -> StoreResult<bool> {
        let q = "UPDATE endpoints SET secret = $3, previous_secret = $4, previous_secret_until = $5, updated_at = $6, \
                 reveal_pending = TRUE WHERE group_id = $1 AND id = $2";
        let n = on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(id).bind(secret).bind(previous)
            .bind(previous_until).bind(now_ms()).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// Drops previous signing secrets whose day is over.
    pub async fn retire_endpoint_secrets(&self, now: i64) -> StoreResult<u64> {
        let q = "UPDATE endpoints SET previous_secret = NULL, previous_secret_until = NULL \
                 WHERE previous_secret IS NOT NULL AND previous_secret_until < $1";
        Ok(on_pool!(self, pool => sqlx::query(q).bind(now).execute(pool).await?.rows_affected()))
    }

    /// Queues a test event for one endpoint (it is not a VK event: no inbox row); its id.
    pub async fn add_test_delivery(
        &self,
        endpoint: &EndpointRow,
        event_id: &str,
        event_type: &str,
        payload: &str,
    ) -> StoreResult<i64> {
        let q = "INSERT INTO deliveries (endpoint_id, group_id, event_id, event_type, payload, next_attempt_at, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id";
        Ok(on_pool!(self, pool => sqlx::query_scalar(q).bind(&endpoint.id).bind(endpoint.group_id).bind(event_id)
            .bind(event_type).bind(payload).bind(now_ms()).fetch_one(pool).await?))
    }

    /// «Повторить»: the delivery is sent again now (under the same `webhook-id`), whatever became of it, with a
    /// fresh schedule. Not while it is being sent.
    pub async fn replay_delivery(&self, endpoint_id: &str, delivery_id: i64) -> StoreResult<bool> {
        let q = "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $3, finished_at = NULL, \
                 lease_owner = NULL, lease_until = NULL WHERE endpoint_id = $1 AND id = $2 AND status <> 'sending'";
        let n = on_pool!(self, pool => sqlx::query(q).bind(endpoint_id).bind(delivery_id).bind(now_ms())
            .execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// «Повторить неудачные»: every given-up delivery of the endpoint is sent again now; how many.
    pub async fn replay_failed_deliveries(&self, endpoint_id: &str) -> StoreResult<u64> {
        let q = "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $2, finished_at = NULL \
                 WHERE endpoint_id = $1 AND status = 'failed'";
        Ok(on_pool!(self, pool => sqlx::query(q).bind(endpoint_id).bind(now_ms()).execute(pool).await?.rows_affected()))
    }

    /// The endpoint's attempts, newest first, with the event each was for.
    pub async fn endpoint_attempts(&self, endpoint_id: &str, limit: i64) -> StoreResult<Vec<AttemptRow>> {
        let q = "SELECT a.id, a.delivery_id, d.event_id, d.event_type, a.attempt, a.at, a.status_code, a.error, \
                 a.duration_ms, a.response, d.status AS delivery_status \
                 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id \
                 WHERE a.endpoint_id = $1 ORDER BY a.id DESC LIMIT $2";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, AttemptRow>(q).bind(endpoint_id).bind(limit)
            .fetch_all(pool).await?))
    }

    /// How many of the endpoint's deliveries wait and how many were given up (both counted in small partial
    /// indexes).
    pub async fn endpoint_queue(&self, endpoint_id: &str) -> StoreResult<EndpointQueue> {
        let open = "SELECT COUNT(*) FROM deliveries WHERE endpoint_id = $1 AND status IN ('pending', 'sending')";
        let failed = "SELECT COUNT(*) FROM deliveries WHERE endpoint_id = $1 AND status = 'failed'";
        let (open, failed) = on_pool!(self, pool => (
            sqlx::query_scalar(open).bind(endpoint_id).fetch_one(pool).await?,
            sqlx::query_scalar(failed).bind(endpoint_id).fetch_one(pool).await?,
        ));
        Ok(EndpointQueue { open, failed })
    }

    /// Deliveries not made yet, over all endpoints (counted in the partial index `deliveries_open`).
    pub async fn forward_depth(&self) -> StoreResult<i64> {
        let q = "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'sending')";
        Ok(on_pool!(self, pool => sqlx::query_scalar(q).fetch_one(pool).await?))
    }

    /// An event's delivery to one endpoint, by VK's `event_id` (or a test event's).
    pub async fn delivery_status(&self, endpoint_id: &str, event_id: &str) -> StoreResult<Option<DeliveryStatus>> {
        let q = "SELECT status FROM deliveries WHERE endpoint_id = $1 AND event_id = $2 ORDER BY id DESC LIMIT 1";
        Ok(on_pool!(self, pool => sqlx::query_scalar(q).bind(endpoint_id).bind(event_id).fetch_optional(pool).await?))
    }

    /// Claims, for `owner` until `lease_until`, up to `batch` due deliveries of each of up to `endpoints` enabled
    /// endpoints no instance holds, and takes those endpoints' leases: until the batch is recorded, only this
    /// instance sends to them. A delivery whose sender died is due again once its lease ran out.
    ///
    /// Fair across tenants: endpoints are taken round-robin (the one claimed longest ago first), an endpoint in
    /// back-off after failing waits with all its deliveries, and no community holds more than `share` endpoints at
    /// once (across instances), so one community's endpoints — many, slow, never answering — can take at most
    /// `share` of the senders' slots.
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        endpoints: i64,
        batch: i64,
        share: i64,
    ) -> StoreResult<Vec<ClaimedBatch>> {
        const DUE: &str = "status IN ('pending', 'sending') AND next_attempt_at <= $1 \
                           AND (lease_until IS NULL OR lease_until < $1)";
        // A read first: with nothing due, no write transaction at all (on SQLite it would queue behind ingest).
        let candidates = format!(
            "SELECT id FROM (\
                SELECT e.id, e.last_claimed_at, \
                       ROW_NUMBER() OVER (PARTITION BY e.group_id ORDER BY e.last_claimed_at, e.id) AS nth, \
                       (SELECT COUNT(*) FROM endpoints x WHERE x.group_id = e.group_id AND x.lease_until >= $1) \
                           AS held \
                FROM endpoints e WHERE e.enabled AND e.lease_until < $1 AND e.backoff_until <= $1 \
                AND EXISTS (SELECT 1 FROM deliveries d WHERE d.endpoint_id = e.id AND d.{DUE})) c \
             WHERE c.nth + c.held <= $3 ORDER BY c.last_claimed_at, c.id LIMIT $2"
        );
        let ids: Vec<String> = on_pool!(self, pool => sqlx::query_scalar(&candidates).bind(now).bind(endpoints)
            .bind(share.max(1)).fetch_all(pool).await?);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let take_endpoint = "UPDATE endpoints SET lease_owner = $2, lease_until = $3, last_claimed_at = $4 \
                             WHERE id = $1 AND enabled AND lease_until < $4";
        let take_deliveries = format!(
            "UPDATE deliveries SET status = 'sending', lease_owner = $2, lease_until = $3, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM deliveries WHERE endpoint_id = $4 AND {DUE} \
                          ORDER BY next_attempt_at, id LIMIT $5) \
             RETURNING id, group_id, event_id, event_type, attempts, inbox_id, payload"
        );
        let endpoint = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = $1");
        type Taken = (i64, i64, String, String, i64, Option<i64>, Option<String>);
        let batches = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut batches = Vec::new();
            for id in &ids {
                let took = sqlx::query(take_endpoint).bind(id).bind(owner).bind(lease_until).bind(now)
                    .execute(&mut *tx).await?.rows_affected();
                if took == 0 {
                    continue; // another instance took it meanwhile
                }
                let mut taken: Vec<Taken> = sqlx::query_as(&take_deliveries)
                    .bind(now).bind(owner).bind(lease_until).bind(id).bind(batch)
                    .fetch_all(&mut *tx).await?;
                taken.sort_by_key(|t| t.0);
                // The bodies of VK's events, by primary key (only integers go into the list).
                let inbox: Vec<String> = taken.iter().filter_map(|t| t.5).map(|i| i.to_string()).collect();
                let mut bodies: std::collections::HashMap<i64, String> = if inbox.is_empty() {
                    Default::default()
                } else {
                    let q = format!("SELECT id, payload FROM inbox_events WHERE id IN ({})", inbox.join(","));
                    sqlx::query_as::<_, (i64, String)>(&q).fetch_all(&mut *tx).await?.into_iter().collect()
                };
                let endpoint = sqlx::query_as::<_, EndpointRow>(&endpoint).bind(id).fetch_one(&mut *tx).await?;
                let deliveries = taken
                    .into_iter()
                    .map(|(id, group_id, event_id, event_type, attempts, inbox_id, payload)| ClaimedDelivery {
                        payload: payload.or_else(|| inbox_id.and_then(|i| bodies.remove(&i))).unwrap_or_default(),
                        id,
                        group_id,
                        event_id,
                        event_type,
                        attempts,
                    })
                    .collect();
                batches.push(ClaimedBatch { endpoint, deliveries });
            }
            tx.commit().await?;
            batches
        });
        Ok(batches)
    }

    /// Gives up this instance's endpoint leases (it is stopping); what it held is sent by whoever claims next.
    pub async fn release_endpoint_leases(&self, owner: &str) -> StoreResult<u64> {
        let q = "UPDATE endpoints SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = $1";
        Ok(on_pool!(self, pool => sqlx::query(q).bind(owner).execute(pool).await?.rows_affected()))
    }
}
