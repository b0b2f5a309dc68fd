//! One module per part of the core; `common` holds the rig and fixtures every module shares.

mod common;

mod concurrency;
mod conversation;
mod failures;
mod faults_network;
mod faults_store;
mod fuzz_regressions;
mod layers;
mod login;
mod proxy;
mod refresh;
mod rotation;
mod select;
mod store;
mod usage;
