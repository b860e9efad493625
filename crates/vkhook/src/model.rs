//! The words vkhook decides with: roles, statuses, steps, outcomes and reasons, as enums.
//!
//! They become text only where they leave the program: in `store/` (columns) and in templates and pages (through
//! the message catalogue). Each enum's text form is the one stored in the database, so renaming a variant's text
//! is a migration.

/// Defines a fieldless enum with one stored text per variant: `as_str`, `parse`, `Display`, and `TryFrom<String>`
/// (what `sqlx`'s `#[sqlx(try_from = "String")]` reads columns with).
macro_rules! text_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        // In JSON (an event's result) too, as its stored text.
        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                $name::parse(&text).ok_or_else(|| {
                    ::serde::de::Error::custom(format!("{}: unknown value {text:?}", stringify!($name)))
                })
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::model::UnknownText;
            fn try_from(text: String) -> Result<Self, $crate::model::UnknownText> {
                $name::parse(&text).ok_or($crate::model::UnknownText { kind: stringify!($name), text })
            }
        }

        // Stored as TEXT on every backend: the store binds and reads these directly.
        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            String: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            String: sqlx::Decode<'r, DB>,
        {
            fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <String as sqlx::Decode<'r, DB>>::decode(value)?;
                Ok($name::try_from(text)?)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            &'q str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                let text: &'q str = self.as_str();
                <&'q str as sqlx::Encode<'q, DB>>::encode_by_ref(&text, buf)
            }
        }
    };
}

pub(crate) use text_enum;

/// A stored text that is not one of an enum's values (a database written by a newer vkhook, or edited by hand).
#[derive(Debug, thiserror::Error)]
#[error("{kind}: unknown value {text:?}")]
pub struct UnknownText {
    pub kind: &'static str,
    pub text: String,
}

text_enum! {
    /// A user's role in a community, as VK reports it (`admin_level` 3, 2, 1), or `Unknown`: the community was added
    /// by link and VK did not say (it tells roles only to a user token with the `groups` scope,
    /// https://dev.vk.com/en/reference/objects/group) — a community consent proves it.
    pub enum Role {
        Administrator = "administrator",
        Editor = "editor",
        Moderator = "moderator",
        Unknown = "unknown",
    }
}

impl Role {
    pub fn from_admin_level(level: vk::AdminLevel) -> Role {
        match level {
            vk::AdminLevel::Administrator => Role::Administrator,
            vk::AdminLevel::Editor => Role::Editor,
            vk::AdminLevel::Moderator => Role::Moderator,
        }
    }
}

text_enum! {
    /// Where a community's connection stands, as the list and the status badge show it.
    pub enum CommunityStatus {
        NotConnected = "not_connected",
        Connecting = "connecting",
        Connected = "connected",
        Failed = "failed",
        /// VK refused the community key (error 5): someone must authorize again.
        NeedsReauth = "needs_reauth",
    }
}

text_enum! {
    /// How the community's events reach vkhook: the Callback API set up by vkhook through VK's API or by the admin by
    /// hand in VK's settings, or Bots Long Poll, which vkhook switches on and polls (no public URL needed).
    pub enum SetupMode {
        Api = "api",
        Manual = "manual",
        LongPoll = "long_poll",
    }
}

/// What VK last said about our callback server: the status `groups.getCallbackServers` reported
/// (https://dev.vk.com/ru/method/groups.getCallbackServers), or that VK no longer lists it. Stored as that text
/// (`missing` for the latter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VkServerView {
    Listed(vk::ServerStatus),
    Missing,
}

impl VkServerView {
    const MISSING: &'static str = "missing";

    pub fn as_str(&self) -> &str {
        match self {
            VkServerView::Listed(status) => status.as_str(),
            VkServerView::Missing => Self::MISSING,
        }
    }

    pub fn parse(text: &str) -> VkServerView {
        match text {
            Self::MISSING => VkServerView::Missing,
            status => VkServerView::Listed(vk::ServerStatus::parse(status)),
        }
    }

    /// VK confirmed the server and sends it events.
    pub fn is_ok(&self) -> bool {
        matches!(self, VkServerView::Listed(vk::ServerStatus::Ok))
    }

