//! Error bodies: any status, headers and body, and any stream event, read as a failure or
//! none, never a panic; what it means for the account is computed too.
#![no_main]
use http::StatusCode;
use http::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use libfuzzer_sys::fuzz_target;
use pi_dispatch::failure::Failure;

const NOW: u64 = 1_770_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_at_checked(2) else {
        return;
    };
    // Statuses 400..=599 most of the time, since that is where the reading happens.
    let status = 400 + u16::from_be_bytes([head[0], head[1]]) % 200;
    let Ok(status) = StatusCode::from_u16(status) else {
        return;
    };
    let mut headers = HeaderMap::new();
    let (retry, body) = match body.iter().position(|&b| b == b'\n') {
        Some(at) => (&body[..at], &body[at + 1..]),
        None => (&b""[..], body),
    };
    if let Ok(value) = HeaderValue::from_bytes(retry) {
        headers.insert(RETRY_AFTER, value);
    }
    if let Some(failure) = Failure::from_status(status, &headers, body, NOW) {
        let _ = failure.account_state(None, NOW);
        let _ = failure.describe();
    }
    if let Ok(event) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(failure) = Failure::from_event(&event, NOW) {
            let _ = failure.account_state(None, NOW);
            let _ = failure.describe();
        }
    }
});
