//! vkhook's HTTP routes against the VK sandbox, and the store contract on every backend.

mod helpers;

mod auth;
mod communities;
mod connect;
mod security;
mod store_contract;
