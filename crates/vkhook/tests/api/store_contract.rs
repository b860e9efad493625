//! The store contract: one test per operation, each on SQLite always and on PostgreSQL when TEST_DATABASE_URL is
//! set (`contract!` makes both), each in a fresh database.

use vk::GroupId;
use vk::UserId;
use vkhook::model::{
    BulkKind, BulkOutcome, CommunityStatus, DeliveryStatus, ErrorKind, EventStatus, LogEntry, OAuthPurpose,
    PauseReason, ReplyStatus, Role, SetupMode, SetupState, StepState,
};
use vkhook::store::*;
use vkhook::vault::Sealed;

use crate::helpers::*;

/// A fresh, migrated store of each backend for `$body` (an async fn taking `&Store`): `<name>_on_sqlite` and
/// `<name>_on_postgres`.
macro_rules! contract {
    ($($name:ident => $body:ident;)+) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = super::TempDir::new("vkhook-store");
                    let url = format!("sqlite://{}/nested/dir/vkhook.db", dir.0.display());
                    let store = super::Store::connect(&url).await.unwrap();
                    assert_eq!(store.migrate().await.unwrap(), super::migration_versions("sqlite"));
                    super::$body(&store).await;
                    store.close().await;
                }
            )+
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = super::PgDatabase::create(stringify!($name)).await else { return };
                    let store = super::Store::connect(&db.url).await.unwrap();
                    assert_eq!(store.migrate().await.unwrap(), super::migration_versions("postgres"));
                    super::$body(&store).await;
                    store.close().await;
                }
            )+
        }
    };
}

contract! {
    migrations_apply_once => migrations_apply_once;
    users_are_upserted => users_are_upserted;
    user_tokens_are_saved_replaced_and_deleted => user_tokens_are_saved_replaced_and_deleted;
    sessions_are_touched_and_expire => sessions_are_touched_and_expire;
    oauth_states_are_single_use => oauth_states_are_single_use;
    user_communities_follow_vk => user_communities_follow_vk;
    sealed_values_are_listed_and_replaced_only_if_unchanged => sealed_values_are_listed_and_replaced_only_if_unchanged;
    a_dead_key_is_dropped_and_the_bot_paused_in_one_step => a_dead_key_is_dropped_and_the_bot_paused_in_one_step;
    a_connection_is_committed_confirmed_and_forgotten => a_connection_is_committed_confirmed_and_forgotten;
    sealed_values_are_counted_by_key => sealed_values_are_counted_by_key;
    events_finished_at_ingest_are_revived_only_when_asked => events_finished_at_ingest_are_revived_only_when_asked;
    a_manual_setup_connects_on_its_first_event => a_manual_setup_connects_on_its_first_event;
    setup_runs_hold_a_lease => setup_runs_hold_a_lease;
    inbox_batches_store_each_event_once => inbox_batches_store_each_event_once;
    an_object_brought_by_two_sources_is_stored_once => an_object_brought_by_two_sources_is_stored_once;
    a_long_poll_is_held_by_one_poller_and_moves_only_with_its_events => a_long_poll_is_held_by_one_poller_and_moves_only_with_its_events;
    a_long_poll_connect_records_its_switches_first_and_connects_only_without_callback => a_long_poll_connect_records_its_switches_first_and_connects_only_without_callback;
    claims_take_one_event_per_community_in_order => claims_take_one_event_per_community_in_order;
    claims_take_runs_up_to_the_first_event_held_back => claims_take_runs_up_to_the_first_event_held_back;
    held_events_are_woken_and_failed_ones_replayed => held_events_are_woken_and_failed_ones_replayed;
    rules_are_added_moved_and_deleted => rules_are_added_moved_and_deleted;
    replies_are_counted_and_recognised_as_own => replies_are_counted_and_recognised_as_own;
    the_community_log_keeps_typed_entries => the_community_log_keeps_typed_entries;
    claims_keep_each_communitys_order_whatever_the_interleaving => claims_keep_each_communitys_order_whatever_the_interleaving;
    a_worker_renews_only_the_leases_it_holds => a_worker_renews_only_the_leases_it_holds;
    a_confirmation_request_is_recorded => a_confirmation_request_is_recorded;
    endpoints_are_added_rotated_disabled_and_deleted => endpoints_are_added_rotated_disabled_and_deleted;
    storing_an_event_makes_its_deliveries_in_the_same_statement => storing_an_event_makes_its_deliveries_in_the_same_statement;
    deliveries_are_claimed_per_endpoint_under_its_lease_and_settled => deliveries_are_claimed_per_endpoint_under_its_lease_and_settled;
    an_endpoint_failing_too_long_or_gone_is_disabled => an_endpoint_failing_too_long_or_gone_is_disabled;
    endpoints_are_capped_claimed_fairly_and_back_off => endpoints_are_capped_claimed_fairly_and_back_off;
    an_alert_is_told_once_and_reminded_after_its_period => an_alert_is_told_once_and_reminded_after_its_period;
    random_ids_never_repeat_and_a_retry_keeps_its_own => random_ids_never_repeat_and_a_retry_keeps_its_own;
    message_permissions_follow_the_persons_events => message_permissions_follow_the_persons_events;
    the_overview_counts_each_community_in_one_query => the_overview_counts_each_community_in_one_query;
    a_bulk_run_lists_its_communities_in_order_with_their_setups => a_bulk_run_lists_its_communities_in_order_with_their_setups;
}

async fn migrations_apply_once(store: &Store) {
    assert_eq!(store.migrate().await.unwrap(), Vec::<i64>::new(), "already migrated by the caller");
    assert_eq!(store.applied_migrations().await.unwrap(), migration_versions("sqlite"));
    store.ping().await.unwrap();
}

/// The migrations of one backend, as files: (version, file name).
fn migration_files(backend: &str) -> Vec<(i64, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/migrations").join(backend);
    let mut files: Vec<(i64, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .map(|name| (name.split('_').next().unwrap().parse().unwrap_or_else(|_| panic!("{name}: no version")), name))
        .collect();
    files.sort();
    files
}

fn migration_versions(backend: &str) -> Vec<i64> {
    migration_files(backend).into_iter().map(|(version, _)| version).collect()
}

/// Every (table, column) of a migrated database, sqlx's own bookkeeping left out.
async fn schema(store_url: &str) -> std::collections::BTreeSet<(String, String)> {
    use sqlx::Connection;
    let q_sqlite = "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                    WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'";
    let q_postgres = "SELECT table_name::text, column_name::text FROM information_schema.columns \
                      WHERE table_schema = 'public' AND table_name NOT LIKE '_sqlx%'";
    let rows: Vec<(String, String)> = if store_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(store_url).await.unwrap();
        sqlx::query_as(q_sqlite).fetch_all(&mut conn).await.unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(store_url).await.unwrap();
        sqlx::query_as(q_postgres).fetch_all(&mut conn).await.unwrap()
    };
    rows.into_iter().collect()
}

/// The two backends' migrations are one schema: the same versions under the same names, and every table and column
/// on both; every column the migrations mark `-- vault` is one key rotation walks ([`Sealed::ALL`]), and no other.
#[tokio::test]
async fn migrations_build_one_schema_on_both_databases() {
    assert_eq!(migration_files("sqlite"), migration_files("postgres"), "same versions, same names");
    let Some(db) = PgDatabase::create("migrations_build_one_schema_on_both_databases").await else { return };
    let dir = TempDir::new("vkhook-schema");
    let sqlite_url = format!("sqlite://{}/schema.db", dir.0.display());
    for url in [sqlite_url.as_str(), db.url.as_str()] {
        let store = Store::connect(url).await.unwrap();
        store.migrate().await.unwrap();
        store.close().await;
    }
    let (on_sqlite, on_postgres) = (schema(&sqlite_url).await, schema(&db.url).await);
    assert!(on_sqlite.len() > 50, "the schema was read: {on_sqlite:?}");
    let only = |a: &std::collections::BTreeSet<_>, b: &std::collections::BTreeSet<_>| {
        a.difference(b).cloned().collect::<Vec<(String, String)>>()
    };
    assert_eq!(only(&on_sqlite, &on_postgres), vec![], "only on SQLite");
    assert_eq!(only(&on_postgres, &on_sqlite), vec![], "only on PostgreSQL");
    // Columns marked `-- vault` (SQLite's migrations mark every one), as (table, column).
    let mut marked = std::collections::BTreeSet::new();
    for (_, name) in migration_files("sqlite") {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/migrations/sqlite").join(&name);
        let (mut table, text) = (String::new(), std::fs::read_to_string(path).unwrap());
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["CREATE", "TABLE", name, ..] | ["ALTER", "TABLE", name, ..] = words.as_slice() {
                table = name.trim_end_matches('(').to_owned();
            }
            let Some((code, comment)) = line.split_once("--") else { continue };
            if comment.trim_start().starts_with("vault") {
                let column = match code.split_whitespace().collect::<Vec<_>>().as_slice() {
                    ["ALTER", "TABLE", _, "ADD", "COLUMN", column, ..] => column.to_string(),
                    [column, ..] => column.to_string(),
                    [] => panic!("{name}: a vault mark on a line without a column"),
                };
                marked.insert((table.clone(), column));
            }
        }
    }
    let sealed: std::collections::BTreeSet<(String, String)> = Sealed::ALL
        .iter()
        .map(|s| s.location())
        .map(|(table, _, column)| (table.to_owned(), column.to_owned()))
        .collect();
    assert_eq!(marked, sealed, "the columns marked `-- vault` are the ones key rotation walks");
}

fn anna() -> UserRow {
    UserRow { id: 1, first_name: "Анна".into(), last_name: "Админова".into(), avatar: None }
}

fn tokens() -> UserTokensRow {
    UserTokensRow {
        user_id: 1,
        access_token: "v1.k.a".into(),
        refresh_token: "v1.k.r".into(),
        device_id: "dev".into(),
        scopes: "groups".into(),
        expires_at: 123,
    }
}

fn zerno() -> CommunityRow {
    CommunityRow { id: 1001, name: "Кофейня «Зерно»".into(), screen_name: "zerno".into(), photo: None }
}

fn club() -> CommunityRow {
    CommunityRow { id: 1002, name: "Книжный клуб".into(), screen_name: "club".into(), photo: None }
}

async fn users_are_upserted(store: &Store) {
    store.upsert_user(&anna()).await.unwrap();
    store.upsert_user(&UserRow { avatar: Some("http://a/1.svg".into()), ..anna() }).await.unwrap();
    assert_eq!(store.user(1).await.unwrap().unwrap().avatar.as_deref(), Some("http://a/1.svg"));
    assert_eq!(store.user(2).await.unwrap(), None);
}

async fn user_tokens_are_saved_replaced_and_deleted(store: &Store) {
    store.upsert_user(&anna()).await.unwrap();
    store.save_user_tokens(&tokens()).await.unwrap();
    store.save_user_tokens(&UserTokensRow { expires_at: 456, ..tokens() }).await.unwrap();
    assert_eq!(store.user_tokens(UserId(1)).await.unwrap().unwrap().expires_at, 456);
    store.delete_user_tokens(UserId(1)).await.unwrap();
    assert_eq!(store.user_tokens(UserId(1)).await.unwrap(), None);
}

async fn sessions_are_touched_and_expire(store: &Store) {
    store.upsert_user(&anna()).await.unwrap();
    let s = SessionRow {
        id_hash: "h1".into(),
        user_id: Some(1),
        csrf_token: "c".into(),
        created_at: 1000,
        last_seen_at: 1000,
    };
    store.insert_session(&s).await.unwrap();
    let anonymous =
        SessionRow { id_hash: "h2".into(), user_id: None, created_at: 5000, last_seen_at: 5000, ..s.clone() };
    store.insert_session(&anonymous).await.unwrap();
    store.touch_session("h1", 2000).await.unwrap();
    assert_eq!(store.session("h1").await.unwrap().unwrap().last_seen_at, 2000);
    assert_eq!(store.delete_expired_sessions(2500, 0, 0, 0).await.unwrap(), 1);
    assert_eq!(store.session("h1").await.unwrap(), None);
    assert!(store.session("h2").await.unwrap().is_some());
    // An anonymous session goes sooner: unused since before `anonymous_idle_before`.
    let signed_in = SessionRow { id_hash: "h3".into(), user_id: Some(1), created_at: 5000, last_seen_at: 5000, ..s };
    store.insert_session(&signed_in).await.unwrap();
    assert_eq!(store.delete_expired_sessions(0, 0, 5001, 0).await.unwrap(), 1);
    assert_eq!(store.session("h2").await.unwrap(), None);
    assert!(store.session("h3").await.unwrap().is_some(), "a signed-in one keeps its own expiry");
    store.delete_session("h3").await.unwrap();
    assert_eq!(store.session("h3").await.unwrap(), None);
}

