//! `vk::parse` on a realistic ~1 KB `wall_reply_new` body, and the typed view on top of it.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn body() -> Vec<u8> {
    let text =
        "Здравствуйте! Подскажите, пожалуйста, до скольки вы работаете в субботу и можно ли заказать торт заранее? \
                Хотим забрать его к обеду, нас будет человек двенадцать, нужен без орехов. \
                Заранее спасибо за ответ и хорошего вам дня! Если можно, подскажите ещё, есть ли у вас парковка рядом.";
    serde_json::to_vec(&serde_json::json!({
        "type": "wall_reply_new",
        "event_id": "9183d109ea0d62fa892f784081d783b1ed1c0757",
        "v": "5.199",
        "object": {
            "id": 5012, "from_id": 2, "date": 1764300000, "text": text, "post_id": 17, "owner_id": -1001,
            "parents_stack": [], "post_owner_id": -1001,
            "thread": {"count": 0, "items": [], "can_post": true, "show_reply_button": true, "groups_can_post": true},
            "likes": {"count": 0, "user_likes": 0, "can_like": 1, "can_publish": 1}
        },
        "group_id": 1001,
        "secret": "Zq8mR2vT5xW9yB3nC7dF1gH4jK6lP0sA"
    }))
    .unwrap()
}

fn bench_parse(c: &mut Criterion) {
    let body = body();
    let mut group = c.benchmark_group("callback");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function(format!("parse_{}B", body.len()), |b| b.iter(|| vk::parse(black_box(&body)).unwrap()));
    group.bench_function("parse_and_typed_view", |b| b.iter(|| vk::parse(black_box(&body)).unwrap().event().unwrap()));
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
