//! Every real request body in vendor/vk-callback-samples parses, and the typed views read the right values.

use proptest::prelude::*;
use vk::callback::{parse, Event};

fn sample(name: &str) -> Vec<u8> {
    let path = format!("{}/../../vendor/vk-callback-samples/{name}", std::env::var("CARGO_MANIFEST_DIR").unwrap());
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_vendored_sample_parses_with_a_typed_view() {
    let dir = format!("{}/../../vendor/vk-callback-samples", std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let body = std::fs::read(&path).unwrap();
            let envelope = parse(&body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            envelope.event().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            count += 1;
        }
    }
    assert_eq!(count, 9);
}

#[test]
fn confirmation_carries_group_secret_and_an_empty_event_id() {
    let e = parse(&sample("confirmation__vkapi.json")).unwrap();
    assert_eq!(e.event().unwrap(), Event::Confirmation);
    assert_eq!(e.group_id, Some(78441729));
    assert_eq!(e.event_id.as_deref(), Some(""));
    assert_eq!(e.secret_bytes(), Some(&b"law3xcx1"[..]));
}

#[test]
fn wall_reply_new_gives_the_comment_and_its_thread() {
    let e = parse(&sample("wall_reply_new__vkapi.json")).unwrap();
    assert_eq!(e.event_id.as_deref(), Some("9183d109ea0d62fa892f784081d783b1ed1c0757"));
    let Event::WallReplyNew(c) = e.event().unwrap() else { panic!("not a comment") };
    assert_eq!((c.id, c.from_id, c.post_id, c.post_owner_id), (50, 11412368, 47, -78441729));
    assert_eq!(c.reply_to_comment, Some(49));
    assert_eq!(c.parents_stack, vec![48]);
    assert!(c.text.starts_with("Lorem ipsum"));
}

#[test]
fn message_new_reads_both_shapes() {
    let e = parse(&sample("message_new__vkwave.json")).unwrap();
    assert_eq!(e.group_id, Some(191949777));
    let Event::MessageNew(m) = e.event().unwrap() else { panic!() };
    assert_eq!((m.message.id, m.message.from_id, m.message.text.as_str()), (305, 578716413, "bruh"));
    assert!(m.client_info.is_some());

    let e = parse(&sample("message_new__vkbottle.json")).unwrap();
    assert_eq!(e.group_id, None);
    let Event::MessageNew(m) = e.event().unwrap() else { panic!() };
    assert_eq!((m.message.id, m.message.text.as_str()), (100, "test"));

    let e = parse(&sample("message_new__vksdk-legacy-format.json")).unwrap();
    let Event::MessageNew(m) = e.event().unwrap() else { panic!() };
    assert!(m.client_info.is_none(), "the bare (pre-5.103) shape");
    assert_eq!((m.message.peer_id, m.message.from_id), (2000000001, 194250225));
}

#[test]
fn wall_posts_and_the_deprecation_warning() {
    let e = parse(&sample("wall_post_new__vkapi.json")).unwrap();
    let Event::WallPostNew(p) = e.event().unwrap() else { panic!() };
    assert_eq!((p.id, p.owner_id), (Some(25), Some(-78441729)));
    let e = parse(&sample("wall_post_new__vkbottle.json")).unwrap();
    let Event::WallPostNew(p) = e.event().unwrap() else { panic!() };
    assert_eq!((p.id, p.text.as_str()), (Some(28), "Post text"));
    let e = parse(&sample("wall_post_new__devvk-deprecated-version-warning.json")).unwrap();
    assert_eq!(e.v.as_deref(), Some("5.80"));
    let Event::WallPostNew(p) = e.event().unwrap() else { panic!() };
    assert!(p.warning.unwrap().contains("deprecated API version"));
}

#[test]
fn group_join_with_a_numeric_event_id() {
    let e = parse(&sample("group_join__devvk-callback-doc.json")).unwrap();
    assert_eq!(e.event_id.as_deref(), Some("12345"));
    assert_eq!(e.v.as_deref(), Some("5.131"));
    let Event::GroupJoin(j) = e.event().unwrap() else { panic!() };
    assert_eq!((j.user_id, j.join_type.as_deref()), (1, Some("approved")));
}

#[test]
fn garbage_is_a_parse_error() {
    for body in [&b"\xff\xfe"[..], b"null", b"42", b"\"ok\"", b"{\"type\":}", b"{\"object\":{}}"] {
        assert!(parse(body).is_err(), "{:?}", String::from_utf8_lossy(body));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsing_never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        vk::callback::check_invariants(&body);
    }

    /// The fuzz target's checks (fuzz/fuzz_targets/callback.rs), on JSON-shaped input, on stable.
    #[test]
    fn the_fuzz_invariants_hold_for_json_shaped_input(
        kind in "[a-z_]{1,20}", group in any::<i64>(), event_id in "[0-9a-f]{0,40}", secret in "[A-Za-z0-9]{0,50}",
        text in any::<String>(), extra in any::<bool>(),
    ) {
        let mut body = serde_json::json!({"type": kind, "group_id": group, "event_id": event_id,
            "object": {"text": text, "from_id": 2, "id": 1, "post_id": 1, "post_owner_id": -1}});
        if !secret.is_empty() {
            body["secret"] = serde_json::json!(secret);
        }
        if extra {
            body["future_field"] = serde_json::json!([1, {"a": null}]);
        }
        vk::callback::check_invariants(body.to_string().as_bytes());
    }

    #[test]
    fn parsing_never_panics_on_mutated_samples(index in 0usize..9, cut in 0usize..4000, byte: u8) {
        let names = [
            "confirmation__vkapi.json", "group_join__devvk-callback-doc.json", "message_new__vkbottle.json",
            "message_new__vksdk-legacy-format.json", "message_new__vkwave.json",
            "wall_post_new__devvk-deprecated-version-warning.json", "wall_post_new__vkapi.json",
            "wall_post_new__vkbottle.json", "wall_reply_new__vkapi.json",
        ];
        let mut body = sample(names[index]);
        let at = cut % (body.len() + 1);
        body.insert(at, byte);
        vk::callback::check_invariants(&body);
    }
}