async fn oauth_states_are_single_use(store: &Store) {
    let st = OAuthStateRow {
        state_hash: "s".into(),
        session_hash: "h".into(),
        kind: OAuthPurpose::SignIn,
        verifier: Some("v1.k.v".into()),
        group_id: None,
        created_at: 1,
        group_ids: None,
        bulk_id: None,
    };
    store.insert_oauth_state(&st).await.unwrap();
    let community =
        OAuthStateRow { state_hash: "c".into(), kind: OAuthPurpose::Community, group_id: Some(7), ..st.clone() };
    store.insert_oauth_state(&community).await.unwrap();
    let several = OAuthStateRow {
        state_hash: "b".into(),
        kind: OAuthPurpose::Community,
        group_ids: Some("7,8,9".into()),
        bulk_id: Some("bulk1".into()),
        ..st.clone()
    };
    store.insert_oauth_state(&several).await.unwrap();
    assert_eq!(store.take_oauth_state("s").await.unwrap(), Some(st.clone()));
    assert_eq!(store.take_oauth_state("s").await.unwrap(), None);
    assert_eq!(store.take_oauth_state("c").await.unwrap().map(|c| c.communities()), Some(vec![GroupId(7)]));
    // A session's new sign-in replaces its pending one, and leaves its community authorizations alone.
    let first = OAuthStateRow { state_hash: "s1".into(), ..st.clone() };
    let second = OAuthStateRow { state_hash: "s2".into(), ..st.clone() };
    let pending_community = OAuthStateRow { state_hash: "c2".into(), ..community.clone() };
    store.insert_oauth_state(&pending_community).await.unwrap();
    store.replace_sign_in_state(&first).await.unwrap();
    store.replace_sign_in_state(&second).await.unwrap();
    assert_eq!(store.take_oauth_state("s1").await.unwrap(), None, "replaced");
    assert_eq!(store.take_oauth_state("s2").await.unwrap(), Some(second));
    assert!(store.take_oauth_state("c2").await.unwrap().is_some(), "not a sign-in: left alone");
    assert_eq!(
        store.take_oauth_state("b").await.unwrap().map(|c| c.communities()),
        Some(vec![GroupId(7), GroupId(8), GroupId(9)])
    );
}

async fn user_communities_follow_vk(store: &Store) {
    store.upsert_user(&anna()).await.unwrap();
    store
        .set_user_communities(UserId(1), &[(zerno(), Some(Role::Administrator)), (club(), Some(Role::Editor))])
        .await
        .unwrap();
    let list = store.user_communities(UserId(1)).await.unwrap();
    assert_eq!(
        list.iter().map(|c| (c.id, c.role, c.callback_configured)).collect::<Vec<_>>(),
        vec![(GroupId(1002), Role::Editor, false), (GroupId(1001), Role::Administrator, false)],
        "ordered by name"
    );
    assert_eq!(list[0].status, CommunityStatus::NotConnected);
    // The same list again changes nothing; a new name or role is taken.
    store
        .set_user_communities(UserId(1), &[(zerno(), Some(Role::Administrator)), (club(), Some(Role::Editor))])
        .await
        .unwrap();
    assert_eq!(store.user_communities(UserId(1)).await.unwrap(), list);
    let renamed = CommunityRow { name: "Зерно".into(), ..zerno() };
    store
        .set_user_communities(UserId(1), &[(renamed, Some(Role::Editor)), (club(), Some(Role::Editor))])
        .await
        .unwrap();
    let z = store.community_for_user(UserId(1), GroupId(1001)).await.unwrap().unwrap();
    assert_eq!((z.name.as_str(), z.role), ("Зерно", Role::Editor));
    store.set_user_communities(UserId(1), &[(zerno(), Some(Role::Administrator))]).await.unwrap();
    assert_eq!(store.user_communities(UserId(1)).await.unwrap().len(), 1);
    assert!(store.community_for_user(UserId(1), GroupId(1002)).await.unwrap().is_none());
    assert!(store.community_for_user(UserId(1), GroupId(1001)).await.unwrap().is_some());
    store.add_user_community(UserId(1), &club(), Role::Moderator, Some(now_ms())).await.unwrap();
    assert_eq!(store.community_for_user(UserId(1), GroupId(1002)).await.unwrap().unwrap().role, Role::Moderator);
    store.remove_user_community(UserId(1), GroupId(1002)).await.unwrap();
    assert!(store.community_for_user(UserId(1), GroupId(1002)).await.unwrap().is_none());
    // Every role VK listed is a proof, with its time.
    let z = store.community_for_user(UserId(1), GroupId(1001)).await.unwrap().unwrap();
    assert!(z.proven_at.is_some_and(|at| now_ms() - at < 60_000), "{z:?}");
    // Added by link while VK says nothing: role unknown, no proof; that never overwrites a proven role.
    store.add_user_community(UserId(1), &club(), Role::Unknown, None).await.unwrap();
    let c = store.community_for_user(UserId(1), GroupId(1002)).await.unwrap().unwrap();
    assert_eq!((c.role, c.proven_at), (Role::Unknown, None));
    store.add_user_community(UserId(1), &zerno(), Role::Unknown, None).await.unwrap();
    let z2 = store.community_for_user(UserId(1), GroupId(1001)).await.unwrap().unwrap();
    assert_eq!((z2.role, z2.proven_at), (Role::Administrator, z.proven_at), "a proven role stays");
    // A proof (a consent, the managers' list) sets the role and its time.
    store.set_user_role(UserId(1), GroupId(1002), Role::Administrator, 42).await.unwrap();
    let c = store.community_for_user(UserId(1), GroupId(1002)).await.unwrap().unwrap();
    assert_eq!((c.role, c.proven_at), (Role::Administrator, Some(42)));
    // VK lists a community without its level: the stored role stays, nothing is removed.
    store.set_user_communities(UserId(1), &[(zerno(), None), (club(), Some(Role::Administrator))]).await.unwrap();
    assert_eq!(store.community_for_user(UserId(1), GroupId(1001)).await.unwrap().unwrap().role, Role::Administrator);
}

async fn sealed_values_are_listed_and_replaced_only_if_unchanged(store: &Store) {
    store.upsert_user(&anna()).await.unwrap();
    store.save_user_tokens(&tokens()).await.unwrap();
    let cells = store.sealed_values(Sealed::UserAccessToken).await.unwrap();
    assert_eq!(cells.len(), 1);
    assert_eq!((cells[0].row.as_str(), cells[0].value.as_str()), ("1", "v1.k.a"));
    assert!(store.replace_sealed_value(Sealed::UserAccessToken, "1", "v1.k.a", "v1.n.a").await.unwrap());
    assert!(
        !store.replace_sealed_value(Sealed::UserAccessToken, "1", "v1.k.a", "v1.x.a").await.unwrap(),
        "only if unchanged"
    );
    assert_eq!(store.user_tokens(UserId(1)).await.unwrap().unwrap().access_token, "v1.n.a");
}

async fn a_dead_key_is_dropped_and_the_bot_paused_in_one_step(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    store.save_community_token(GroupId(1001), "v1.k.t", "manage,messages").await.unwrap();
    store.drop_key_and_pause(GroupId(1001), PauseReason::Reauth).await.unwrap();
    let settings = store.community_settings(GroupId(1001)).await.unwrap().unwrap();
    assert_eq!(settings.community_token, None);
    assert_eq!(settings.token_scopes, "");
    assert_eq!(settings.status, CommunityStatus::NeedsReauth);
    assert_eq!(settings.last_error, Some(ErrorKind::Reauth));
    assert_eq!(store.bot_settings(GroupId(1001)).await.unwrap().unwrap().paused_reason, Some(PauseReason::Reauth));
    store.set_bot_paused(GroupId(1001), None).await.unwrap();
    assert_eq!(store.bot_settings(GroupId(1001)).await.unwrap().unwrap().paused_reason, None);
}

async fn a_connection_is_committed_confirmed_and_forgotten(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    let until = now_ms() + 60_000;
    store
        .commit_confirmation(GroupId(1001), "code", Some("v1.k.s"), Some(("v1.k.p", until)), SetupMode::Api)
        .await
        .unwrap();
    assert_eq!(store.community_settings(GroupId(1001)).await.unwrap().unwrap().previous_secret_until, Some(until));
    store.commit_code(GroupId(1001), "code2", SetupMode::Api).await.unwrap();
    let s = store.community_settings(GroupId(1001)).await.unwrap().unwrap();
    assert_eq!((s.confirmation_code.as_deref(), s.secret.as_deref()), (Some("code2"), Some("v1.k.s")), "secret kept");
    assert_eq!(s.previous_secret.as_deref(), Some("v1.k.p"), "and the previous one");
    store.mark_connected(GroupId(1001), Some(5), "5.199", "message_new,like_add", Some(1)).await.unwrap();
    let s = store.community_settings(GroupId(1001)).await.unwrap().unwrap();
    assert_eq!((s.status, s.callback_configured, s.server_id), (CommunityStatus::Connected, true, Some(5)));
    assert_eq!(s.event_list(), vec!["message_new", "like_add"]);
    assert_eq!(store.connected_communities().await.unwrap(), Vec::<i64>::new(), "no key: nothing to reconcile");
    store.save_community_token(GroupId(1001), "v1.k.t", "manage").await.unwrap();
    assert_eq!(store.connected_communities().await.unwrap(), vec![1001]);
    assert_eq!(store.retire_expired_previous_secrets(until - 1).await.unwrap(), 0, "still in its window");
    assert_eq!(store.retire_expired_previous_secrets(until).await.unwrap(), 1);
    let s = store.community_settings(GroupId(1001)).await.unwrap().unwrap();
    assert_eq!((s.previous_secret, s.previous_secret_until), (None, None));
    store.set_connection_status(GroupId(1001), CommunityStatus::Failed, Some(ErrorKind::ServersLimit)).await.unwrap();
    let s = store.community_settings(GroupId(1001)).await.unwrap().unwrap();
    assert_eq!((s.status, s.last_error), (CommunityStatus::Failed, Some(ErrorKind::ServersLimit)));
    use vkhook::model::VkServerView;
    for view in [VkServerView::Missing, VkServerView::Listed(vk::ServerStatus::Other("paused".into()))] {
        store.set_vk_server_status(GroupId(1001), &view).await.unwrap();
        assert_eq!(store.community_settings(GroupId(1001)).await.unwrap().unwrap().vk_server_status, Some(view));
    }
    store.set_vk_server_status(GroupId(1001), &VkServerView::Listed(vk::ServerStatus::Ok)).await.unwrap();
    store.set_events(GroupId(1001), "like_add").await.unwrap();
    store.disconnect_community(GroupId(1001)).await.unwrap();
    let s = store.community_settings(GroupId(1001)).await.unwrap().unwrap();
    assert_eq!((s.status, s.secret, s.community_token, s.server_id), (CommunityStatus::NotConnected, None, None, None));
    assert_eq!(s.vk_server_status, None, "nothing known about a server we no longer have");
}

async fn sealed_values_are_counted_by_key(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    let far = now_ms() + 60_000;
    store
        .commit_confirmation(GroupId(1001), "c", Some("v1.k1.AAAA"), Some(("v1.k2.AAAA", far)), SetupMode::Api)
        .await
        .unwrap();
    store.save_community_token(GroupId(1001), "v1.k1.AAAA", "manage").await.unwrap();
    let counted = store.sealed_key_use().await.unwrap();
    assert_eq!(counted.into_iter().collect::<Vec<_>>(), vec![("k1".to_owned(), 2), ("k2".to_owned(), 1)]);
}

