//! Stateless adapters to the world outside the process: the one HTTP client, the accounts
//! file, the OAuth and usage endpoints, and the loopback servers. They know the domain's types
//! but hold no state of the pool and never import `runtime`.

pub mod clock;
pub mod http;
pub mod loopback;
pub mod oauth;
pub mod store;
pub mod usage;
