//! pi-dispatch's native core: pools ChatGPT Codex accounts behind a loopback proxy for pi.
//!
//! The core is plain Rust and knows nothing of Node:
//! - [`auth`]: fresh access tokens; refresh that never burns a rotating refresh token
//! - [`config`]: where state lives and which servers are called (the one override point)
//! - [`context`]: what the parts share, including the one HTTP client
//! - [`store`]: the accounts file, safe across processes
//! - [`login`]: adding accounts by browser (callback or pasted URL) or device code
//! - [`proxy`]: the loopback server pi's Codex client talks to
//!
//! `binding` (feature `node`) is the thin napi layer the pi extension loads.

pub mod auth;
pub mod config;
pub mod context;
pub mod error;
pub mod login;
pub mod proxy;
pub mod store;

#[cfg(feature = "node")]
pub mod binding;

pub use error::{Error, ErrorKind};

/// Wall-clock time in unix milliseconds, the unit every stored time uses.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
