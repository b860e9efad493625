//! Ids and the objects VK returns from the methods vkhook uses.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};

/// A community id (positive; VK uses `-id` as the owner id of a community's wall).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupId(pub i64);

impl GroupId {
    /// The community as an owner (walls, `from_id` of its own comments): `-id`.
    pub fn as_owner(self) -> i64 {
        -self.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Ids are stored as the integers they are (with the `sqlx` feature).
#[cfg(feature = "sqlx")]
macro_rules! id_as_database_value {
    ($($id:ident),+) => {$(
        impl<DB: sqlx::Database> sqlx::Type<DB> for $id
        where
            i64: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <i64 as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <i64 as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $id
        where
            i64: sqlx::Decode<'r, DB>,
        {
            fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                Ok($id(<i64 as sqlx::Decode<'r, DB>>::decode(value)?))
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $id
        where
            i64: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <i64 as sqlx::Encode<'q, DB>>::encode_by_ref(&self.0, buf)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $id {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <i64 as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }
    )+};
}

#[cfg(feature = "sqlx")]
id_as_database_value!(GroupId, UserId);

/// `admin_level`: 1 moderator, 2 editor, 3 administrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum AdminLevel {
    Moderator = 1,
    Editor = 2,
    Administrator = 3,
}

impl AdminLevel {
    pub fn from_level(level: i64) -> Option<Self> {
        match level {
            1 => Some(Self::Moderator),
            2 => Some(Self::Editor),
            3 => Some(Self::Administrator),
            _ => None,
        }
    }

    pub fn as_level(self) -> i64 {
        self as i64
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Moderator => "moderator",
            Self::Editor => "editor",
            Self::Administrator => "administrator",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "moderator" => Some(Self::Moderator),
            "editor" => Some(Self::Editor),
            "administrator" => Some(Self::Administrator),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for AdminLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let level = i64::deserialize(d)?;
        Self::from_level(level).ok_or_else(|| serde::de::Error::custom(format!("unknown admin_level {level}")))
    }
}

/// VK's 0/1 booleans.
pub(crate) fn bool_int<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Int(i64),
        Bool(bool),
    }
    Ok(match B::deserialize(d)? {
        B::Int(i) => i != 0,
        B::Bool(b) => b,
    })
}

/// VK's optional 0/1 booleans.
pub(crate) fn opt_bool_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(Some(bool_int(d)?))
}

/// A community as `groups.get extended=1` and `groups.getById` return it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Group {
    pub id: GroupId,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub screen_name: String,
    #[serde(default)]
    pub photo_100: Option<String>,
    /// Whether the viewer manages the community. VK sends it (and `admin_level`, `is_member`) only to a user
    /// token with the `groups` scope ("Required scope = groups", https://dev.vk.com/en/reference/objects/group):
    /// `None` means "VK did not say", never "not a manager".
    #[serde(default, deserialize_with = "opt_bool_int")]
    pub is_admin: Option<bool>,
    #[serde(default)]
    pub admin_level: Option<AdminLevel>,
    #[serde(default, deserialize_with = "opt_bool_int")]
    pub is_member: Option<bool>,
    #[serde(default)]
    pub is_closed: Option<i64>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// `groups.get` with `extended=1`.
#[derive(Debug, Clone, Deserialize)]
pub struct GroupList {
    pub count: i64,
    pub items: Vec<Group>,
}

/// `groups.getById` since 5.139.
#[derive(Debug, Clone, Deserialize)]
pub struct GroupsById {
    #[serde(default)]
    pub groups: Vec<Group>,
}

/// One permission of a community token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenPermission {
    pub setting: u64,
    pub name: String,
}

/// `groups.getTokenPermissions`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenPermissions {
    pub mask: u64,
    #[serde(default)]
    pub permissions: Vec<TokenPermission>,
}

impl TokenPermissions {
    pub fn has(&self, scope: CommunityScope) -> bool {
        self.mask & scope.bit() != 0
    }

    /// The scope names, in VK's words (`manage`, `messages`, …).
    pub fn names(&self) -> Vec<String> {
        CommunityScope::ALL.iter().filter(|s| self.has(**s)).map(|s| s.as_str().to_owned()).collect()
    }
}