    /// Whether this is worth an admin's attention: `ok` is not, VK's `wait` (it is still checking) is a warning,
    /// anything else (failed, unconfigured, missing, a status VK added later) is an error.
    pub fn trouble(&self) -> Trouble {
        match self {
            VkServerView::Listed(vk::ServerStatus::Ok) => Trouble::None,
            VkServerView::Listed(vk::ServerStatus::Wait) => Trouble::Warning,
            VkServerView::Listed(
                vk::ServerStatus::Failed | vk::ServerStatus::Unconfigured | vk::ServerStatus::Other(_),
            )
            | VkServerView::Missing => Trouble::Error,
        }
    }
}

/// How much attention a state needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    None,
    Warning,
    Error,
}

impl Trouble {
    /// The badge class the pages use for it.
    pub fn class(self) -> &'static str {
        match self {
            Trouble::None => "ok",
            Trouble::Warning => "warn",
            Trouble::Error => "err",
        }
    }
}

impl<DB: sqlx::Database> sqlx::Type<DB> for VkServerView
where
    String: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as sqlx::Type<DB>>::type_info()
    }
    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for VkServerView
where
    String: sqlx::Decode<'r, DB>,
{
    fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(VkServerView::parse(&<String as sqlx::Decode<'r, DB>>::decode(value)?))
    }
}

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for VkServerView
where
    String: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<'q, DB>>::encode_by_ref(&self.as_str().to_owned(), buf)
    }
}

impl SetupMode {
    /// Whether vkhook registered the callback server through VK's API, so that it may look at it and repair it.
    pub fn server_is_ours(self) -> bool {
        match self {
            SetupMode::Api => true,
            SetupMode::Manual | SetupMode::LongPoll => false,
        }
    }

    /// Whether the admin enters the confirmation code in VK's settings by hand, so that we show it to them.
    pub fn admin_enters_code(self) -> bool {
        match self {
            SetupMode::Api | SetupMode::LongPoll => false,
            SetupMode::Manual => true,
        }
    }
}

text_enum! {
    /// A setup run as a whole.
    pub enum SetupState {
        /// Waiting for the admin to come back from VK's community consent page.
        WaitingToken = "waiting_token",
        Running = "running",
        Done = "done",
        Failed = "failed",
    }
}

impl SetupState {
    pub fn is_finished(self) -> bool {
        matches!(self, SetupState::Done | SetupState::Failed)
    }
}

text_enum! {
    /// One step of a setup run.
    pub enum StepState {
        Pending = "pending",
        Running = "running",
        Done = "done",
        Failed = "failed",
    }
}

text_enum! {
    /// Why a setup run (or a change at VK) failed; each has a plain-language message in the catalogue.
    pub enum ErrorKind {
        /// The admin pressed «Отмена» on VK's consent page.
        Denied = "denied",
        /// The community key lacks `manage`.
        NoManage = "no_manage",
        /// VK's code brought keys for other communities only.
        OtherCommunity = "other_community",
        /// A consent for several communities came back without this one: the admin unticked it at VK.
        NotGranted = "not_granted",
        /// VK refused the community key (error 5).
        Reauth = "reauth",
        /// The user is not (or no longer) the community's administrator at VK (15, 203, 7).
        NotAdmin = "not_admin",
        /// VK did not answer or answered with a transient error after our retries.
        VkUnavailable = "vk_unavailable",
        /// Ten callback servers already (error 2000).
        ServersLimit = "servers_limit",
        /// VK never asked our endpoint for the code.
        ConfirmUnreached = "confirm_unreached",
        /// VK asked, and still set the server to `failed`.
        ConfirmRejected = "confirm_rejected",
        ConfirmTimeout = "confirm_timeout",
        ServerGone = "server_gone",
        /// We called a method with the wrong kind of token (27, 28): our bug.
        WrongTokenKind = "wrong_token_kind",
        VkError = "vk_error",
        Internal = "internal",
    }
}

impl ErrorKind {
    /// How VK's error is explained to the admin. Only 5 means the key is dead (see `vk::Error::needs_reauth`).
    pub fn from_vk(e: &vk::Error) -> ErrorKind {
        if e.needs_reauth() {
            ErrorKind::Reauth
        } else if e.is_wrong_token_kind() {
            ErrorKind::WrongTokenKind
        } else if e.is_callback_servers_limit() {
            ErrorKind::ServersLimit
        } else if e.is_access_denied() {
            ErrorKind::NotAdmin
        } else if e.is_retryable() {
            ErrorKind::VkUnavailable
        } else {
            ErrorKind::VkError
        }
    }
}

