//! Bots Long Poll as VK runs it (https://dev.vk.com/ru/api/bots-long-poll/getting-started):
//! - **one** setting per community, shared with any other tool (`groups.setLongPollSettings` /
//!   `groups.getLongPollSettings`): switched on, its API version and its event types;
//! - a session from `groups.getLongPollServer` (`{key, server, ts}`, `ts` a string);
//! - `GET {server}?act=a_check&key=…&ts=…&wait=…`, held up to `wait` seconds (at most 90) until an update comes,
//!   answering `{"ts": "…", "updates": [...]}` with the same objects the Callback API sends, with `event_id` and without
//!   `secret`;
//! - `{"failed": 1, "ts": N}`: history out of date or partly lost, continue from N (what was in between is lost);
//!   `{"failed": 2}`: the key expired (keys do expire), take a new one and keep `ts`; `{"failed": 3}`: information
//!   lost, take a new key and `ts`.
//!
//! The control API (`/_sandbox/groups/{id}/longpoll`) injects those failures, drops updates between two `ts` (a real
//! gap: a request from inside it gets `failed: 1`) and sets the keys' lifetime.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::world::random_hex;
use crate::Shared;

/// How many updates VK keeps for a community here (VK does not document its retention); older `ts` get `failed: 1`.
pub const HISTORY: usize = 100_000;
/// At most this many updates in one answer.
pub const MAX_UPDATES: usize = 1000;
/// The longest hold VK allows (`wait` ≤ 90).
pub const MAX_WAIT_SECS: u64 = 90;

/// A community's Long Poll: its one setting and its updates.
#[derive(Debug, Clone)]
pub struct LongPoll {
    pub enabled: bool,
    pub api_version: String,
    pub events: BTreeSet<String>,
    /// Retained updates, each with its `ts` (one more per update).
    pub queue: VecDeque<(u64, Value)>,
    /// The `ts` the next update gets.
    pub next_ts: u64,
    /// Issued keys and when each expires.
    pub keys: HashMap<String, Instant>,
    /// How long a key lives.
    pub key_ttl: Duration,
    /// `ts` ranges VK lost (inclusive): a request from inside one is answered `failed: 1`.
    pub lost: Vec<(u64, u64)>,
    /// Failures the next checks answer with, in order (the control API's `fail`).
    pub inject: VecDeque<u8>,
}

impl Default for LongPoll {
    fn default() -> Self {
        LongPoll {
            enabled: false,
            api_version: "5.199".into(),
            events: BTreeSet::new(),
            queue: VecDeque::new(),
            next_ts: 1,
            keys: HashMap::new(),
            key_ttl: Duration::from_secs(3600),
            lost: Vec::new(),
            inject: VecDeque::new(),
        }
    }
}

/// What an `a_check` is answered with, decided under the world's lock.
pub enum Check {
    Updates { ts: u64, updates: Vec<Value> },
    Failed(Value),
}

impl LongPoll {
    /// A new session key.
    pub fn new_key(&mut self) -> String {
        let key = random_hex(40);
        self.keys.insert(key.clone(), Instant::now() + self.key_ttl);
        key
    }

    /// Appends an update (when switched on for its type).
    pub fn push(&mut self, event_type: &str, body: impl FnOnce(&str) -> Value) -> bool {
        if !self.enabled || !self.events.contains(event_type) {
            return false;
        }
        let ts = self.next_ts;
        self.next_ts += 1;
        self.queue.push_back((ts, body(&self.api_version)));
        while self.queue.len() > HISTORY {
            self.queue.pop_front();
        }
        true
    }

