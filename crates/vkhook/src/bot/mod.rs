//! The bot: rules per community, and the workers that answer comments and messages.

use crate::app::AppState;
use crate::store::StoreResult;

/// «Сразу включить бота» was ticked: the bot answers comments and messages with the default reply.
pub async fn enable_on_connect(app: &AppState, group_id: i64, reply: Option<&str>) -> StoreResult<()> {
    let reply = reply.map(str::trim).filter(|r| !r.is_empty());
    app.store.set_bot_settings(group_id, true, true, reply).await
}
