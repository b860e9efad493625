//! Helpers for the benchmarks and tests (`testing` feature): a community connected without VK (the load target),
//! and vkhook against a sandbox. Part of the wiring (`app`), as they build and reach into a whole app.

use secrecy::SecretString;
use vk::GroupId;

use super::AppState;
use crate::model::SetupMode;
use crate::store::CommunityRow;
use crate::vault::{Sealed, Slot};

/// Records `group_id` as connected with `secret` (and no bot), as the connect flow would leave it.
pub async fn connect_for_load(app: &AppState, group_id: GroupId, secret: &SecretString) -> anyhow::Result<()> {
    let community = CommunityRow {
        id: group_id.0,
        name: format!("load {group_id}"),
        screen_name: format!("club{group_id}"),
        photo: None,
    };
    app.store.upsert_community(&community).await?;
    let sealed = app.vault.seal(&Slot::new(Sealed::CallbackSecret, group_id.to_string()), secret);
    app.store.commit_confirmation(group_id, "loadcode", Some(&sealed), None, SetupMode::Api).await?;
    app.store
        .mark_connected(group_id, Some(1), crate::connect::API_VERSION, "message_new,wall_reply_new", None)
        .await?;
    app.credentials.invalidate(group_id);
    Ok(())
}

/// A web-role vkhook against `sandbox` with SQLite in `dir`, running in the background (for benchmarks).
#[cfg(feature = "demo")]
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

/// Stores a community key for `group_id` as the community authorization would leave it (`manage`, `messages`),
/// issued by the sandbox.
#[cfg(feature = "demo")]
pub async fn store_sandbox_token(
    app: &AppState,
    sandbox: &vk_sandbox::Sandbox,
    group_id: GroupId,
    name: &str,
) -> anyhow::Result<()> {
    let community =
        CommunityRow { id: group_id.0, name: name.into(), screen_name: format!("club{group_id}"), photo: None };
    app.store.upsert_community(&community).await?;
    let scopes = ["manage", "messages"];
    let token = SecretString::from(sandbox.issue_community_token(group_id.0, &scopes));
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    app.credentials.save_community_key(group_id, &token, &scopes).await?;
    Ok(())
}