async fn a_manual_setup_connects_on_its_first_event(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    store.commit_confirmation(GroupId(1001), "fromvk", Some("v1.k.s"), None, SetupMode::Manual).await.unwrap();
    assert!(store.mark_manual_connected(GroupId(1001)).await.unwrap());
    assert!(!store.mark_manual_connected(GroupId(1001)).await.unwrap(), "once");
    assert_eq!(store.community_settings(GroupId(1001)).await.unwrap().unwrap().status, CommunityStatus::Connected);
}

fn run(state: SetupState, lease_until: i64) -> SetupRow {
    SetupRow {
        group_id: 1001,
        run_id: format!("run-{lease_until}"),
        state,
        step_token: StepState::Done,
        step_code: StepState::Pending,
        step_server: StepState::Pending,
        step_events: StepState::Pending,
        step_confirm: StepState::Pending,
        error_kind: None,
        error_detail: None,
        started_by: 1,
        started_at: 1,
        updated_at: 1,
        finished_at: None,
        vk_calls: 0,
        replace_server_id: None,
        lease_until,
        bot_enabled: true,
        bot_reply: Some("hi".into()),
        mode: vkhook::model::SetupMode::Api,
    }
}

async fn setup_runs_hold_a_lease(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    let far = now_ms() + 60_000;
    assert!(store.begin_setup(&run(SetupState::Running, far), now_ms()).await.unwrap());
    assert!(!store.begin_setup(&run(SetupState::Running, far + 1), now_ms()).await.unwrap(), "a live lease holds");
    assert!(store.claim_setup(GroupId(1001), &format!("run-{far}"), Some(far), far + 5).await.unwrap(), "renewed");
    assert!(
        !store.claim_setup(GroupId(1001), &format!("run-{far}"), None, far + 9).await.unwrap(),
        "not taken while live"
    );
    store.set_setup_step(GroupId(1001), &format!("run-{far}"), Step::Code, StepState::Done, 1).await.unwrap();
    assert_eq!(store.setup(GroupId(1001)).await.unwrap().unwrap().step(Step::Code), StepState::Done);
    assert!(store.abandoned_setups(now_ms()).await.unwrap().is_empty());
    assert_eq!(store.abandoned_setups(far + 10).await.unwrap().len(), 1, "an expired lease is abandoned");
    store.set_setup_step(GroupId(1001), &format!("run-{far}"), Step::Server, StepState::Running, 3).await.unwrap();
    let error = Some((ErrorKind::ConfirmTimeout, "slow"));
    store.finish_setup(GroupId(1001), &format!("run-{far}"), SetupState::Failed, error, 4).await.unwrap();
    let done = store.setup(GroupId(1001)).await.unwrap().unwrap();
    assert_eq!((done.state, done.error_kind, done.vk_calls), (SetupState::Failed, Some(ErrorKind::ConfirmTimeout), 4));
    let steps = (done.step_code, done.step_server, done.step_events);
    assert_eq!(
        steps,
        (StepState::Done, StepState::Failed, StepState::Pending),
        "the step going is the one that failed"
    );
    assert!(
        store.begin_setup(&run(SetupState::Running, far + 2), now_ms()).await.unwrap(),
        "a finished run is replaced"
    );
}

async fn a_bulk_run_lists_its_communities_in_order_with_their_setups(store: &Store) {
    store.upsert_user(&anna()).await.unwrap();
    store
        .set_user_communities(UserId(1), &[(zerno(), Some(Role::Administrator)), (club(), Some(Role::Administrator))])
        .await
        .unwrap();
    let bulk = BulkRun { id: "b1".into(), user_id: 1, kind: BulkKind::Disconnect, created_at: now_ms() };
    store.create_bulk(&bulk, &[GroupId(1002), GroupId(1001)]).await.unwrap();
    assert_eq!(store.bulk_run("b1", UserId(1)).await.unwrap(), Some(bulk.clone()));
    assert_eq!(store.bulk_run("b1", UserId(2)).await.unwrap(), None, "another user's run does not exist");
    assert!(store.begin_setup(&run(SetupState::Running, now_ms() + 60_000), now_ms()).await.unwrap());
    store.set_bulk_outcome("b1", GroupId(1002), BulkOutcome::Removed).await.unwrap();
    let members = store.bulk_members("b1", UserId(1)).await.unwrap();
    let order: Vec<_> = members.iter().map(|(m, s)| (m.community.id, m.outcome, s.is_some())).collect();
    assert_eq!(
        order,
        [(GroupId(1002), Some(BulkOutcome::Removed), false), (GroupId(1001), None, true)],
        "the admin's order"
    );
    // A community the user no longer manages drops out of their view of the run.
    store.set_user_communities(UserId(1), &[(club(), Some(Role::Administrator))]).await.unwrap();
    assert_eq!(store.bulk_members("b1", UserId(1)).await.unwrap().len(), 1);
    assert!(store.bulk_members("b1", UserId(2)).await.unwrap().is_empty());
    // A week later the run's record is dropped when the user starts another.
    let old = BulkRun { id: "b0".into(), created_at: now_ms() - 8 * 24 * 3600 * 1000, ..bulk.clone() };
    store.create_bulk(&old, &[GroupId(1002)]).await.unwrap();
    store.create_bulk(&BulkRun { id: "b2".into(), ..bulk }, &[GroupId(1002)]).await.unwrap();
    assert_eq!(store.bulk_run("b0", UserId(1)).await.unwrap(), None);
    assert!(store.bulk_run("b1", UserId(1)).await.unwrap().is_some());
}

