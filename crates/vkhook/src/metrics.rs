//! Counters and histograms for `/metrics` (Prometheus text format), kept in memory per instance.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::model::Source;

/// Event types as metric labels: the known ones, everything else `other` (labels stay few).
pub fn event_label(event_type: &str) -> &'static str {
    vk::EVENT_TYPES.iter().find(|k| **k == event_type).copied().unwrap_or("other")
}

struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            if value <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros.fetch_add((value * 1_000_000.0) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", count.load(Ordering::Relaxed));
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0);
        let _ = writeln!(out, "{name}_count {total}");
    }
}

const LATENCY_BOUNDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

pub struct Metrics {
    /// Events offered to the inbox by source (callback, long_poll, backfill) and whether they were new.
    stored: [[AtomicU64; 2]; 3],
    callbacks: Mutex<BTreeMap<(&'static str, u16, &'static str), u64>>,
    ack_latency: Histogram,
    commit_batch: Histogram,
    replies: Mutex<BTreeMap<(&'static str, String), u64>>,
    vk_calls: Mutex<BTreeMap<(String, String), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            stored: Default::default(),
            callbacks: Mutex::new(BTreeMap::new()),
            ack_latency: Histogram::new(LATENCY_BOUNDS),
            commit_batch: Histogram::new(BATCH_BOUNDS),
            replies: Mutex::new(BTreeMap::new()),
            vk_calls: Mutex::new(BTreeMap::new()),
        }
    }
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    *map.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default() += 1;
}

impl Metrics {
    /// One request to `/vk/callback`: its event type, HTTP status, what became of it (`stored`, `duplicate`,
    /// `remove`, `too_large`, …) and how long until we answered.
    pub fn observe_callback(&self, event_type: &'static str, status: u16, result: &'static str, elapsed: Duration) {
        bump(&self.callbacks, (event_type, status, result));
        self.ack_latency.observe(elapsed.as_secs_f64());
    }

    /// An event offered to the inbox by `source`: stored (`new`) or already there (a retry, or the other source's
    /// copy).
    pub fn observe_stored(&self, source: Source, new: bool) {
        self.stored[source_index(source)][usize::from(!new)].fetch_add(1, Ordering::Relaxed);
    }

    /// Events stored in one commit.
    pub fn observe_batch(&self, size: usize) {
        self.commit_batch.observe(size as f64);
    }

    /// A reply the bot sent (`sent`) or could not send (the reason).
    pub fn observe_reply(&self, kind: &'static str, result: &str) {
        bump(&self.replies, (kind, result.to_owned()));
    }

    /// `backlog`: the inbox's depth, its oldest event's age (s), and the forwarding deliveries not made yet;
    /// `long_poll`: the pollers at a glance and now (Unix ms). Each `None` when the store did not answer.
    pub fn render(
        &self,
        backlog: Option<(i64, f64, i64)>,
        long_poll: Option<(crate::store::LongPollHealth, i64)>,
    ) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP vkhook_events_total Events offered to the inbox by source and result (stored: new; duplicate: \
             already there, a retry or the other source's copy).\n# TYPE vkhook_events_total counter\n",
        );
        for source in [Source::Callback, Source::LongPoll, Source::Backfill] {
            for (i, result) in ["stored", "duplicate"].iter().enumerate() {
                let n = self.stored[source_index(source)][i].load(Ordering::Relaxed);
                let _ = writeln!(out, "vkhook_events_total{{source=\"{}\",result=\"{result}\"}} {n}", source.as_str());
            }
        }
        if let Some((health, now)) = long_poll {
            let lag = health.oldest_check_at.map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
            let _ = writeln!(
                out,
                "# HELP vkhook_long_poll_communities Communities polled by Bots Long Poll, by state.\n\
                 # TYPE vkhook_long_poll_communities gauge\n\
                 vkhook_long_poll_communities{{state=\"running\"}} {}\n\
                 vkhook_long_poll_communities{{state=\"trouble\"}} {}\n\
                 # HELP vkhook_long_poll_lag_seconds Time since the oldest last check among the polled communities \
                 (a check returns at least every `wait`, 25 s; more means a poller is behind or gone).\n\
                 # TYPE vkhook_long_poll_lag_seconds gauge\nvkhook_long_poll_lag_seconds {lag:.3}",
                health.polled - health.troubled,
                health.troubled
            );
        }
        out.push_str(
            "# HELP vkhook_callback_requests_total Requests to /vk/callback by event type, HTTP status and result \
             (stored: a new event was written; duplicate: VK's retry of a stored one).\n",
        );
        out.push_str("# TYPE vkhook_callback_requests_total counter\n");
        for ((event, status, result), n) in self.callbacks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "vkhook_callback_requests_total{{type=\"{event}\",status=\"{status}\",result=\"{result}\"}} {n}"
            );
        }
        self.ack_latency.render(
            &mut out,
            "vkhook_callback_ack_seconds",
            "Time from request to answer at /vk/callback.",
        );
        self.commit_batch.render(
            &mut out,
            "vkhook_inbox_commit_batch_size",
            "Events stored per commit (group commit).",
        );
        if let Some((depth, oldest_age, forwarding)) = backlog {
            let _ = writeln!(
                out,
                "# HELP vkhook_forward_depth Forwarded events not delivered yet (waiting, being sent, or retrying).\n\
                 # TYPE vkhook_forward_depth gauge\nvkhook_forward_depth {forwarding}"
            );
            let _ = writeln!(
                out,
                "# HELP vkhook_inbox_depth Events stored but not handled yet.\n# TYPE vkhook_inbox_depth gauge"
            );
            let _ = writeln!(out, "vkhook_inbox_depth {depth}");
            let _ = writeln!(
                out,
                "# HELP vkhook_inbox_oldest_age_seconds Age of the oldest event not handled yet (0: none).\n\
                 # TYPE vkhook_inbox_oldest_age_seconds gauge\nvkhook_inbox_oldest_age_seconds {oldest_age:.3}"
            );
        }
        out.push_str(
            "# HELP vkhook_bot_replies_total Replies by kind and result.\n# TYPE vkhook_bot_replies_total counter\n",
        );
        for ((kind, result), n) in self.replies.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "vkhook_bot_replies_total{{kind=\"{kind}\",result=\"{result}\"}} {n}");
        }
        out.push_str("# HELP vkhook_vk_requests_total Requests to the VK API by method and outcome (error code).\n");
        out.push_str("# TYPE vkhook_vk_requests_total counter\n");
        for ((method, outcome), n) in self.vk_calls.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "vkhook_vk_requests_total{{method=\"{method}\",outcome=\"{outcome}\"}} {n}");
        }
        out
    }
}

