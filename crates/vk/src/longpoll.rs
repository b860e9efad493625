//! Bots Long Poll (https://dev.vk.com/ru/api/bots-long-poll/getting-started): the community's one setting
//! (`groups.getLongPollSettings` / `groups.setLongPollSettings`), a session (`groups.getLongPollServer`) and the check
//! (`GET {server}?act=a_check&key=…&ts=…&wait=…`).
//!
//! A check answers either updates — the same objects the Callback API sends, with `event_id` and without `secret` —
//! and the `ts` to continue from, or one of three failures ([`Check`]). What to do after each is the caller's
//! decision; this module only says which it was.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::client::{AccessToken, Client, Idempotency, Params};
use crate::error::Error;
use crate::types::GroupId;

/// The longest `wait` VK allows.
pub const MAX_WAIT_SECS: u64 = 90;

/// `groups.getLongPollSettings`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct LongPollSettings {
    pub is_enabled: bool,
    #[serde(default)]
    pub api_version: Option<String>,
    /// Each event type and whether it is on (VK sends 0/1).
    #[serde(default, deserialize_with = "flags")]
    pub events: BTreeMap<String, bool>,
}

impl LongPollSettings {
    /// The types among `wanted` that are off.
    pub fn missing<'a>(&self, wanted: &[&'a str]) -> Vec<&'a str> {
        wanted.iter().copied().filter(|t| !self.events.get(*t).copied().unwrap_or(false)).collect()
    }
}

fn flags<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(i64),
    }
    let raw: BTreeMap<String, Flag> = BTreeMap::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, f)| {
            let on = match f {
                Flag::Bool(b) => b,
                Flag::Int(n) => n != 0,
            };
            (k, on)
        })
        .collect())
}

/// A session from `groups.getLongPollServer`. The key is a secret: whoever has it reads the community's events.
#[derive(Clone)]
pub struct LongPollServer {
    pub server: String,
    pub key: SecretString,
    pub ts: String,
}

impl std::fmt::Debug for LongPollServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LongPollServer").field("server", &self.server).field("ts", &self.ts).finish_non_exhaustive()
    }
}

/// What a check answered.
#[derive(Debug)]
pub enum Check {
    /// Updates (possibly none, after the wait) and the `ts` to continue from.
    Updates { ts: String, updates: Vec<Box<RawValue>> },
    /// `failed: 1`: the history is out of date or partly lost; continue from `ts`. What was in between is lost.
    HistoryLost { ts: String },
    /// `failed: 2`: the key expired; take a new one and keep `ts`.
    KeyExpired,
    /// `failed: 3`: the information is lost; take a new key and `ts`. What was in between is lost.
    InformationLost,
}

impl Check {
    /// Decodes an `a_check` answer. Unknown fields are ignored, as VK asks; an unknown `failed` is an error.
    pub fn decode(body: &[u8]) -> Result<Check, Error> {
        #[derive(Deserialize)]
        struct Wire {
            failed: Option<i64>,
            ts: Option<Ts>,
            updates: Option<Vec<Box<RawValue>>>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Ts {
            Text(String),
            Number(u64),
        }
        let wire: Wire = serde_json::from_slice(body).map_err(|e| Error::Decode(format!("a Long Poll answer: {e}")))?;
        let ts = wire.ts.map(|t| match t {
            Ts::Text(s) => s,
            Ts::Number(n) => n.to_string(),
        });
        match (wire.failed, ts, wire.updates) {
            (None, Some(ts), Some(updates)) => Ok(Check::Updates { ts, updates }),
            (Some(1), Some(ts), _) => Ok(Check::HistoryLost { ts }),
            (Some(2), _, _) => Ok(Check::KeyExpired),
            (Some(3), _, _) => Ok(Check::InformationLost),
            (failed, _, _) => {
                Err(Error::Decode(format!("a Long Poll answer VK does not document (failed: {failed:?})")))
            }
        }
    }
}

impl Client {
    /// `groups.getLongPollSettings` (a community key with `manage`).
    pub async fn groups_get_long_poll_settings(
        &self,
        token: &AccessToken,
        group_id: GroupId,
    ) -> Result<LongPollSettings, Error> {
        let params = Params::new().add("group_id", group_id);
        self.call(token, "groups.getLongPollSettings", &params, Idempotency::Idempotent).await
    }