text_enum! {
    /// Why the bot of a community is paused.
    pub enum PauseReason {
        /// VK refused the community key: paused until the community is connected again.
        Reauth = "reauth",
    }
}

text_enum! {
    /// An inbox event's state.
    pub enum EventStatus {
        Pending = "pending",
        Processing = "processing",
        /// Replied.
        Done = "done",
        /// Nothing to do, and the reason says why.
        Ignored = "ignored",
        /// The reply cannot be sent (final).
        Failed = "failed",
        /// Given up after the last attempt.
        Dead = "dead",
    }
}

impl EventStatus {
    pub fn is_open(self) -> bool {
        matches!(self, EventStatus::Pending | EventStatus::Processing)
    }

    /// «Повторить» applies to these.
    pub fn can_replay(self) -> bool {
        matches!(self, EventStatus::Failed | EventStatus::Dead)
    }
}

text_enum! {
    /// A forwarded event's state at one endpoint.
    pub enum DeliveryStatus {
        /// Waiting for its next attempt.
        Pending = "pending",
        /// An instance is sending it now (under a lease).
        Sending = "sending",
        /// The endpoint answered 2xx.
        Delivered = "delivered",
        /// Given up: the schedule is used up, or the endpoint was disabled for it.
        Failed = "failed",
    }
}

text_enum! {
    /// Why an endpoint does not get deliveries.
    pub enum DisabledReason {
        /// «Отключить».
        Admin = "admin",
        /// It answered 410 Gone.
        Gone = "gone",
        /// It failed without a success for the configured time (5 days by default).
        Failing = "failing",
    }
}

text_enum! {
    /// What the admin who connected a community is told about.
    pub enum AlertKind {
        /// VK refused the community key: the bot is paused.
        BotPaused = "bot_paused",
        /// A forwarding endpoint was disabled (410, or failing too long).
        EndpointDisabled = "endpoint_disabled",
        /// VK says it cannot deliver to our server (`failed`).
        VkFailed = "vk_failed",
    }
}

text_enum! {
    /// How one way of telling the admin went.
    pub enum AlertOutcome {
        Sent = "sent",
        /// VK: the admin has not allowed messages from the community (901/902; rows from before the reason was kept).
        NotAllowed = "not_allowed",
        /// VK refused the message for a reason it states (the alert's `vk_reason`); e-mail still goes.
        Refused = "refused",
        /// VK: no community key to send with (it was refused: error 5, https://dev.vk.com/ru/reference/errors).
        NoKey = "no_key",
        Failed = "failed",
        /// E-mail: `VKHOOK_SMTP_URL` is not set.
        NotConfigured = "not_configured",
        /// E-mail: no address given on the card (or none confirmed yet).
        NoAddress = "no_address",
        /// Held back by the daily limits (the community's, or the recipient's).
        Limited = "limited",
    }
}

text_enum! {
    /// What «Проверить путь» found: the synthetic event sent through the public URL, as VK would send it.
    pub enum PathOutcome {
        /// vkhook answered `ok` (the detail: milliseconds).
        Arrived = "arrived",
        /// No connection (nothing listens, refused, DNS).
        Unreachable = "unreachable",
        /// The TLS handshake failed (certificate, protocol).
        Tls = "tls",
        /// A redirect (VK does not follow them).
        Redirect = "redirect",
        /// An answer other than `ok` (the detail: status and body).
        Answered = "answered",
        Timeout = "timeout",
    }
}

text_enum! {
    /// Why the bot did not reply to an event (stored in the event's result and shown in the delivery log).
    pub enum Reason {
        CommentsOff = "comments_off",
        MessagesOff = "messages_off",
        /// The community's own comment or message, or the bot's echo.
        Own = "own",
        FromCommunity = "from_community",
        Chat = "chat",
        NoRule = "no_rule",
        NoAnswerNeeded = "no_answer_needed",
        Unreadable = "unreadable",
        UnknownCommunity = "unknown_community",
        /// No community key and the bot is not paused: the community was disconnected.
        NoToken = "no_token",
        /// 900: the person is in the community's blacklist.
        Blacklisted = "blacklisted",
        /// 901: the person has not allowed messages from the community.
        MessagesNotAllowed = "messages_not_allowed",
        /// 902: the person's privacy settings do not let the community write.
        MessagesPrivacy = "messages_privacy",
        /// 943: the community may not write with this intent.
        IntentCantUse = "intent_cant_use",
        /// 944: the intent's limit is used up.
        IntentLimit = "intent_limit",
        /// 945: the community's messages are switched off.
        ChatDisabled = "chat_disabled",
        /// 950: the reply window is over.
        ReplyTimedOut = "reply_timed_out",
        /// 985: a notifications-only community.
        NotificationsOnly = "notifications_only",
        /// 987: a message request is needed first.
        NeedMessageRequest = "need_message_request",
        /// 988: the message request waits for the person.
        PendingMessageRequest = "pending_message_request",
        /// Rows written before 900/901/902 were told apart.
        MessagesForbidden = "messages_forbidden",
        /// 212/213: comments are closed.
        CommentsClosed = "comments_closed",
        /// 223: too many replies in the thread.
        TooManyReplies = "too_many_replies",
        GaveUp = "gave_up",
        VkError = "vk_error",
    }
}

