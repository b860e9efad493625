//! The `vk` crate against the sandbox over real HTTP, and the parser against real request bodies.

mod helpers;

mod callback_flow;
mod calls;
mod longpoll;
mod oauth;
mod samples;
