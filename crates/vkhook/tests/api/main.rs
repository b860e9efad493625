//! vkhook's HTTP routes against the VK sandbox, and the store contract on every backend.

mod helpers;

mod auth;
mod bot;
mod cluster;
mod communities;
mod connect;
mod receiver;
mod security;
mod store_contract;