impl Reason {
    /// The reason a reply VK refused for good is recorded with.
    pub fn from_final_vk_error(e: &vk::Error) -> Reason {
        use vk::code;
        if let Some(refusal) = Reason::message_refusal(e) {
            return refusal;
        }
        match e.code() {
            Some(code::WALL_ADD_REPLY_DENIED | code::WALL_REPLIES_DENIED) => Reason::CommentsClosed,
            Some(code::WALL_TOO_MANY_REPLIES) => Reason::TooManyReplies,
            _ => Reason::VkError,
        }
    }

    /// Why VK will not deliver a message from the community to this person now, when that is what `e` says: each
    /// is final for that message, VK refuses it again until someone acts (`messages.send`'s errors,
    /// https://dev.vk.com/ru/method/messages.send; `vendor/vk-api-schema/errors.json`). The bot's replies and the
    /// alerts read VK's refusals here, and only here.
    pub fn message_refusal(e: &vk::Error) -> Option<Reason> {
        use vk::code;
        Some(match e.code()? {
            code::MESSAGES_USER_BLOCKED => Reason::Blacklisted,
            code::MESSAGES_DENY_SEND => Reason::MessagesNotAllowed,
            code::MESSAGES_PRIVACY => Reason::MessagesPrivacy,
            code::MESSAGES_INTENT_CANT_USE => Reason::IntentCantUse,
            code::MESSAGES_INTENT_LIMIT => Reason::IntentLimit,
            code::MESSAGES_CHAT_DISABLED => Reason::ChatDisabled,
            code::MESSAGES_REPLY_TIMED_OUT => Reason::ReplyTimedOut,
            code::MESSAGES_NOTIFICATIONS_ONLY => Reason::NotificationsOnly,
            code::MESSAGES_NEED_REQUEST => Reason::NeedMessageRequest,
            code::MESSAGES_PENDING_REQUEST => Reason::PendingMessageRequest,
            _ => return None,
        })
    }
}

/// What the bot did with an event, or why not: written when an event is finished (by the bot, or at ingest), read by
/// the delivery log, and matched — never compared as text — when events finished at ingest are revived. Stored as
/// JSON (`{"action": "replied" | "failed" | "none", …}`); rows written before this type read back the same.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum EventResult {
    /// A reply went out.
    Replied {
        kind: ReplyKind,
        #[serde(default)]
        rule_id: Option<i64>,
        /// The rule's keywords, as they were when it answered.
        #[serde(default)]
        rule: Option<String>,
        reply: String,
        #[serde(default)]
        vk_id: Option<i64>,
    },
    /// VK refused the reply for good.
    Failed {
        kind: ReplyKind,
        #[serde(default)]
        rule_id: Option<i64>,
        #[serde(default)]
        rule: Option<String>,
        reply: String,
        reason: Reason,
        #[serde(default)]
        error_code: Option<i64>,
    },
    /// Nothing to do, and why.
    #[serde(rename = "none")]
    Nothing { reason: Reason },
}

impl EventResult {
    /// As stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an event result always serializes")
    }

    /// A stored result; `None` for one this version cannot read.
    pub fn from_json(text: &str) -> Option<EventResult> {
        serde_json::from_str(text).ok()
    }

    /// Why nothing was done, when nothing was.
    pub fn nothing_reason(&self) -> Option<Reason> {
        match self {
            EventResult::Nothing { reason } => Some(*reason),
            EventResult::Replied { .. } | EventResult::Failed { .. } => None,
        }
    }
}

