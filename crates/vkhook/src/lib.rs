//! vkhook: connects VK communities to a bot in one click.
//!
//! `App::build(settings)` wires the store, the vault, the VK clients and the HTTP routes; `run_until_stopped`
//! serves. See the workspace README for the map.

pub mod accounts;
pub mod app;
pub mod bot;
pub mod cli;
pub mod config;
pub mod connect;
pub mod error;
pub mod health;
pub mod http;
pub mod i18n;
pub mod load;
pub mod metrics;
pub mod receiver;
pub mod store;
pub mod vault;

pub use app::{App, AppState};
pub use config::Settings;
