//! The integration tests, in one binary (one link instead of a dozen): each module of
//! `suite/` covers one part of the core against the simulator, real files and real processes.

mod suite;
