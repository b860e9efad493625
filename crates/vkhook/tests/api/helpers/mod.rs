//! `TestApp`: a vkhook instance on port 0 with its own database, wired to its own VK sandbox; typed helpers drive it
//! as a browser would.
//!
//! The database comes from the environment: a fresh SQLite file by default; a fresh PostgreSQL database on
//! TEST_DATABASE_URL's server when `TEST_BACKEND=postgres` (so the whole suite runs on either; `.ci/run` runs both).
//! With `VKHOOK_REQUIRE_ALL_TESTS=1` a test that cannot run here (no PostgreSQL, no chromedriver) fails instead of
//! printing `skipped: …`.
//!
//! By concern: [`app`] (the app and its driver), [`db`] (scratch databases), [`process`] (child processes and the
//! proxy of a cluster), [`network`] (faults), [`endpoints`] (forwarding endpoints and mail).

pub mod app;
pub mod db;
pub mod endpoints;
pub mod network;
pub mod process;

pub use app::*;
pub use db::*;
pub use endpoints::*;
pub use network::*;
pub use process::*;
