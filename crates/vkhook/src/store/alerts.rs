//! Alerts: one open alert per (community, kind, subject); who tells the admin, and when, is decided here with
//! conditional writes, so two instances that see the same trouble tell the admin once.

use super::{on_pool, Store, StoreResult};
use crate::model::{AlertKind, AlertOutcome, Reason};
use vk::GroupId;
use vk::UserId;

/// How many tellings a window holds (`Store::alert_tellings_since`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TellingCounts {
    pub same_kind: i64,
    pub community: i64,
    pub user: i64,
    pub email: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AlertRow {
    pub id: i64,
    pub group_id: i64,
    pub kind: AlertKind,
    pub subject: String,
    pub detail: String,
    pub started_at: i64,
    pub resolved_at: Option<i64>,
    pub sends: i64,
    pub last_sent_at: i64,
    pub vk_result: Option<AlertOutcome>,
    pub email_result: Option<AlertOutcome>,
    /// The community's `random_id` counter value reserved for this telling's VK message.
    pub random_id: Option<i64>,
    /// Why VK refused the message, when it did.
    pub vk_reason: Option<Reason>,
}

const ALERT_COLUMNS: &str = "id, group_id, kind, subject, detail, started_at, resolved_at, sends, last_sent_at, \
    vk_result, email_result, random_id, vk_reason";

impl Store {
    /// Opens an alert unless one of the same kind and subject is open: its id when this call opened it.
    pub async fn open_alert(
        &self,
        group_id: GroupId,
        kind: AlertKind,
        subject: &str,
        detail: &str,
        now: i64,
    ) -> StoreResult<Option<i64>> {
        let q = "INSERT INTO alerts (group_id, kind, subject, detail, started_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (group_id, kind, subject) WHERE resolved_at IS NULL DO NOTHING RETURNING id";
        Ok(on_pool!(self, pool => sqlx::query_scalar(q).bind(group_id).bind(kind).bind(subject).bind(detail).bind(now)
            .fetch_optional(pool).await?))
    }