fn source_index(source: Source) -> usize {
    match source {
        Source::Callback => 0,
        Source::LongPoll => 1,
        Source::Backfill => 2,
    }
}

/// Counts the VK client's calls.
pub struct VkObserver(pub std::sync::Arc<Metrics>);

impl vk::CallObserver for VkObserver {
    fn observe(&self, method: &str, outcome: vk::CallOutcome, _elapsed: Duration) {
        let outcome = match outcome {
            vk::CallOutcome::Ok => "ok".to_owned(),
            vk::CallOutcome::Api(code) => format!("error_{code}"),
            vk::CallOutcome::Network => "network".to_owned(),
            vk::CallOutcome::Timeout => "timeout".to_owned(),
            vk::CallOutcome::Http(status) => format!("http_{status}"),
            vk::CallOutcome::Decode => "decode".to_owned(),
        };
        bump(&self.0.vk_calls, (method.to_owned(), outcome));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_counters_and_histograms() {
        let m = Metrics::default();
        m.observe_callback("message_new", 200, "stored", Duration::from_micros(700));
        m.observe_callback("message_new", 200, "stored", Duration::from_millis(3));
        m.observe_callback("other", 403, "wrong_secret", Duration::from_micros(100));
        m.observe_reply("comment", "sent");
        m.observe_stored(Source::LongPoll, true);
        m.observe_stored(Source::LongPoll, true);
        m.observe_stored(Source::Callback, false);
        let health = crate::store::LongPollHealth { polled: 3, troubled: 1, oldest_check_at: Some(10_000) };
        let text = m.render(Some((5, 1.5, 7)), Some((health, 40_500)));
        assert!(text.contains("vkhook_events_total{source=\"long_poll\",result=\"stored\"} 2"), "{text}");
        assert!(text.contains("vkhook_events_total{source=\"callback\",result=\"duplicate\"} 1"));
        assert!(text.contains("vkhook_events_total{source=\"callback\",result=\"stored\"} 0"));
        assert!(text.contains("vkhook_long_poll_communities{state=\"running\"} 2"));
        assert!(text.contains("vkhook_long_poll_communities{state=\"trouble\"} 1"));
        assert!(text.contains("vkhook_long_poll_lag_seconds 30.500"), "{text}");
        assert!(
            text.contains("vkhook_callback_requests_total{type=\"message_new\",status=\"200\",result=\"stored\"} 2")
        );
        assert!(text.contains("result=\"wrong_secret\"} 1"));
        assert!(text.contains("vkhook_callback_ack_seconds_bucket{le=\"0.001\"} 2"), "{text}");
        assert!(text.contains("vkhook_callback_ack_seconds_count 3"));
        assert!(text.contains("vkhook_inbox_depth 5"));
        assert!(text.contains("vkhook_inbox_oldest_age_seconds 1.500"), "{text}");
        assert!(text.contains("vkhook_bot_replies_total{kind=\"comment\",result=\"sent\"} 1"));
        assert_eq!(event_label("donut_subscription_create"), "other");
    }
}
