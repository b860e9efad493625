//! vkhook: connects VK communities to a bot in one click. The crate's map is in its README.

pub mod accounts;
pub mod alerts;
pub mod app;
pub mod bot;
pub mod cli;
pub mod config;
pub mod connect;
pub mod credentials;
pub mod dedup;
pub mod error;
pub mod forward;
pub mod health;
pub mod hooks;
pub mod http;
pub mod i18n;
pub mod inbox;
pub mod logging;
pub mod longpoll;
pub mod metrics;
pub mod model;
pub mod receiver;
pub mod roles;
pub mod store;
#[cfg(test)]
mod testkit;
pub mod urls;
pub mod vault;
pub mod workers;

pub use app::App;
pub use config::Settings;
