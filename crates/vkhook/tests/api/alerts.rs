//! The admin who connected a community is told when something needs them — by a message from the community in VK
//! and by e-mail — once, not again within the reminder period.

use vk::GroupId;
use vkhook::model::{AlertKind, AlertOutcome};

use crate::forwarding::add_endpoint;
use crate::helpers::*;

/// Gives `email` on 1001's card and follows the confirmation link the mail brings (nothing else goes there first).
pub async fn confirm_alert_email(app: &TestApp, smtp: &SmtpSink, email: &str) {
    let before = smtp.mails().len();
    let r = app.post_with_csrf("/communities/1001", "/communities/1001/alerts", &[("email", email)]).await;
    assert_eq!(r.status(), 303);
    let mail = eventually(10, "the confirmation e-mail", || async { smtp.mails().into_iter().nth(before) }).await;
    assert_eq!(mail.to, [email]);
    let text = mail.text();
    let link = text.split_whitespace().find(|w| w.contains("/alerts/confirm?token=")).expect("a link").to_owned();
    let path = &link[link.find("/alerts/confirm").unwrap()..];
    let r = app.get(path).await;
    assert_eq!(r.status(), 303, "the link confirms");
    assert_eq!(app.store().alert_email(GroupId(1001)).await.unwrap().as_deref(), Some(email));
}

async fn with_mail() -> (TestApp, SmtpSink) {
    let smtp = SmtpSink::start().await;
    let alerts = vkhook::alerts::AlertSettings {
        smtp_url: Some(smtp.url.clone().into()),
        smtp_from: "vkhook <alerts@hook.example.com>".into(),
        ..Default::default()
    };
    let app = TestApp::spawn_with(Options { alerts, ..Options::default() }).await;
    (app, smtp)
}

/// Messages the community wrote to user 1 (its admin) at the sandbox.
fn to_anna(app: &TestApp) -> Vec<vk_sandbox::Message> {
    app.sandbox.messages(1001).into_iter().filter(|m| m.from_id == -1001 && m.peer_id == 1).collect()
}

#[tokio::test]
async fn a_disabled_endpoint_and_a_dead_key_are_told_once_by_vk_message_and_by_email() {
    let (app, smtp) = with_mail().await;
    app.expect_failures(); // the endpoint is made to fail until it is disabled
    app.connected_with_rules(1001, &[("ау", "Мы здесь!")]).await;
    // Анна allows the community's messages (writing first counts), and gives an address on the card.
    app.sandbox.message(1001, 1, "Привет!").unwrap();
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(page.contains("id=\"alerts\"") && page.contains("Разрешить сообщения"), "the card says how");
    let r = app.post_with_csrf("/communities/1001", "/communities/1001/alerts", &[("email", "not an address")]).await;
    assert_eq!(r.status(), 422);
    confirm_alert_email(&app, &smtp, "anna@example.com").await;
    let confirmations = smtp.mails().len();

    // An endpoint answers 410: disabled, and Анна is told once, both ways.
    let hook = Hook::start().await;
    let endpoint = add_endpoint(&app, 1001, &hook.url, &[]).await;
    hook.answer_next(&[410]);
    let page = format!("/communities/1001/endpoints/{endpoint}");
    app.post_with_csrf(&page, &format!("{page}/test"), &[]).await;
    let message = eventually(10, "the VK message", || async { to_anna(&app).into_iter().next() }).await;
    assert!(message.text.contains("отключена") && message.text.contains("410"), "{}", message.text);
    let mail = eventually(10, "the e-mail", || async { smtp.mails().into_iter().nth(confirmations) }).await;
    assert_eq!(mail.to, ["anna@example.com"]);
    assert!(mail.text().contains("отключена"), "{}", mail.text());
    // Seen again, and the reminder pass: nothing more within the reminder period (a day).
    app.state.alerts.raise(GroupId(1001), AlertKind::EndpointDisabled, &endpoint, "CRM\ngone");
    app.state.alerts.remind().await.unwrap();
    let alerts = eventually(10, "the alert recorded", || async {
        let a = app.store().alerts(GroupId(1001), 10).await.unwrap();
        a.first().is_some_and(|a| a.email_result.is_some()).then_some(a)
    })
    .await;
    assert_eq!(alerts.len(), 1);
    assert_eq!((alerts[0].vk_result, alerts[0].email_result), (Some(AlertOutcome::Sent), Some(AlertOutcome::Sent)));
    assert_eq!(alerts[0].sends, 1);

    // The key dies: the bot pauses, and Анна is told by e-mail. There is no key to send a VK message with (VK
    // refused it: error 5), which the card says.
    let revoked = app.sandbox_control("/_sandbox/tokens/revoke", serde_json::json!({"group_id": 1001})).await;
    assert!(revoked["revoked"].as_i64().unwrap() >= 1);
    app.sandbox.comment(1001, 2, "Ау?").unwrap();
    let mail = eventually(10, "the dead-key e-mail", || async {
        smtp.mails().into_iter().find(|m| m.text().contains("Бот сообщества"))
    })
    .await;
    assert!(mail.text().contains("Подключите сообщество заново"), "{}", mail.text());
    let card = eventually(10, "the card lists both", || async {
        let page = app.get("/communities/1001").await.text().await.unwrap();
        page.contains("нет ключа сообщества").then_some(page)
    })
    .await;
    assert!(card.contains("Бот остановлен") && card.contains("Адрес пересылки отключён"), "{card}");
    // Both told once: one VK message, two e-mails in all, even after another reminder pass. (The paused bot holds
    // the comment until the community is reconnected.)
    app.state.alerts.remind().await.unwrap();
    let alerts = app.store().alerts(GroupId(1001), 10).await.unwrap();
    assert_eq!(
        alerts.iter().map(|a| (a.kind, a.sends)).collect::<Vec<_>>(),
        [(AlertKind::BotPaused, 1), (AlertKind::EndpointDisabled, 1)]
    );
    assert_eq!(alerts[0].vk_result, Some(AlertOutcome::NoKey));
    assert_eq!(to_anna(&app).len(), 1);
    assert_eq!(smtp.mails().len(), confirmations + 2);
}

