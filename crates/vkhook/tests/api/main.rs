//! vkhook's tests in one binary: its HTTP routes against the VK sandbox, several instances on one PostgreSQL,
//! the store contract on every backend, and real headless Chromium (`e2e`).

mod helpers;

mod alerts;
mod architecture;
mod auth;
mod bot;
mod bulk;
mod cluster;
mod communities;
mod connect;
mod e2e;
mod forwarding;
mod long_poll;
mod process;
mod reauth;
mod receiver;
mod roles;
mod routes;
mod security;
mod store_contract;
