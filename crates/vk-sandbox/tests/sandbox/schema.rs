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
