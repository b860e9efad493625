//! The one-line notices a page shows after a form did something (`?notice=…` on the redirect back), as one enum.

use axum::response::{IntoResponse, Redirect, Response};
use vk::GroupId;

use crate::i18n::Msg;
use crate::model::text_enum;

text_enum! {
    pub enum Notice {
        EventsSaved = "events_saved",
        EventsFailed = "events_failed",
        Disconnected = "disconnected",
        DisconnectedTokenDead = "disconnected_token_dead",
        BotSaved = "bot_saved",
        CheckedInOrder = "checked_in_order",
        CheckedRepaired = "checked_repaired",
        CheckedUnavailable = "checked_unavailable",
        Replayed = "replayed",
        ManualSaved = "saved",
        SigninAgain = "signin_again",
        SignedOut = "signed_out",
        EndpointAdded = "endpoint_added",
        EndpointTestSent = "test_sent",
        EndpointRotated = "rotated",
        EndpointReplayQueued = "replay_queued",
        EndpointDisabled = "endpoint_disabled",
        EndpointEnabled = "endpoint_enabled",
        EndpointDeleted = "endpoint_deleted",
        AlertsSaved = "alerts_saved",
        AlertsConfirmSent = "confirm_sent",
        AlertsConfirmWait = "confirm_wait",
        AlertsConfirmed = "alerts_confirmed",
        AlertsEmailCleared = "email_cleared",
    }
}

impl Notice {
    /// The notice from a query value; unknown values show nothing.
    pub fn from_query(value: Option<&str>) -> Option<Notice> {
        value.and_then(Notice::parse)
    }

    pub fn text(self, t: &'static Msg) -> &'static str {
        match self {
            Notice::EventsSaved => t.events_saved,
            Notice::EventsFailed => t.events_failed,
            Notice::Disconnected => t.disconnected,
            Notice::DisconnectedTokenDead => t.disconnected_token_dead,
            Notice::BotSaved => t.bot_saved,
            Notice::CheckedInOrder => t.checked_in_order,
            Notice::CheckedRepaired => t.checked_repaired,
            Notice::CheckedUnavailable => t.checked_unavailable,
            Notice::Replayed => t.replayed,
            Notice::ManualSaved => t.manual_saved,
            Notice::SigninAgain => t.signin_again,
            Notice::SignedOut => t.signed_out,
            Notice::EndpointAdded => t.endpoint_added,
            Notice::EndpointTestSent => t.endpoint_test_sent,
            Notice::EndpointRotated => t.endpoint_rotated,
            Notice::EndpointReplayQueued => t.endpoint_replay_queued,
            Notice::EndpointDisabled => t.endpoint_disabled_notice,
            Notice::EndpointEnabled => t.endpoint_enabled_notice,
            Notice::EndpointDeleted => t.endpoint_deleted,
            Notice::AlertsSaved => t.alerts_saved,
            Notice::AlertsConfirmSent => t.alerts_confirm_sent,
            Notice::AlertsConfirmWait => t.alerts_confirm_wait,
            Notice::AlertsConfirmed => t.alerts_confirmed,
            Notice::AlertsEmailCleared => t.alerts_email_cleared,
        }
    }

    /// Back to the community's page (at `anchor`, e.g. `#bot`) with this notice.
    pub fn redirect(self, group_id: GroupId, anchor: &str) -> Response {
        Redirect::to(&format!("/communities/{group_id}?notice={}{anchor}", self.as_str())).into_response()
    }
}
