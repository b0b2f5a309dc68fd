//! pi-dispatch's native core: pools ChatGPT Codex accounts behind a loopback proxy for pi.
//!
//! The core is plain Rust and knows nothing of Node:
//! - [`auth`]: fresh access tokens; refresh that never burns a rotating refresh token
//! - [`config`]: where state lives and which servers are called (the one override point)
//! - [`context`]: what the parts share, including the one HTTP client
//! - [`store`]: the accounts file, safe across processes
//! - [`login`]: adding accounts by browser (callback or pasted URL) or device code
//! - [`loopback`]: what the local HTTP servers (proxy, login callback) share
//! - [`usage`]: each account's quota windows, from the usage endpoint and reply headers
//! - [`select`]: the policy deciding which account serves a session
//! - [`failure`]: what an upstream failure means for the account that got it
//! - [`sse`]: reading the start of an event stream, to know whether it may be retried
//! - [`pool`]: this process's view of the pool: sessions, their accounts, pending changes
//! - [`proxy`]: the loopback server pi's Codex client talks to; rotates on failures
//!
//! `binding` (feature `node`) is the thin napi layer the pi extension loads.

pub mod auth;
pub mod config;
pub mod context;
pub mod error;
pub mod failure;
pub mod login;
pub mod loopback;
pub mod pool;
pub mod proxy;
pub mod select;
pub mod sse;
pub mod store;
pub mod usage;

#[cfg(feature = "node")]
pub mod binding;

pub use error::{Error, ErrorKind};

/// Wall-clock time in unix milliseconds, the unit every stored time uses.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