fn event(group_id: i64, n: u32) -> NewInboxEvent {
    NewInboxEvent {
        group_id,
        event_id: format!("{n:040x}"),
        event_type: "group_join".into(),
        payload: format!(r#"{{"type":"group_join","group_id":{group_id},"object":{{"user_id":{n}}}}}"#),
        received_at: now_ms(),
        done_at_ingest: None,
        source: vkhook::model::Source::Callback,
        natural_key: None,
    }
}

async fn events_finished_at_ingest_are_revived_only_when_asked(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    let off = vkhook::model::Reason::MessagesOff;
    let other = vkhook::model::Reason::NoAnswerNeeded;
    let (mut e1, e2, mut e3) = (event(1001, 1), event(1001, 2), event(1001, 3));
    e1.done_at_ingest = Some(vkhook::model::EventResult::Nothing { reason: off });
    e3.done_at_ingest = Some(vkhook::model::EventResult::Nothing { reason: other });
    store.insert_inbox_batch(&[e1.clone(), e2.clone(), e3]).await.unwrap();
    let status = |n: u32| async move {
        store.inbox_event_by_event_id(GroupId(1001), &format!("{n:040x}")).await.unwrap().unwrap().status
    };
    assert_eq!(
        (status(1).await, status(2).await, status(3).await),
        (EventStatus::Ignored, EventStatus::Pending, EventStatus::Ignored)
    );
    assert_eq!(store.inbox_depth(Some(GroupId(1001))).await.unwrap(), 1, "only the one that needs work is open");
    assert_eq!(store.oldest_open_event_at(None).await.unwrap(), Some(e2.received_at));
    assert_eq!(store.oldest_open_event_at(Some(GroupId(1001))).await.unwrap(), Some(e2.received_at));
    assert_eq!(store.oldest_open_event_at(Some(GroupId(1002))).await.unwrap(), None);
    let (far, off_only) = (i64::MAX, std::slice::from_ref(&off));
    assert_eq!(
        store.revive_ingest_decisions(GroupId(1001), off_only, e1.received_at + 1, far).await.unwrap(),
        0,
        "too old"
    );
    assert_eq!(
        store.revive_ingest_decisions(GroupId(1001), off_only, 0, e1.received_at - 1).await.unwrap(),
        0,
        "too new"
    );
    assert_eq!(store.revive_ingest_decisions(GroupId(1001), off_only, 0, far).await.unwrap(), 1);
    assert_eq!((status(1).await, status(3).await), (EventStatus::Pending, EventStatus::Ignored));
    assert_eq!(store.revive_ingest_decisions(GroupId(1001), off_only, 0, far).await.unwrap(), 0, "once");
}

async fn inbox_batches_store_each_event_once(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    let batch = [event(1001, 1), event(1001, 2), event(1001, 1)];
    assert_eq!(
        store.insert_inbox_batch(&batch).await.unwrap(),
        vec![Inserted::New, Inserted::New, Inserted::Duplicate],
        "a repeat within the batch"
    );
    assert_eq!(store.insert_inbox_batch(&[event(1001, 2)]).await.unwrap(), vec![Inserted::Duplicate], "VK's retry");
    assert_eq!(store.inbox_depth(Some(GroupId(1001))).await.unwrap(), 2);
    let counts = store.inbox_counts_by_type(GroupId(1001), 0).await.unwrap();
    assert_eq!(counts, vec![CountRow { key: "group_join".into(), n: 2 }]);
    assert!(store.last_event_at(GroupId(1001)).await.unwrap().is_some());
    let row = store.inbox_event_by_event_id(GroupId(1001), &format!("{:040x}", 2)).await.unwrap().unwrap();
    assert_eq!(store.inbox_event(GroupId(1001), row.id).await.unwrap(), Some(row.clone()));
    assert_eq!(store.inbox_event(GroupId(1002), row.id).await.unwrap(), None, "another community's event is not found");
}

async fn an_object_brought_by_two_sources_is_stored_once(store: &Store) {
    use vkhook::model::Source;
    store.upsert_community(&zerno()).await.unwrap();
    store.upsert_community(&club()).await.unwrap();
    let keyed = |group_id, n, source, key: &str| NewInboxEvent {
        source,
        natural_key: Some(key.to_owned()),
        ..event(group_id, n)
    };
    let pushed = keyed(1001, 1, Source::Callback, "message:2:7");
    assert_eq!(store.insert_inbox_batch(&[pushed]).await.unwrap(), vec![Inserted::New]);
    // The same message polled under another event_id, in a batch with a new one and another community's namesake.
    let batch = [
        keyed(1001, 2, Source::LongPoll, "message:2:7"),
        keyed(1001, 3, Source::LongPoll, "message:2:8"),
        keyed(1002, 4, Source::LongPoll, "message:2:7"),
        NewInboxEvent { source: Source::Backfill, ..event(1001, 5) },
        NewInboxEvent { source: Source::Backfill, ..event(1001, 6) },
    ];
    assert_eq!(
        store.insert_inbox_batch(&batch).await.unwrap(),
        vec![Inserted::Duplicate, Inserted::New, Inserted::New, Inserted::New, Inserted::New],
        "a key is per community; events without one are told apart by event_id only"
    );
    let row =
        |group_id, n: u32| async move { store.inbox_event_by_event_id(group_id, &format!("{n:040x}")).await.unwrap() };
    assert_eq!(row(GroupId(1001), 1).await.unwrap().source, Source::Callback, "the first way in is kept");
    assert_eq!(row(GroupId(1001), 2).await, None);
    assert_eq!(row(GroupId(1001), 3).await.unwrap().source, Source::LongPoll);
    assert_eq!(row(GroupId(1001), 5).await.unwrap().source, Source::Backfill);
    assert_eq!(store.inbox_depth(Some(GroupId(1001))).await.unwrap(), 4);
}

async fn a_long_poll_connect_records_its_switches_first_and_connects_only_without_callback(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    store.upsert_community(&club()).await.unwrap();
    let (g, now) = (GroupId(1001), now_ms());
    // Recorded before VK is asked: waiting, not polled.
    store.record_long_poll_switches(g, &[], true, now).await.unwrap();
    store.record_long_poll_switches(g, &["wall_reply_new"], false, now).await.unwrap();
    let row = store.long_poll(g).await.unwrap().unwrap();
    assert_eq!(
        (row.enabled_by_us, row.switched_on(), row.trouble.as_deref()),
        (true, vec!["wall_reply_new"], Some(CONNECTING))
    );
    let health = store.long_poll_health().await.unwrap();
    assert_eq!((health.polled, health.troubled, health.oldest_check_at), (1, 1, None));
    assert!(
        store.claim_long_polls("a", now, now + 60_000, 10).await.unwrap().is_empty(),
        "not polled while connecting"
    );
    store.start_long_poll(g, Some("5"), &[], false, now).await.unwrap();
    let taken = store.claim_long_polls("a", now, now + 60_000, 10).await.unwrap();
    assert_eq!((taken.len(), taken[0].ts.as_deref(), taken[0].enabled_by_us), (1, Some("5"), true));
    let health = store.long_poll_health().await.unwrap();
    assert_eq!(
        (health.polled, health.troubled, health.oldest_check_at),
        (1, 0, Some(now)),
        "never checked: since its start"
    );
    // Recording more switches while it is polled does not stop it.
    store.record_long_poll_switches(g, &["message_new"], false, now).await.unwrap();
    assert_eq!(store.long_poll(g).await.unwrap().unwrap().trouble, None);
    // Long Poll alone: connected in long_poll mode.
    assert!(store.mark_long_poll_connected(g, "5.131", "message_new,wall_reply_new", Some(1)).await.unwrap());
    let s = store.community_settings(g).await.unwrap().unwrap();
    assert_eq!(
        (s.status, s.setup_mode, s.api_version.as_deref()),
        (CommunityStatus::Connected, SetupMode::LongPoll, Some("5.131"))
    );
    assert_eq!(s.connected_by, Some(1));
    // With the Callback API set up, Long Poll runs beside it and the Callback setup stays.
    let club = GroupId(1002);
    store.commit_confirmation(club, "c0de", None, None, SetupMode::Api).await.unwrap();
    store.mark_connected(club, Some(5), "5.199", "message_new", Some(1)).await.unwrap();
    assert!(!store.mark_long_poll_connected(club, "5.131", "message_new", Some(2)).await.unwrap());
    let s = store.community_settings(club).await.unwrap().unwrap();
    assert_eq!((s.setup_mode, s.api_version.as_deref(), s.server_id), (SetupMode::Api, Some("5.199"), Some(5)));
}

async fn a_long_poll_is_held_by_one_poller_and_moves_only_with_its_events(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    let g = GroupId(1001);
    let now = now_ms();
    assert!(store.claim_long_polls("a", now, now + 60_000, 10).await.unwrap().is_empty(), "nothing polled yet");
    store.start_long_poll(g, None, &["message_new"], true, now).await.unwrap();
    store.start_long_poll(g, Some("77"), &["wall_reply_new", "message_new"], false, now).await.unwrap();
    let row = store.long_poll(g).await.unwrap().unwrap();
    assert_eq!(
        (row.switched_on(), row.enabled_by_us, row.ts.clone()),
        (vec!["message_new", "wall_reply_new"], true, Some("77".to_owned())),
        "what vkhook switched on adds up; VK's place is taken while none is held"
    );
    // One poller at a time: b waits until a's lease runs out or a gives it up.
    assert_eq!(store.claim_long_polls("a", now, now + 60_000, 10).await.unwrap().len(), 1);
    assert!(store.claim_long_polls("b", now, now + 60_000, 10).await.unwrap().is_empty());
    assert_eq!(store.claim_long_polls("a", now, now + 60_000, 10).await.unwrap().len(), 1, "a keeps its own");
    assert!(store.renew_long_poll(g, "a", now + 90_000).await.unwrap());
    assert!(!store.renew_long_poll(g, "b", now + 90_000).await.unwrap());
    // The place moves in the commit that stores the events, and only for the holder.
    let cursor = |owner: &str, ts: &str| vkhook::store::SourceCursor {
        group_id: 1001,
        owner: owner.into(),
        ts: ts.into(),
        at: now,
    };
    let write = InboxWrite {
        events: vec![event(1001, 1)],
        cursors: vec![cursor("a", "7"), cursor("b", "9")],
        ..Default::default()
    };
    let written = store.write_inbox(&write).await.unwrap();
    assert_eq!((written.inserted, written.cursors), (vec![Inserted::New], vec![true, false]));
    assert_eq!(store.long_poll(g).await.unwrap().unwrap().ts.as_deref(), Some("7"));
    assert!(store.move_long_poll(&cursor("a", "8")).await.unwrap());
    assert!(!store.move_long_poll(&cursor("b", "10")).await.unwrap());
    assert_eq!(store.long_poll(g).await.unwrap().unwrap().ts.as_deref(), Some("8"));
    // A crash: a's lease runs out and b takes over from where a's last commit left it.
    let later = now + 91_000;
    let taken = store.claim_long_polls("b", later, later + 60_000, 10).await.unwrap();
    assert_eq!((taken.len(), taken[0].ts.as_deref()), (1, Some("8")));
    assert_eq!(store.release_long_polls("b").await.unwrap(), 1);
    assert_eq!(
        store.claim_long_polls("a", later, later + 60_000, 10).await.unwrap().len(),
        1,
        "given up: free at once"
    );
    // Switched off at VK: nobody polls until it is started again.
    store.set_long_poll_trouble(g, Some("off_at_vk")).await.unwrap();
    assert!(store.claim_long_polls("a", later, later + 60_000, 10).await.unwrap().is_empty());
    store.start_long_poll(g, Some("1"), &[], false, later).await.unwrap();
    assert_eq!(
        store.claim_long_polls("a", later, later + 60_000, 10).await.unwrap()[0].ts.as_deref(),
        Some("8"),
        "place kept"
    );
    store.record_gap(g, now - 5_000, now, "long_poll_history_lost", now).await.unwrap();
    store.record_gap(g, now, later, "long_poll_information_lost", later).await.unwrap();
    let gaps = store.gaps(g, 10).await.unwrap();
    assert_eq!(
        gaps.iter().map(|g| g.why.as_str()).collect::<Vec<_>>(),
        ["long_poll_information_lost", "long_poll_history_lost"]
    );
    assert_eq!((gaps[1].from_at, gaps[1].to_at), (now - 5_000, now));
    let stopped = store.stop_long_poll(g).await.unwrap().unwrap();
    assert!(stopped.enabled_by_us);
    assert!(store.long_poll(g).await.unwrap().is_none());
}

/// Settles events `owner` holds in one commit ([`Store::write_inbox`] with settlements only).
async fn settle_events(store: &Store, owner: &str, settle: &[(i64, Settle)]) -> StoreResult<Vec<bool>> {
    let settlements = settle
        .iter()
        .map(|(id, s)| Settlement { id: *id, owner: owner.to_owned(), settle: s.clone(), reply: None })
        .collect();
    Ok(store.write_inbox(&InboxWrite { settlements, ..Default::default() }).await?.settled)
}

/// Renews `owner`'s leases on `ids` of `group_id` ([`Store::write_inbox`] with one renewal): how many were held.
async fn renew(store: &Store, owner: &str, group_id: i64, ids: &[i64], until: i64) -> StoreResult<u64> {
    let renewal = LeaseRenewal { owner: owner.to_owned(), group_id, ids: ids.to_vec(), until };
    Ok(store.write_inbox(&InboxWrite { renewals: vec![renewal], ..Default::default() }).await?.renewed[0])
}

/// Claims runs of at most `run` events of at most `communities` communities, flattened in claim order.
async fn claim(store: &Store, owner: &str, now: i64, lease_until: i64, communities: i64, run: i64) -> Vec<InboxRow> {
    store.claim_inbox_runs(owner, now, lease_until, communities, run).await.unwrap().into_iter().flatten().collect()
}

async fn finish(store: &Store, owner: &str, id: i64, status: EventStatus, error: Option<&str>) -> bool {
    let settle = Settle::Finish {
        status,
        result: vkhook::model::EventResult::Nothing { reason: vkhook::model::Reason::NoRule },
        error: error.map(str::to_owned),
    };
    settle_events(store, owner, &[(id, settle)]).await.unwrap()[0]
}

async fn retry(store: &Store, owner: &str, id: i64, next_attempt_at: i64, error: &str) -> bool {
    let settle = Settle::Retry { next_attempt_at, error: error.into() };
    settle_events(store, owner, &[(id, settle)]).await.unwrap()[0]
}

async fn claims_take_one_event_per_community_in_order(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    store.upsert_community(&club()).await.unwrap();
    store.insert_inbox_batch(&[event(1001, 1), event(1001, 2), event(1002, 3)]).await.unwrap();
    let now = now_ms();
    let claimed = claim(store, "a", now, now + 60_000, 10, 1).await;
    assert_eq!(
        claimed.iter().map(|r| r.event_id.clone()).collect::<Vec<_>>(),
        vec![format!("{:040x}", 1), format!("{:040x}", 3)]
    );
    assert!(claimed.iter().all(|r| r.status == EventStatus::Processing && r.attempts == 1));
    assert!(claim(store, "b", now, now + 60_000, 10, 1).await.is_empty(), "held by a");
    let first = &claimed[0];
    assert!(finish(store, "a", first.id, EventStatus::Done, None).await);
    assert!(!finish(store, "b", first.id, EventStatus::Done, None).await, "not b's");
    assert!(claim(store, "b", now, now + 60_000, 10, 1).await.is_empty(), "1001's lease is a's");
    let next = claim(store, "a", now, now + 60_000, 10, 1).await;
    assert_eq!(next.iter().map(|r| r.event_id.clone()).collect::<Vec<_>>(), vec![format!("{:040x}", 2)]);
    assert_eq!(store.release_community_leases("a").await.unwrap(), 2);
}

/// A run is a community's oldest open events in order, up to the first held back; released events come back
/// with their claim undone.
async fn claims_take_runs_up_to_the_first_event_held_back(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    store.upsert_community(&club()).await.unwrap();
    let batch: Vec<_> = (1..=5).map(|n| event(1001, n)).chain([event(1002, 6)]).collect();
    store.insert_inbox_batch(&batch).await.unwrap();
    let now = now_ms();
    let runs = store.claim_inbox_runs("a", now, now + 60_000, 10, 3).await.unwrap();
    let ids = |run: &[InboxRow]| run.iter().map(|r| r.event_id.clone()).collect::<Vec<_>>();
    let names = |ns: std::ops::RangeInclusive<u32>| ns.map(|n| format!("{n:040x}")).collect::<Vec<_>>();
    assert_eq!(runs.len(), 2, "one run per community");
    assert_eq!(ids(&runs[0]), names(1..=3));
    assert_eq!(ids(&runs[1]), names(6..=6));
    assert!(runs[0].iter().all(|r| r.status == EventStatus::Processing && r.attempts == 1));
    assert!(store.claim_inbox_runs("a", now, now + 60_000, 10, 3).await.unwrap().is_empty(), "heads in flight");
    // The first is done, the second waits for a retry in an hour, the third is released unhandled.
    let done = Settle::Finish {
        status: EventStatus::Done,
        result: vkhook::model::EventResult::Nothing { reason: vkhook::model::Reason::NoRule },
        error: None,
    };
    let later = Settle::Retry { next_attempt_at: now + 3_600_000, error: "VK error 6".into() };
    let settle = [(runs[0][0].id, done), (runs[0][1].id, later), (runs[0][2].id, Settle::Release)];
    assert_eq!(settle_events(store, "b", &settle[2..]).await.unwrap(), vec![false], "not b's");
    assert_eq!(settle_events(store, "a", &settle).await.unwrap(), vec![true, true, true]);
    let third = store.inbox_event(GroupId(1001), runs[0][2].id).await.unwrap().unwrap();
    assert_eq!((third.status, third.attempts), (EventStatus::Pending, 0), "as if never claimed");
    // 1001 waits for its second event: nothing of it is claimed before that one is due, then all of it in order.
    assert!(claim(store, "a", now, now + 60_000, 10, 3).await.is_empty());
    let due = now + 3_600_001;
    let run = claim(store, "a", due, due + 60_000, 1, 10).await;
    assert_eq!(ids(&run), names(2..=5));
    let held: Vec<i64> = run.iter().map(|r| r.id).collect();
    assert_eq!(renew(store, "a", 1001, &held, due + 90_000).await.unwrap(), 4);
    // One commit takes new events, results and renewals together (the group-commit writer's way).
    let write = InboxWrite {
        events: vec![event(1001, 7), event(1001, 2)],
        settlements: vec![Settlement {
            id: held[0],
            owner: "a".into(),
            settle: Settle::Finish {
                status: EventStatus::Done,
                result: vkhook::model::EventResult::Nothing { reason: vkhook::model::Reason::NoRule },
                error: None,
            },
            reply: None,
        }],
        renewals: vec![LeaseRenewal {
            owner: "a".into(),
            group_id: 1001,
            ids: held[1..].to_vec(),
            until: due + 99_000,
        }],
        deliveries: vec![],
        cursors: vec![],
    };
    let written = store.write_inbox(&write).await.unwrap();
    let expected = InboxWritten {
        inserted: vec![Inserted::New, Inserted::Duplicate],
        settled: vec![true],
        renewed: vec![3],
        deliveries: vec![],
        cursors: vec![],
    };
    assert_eq!(written, expected);
    assert_eq!(store.inbox_depth(Some(GroupId(1001))).await.unwrap(), 4, "three held and the new one");
}

async fn held_events_are_woken_and_failed_ones_replayed(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    store.insert_inbox_batch(&[event(1001, 1)]).await.unwrap();
    let now = now_ms();
    let row = claim(store, "a", now, now + 60_000, 1, 1).await.remove(0);
    assert!(retry(store, "a", row.id, now + 3_600_000, "paused").await);
    assert!(claim(store, "a", now, now + 60_000, 1, 1).await.is_empty(), "held for an hour");
    assert_eq!(store.wake_community_events(GroupId(1001)).await.unwrap(), 1);
    let row = claim(store, "a", now_ms(), now_ms() + 60_000, 1, 1).await.remove(0);
    assert!(finish(store, "a", row.id, EventStatus::Failed, Some("VK error 901")).await);
    assert_eq!(store.last_inbox_error(GroupId(1001)).await.unwrap().map(|e| e.0), Some("VK error 901".into()));
    let failed = LogFilter { status: Some(EventStatus::Failed), limit: 10, ..Default::default() };
    assert_eq!(store.inbox_log(GroupId(1001), &failed).await.unwrap().len(), 1);
    assert!(store.replay_inbox_event(GroupId(1001), row.id).await.unwrap());
    assert!(!store.replay_inbox_event(GroupId(1001), row.id).await.unwrap(), "only a failed or dead event");
    assert_eq!(store.inbox_event(GroupId(1001), row.id).await.unwrap().unwrap().status, EventStatus::Pending);
}

async fn rules_are_added_moved_and_deleted(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    store.set_bot_settings(GroupId(1001), true, false, Some("Здравствуйте!")).await.unwrap();
    let bot = store.bot_settings(GroupId(1001)).await.unwrap().unwrap();
    assert_eq!(
        (bot.bot_comments, bot.bot_messages, bot.default_reply.as_deref()),
        (true, false, Some("Здравствуйте!"))
    );
    let a = store.add_rule(GroupId(1001), "цена", "100 ₽").await.unwrap();
    let b = store.add_rule(GroupId(1001), "адрес", "ул. Ленина").await.unwrap();
    store.move_rule(GroupId(1001), b, true).await.unwrap();
    assert_eq!(store.rules(GroupId(1001)).await.unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), vec![b, a]);
    assert!(store.delete_rule(GroupId(1001), a).await.unwrap());
    assert!(!store.delete_rule(GroupId(1002), b).await.unwrap(), "another community's rule");
    assert_eq!(store.rules(GroupId(1001)).await.unwrap().len(), 1);
}

