//! Several communities at once: «Подключить выбранные», «Подключить все неподключённые» and «Отключить выбранные».
//!
//! - **One consent.** oauth.vk.com's community authorization takes several communities in `group_ids`, and the
//!   code exchange returns one `access_token_<id>` per community the admin left ticked
//!   (https://dev.vk.com/ru/api/access-token/authcode-flow-community). VK documents no limit on
//!   how many communities one consent may name; the only bound we know of is the URL's length (a proxy's request
//!   line is commonly limited to 8 KB). A run asks for at most [`CONSENT_MAX_COMMUNITIES`] per consent (about 1 KB
//!   of ids) and chains the next consent when the first comes back.
//! - **Then every community's own setup run**, all at once: each uses its own key, whose calls are paced by the VK
//!   client's per-key limit (20 requests/s for a community key, https://dev.vk.com/ru/api/api-requests); a run makes its calls one after another.
//! - **Resumable.** The run's record lists the communities; each one's progress is its setup record, with a lease:
//!   a reload shows it, a second click joins the runs still going, and a crash is resumed (`resume_abandoned`).
//!   A community left unticked at VK fails as «not granted» and has its own «Попробовать снова».

use std::sync::Arc;
use vk::GroupId;
use vk::UserId;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::authorize::Begun;
use super::{AuthFailure, Authorized, CommunityRedirect, ConnectError, ConnectOptions, Connector, Disconnected};
use crate::logging::Untrusted;
use crate::model::{BulkKind, BulkOutcome, ErrorKind, SetupState};
use crate::store::{now_ms, BulkRun, StoreError, StoreResult};

/// At most this many communities in one consent (see the module: VK states no limit; this keeps the URL short).
pub const CONSENT_MAX_COMMUNITIES: usize = 100;

/// How many communities' keys are checked, or servers removed, at the same time.
const PARALLEL: usize = 16;

/// Where a started bulk run goes next.
#[derive(Debug)]
pub struct BulkStarted {
    pub bulk_id: String,
    /// The consent at VK for the communities without a usable key (none: every run started already).
    pub consent: Option<url::Url>,
}

/// The communities of «Подключить выбранные», sorted by where the user stands in each (`roles::Standing`).
#[derive(Debug, Clone, Default)]
pub struct BulkChoice {
    /// VK confirms the user administers them (now, or by the last proof).
    pub confirmed: Vec<GroupId>,
    /// Added by link, role not proven: they go to the consent even with a key stored (the consent is the proof).
    pub unproven: Vec<GroupId>,
    /// VK says the user does not administer them: listed, refused, and their setup records never touched.
    pub refused: Vec<GroupId>,
}

impl Connector {
    /// Starts connecting the chosen communities for `user_id`: confirmed ones with a stored key start at once, the
    /// rest wait for one consent. The refused ones are listed on the run's page only.
    pub async fn start_bulk(
        &self,
        user_id: UserId,
        session_hash: &str,
        chosen: &BulkChoice,
        options: ConnectOptions,
    ) -> StoreResult<BulkStarted> {
        let going: Vec<GroupId> = chosen.confirmed.iter().chain(&chosen.unproven).copied().collect();
        let bulk = self.new_bulk(user_id, BulkKind::Connect, &going, &chosen.refused).await?;
        for &group_id in &chosen.refused {
            self.store.set_bulk_outcome(&bulk.id, GroupId(group_id.0), BulkOutcome::NotAdmin).await?;
        }
        let mut need_key = 0;
        let prove = ConnectOptions { reauthorize: true, ..options.clone() };
        for &group_id in &chosen.confirmed {
            need_key += usize::from(self.begin(GroupId(group_id.0), user_id, &options).await? == Begun::NeedsToken);
        }
        for &group_id in &chosen.unproven {
            need_key += usize::from(self.begin(GroupId(group_id.0), user_id, &prove).await? == Begun::NeedsToken);
        }
        tracing::info!(user_id = user_id.0, communities = going.len(), need_key, "bulk connect started");
        let consent = self.next_consent(&bulk.id, user_id, &[], session_hash).await?;
        Ok(BulkStarted { bulk_id: bulk.id, consent })
    }

