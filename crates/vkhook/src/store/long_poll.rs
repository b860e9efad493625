//! Bots Long Poll's place in the store: the communities vkhook polls (one poller each across instances, by lease),
//! where each is (`ts`, moved only in the commit that stores the events it follows: [`SourceCursor`]), and the gaps
//! VK said it lost.

use vk::GroupId;

use super::{on_pool, StoreResult};
use crate::model::{CommunityStatus, SetupMode};
use crate::store::Store;

/// A community vkhook polls.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LongPollRow {
    pub group_id: i64,
    pub ts: Option<String>,
    pub switched_on: String,
    pub enabled_by_us: bool,
    pub owner: Option<String>,
    pub lease_until: i64,
    pub trouble: Option<String>,
    pub last_check_at: Option<i64>,
    pub created_at: i64,
}

impl LongPollRow {
    /// The event types vkhook switched on at VK.
    pub fn switched_on(&self) -> Vec<&str> {
        self.switched_on.split(',').filter(|t| !t.is_empty()).collect()
    }
}

/// Moves a poller's `ts` in the commit that stores the events before it — and only while `owner` still holds the
/// community: a poller that lost its lease never moves another's place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCursor {
    pub group_id: i64,
    pub owner: String,
    pub ts: String,
    pub at: i64,
}

/// The pollers at a glance (`/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct LongPollHealth {
    pub polled: i64,
    pub troubled: i64,
    /// Unix ms of the oldest last check among the communities polled without trouble.
    pub oldest_check_at: Option<i64>,
}

/// Events VK will not send again.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GapRow {
    pub id: i64,
    pub group_id: i64,
    pub from_at: i64,
    pub to_at: i64,
    pub why: String,
    pub created_at: i64,
}

/// `trouble` of a community whose Long Poll is being switched on: not polled until the setup starts it.
pub const CONNECTING: &str = "connecting";

const COLUMNS: &str =
    "group_id, ts, switched_on, enabled_by_us, owner, lease_until, trouble, last_check_at, created_at";

impl Store {
    /// Starts (or restarts) polling a community from `ts` (VK's place when it was switched on, so that nothing after
    /// the connect is missed); `switched_on` and `enabled_by_us` record what vkhook changed at VK, added to what an
    /// earlier start recorded. A place already held is kept: nothing after it is skipped.
    pub async fn start_long_poll(
        &self,
        group_id: GroupId,
        ts: Option<&str>,
        switched_on: &[&str],
        enabled_by_us: bool,
        now: i64,
    ) -> StoreResult<()> {
        self.upsert_long_poll(group_id, ts, switched_on, enabled_by_us, None, now).await
    }

    /// Records, before the call to VK that makes it so, what vkhook is about to switch on: a crash after VK's answer
    /// never leaves a switch nobody will switch off. A community not polled yet waits ([`CONNECTING`]) until
    /// [`Store::start_long_poll`]; one already polled goes on.
    pub async fn record_long_poll_switches(
        &self,
        group_id: GroupId,
        switched_on: &[&str],
        enabled_by_us: bool,
        now: i64,
    ) -> StoreResult<()> {
        self.upsert_long_poll(group_id, None, switched_on, enabled_by_us, Some(CONNECTING), now).await
    }