/// Replies are recorded with their event's settlement, in the same commit, and only while the worker still holds
/// the event.
async fn replies_are_counted_and_recognised_as_own(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    store.insert_inbox_batch(&[event(1001, 1), event(1001, 2)]).await.unwrap();
    let now = now_ms();
    let run = claim(store, "a", now, now + 60_000, 1, 10).await;
    let reply = |inbox_id, vk_id, status| ReplyRow {
        id: 0,
        group_id: 1001,
        inbox_id,
        kind: vkhook::model::ReplyKind::Comment,
        rule_id: None,
        text: "hi".into(),
        vk_id,
        status,
        error: None,
        created_at: now_ms(),
    };
    let settle = |id, status, reply, owner: &str| Settlement {
        id,
        owner: owner.into(),
        settle: Settle::Finish {
            status,
            result: vkhook::model::EventResult::Nothing { reason: vkhook::model::Reason::NoRule },
            error: None,
        },
        reply: Some(reply),
    };
    let write = InboxWrite {
        settlements: vec![
            settle(run[0].id, EventStatus::Done, reply(run[0].id, Some(77), ReplyStatus::Sent), "a"),
            settle(run[1].id, EventStatus::Failed, reply(run[1].id, None, ReplyStatus::Failed), "a"),
            // Not b's: neither settled nor its reply recorded.
            settle(run[0].id, EventStatus::Done, reply(run[0].id, Some(78), ReplyStatus::Sent), "b"),
        ],
        ..Default::default()
    };
    assert_eq!(store.write_inbox(&write).await.unwrap().settled, vec![true, true, false]);
    assert_eq!(store.reply_counts(GroupId(1001), 0).await.unwrap(), (1, 1));
    assert!(store.is_own_reply(GroupId(1001), vkhook::model::ReplyKind::Comment, 77).await.unwrap());
    assert!(!store.is_own_reply(GroupId(1001), vkhook::model::ReplyKind::Comment, 78).await.unwrap());
    assert!(!store.is_own_reply(GroupId(1001), vkhook::model::ReplyKind::Message, 77).await.unwrap());
}

async fn the_community_log_keeps_typed_entries(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    let restored = LogEntry::SettingsRestored { events: vec!["like_add".into()], version: Some("5.131".into()) };
    for entry in [LogEntry::ServerMissing, restored.clone(), LogEntry::Paused(PauseReason::Reauth), LogEntry::Resumed] {
        store.log_community(GroupId(1001), &entry).await.unwrap();
    }
    let log = store.community_log(GroupId(1001), 10).await.unwrap();
    assert_eq!(
        log.iter().map(|l| l.entry()).collect::<Vec<_>>(),
        vec![
            Some(LogEntry::Resumed),
            Some(LogEntry::Paused(PauseReason::Reauth)),
            Some(restored),
            Some(LogEntry::ServerMissing)
        ],
        "newest first"
    );
}

/// A property over random interleavings: events of three communities arrive mixed, workers claim runs of random
/// size for a random number of communities and finish or retry what they got (releasing the rest of a run after a
/// retry); each community's events are finished in the order they arrived.
async fn claims_keep_each_communitys_order_whatever_the_interleaving(store: &Store) {
    use rand::{Rng, SeedableRng};
    for (id, name) in [(1001, "a"), (1002, "b"), (1003, "c")] {
        let row = CommunityRow { id, name: name.into(), screen_name: name.into(), photo: None };
        store.upsert_community(&row).await.unwrap();
    }
    for seed in 0..8u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut arrived: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
        for n in 0..30u32 {
            let group = 1001 + rng.gen_range(0..3);
            let e = event(group, seed as u32 * 1000 + n);
            arrived.entry(group).or_default().push(e.event_id.clone());
            store.insert_inbox_batch(&[e]).await.unwrap();
        }
        let mut finished: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
        let owners = ["a", "b"];
        for _ in 0..1000 {
            let now = now_ms();
            let owner = owners[rng.gen_range(0..2)];
            let runs = store.claim_inbox_runs(owner, now, now + 60_000, rng.gen_range(1..4), rng.gen_range(1..5));
            let runs = runs.await.unwrap();
            if runs.is_empty() && store.inbox_depth(None).await.unwrap() == 0 {
                break;
            }
            for run in runs {
                // As the bot does: in order; after a retry the rest of the run is released unhandled.
                let mut settle = Vec::new();
                let mut waiting = false;
                for row in run {
                    if waiting {
                        settle.push((row.id, Settle::Release));
                    } else if rng.gen_bool(0.2) {
                        // Retried: goes back, due now, and must still come before the community's later events.
                        settle.push((row.id, Settle::Retry { next_attempt_at: now, error: "again".into() }));
                        waiting = true;
                    } else {
                        let done = Settle::Finish {
                            status: EventStatus::Done,
                            result: vkhook::model::EventResult::Nothing { reason: vkhook::model::Reason::NoRule },
                            error: None,
                        };
                        settle.push((row.id, done));
                        finished.entry(row.group_id).or_default().push(row.event_id);
                    }
                }
                assert!(settle_events(store, owner, &settle).await.unwrap().into_iter().all(|ok| ok));
            }
            store.release_community_leases(owner).await.unwrap();
        }
        assert_eq!(finished, arrived, "seed {seed}: every event finished once, in its community's order");
    }
}

async fn a_worker_renews_only_the_leases_it_holds(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    store.insert_inbox_batch(&[event(1001, 1), event(1001, 2)]).await.unwrap();
    let now = now_ms();
    let row = claim(store, "a", now, now + 1_000, 1, 1).await.remove(0);
    assert_eq!(renew(store, "a", 1001, &[row.id], now + 60_000).await.unwrap(), 1);
    assert_eq!(renew(store, "b", 1001, &[row.id], now + 60_000).await.unwrap(), 0, "not b's");
    // Renewed past the first lease's end: nobody can take the event or the community at that time.
    let later = now + 5_000;
    assert!(claim(store, "b", later, later + 1_000, 5, 1).await.is_empty());
    assert!(finish(store, "a", row.id, EventStatus::Done, None).await);
    assert_eq!(renew(store, "a", 1001, &[row.id], now + 90_000).await.unwrap(), 0, "a finished event is not held");
}

async fn a_confirmation_request_is_recorded(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    assert_eq!(store.community_settings(GroupId(1001)).await.unwrap().unwrap().last_confirmation_at, None);
    store.record_confirmation_request(GroupId(1001)).await.unwrap();
    assert!(store.community_settings(GroupId(1001)).await.unwrap().unwrap().last_confirmation_at.is_some());
    let expected = if store_is_postgres(store) { BackendKind::Postgres } else { BackendKind::Sqlite };
    assert_eq!(store.kind(), expected);
}

fn store_is_postgres(store: &Store) -> bool {
    format!("{store:?}").contains("Postgres")
}

/// Every public operation of `Store` has a contract case above: a new operation without one fails here.
#[test]
fn every_public_store_operation_has_a_contract_case() {
    let root = format!("{}/src/store", std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let called = called_from_contract_cases(include_str!("store_contract.rs"));
    let mut missing = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        // Only the methods inside `impl Store { … }` blocks.
        for block in source.split("impl Store {").skip(1) {
            let block = block.split("\n}\n").next().unwrap_or(block);
            for line in block.lines() {
                let line = line.trim_start();
                let Some(rest) = line.strip_prefix("pub async fn ").or_else(|| line.strip_prefix("pub fn ")) else {
                    continue;
                };
                let name = rest.split(['(', '<']).next().unwrap();
                seen += 1;
                if !called.contains(name) {
                    missing.push(format!("{}: {name}", path.file_name().unwrap().to_string_lossy()));
                }
            }
        }
    }
    assert!(seen > 60, "found the store's operations ({seen})");
    assert!(missing.is_empty(), "store operations no contract case calls: {missing:?}");
}

