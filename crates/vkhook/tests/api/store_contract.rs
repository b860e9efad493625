//! Every store operation, on SQLite always and on PostgreSQL when TEST_DATABASE_URL is set; each run in a fresh
//! database.

use vkhook::store::*;

use crate::helpers::*;

async fn contract(store: &Store) {
    // Migrations apply once.
    assert_eq!(store.migrate().await.unwrap(), Vec::<i64>::new(), "already migrated by the caller");
    assert_eq!(store.applied_migrations().await.unwrap(), vec![1]);
    store.ping().await.unwrap();

    // Users and tokens.
    let anna = UserRow { id: 1, first_name: "Анна".into(), last_name: "Админова".into(), avatar: None };
    store.upsert_user(&anna).await.unwrap();
    store.upsert_user(&UserRow { avatar: Some("http://a/1.svg".into()), ..anna.clone() }).await.unwrap();
    assert_eq!(store.user(1).await.unwrap().unwrap().avatar.as_deref(), Some("http://a/1.svg"));
    assert_eq!(store.user(2).await.unwrap(), None);
    let tokens = UserTokensRow {
        user_id: 1,
        access_token: "v1.k.a".into(),
        refresh_token: "v1.k.r".into(),
        device_id: "dev".into(),
        scopes: "groups".into(),
        expires_at: 123,
    };
    store.save_user_tokens(&tokens).await.unwrap();
    store.save_user_tokens(&UserTokensRow { expires_at: 456, ..tokens.clone() }).await.unwrap();
    assert_eq!(store.user_tokens(1).await.unwrap().unwrap().expires_at, 456);
    store.delete_user_tokens(1).await.unwrap();
    assert_eq!(store.user_tokens(1).await.unwrap(), None);

    // Sessions.
    let s = SessionRow {
        id_hash: "h1".into(),
        user_id: Some(1),
        csrf_token: "c".into(),
        created_at: 1000,
        last_seen_at: 1000,
    };
    store.insert_session(&s).await.unwrap();
    store
        .insert_session(&SessionRow {
            id_hash: "h2".into(),
            user_id: None,
            created_at: 5000,
            last_seen_at: 5000,
            ..s.clone()
        })
        .await
        .unwrap();
    store.touch_session("h1", 2000).await.unwrap();
    assert_eq!(store.session("h1").await.unwrap().unwrap().last_seen_at, 2000);
    assert_eq!(store.delete_expired_sessions(2500, 0, 0).await.unwrap(), 1);
    assert_eq!(store.session("h1").await.unwrap(), None);
    assert!(store.session("h2").await.unwrap().is_some());
    store.delete_session("h2").await.unwrap();
    assert_eq!(store.session("h2").await.unwrap(), None);

    // OAuth states are single-use.
    let st = OAuthStateRow {
        state_hash: "s".into(),
        session_hash: "h".into(),
        kind: "vkid".into(),
        verifier: Some("v1.k.v".into()),
        group_id: None,
        created_at: 1,
    };
    store.insert_oauth_state(&st).await.unwrap();
    assert_eq!(store.take_oauth_state("s").await.unwrap(), Some(st));
    assert_eq!(store.take_oauth_state("s").await.unwrap(), None);

    // Communities and who manages them.
    let zerno = CommunityRow {
        id: 1001, name: "Кофейня «Зерно»".into(), screen_name: "zerno".into(), photo: None
    };
    let club =
        CommunityRow { id: 1002, name: "Книжный клуб".into(), screen_name: "club".into(), photo: None };
    store
        .set_user_communities(1, &[(zerno.clone(), "administrator".into()), (club.clone(), "editor".into())])
        .await
        .unwrap();
    let list = store.user_communities(1).await.unwrap();
    assert_eq!(
        list.iter().map(|c| (c.id, c.role.as_str(), c.callback_configured)).collect::<Vec<_>>(),
        vec![(1002, "editor", false), (1001, "administrator", false)],
        "ordered by name"
    );
    assert_eq!(list[0].status, "not_connected");
    store.set_user_communities(1, &[(zerno.clone(), "administrator".into())]).await.unwrap();
    assert_eq!(store.user_communities(1).await.unwrap().len(), 1);
    assert!(store.community_for_user(1, 1002).await.unwrap().is_none());
    assert!(store.community_for_user(1, 1001).await.unwrap().is_some());
    store.add_user_community(1, &club, "moderator").await.unwrap();
    assert_eq!(store.community_for_user(1, 1002).await.unwrap().unwrap().role, "moderator");
    store.remove_user_community(1, 1002).await.unwrap();
    assert!(store.community_for_user(1, 1002).await.unwrap().is_none());

    // Sealed values, for key rotation.
    store.save_user_tokens(&tokens).await.unwrap();
    let cells = store.sealed_values("user_tokens", "user_id", "access_token").await.unwrap();
    assert_eq!(cells.len(), 1);
    assert_eq!((cells[0].row.as_str(), cells[0].value.as_str()), ("1", "v1.k.a"));
    assert!(store
        .replace_sealed_value(("user_tokens", "user_id", "access_token"), "1", "v1.k.a", "v1.n.a")
        .await
        .unwrap());
    assert!(
        !store.replace_sealed_value(("user_tokens", "user_id", "access_token"), "1", "v1.k.a", "v1.x.a").await.unwrap(),
        "only if unchanged"
    );
    assert_eq!(store.user_tokens(1).await.unwrap().unwrap().access_token, "v1.n.a");
}

#[tokio::test]
async fn the_store_contract_holds_on_sqlite() {
    let dir = TempDir::new("vkhook-store");
    let store = Store::connect(&format!("sqlite://{}/nested/dir/vkhook.db", dir.0.display())).await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), vec![1]);
    contract(&store).await;
    store.close().await;
}

#[tokio::test]
async fn the_store_contract_holds_on_postgres() {
    let Some(db) = PgDatabase::create("the store contract").await else { return };
    let store = Store::connect(&db.url).await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), vec![1]);
    contract(&store).await;
    store.close().await;
}

#[tokio::test]
async fn concurrent_migrations_on_postgres_apply_once() {
    let Some(db) = PgDatabase::create("concurrent migrations").await else { return };
    let a = Store::connect(&db.url).await.unwrap();
    let b = Store::connect(&db.url).await.unwrap();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let mut applied = ra.unwrap();
    applied.extend(rb.unwrap());
    assert_eq!(applied, vec![1], "exactly one instance applied it");
    a.close().await;
    b.close().await;
}