/// The card says before any alert whether a VK message can reach the admin (`messages.isMessagesFromGroupAllowed`),
/// and the admin's own «Разрешить сообщения» (`message_allow`) changes it as it arrives. When VK refuses an alert's
/// message (945: the community's messages switched off), the card says why in plain words, and the e-mail goes.
#[tokio::test]
async fn the_card_says_in_advance_whether_vk_messages_arrive_and_a_refusal_falls_back_to_email() {
    let (app, smtp) = with_mail().await;
    app.connected_with_rules(1001, &[]).await;
    let card = app.get("/communities/1001").await.text().await.unwrap();
    assert!(card.contains("Сообщения ВКонтакте не дойдут"), "before any alert: {card}");
    assert!(app.store().alerts(GroupId(1001), 10).await.unwrap().is_empty(), "nothing was sent to find out");
    // Анна presses «Разрешить сообщения» in VK: the event updates it as it is stored.
    app.sandbox_control("/_sandbox/groups/1001/permission", serde_json::json!({"user_id": 1, "allowed": true})).await;
    eventually(10, "the card to say they arrive", || async {
        let card = app.get("/communities/1001").await.text().await.unwrap();
        card.contains("Сообщения ВКонтакте дойдут").then_some(())
    })
    .await;
    confirm_alert_email(&app, &smtp, "anna@example.com").await;

    // The community's messages are switched off at VK: the alert's message is refused with 945.
    app.sandbox_control("/_sandbox/groups/1001/messaging", serde_json::json!({"enabled": false})).await;
    app.state.alerts.raise(GroupId(1001), AlertKind::VkFailed, "", "");
    let mail = eventually(10, "the e-mail", || async { smtp.mails().into_iter().nth(1) }).await;
    assert_eq!(mail.to, ["anna@example.com"]);
    let alert = eventually(10, "the alert recorded", || async {
        let a = app.store().alerts(GroupId(1001), 10).await.unwrap().into_iter().next()?;
        a.email_result.is_some().then_some(a)
    })
    .await;
    assert_eq!(alert.vk_result, Some(AlertOutcome::Refused));
    assert_eq!(alert.vk_reason, Some(vkhook::model::Reason::ChatDisabled));
    assert_eq!(alert.email_result, Some(AlertOutcome::Sent));
    assert!(to_anna(&app).is_empty());
    let card = app.get("/communities/1001").await.text().await.unwrap();
    assert!(
        card.contains("не доставлено: не отправлено: в сообществе выключены сообщения")
            || card.contains("выключены сообщения"),
        "{card}"
    );
}

