//! What a delivery attempt's answer means, and when the next attempt is due.
//!
//! - Any 2xx within the timeout (15 s) is delivered; anything else — another status, a timeout, a refused or broken
//!   connection — is a failure to retry.
//! - 410 Gone: the endpoint says it no longer exists; it is disabled at once, without retries.
//! - 429 and 503 may say `Retry-After` (seconds or an HTTP date): the next attempt waits at least that long, at most
//!   [`MAX_RETRY_AFTER`].
//! - Retries follow a [`Schedule`] after the first attempt (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h by default, as
//!   Svix and other webhook services do); after its last step the delivery is given up.

use std::time::{Duration, SystemTime};

use axum::http::{header, HeaderMap, StatusCode};

/// A delivery waits at most this long on an endpoint's `Retry-After`.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How long an attempt may take before it counts as failed.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// The waits between attempts: the first after the first attempt, and so on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(Vec<Duration>);

impl Default for Schedule {
    fn default() -> Schedule {
        let (s, m, h) = (1, 60, 3600);
        Schedule([5 * s, 5 * m, 30 * m, 2 * h, 5 * h, 10 * h, 10 * h].into_iter().map(Duration::from_secs).collect())
    }
}

/// `5s,5m,30m,2h,5h,10h,10h`: the form `VKHOOK_FORWARD_RETRY_SCHEDULE` is written in.
impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let words: Vec<String> = self
            .0
            .iter()
            .map(|w| {
                let s = w.as_secs();
                match s {
                    s if s > 0 && s % 86400 == 0 => format!("{}d", s / 86400),
                    s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
                    s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
                    s => format!("{s}s"),
                }
            })
            .collect();
        f.write_str(&words.join(","))
    }
}

impl Schedule {
    pub fn new(waits: Vec<Duration>) -> Schedule {
        Schedule(waits)
    }

    /// The same schedule, every wait divided by `by` (tests run a day's schedule in milliseconds).
    pub fn scaled_down(&self, by: u32) -> Schedule {
        Schedule(self.0.iter().map(|w| *w / by.max(1)).collect())
    }

    /// The wait after the `attempts`-th attempt failed (1 = the first); `None` when there is no further attempt.
    pub fn wait_after(&self, attempts: u32) -> Option<Duration> {
        attempts.checked_sub(1).and_then(|i| self.0.get(i as usize)).copied()
    }

    /// Attempts in all: the first and one per wait.
    pub fn attempts(&self) -> u32 {
        self.0.len() as u32 + 1
    }
}

/// What one attempt's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    Delivered,
    /// Failed; try again, not before `at_least` if the endpoint said so.
    Failed {
        at_least: Option<Duration>,
    },
    /// 410: the endpoint is gone; disable it.
    Gone,
}

/// Judges an answer (its status and headers) received at `now`. A timeout or a connection error is
/// `Judgement::Failed { at_least: None }` without calling this.
pub fn judge(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Judgement {
    if status.is_success() {
        return Judgement::Delivered;
    }
    if status == StatusCode::GONE {
        return Judgement::Gone;
    }
    let at_least = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => retry_after(headers, now),
        _ => None,
    };
    Judgement::Failed { at_least }
}

/// `Retry-After` as a wait: delay-seconds or an HTTP date (RFC 9110 §10.2.3), at most [`MAX_RETRY_AFTER`]; a date in
/// the past is no wait, an unreadable value is ignored.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value).ok()?.duration_since(now).unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// What happens to a delivery after its `attempts`-th attempt was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Done,
    /// Try again after this wait.
    RetryIn(Duration),
    /// The schedule is used up.
    GiveUp,
    /// The endpoint said 410: disable it.
    DisableEndpoint,
}