    /// `groups.setLongPollSettings`: switches Long Poll on or off (`enabled`), sets the API version only when
    /// `api_version` is given, and switches on every type in `on` and off every type in `off`. Types not named keep
    /// what they have: the setting is shared with every other tool of the community.
    pub async fn groups_set_long_poll_settings(
        &self,
        token: &AccessToken,
        group_id: GroupId,
        enabled: Option<bool>,
        api_version: Option<&str>,
        on: &[&str],
        off: &[&str],
    ) -> Result<(), Error> {
        let mut params = Params::new().add("group_id", group_id).opt("api_version", api_version);
        if let Some(enabled) = enabled {
            params = params.flag("enabled", enabled);
        }
        for event in on {
            params = params.flag(event, true);
        }
        for event in off.iter().filter(|e| !on.contains(e)) {
            params = params.flag(event, false);
        }
        self.call_ok(token, "groups.setLongPollSettings", &params).await
    }

    /// `groups.getLongPollServer`: a new session. Error 15 when Long Poll is off for the community.
    pub async fn groups_get_long_poll_server(
        &self,
        token: &AccessToken,
        group_id: GroupId,
    ) -> Result<LongPollServer, Error> {
        #[derive(Deserialize)]
        struct Wire {
            server: String,
            key: String,
            ts: serde_json::Value,
        }
        let params = Params::new().add("group_id", group_id);
        let wire: Wire = self.call(token, "groups.getLongPollServer", &params, Idempotency::Idempotent).await?;
        let ts = match wire.ts {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        Ok(LongPollServer { server: wire.server, key: SecretString::from(wire.key), ts })
    }

    /// One check: held by VK up to `wait` seconds (at most [`MAX_WAIT_SECS`]) until updates come. No retries: the
    /// caller decides, since it owns `ts`.
    pub async fn long_poll_check(&self, session: &LongPollServer, ts: &str, wait: Duration) -> Result<Check, Error> {
        let wait = wait.as_secs().min(MAX_WAIT_SECS);
        let response = self
            .http()
            .get(&session.server)
            .query(&[("act", "a_check"), ("key", session.key.expose_secret()), ("ts", ts), ("wait", &wait.to_string())])
            // VK holds the request for `wait`; give it the client's usual time on top.
            .timeout(Duration::from_secs(wait) + self.config().timeout)
            .send()
            .await
            .map_err(Error::from_reqwest)?;
        let status = response.status();
        let body = response.bytes().await.map_err(Error::from_reqwest)?;
        if !status.is_success() {
            return Err(Error::Http(status.as_u16()));
        }
        Check::decode(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_answer_is_told_apart() {
        let updates = Check::decode(br#"{"ts":"12","updates":[{"type":"message_new","event_id":"a"}]}"#).unwrap();
        assert!(matches!(&updates, Check::Updates { ts, updates } if ts == "12" && updates.len() == 1));
        assert!(matches!(Check::decode(br#"{"ts":7,"updates":[]}"#).unwrap(), Check::Updates { ts, .. } if ts == "7"));
        assert!(matches!(Check::decode(br#"{"failed":1,"ts":30}"#).unwrap(), Check::HistoryLost { ts } if ts == "30"));
        assert!(matches!(Check::decode(br#"{"failed":2,"extra":true}"#).unwrap(), Check::KeyExpired));
        assert!(matches!(Check::decode(br#"{"failed":3}"#).unwrap(), Check::InformationLost));
        assert!(Check::decode(br#"{"failed":4}"#).is_err());
        assert!(Check::decode(br#"{"failed":1}"#).is_err(), "failed 1 without ts: nowhere to go on from");
        assert!(Check::decode(b"<html>").is_err());
    }

    #[test]
    fn settings_read_flags_as_numbers_or_booleans_and_name_what_is_off() {
        let s: LongPollSettings = serde_json::from_str(
            r#"{"is_enabled":true,"api_version":"5.131","events":{"message_new":1,"wall_reply_new":0,"like_add":true}}"#,
        )
        .unwrap();
        assert_eq!(s.missing(&["message_new", "wall_reply_new", "group_join"]), ["wall_reply_new", "group_join"]);
    }

    #[test]
    fn a_session_never_shows_its_key() {
        let s = LongPollServer {
            server: "https://lp.vk.com/wh1".into(),
            key: "k3y-s3cr3t".to_owned().into(),
            ts: "1".into(),
        };
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }
}