/// An attacker toggling their endpoint (410 → disabled → «Включить» → 410 …) five times gets one VK message, and
/// nothing is mailed to an address nobody confirmed: the confirmation link is the only mail it gets. The message names
/// the endpoint by its host, never by the text its admin typed as its name. Once confirmed, the address gets alerts.
#[tokio::test]
async fn five_disable_enable_cycles_tell_once_and_mail_only_a_confirmed_address() {
    let (app, smtp) = with_mail().await;
    app.expect_failures(); // the endpoint answers 410 five times
    app.connected_with_rules(1001, &[]).await;
    app.sandbox.message(1001, 1, "Привет!").unwrap(); // Анна allows the community's messages
    let r =
        app.post_with_csrf("/communities/1001", "/communities/1001/alerts", &[("email", "victim@example.com")]).await;
    assert_eq!(r.status(), 303);
    eventually(10, "the confirmation mail", || async { smtp.mails().into_iter().next() }).await;
    let card = app.get("/communities/1001").await.text().await.unwrap();
    assert!(card.contains("victim@example.com — ждёт подтверждения"), "{card}");

    let hook = Hook::start().await;
    let form = [("url", hook.url.as_str()), ("name", "СРОЧНО: подтвердите аккаунт на https://evil.example")];
    let r = app.post_with_csrf("/communities/1001", "/communities/1001/endpoints", &form).await;
    assert_eq!(r.status(), 303);
    let endpoint = app.store().endpoints(GroupId(1001)).await.unwrap().remove(0).id;
    let page = format!("/communities/1001/endpoints/{endpoint}");
    for cycle in 0..5 {
        hook.answer_next(&[410]);
        app.post_with_csrf(&page, &format!("{page}/test"), &[]).await;
        eventually(10, "disabled by the 410", || async {
            let e = app.store().endpoint(GroupId(1001), &endpoint).await.unwrap()?;
            (!e.enabled).then_some(())
        })
        .await;
        // The alert's telling (or its refusal by the limit) is recorded before the next cycle.
        eventually(10, "the alert settled", || async {
            let alerts = app.store().alerts(GroupId(1001), 10).await.unwrap();
            (alerts.len() == cycle + 1 && alerts.iter().all(|a| a.vk_result.is_some())).then_some(())
        })
        .await;
        let r = app.post_with_csrf(&page, &format!("{page}/enable"), &[]).await;
        assert_eq!(r.status(), 303);
    }
    let to_anna = to_anna(&app);
    assert_eq!(to_anna.len(), 1, "one VK message in five cycles");
    assert!(to_anna[0].text.contains("127.0.0.1"), "named by its host: {}", to_anna[0].text);
    assert!(!to_anna[0].text.contains("СРОЧНО") && !to_anna[0].text.contains("evil"), "{}", to_anna[0].text);
    assert_eq!(smtp.mails().len(), 1, "only the confirmation link went to the unconfirmed address");
    let alerts = app.store().alerts(GroupId(1001), 10).await.unwrap();
    assert_eq!(alerts.iter().filter(|a| a.vk_result == Some(AlertOutcome::Limited)).count(), 4, "held by the limit");
    let card = app.get("/communities/1001").await.text().await.unwrap();
    assert!(card.contains("дневной лимит"), "the card says why nothing went");

    // Confirmed, the address gets the next alert of another kind.
    let link =
        smtp.mails()[0].text().split_whitespace().find(|w| w.contains("/alerts/confirm?token=")).unwrap().to_owned();
    assert_eq!(app.get(&link[link.find("/alerts/confirm").unwrap()..]).await.status(), 303);
    app.state.alerts.raise(GroupId(1001), AlertKind::VkFailed, "", "");
    let mail = eventually(10, "the alert by e-mail", || async { smtp.mails().into_iter().nth(1) }).await;
    assert_eq!(mail.to, ["victim@example.com"]);
}

/// While trouble lasts the admin is reminded once a period (with «Напоминание» first), and no sooner; an SMTP server
/// that does not answer is recorded as a failed e-mail on the card, and the VK message goes all the same.
#[tokio::test]
async fn lasting_trouble_is_reminded_once_a_period_and_a_dead_smtp_server_is_recorded() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let alerts = vkhook::alerts::AlertSettings {
        smtp_url: Some(format!("smtp://127.0.0.1:{closed}").into()),
        remind_every: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let app = TestApp::spawn_with(Options { alerts, ..Options::default() }).await;
    app.connected_with_rules(1001, &[]).await;
    app.sandbox.message(1001, 1, "Привет!").unwrap();
    // A confirmed address (its link could not be mailed through a dead server: confirmed as the link would).
    let token = "confirm-token";
    let hash = vkhook::accounts::hash_hex(token);
    let now = vkhook::store::now_ms();
    assert!(app.store().request_alert_email(GroupId(1001), "anna@example.com", &hash, now, 0).await.unwrap());
    assert_eq!(app.state.alerts.confirm_email(token).await.unwrap(), Some(1001));

    app.state.alerts.raise(GroupId(1001), AlertKind::VkFailed, "", "");
    let first = eventually(10, "the first telling", || async {
        let a = app.store().alerts(GroupId(1001), 10).await.unwrap().into_iter().next()?;
        a.email_result.is_some().then_some(a)
    })
    .await;
    assert_eq!((first.vk_result, first.email_result), (Some(AlertOutcome::Sent), Some(AlertOutcome::Failed)));
    app.state.alerts.remind().await.unwrap();
    assert_eq!(app.store().alerts(GroupId(1001), 10).await.unwrap()[0].sends, 1, "no reminder within the period");
    let reminded = eventually(10, "the reminder after the period", || async {
        app.state.alerts.remind().await.unwrap();
        let a = app.store().alerts(GroupId(1001), 10).await.unwrap().into_iter().next()?;
        (a.sends == 2).then_some(a)
    })
    .await;
    assert_eq!(reminded.vk_result, Some(AlertOutcome::Sent));
    let messages = to_anna(&app);
    assert_eq!(messages.len(), 2);
    assert!(messages[1].text.starts_with("Напоминание"), "{}", messages[1].text);
    let card = app.get("/communities/1001").await.text().await.unwrap();
    assert!(
        card.contains("(×2)") && card.contains("e-mail: <span class=\"alert-email\">не удалось отправить"),
        "{card}"
    );
}
