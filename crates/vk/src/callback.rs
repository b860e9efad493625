//! The Callback API request: a pure parser over bytes and typed views of the events vkhook handles.
//!
//! [`parse`] checks only the envelope (`type`, `group_id`, `event_id`, `v`, `secret`, `object`); the object is kept
//! raw, as are unknown top-level fields, so nothing VK adds is lost. [`Envelope::event`] gives a typed view.

use std::borrow::Cow;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// What is wrong with a request body, in words fit for a 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// The envelope of one Callback API request.
pub struct Envelope {
    /// `type`, e.g. `message_new`; unknown types are kept as they are.
    pub event_type: String,
    pub group_id: Option<i64>,
    /// `event_id` as text (VK sends 40 hex characters; a number is kept as its digits; `""` on confirmation).
    pub event_id: Option<String>,
    /// `v`, the API version the event's object follows.
    pub v: Option<String>,
    pub secret: Option<SecretString>,
    pub object: Option<Box<RawValue>>,
    /// Top-level fields this crate does not know, kept raw.
    pub extra: Vec<(String, Box<RawValue>)>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("event_type", &self.event_type)
            .field("group_id", &self.group_id)
            .field("event_id", &self.event_id)
            .field("v", &self.v)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("object", &self.object.as_ref().map(|o| o.get()))
            .field("extra", &self.extra)
            .finish()
    }
}

/// How deep arrays and objects may nest inside the body (the envelope is level 1). VK's deepest real objects (a
/// message forwarding a wall post with attachments) stay near 10; serde_json's own limit is 128. Each level costs
/// work in every later reader of the stored event, so a hostile body is refused here.
pub const MAX_NESTING: usize = 32;

/// Parses a request body. Never panics; malformed input is a [`ParseError`] that says what is wrong.
pub fn parse(body: &[u8]) -> Result<Envelope, ParseError> {
    if nesting(body) > MAX_NESTING {
        return Err(ParseError(format!("the body nests arrays and objects deeper than {MAX_NESTING} levels")));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let envelope = de.deserialize_map(EnvelopeVisitor).map_err(|e| ParseError(describe_json_error(&e)))?;
    de.end().map_err(|e| ParseError(format!("trailing characters after the JSON object ({e})")))?;
    let event_type = envelope.event_type.ok_or_else(|| ParseError("missing field \"type\"".into()))?;
    Ok(Envelope { event_type, ..envelope.rest })
}

/// The deepest nesting of `[`/`{` in `body`, not counting brackets inside strings. One pass, no allocation; on
/// malformed JSON it may be off, and the parser then reports the real error.
fn nesting(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn describe_json_error(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Eof => format!("the body ends too early: {e}"),
        serde_json::error::Category::Syntax => format!("the body is not valid JSON: {e}"),
        serde_json::error::Category::Io => format!("could not read the body: {e}"),
        serde_json::error::Category::Data => e.to_string(),
    }
}

struct Partial {
    event_type: Option<String>,
    rest: Envelope,
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Partial;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with \"type\" and \"group_id\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Partial, A::Error> {
        let mut event_type: Option<String> = None;
        let mut rest = Envelope {
            event_type: String::new(),
            group_id: None,
            event_id: None,
            v: None,
            secret: None,
            object: None,
            extra: Vec::new(),
        };
        let mut seen = [false; 6];
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let slot = match key.as_ref() {
                "type" => 0,
                "group_id" => 1,
                "event_id" => 2,
                "v" => 3,
                "secret" => 4,
                "object" => 5,
                _ => {
                    let value: Box<RawValue> = map.next_value()?;
                    rest.extra.push((key.into_owned(), value));
                    continue;
                }
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(de::Error::custom(format_args!("field \"{key}\" appears twice")));
            }
            match slot {
                0 => {
                    let t: Text = map.next_value().map_err(|_| field_error("type", "a string"))?;
                    if t.0.is_empty() {
                        return Err(de::Error::custom("field \"type\" is empty"));
                    }
                    event_type = Some(t.0)
                }
                1 => {
                    let id: Id = map.next_value().map_err(|_| field_error("group_id", "a positive number"))?;
                    if id.0 <= 0 {
                        return Err(field_error("group_id", "a positive number"));
                    }
                    rest.group_id = Some(id.0);
                }
                2 => {
                    let id: EventIdText =
                        map.next_value().map_err(|_| field_error("event_id", "a string or a number"))?;
                    rest.event_id = Some(id.0);
                }
                3 => {
                    let v: TextOrNumber = map.next_value().map_err(|_| field_error("v", "a string"))?;
                    rest.v = Some(v.0);
                }
                4 => {
                    let s: Text = map.next_value().map_err(|_| field_error("secret", "a string"))?;
                    rest.secret = Some(SecretString::from(s.0));
                }
                _ => {
                    let raw: Box<RawValue> = map.next_value()?;
                    rest.object = Some(raw);
                }
            }
        }
        Ok(Partial { event_type, rest })
    }
}

