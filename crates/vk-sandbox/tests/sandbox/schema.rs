//! Every answer the sandbox gives for the implemented methods validates against the schema's response definitions.

use serde_json::Value;
use vk_sandbox::schema::schema;

use crate::helpers::*;

fn valid(method: &str, kind: &str, answer: &Value) {
    assert!(answer.get("error").is_none(), "{method}: {answer}");
    if let Err(errors) = schema().validate_response(method, kind, answer) {
        panic!("{method} ({kind}) does not match the schema: {errors:#?}\n{answer}");
    }
}

#[tokio::test]
async fn every_implemented_method_answers_as_the_schema_says() {
    let sandbox = sandbox().await;
    let receiver = receiver().await;
    let user = sandbox.issue_user_token(1, &["groups"]);
    let community = manage_token(&sandbox, 1001);

    valid(
        "groups.get",
        "extendedResponse",
        &call(&sandbox, "groups.get", &user, &[("filter", "admin"), ("extended", "1")]).await,
    );
    valid("groups.get", "response", &call(&sandbox, "groups.get", &user, &[("filter", "moder")]).await);
    valid(
        "groups.getById",
        "response",
        &call(&sandbox, "groups.getById", &user, &[("group_ids", "1001,city_news"), ("fields", "photo_100")]).await,
    );
    valid("groups.getById", "response", &call(&sandbox, "groups.getById", &community, &[]).await);
    valid(
        "groups.getTokenPermissions",
        "response",
        &call(&sandbox, "groups.getTokenPermissions", &community, &[]).await,
    );
    let code = call(&sandbox, "groups.getCallbackConfirmationCode", &community, &[("group_id", "1001")]).await;
    valid("groups.getCallbackConfirmationCode", "response", &code);
    *receiver.code.lock().unwrap() = code["response"]["code"].as_str().unwrap().to_owned();
    let added = call(
        &sandbox,
        "groups.addCallbackServer",
        &community,
        &[("group_id", "1001"), ("url", &receiver.url), ("title", "vkhook"), ("secret_key", "abc")],
    )
    .await;
    valid("groups.addCallbackServer", "response", &added);
    let sid = added["response"]["server_id"].to_string();
    valid(
        "groups.editCallbackServer",
        "response",
        &call(
            &sandbox,
            "groups.editCallbackServer",
            &community,
            &[("group_id", "1001"), ("server_id", &sid), ("url", &receiver.url), ("title", "vkhook")],
        )
        .await,
    );
    valid(
        "groups.setCallbackSettings",
        "response",
        &call(
            &sandbox,
            "groups.setCallbackSettings",
            &community,
            &[
                ("group_id", "1001"),
                ("server_id", &sid),
                ("api_version", "5.199"),
                ("message_new", "1"),
                ("wall_reply_new", "1"),
            ],
        )
        .await,
    );
    valid(
        "groups.getCallbackSettings",
        "response",
        &call(&sandbox, "groups.getCallbackSettings", &community, &[("group_id", "1001"), ("server_id", &sid)]).await,
    );
    valid(
        "groups.getCallbackServers",
        "response",
        &call(&sandbox, "groups.getCallbackServers", &community, &[("group_id", "1001")]).await,
    );
    sandbox.message(1001, 2, "Привет").unwrap();
    valid(
        "messages.send",
        "deprecatedResponse",
        &call(
            &sandbox,
            "messages.send",
            &community,
            &[("peer_id", "2"), ("random_id", "5"), ("message", "Здравствуйте!")],
        )
        .await,
    );
    let (comment_id, _) = sandbox.comment(1001, 2, "Вопрос").unwrap();
    let c = comment_id.to_string();
    valid(
        "wall.createComment",
        "response",
        &call(
            &sandbox,
            "wall.createComment",
            &community,
            &[
                ("owner_id", "-1001"),
                ("post_id", "1"),
                ("from_group", "1001"),
                ("reply_to_comment", &c),
                ("message", "Ответ"),
                ("guid", "x"),
            ],
        )
        .await,
    );
    valid(
        "users.get",
        "response",
        &call(&sandbox, "users.get", &community, &[("user_ids", "1,2"), ("fields", "photo_100")]).await,
    );
    valid(
        "groups.deleteCallbackServer",
        "response",
        &call(&sandbox, "groups.deleteCallbackServer", &community, &[("group_id", "1001"), ("server_id", &sid)]).await,
    );
}

#[test]
fn the_validator_rejects_what_the_schema_forbids() {
    let bad = serde_json::json!({"response": {"count": 1, "items": [{"id": 1, "title": "x", "url": "u", "secret_key": "", "status": "sleeping", "creator_id": 1}]}});
    let errors = schema().validate_response("groups.getCallbackServers", "response", &bad).unwrap_err();
    assert!(errors.iter().any(|e| e.contains("sleeping")), "{errors:?}");
    let missing = serde_json::json!({"response": {"items": []}});
    assert!(schema().validate_response("groups.getCallbackServers", "response", &missing).is_err());
}

#[test]
fn callback_bodies_are_checked_against_the_callback_schema() {
    let good = serde_json::json!({"type": "group_join", "event_id": "e", "v": "5.199", "group_id": 1, "secret": "s",
                                  "object": {"user_id": 2, "join_type": "join"}});
    assert!(schema().validate_callback(&good).is_ok());
    let mut no_user = good.clone();
    no_user["object"].as_object_mut().unwrap().remove("user_id");
    assert!(schema().validate_callback(&no_user).is_err(), "the object is checked by its type");
    let mut no_v = good.clone();
    no_v.as_object_mut().unwrap().remove("v");
    assert!(schema().validate_callback(&no_v).is_err(), "the envelope is checked");
    let mut bad_message = serde_json::json!({"type": "message_new", "event_id": "e", "v": "5.199", "group_id": 1,
        "object": {"message": {"id": 1, "date": 1, "from_id": 2, "peer_id": 2, "text": "hi", "out": 0,
                               "conversation_message_id": 1, "version": 1}}});
    assert!(schema().validate_callback(&bad_message).is_ok());
    bad_message["object"]["message"].as_object_mut().unwrap().remove("version");
    assert!(schema().validate_callback(&bad_message).is_err());
}

#[tokio::test]
async fn every_body_the_sandbox_sends_fits_the_callback_schema() {
    let sandbox = sandbox().await;
    let receiver = receiver().await;
    connected_server(&sandbox, 1001, &receiver, &["wall_reply_new", "message_new"]).await;
    sandbox.comment(1001, 2, "Привет").unwrap();
    sandbox.message(1001, 2, "Добрый день").unwrap();
    eventually(5, "both delivered", || async {
        (receiver.bodies("wall_reply_new").len() == 1 && receiver.bodies("message_new").len() == 1).then_some(())
    })
    .await;
    assert_eq!(sandbox.world().callback_violations, Vec::<String>::new());
}