    /// The consent for the run's communities still waiting for one after those of `asked` (all of them when
    /// `asked` is empty: the first consent, or «Продолжить»), at most [`CONSENT_MAX_COMMUNITIES`]; none when no
    /// community waits.
    pub async fn next_consent(
        &self,
        bulk_id: &str,
        user_id: UserId,
        asked: &[GroupId],
        session_hash: &str,
    ) -> StoreResult<Option<url::Url>> {
        let mut rest = self.waiting(bulk_id, user_id, asked, false).await?;
        if rest.is_empty() {
            return Ok(None);
        }
        rest.truncate(CONSENT_MAX_COMMUNITIES);
        Ok(Some(self.authorize_url(&rest, Some(bulk_id), session_hash).await?))
    }

    async fn new_bulk(
        &self,
        user_id: UserId,
        kind: BulkKind,
        ids: &[GroupId],
        refused: &[GroupId],
    ) -> StoreResult<BulkRun> {
        let bulk = BulkRun { id: vk::oauth::random_urlsafe(12), user_id: user_id.0, kind, created_at: now_ms() };
        let all: Vec<GroupId> = ids.iter().chain(refused).copied().collect();
        self.store.create_bulk(&bulk, &all).await?;
        Ok(bulk)
    }

    /// The redirect back from a consent of a bulk run: every granted key is checked and stored and its setup goes
    /// on; every community of the consent without a key is marked. Then the next consent, if the run needs one.
    pub(super) async fn finish_bulk_authorization(
        &self,
        session_hash: &str,
        user_id: UserId,
        back: &CommunityRedirect,
        bulk_id: String,
        asked: Vec<GroupId>,
    ) -> Result<Authorized, AuthFailure> {
        if let Some(err) = vk::oauth::redirect_error(back.error.as_deref(), back.error_description.as_deref()) {
            tracing::info!(
                communities = asked.len(),
                error = %Untrusted(&err.error),
                description = %Untrusted(&err.description),
                "community authorization for several communities not granted"
            );
            // «Отмена» stops the run: this consent's communities and those still waiting for a later one.
            for group_id in self.waiting(&bulk_id, user_id, &asked, true).await? {
                self.fail_waiting_setup(GroupId(group_id.0), ErrorKind::Denied).await?;
            }
            return Ok(Authorized::Bulk { bulk_id, next: None });
        }
        let mut tokens = match self.exchange(back).await {
            Ok(tokens) => tokens,
            Err(e) => {
                tracing::warn!(error = %Untrusted(&e.to_string()), "the code of a bulk consent did not exchange");
                for &group_id in &asked {
                    self.fail_waiting_setup(GroupId(group_id.0), ErrorKind::from_vk(&e)).await?;
                }
                return Ok(Authorized::Bulk { bulk_id, next: None });
            }
        };
        let keyed: Vec<(GroupId, Option<vk::AccessToken>)> = asked
            .iter()
            .map(|&g| (g, tokens.iter().position(|(t, _)| *t == g).map(|i| tokens.swap_remove(i).1)))
            .collect();
        // Keys for communities this consent did not ask for are dropped, never stored.
        if !tokens.is_empty() {
            let others: Vec<GroupId> = tokens.iter().map(|(g, _)| *g).collect();
            tracing::warn!(?others, "VK's code brought keys for communities not asked for: none kept");
        }
        let connector = self.clone();
        all_at_once(keyed, move |(group_id, token)| {
            let connector = connector.clone();
            async move { connector.accept_bulk_key(GroupId(group_id.0), user_id, token).await }
        })
        .await?;
        let next = self.next_consent(&bulk_id, user_id, &asked, session_hash).await?;
        Ok(Authorized::Bulk { bulk_id, next })
    }

