//! Real headless Chromium (Debian's chromium + chromedriver, driven by fantoccini) against vkhook and its VK
//! sandbox. Without chromedriver on PATH these tests print `skipped: …` and pass.

mod browser;
mod journeys;
