//! State and flows: tokens ([`auth`]), this process's view of the pool ([`pool`]), usage
//! fetches ([`usage`]), logins ([`login`]), the proxy ([`proxy`]), what the extension's commands
//! do ([`commands`]), and [`context`], which builds and wires them.

pub mod auth;
pub mod commands;
pub mod context;
pub mod login;
pub mod pool;
pub mod proxy;
pub mod usage;
