//! Tokens and secrets at rest: XChaCha20-Poly1305 with a key id in every value and the owning row bound as
//! associated data, so a value copied to another row (or column) does not decrypt.
//!
//! A sealed value is text: `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`. Several keys may be configured
//! (`VKHOOK_TOKEN_KEYS=kid:base64key,kid2:base64key`): the first encrypts, all decrypt; `vkhook keys rotate`
//! re-encrypts every value with the first.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("VKHOOK_TOKEN_KEYS is empty")]
    NoKeys,
    #[error("VKHOOK_TOKEN_KEYS entry {0} is not `id:base64-of-32-bytes`")]
    BadKey(usize),
    #[error("VKHOOK_TOKEN_KEYS has the key id {0:?} twice")]
    DuplicateKeyId(String),
    #[error("a stored secret is not a vault value")]
    Malformed,
    #[error("a stored secret was sealed with key {0:?}, which is not configured")]
    UnknownKey(String),
    #[error("a stored secret does not decrypt for this row (wrong key or moved value)")]
    Decrypt,
}

/// Declares [`Sealed`] from one list, so that [`Sealed::ALL`] (what key rotation walks) cannot miss a column.
macro_rules! sealed_columns {
    ($($(#[$meta:meta])* $variant:ident => ($table:literal, $key:literal, $column:literal),)+) => {
        /// Every column that holds vault values.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Sealed {
            $($(#[$meta])* $variant,)+
        }

        impl Sealed {
            pub const ALL: &'static [Sealed] = &[$(Sealed::$variant,)+];

            /// (table, row key column, value column).
            pub fn location(self) -> (&'static str, &'static str, &'static str) {
                match self {
                    $(Sealed::$variant => ($table, $key, $column),)+
                }
            }
        }
    };
}

sealed_columns! {
    UserAccessToken => ("user_tokens", "user_id", "access_token"),
    UserRefreshToken => ("user_tokens", "user_id", "refresh_token"),
    /// The PKCE verifier of a pending VK ID sign-in.
    OAuthVerifier => ("oauth_states", "state_hash", "verifier"),
    CallbackSecret => ("community_settings", "group_id", "secret"),
    PreviousCallbackSecret => ("community_settings", "group_id", "previous_secret"),
    CommunityToken => ("community_settings", "group_id", "community_token"),
    /// A forwarding endpoint's signing secret (`whsec_…`).
    EndpointSecret => ("endpoints", "id", "secret"),
    /// The one it replaced, signing too for a day after «Сменить секрет».
    PreviousEndpointSecret => ("endpoints", "id", "previous_secret"),
}

/// Where a value lives: its column and its row key. Bound into the ciphertext as associated data.
#[derive(Debug, Clone)]
pub struct Slot {
    column: Sealed,
    row: String,
}

impl Slot {
    pub fn new(column: Sealed, row: impl Into<String>) -> Slot {
        Slot { column, row: row.into() }
    }

    fn aad(&self) -> String {
        let (table, _, column) = self.column.location();
        format!("vkhook:{table}.{column}:{}", self.row)
    }
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The configured keys. `Debug` shows the key ids only.
pub struct Vault {
    keys: Vec<Key>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault").field("key_ids", &self.keys.iter().map(|k| &k.id).collect::<Vec<_>>()).finish()
    }
}

impl Vault {
    /// Parses `id:base64key[,id:base64key…]`.
    pub fn from_spec(spec: &SecretString) -> Result<Vault, VaultError> {
        let mut keys: Vec<Key> = Vec::new();
        for (i, entry) in spec.expose_secret().split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let (id, material) = entry.split_once(':').ok_or(VaultError::BadKey(i + 1))?;
            let id = id.trim();
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(VaultError::BadKey(i + 1));
            }
            let bytes = STANDARD
                .decode(material.trim())
                .or_else(|_| URL_SAFE_NO_PAD.decode(material.trim()))
                .map_err(|_| VaultError::BadKey(i + 1))?;
            if bytes.len() != 32 {
                return Err(VaultError::BadKey(i + 1));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(VaultError::DuplicateKeyId(id.to_owned()));
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| VaultError::BadKey(i + 1))?;
            keys.push(Key { id: id.to_owned(), cipher });
        }
        if keys.is_empty() {
            return Err(VaultError::NoKeys);
        }
        Ok(Vault { keys })
    }

    /// A new random key spec `id:base64` (for `demo` and for operators).
    pub fn generate_spec(id: &str) -> SecretString {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        SecretString::from(format!("{id}:{}", STANDARD.encode(key)))
    }

    /// Reads the key file at `path`, creating it (mode 0600) with a fresh key if it does not exist.
    pub fn load_or_create_key_file(path: &Path) -> std::io::Result<SecretString> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(SecretString::from(text.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let spec = Self::generate_spec("demo1");
                write_private(path, spec.expose_secret())?;
                Ok(spec)
            }
            Err(e) => Err(e),
        }
    }

    /// Every configured key id, the sealing one first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// The key id new values are sealed with.
    pub fn current_key_id(&self) -> &str {
        &self.keys[0].id
    }

    pub fn seal(&self, slot: &Slot, plaintext: &SecretString) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = slot.aad();
        let ciphertext = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload { msg: plaintext.expose_secret().as_bytes(), aad: aad.as_bytes() },
            )
            .expect("XChaCha20-Poly1305 encryption does not fail for in-memory data");
        let mut blob = Vec::with_capacity(24 + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        format!("v1.{}.{}", key.id, URL_SAFE_NO_PAD.encode(blob))
    }

    pub fn open(&self, slot: &Slot, sealed: &str) -> Result<SecretString, VaultError> {
        let (key_id, blob) = parse(sealed)?;
        let key = self.keys.iter().find(|k| k.id == key_id).ok_or_else(|| VaultError::UnknownKey(key_id.to_owned()))?;
        if blob.len() < 24 + 16 {
            return Err(VaultError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(24);
        let aad = slot.aad();
        let plain = key
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: aad.as_bytes() })
            .map_err(|_| VaultError::Decrypt)?;
        String::from_utf8(plain).map(SecretString::from).map_err(|_| VaultError::Decrypt)
    }

    /// The key id a sealed value carries.
    pub fn key_id_of(sealed: &str) -> Result<&str, VaultError> {
        parse(sealed).map(|(id, _)| id)
    }

    /// Re-seals `sealed` with the current key if another key sealed it; `None` when it is already current.
    pub fn reseal(&self, slot: &Slot, sealed: &str) -> Result<Option<String>, VaultError> {
        if Self::key_id_of(sealed)? == self.current_key_id() {
            return Ok(None);
        }
        let plain = self.open(slot, sealed)?;
        Ok(Some(self.seal(slot, &plain)))
    }
}