    /// Answers a check from `ts` with `key`, now; `None`: nothing new yet (hold the request).
    pub fn check(&mut self, key: &str, ts: u64) -> Option<Check> {
        let now = Instant::now();
        self.keys.retain(|_, until| *until > now);
        if let Some(failure) = self.inject.pop_front() {
            return Some(Check::Failed(match failure {
                1 => {
                    // What was between the request and now is lost to this reader.
                    if ts < self.next_ts {
                        self.lost.push((ts, self.next_ts - 1));
                    }
                    json!({"failed": 1, "ts": self.next_ts.to_string()})
                }
                2 => {
                    self.keys.remove(key);
                    json!({"failed": 2})
                }
                _ => {
                    self.keys.clear();
                    if ts < self.next_ts {
                        self.lost.push((ts, self.next_ts - 1));
                    }
                    json!({"failed": 3})
                }
            }));
        }
        if !self.enabled || !self.keys.contains_key(key) {
            return Some(Check::Failed(json!({"failed": 2})));
        }
        if ts > self.next_ts {
            return Some(Check::Failed(json!({"failed": 1, "ts": self.next_ts.to_string()})));
        }
        let oldest = self.queue.front().map_or(self.next_ts, |(t, _)| *t);
        if let Some((_, to)) = self.lost.iter().find(|(from, to)| (*from..=*to).contains(&ts)) {
            return Some(Check::Failed(json!({"failed": 1, "ts": (to + 1).to_string()})));
        }
        if ts < oldest {
            return Some(Check::Failed(json!({"failed": 1, "ts": oldest.to_string()})));
        }
        let updates: Vec<(u64, Value)> =
            self.queue.iter().filter(|(t, _)| *t >= ts).take(MAX_UPDATES).cloned().collect();
        let last = updates.last().map(|(t, _)| *t)?;
        Some(Check::Updates { ts: last + 1, updates: updates.into_iter().map(|(_, u)| u).collect() })
    }

    /// Drops the retained updates with `ts` in `from..=to`: VK lost them.
    pub fn drop_range(&mut self, from: u64, to: u64) {
        self.queue.retain(|(t, _)| !(from..=to).contains(t));
        self.lost.push((from, to));
    }
}

#[derive(Debug, Deserialize)]
pub struct CheckQuery {
    pub act: Option<String>,
    pub key: Option<String>,
    pub ts: Option<String>,
    pub wait: Option<u64>,
}