text_enum! {
    /// Where an event came from: VK's push, vkhook's Long Poll, or vkhook asking VK's API after a gap.
    pub enum Source {
        Callback = "callback",
        LongPoll = "long_poll",
        Backfill = "backfill",
    }
}

text_enum! {
    /// What a pending OAuth `state` is for.
    pub enum OAuthPurpose {
        /// VK ID sign-in.
        SignIn = "vkid",
        /// A community authorization at oauth.vk.com.
        Community = "community",
    }
}

text_enum! {
    /// What a bulk run does to its communities.
    pub enum BulkKind {
        Connect = "connect",
        Disconnect = "disconnect",
    }
}

text_enum! {
    /// How «Отключить выбранные» ended for one community.
    pub enum BulkOutcome {
        /// Our server was deleted at VK (or was already gone).
        Removed = "removed",
        /// VK no longer accepts our key: the server may still be there.
        TokenDead = "token_dead",
        /// We held no server.
        NothingAtVk = "nothing_at_vk",
        /// VK answered with an error; nothing was forgotten.
        Failed = "failed",
        /// VK says the user no longer administers the community: nothing was done.
        NotAdmin = "not_admin",
    }
}

text_enum! {
    /// What a reply is: a comment under a post or a message.
    pub enum ReplyKind {
        Comment = "comment",
        Message = "message",
    }
}

text_enum! {
    /// Whether VK accepted a reply.
    pub enum ReplyStatus {
        Sent = "sent",
        Failed = "failed",
    }
}

/// An entry of a community's own log (the health card's «Журнал»).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    /// The reconcile pass found our server gone and started a setup.
    ServerMissing,
    /// The reconcile pass found our server `failed` and started a setup.
    ServerFailed,
    /// Events switched back on and/or the API version set back (what was restored).
    SettingsRestored { events: Vec<String>, version: Option<String> },
    /// The bot paused because VK refused the key.
    Paused(PauseReason),
    /// The bot resumed after reconnecting.
    Resumed,
}

impl LogEntry {
    /// (kind, message) as stored.
    pub fn to_row(&self) -> (&'static str, String) {
        match self {
            LogEntry::ServerMissing => ("repair", "server_missing".into()),
            LogEntry::ServerFailed => ("repair", "server_failed".into()),
            LogEntry::SettingsRestored { events, version } => {
                let mut parts = Vec::new();
                if !events.is_empty() {
                    parts.push(format!("events_restored:{}", events.join(",")));
                }
                if let Some(v) = version {
                    parts.push(format!("version_restored:{v}"));
                }
                ("repair", parts.join(";"))
            }
            LogEntry::Paused(reason) => ("paused", reason.as_str().into()),
            LogEntry::Resumed => ("resumed", "reconnected".into()),
        }
    }

    /// Reads a stored (kind, message); `None` for something this version does not know.
    pub fn from_row(kind: &str, message: &str) -> Option<LogEntry> {
        match (kind, message) {
            ("repair", "server_missing") => Some(LogEntry::ServerMissing),
            ("repair", "server_failed") => Some(LogEntry::ServerFailed),
            ("repair", m) => {
                let (mut events, mut version) = (Vec::new(), None);
                for part in m.split(';') {
                    match part.split_once(':') {
                        Some(("events_restored", list)) => {
                            events = list.split(',').filter(|e| !e.is_empty()).map(str::to_owned).collect()
                        }
                        Some(("version_restored", v)) => version = Some(v.to_owned()),
                        _ => return None,
                    }
                }
                Some(LogEntry::SettingsRestored { events, version })
            }
            ("paused", reason) => PauseReason::parse(reason).map(LogEntry::Paused),
            ("resumed", _) => Some(LogEntry::Resumed),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_reads_back_from_its_text() {
        for r in Role::ALL {
            assert_eq!(Role::try_from(r.as_str().to_owned()).unwrap(), *r);
        }
        for s in EventStatus::ALL {
            assert_eq!(EventStatus::parse(s.as_str()), Some(*s));
        }
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(k.as_str()), Some(*k));
        }
        assert!(CommunityStatus::try_from("connectedd".to_owned()).is_err());
    }