/// The methods the contract cases call (`x.name(` or `Type::name(`), following the helper functions they call, in
/// code only: a name in a comment or a string does not count.
fn called_from_contract_cases(source: &str) -> std::collections::BTreeSet<String> {
    let code = without_comments_and_strings(source);
    // Every top-level function of this file and its body.
    let mut bodies = std::collections::BTreeMap::new();
    for (at, _) in code.match_indices("fn ") {
        let name: String = code[at + 3..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let Some(open) = code[at..].find('{').map(|i| at + i) else { continue };
        let mut depth = 0;
        let mut end = open;
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = open + i;
                break;
            }
        }
        bodies.entry(name).or_insert_with(|| code[open..=end].to_owned());
    }
    // What every case runs first and last (connect, migrate, close) is in the macro that makes the cases.
    if let Some(at) = code.find("macro_rules! contract") {
        let end = code[at..].find("\n}\n").map_or(code.len(), |e| at + e);
        bodies.insert("(the contract! macro)".to_owned(), code[at..end].to_owned());
    }
    // The cases: `name => body;` in the `contract!` list.
    let list = &code[code.find("contract! {").expect("the list of cases")..];
    let list = &list[..list.find('}').unwrap()];
    let mut todo: Vec<String> =
        list.split(';').filter_map(|l| l.split("=>").nth(1)).map(|b| b.trim().to_owned()).collect();
    assert!(todo.len() > 30, "the cases were read: {todo:?}");
    todo.push("(the contract! macro)".to_owned());
    let (mut reached, mut called) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    while let Some(f) = todo.pop() {
        if !reached.insert(f.clone()) {
            continue;
        }
        let Some(body) = bodies.get(&f) else { continue };
        let chars: Vec<char> = body.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if *c != '(' {
                continue;
            }
            let mut start = i;
            while start > 0 && (chars[start - 1].is_alphanumeric() || chars[start - 1] == '_') {
                start -= 1;
            }
            let name: String = chars[start..i].iter().collect();
            if name.is_empty() {
                continue;
            }
            let before = if start > 0 { chars[start - 1] } else { ' ' };
            if before == '.' || (before == ':' && start > 1 && chars[start - 2] == ':') {
                called.insert(name.clone());
            }
            if bodies.contains_key(&name) {
                todo.push(name);
            }
        }
    }
    called
}

/// `source` with every comment and the inside of every string literal blanked out.
fn without_comments_and_strings(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                out.push('"');
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push('"');
            }
            // A char literal like '(' or '"' (not a lifetime).
            '\'' if chars.clone().nth(1) == Some('\'') => {
                chars.next();
                chars.next();
                out.push_str("' '");
            }
            c => out.push(c),
        }
    }
    out
}

#[test]
fn a_method_named_only_in_a_comment_or_a_string_is_not_a_contract_case() {
    let source = "contract! { a => case_a; b => case_b; c => case_c; d => case_d; e => case_e; f => case_f; \
                  g => case_g; h => case_h; i => case_i; j => case_j; k => case_k; l => case_l; m => case_m; n => case_n; \
                  o => case_o; p => case_p; q => case_q; r => case_r; s => case_s; t => case_t; u => case_u; \
                  v => case_v; w => case_w; x => case_x; y => case_y; z => case_z; aa => case_aa; ab => case_ab; \
                  ac => case_ac; ad => case_ad; ae => case_ae; }
                  async fn case_a(store: &Store) { helper(store).await; // store.commented(1)
                      let s = \"store.quoted(2)\"; }
                  async fn helper(store: &Store) { store.really_called(3).await; }
                  async fn unused(store: &Store) { store.never_reached(4).await; }";
    let called = called_from_contract_cases(source);
    assert!(called.contains("really_called"), "{called:?}");
    for name in ["commented", "quoted", "never_reached"] {
        assert!(!called.contains(name), "{name}: {called:?}");
    }
}

#[tokio::test]
async fn concurrent_migrations_on_postgres_apply_once() {
    let Some(db) = PgDatabase::create("concurrent migrations").await else { return };
    let a = Store::connect(&db.url).await.unwrap();
    let b = Store::connect(&db.url).await.unwrap();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let mut applied = ra.unwrap();
    applied.extend(rb.unwrap());
    assert_eq!(applied, migration_versions("postgres"), "exactly one instance applied each");
    a.close().await;
    b.close().await;
}

fn endpoint(id: &str, group_id: i64, types: &str) -> NewEndpoint {
    NewEndpoint {
        id: id.into(),
        group_id,
        name: "CRM".into(),
        url: "https://crm.example.com/vk".into(),
        event_types: types.into(),
        secret: "v1.k.sealed".into(),
        created_by: 1,
    }
}

fn typed(group_id: i64, n: u32, event_type: &str) -> NewInboxEvent {
    NewInboxEvent { event_type: event_type.into(), ..event(group_id, n) }
}

async fn endpoints_are_added_rotated_disabled_and_deleted(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    assert!(store.add_endpoint(&endpoint("ep_a", 1001, ""), 10).await.unwrap());
    assert!(store.add_endpoint(&endpoint("ep_b", 1001, "message_new,like_add"), 10).await.unwrap());
    let all = store.endpoints(GroupId(1001)).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["ep_a", "ep_b"]);
    assert!(all[0].types().is_empty() && all[0].enabled);
    assert_eq!(all[1].types(), ["message_new", "like_add"]);
    assert_eq!(store.endpoint(GroupId(1002), "ep_a").await.unwrap(), None, "another community's endpoint");
    // Rotation keeps the old secret for a while; housekeeping drops it after.
    assert!(store.rotate_endpoint_secret(GroupId(1001), "ep_a", "v1.k.new", "v1.k.sealed", 5_000).await.unwrap());
    let a = store.endpoint(GroupId(1001), "ep_a").await.unwrap().unwrap();
    assert_eq!((a.secret.as_str(), a.previous_secret.as_deref()), ("v1.k.new", Some("v1.k.sealed")));
    assert_eq!(store.retire_endpoint_secrets(4_000).await.unwrap(), 0);
    assert_eq!(store.retire_endpoint_secrets(6_000).await.unwrap(), 1);
    assert_eq!(store.endpoint(GroupId(1001), "ep_a").await.unwrap().unwrap().previous_secret, None);
    assert_eq!(store.sealed_values(Sealed::EndpointSecret).await.unwrap().len(), 2);
    // «Отключить» / «Включить».
    assert!(store
        .set_endpoint_disabled(GroupId(1001), "ep_a", Some(vkhook::model::DisabledReason::Admin))
        .await
        .unwrap());
    let a = store.endpoint(GroupId(1001), "ep_a").await.unwrap().unwrap();
    assert_eq!((a.enabled, a.disabled_reason), (false, Some(vkhook::model::DisabledReason::Admin)));
    assert!(store.set_endpoint_disabled(GroupId(1001), "ep_a", None).await.unwrap());
    assert!(store.endpoint(GroupId(1001), "ep_a").await.unwrap().unwrap().enabled);
    // «Удалить» takes its deliveries along.
    store.insert_inbox_batch(&[event(1001, 1)]).await.unwrap();
    assert_eq!(store.endpoint_queue("ep_a").await.unwrap().open, 1);
    assert!(!store.delete_endpoint(GroupId(1002), "ep_a").await.unwrap(), "only in its community");
    assert!(store.delete_endpoint(GroupId(1001), "ep_a").await.unwrap());
    assert_eq!(store.endpoint_queue("ep_a").await.unwrap(), EndpointQueue::default());
    assert_eq!(store.endpoints(GroupId(1001)).await.unwrap().len(), 1);
}

async fn storing_an_event_makes_its_deliveries_in_the_same_statement(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    store.upsert_community(&club()).await.unwrap();
    assert!(store.add_endpoint(&endpoint("ep_all", 1001, ""), 10).await.unwrap());
    assert!(store.add_endpoint(&endpoint("ep_msg", 1001, "message_new"), 10).await.unwrap());
    assert!(store.add_endpoint(&endpoint("ep_off", 1001, ""), 10).await.unwrap());
    assert!(store.add_endpoint(&endpoint("ep_other", 1002, ""), 10).await.unwrap());
    store.set_endpoint_disabled(GroupId(1001), "ep_off", Some(vkhook::model::DisabledReason::Admin)).await.unwrap();
    let batch = [typed(1001, 1, "message_new"), typed(1001, 2, "like_add"), typed(1001, 1, "message_new")];
    assert_eq!(store.insert_inbox_batch(&batch).await.unwrap(), [Inserted::New, Inserted::New, Inserted::Duplicate]);
    // VK's retry of a stored event makes nothing either.
    store.insert_inbox_batch(&[typed(1001, 2, "like_add")]).await.unwrap();
    let queue = |id: &'static str| async move { store.endpoint_queue(id).await.unwrap().open };
    assert_eq!(queue("ep_all").await, 2);
    assert_eq!(queue("ep_msg").await, 1, "only the type it wants");
    assert_eq!(store.forward_depth().await.unwrap(), 3);
    assert_eq!(queue("ep_off").await, 0, "a disabled endpoint gets nothing new");
    assert_eq!(queue("ep_other").await, 0, "another community's endpoint");
    // An event finished at ingest for the bot is still forwarded.
    let done = NewInboxEvent {
        done_at_ingest: Some(vkhook::model::EventResult::Nothing { reason: vkhook::model::Reason::NoRule }),
        ..typed(1001, 3, "message_new")
    };
    store.insert_inbox_batch(&[done]).await.unwrap();
    assert_eq!(queue("ep_msg").await, 2);
    assert_eq!(store.delivery_status("ep_msg", &format!("{:040x}", 3)).await.unwrap(), Some(DeliveryStatus::Pending));
    assert_eq!(store.delivery_status("ep_msg", &format!("{:040x}", 2)).await.unwrap(), None);
}

async fn claim_endpoints(store: &Store, owner: &str, now: i64, batch: i64) -> Vec<ClaimedBatch> {
    store.claim_deliveries(owner, now, now + 60_000, 10, batch, 10).await.unwrap()
}

fn results(endpoint_id: &str, owner: &str, outcomes: Vec<DeliveryOutcome>) -> DeliveryResults {
    DeliveryResults {
        endpoint_id: endpoint_id.into(),
        owner: owner.into(),
        outcomes,
        health: None,
        failing_cutoff: 0,
        release: true,
        backoff_until: None,
    }
}

fn tried(delivery_id: i64, n: i64, status: i64, next: DeliveryNext) -> DeliveryOutcome {
    let attempt = AttemptRecord {
        attempt: n,
        at: now_ms(),
        status_code: Some(status),
        error: None,
        duration_ms: 3,
        response: Some("ok".into()),
    };
    DeliveryOutcome { delivery_id, attempt: Some(attempt), next }
}

async fn settle_deliveries(store: &Store, r: DeliveryResults) -> DeliveriesSettled {
    let write = InboxWrite { deliveries: vec![r], ..Default::default() };
    store.write_inbox(&write).await.unwrap().deliveries.remove(0)
}

