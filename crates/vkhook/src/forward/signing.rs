//! Signatures of forwarded events, as the Standard Webhooks specification defines them
//! (https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md):
//!
//! - `webhook-id`: the same for every attempt and replay of one event ([`webhook_id`], derived from the community
//!   and VK's `event_id`), so a receiver can drop repeats;
//! - `webhook-timestamp`: Unix seconds of this attempt;
//! - `webhook-signature`: `v1,` + base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`, keyed by the base64-decoded
//!   part of a `whsec_…` secret; several space-separated when two secrets sign (after «Сменить секрет», for a day).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::{Digest, Sha256};
use vk::GroupId;

/// How a signing secret is written: `whsec_` and the key in base64.
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes of a new key (the specification asks for 24 to 64).
const KEY_BYTES: usize = 32;

/// A signing key: the decoded part of a `whsec_…` secret.
pub struct SigningKey(SecretSlice<u8>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSecret {
    #[error("a signing secret starts with whsec_")]
    Prefix,
    #[error("a signing secret is whsec_ and base64")]
    Base64,
    #[error("a signing key has 24 to 64 bytes")]
    Length,
}

impl SigningKey {
    /// A new random key and its `whsec_…` form (shown to the admin, stored sealed).
    pub fn generate() -> (SigningKey, SecretString) {
        let mut key = vec![0u8; KEY_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
        let text = SecretString::from(format!("{SECRET_PREFIX}{}", STANDARD.encode(&key)));
        (SigningKey(key.into()), text)
    }

    /// The key of a `whsec_…` secret.
    pub fn parse(secret: &SecretString) -> Result<SigningKey, BadSecret> {
        let encoded = secret.expose_secret().strip_prefix(SECRET_PREFIX).ok_or(BadSecret::Prefix)?;
        let key = STANDARD.decode(encoded).map_err(|_| BadSecret::Base64)?;
        if !(24..=64).contains(&key.len()) {
            return Err(BadSecret::Length);
        }
        Ok(SigningKey(key.into()))
    }

    /// `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret()).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: one signature per key, space-separated (the current key first).
pub fn signature_header(keys: &[&SigningKey], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter().map(|k| k.sign(id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

/// The `webhook-id` of a community's event: the same for every attempt and replay, different for every other event
/// (also across communities); `evt_` and 32 hex digits of SHA-256 over the community and VK's `event_id`.
pub fn webhook_id(group_id: GroupId, event_id: &str) -> String {
    let digest = Sha256::new().chain_update(group_id.to_string()).chain_update(b":").chain_update(event_id).finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("evt_{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's published example (the reference libraries' test vector).
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1614265330;
    const VECTOR_BODY: &str = r#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers(id: &str, timestamp: i64, signature: &str) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        h.insert("webhook-id", id.parse().unwrap());
        h.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        h.insert("webhook-signature", signature.parse().unwrap());
        h
    }

    #[test]
    fn the_specifications_test_vector() {
        let key = SigningKey::parse(&SecretString::from(VECTOR_SECRET)).unwrap();
        assert_eq!(key.sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY.as_bytes()), VECTOR_SIGNATURE);
    }

    /// The reference library verifies what we sign, with one key and with two (after a rotation), and refuses a
    /// changed body or id.
    #[test]
    fn the_reference_library_verifies_our_signatures() {
        let (old, old_text) = SigningKey::generate();
        let (new, new_text) = SigningKey::generate();
        let id = webhook_id(GroupId(1001), &"a".repeat(40));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let body = br#"{"type":"wall_reply_new","object":{},"group_id":1001,"event_id":"aaaa","v":"5.199"}"#;
        let both = signature_header(&[&new, &old], &id, now, body);
        assert_eq!(both.split(' ').count(), 2);
        for text in [&old_text, &new_text] {
            let verifier = standardwebhooks::Webhook::new(text.expose_secret()).unwrap();
            verifier.verify(body, &headers(&id, now, &both)).unwrap();
            assert!(verifier.verify(b"{}", &headers(&id, now, &both)).is_err(), "another body");
            assert!(verifier.verify(body, &headers("evt_other", now, &both)).is_err(), "another id");
        }
        let only_new = signature_header(&[&new], &id, now, body);
        let verifier = standardwebhooks::Webhook::new(old_text.expose_secret()).unwrap();
        assert!(verifier.verify(body, &headers(&id, now, &only_new)).is_err(), "the old secret after its day");
        // And the library's own signature of the vector is ours.
        let reference = standardwebhooks::Webhook::new(VECTOR_SECRET).unwrap();
        let signed = reference.sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY.as_bytes()).unwrap();
        assert_eq!(signed, VECTOR_SIGNATURE);
    }

    #[test]
    fn a_webhook_id_is_stable_per_event_and_differs_between_events() {
        let e = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(webhook_id(GroupId(1001), e), webhook_id(GroupId(1001), e));
        assert_ne!(webhook_id(GroupId(1001), e), webhook_id(GroupId(1002), e), "another community");
        assert_ne!(webhook_id(GroupId(1001), e), webhook_id(GroupId(1001), "test-1"));
        assert!(webhook_id(GroupId(1001), e).starts_with("evt_") && webhook_id(GroupId(1001), e).len() == 36);
    }

    #[test]
    fn secrets_that_are_not_whsec_base64_of_24_to_64_bytes_are_refused() {
        let parse = |s: &str| SigningKey::parse(&SecretString::from(s)).err();
        assert_eq!(parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Some(BadSecret::Prefix));
        assert_eq!(parse("whsec_not base64!"), Some(BadSecret::Base64));
        assert_eq!(parse(&format!("whsec_{}", STANDARD.encode([1u8; 8]))), Some(BadSecret::Length));
        let (_, text) = SigningKey::generate();
        assert!(SigningKey::parse(&text).is_ok());
        assert!(text.expose_secret().starts_with(SECRET_PREFIX));
    }
}
