//! Forwarding events to the admin's own endpoints (issue 13). Built so far: the delivery's signature
//! ([`signing`], the Standard Webhooks scheme), the check of where a delivery may go ([`target`]: `https` only,
//! never a loopback, private, link-local or metadata address, checked again after DNS at connect time), and what an
//! attempt's answer means and when the next one is due ([`attempt`]). Nothing calls these from a route or a worker
//! yet.

pub mod attempt;
pub mod signing;
pub mod target;
