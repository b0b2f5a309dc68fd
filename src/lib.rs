//! pi-dispatch's native core: pools ChatGPT Codex accounts behind a loopback proxy for pi.
//!
//! # Layers
//!
//! | module | what | may import |
//! |---|---|---|
//! | [`error`], [`config`] | error kinds and the cause chain; every environment variable and upstream URL | std, each other |
//! | [`domain`] | pure rules: accounts and labels, the file schema, usage windows, the policy, the failure table, SSE framing, OAuth pieces, every sentence | `error` (no tokio, reqwest, hyper, `std::fs`, `std::env`, no clock) |
//! | [`io`] | stateless adapters: HTTP client, accounts file, OAuth and usage endpoints, loopback servers | `domain`, `error`, `config` |
//! | [`runtime`] | state and flows: auth, pool, usage refresh, logins, the proxy, commands; `context` wires them | everything above |
//! | `binding` (feature `node`) | the napi layer: conversions only | everything above |
//!
//! No module imports one of a layer below it in this table's order reversed (`io` never
//! imports `runtime`), only the flows that wire things (`runtime::proxy`, `runtime::login`,
//! `runtime::commands`, `binding`) import `runtime::context`, and no import cycle exists.
//! `tests/suite/layers.rs` checks these rules on the source tree.
//!
//! # Glossary
//!
//! - **benched**: an account resting after a failure (usage limit, throttling) until a time.
//! - **spent**: a usage window at 100% until it resets; the account cannot serve meanwhile.
//! - **untouched**: every known window at 0%; using it starts its clocks now, so it goes first.
//! - **seat**: the account a session uses, and why it was chosen.
//! - **pin**: a seat the user chose with `/dispatch-use`; it holds until a rotation moves it.
//! - **rotation**: a request moved to another account after a failure before any output.
//! - **hold-back**: a 200 stream kept from pi until its first output event, so a failure at
//!   its start can still be rotated past unseen.
//! - **limit family**: a set of models sharing one quota (the main `codex` one, or a per-model
//!   one such as a Spark model's); each has its own windows.

pub mod config;
pub mod domain;
pub mod error;
pub mod io;
pub mod runtime;

#[cfg(feature = "node")]
pub mod binding;

pub use config::Endpoints;
pub use domain::account::{Account, AccountState, AccountsFile};
pub use domain::oauth::Tokens;
pub use domain::usage::{Usage, UsageWindow};
pub use error::{Error, ErrorKind};
pub use io::clock::now_ms;
pub use io::store::Store;
pub use runtime::context::{Context, Timeouts};
pub use runtime::proxy::Proxy;
