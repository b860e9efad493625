//! The sandbox enforces VK's rules: each test shows the error VK would give, or the behaviour VK has.

mod helpers;

mod delivery;
mod longpoll;
mod oauth;
mod rules;
mod schema;