    #[test]
    fn event_results_read_back_and_rows_from_before_read_the_same() {
        for result in [
            EventResult::Nothing { reason: Reason::NoRule },
            EventResult::Replied {
                kind: ReplyKind::Comment,
                rule_id: Some(3),
                rule: Some("цена".into()),
                reply: "Дёшево".into(),
                vk_id: Some(9),
            },
            EventResult::Failed {
                kind: ReplyKind::Message,
                rule_id: None,
                rule: None,
                reply: "Привет".into(),
                reason: Reason::ChatDisabled,
                error_code: Some(945),
            },
        ] {
            assert_eq!(EventResult::from_json(&result.to_json()), Some(result));
        }
        // As the bot wrote them by hand before (`why`, `record_reply`): any key order.
        let old = [
            (r#"{"action":"none","reason":"no_rule"}"#, EventResult::Nothing { reason: Reason::NoRule }),
            (
                r#"{"action":"replied","kind":"comment","rule_id":null,"rule":null,"reply":"Спасибо","vk_id":5}"#,
                EventResult::Replied {
                    kind: ReplyKind::Comment,
                    rule_id: None,
                    rule: None,
                    reply: "Спасибо".into(),
                    vk_id: Some(5),
                },
            ),
            (
                r#"{"reply":"Привет","action":"failed","kind":"message","rule_id":1,"rule":"привет","reason":"messages_not_allowed","error_code":901}"#,
                EventResult::Failed {
                    kind: ReplyKind::Message,
                    rule_id: Some(1),
                    rule: Some("привет".into()),
                    reply: "Привет".into(),
                    reason: Reason::MessagesNotAllowed,
                    error_code: Some(901),
                },
            ),
        ];
        for (text, result) in old {
            assert_eq!(EventResult::from_json(text), Some(result), "{text}");
        }
        assert_eq!(EventResult::from_json(r#"{"action":"teleported"}"#), None);
        assert_eq!(EventResult::Nothing { reason: Reason::Own }.nothing_reason(), Some(Reason::Own));
    }

    #[test]
    fn log_entries_read_back() {
        for entry in [
            LogEntry::ServerMissing,
            LogEntry::ServerFailed,
            LogEntry::SettingsRestored { events: vec!["like_add".into(), "message_new".into()], version: None },
            LogEntry::SettingsRestored { events: vec![], version: Some("5.131".into()) },
            LogEntry::SettingsRestored { events: vec!["like_add".into()], version: Some("5.131".into()) },
            LogEntry::Paused(PauseReason::Reauth),
            LogEntry::Resumed,
        ] {
            let (kind, message) = entry.to_row();
            assert_eq!(LogEntry::from_row(kind, &message), Some(entry));
        }
    }

    #[test]
    fn only_error_5_is_a_dead_key() {
        let api = |code| vk::Error::Api(vk::ApiError { code, message: String::new(), request_params: vec![] });
        assert_eq!(ErrorKind::from_vk(&api(5)), ErrorKind::Reauth);
        assert_eq!(ErrorKind::from_vk(&api(27)), ErrorKind::WrongTokenKind);
        assert_eq!(ErrorKind::from_vk(&api(28)), ErrorKind::WrongTokenKind);
        assert_eq!(ErrorKind::from_vk(&api(2000)), ErrorKind::ServersLimit);
        assert_eq!(ErrorKind::from_vk(&api(15)), ErrorKind::NotAdmin);
        assert_eq!(ErrorKind::from_vk(&api(10)), ErrorKind::VkUnavailable);
        assert_eq!(Reason::from_final_vk_error(&api(900)), Reason::Blacklisted);
        assert_eq!(Reason::from_final_vk_error(&api(901)), Reason::MessagesNotAllowed);
        assert_eq!(Reason::from_final_vk_error(&api(902)), Reason::MessagesPrivacy);
        assert_eq!(Reason::from_final_vk_error(&api(213)), Reason::CommentsClosed);
        for (code, reason) in [
            (943, Reason::IntentCantUse),
            (944, Reason::IntentLimit),
            (945, Reason::ChatDisabled),
            (950, Reason::ReplyTimedOut),
            (985, Reason::NotificationsOnly),
            (987, Reason::NeedMessageRequest),
            (988, Reason::PendingMessageRequest),
        ] {
            assert_eq!(Reason::from_final_vk_error(&api(code)), reason, "{code}");
            assert_eq!(Reason::message_refusal(&api(code)), Some(reason), "{code}");
        }
        assert_eq!(Reason::message_refusal(&api(10)), None, "a transient error is not a refusal");
    }
}
