//! The addresses vkhook is reached at, shared by the router and by the modules that hand them out (VK's callback
//! server, the OAuth redirects, links in e-mails): one place, so a route and the link to it can never disagree. A
//! leaf: it imports nothing of the crate.

use url::Url;

/// Where VK posts a community's events (`POST`).
pub const CALLBACK_PATH: &str = "/vk/callback";
/// Where VK ID sends the browser back after sign-in.
pub const VKID_CALLBACK_PATH: &str = "/auth/vk/callback";
/// Where oauth.vk.com sends the browser back after a community consent.
pub const COMMUNITY_CALLBACK_PATH: &str = "/auth/vk/community-callback";
/// The link in an alert address's confirmation e-mail (`?token=…`).
pub const ALERT_CONFIRM_PATH: &str = "/alerts/confirm";
/// The `type` of «Проверить путь»'s synthetic event: the receiver answers it `ok` and stores nothing.
pub const PATH_CHECK_TYPE: &str = "vkhook_path_check";

/// The base URL VK and browsers use (`VKHOOK_PUBLIC_URL`, or the bound address in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(Url);

impl PublicUrl {
    pub fn new(url: Url) -> PublicUrl {
        PublicUrl(url)
    }

    /// `<public url><path>`, without a doubled slash.
    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.0.as_str().trim_end_matches('/'), path)
    }

    /// Cookies get `Secure` when the public URL is https.
    pub fn is_https(&self) -> bool {
        self.0.scheme() == "https"
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }
}

impl std::fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
