//! The wall clock, the one place the core reads the time; the domain layer is handed it.

/// Wall-clock time in unix milliseconds, the unit every stored time uses.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
