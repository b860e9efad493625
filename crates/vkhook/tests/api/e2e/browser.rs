//! Starting chromedriver and a headless Chromium session.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use vk_sandbox::testing::scaled;

use crate::helpers::TempDir;

/// Starts chromedriver on a free port. A port found free can be taken by someone else before chromedriver binds it
/// (it then exits at once): such a start is tried again on another port.
async fn start_driver() -> (Child, String) {
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Its own process group, so the browsers it starts go with it even when a test fails half-way.
        let mut driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + scaled(Duration::from_secs(20));
        loop {
            let answers = reqwest::get(format!("{url}/status")).await.is_ok_and(|r| r.status().is_success());
            // Ours answers only while it runs: another test's chromedriver on that port would answer too.
            if answers && driver.try_wait().ok().flatten().is_none() {
                return (driver, url);
            }
            if driver.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                break; // it exited (the port was taken) or never came up: another port
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = driver.kill();
        let _ = driver.wait();
    }
    panic!("chromedriver did not come up on five ports");
}

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: TempDir,
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

impl Browser {
    /// A headless Chromium, or `None` (with `skipped: …` printed) when chromedriver is not installed.
    pub async fn start(test: &str) -> Option<Browser> {
        if !on_path("chromedriver") {
            crate::helpers::skip(&format!(
                "{test} (chromedriver is not on PATH; apt-get install chromium chromium-driver)"
            ));
            return None;
        }
        let (driver, url) = start_driver().await;
        let profile = TempDir::new("vkhook-chromium");
        let mut caps = serde_json::Map::new();
        let mut options = json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--window-size=1280,900", "--lang=ru-RU",
                format!("--user-data-dir={}", profile.0.display()),
            ],
            // A Russian-speaking admin: Accept-Language ru.
            "prefs": {"intl.accept_languages": "ru-RU,ru"}
        });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector).capabilities(caps).connect(&url).await.expect("a Chromium session");
        Some(Browser { client, driver, _profile: profile })
    }

    /// Waits for `css` on the page, as long as the machine's wait factor allows.
    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        let wait = self.client.wait().at_most(scaled(Duration::from_secs(30)));
        wait.for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Clicks `css` once it is on the page, scrolled to the middle of the window first: a page opened at an anchor
    /// (`#attempts`) can leave a button under the sticky top bar, where a click would land on the bar.
    pub async fn click(&self, css: &str) {
        let element = self.element(css).await;
        let arg = serde_json::to_value(&element).unwrap();
        self.client.execute("arguments[0].scrollIntoView({block: 'center'});", vec![arg]).await.unwrap();
        element.click().await.unwrap();
    }

    /// Types `text` into the field `css`, once it is on the page.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.element(css).await.send_keys(text).await.unwrap();
    }

    /// The page's visible text, once `css` is on it.
    pub async fn text_when(&self, css: &str) -> String {
        self.element(css).await;
        self.client.find(Locator::Css("body")).await.unwrap().text().await.unwrap()
    }

    /// The visible text of the element `css`, once it is on the page.
    pub async fn element_text(&self, css: &str) -> String {
        self.element(css).await.text().await.unwrap()
    }

    pub async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    /// Waits until the page text contains `needle`.
    pub async fn wait_for_text(&self, needle: &str, secs: u64) -> String {
        self.wait_for_all(&[needle], secs).await
    }

    /// Waits until the page text contains every one of `needles` at once.
    pub async fn wait_for_all(&self, needles: &[&str], secs: u64) -> String {
        let deadline = Instant::now() + scaled(Duration::from_secs(secs));
        loop {
            // Mid-navigation there may be no body yet: that is "not yet", not a failure.
            let text = match self.client.find(Locator::Css("body")).await {
                Ok(body) => body.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if needles.iter().all(|needle| text.contains(needle)) {
                return text;
            }
            assert!(Instant::now() < deadline, "page never showed all of {needles:?}; it shows:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG of the page under `$VKHOOK_SCREENSHOTS/<name>.png` when that variable is set (for looking at
    /// the pages while developing).
    pub async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("VKHOOK_SCREENSHOTS") else { return };
        let png = self.client.screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop kills what is left.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and every Chromium process it started share its process group (its id is chromedriver's).
        if let Ok(group) = libc::pid_t::try_from(self.driver.id()) {
            if group > 1 {
                // SAFETY: killpg only sends a signal; `group` is the group we created for chromedriver.
                #[allow(unsafe_code)]
                unsafe {
                    libc::killpg(group, libc::SIGKILL)
                };
            }
        }
        let _ = self.driver.wait();
    }
}
