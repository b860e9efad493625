//! Real headless Chromium (Debian's chromium + chromedriver, driven by fantoccini) against vkhook and its VK
//! sandbox. Without chromedriver on PATH these tests print `skipped: …` and pass.

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod browser;

mod journeys;