    /// Takes the right to tell the admin about an open alert now: the first time, or again when the last time was
    /// before `remind_before`. Only one caller gets it, with this telling's `random_id` reserved from the
    /// community's counter in the same transaction (the bot's replies use the same counter: `dedup`).
    pub async fn claim_alert_send(&self, id: i64, now: i64, remind_before: i64) -> StoreResult<Option<AlertRow>> {
        let q = format!(
            "UPDATE alerts SET sends = sends + 1, last_sent_at = $2, vk_reason = NULL WHERE id = $1 \
             AND resolved_at IS NULL AND (sends = 0 OR last_sent_at < $3) RETURNING {ALERT_COLUMNS}"
        );
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let claimed = sqlx::query_as::<_, AlertRow>(&q).bind(id).bind(now).bind(remind_before)
                .fetch_optional(&mut *tx).await?;
            let claimed = match claimed {
                Some(mut alert) => {
                    alert.random_id = super::reserve_random_ids!(tx, alert.group_id, 1);
                    sqlx::query("UPDATE alerts SET random_id = $2 WHERE id = $1")
                        .bind(id).bind(alert.random_id).execute(&mut *tx).await?;
                    Some(alert)
                }
                None => None,
            };
            tx.commit().await?;
            claimed
        }))
    }

    /// Open alerts whose last telling was before `remind_before`.
    pub async fn alerts_to_remind(&self, remind_before: i64) -> StoreResult<Vec<i64>> {
        let q = "SELECT id FROM alerts WHERE resolved_at IS NULL AND sends > 0 AND last_sent_at < $1 ORDER BY id";
        Ok(on_pool!(self, pool => sqlx::query_scalar(q).bind(remind_before).fetch_all(pool).await?))
    }

    /// How the last telling went (and why VK refused its message, if it did).
    pub async fn record_alert_results(
        &self,
        id: i64,
        vk: Option<AlertOutcome>,
        vk_reason: Option<Reason>,
        email: Option<AlertOutcome>,
    ) -> StoreResult<()> {
        let q = "UPDATE alerts SET vk_result = $2, vk_reason = $3, email_result = $4 WHERE id = $1";
        on_pool!(self, pool => sqlx::query(q).bind(id).bind(vk).bind(vk_reason).bind(email)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// The trouble is over: closes the open alerts of this kind (and subject, if given).
    pub async fn resolve_alerts(
        &self,
        group_id: GroupId,
        kind: AlertKind,
        subject: Option<&str>,
        now: i64,
    ) -> StoreResult<u64> {
        let q = "UPDATE alerts SET resolved_at = $4 WHERE group_id = $1 AND kind = $2 AND resolved_at IS NULL \
                 AND ($3 IS NULL OR subject = $3)";
        Ok(on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(kind).bind(subject).bind(now)
            .execute(pool).await?.rows_affected()))
    }

    /// A community's alerts, newest first (the «Уведомления» card).
    pub async fn alerts(&self, group_id: GroupId, limit: i64) -> StoreResult<Vec<AlertRow>> {
        let q = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE group_id = $1 ORDER BY id DESC LIMIT $2");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, AlertRow>(&q).bind(group_id).bind(limit).fetch_all(pool).await?))
    }

    /// No e-mails for the community's alerts any more: the confirmed address and any waiting one are forgotten.
    pub async fn clear_alert_email(&self, group_id: GroupId) -> StoreResult<bool> {
        let q = "UPDATE community_settings SET alert_email = NULL, alert_email_pending = NULL, \
                 alert_email_token = NULL, alert_email_sent_at = NULL WHERE group_id = $1";
        let n = on_pool!(self, pool => sqlx::query(q).bind(group_id).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// `email` waits for its confirmation link (`token_hash`: SHA-256 of the link's token), sent at `now` — unless a
    /// confirmation went out less than `min_gap_ms` ago (one a while per community: the link goes to any address the
    /// admin types). Whether this one may be sent.
    pub async fn request_alert_email(
        &self,
        group_id: GroupId,
        email: &str,
        token_hash: &str,
        now: i64,
        min_gap_ms: i64,
    ) -> StoreResult<bool> {
        let q = "UPDATE community_settings SET alert_email_pending = $2, alert_email_token = $3, \
                 alert_email_sent_at = $4 WHERE group_id = $1 \
                 AND (alert_email_sent_at IS NULL OR alert_email_sent_at < $5)";
        let n = on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(email).bind(token_hash).bind(now)
            .bind(now - min_gap_ms).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// The confirmation link with `token_hash` was followed: its address becomes the alerts' address, if the link
    /// is younger than `since` and was not used. The community it was for.
    pub async fn confirm_alert_email(&self, token_hash: &str, since: i64) -> StoreResult<Option<i64>> {
        let q = "UPDATE community_settings SET alert_email = alert_email_pending, alert_email_pending = NULL, \
                 alert_email_token = NULL WHERE alert_email_token = $1 AND alert_email_sent_at >= $2 \
                 AND alert_email_pending IS NOT NULL RETURNING group_id";
        Ok(on_pool!(self, pool => sqlx::query_scalar(q).bind(token_hash).bind(since).fetch_optional(pool).await?))
    }

    /// The confirmed address alerts go to.
    pub async fn alert_email(&self, group_id: GroupId) -> StoreResult<Option<String>> {
        let q = "SELECT alert_email FROM community_settings WHERE group_id = $1";
        let found: Option<Option<String>> =
            on_pool!(self, pool => sqlx::query_scalar(q).bind(group_id).fetch_optional(pool).await?);
        Ok(found.flatten())
    }

    /// The address waiting for its confirmation, if any.
    pub async fn pending_alert_email(&self, group_id: GroupId) -> StoreResult<Option<String>> {
        let q = "SELECT alert_email_pending FROM community_settings WHERE group_id = $1";
        let found: Option<Option<String>> =
            on_pool!(self, pool => sqlx::query_scalar(q).bind(group_id).fetch_optional(pool).await?);
        Ok(found.flatten())
    }

    /// Records that alert `alert` of `group_id` was told to `user_id` in VK and/or to `email`, at `at`.
    pub async fn record_alert_telling(
        &self,
        alert: &AlertRow,
        user_id: Option<i64>,
        email: Option<&str>,
        at: i64,
    ) -> StoreResult<()> {
        let q = "INSERT INTO alert_tellings (alert_id, group_id, kind, user_id, email, at) \
                 VALUES ($1, $2, $3, $4, $5, $6)";
        on_pool!(self, pool => sqlx::query(q).bind(alert.id).bind(alert.group_id).bind(alert.kind).bind(user_id)
            .bind(email).bind(at).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Tellings since `since`: of this community and kind, of this community at all, to this user, to this address.
    pub async fn alert_tellings_since(
        &self,
        group_id: GroupId,
        kind: AlertKind,
        user_id: Option<i64>,
        email: Option<&str>,
        since: i64,
    ) -> StoreResult<TellingCounts> {
        let q = "SELECT \
                 (SELECT COUNT(*) FROM alert_tellings WHERE group_id = $1 AND kind = $2 AND at >= $5), \
                 (SELECT COUNT(*) FROM alert_tellings WHERE group_id = $1 AND at >= $5), \
                 (SELECT COUNT(*) FROM alert_tellings WHERE user_id = $3 AND at >= $5), \
                 (SELECT COUNT(*) FROM alert_tellings WHERE email = $4 AND at >= $5)";
        let (same_kind, community, user, email): (i64, i64, i64, i64) = on_pool!(self, pool => sqlx::query_as(q)
            .bind(group_id).bind(kind).bind(user_id).bind(email).bind(since).fetch_one(pool).await?);
        Ok(TellingCounts { same_kind, community, user, email })
    }

    /// Whether `user_id` lets community `group_id` write to them, and as of when (VK's answer or their own event).
    pub async fn message_permission(&self, group_id: GroupId, user_id: UserId) -> StoreResult<Option<(bool, i64)>> {
        let q = "SELECT allowed, checked_at FROM message_permissions WHERE group_id = $1 AND user_id = $2";
        Ok(on_pool!(self, pool => sqlx::query_as(q).bind(group_id).bind(user_id).fetch_optional(pool).await?))
    }

    /// Records VK's answer as of `at`; a newer one (a later event) is never overwritten.
    pub async fn set_message_permission(
        &self,
        group_id: GroupId,
        user_id: UserId,
        allowed: bool,
        at: i64,
    ) -> StoreResult<()> {
        let q = "INSERT INTO message_permissions (group_id, user_id, allowed, checked_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (group_id, user_id) DO UPDATE SET allowed = excluded.allowed, \
                 checked_at = excluded.checked_at WHERE excluded.checked_at >= message_permissions.checked_at";
        on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(user_id).bind(allowed).bind(at)
            .execute(pool).await?.rows_affected());
        Ok(())
    }
}
