//! Helpers for tests that drive the sandbox's consent pages as a person would: open the page, pick a user,
//! tick scopes, press «Разрешить» or «Отмена», and follow the redirect back.

use url::Url;

/// What the person does on a consent page.
#[derive(Debug, Clone)]
pub struct Consent {
    pub user_id: i64,
    pub allow: bool,
    /// Community consent: the scopes left ticked (`None`: all that were asked for).
    pub grant: Option<Vec<String>>,
    /// Community consent: the communities left ticked (`None`: all that were asked for).
    pub communities: Option<Vec<i64>>,
}

impl Consent {
    /// Community consent with only `ids` left ticked.
    pub fn ticking(user_id: i64, ids: &[i64]) -> Self {
        Self { communities: Some(ids.to_vec()), ..Self::allow(user_id) }
    }

    pub fn allow(user_id: i64) -> Self {
        Self { user_id, allow: true, grant: None, communities: None }
    }

    pub fn deny(user_id: i64) -> Self {
        Self { user_id, allow: false, grant: None, communities: None }
    }

    pub fn granting(user_id: i64, scopes: &[&str]) -> Self {
        Self { user_id, allow: true, grant: Some(scopes.iter().map(|s| (*s).to_owned()).collect()), communities: None }
    }
}

/// Opens `authorize_url` (a VK ID or community authorization page of the sandbox), submits the form as `consent`
/// says, and returns where the sandbox redirects the browser (the app's redirect URI with `code` or `error`).
pub async fn consent(authorize_url: &str, consent: &Consent) -> Result<Url, String> {
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().map_err(|e| e.to_string())?;
    let page = http.get(authorize_url).send().await.map_err(|e| e.to_string())?;
    let status = page.status();
    let html = page.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() || !html.contains("Разрешить") {
        return Err(format!("no consent page ({status}): {html}"));
    }
    let url = Url::parse(authorize_url).map_err(|e| e.to_string())?;
    let mut form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    form.push(("user_id".into(), consent.user_id.to_string()));
    form.push(("decision".into(), if consent.allow { "allow" } else { "deny" }.into()));
    let scopes: Vec<String> = match &consent.grant {
        Some(g) => g.clone(),
        None => listed(&url, "scope"),
    };
    for s in scopes {
        form.push(("grant".into(), s));
    }
    let communities: Vec<String> = match &consent.communities {
        Some(ids) => ids.iter().map(i64::to_string).collect(),
        None => listed(&url, "group_ids"),
    };
    for id in communities {
        form.push(("community".into(), id));
    }
    let mut action = url.clone();
    action.set_query(None);
    let body = serde_urlencoded::to_string(&form).map_err(|e| e.to_string())?;
    let response = http
        .post(action)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| format!("no redirect after consent ({})", response.status()))?;
    Url::parse(&location).map_err(|e| e.to_string())
}

/// The items of a list parameter of `url` (`scope`, `group_ids`: separated by commas or spaces).
fn listed(url: &Url, name: &str) -> Vec<String> {
    let value = query_param(url, name).unwrap_or_default();
    value.split([',', ' ']).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// A query parameter of a URL.
pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// How much longer every wait in the tests may take: `TEST_WAIT_FACTOR` (default 1), so a slow or busy machine
/// gets more time without any change to the tests.
pub fn wait_factor() -> f64 {
    std::env::var("TEST_WAIT_FACTOR").ok().and_then(|v| v.parse::<f64>().ok()).filter(|f| *f >= 1.0).unwrap_or(1.0)
}

/// `d` times [`wait_factor`]: every deadline a test sets, so a busy machine stretches them all alike.
pub fn scaled(d: std::time::Duration) -> std::time::Duration {
    d.mul_f64(wait_factor())
}

/// Polls `check` until it returns `Some` — the condition the test then asserts — or panics after `secs` seconds
/// (times [`wait_factor`]). The one waiting helper of every test suite in the workspace.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + scaled(std::time::Duration::from_secs(secs));
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