fn parse(sealed: &str) -> Result<(&str, Vec<u8>), VaultError> {
    let rest = sealed.strip_prefix("v1.").ok_or(VaultError::Malformed)?;
    let (key_id, data) = rest.split_once('.').ok_or(VaultError::Malformed)?;
    let blob = URL_SAFE_NO_PAD.decode(data).map_err(|_| VaultError::Malformed)?;
    Ok((key_id, blob))
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(row: &str) -> Slot {
        Slot::new(Sealed::UserAccessToken, row)
    }

    #[test]
    fn a_sealed_value_opens_only_in_its_own_row() {
        let vault = Vault::from_spec(&Vault::generate_spec("k1")).unwrap();
        let secret = SecretString::from("vk1.a.token-value");
        let sealed = vault.seal(&slot("1"), &secret);
        assert!(sealed.starts_with("v1.k1."));
        assert!(!sealed.contains("token-value"));
        assert_eq!(vault.open(&slot("1"), &sealed).unwrap().expose_secret(), "vk1.a.token-value");
        assert_eq!(vault.open(&slot("2"), &sealed).unwrap_err(), VaultError::Decrypt);
        let other_column = Slot::new(Sealed::UserRefreshToken, "1");
        assert_eq!(vault.open(&other_column, &sealed).unwrap_err(), VaultError::Decrypt);
        // Two seals of the same value differ (random nonce).
        assert_ne!(sealed, vault.seal(&slot("1"), &secret));
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let old = Vault::generate_spec("old");
        let new = Vault::generate_spec("new");
        let old_vault = Vault::from_spec(&old).unwrap();
        let sealed = old_vault.seal(&slot("7"), &SecretString::from("s"));
        let both =
            Vault::from_spec(&SecretString::from(format!("{},{}", new.expose_secret(), old.expose_secret()))).unwrap();
        assert_eq!(both.open(&slot("7"), &sealed).unwrap().expose_secret(), "s");
        // The start-up report names every key, the sealing one first.
        assert_eq!(both.key_ids(), ["new", "old"]);
        assert_eq!(both.current_key_id(), "new");
        let resealed = both.reseal(&slot("7"), &sealed).unwrap().unwrap();
        assert_eq!(Vault::key_id_of(&resealed).unwrap(), "new");
        assert_eq!(both.reseal(&slot("7"), &resealed).unwrap(), None);
        let new_only = Vault::from_spec(&new).unwrap();
        assert_eq!(new_only.open(&slot("7"), &resealed).unwrap().expose_secret(), "s");
        assert_eq!(new_only.open(&slot("7"), &sealed).unwrap_err(), VaultError::UnknownKey("old".into()));
    }

    #[test]
    fn bad_key_specs_say_which_entry() {
        assert_eq!(Vault::from_spec(&SecretString::from("")).unwrap_err(), VaultError::NoKeys);
        assert_eq!(Vault::from_spec(&SecretString::from("k1:c2hvcnQ=")).unwrap_err(), VaultError::BadKey(1));
        let good = Vault::generate_spec("a");
        let spec = format!("{},nocolon", good.expose_secret());
        assert_eq!(Vault::from_spec(&SecretString::from(spec)).unwrap_err(), VaultError::BadKey(2));
        let twice = format!("{0},{0}", good.expose_secret());
        assert_eq!(Vault::from_spec(&SecretString::from(twice)).unwrap_err(), VaultError::DuplicateKeyId("a".into()));
        // Errors never show key material.
        assert!(!VaultError::BadKey(1).to_string().contains(good.expose_secret()));
    }

    #[test]
    fn the_key_file_is_created_private_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("vkhook-vault-{}", rand::random::<u64>()));
        let path = dir.join("keys");
        let first = Vault::load_or_create_key_file(&path).unwrap();
        let second = Vault::load_or_create_key_file(&path).unwrap();
        assert_eq!(first.expose_secret(), second.expose_secret());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        Vault::from_spec(&first).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_value_too_short_to_hold_a_nonce_and_a_tag_is_malformed_not_a_panic() {
        let vault = Vault::from_spec(&Vault::generate_spec("k1")).unwrap();
        for len in [0, 8, 23, 24, 39] {
            let sealed = format!("v1.k1.{}", URL_SAFE_NO_PAD.encode(vec![7u8; len]));
            assert_eq!(vault.open(&slot("1"), &sealed).unwrap_err(), VaultError::Malformed, "{len} bytes");
        }
        assert_eq!(vault.open(&slot("1"), "v2.k1.AAAA").unwrap_err(), VaultError::Malformed);
        assert_eq!(vault.open(&slot("1"), "v1.k1").unwrap_err(), VaultError::Malformed);
    }

    #[test]
    fn a_spec_names_its_bad_entry_and_debug_shows_only_key_ids() {
        let good = Vault::generate_spec("a-b_c");
        let good = good.expose_secret();
        let material = good.split_once(':').unwrap().1;
        for (spec, err) in [
            (format!("{good},k 2:{material}"), VaultError::BadKey(2)),
            (format!("{good},k/2:{material}"), VaultError::BadKey(2)),
            (format!("{good},ключ:{material}"), VaultError::BadKey(2)),
            (format!("{good},:{material}"), VaultError::BadKey(2)),
            (format!("{good},k2:not-base64!"), VaultError::BadKey(2)),
            (format!("{good},k2:{}", &material[..20]), VaultError::BadKey(2)),
            (format!("k1:{material},{good},k3"), VaultError::BadKey(3)),
            (format!("{good},a-b_c:{material}"), VaultError::DuplicateKeyId("a-b_c".into())),
            (" , ".to_owned(), VaultError::NoKeys),
        ] {
            assert_eq!(Vault::from_spec(&SecretString::from(spec.clone())).unwrap_err(), err, "{spec}");
        }
        let vault = Vault::from_spec(&SecretString::from(format!("{good},k2:{material}"))).unwrap();
        let shown = format!("{vault:?}");
        assert!(shown.contains("a-b_c") && shown.contains("k2"), "{shown}");
        assert!(!shown.contains(material), "no key material in Debug");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            /// Any value opens in its own slot, and nowhere else; any changed byte makes it not open.
            #[test]
            fn a_value_opens_only_where_it_was_sealed_and_only_unchanged(
                value in any::<String>(), row in "[0-9]{1,6}", other_row in "[0-9]{1,6}", at in any::<usize>(),
            ) {
                let vault = Vault::from_spec(&Vault::generate_spec("p")).unwrap();
                let slot = Slot::new(Sealed::CommunityToken, row.as_str());
                let sealed = vault.seal(&slot, &SecretString::from(value.clone()));
                let opened = vault.open(&slot, &sealed).unwrap();
                prop_assert_eq!(opened.expose_secret(), value.as_str());
                if other_row != row {
                    prop_assert!(vault.open(&Slot::new(Sealed::CommunityToken, other_row.as_str()), &sealed).is_err());
                }
                prop_assert!(vault.open(&Slot::new(Sealed::CallbackSecret, row.as_str()), &sealed).is_err());
                let mut bytes = sealed.clone().into_bytes();
                let i = at % bytes.len();
                bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
                let tampered = String::from_utf8(bytes).unwrap();
                if tampered != sealed {
                    prop_assert!(vault.open(&slot, &tampered).is_err());
                }
            }
        }
    }
}
