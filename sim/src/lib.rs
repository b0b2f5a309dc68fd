//! dispatch-sim: a simulated ChatGPT Codex backend and OpenAI OAuth issuer.
//!
//! One loopback HTTP/1.1 server plays both `chatgpt.com/backend-api` and
//! `auth.openai.com` for a scripted set of accounts, so every test layer of pi-dispatch
//! (Rust tests, Node end-to-end tests with the real pi CLI, the demo, benchmarks) runs
//! against the same deterministic backend. See sim/README.md for the script format,
//! the endpoints and the admin API.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use dispatch_sim::{Behavior, Script, Simulator};
//! let sim = Simulator::start(Script::default_accounts(2)).await?;
//! sim.set_behaviors("acct-a", vec![Behavior::usage_limit(3600)]).ok();
//! let tokens = sim.tokens("acct-a").expect("scripted account");
//! println!("{} {}", sim.backend_base(), tokens.access);
//! # Ok(()) }
//! ```

mod admin;
mod backend;
mod body;
mod cipher;
mod clock;
mod encoding;
mod errors;
mod jwt;
mod limits;
mod oauth;
mod reply;
mod script;
mod server;
mod simulator;
mod sse;
mod state;
mod stats;
mod usage;

pub use jwt::{AUTH_CLAIM, PROFILE_CLAIM, Tokens, decode_jwt_payload, make_jwt, pkce_challenge};
pub use limits::{LimitsError, LimitsUpdate};
pub use script::{
    AccountScript, Behavior, CdnChallenge, CodePlacement, Credits, DeviceScript,
    EncryptedContentCheck, FamilyScript, RetryAfterFormat, Script, StreamErrorStyle, TokenBehavior,
    Usage, UsageEndpointScript, Window, account_name,
};
pub use simulator::Simulator;
pub use state::{ApproveError, UnknownAccount};
pub use stats::{
    AccountCounts, GlobalCounts, Outcome, RecordedRequest, Refusal, Stats, UsageRequest,
};

/// The OAuth client id of the Codex CLI, which pi uses too.
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
