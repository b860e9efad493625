//! The bot's switches and rules per community.

use super::{now_ms, on_pool, Store, StoreResult};
use crate::model::{LogEntry, PauseReason, ReplyKind, ReplyStatus};
use vk::GroupId;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BotSettings {
    pub group_id: i64,
    pub bot_comments: bool,
    pub bot_messages: bool,
    pub default_reply: Option<String>,
    pub paused_reason: Option<PauseReason>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RuleRow {
    pub id: i64,
    pub group_id: i64,
    pub position: i64,
    /// Comma-separated keywords.
    pub keywords: String,
    pub reply: String,
}

impl Store {
    pub async fn bot_settings(&self, group_id: GroupId) -> StoreResult<Option<BotSettings>> {
        let q = "SELECT group_id, bot_comments, bot_messages, default_reply, paused_reason FROM community_settings WHERE group_id = $1";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, BotSettings>(q).bind(group_id).fetch_optional(pool).await?))
    }

    pub async fn set_bot_settings(
        &self,
        group_id: GroupId,
        comments: bool,
        messages: bool,
        default_reply: Option<&str>,
    ) -> StoreResult<()> {
        let q = "UPDATE community_settings SET bot_comments = $2, bot_messages = $3, default_reply = $4, updated_at = $5 WHERE group_id = $1";
        on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(comments).bind(messages).bind(default_reply).bind(now_ms())
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Resumes the bot (`None`); pausing goes through [`Store::drop_key_and_pause`].
    pub async fn set_bot_paused(&self, group_id: GroupId, reason: Option<PauseReason>) -> StoreResult<()> {
        let q = "UPDATE community_settings SET paused_reason = $2, updated_at = $3 WHERE group_id = $1";
        on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(reason).bind(now_ms()).execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn rules(&self, group_id: GroupId) -> StoreResult<Vec<RuleRow>> {
        let q =
            "SELECT id, group_id, position, keywords, reply FROM reply_rules WHERE group_id = $1 ORDER BY position, id";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, RuleRow>(q).bind(group_id).fetch_all(pool).await?))
    }

    /// Adds a rule at the end; returns its id.
    pub async fn add_rule(&self, group_id: GroupId, keywords: &str, reply: &str) -> StoreResult<i64> {
        let q = "INSERT INTO reply_rules (group_id, position, keywords, reply, created_at) \
                 VALUES ($1, (SELECT COALESCE(MAX(position), 0) + 1 FROM reply_rules WHERE group_id = $1), $2, $3, $4) RETURNING id";
        Ok(
            on_pool!(self, pool => sqlx::query_scalar(q).bind(group_id).bind(keywords).bind(reply).bind(now_ms()).fetch_one(pool).await?),
        )
    }

    pub async fn delete_rule(&self, group_id: GroupId, rule_id: i64) -> StoreResult<bool> {
        let q = "DELETE FROM reply_rules WHERE group_id = $1 AND id = $2";
        let n =
            on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(rule_id).execute(pool).await?.rows_affected());
        Ok(n > 0)
    }

    /// Swaps a rule with its neighbour above (`up`) or below.
    pub async fn move_rule(&self, group_id: GroupId, rule_id: i64, up: bool) -> StoreResult<()> {
        let rules = self.rules(group_id).await?;
        let Some(i) = rules.iter().position(|r| r.id == rule_id) else { return Ok(()) };
        let j = if up { i.checked_sub(1) } else { Some(i + 1).filter(|j| *j < rules.len()) };
        let Some(j) = j else { return Ok(()) };
        // Renumber densely in the new order.
        let mut order: Vec<i64> = rules.iter().map(|r| r.id).collect();
        order.swap(i, j);
        let q = "UPDATE reply_rules SET position = $3 WHERE group_id = $1 AND id = $2";
        for (pos, id) in order.iter().enumerate() {
            on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(*id).bind(pos as i64 + 1).execute(pool).await?.rows_affected());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReplyRow {
    pub id: i64,
    pub group_id: i64,
    pub inbox_id: i64,
    pub kind: ReplyKind,
    pub rule_id: Option<i64>,
    pub text: String,
    pub vk_id: Option<i64>,
    pub status: ReplyStatus,
    pub error: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LogRow {
    pub id: i64,
    pub group_id: i64,
    pub at: i64,
    pub kind: String,
    pub message: String,
}

impl LogRow {
    /// The entry, if this version of vkhook knows it.
    pub fn entry(&self) -> Option<LogEntry> {
        LogEntry::from_row(&self.kind, &self.message)
    }
}

impl Store {
    /// Replies since `since`: (sent, failed). (A reply is recorded with its event's settlement:
    /// [`Store::write_inbox`].)
    pub async fn reply_counts(&self, group_id: GroupId, since: i64) -> StoreResult<(i64, i64)> {
        let q = "SELECT COALESCE(SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END), 0), \
                 COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) \
                 FROM replies WHERE group_id = $1 AND created_at >= $2";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, (i64, i64)>(q).bind(group_id).bind(since).fetch_one(pool).await?))
    }

    /// Whether the bot itself wrote the comment or message with this VK id (its own echo).
    pub async fn is_own_reply(&self, group_id: GroupId, kind: ReplyKind, vk_id: i64) -> StoreResult<bool> {
        let q = "SELECT COUNT(*) FROM replies WHERE group_id = $1 AND kind = $2 AND vk_id = $3 AND status = 'sent'";
        let n: i64 =
            on_pool!(self, pool => sqlx::query_scalar(q).bind(group_id).bind(kind).bind(vk_id).fetch_one(pool).await?);
        Ok(n > 0)
    }

    pub async fn log_community(&self, group_id: GroupId, entry: &LogEntry) -> StoreResult<()> {
        let (kind, message) = entry.to_row();
        let q = "INSERT INTO community_log (group_id, at, kind, message) VALUES ($1, $2, $3, $4)";
        on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(now_ms()).bind(kind).bind(&message).execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn community_log(&self, group_id: GroupId, limit: i64) -> StoreResult<Vec<LogRow>> {
        let q =
            "SELECT id, group_id, at, kind, message FROM community_log WHERE group_id = $1 ORDER BY id DESC LIMIT $2";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, LogRow>(q).bind(group_id).bind(limit).fetch_all(pool).await?))
    }

    /// Connected communities (with a token) for the reconcile pass.
    pub async fn connected_communities(&self) -> StoreResult<Vec<i64>> {
        let q = "SELECT group_id FROM community_settings WHERE callback_configured AND community_token IS NOT NULL \
                 AND setup_mode = 'api' ORDER BY group_id";
        Ok(on_pool!(self, pool => sqlx::query_scalar(q).fetch_all(pool).await?))
    }
}