async fn deliveries_are_claimed_per_endpoint_under_its_lease_and_settled(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    assert!(store.add_endpoint(&endpoint("ep_a", 1001, ""), 10).await.unwrap());
    store.insert_inbox_batch(&(1..=5).map(|n| event(1001, n)).collect::<Vec<_>>()).await.unwrap();
    let now = now_ms();
    let batches = claim_endpoints(store, "a", now, 3).await;
    assert_eq!(batches.len(), 1);
    let d = &batches[0].deliveries;
    assert_eq!(d.len(), 3, "at most the batch");
    assert_eq!(
        d.iter().map(|d| d.event_id.clone()).collect::<Vec<_>>(),
        (1..=3).map(|n| format!("{n:040x}")).collect::<Vec<_>>()
    );
    assert!(d.iter().all(|d| d.attempts == 1 && d.payload.contains("group_join")), "{d:?}");
    assert_eq!(batches[0].endpoint.id, "ep_a");
    // The endpoint is held: nobody else claims it, nor does its holder until it records.
    assert!(claim_endpoints(store, "b", now, 3).await.is_empty());
    assert!(claim_endpoints(store, "a", now, 3).await.is_empty());
    // A test event goes into the same queue.
    let test = store
        .add_test_delivery(&batches[0].endpoint, "test-1", "message_new", "{\"type\":\"message_new\"}")
        .await
        .unwrap();
    // Results: delivered, retry later, released untried; the endpoint is given back.
    let outcomes = vec![
        tried(d[0].id, 1, 200, DeliveryNext::Delivered),
        tried(d[1].id, 1, 503, DeliveryNext::RetryAt(now + 10_000)),
        DeliveryOutcome {
            delivery_id: d[2].id,
            attempt: None,
            next: DeliveryNext::Release { not_before: now + 10_000 },
        },
    ];
    let by_b = settle_deliveries(store, results("ep_a", "b", outcomes.clone())).await;
    assert_eq!(by_b.settled, [false, false, false], "only the holder settles");
    let settled = settle_deliveries(store, results("ep_a", "a", outcomes)).await;
    assert_eq!(settled, DeliveriesSettled { settled: vec![true, true, true], disabled: None });
    assert_eq!(store.delivery_status("ep_a", &d[0].event_id).await.unwrap(), Some(DeliveryStatus::Delivered));
    assert_eq!(store.endpoint_queue("ep_a").await.unwrap(), EndpointQueue { open: 5, failed: 0 });
    // Next: the two never tried and the test event; the retry and the released one wait.
    let next = claim_endpoints(store, "a", now_ms() + 1, 10).await;
    let ids: Vec<&str> = next[0].deliveries.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.contains(&"test-1"));
    let test_row = next[0].deliveries.iter().find(|d| d.id == test).unwrap();
    assert_eq!(test_row.payload, "{\"type\":\"message_new\"}");
    // Its holder dies: after the lease, another instance takes them over, as a second attempt.
    let later = claim_endpoints(store, "b", now + 61_000, 10).await;
    let taken: Vec<i64> = later[0].deliveries.iter().map(|d| d.id).collect();
    assert_eq!(taken.len(), 5, "the three held, and the two now due");
    let retried = later[0].deliveries.iter().find(|x| x.id == d[1].id).unwrap();
    assert_eq!(retried.attempts, 2);
    let released = later[0].deliveries.iter().find(|x| x.id == d[2].id).unwrap();
    assert_eq!(released.attempts, 1, "a release undid its claim's attempt");
    // The attempts list, newest first, and «Повторить» / «Повторить неудачные».
    let attempts = store.endpoint_attempts("ep_a", 10).await.unwrap();
    assert_eq!(attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(), [Some(503), Some(200)]);
    assert_eq!(attempts[1].event_id, d[0].event_id);
    let fail = later[0].deliveries.iter().map(|x| tried(x.id, x.attempts, 500, DeliveryNext::Failed)).collect();
    settle_deliveries(store, results("ep_a", "b", fail)).await;
    assert_eq!(store.endpoint_queue("ep_a").await.unwrap(), EndpointQueue { open: 0, failed: 5 });
    assert!(store.replay_delivery("ep_a", d[0].id).await.unwrap(), "a delivered one is sent again");
    assert!(!store.replay_delivery("ep_b", d[0].id).await.unwrap(), "only its endpoint's");
    assert_eq!(store.replay_failed_deliveries("ep_a").await.unwrap(), 5);
    assert_eq!(store.endpoint_queue("ep_a").await.unwrap(), EndpointQueue { open: 6, failed: 0 });
    let again = claim_endpoints(store, "b", now_ms(), 10).await;
    assert!(again[0].deliveries.iter().all(|x| x.attempts == 1), "a replay starts a fresh schedule");
    assert_eq!(store.release_endpoint_leases("b").await.unwrap(), 1);
}

async fn an_endpoint_failing_too_long_or_gone_is_disabled(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    assert!(store.add_endpoint(&endpoint("ep_a", 1001, ""), 10).await.unwrap());
    assert!(store.add_endpoint(&endpoint("ep_b", 1001, ""), 10).await.unwrap());
    store.insert_inbox_batch(&[event(1001, 1)]).await.unwrap();
    let now = now_ms();
    let fared = |endpoint: &str, cutoff: i64, health| DeliveryResults {
        endpoint_id: endpoint.into(),
        owner: "a".into(),
        outcomes: vec![],
        health: Some(health),
        failing_cutoff: cutoff,
        release: true,
        backoff_until: None,
    };
    // Failing since `now`; not yet past the cutoff, then past it.
    let r = fared("ep_a", now - 1_000, EndpointHealth::Failed { at: now });
    assert_eq!(settle_deliveries(store, r).await.disabled, None);
    assert_eq!(store.endpoint(GroupId(1001), "ep_a").await.unwrap().unwrap().failing_since, Some(now));
    let r = fared("ep_a", now - 1_000, EndpointHealth::Failed { at: now + 5 });
    settle_deliveries(store, r).await;
    assert_eq!(
        store.endpoint(GroupId(1001), "ep_a").await.unwrap().unwrap().failing_since,
        Some(now),
        "since the first"
    );
    let r = fared("ep_a", now + 1, EndpointHealth::Failed { at: now + 10 });
    assert_eq!(settle_deliveries(store, r).await.disabled, Some(vkhook::model::DisabledReason::Failing));
    // A success in between forgets the failures.
    let r = fared("ep_b", 0, EndpointHealth::Failed { at: now - 10 });
    settle_deliveries(store, r).await;
    let r = fared("ep_b", 0, EndpointHealth::Succeeded);
    settle_deliveries(store, r).await;
    assert_eq!(store.endpoint(GroupId(1001), "ep_b").await.unwrap().unwrap().failing_since, None);
    let r = fared("ep_b", 0, EndpointHealth::Gone);
    assert_eq!(settle_deliveries(store, r).await.disabled, Some(vkhook::model::DisabledReason::Gone));
    let b = store.endpoint(GroupId(1001), "ep_b").await.unwrap().unwrap();
    assert_eq!((b.enabled, b.disabled_reason), (false, Some(vkhook::model::DisabledReason::Gone)));
    // Disabled endpoints are not claimed.
    assert!(claim_endpoints(store, "a", now_ms(), 10).await.is_empty());
}

async fn an_alert_is_told_once_and_reminded_after_its_period(store: &Store) {
    use vkhook::model::{AlertKind, AlertOutcome};
    store.upsert_community(&zerno()).await.unwrap();
    assert_eq!(store.community_name(GroupId(1001)).await.unwrap().as_deref(), Some("Кофейня «Зерно»"));
    assert_eq!(store.community_name(GroupId(1002)).await.unwrap(), None);
    assert_eq!(store.alert_email(GroupId(1001)).await.unwrap(), None);
    // An address waits for its link; another link goes out only after the gap; the link makes it the address.
    assert!(store.request_alert_email(GroupId(1001), "anna@example.com", "h1", 1_000, 600_000).await.unwrap());
    assert!(
        !store.request_alert_email(GroupId(1001), "evil@example.com", "h2", 2_000, 600_000).await.unwrap(),
        "too soon"
    );
    assert_eq!(store.pending_alert_email(GroupId(1001)).await.unwrap().as_deref(), Some("anna@example.com"));
    assert_eq!(store.alert_email(GroupId(1001)).await.unwrap(), None, "nothing confirmed yet");
    assert_eq!(store.confirm_alert_email("h2", 0).await.unwrap(), None, "not its link");
    assert_eq!(store.confirm_alert_email("h1", 1_001).await.unwrap(), None, "an expired link");
    assert_eq!(store.confirm_alert_email("h1", 1_000).await.unwrap(), Some(1001));
    assert_eq!(store.confirm_alert_email("h1", 1_000).await.unwrap(), None, "used");
    assert_eq!(store.alert_email(GroupId(1001)).await.unwrap().as_deref(), Some("anna@example.com"));
    assert_eq!(store.pending_alert_email(GroupId(1001)).await.unwrap(), None);
    assert!(store.clear_alert_email(GroupId(1001)).await.unwrap());
    assert_eq!(store.alert_email(GroupId(1001)).await.unwrap(), None);
    assert!(store.request_alert_email(GroupId(1001), "anna@example.com", "h3", 700_000, 600_000).await.unwrap());
    assert_eq!(store.confirm_alert_email("h3", 0).await.unwrap(), Some(1001));
    // Two instances see the same trouble: one opens the alert, one gets to tell.
    let id = store
        .open_alert(GroupId(1001), AlertKind::EndpointDisabled, "ep_a", "CRM\ngone", 1_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.open_alert(GroupId(1001), AlertKind::EndpointDisabled, "ep_a", "CRM\ngone", 1_001).await.unwrap(),
        None
    );
    let other = store.open_alert(GroupId(1001), AlertKind::EndpointDisabled, "ep_b", "", 1_002).await.unwrap();
    assert!(other.is_some(), "another endpoint is another alert");
    let told = store.claim_alert_send(id, 1_010, 0).await.unwrap().unwrap();
    // Every telling counts toward the daily limits, whoever resolves what.
    let none =
        store.alert_tellings_since(GroupId(1001), AlertKind::EndpointDisabled, Some(1), Some("anna@example.com"), 0);
    assert_eq!(none.await.unwrap(), TellingCounts::default());
    store.record_alert_telling(&told, Some(1), Some("anna@example.com"), 1_010).await.unwrap();
    let counts = store.alert_tellings_since(
        GroupId(1001),
        AlertKind::EndpointDisabled,
        Some(1),
        Some("anna@example.com"),
        1_000,
    );
    assert_eq!(counts.await.unwrap(), TellingCounts { same_kind: 1, community: 1, user: 1, email: 1 });
    let other_kind =
        store.alert_tellings_since(GroupId(1001), AlertKind::VkFailed, Some(2), Some("b@example.com"), 1_000);
    assert_eq!(other_kind.await.unwrap(), TellingCounts { same_kind: 0, community: 1, user: 0, email: 0 });
    let later = store.alert_tellings_since(GroupId(1001), AlertKind::EndpointDisabled, Some(1), None, 1_011);
    assert_eq!(later.await.unwrap(), TellingCounts::default(), "outside the window");
    assert_eq!((told.sends, told.last_sent_at, told.detail.as_str()), (1, 1_010, "CRM\ngone"));
    assert_eq!(store.claim_alert_send(id, 1_011, 0).await.unwrap(), None, "told already");
    let refused = Some(vkhook::model::Reason::ChatDisabled);
    store.record_alert_results(id, Some(AlertOutcome::Refused), refused, Some(AlertOutcome::NoAddress)).await.unwrap();
    let recorded = store.alerts(GroupId(1001), 10).await.unwrap().into_iter().find(|a| a.id == id).unwrap();
    assert_eq!((recorded.vk_result, recorded.vk_reason), (Some(AlertOutcome::Refused), refused));
    // A reminder once the last telling is older than the period, with a `random_id` of its own.
    assert!(store.alerts_to_remind(1_010).await.unwrap().is_empty());
    assert_eq!(store.alerts_to_remind(2_000).await.unwrap(), [id]);
    let again = store.claim_alert_send(id, 2_000, 1_500).await.unwrap().unwrap();
    assert_eq!(again.sends, 2);
    assert_eq!(again.vk_reason, None, "a new telling, no refusal yet");
    assert!(told.random_id.is_some() && again.random_id.is_some() && told.random_id != again.random_id);
    // Resolved: closed; the same trouble later is a new alert.
    assert_eq!(store.resolve_alerts(GroupId(1001), AlertKind::EndpointDisabled, Some("ep_a"), 3_000).await.unwrap(), 1);
    assert_eq!(store.claim_alert_send(id, 9_000, 9_000).await.unwrap(), None);
    assert!(store.open_alert(GroupId(1001), AlertKind::EndpointDisabled, "ep_a", "", 4_000).await.unwrap().is_some());
    let all = store.alerts(GroupId(1001), 10).await.unwrap();
    assert_eq!(all.len(), 3);
    let first = all.iter().find(|a| a.id == id).unwrap();
    assert_eq!(
        (first.resolved_at, first.vk_result, first.email_result),
        (Some(3_000), Some(AlertOutcome::Refused), Some(AlertOutcome::NoAddress))
    );
    assert_eq!(
        store.resolve_alerts(GroupId(1001), AlertKind::EndpointDisabled, None, 5_000).await.unwrap(),
        2,
        "every subject"
    );
}