/// Community token rights and their bits: the ones VK documents for community tokens (dev.vk.com "Права доступа
/// для токена сообщества"; VK Bridge `VKWebAppGetCommunityToken`). `wall` is a user right and not among them;
/// `wall.createComment` works with a community token without it (its `access_token_type` is `[user, group]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommunityScope {
    Stories,
    Photos,
    AppWidget,
    Messages,
    Docs,
    Manage,
}

impl CommunityScope {
    pub const ALL: [CommunityScope; 6] =
        [Self::Stories, Self::Photos, Self::AppWidget, Self::Messages, Self::Docs, Self::Manage];

    pub fn bit(self) -> u64 {
        match self {
            Self::Stories => 1,
            Self::Photos => 4,
            Self::AppWidget => 64,
            Self::Messages => 4096,
            Self::Docs => 131072,
            Self::Manage => 262144,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stories => "stories",
            Self::Photos => "photos",
            Self::AppWidget => "app_widget",
            Self::Messages => "messages",
            Self::Docs => "docs",
            Self::Manage => "manage",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// A callback server's status as `groups.getCallbackServers` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerStatus {
    Unconfigured,
    Failed,
    Wait,
    Ok,
    /// A status this crate does not know yet, kept as VK sent it.
    Other(String),
}

impl ServerStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "unconfigured" => Self::Unconfigured,
            "failed" => Self::Failed,
            "wait" => Self::Wait,
            "ok" => Self::Ok,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Unconfigured => "unconfigured",
            Self::Failed => "failed",
            Self::Wait => "wait",
            Self::Ok => "ok",
            Self::Other(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for ServerStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(d)?))
    }
}

/// One callback server of a community.
#[derive(Clone, Deserialize)]
pub struct CallbackServer {
    pub id: i64,
    pub title: String,
    #[serde(default)]
    pub creator_id: i64,
    pub url: String,
    #[serde(default = "empty_secret")]
    pub secret_key: SecretString,
    pub status: ServerStatus,
}

fn empty_secret() -> SecretString {
    SecretString::from(String::new())
}

impl fmt::Debug for CallbackServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackServer")
            .field("id", &self.id)
            .field("title", &self.title)
            .field("creator_id", &self.creator_id)
            .field("url", &self.url)
            .field("secret_key", &"[redacted]")
            .field("status", &self.status)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CallbackServers {
    pub count: i64,
    pub items: Vec<CallbackServer>,
}

/// `groups.getCallbackSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallbackSettings {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub events: BTreeMap<String, i64>,
}

impl CallbackSettings {
    /// The event types switched on.
    pub fn enabled(&self) -> Vec<&str> {
        self.events.iter().filter(|(_, on)| **on != 0).map(|(name, _)| name.as_str()).collect()
    }
}

/// A user as `users.get` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct User {
    pub id: UserId,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub photo_100: Option<String>,
}

/// `wall.createComment`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CreatedComment {
    pub comment_id: i64,
    #[serde(default)]
    pub parents_stack: Vec<i64>,
}

/// A manager's role as `groups.getMembers(filter=managers)` lists it (`groups_member_role` in the schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManagerRole {
    Moderator,
    Editor,
    Administrator,
    /// The community's creator: an administrator ("Creator and administrator both read `admin_level = 3`").
    Creator,
    Advertiser,
    /// A role this crate does not know yet.
    Other,
}

impl ManagerRole {
    pub fn parse(s: &str) -> Self {
        match s {
            "moderator" => Self::Moderator,
            "editor" => Self::Editor,
            "administrator" => Self::Administrator,
            "creator" => Self::Creator,
            "advertiser" => Self::Advertiser,
            _ => Self::Other,
        }
    }

    /// The `admin_level` this role reads as, if it is a managing role at all.
    pub fn admin_level(self) -> Option<AdminLevel> {
        match self {
            Self::Moderator => Some(AdminLevel::Moderator),
            Self::Editor => Some(AdminLevel::Editor),
            Self::Administrator | Self::Creator => Some(AdminLevel::Administrator),
            Self::Advertiser | Self::Other => None,
        }
    }
}

impl<'de> Deserialize<'de> for ManagerRole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(d)?))
    }
}

/// One manager of a community.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Manager {
    pub id: UserId,
    pub role: ManagerRole,
}

/// `groups.getMembers(filter=managers)`: one page.
#[derive(Debug, Clone, Deserialize)]
pub struct Managers {
    pub count: i64,
    #[serde(default)]
    pub items: Vec<Manager>,
}
