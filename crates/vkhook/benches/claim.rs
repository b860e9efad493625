//! The workers' claim (runs of up to 100 events of up to 32 communities, so at most 3 200 events) on SQLite, with
//! unfinished events spread over 100 communities: 10 (the claim takes all 10), 10 000 (it takes a full 3 200),
//! 1 000 000 (a full 3 200 again), and 10 000 behind a history of 1 000 000 finished ones (a full 3 200). The claim walks the partial index `inbox_open` community by community, so its
//! cost follows the number of communities with work, neither the backlog nor the history (issue 12: a 1.3 s claim
//! was logged under load; it was SQLite walking a community's finished events in the plain index).
//!
//!   cargo bench -p vkhook --bench claim

use criterion::{criterion_group, criterion_main, Criterion};
use vkhook::store::{now_ms, NewInboxEvent, Store};

const COMMUNITIES: i64 = 100;

async fn backlog(finished: usize, pending: usize) -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("vkhook-bench-claim-{}-{finished}-{pending}", std::process::id()));
    let store = Store::connect(&format!("sqlite://{}/claim.db", dir.display())).await.unwrap();
    store.migrate().await.unwrap();
    let payload = r#"{"type":"wall_reply_new","group_id":1,"object":{}}"#.to_owned();
    let mut n = 0usize;
    while n < finished + pending {
        let batch: Vec<NewInboxEvent> = (n..(n + 5000).min(finished + pending))
            .map(|i| NewInboxEvent {
                group_id: 1 + (i as i64 % COMMUNITIES),
                event_id: format!("{i:040x}"),
                event_type: "wall_reply_new".into(),
                payload: payload.clone(),
                received_at: 0,
                done_at_ingest: (i < finished)
                    .then_some(vkhook::model::EventResult::Nothing { reason: vkhook::model::Reason::NoAnswerNeeded }),
                source: vkhook::model::Source::Callback,
                natural_key: None,
            })
            .collect();
        n += batch.len();
        store.insert_inbox_batch(&batch).await.unwrap();
    }
    (store, dir)
}

fn claim(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut group = c.benchmark_group("claim_inbox_runs_32x100");
    for (finished, pending) in [(0usize, 10usize), (0, 10_000), (0, 1_000_000), (1_000_000, 10_000)] {
        let (store, dir) = rt.block_on(backlog(finished, pending));
        group.bench_function(format!("{pending}_pending_after_{finished}_finished"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    // The lease ends at once: the next iteration claims the same heads again (a stable backlog).
                    let now = now_ms();
                    store.claim_inbox_runs("bench", now, now, 32, 100).await.unwrap()
                })
            })
        });
        rt.block_on(store.close());
        let _ = std::fs::remove_dir_all(dir);
    }
    group.finish();
}

criterion_group!(benches, claim);
criterion_main!(benches);
