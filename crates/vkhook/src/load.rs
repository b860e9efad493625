//! Setting a community up as connected without VK, for the load benchmark and its example target.

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