fn field_error<E: de::Error>(field: &str, expected: &str) -> E {
    E::custom(format_args!("field \"{field}\" must be {expected}"))
}

/// A JSON string.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Text(Cow::<'de, str>::deserialize(d)?.into_owned()))
    }
}

/// A string, or a number kept as its text (VK has sent both for `v` and `event_id`).
struct TextOrNumber(String);

impl<'de> Deserialize<'de> for TextOrNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TextOrNumber;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<TextOrNumber, E> {
                Ok(TextOrNumber(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<TextOrNumber, E> {
                Ok(TextOrNumber(s))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<TextOrNumber, E> {
                Ok(TextOrNumber(n.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<TextOrNumber, E> {
                Ok(TextOrNumber(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<TextOrNumber, E> {
                Ok(TextOrNumber(n.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `event_id`: a string or an integer (as text); nothing else.
struct EventIdText(String);

impl<'de> Deserialize<'de> for EventIdText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = EventIdText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<EventIdText, E> {
                Ok(EventIdText(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<EventIdText, E> {
                Ok(EventIdText(s))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<EventIdText, E> {
                Ok(EventIdText(n.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<EventIdText, E> {
                Ok(EventIdText(n.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// An integer id, or a string of digits.
struct Id(i64);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Id, E> {
                i64::try_from(n).map(Id).map_err(|_| E::custom("too large"))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Id, E> {
                Ok(Id(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Id, E> {
                s.parse().map(Id).map_err(|_| E::custom("not an integer"))
            }
        }
        d.deserialize_any(V)
    }
}

impl Envelope {
    pub fn is_confirmation(&self) -> bool {
        self.event_type == "confirmation"
    }

    /// The secret, for a constant-time comparison.
    pub fn secret_bytes(&self) -> Option<&[u8]> {
        self.secret.as_ref().map(|s| s.expose_secret().as_bytes())
    }

    /// Whether the request carries `expected` as its secret, compared in constant time.
    pub fn secret_matches(&self, expected: &SecretString) -> bool {
        self.secret_bytes().is_some_and(|supplied| secret_eq(expected, supplied))
    }

    /// The request as JSON without `secret`: every other field, known or not, as VK sent it.
    pub fn to_json_without_secret(&self) -> String {
        let mut out = String::with_capacity(self.object.as_ref().map_or(0, |o| o.get().len()) + 160);
        out.push_str("{\"type\":");
        push_json_string(&mut out, &self.event_type);
        if let Some(id) = &self.event_id {
            out.push_str(",\"event_id\":");
            push_json_string(&mut out, id);
        }
        if let Some(v) = &self.v {
            out.push_str(",\"v\":");
            push_json_string(&mut out, v);
        }
        if let Some(object) = &self.object {
            out.push_str(",\"object\":");
            out.push_str(object.get());
        }
        if let Some(group_id) = self.group_id {
            out.push_str(",\"group_id\":");
            out.push_str(&group_id.to_string());
        }
        for (key, value) in &self.extra {
            out.push(',');
            push_json_string(&mut out, key);
            out.push(':');
            out.push_str(value.get());
        }
        out.push('}');
        out
    }

    /// A typed view of the event. Unknown types are [`Event::Other`]; a known type whose object does not have the
    /// fields that type needs is a [`ParseError`].
    pub fn event(&self) -> Result<Event, ParseError> {
        event_from(&self.event_type, self.object.as_deref())
    }
}

/// Whether `supplied` is `expected`, in constant time (for equal lengths; the length itself is not secret).
pub fn secret_eq(expected: &SecretString, supplied: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let expected = expected.expose_secret().as_bytes();
    expected.len() == supplied.len() && bool::from(expected.ct_eq(supplied))
}

/// What must hold for any input, checked by the fuzz target (`fuzz/`) and by property tests on stable: parsing
/// never panics; what parses has a type; its stored form is valid JSON without the secret that parses back to the
/// same envelope; the secret check accepts exactly the secret sent.
#[doc(hidden)]
pub fn check_invariants(body: &[u8]) {
    let Ok(envelope) = parse(body) else { return };
    assert!(!envelope.event_type.is_empty());
    let _ = envelope.event();
    let stored = envelope.to_json_without_secret();
    serde_json::from_str::<Box<RawValue>>(&stored).expect("the stored form is JSON");
    let again = parse(stored.as_bytes()).expect("the stored form parses");
    assert!(again.secret.is_none() && !again.extra.iter().any(|(k, _)| k == "secret"), "no secret is stored");
    assert_eq!(again.event_type, envelope.event_type);
    assert_eq!(again.group_id, envelope.group_id);
    assert_eq!(again.event_id, envelope.event_id);
    assert_eq!(again.object.as_ref().map(|o| o.get()), envelope.object.as_ref().map(|o| o.get()));
    // `v` and every unknown field are stored whole (only `secret` is dropped).
    assert_eq!(again.v, envelope.v, "v is stored whole");
    let extra = |e: &Envelope| -> Vec<(String, String)> {
        e.extra.iter().filter(|(k, _)| k != "secret").map(|(k, v)| (k.clone(), v.get().to_owned())).collect()
    };
    assert_eq!(extra(&again), extra(&envelope), "unknown fields are stored whole");
    if let Some(secret) = &envelope.secret {
        let secret = secret.expose_secret();
        assert!(envelope.secret_matches(&SecretString::from(secret.to_owned())));
        assert!(!envelope.secret_matches(&SecretString::from(format!("{secret}x"))), "a longer secret");
        // A wrong secret of the same length: every single character changed in turn.
        for (i, c) in secret.char_indices() {
            let other = if c == 'a' { 'b' } else { 'a' };
            let mut wrong = String::with_capacity(secret.len());
            wrong.push_str(&secret[..i]);
            wrong.push(other);
            wrong.push_str(&secret[i + c.len_utf8()..]);
            if wrong.len() == secret.len() {
                assert!(!envelope.secret_matches(&SecretString::from(wrong)), "a same-length secret");
            }
        }
    } else {
        assert!(!envelope.secret_matches(&SecretString::from("s")));
    }
}

fn push_json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serializes"));
}

/// The typed events vkhook looks into. Everything else is [`Event::Other`] (and still stored whole).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Confirmation,
    MessageNew(MessageNew),
    MessageReply(Message),
    MessageEdit(Message),
    MessageAllow(MessageAllow),
    MessageDeny(MessageDeny),
    WallPostNew(WallPost),
    WallReplyNew(WallComment),
    WallReplyEdit(WallComment),
    WallReplyRestore(WallComment),
    WallReplyDelete(WallReplyDelete),
    LikeAdd(Like),
    LikeRemove(Like),
    GroupJoin(GroupJoin),
    GroupLeave(GroupLeave),
    Other(String),
}

/// The event types this crate reads into typed [`Event`]s (other types parse as [`Event::Other`] and are kept whole).
/// Names as in VK's callback schema (`vendor/vk-api-schema/callback/objects.json`, `callback_type`) and
/// https://dev.vk.com/ru/api/community-events/json-schema .
pub const EVENT_TYPES: [&str; 18] = [
    "confirmation",
    "message_new",
    "message_reply",
    "message_edit",
    "message_allow",
    "message_deny",
    "message_typing_state",
    "wall_post_new",
    "wall_repost",
    "wall_reply_new",
    "wall_reply_edit",
    "wall_reply_restore",
    "wall_reply_delete",
    "like_add",
    "like_remove",
    "group_join",
    "group_leave",
    "photo_new",
];

/// The event types a community-management service subscribes to by default with `groups.setCallbackSettings`
/// (each is a parameter of that method in `vendor/vk-api-schema/groups/methods.json`): messages, comments, posts,
/// likes, membership.
pub const DEFAULT_SUBSCRIPTION: [&str; 11] = [
    "message_new",
    "wall_reply_new",
    "wall_post_new",
    "like_add",
    "like_remove",
    "message_allow",
    "message_deny",
    "group_join",
    "group_leave",
    "wall_reply_edit",
    "wall_reply_delete",
];

fn event_from(event_type: &str, object: Option<&RawValue>) -> Result<Event, ParseError> {
    fn obj<T: for<'a> Deserialize<'a>>(event_type: &str, object: Option<&RawValue>) -> Result<T, ParseError> {
        let raw = object.ok_or_else(|| ParseError(format!("{event_type}: missing field \"object\"")))?;
        serde_json::from_str(raw.get()).map_err(|e| ParseError(format!("{event_type}: {e}")))
    }
    Ok(match event_type {
        "confirmation" => Event::Confirmation,
        "message_new" => Event::MessageNew(obj::<MessageNewWire>(event_type, object)?.into()),
        "message_reply" => Event::MessageReply(obj(event_type, object)?),
        "message_edit" => Event::MessageEdit(obj(event_type, object)?),
        "message_allow" => Event::MessageAllow(obj(event_type, object)?),
        "message_deny" => Event::MessageDeny(obj(event_type, object)?),
        "wall_post_new" => Event::WallPostNew(obj(event_type, object)?),
        "wall_reply_new" => Event::WallReplyNew(obj(event_type, object)?),
        "wall_reply_edit" => Event::WallReplyEdit(obj(event_type, object)?),
        "wall_reply_restore" => Event::WallReplyRestore(obj(event_type, object)?),
        "wall_reply_delete" => Event::WallReplyDelete(obj(event_type, object)?),
        "like_add" => Event::LikeAdd(obj(event_type, object)?),
        "like_remove" => Event::LikeRemove(obj(event_type, object)?),
        "group_join" => Event::GroupJoin(obj(event_type, object)?),
        "group_leave" => Event::GroupLeave(obj(event_type, object)?),
        other => Event::Other(other.to_owned()),
    })
}

/// A private message (the fields vkhook uses; the rest stays in the stored body).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub id: i64,
    #[serde(default)]
    pub date: i64,
    pub peer_id: i64,
    pub from_id: i64,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub conversation_message_id: Option<i64>,
    #[serde(default, deserialize_with = "crate::types::bool_int")]
    pub out: bool,
    #[serde(default)]
    pub is_cropped: bool,
    #[serde(default)]
    pub random_id: Option<i64>,
}

/// `message_new`: since 5.103 `{message, client_info}`; older servers send the bare message (then `client_info` is
/// `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageNew {
    pub message: Message,
    pub client_info: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MessageNewWire {
    Wrapped { message: Message, client_info: Option<serde_json::Value> },
    Bare(Message),
}

impl From<MessageNewWire> for MessageNew {
    fn from(w: MessageNewWire) -> Self {
        match w {
            MessageNewWire::Wrapped { message, client_info } => MessageNew { message, client_info },
            MessageNewWire::Bare(message) => MessageNew { message, client_info: None },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MessageAllow {
    pub user_id: i64,
    #[serde(default)]
    pub key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MessageDeny {
    pub user_id: i64,
}

/// A wall comment (`wall_reply_new`, `_edit`, `_restore`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WallComment {
    pub id: i64,
    pub from_id: i64,
    #[serde(default)]
    pub date: i64,
    #[serde(default)]
    pub text: String,
    pub post_id: i64,
    #[serde(default)]
    pub owner_id: Option<i64>,
    pub post_owner_id: i64,
    #[serde(default)]
    pub reply_to_user: Option<i64>,
    #[serde(default)]
    pub reply_to_comment: Option<i64>,
    #[serde(default)]
    pub parents_stack: Vec<i64>,
}

/// `wall_reply_delete`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WallReplyDelete {
    pub owner_id: i64,
    pub id: i64,
    #[serde(default)]
    pub deleter_id: Option<i64>,
    pub post_id: i64,
}

/// `wall_post_new` (a post, or VK's deprecation warning object, which has no id).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WallPost {
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default)]
    pub owner_id: Option<i64>,
    #[serde(default)]
    pub from_id: Option<i64>,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub warning: Option<String>,
}

/// `like_add` / `like_remove`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Like {
    pub liker_id: i64,
    pub object_type: String,
    pub object_owner_id: i64,
    pub object_id: i64,
    #[serde(default)]
    pub post_id: Option<i64>,
    #[serde(default)]
    pub thread_reply_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupJoin {
    pub user_id: i64,
    #[serde(default)]
    pub join_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupLeave {
    pub user_id: i64,
    #[serde(default, rename = "self", deserialize_with = "crate::types::bool_int")]
    pub self_: bool,
}

impl Event {
    /// Who did it (user id; negative for a community), where the event says.
    pub fn actor(&self) -> Option<i64> {
        match self {
            Event::MessageNew(m) => Some(m.message.from_id),
            Event::MessageReply(m) | Event::MessageEdit(m) => Some(m.from_id),
            Event::MessageAllow(m) => Some(m.user_id),
            Event::MessageDeny(m) => Some(m.user_id),
            Event::WallPostNew(p) => p.from_id,
            Event::WallReplyNew(c) | Event::WallReplyEdit(c) | Event::WallReplyRestore(c) => Some(c.from_id),
            Event::WallReplyDelete(d) => d.deleter_id,
            Event::LikeAdd(l) | Event::LikeRemove(l) => Some(l.liker_id),
            Event::GroupJoin(g) => Some(g.user_id),
            Event::GroupLeave(g) => Some(g.user_id),
            Event::Confirmation | Event::Other(_) => None,
        }
    }

    /// The key of the object the event creates — a message, a comment, a post — the same whichever way the event
    /// came (Callback, Long Poll, or read back from the API after a gap), so a copy with another `event_id` is known
    /// as the same: `message:{peer_id}:{conversation_message_id}` (or `message:{id}`), `comment:{owner_id}:{id}`,
    /// `post:{owner_id}:{id}` (https://dev.vk.com/ru/reference/objects/message, /comment, /post). `None` for events
    /// that do not create an object once (edits, likes, joins: several may share one object).
    pub fn natural_key(&self) -> Option<String> {
        let message = |m: &Message| match m.conversation_message_id {
            Some(cmid) if cmid > 0 => Some(format!("message:{}:{cmid}", m.peer_id)),
            _ if m.id > 0 => Some(format!("message:{}", m.id)),
            _ => None,
        };
        match self {
            Event::MessageNew(m) => message(&m.message),
            Event::MessageReply(m) => message(m),
            Event::WallReplyNew(c) => Some(format!("comment:{}:{}", c.owner_id.unwrap_or(c.post_owner_id), c.id)),
            Event::WallPostNew(p) => Some(format!("post:{}:{}", p.owner_id?, p.id?)),
            _ => None,
        }
    }

    /// The text the event carries, if any.
    pub fn text(&self) -> Option<&str> {
        match self {
            Event::MessageNew(m) => Some(&m.message.text),
            Event::MessageReply(m) | Event::MessageEdit(m) => Some(&m.text),
            Event::WallPostNew(p) => Some(&p.text),
            Event::WallReplyNew(c) | Event::WallReplyEdit(c) | Event::WallReplyRestore(c) => Some(&c.text),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_arrays_side_by_side_are_not_deep() {
        let siblings = vec!["[]"; 4 * MAX_NESTING].join(",");
        let body = format!(r#"{{"type":"x","object":{{"a":[{siblings}]}}}}"#);
        assert_eq!(nesting(body.as_bytes()), 4);
        assert!(parse(body.as_bytes()).is_ok());
    }

    #[test]
    fn the_objects_an_event_creates_have_a_key_whatever_way_the_event_came() {
        let key = |body: &str| parse(body.as_bytes()).unwrap().event().unwrap().natural_key();
        let wrapped = r#"{"type":"message_new","group_id":1,"object":{"message":{"id":7,"peer_id":2,"from_id":2,"text":"a","conversation_message_id":3}}}"#;
        let bare = r#"{"type":"message_new","group_id":1,"v":"5.95","object":{"id":7,"peer_id":2,"from_id":2,"text":"a","conversation_message_id":3}}"#;
        assert_eq!(key(wrapped).as_deref(), Some("message:2:3"));
        assert_eq!(key(bare), key(wrapped), "the same message in another API version");
        let no_cmid = r#"{"type":"message_reply","group_id":1,"object":{"id":8,"peer_id":2,"from_id":-1,"text":"b"}}"#;
        assert_eq!(key(no_cmid).as_deref(), Some("message:8"));
        // VK's 0 means "none" for both ids (a message the API has not numbered yet): no key rather than a shared one.
        let zero_cmid = r#"{"type":"message_reply","group_id":1,"object":{"id":9,"peer_id":2,"from_id":-1,"text":"b","conversation_message_id":0}}"#;
        assert_eq!(key(zero_cmid).as_deref(), Some("message:9"));
        let zeros = r#"{"type":"message_reply","group_id":1,"object":{"id":0,"peer_id":2,"from_id":-1,"text":"b","conversation_message_id":0}}"#;
        assert_eq!(key(zeros), None);
        let comment = r#"{"type":"wall_reply_new","group_id":1,"object":{"id":5,"from_id":2,"post_id":1,"owner_id":-1,"post_owner_id":-1,"text":"c"}}"#;
        assert_eq!(key(comment).as_deref(), Some("comment:-1:5"));
        let post = r#"{"type":"wall_post_new","group_id":1,"object":{"id":4,"owner_id":-1,"from_id":-1,"text":"d"}}"#;
        assert_eq!(key(post).as_deref(), Some("post:-1:4"));
        let edit = r#"{"type":"wall_reply_edit","group_id":1,"object":{"id":5,"from_id":2,"post_id":1,"owner_id":-1,"post_owner_id":-1,"text":"e"}}"#;
        assert_eq!(key(edit), None, "an edit is not the object's creation: several may come");
        let like = r#"{"type":"like_add","group_id":1,"object":{"liker_id":2,"object_type":"post","object_owner_id":-1,"object_id":4}}"#;
        assert_eq!(key(like), None);
    }

    fn nested_body(levels: usize) -> String {
        // The envelope is level 1, `object` level 2: `levels - 2` arrays inside it.
        let inner = format!("{}{}", "[".repeat(levels - 2), "]".repeat(levels - 2));
        format!(r#"{{"type":"x","group_id":1,"object":{{"a":{inner},"s":"[[[[{{{{"}}}}"#)
    }

    #[test]
    fn nesting_is_bounded_and_brackets_in_strings_do_not_count() {
        assert!(parse(nested_body(MAX_NESTING).as_bytes()).is_ok());
        let e = parse(nested_body(MAX_NESTING + 1).as_bytes()).unwrap_err();
        assert!(e.0.contains("deeper than 32 levels"), "{e}");
        assert_eq!(nesting(br#"{"s":"\"[[[[","a":[{}]}"#), 3);
    }

    #[test]
    fn the_envelope_fields_are_read() {
        let e = parse(br#"{"type":"wall_reply_new","event_id":"9183d109ea0d62fa892f784081d783b1ed1c0757","v":"5.199","object":{"id":1},"group_id":1001,"secret":"s3"}"#).unwrap();
        assert_eq!(e.event_type, "wall_reply_new");
        assert_eq!(e.group_id, Some(1001));
        assert_eq!(e.event_id.as_deref(), Some("9183d109ea0d62fa892f784081d783b1ed1c0757"));
        assert_eq!(e.v.as_deref(), Some("5.199"));
        assert_eq!(e.secret_bytes(), Some(&b"s3"[..]));
        assert_eq!(e.object.as_ref().unwrap().get(), r#"{"id":1}"#);
        assert!(!format!("{e:?}").contains("s3\""));
    }

    #[test]
    fn a_numeric_event_id_is_kept_as_text() {
        let e = parse(br#"{"type":"group_join","event_id":12345,"group_id":1}"#).unwrap();
        assert_eq!(e.event_id.as_deref(), Some("12345"));
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "ends too early"),
            (b"{", "ends too early"),
            (b"[]", "JSON object"),
            (b"not json", "not valid JSON"),
            (br#"{"group_id":1}"#, "missing field \"type\""),
            (br#"{"type":5,"group_id":1}"#, "\"type\" must be a string"),
            (br#"{"type":"x","group_id":"abc"}"#, "\"group_id\" must be a positive number"),
            (br#"{"type":"x","group_id":-3}"#, "\"group_id\" must be a positive number"),
            (br#"{"type":"x","type":"y"}"#, "appears twice"),
            (br#"{"type":"x"} trailing"#, "trailing"),
            (br#"{"type":"x","event_id":{}}"#, "\"event_id\" must be"),
        ];
        for (body, expected) in cases {
            let err = parse(body).err().unwrap_or_else(|| panic!("{:?} parsed", String::from_utf8_lossy(body)));
            assert!(err.0.contains(expected), "{:?}: {err}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn unknown_types_and_fields_are_kept() {
        let body = br#"{"type":"donut_subscription_create","object":{"user_id":5,"new":true},"group_id":7,"event_id":"e","future":[1,2]}"#;
        let e = parse(body).unwrap();
        assert_eq!(e.event().unwrap(), Event::Other("donut_subscription_create".into()));
        assert_eq!(e.extra.len(), 1);
        let again: serde_json::Value = serde_json::from_str(&e.to_json_without_secret()).unwrap();
        let original: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(again, original);
    }

    #[test]
    fn the_stored_form_has_no_secret() {
        let e = parse(br#"{"type":"x","group_id":7,"secret":"hush","object":{"a":"\u0041"}}"#).unwrap();
        let json = e.to_json_without_secret();
        assert!(!json.contains("hush"));
        assert!(json.contains(r#""object":{"a":"\u0041"}"#));
    }

    #[test]
    fn message_new_in_both_shapes() {
        let new = parse(br#"{"type":"message_new","group_id":1,"object":{"message":{"id":3,"peer_id":2,"from_id":2,"text":"hi","out":0},"client_info":{"keyboard":true}}}"#).unwrap();
        let Event::MessageNew(m) = new.event().unwrap() else { panic!() };
        assert_eq!((m.message.id, m.message.text.as_str()), (3, "hi"));
        assert!(m.client_info.is_some());
        let old = parse(
            br#"{"type":"message_new","group_id":1,"object":{"id":4,"peer_id":2,"from_id":2,"text":"yo","out":0}}"#,
        )
        .unwrap();
        let Event::MessageNew(m) = old.event().unwrap() else { panic!() };
        assert_eq!((m.message.id, m.message.text.as_str()), (4, "yo"));
        assert!(m.client_info.is_none());
    }

    #[test]
    fn a_known_type_without_its_fields_is_an_error() {
        let e = parse(br#"{"type":"wall_reply_new","group_id":1,"object":{"text":"x"}}"#).unwrap();
        assert!(e.event().unwrap_err().0.contains("wall_reply_new"));
        let e = parse(br#"{"type":"message_new","group_id":1}"#).unwrap();
        assert!(e.event().unwrap_err().0.contains("object"));
    }

    #[test]
    fn debug_shows_the_envelope_but_never_the_secret() {
        let e = parse(br#"{"type":"message_new","group_id":7,"event_id":"e1","secret":"s3cr3t-value"}"#).unwrap();
        let shown = format!("{e:?}");
        assert!(shown.contains("message_new") && shown.contains("e1") && shown.contains("[redacted]"), "{shown}");
        assert!(!shown.contains("s3cr3t-value"));
    }

    #[test]
    fn only_confirmation_is_a_confirmation() {
        assert!(parse(br#"{"type":"confirmation","group_id":1}"#).unwrap().is_confirmation());
        assert!(!parse(br#"{"type":"message_new","group_id":1}"#).unwrap().is_confirmation());
        assert!(!parse(br#"{"type":"confirmation_x","group_id":1}"#).unwrap().is_confirmation());
    }

    #[test]
    fn the_secret_matches_only_itself() {
        let e = parse(br#"{"type":"group_join","group_id":1,"secret":"abcdef"}"#).unwrap();
        assert!(e.secret_matches(&SecretString::from("abcdef")));
        for wrong in ["abcdeg", "Abcdef", "abcde", "abcdefg", ""] {
            assert!(!e.secret_matches(&SecretString::from(wrong)), "{wrong}");
        }
        let without = parse(br#"{"type":"group_join","group_id":1}"#).unwrap();
        assert!(!without.secret_matches(&SecretString::from("abcdef")));
        assert!(secret_eq(&SecretString::from("xy"), b"xy"));
        assert!(!secret_eq(&SecretString::from("xy"), b"xz"));
        assert!(!secret_eq(&SecretString::from("xy"), b"xyz"));
        assert!(!secret_eq(&SecretString::from(""), b"x"));
    }

    #[test]
    fn who_did_it_and_what_it_says_for_each_typed_event() {
        let event = |t: &str, object: &str| {
            parse(format!(r#"{{"type":"{t}","group_id":1,"object":{object}}}"#).as_bytes()).unwrap().event().unwrap()
        };
        let message = r#"{"id":1,"peer_id":2,"from_id":3,"text":"привет","out":0}"#;
        let comment = r#"{"id":4,"from_id":5,"post_id":6,"owner_id":-1,"post_owner_id":-1,"text":"коммент","date":1}"#;
        let cases: Vec<(Event, Option<i64>, Option<&str>)> = vec![
            (event("message_new", &format!(r#"{{"message":{message}}}"#)), Some(3), Some("привет")),
            (event("message_reply", message), Some(3), Some("привет")),
            (event("message_edit", message), Some(3), Some("привет")),
            (event("message_allow", r#"{"user_id":7,"key":"k"}"#), Some(7), None),
            (event("message_deny", r#"{"user_id":8}"#), Some(8), None),
            (event("wall_post_new", r#"{"id":1,"owner_id":-1,"from_id":-1,"text":"пост"}"#), Some(-1), Some("пост")),
            (event("wall_reply_new", comment), Some(5), Some("коммент")),
            (event("wall_reply_edit", comment), Some(5), Some("коммент")),
            (event("wall_reply_restore", comment), Some(5), Some("коммент")),
            (event("wall_reply_delete", r#"{"owner_id":-1,"id":4,"deleter_id":9,"post_id":6}"#), Some(9), None),
            (
                event("like_add", r#"{"liker_id":10,"object_type":"post","object_owner_id":-1,"object_id":6}"#),
                Some(10),
                None,
            ),
            (
                event("like_remove", r#"{"liker_id":11,"object_type":"post","object_owner_id":-1,"object_id":6}"#),
                Some(11),
                None,
            ),
            (event("group_join", r#"{"user_id":12,"join_type":"join"}"#), Some(12), None),
            (event("group_leave", r#"{"user_id":13,"self":1}"#), Some(13), None),
            (event("photo_new", "{}"), None, None),
        ];
        for (event, actor, text) in cases {
            assert_eq!(event.actor(), actor, "{event:?}");
            assert_eq!(event.text(), text, "{event:?}");
        }
    }
}