    /// One community of a bulk consent: its key checked and stored, or why not recorded on its setup. Only a
    /// database failure is an error here: each community's refusal is its own.
    async fn accept_bulk_key(
        &self,
        group_id: GroupId,
        user_id: UserId,
        token: Option<vk::AccessToken>,
    ) -> Result<(), AuthFailure> {
        if !self.administers(user_id, group_id).await? {
            return Ok(self.fail_waiting_setup(group_id, ErrorKind::NotAdmin).await?);
        }
        let Some(token) = token else {
            tracing::info!(group_id = group_id.0, "the admin did not grant this community at VK");
            return Ok(self.fail_waiting_setup(group_id, ErrorKind::NotGranted).await?);
        };
        match self.accept_key(group_id, user_id, &token).await {
            Err(AuthFailure::Store(e)) => Err(AuthFailure::Store(e)),
            // Recorded on the community's setup by `accept_key`.
            Ok(()) | Err(_) => Ok(()),
        }
    }

    /// The run's communities still waiting for a consent: those of `asked` (with `including_asked`) and those after
    /// the last of `asked` in the run's order.
    async fn waiting(
        &self,
        bulk_id: &str,
        user_id: UserId,
        asked: &[GroupId],
        including_asked: bool,
    ) -> StoreResult<Vec<GroupId>> {
        let members = self.store.bulk_members(bulk_id, user_id).await?;
        let last = members.iter().rposition(|(m, _)| asked.contains(&m.community.id));
        Ok(members
            .iter()
            .enumerate()
            .filter(|(i, (m, _))| {
                let is_asked = asked.contains(&m.community.id);
                (including_asked && is_asked) || (!is_asked && last.is_none_or(|last| *i > last))
            })
            .filter(|(_, (m, _))| m.outcome != Some(BulkOutcome::NotAdmin))
            .filter(|(_, (_, setup))| setup.as_ref().is_some_and(|s| s.state == SetupState::WaitingToken))
            .map(|(_, (m, _))| m.community.id)
            .collect())
    }

    /// «Отключить выбранные»: removes our server at VK for each of `group_ids` (never anyone else's: only the server
    /// id we registered) and records each outcome. `not_admin` are listed as refused.
    pub async fn disconnect_bulk(
        &self,
        user_id: UserId,
        group_ids: &[GroupId],
        not_admin: &[GroupId],
    ) -> StoreResult<String> {
        let bulk = self.new_bulk(user_id, BulkKind::Disconnect, group_ids, not_admin).await?;
        for &group_id in not_admin {
            self.store.set_bulk_outcome(&bulk.id, GroupId(group_id.0), BulkOutcome::NotAdmin).await?;
        }
        let (connector, bulk_id) = (self.clone(), bulk.id.clone());
        all_at_once(group_ids.to_vec(), move |group_id| {
            let (connector, bulk_id) = (connector.clone(), bulk_id.clone());
            async move {
                let outcome = match connector.disconnect(GroupId(group_id.0)).await {
                    Ok(Disconnected::Removed) => BulkOutcome::Removed,
                    Ok(Disconnected::TokenDead) => BulkOutcome::TokenDead,
                    Ok(Disconnected::NothingAtVk) => BulkOutcome::NothingAtVk,
                    Err(ConnectError::Store(e)) => return Err(e),
                    Err(e) => {
                        tracing::warn!(group_id = group_id.0, error = %e, "could not disconnect at VK");
                        BulkOutcome::Failed
                    }
                };
                connector.store.set_bulk_outcome(&bulk_id, GroupId(group_id.0), outcome).await
            }
        })
        .await?;
        tracing::info!(user_id = user_id.0, communities = group_ids.len(), "bulk disconnect finished");
        Ok(bulk.id)
    }
}

/// Runs `each` for every item, [`PARALLEL`] at a time, until all are done; the first error is returned (a task that
/// panicked counts as one).
async fn all_at_once<T, E, F, Fut>(items: Vec<T>, each: F) -> Result<(), E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(PARALLEL));
    let mut tasks = JoinSet::new();
    for item in items {
        let (work, limit) = (each(item), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            work.await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| E::from(StoreError::Io(std::io::Error::other(e))))??;
    }
    Ok(())
}
