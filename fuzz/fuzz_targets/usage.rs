//! The usage payload and the usage headers: any input reads as some usage or none, never a
//! panic.
#![no_main]
use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use pi_dispatch::usage::{from_headers, from_payload};

const NOW: u64 = 1_770_000_000_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Some(seen) = from_payload(&payload, NOW) {
            let _ = seen.usage.is_fresh(NOW);
            let _ = seen.usage.spent_until(NOW);
        }
    }
    // Lines of `name: value`; short names are completed to the ones the reader looks for.
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let name = match name {
            b"p" => b"x-codex-primary-used-percent".as_slice(),
            b"pr" => b"x-codex-primary-reset-at",
            b"pa" => b"x-codex-primary-reset-after-seconds",
            b"pw" => b"x-codex-primary-window-minutes",
            b"s" => b"x-codex-secondary-used-percent",
            b"sr" => b"x-codex-secondary-reset-at",
            b"sa" => b"x-codex-secondary-reset-after-seconds",
            b"sw" => b"x-codex-secondary-window-minutes",
            b"t" => b"x-codex-plan-type",
            other => other,
        };
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    if let Some(seen) = from_headers(&headers, NOW) {
        let _ = seen.usage.spent_until(NOW);
    }
});
