//! The keys VK drops a repeated reply by: `guid` of `wall.createComment` and `random_id` of `messages.send`
//! (`vendor/vk-api-schema/{wall,messages}/methods.json`). A leaf: the bot and the alerts both use it.
//!
//! - A comment's `guid` is a hash of the event it answers: the same event always gives the same guid, and 128 bits
//!   never collide in practice.
//! - A message's `random_id` is an int32 ("random_id … int32", https://dev.vk.com/ru/method/messages.send) that VK
//!   remembers per sender "over the whole history": a hash of the event would collide by the birthday bound
//!   (~55 000 sends for even odds). So it comes from a counter per community, reserved in the store before the
//!   first send and kept for every retry ([`random_id_of`] maps the counter to VK's range).

use sha2::{Digest, Sha256};
use vk::GroupId;

/// The comment `guid` for an event: the same event always gives the same guid.
pub fn comment_guid(group_id: GroupId, event_id: &str) -> String {
    let digest = Sha256::digest(format!("vkhook-guid:{group_id}:{event_id}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The largest `random_id` (int32).
const RANDOM_ID_MAX: i64 = i32::MAX as i64;

/// A reserved counter value as VK's `random_id`: 1..=2³¹−1, wrapping after that many sends of one community.
pub fn random_id_of(counter: i64) -> i32 {
    ((counter.max(1) - 1) % RANDOM_ID_MAX + 1) as i32
}

/// Where a community's counter starts: somewhere random in the lower half of the range, so that vkhook instances
/// that once ran against the same community (a restored backup, a second installation) do not start at the same
/// place as each other or as a tool that counts from 1.
pub fn random_id_start() -> i64 {
    rand::Rng::gen_range(&mut rand::thread_rng(), 1..=RANDOM_ID_MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guid_is_stable_per_event_and_differs_between_events() {
        assert_eq!(comment_guid(GroupId(1001), "abc"), comment_guid(GroupId(1001), "abc"));
        assert_ne!(comment_guid(GroupId(1001), "abc"), comment_guid(GroupId(1001), "abd"));
        assert_ne!(comment_guid(GroupId(1001), "abc"), comment_guid(GroupId(1002), "abc"));
        assert_eq!(comment_guid(GroupId(1), "x").len(), 32);
    }

    #[test]
    fn counter_values_map_into_int32_without_zero() {
        assert_eq!(random_id_of(1), 1);
        assert_eq!(random_id_of(RANDOM_ID_MAX), i32::MAX);
        assert_eq!(random_id_of(RANDOM_ID_MAX + 1), 1, "wraps after 2³¹−1 sends");
        for _ in 0..1000 {
            let start = random_id_start();
            assert!((1..=RANDOM_ID_MAX / 2).contains(&start));
            assert!(random_id_of(start) > 0);
        }
    }
}
