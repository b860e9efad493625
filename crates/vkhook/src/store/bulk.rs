//! Several communities at once: a bulk run's record (`bulk_runs`) and its communities in the admin's order
//! (`bulk_members`). A connect's progress per community is its setup record; a disconnect's outcome is kept here.

use super::communities::USER_COMMUNITY_COLUMNS;
use super::setups::SETUP_COLUMNS;
use super::{now_ms, on_pool, SetupRow, Store, StoreResult, UserCommunity};
use crate::model::{BulkKind, BulkOutcome};
use vk::GroupId;
use vk::UserId;

/// How long a bulk run's page stays: its record is dropped after this (its communities keep their own state).
const BULK_KEPT_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BulkRun {
    pub id: String,
    pub user_id: i64,
    pub kind: BulkKind,
    pub created_at: i64,
}

/// One community of a bulk run, as its user sees it now.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BulkMember {
    pub outcome: Option<BulkOutcome>,
    #[sqlx(flatten)]
    pub community: UserCommunity,
}

impl Store {
    /// Records a bulk run over `group_ids` (in this order); drops its user's runs older than a week.
    pub async fn create_bulk(&self, run: &BulkRun, group_ids: &[GroupId]) -> StoreResult<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // Their communities go with them (`ON DELETE CASCADE`).
            sqlx::query("DELETE FROM bulk_runs WHERE user_id = $1 AND created_at < $2")
                .bind(run.user_id).bind(now_ms() - BULK_KEPT_MS).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO bulk_runs (id, user_id, kind, created_at) VALUES ($1, $2, $3, $4)")
                .bind(&run.id).bind(run.user_id).bind(run.kind).bind(run.created_at).execute(&mut *tx).await?;
            for (position, group_id) in group_ids.iter().enumerate() {
                sqlx::query("INSERT INTO bulk_members (bulk_id, position, group_id) VALUES ($1, $2, $3)")
                    .bind(&run.id).bind(position as i32).bind(group_id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// `user_id`'s bulk run `id`, if it is theirs.
    pub async fn bulk_run(&self, id: &str, user_id: UserId) -> StoreResult<Option<BulkRun>> {
        let q = "SELECT id, user_id, kind, created_at FROM bulk_runs WHERE id = $1 AND user_id = $2";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, BulkRun>(q).bind(id).bind(user_id).fetch_optional(pool).await?))
    }

    /// The run's communities that its user still manages, in the run's order, with the setup record of each (one
    /// query for the communities, one for their setups).
    pub async fn bulk_members(&self, id: &str, user_id: UserId) -> StoreResult<Vec<(BulkMember, Option<SetupRow>)>> {
        let q = format!(
            "SELECT m.outcome, {USER_COMMUNITY_COLUMNS} FROM bulk_members m \
             JOIN community_admins a ON a.group_id = m.group_id AND a.user_id = $2 \
             JOIN communities c ON c.id = m.group_id JOIN community_settings s ON s.group_id = m.group_id \
             WHERE m.bulk_id = $1 ORDER BY m.position"
        );
        let members: Vec<BulkMember> =
            on_pool!(self, pool => sqlx::query_as(&q).bind(id).bind(user_id).fetch_all(pool).await?);
        let q = format!(
            "SELECT {SETUP_COLUMNS} FROM community_setups \
             WHERE group_id IN (SELECT group_id FROM bulk_members WHERE bulk_id = $1)"
        );
        let setups: Vec<SetupRow> = on_pool!(self, pool => sqlx::query_as(&q).bind(id).fetch_all(pool).await?);
        Ok(members
            .into_iter()
            .map(|m| {
                let setup = setups.iter().find(|s| s.group_id == m.community.id.0).cloned();
                (m, setup)
            })
            .collect())
    }

    /// Records how the run ended for one of its communities.
    pub async fn set_bulk_outcome(&self, id: &str, group_id: GroupId, outcome: BulkOutcome) -> StoreResult<()> {
        let q = "UPDATE bulk_members SET outcome = $3 WHERE bulk_id = $1 AND group_id = $2";
        on_pool!(self, pool => sqlx::query(q).bind(id).bind(group_id).bind(outcome).execute(pool).await?.rows_affected());
        Ok(())
    }
}