/// `GET /lp/{group_id}?act=a_check&key=…&ts=…&wait=…`: the Long Poll server.
pub async fn a_check(
    State(shared): State<Shared>,
    Path(group_id): Path<i64>,
    Query(q): Query<CheckQuery>,
) -> Json<Value> {
    if q.act.as_deref() != Some("a_check") {
        return Json(json!({"failed": 2}));
    }
    let (Some(key), Some(ts)) = (q.key, q.ts.and_then(|t| t.parse::<u64>().ok())) else {
        return Json(json!({"failed": 2}));
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(q.wait.unwrap_or(0).min(MAX_WAIT_SECS));
    loop {
        let notified = shared.long_poll_wakeup.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let answer = {
            let mut world = shared.world();
            world.calls.entry("longpoll.a_check".into()).and_modify(|n| *n += 1).or_insert(1);
            let Some(group) = world.group_mut(group_id) else { return Json(json!({"failed": 2})) };
            group.long_poll.check(&key, ts)
        };
        match answer {
            Some(Check::Updates { ts, updates }) => return Json(json!({"ts": ts.to_string(), "updates": updates})),
            Some(Check::Failed(body)) => return Json(body),
            None => {}
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {
                return Json(json!({"ts": ts.to_string(), "updates": []}));
            }
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct Control {
    /// Switch Long Poll on or off, as another tool (or the admin in VK's settings) would.
    pub enabled: Option<bool>,
    pub api_version: Option<String>,
    /// Event types to switch on (others keep theirs).
    pub events: Option<Vec<String>>,
    /// Failures the next checks answer with: 1, 2 or 3.
    pub fail: Option<Vec<u8>>,
    /// Drop the retained updates with `ts` in `[from, to]`.
    pub drop: Option<(u64, u64)>,
    /// A key's lifetime in milliseconds; `0` expires every key now.
    pub key_ttl_ms: Option<u64>,
}

/// `POST /_sandbox/groups/{id}/longpoll`: the community's Long Poll, changed from outside; answers its state.
pub async fn control(
    State(shared): State<Shared>,
    Path(group_id): Path<i64>,
    Json(c): Json<Control>,
) -> Result<Json<Value>, (axum::http::StatusCode, String)> {
    let state = {
        let mut world = shared.world();
        let Some(group) = world.group_mut(group_id) else {
            return Err((axum::http::StatusCode::NOT_FOUND, format!("no community {group_id}")));
        };
        let lp = &mut group.long_poll;
        if let Some(on) = c.enabled {
            lp.enabled = on;
        }
        if let Some(v) = c.api_version {
            lp.api_version = v;
        }
        lp.events.extend(c.events.unwrap_or_default());
        lp.inject.extend(c.fail.unwrap_or_default());
        if let Some((from, to)) = c.drop {
            lp.drop_range(from, to);
        }
        if let Some(ms) = c.key_ttl_ms {
            lp.key_ttl = Duration::from_millis(ms);
            if ms == 0 {
                lp.keys.clear();
            }
        }
        state(lp)
    };
    shared.long_poll_wakeup.notify_waiters();
    Ok(Json(state))
}

/// `GET /_sandbox/groups/{id}/longpoll`: the community's Long Poll as VK holds it.
pub async fn get_state(
    State(shared): State<Shared>,
    Path(group_id): Path<i64>,
) -> Result<Json<Value>, (axum::http::StatusCode, String)> {
    let world = shared.world();
    let group = world.group(group_id).ok_or((axum::http::StatusCode::NOT_FOUND, format!("no community {group_id}")))?;
    Ok(Json(state(&group.long_poll)))
}

fn state(lp: &LongPoll) -> Value {
    json!({"enabled": lp.enabled, "api_version": lp.api_version, "events": lp.events, "next_ts": lp.next_ts,
           "retained": lp.queue.len(), "keys": lp.keys.len(), "lost": lp.lost})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> LongPoll {
        let mut lp = LongPoll { enabled: true, ..Default::default() };
        lp.events.insert("message_new".into());
        lp
    }

    fn updates(check: Option<Check>) -> (u64, usize) {
        match check {
            Some(Check::Updates { ts, updates }) => (ts, updates.len()),
            Some(Check::Failed(v)) => panic!("failed: {v}"),
            None => panic!("held"),
        }
    }

    #[test]
    fn updates_come_from_ts_on_and_the_answer_says_where_to_go_on() {
        let mut lp = on();
        let key = lp.new_key();
        assert!(lp.check(&key, 1).is_none(), "nothing yet: held");
        assert!(lp.push("message_new", |v| json!({"v": v})));
        assert!(!lp.push("like_add", |v| json!({"v": v})), "a type not switched on is not queued");
        lp.push("message_new", |v| json!({"v": v}));
        assert_eq!(updates(lp.check(&key, 1)), (3, 2));
        assert_eq!(updates(lp.check(&key, 2)), (3, 1));
        assert!(lp.check(&key, 3).is_none());
    }

    #[test]
    fn failures_are_answered_as_vk_does() {
        let mut lp = on();
        let key = lp.new_key();
        lp.push("message_new", |_| json!(1));
        assert!(matches!(lp.check("other", 1), Some(Check::Failed(v)) if v == json!({"failed": 2})));
        lp.inject.extend([2, 1, 3]);
        assert!(matches!(lp.check(&key, 1), Some(Check::Failed(v)) if v == json!({"failed": 2})));
        let key = lp.new_key();
        assert!(matches!(lp.check(&key, 1), Some(Check::Failed(v)) if v == json!({"failed": 1, "ts": "2"})));
        assert!(matches!(lp.check(&key, 2), Some(Check::Failed(v)) if v == json!({"failed": 3})));
        assert!(matches!(lp.check(&key, 2), Some(Check::Failed(v)) if v == json!({"failed": 2})), "keys are gone");
        let key = lp.new_key();
        for _ in 0..5 {
            lp.push("message_new", |_| json!(1));
        }
        lp.drop_range(3, 4);
        assert!(matches!(lp.check(&key, 3), Some(Check::Failed(v)) if v == json!({"failed": 1, "ts": "5"})));
        assert_eq!(updates(lp.check(&key, 5)), (7, 2));
        lp.key_ttl = Duration::ZERO;
        let expired = lp.new_key();
        assert!(matches!(lp.check(&expired, 5), Some(Check::Failed(v)) if v == json!({"failed": 2})));
        lp.enabled = false;
        assert!(matches!(lp.check(&key, 5), Some(Check::Failed(v)) if v == json!({"failed": 2})), "switched off");
    }
}
