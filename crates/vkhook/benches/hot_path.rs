//! The receiver's hot path in pieces: parse + secret check + the stored form of a ~1 KB event, and the inbox
//! commit (one event, and a group of 64 sharing one commit) on SQLite with `synchronous=FULL`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use secrecy::SecretString;
use std::hint::black_box;
use vkhook::store::{NewInboxEvent, Store};

fn body(secret: &str, event_id: &str) -> Vec<u8> {
    let text =
        "Здравствуйте! Подскажите, пожалуйста, до скольки вы работаете в субботу и можно ли заказать торт заранее? \
                Хотим забрать его к обеду, нас будет человек двенадцать, нужен без орехов. \
                Заранее спасибо за ответ и хорошего вам дня! Если можно, подскажите ещё, есть ли у вас парковка рядом.";
    serde_json::to_vec(&serde_json::json!({
        "type": "wall_reply_new", "event_id": event_id, "v": "5.199",
        "object": {"id": 5012, "from_id": 2, "date": 1764300000, "text": text, "post_id": 17, "owner_id": -1001,
                   "parents_stack": [], "post_owner_id": -1001,
                   "thread": {"count": 0, "items": [], "can_post": true, "show_reply_button": true, "groups_can_post": true},
                   "likes": {"count": 0, "user_likes": 0, "can_like": 1, "can_publish": 1}},
        "group_id": 1001, "secret": secret
    }))
    .unwrap()
}

fn parse_and_verify(c: &mut Criterion) {
    let secret = SecretString::from("Zq8mR2vT5xW9yB3nC7dF1gH4jK6lP0sA");
    let body = body("Zq8mR2vT5xW9yB3nC7dF1gH4jK6lP0sA", "9183d109ea0d62fa892f784081d783b1ed1c0757");
    let mut group = c.benchmark_group("callback");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function(format!("parse_verify_{}B", body.len()), |b| {
        b.iter(|| {
            let e = vk::parse(black_box(&body)).unwrap();
            assert!(e.secret_matches(&secret));
            e
        })
    });
    group.bench_function("parse_verify_store_form", |b| {
        b.iter(|| {
            let e = vk::parse(black_box(&body)).unwrap();
            assert!(e.secret_matches(&secret));
            e.to_json_without_secret()
        })
    });
    group.finish();
}

fn inbox_write(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("vkhook-bench-{}", std::process::id()));
    let store = rt.block_on(async {
        let store = Store::connect(&format!("sqlite://{}/bench.db", dir.display())).await.unwrap();
        store.migrate().await.unwrap();
        store
    });
    let payload = String::from_utf8(body("", "x")).unwrap();
    let mut n: u64 = 0;
    let mut events = |count: usize| -> Vec<NewInboxEvent> {
        (0..count)
            .map(|_| {
                n += 1;
                NewInboxEvent {
                    group_id: 1001,
                    event_id: format!("{n:040x}"),
                    event_type: "wall_reply_new".into(),
                    payload: payload.clone(),
                    received_at: 0,
                    done_at_ingest: None,
                    source: vkhook::model::Source::Callback,
                    natural_key: None,
                }
            })
            .collect()
    };
    let mut group = c.benchmark_group("inbox_sqlite_full_sync");
    group.sample_size(30);
    for size in [1usize, 64] {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(format!("commit_{size}"), |b| {
            b.iter_batched(
                || events(size),
                |batch| rt.block_on(store.insert_inbox_batch(&batch)).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
    rt.block_on(store.close());
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, parse_and_verify, inbox_write);
criterion_main!(benches);
