//! Helpers for the benchmarks: a community connected without VK (the load target), and vkhook against a sandbox.

use secrecy::SecretString;

use crate::app::AppState;
use crate::store::CommunityRow;
use crate::vault::Slot;

/// Records `group_id` as connected with `secret` (and no bot), as the connect flow would leave it.
pub async fn connect_for_load(app: &AppState, group_id: i64, secret: &SecretString) -> anyhow::Result<()> {
    let community = CommunityRow {
        id: group_id,
        name: format!("load {group_id}"),
        screen_name: format!("club{group_id}"),
        photo: None,
    };
    app.store.upsert_community(&community).await?;
    let row = group_id.to_string();
    let sealed = app.vault.seal(Slot { table: "community_settings", column: "secret", row: &row }, secret);
    app.store.commit_confirmation(group_id, "loadcode", Some(&sealed), None, "api").await?;
    app.store
        .mark_connected(group_id, Some(1), crate::connect::API_VERSION, "message_new,wall_reply_new", None)
        .await?;
    app.receiver.invalidate(group_id);
    Ok(())
}

/// A web-role vkhook against `sandbox` with SQLite in `dir`, running in the background (for benchmarks).
pub async fn sandbox_app(
    sandbox: &vk_sandbox::Sandbox,
    dir: &std::path::Path,
    timing: crate::config::Timing,
) -> anyhow::Result<AppState> {
    let mut settings = crate::Settings::for_sandbox(
        sandbox,
        "127.0.0.1:0".parse()?,
        format!("sqlite://{}/vkhook.db", dir.display()),
        crate::vault::Vault::generate_spec("bench"),
    );
    settings.role = crate::config::Role::Web;
    settings.timing = timing;
    let app = crate::App::build(settings).await?;
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    Ok(state)
}

/// Stores a community token for `group_id` as the community authorization would leave it (`manage`, `messages`,
/// `wall`), issued by the sandbox.
pub async fn store_sandbox_token(
    app: &AppState,
    sandbox: &vk_sandbox::Sandbox,
    group_id: i64,
    name: &str,
) -> anyhow::Result<()> {
    let community =
        CommunityRow { id: group_id, name: name.into(), screen_name: format!("club{group_id}"), photo: None };
    app.store.upsert_community(&community).await?;
    let token = SecretString::from(sandbox.issue_community_token(group_id, &["manage", "messages", "wall"]));
    let row = group_id.to_string();
    let sealed = app.vault.seal(Slot { table: "community_settings", column: "community_token", row: &row }, &token);
    app.store.save_community_token(group_id, &sealed, "manage,messages,wall").await?;
    Ok(())
}