async fn the_overview_counts_each_community_in_one_query(store: &Store) {
    store.upsert_user(&anna()).await.unwrap();
    store
        .set_user_communities(UserId(1), &[(zerno(), Some(Role::Administrator)), (club(), Some(Role::Editor))])
        .await
        .unwrap();
    assert!(store.add_endpoint(&endpoint("ep_a", 1001, ""), 10).await.unwrap());
    assert!(store.add_endpoint(&endpoint("ep_b", 1001, ""), 10).await.unwrap());
    store.set_endpoint_disabled(GroupId(1001), "ep_b", Some(vkhook::model::DisabledReason::Gone)).await.unwrap();
    let old = NewInboxEvent { received_at: now_ms() - 2 * 86_400_000, ..event(1001, 1) };
    let done = NewInboxEvent {
        done_at_ingest: Some(vkhook::model::EventResult::Nothing { reason: vkhook::model::Reason::NoRule }),
        ..event(1001, 2)
    };
    store.insert_inbox_batch(&[old, done, event(1001, 3)]).await.unwrap();
    let rows = store.community_overview(UserId(1), now_ms() - 86_400_000, now_ms() - 7 * 86_400_000).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.community.id).collect::<Vec<_>>(), [GroupId(1002), GroupId(1001)], "by name");
    let z = &rows[1];
    assert_eq!(
        (z.community.role, z.community.status, z.paused),
        (Role::Administrator, CommunityStatus::NotConnected, false)
    );
    assert_eq!((z.events_24h, z.backlog), (2, 2), "two in the last day; the old one and the third are open");
    assert_eq!((z.endpoints, z.endpoints_in_trouble, z.forward_backlog), (2, 1, 3), "ep_a has all three");
    assert!(z.last_event_at.is_some());
    assert_eq!(z.events_window, 3, "all three in the week");
    assert!(z.window_first_at.is_some_and(|at| at < now_ms() - 86_400_000), "the old one starts the week");
    // Its activity, as the health card reads it.
    let a = store.activity(GroupId(1001), now_ms() - 7 * 86_400_000).await.unwrap();
    assert_eq!((a.events, a.first_at, a.last_at), (3, z.window_first_at, z.last_event_at));
    let c = &rows[0];
    assert_eq!((c.events_24h, c.backlog, c.last_event_at, c.endpoints), (0, 0, None, 0));
    assert_eq!(store.community_overview(UserId(2), 0, 0).await.unwrap(), vec![], "another user's communities");
    // «Проверить путь»: the last result, kept with the community.
    use vkhook::model::PathOutcome;
    assert_eq!(store.path_check(GroupId(1001)).await.unwrap(), None);
    store.record_path_check(GroupId(1001), 5_000, PathOutcome::Answered, "502: backend down").await.unwrap();
    store.record_path_check(GroupId(1001), 6_000, PathOutcome::Arrived, "12").await.unwrap();
    assert_eq!(store.path_check(GroupId(1001)).await.unwrap(), Some((6_000, PathOutcome::Arrived, "12".to_owned())));
    assert_eq!(store.path_check(GroupId(1002)).await.unwrap(), None);
}

fn message(group_id: i64, n: u32, from: i64) -> NewInboxEvent {
    NewInboxEvent {
        event_type: "message_new".into(),
        payload: format!(
            r#"{{"type":"message_new","group_id":{group_id},"object":{{"message":{{"id":{n},"from_id":{from},"peer_id":{from},"text":"?","out":0}}}}}}"#
        ),
        ..event(group_id, n)
    }
}

/// 100 000 reply and alert jobs to two people get 100 000 different `random_id`s from the community's counter, each
/// reserved with its claim; a job claimed again (a retry) keeps its own. (A hash of the event would collide by the
/// birthday bound: ~55 000 sends for even odds.)
async fn random_ids_never_repeat_and_a_retry_keeps_its_own(store: &Store) {
    use vkhook::model::AlertKind;
    store.upsert_community(&zerno()).await.unwrap();
    const MESSAGES: u32 = 98_000;
    const ALERTS: usize = 2_000;
    let events: Vec<NewInboxEvent> = (1..=MESSAGES).map(|n| message(1001, n, 2 + i64::from(n % 2))).collect();
    for chunk in events.chunks(5_000) {
        store.insert_inbox_batch(chunk).await.unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    let now = now_ms();
    // The first run is claimed, one of its jobs is retried and claimed again: the same value.
    let first = claim(store, "a", now, now + 60_000, 1, 1_000).await;
    let retried = first[0].clone();
    let mut done: Vec<(i64, Settle)> = first[1..].iter().map(|r| (r.id, Settle::Release)).collect();
    done.push((retried.id, Settle::Retry { next_attempt_at: now, error: "VK error 6".into() }));
    settle_events(store, "a", &done).await.unwrap();
    let again = claim(store, "a", now, now + 60_000, 1, 1).await;
    assert_eq!(again[0].id, retried.id);
    assert_eq!(again[0].reply_random_id, retried.reply_random_id, "a retried job keeps its random_id");
    finish(store, "a", retried.id, EventStatus::Done, None).await;
    assert!(seen.insert(vkhook::dedup::random_id_of(retried.reply_random_id.unwrap())));
    loop {
        let run = claim(store, "a", now, now + 60_000, 1, 1_000).await;
        if run.is_empty() {
            break;
        }
        for row in &run {
            let counter = row.reply_random_id.expect("reserved with the claim");
            assert!(seen.insert(vkhook::dedup::random_id_of(counter)), "a repeated random_id");
        }
        let done: Vec<(i64, Settle)> = run
            .iter()
            .map(|r| {
                (
                    r.id,
                    Settle::Finish {
                        status: EventStatus::Done,
                        result: vkhook::model::EventResult::Nothing { reason: vkhook::model::Reason::NoRule },
                        error: None,
                    },
                )
            })
            .collect();
        settle_events(store, "a", &done).await.unwrap();
    }
    // The alerts draw on the same counter.
    for i in 0..ALERTS {
        let id = store
            .open_alert(GroupId(1001), AlertKind::EndpointDisabled, &format!("ep_{i}"), "", 1)
            .await
            .unwrap()
            .unwrap();
        let told = store.claim_alert_send(id, 2, 0).await.unwrap().unwrap();
        assert!(seen.insert(vkhook::dedup::random_id_of(told.random_id.unwrap())), "an alert repeated a random_id");
    }
    assert_eq!(seen.len(), MESSAGES as usize + ALERTS);
    assert!(seen.iter().all(|r| *r > 0));
}

/// The person's own «Разрешить сообщения» / «Запретить» arrive as events and update what the card says, in the
/// statement that stores them; VK's later answer is taken, an older one never overwrites a newer event.
async fn message_permissions_follow_the_persons_events(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    assert_eq!(store.message_permission(GroupId(1001), UserId(1)).await.unwrap(), None);
    store.set_message_permission(GroupId(1001), UserId(1), false, 1_000).await.unwrap();
    assert_eq!(store.message_permission(GroupId(1001), UserId(1)).await.unwrap(), Some((false, 1_000)));
    let allow = |n: u32, at: i64| NewInboxEvent {
        event_type: "message_allow".into(),
        payload: r#"{"type":"message_allow","group_id":1001,"object":{"user_id":1,"key":""}}"#.into(),
        received_at: at,
        ..event(1001, n)
    };
    let deny = |n: u32, at: i64| NewInboxEvent {
        event_type: "message_deny".into(),
        payload: r#"{"type":"message_deny","group_id":1001,"object":{"user_id":1}}"#.into(),
        received_at: at,
        ..event(1001, n)
    };
    store.insert_inbox_batch(&[allow(1, 2_000)]).await.unwrap();
    assert_eq!(store.message_permission(GroupId(1001), UserId(1)).await.unwrap(), Some((true, 2_000)));
    // Both in one commit: the later one wins.
    store.insert_inbox_batch(&[allow(2, 3_000), deny(3, 3_001)]).await.unwrap();
    assert_eq!(store.message_permission(GroupId(1001), UserId(1)).await.unwrap(), Some((false, 3_001)));
    // VK's answer as of an older time does not overwrite it; a newer one does.
    store.set_message_permission(GroupId(1001), UserId(1), true, 3_000).await.unwrap();
    assert_eq!(store.message_permission(GroupId(1001), UserId(1)).await.unwrap(), Some((false, 3_001)));
    store.set_message_permission(GroupId(1001), UserId(1), true, 4_000).await.unwrap();
    assert_eq!(store.message_permission(GroupId(1001), UserId(1)).await.unwrap(), Some((true, 4_000)));
    // A malformed one is stored and changes nothing (ingest never fails on it).
    let odd = NewInboxEvent {
        event_type: "message_deny".into(),
        payload: r#"{"type":"message_deny","group_id":1001,"object":{"user_id":"x"}}"#.into(),
        received_at: 5_000,
        ..event(1001, 9)
    };
    assert_eq!(store.insert_inbox_batch(&[odd]).await.unwrap(), [Inserted::New]);
    assert_eq!(store.message_permission(GroupId(1001), UserId(1)).await.unwrap(), Some((true, 4_000)));
}

/// One community cannot crowd out another: at most `cap` endpoints each (two adds at once cannot pass it); a claim
/// takes the endpoint claimed longest ago first and no more than `share` of one community's at once (across
/// instances); an endpoint that failed backs off with every delivery, new ones too; a secret is shown once.
async fn endpoints_are_capped_claimed_fairly_and_back_off(store: &Store) {
    store.upsert_community(&zerno()).await.unwrap();
    store.upsert_community(&club()).await.unwrap();
    for i in 0..3 {
        assert!(store.add_endpoint(&endpoint(&format!("ep_{i}"), 1001, ""), 3).await.unwrap());
    }
    assert!(!store.add_endpoint(&endpoint("ep_3", 1001, ""), 3).await.unwrap(), "the cap");
    assert!(store.add_endpoint(&endpoint("ep_other", 1002, ""), 3).await.unwrap(), "another community's own cap");
    assert!(store.take_endpoint_reveal(GroupId(1001), "ep_0").await.unwrap(), "shown once after it was made");
    assert!(!store.take_endpoint_reveal(GroupId(1001), "ep_0").await.unwrap(), "then masked");
    assert!(store.rotate_endpoint_secret(GroupId(1001), "ep_0", "v1.k.new", "v1.k.old", 5_000).await.unwrap());
    assert!(store.take_endpoint_reveal(GroupId(1001), "ep_0").await.unwrap(), "once more after a rotation");
    store.insert_inbox_batch(&[event(1001, 1), event(1002, 2)]).await.unwrap();
    let now = now_ms();
    let claim = |owner: &'static str, at: i64, share: i64| async move {
        let batches = store.claim_deliveries(owner, at, at + 60_000, 10, 10, share).await.unwrap();
        batches.into_iter().map(|b| b.endpoint.id).collect::<Vec<_>>()
    };
    // 1001 may hold two at once: two of its three, and 1002's.
    let first = claim("a", now, 2).await;
    assert_eq!(first.iter().filter(|id| id.starts_with("ep_") && *id != "ep_other").count(), 2, "{first:?}");
    assert!(first.contains(&"ep_other".to_owned()), "{first:?}");
    // Another instance gets nothing of 1001 while two are held, even though one is free.
    assert_eq!(claim("b", now, 2).await, Vec::<String>::new());
    let give_back = |id: String, backoff: Option<i64>| async move {
        let r = DeliveryResults { backoff_until: backoff, ..results(&id, "a", Vec::new()) };
        settle_deliveries(store, r).await;
    };
    for id in first {
        // ep_0 failed (a timeout): it backs off a minute; the others are given back as they were.
        let backoff = (id == "ep_0").then_some(now + 60_000);
        give_back(id, backoff).await;
    }
    // Round-robin: the one never claimed comes first; the one backing off is not claimed, even for a new event.
    store.insert_inbox_batch(&[event(1001, 3)]).await.unwrap();
    let next = claim("a", now + 1, 1).await;
    assert_eq!(next, ["ep_2"], "the endpoint claimed longest ago (never) first");
    give_back("ep_2".into(), None).await;
    let later = claim("a", now + 2, 3).await;
    assert!(!later.contains(&"ep_0".to_owned()), "backing off: {later:?}");
    for id in later {
        give_back(id, None).await;
    }
    let after = claim("a", now + 60_001, 3).await;
    assert!(after.contains(&"ep_0".to_owned()), "after its back-off: {after:?}");
}