/// The next step: the schedule's wait, or the endpoint's `Retry-After` when it asks for longer.
pub fn next(schedule: &Schedule, attempts: u32, judgement: &Judgement) -> Next {
    match judgement {
        Judgement::Delivered => Next::Done,
        Judgement::Gone => Next::DisableEndpoint,
        Judgement::Failed { at_least } => match schedule.wait_after(attempts) {
            None => Next::GiveUp,
            Some(wait) => Next::RetryIn(wait.max(at_least.unwrap_or_default())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_written_in_its_largest_whole_unit() {
        assert_eq!(Schedule::default().to_string(), "5s,5m,30m,2h,5h,10h,10h");
        let mixed =
            Schedule([0, 90, 120, 7200, 86_400, 172_800, 90_000].into_iter().map(Duration::from_secs).collect());
        assert_eq!(mixed.to_string(), "0s,90s,2m,2h,1d,2d,25h");
    }

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = retry_after {
            h.insert(header::RETRY_AFTER, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_default_schedule_is_five_seconds_to_ten_hours_in_eight_attempts() {
        let s = Schedule::default();
        assert_eq!(s.attempts(), 8);
        let mins = |m: u64| Duration::from_secs(m * 60);
        let waits: Vec<_> = (1..=7).map(|a| s.wait_after(a).unwrap()).collect();
        assert_eq!(waits, vec![Duration::from_secs(5), mins(5), mins(30), mins(120), mins(300), mins(600), mins(600)]);
        assert_eq!(s.wait_after(8), None, "the eighth failure is the last");
        assert_eq!(s.wait_after(0), None);
        assert_eq!(s.scaled_down(1000).wait_after(1), Some(Duration::from_millis(5)));
    }

    #[test]
    fn answers_are_judged_as_the_contract_says() {
        let now = SystemTime::now();
        assert_eq!(judge(StatusCode::OK, &headers(None), now), Judgement::Delivered);
        assert_eq!(judge(StatusCode::NO_CONTENT, &headers(None), now), Judgement::Delivered);
        assert_eq!(judge(StatusCode::GONE, &headers(None), now), Judgement::Gone);
        assert_eq!(judge(StatusCode::FOUND, &headers(None), now), Judgement::Failed { at_least: None }, "no redirects");
        assert_eq!(
            judge(StatusCode::INTERNAL_SERVER_ERROR, &headers(Some("60")), now),
            Judgement::Failed { at_least: None }
        );
        let asked = |s| Judgement::Failed { at_least: Some(Duration::from_secs(s)) };
        assert_eq!(judge(StatusCode::SERVICE_UNAVAILABLE, &headers(Some("120")), now), asked(120));
        assert_eq!(judge(StatusCode::TOO_MANY_REQUESTS, &headers(Some(" 7 ")), now), asked(7));
        assert_eq!(
            judge(StatusCode::TOO_MANY_REQUESTS, &headers(Some("soon")), now),
            Judgement::Failed { at_least: None }
        );
        assert_eq!(judge(StatusCode::SERVICE_UNAVAILABLE, &headers(Some("99999999")), now), asked(24 * 3600), "capped");
    }

    #[test]
    fn retry_after_as_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 02 Dec 2026 12:00:00 GMT").unwrap();
        let h = headers(Some("Wed, 02 Dec 2026 12:10:00 GMT"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(600)));
        assert_eq!(retry_after(&headers(Some("Wed, 02 Dec 2026 11:00:00 GMT")), now), Some(Duration::ZERO), "past");
    }

    #[test]
    fn the_next_step_takes_the_longer_of_the_schedule_and_retry_after() {
        let s = Schedule::default();
        assert_eq!(next(&s, 1, &Judgement::Delivered), Next::Done);
        assert_eq!(next(&s, 1, &Judgement::Gone), Next::DisableEndpoint);
        assert_eq!(next(&s, 1, &Judgement::Failed { at_least: None }), Next::RetryIn(Duration::from_secs(5)));
        let asked = Judgement::Failed { at_least: Some(Duration::from_secs(60)) };
        assert_eq!(next(&s, 1, &asked), Next::RetryIn(Duration::from_secs(60)), "the endpoint asked for longer");
        assert_eq!(next(&s, 2, &asked), Next::RetryIn(Duration::from_secs(300)), "the schedule is longer");
        assert_eq!(next(&s, 8, &asked), Next::GiveUp);
    }
}
