//! Runs `checks::store` (see fuzz/checks.rs, which says what it checks).
#![no_main]

#[allow(dead_code)] // each target runs one of the checks
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::store(data));
