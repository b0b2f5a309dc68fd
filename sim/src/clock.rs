//! Wall-clock helpers: the protocol speaks unix seconds and milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the unix epoch.
pub fn now_s() -> u64 {
    now_ms() / 1000
}