    /// `trouble: None` starts polling; `Some` is the new row's trouble, an existing row keeping its own.
    async fn upsert_long_poll(
        &self,
        group_id: GroupId,
        ts: Option<&str>,
        switched_on: &[&str],
        enabled_by_us: bool,
        trouble: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        let existing = self.long_poll(group_id).await?;
        let mut types: Vec<String> =
            existing.as_ref().map(|r| r.switched_on().into_iter().map(str::to_owned).collect()).unwrap_or_default();
        for t in switched_on {
            if !types.iter().any(|x| x == t) {
                types.push((*t).to_owned());
            }
        }
        let enabled_by_us = enabled_by_us || existing.is_some_and(|r| r.enabled_by_us);
        let q = "INSERT INTO long_poll (group_id, ts, switched_on, enabled_by_us, trouble, created_at) \
                 VALUES ($1, $5, $2, $3, $6, $4) \
                 ON CONFLICT (group_id) DO UPDATE SET switched_on = excluded.switched_on, \
                 enabled_by_us = excluded.enabled_by_us, ts = COALESCE(long_poll.ts, excluded.ts), \
                 trouble = CASE WHEN excluded.trouble IS NULL THEN NULL ELSE long_poll.trouble END";
        on_pool!(self, pool => sqlx::query(q)
            .bind(group_id).bind(types.join(",")).bind(enabled_by_us).bind(now).bind(ts).bind(trouble)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Records a community connected by Long Poll alone: unless the Callback API is set up for it (then both run,
    /// and the Callback setup stays what the page shows), it is connected, in `long_poll` mode.
    pub async fn mark_long_poll_connected(
        &self,
        group_id: GroupId,
        api_version: &str,
        events: &str,
        by_user: Option<i64>,
    ) -> StoreResult<bool> {
        let now = super::now_ms();
        let q = "UPDATE community_settings SET setup_mode = $2, status = $3, api_version = $4, events = $5, \
                 connected_at = $6, connected_by = COALESCE($7, connected_by), updated_at = $6 \
                 WHERE group_id = $1 AND NOT callback_configured";
        let n = on_pool!(self, pool => sqlx::query(q)
            .bind(group_id).bind(SetupMode::LongPoll).bind(CommunityStatus::Connected).bind(api_version)
            .bind(events).bind(now).bind(by_user)
            .execute(pool).await?.rows_affected());
        Ok(n > 0)
    }

    /// Stops polling a community; returns what vkhook had switched on at VK.
    pub async fn stop_long_poll(&self, group_id: GroupId) -> StoreResult<Option<LongPollRow>> {
        let row = self.long_poll(group_id).await?;
        on_pool!(self, pool => sqlx::query("DELETE FROM long_poll WHERE group_id = $1")
            .bind(group_id).execute(pool).await?.rows_affected());
        Ok(row)
    }

    pub async fn long_poll(&self, group_id: GroupId) -> StoreResult<Option<LongPollRow>> {
        let q = format!("SELECT {COLUMNS} FROM long_poll WHERE group_id = $1");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, LongPollRow>(&q).bind(group_id).fetch_optional(pool).await?))
    }

    /// Takes (or keeps) the polling of up to `limit` communities for `owner` until `until`: those without trouble
    /// whose lease is free, ran out, or is already `owner`'s. Returns them.
    pub async fn claim_long_polls(
        &self,
        owner: &str,
        now: i64,
        until: i64,
        limit: i64,
    ) -> StoreResult<Vec<LongPollRow>> {
        // Most instances poll nothing: a read first, so that they never take SQLite's write lock for it.
        let any = "SELECT 1 FROM long_poll WHERE trouble IS NULL LIMIT 1";
        if on_pool!(self, pool => sqlx::query_scalar::<_, i32>(any).fetch_optional(pool).await?).is_none() {
            return Ok(Vec::new());
        }
        let q = format!(
            "UPDATE long_poll SET owner = $1, lease_until = $3 WHERE group_id IN (\
               SELECT group_id FROM long_poll WHERE trouble IS NULL AND (owner = $1 OR owner IS NULL OR lease_until < $2) \
               ORDER BY group_id LIMIT $4) \
             AND trouble IS NULL AND (owner = $1 OR owner IS NULL OR lease_until < $2) RETURNING {COLUMNS}"
        );
        Ok(on_pool!(self, pool => sqlx::query_as::<_, LongPollRow>(&q)
            .bind(owner).bind(now).bind(until).bind(limit)
            .fetch_all(pool).await?))
    }

    /// Extends `owner`'s lease on a community; false when another instance has it now (stop polling).
    pub async fn renew_long_poll(&self, group_id: GroupId, owner: &str, until: i64) -> StoreResult<bool> {
        let q = "UPDATE long_poll SET lease_until = $3 WHERE group_id = $1 AND owner = $2";
        Ok(on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(owner).bind(until)
            .execute(pool).await?.rows_affected())
            == 1)
    }

    /// Gives up `owner`'s leases (it is stopping): another instance polls at once.
    pub async fn release_long_polls(&self, owner: &str) -> StoreResult<u64> {
        let q = "UPDATE long_poll SET owner = NULL, lease_until = 0 WHERE owner = $1";
        Ok(on_pool!(self, pool => sqlx::query(q).bind(owner).execute(pool).await?.rows_affected()))
    }

    /// Polling stopped for a reason only a person can change (Long Poll switched off at VK); `None` clears it.
    pub async fn set_long_poll_trouble(&self, group_id: GroupId, trouble: Option<&str>) -> StoreResult<()> {
        let q = "UPDATE long_poll SET trouble = $2, owner = NULL, lease_until = 0 WHERE group_id = $1";
        on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(trouble).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Sets the place outside an event commit: after VK's `failed: 1` or `failed: 3` (what was before is lost and
    /// recorded as a gap) and for a check that brought nothing. Only while `owner` holds the community.
    pub async fn move_long_poll(&self, cursor: &SourceCursor) -> StoreResult<bool> {
        let q = "UPDATE long_poll SET ts = $3, last_check_at = $4 WHERE group_id = $1 AND owner = $2";
        Ok(on_pool!(self, pool => sqlx::query(q)
            .bind(cursor.group_id).bind(&cursor.owner).bind(&cursor.ts).bind(cursor.at)
            .execute(pool).await?.rows_affected())
            == 1)
    }

    /// For `/metrics`: how many communities are polled, how many are stopped by trouble, and the oldest last check
    /// among those running (a poller that falls behind or died shows here).
    pub async fn long_poll_health(&self) -> StoreResult<LongPollHealth> {
        let q =
            "SELECT COUNT(*) AS polled, COALESCE(SUM(CASE WHEN trouble IS NULL THEN 0 ELSE 1 END), 0) AS troubled, \
                 MIN(CASE WHEN trouble IS NULL THEN COALESCE(last_check_at, created_at) END) AS oldest_check_at \
                 FROM long_poll";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, LongPollHealth>(q).fetch_one(pool).await?))
    }

    /// Records events VK will not send again.
    pub async fn record_gap(
        &self,
        group_id: GroupId,
        from_at: i64,
        to_at: i64,
        why: &str,
        now: i64,
    ) -> StoreResult<()> {
        let q = "INSERT INTO gaps (group_id, from_at, to_at, why, created_at) VALUES ($1, $2, $3, $4, $5)";
        on_pool!(self, pool => sqlx::query(q)
            .bind(group_id).bind(from_at).bind(to_at).bind(why).bind(now)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// A community's gaps, newest first.
    pub async fn gaps(&self, group_id: GroupId, limit: i64) -> StoreResult<Vec<GapRow>> {
        let q = "SELECT id, group_id, from_at, to_at, why, created_at FROM gaps WHERE group_id = $1 \
                 ORDER BY id DESC LIMIT $2";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, GapRow>(q).bind(group_id).bind(limit).fetch_all(pool).await?))
    }
}
