//! The pure core: what accounts, usage, failures and the policy are, and every sentence the
//! core writes. Nothing here does I/O, reads the clock or the environment, or spawns: time,
//! randomness and inputs are parameters, so every rule is testable as a plain function.

pub mod account;
pub mod conversation;
pub mod failure;
pub mod oauth;
pub mod schema;
pub mod select;
pub mod sse;
pub mod status;
pub mod text;
pub mod usage;
