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

/// A realistic object of a typed event, as VK builds it (checked against VK's callback schema below), from
/// generated ids and text.
fn object_for(kind: &str, user: i64, id: i64, text: &str) -> serde_json::Value {
    use serde_json::json;
    let message = json!({"id": id, "date": 1, "peer_id": user, "from_id": user, "text": text, "out": 0,
                         "conversation_message_id": id, "version": 1});
    let comment = json!({"id": id, "from_id": user, "date": 1, "text": text, "post_id": id + 1,
                         "owner_id": -1, "post_owner_id": -1});
    match kind {
        "message_new" => json!({"message": message, "client_info": {"keyboard": true, "lang_id": 0}}),
        "message_reply" | "message_edit" => message,
        "message_allow" => json!({"user_id": user, "key": text}),
        "message_deny" => json!({"user_id": user}),
        "wall_reply_new" | "wall_reply_edit" | "wall_reply_restore" => comment,
        "wall_reply_delete" => {
            json!({"owner_id": -1, "id": id, "deleter_id": user, "user_id": user, "post_id": id + 1})
        }
        "wall_post_new" => json!({"id": id, "owner_id": -1, "from_id": -1, "date": 1, "text": text,
                                  "post_type": "post", "inner_type": "wall_wallpost"}),
        "like_add" | "like_remove" => json!({"liker_id": user, "object_type": "post", "object_owner_id": -1,
                                             "object_id": id, "post_id": 0, "thread_reply_id": 0}),
        "group_join" => json!({"user_id": user, "join_type": "join"}),
        "group_leave" => json!({"user_id": user, "self": 1}),
        other => panic!("no generator for {other}"),
    }
}

/// The typed event types, each with the variant `event()` must give.
const TYPED: [&str; 15] = [
    "message_new",
    "message_reply",
    "message_edit",
    "message_allow",
    "message_deny",
    "wall_post_new",
    "wall_reply_new",
    "wall_reply_edit",
    "wall_reply_restore",
    "wall_reply_delete",
    "like_add",
    "like_remove",
    "group_join",
    "group_leave",
    "message_new",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Real event types with objects VK's schema accepts parse into their typed event, and everything — `v` and
    /// fields this crate does not know included — is stored whole.
    #[test]
    fn real_event_types_parse_typed_and_store_whole(
        index in 0usize..TYPED.len(), user in 1i64..i64::from(i32::MAX), id in 1i64..1_000_000_000,
        text in any::<String>(), secret in "[A-Za-z0-9]{1,50}", v in "5\\.[0-9]{2,3}", future in any::<bool>(),
    ) {
        let kind = TYPED[index];
        let mut body = serde_json::json!({"type": kind, "group_id": 1, "event_id": format!("{id:040x}"), "v": v,
                                          "secret": secret, "object": object_for(kind, user, id, &text)});
        if future {
            body["future_field"] = serde_json::json!({"nested": [1, 2, {"x": null}]});
        }
        let violations = vk_sandbox::schema::schema().validate_callback(&body);
        prop_assert!(violations.is_ok(), "{kind}: {violations:?}");
        let envelope = parse(body.to_string().as_bytes()).unwrap();
        let event = envelope.event().unwrap();
        prop_assert!(!matches!(event, Event::Other(_)), "{kind} is typed");
        vk::callback::check_invariants(body.to_string().as_bytes());
    }

    /// The same objects with a field dropped or of the wrong type: never a panic, stored whole all the same.
    #[test]
    fn mutated_objects_of_real_types_never_panic(
        index in 0usize..TYPED.len(), user in 1i64..1000, drop in 0usize..8, wrong in any::<bool>(),
    ) {
        let kind = TYPED[index];
        let mut object = object_for(kind, user, 7, "текст");
        let target = if kind == "message_new" { object["message"].as_object_mut().unwrap() } else { object.as_object_mut().unwrap() };
        let key = target.keys().nth(drop % target.len()).unwrap().clone();
        if wrong {
            target.insert(key, serde_json::json!("not what VK sends"));
        } else {
            target.remove(&key);
        }
        let body = serde_json::json!({"type": kind, "group_id": 1, "event_id": "e", "v": "5.199", "object": object});
        vk::callback::check_invariants(body.to_string().as_bytes());
    }
}
