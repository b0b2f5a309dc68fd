//! What each fuzz target checks on one input. The targets in `fuzz_targets/` and the CI replay
//! of kept inputs (`tests/suite/fuzz_regressions.rs`) both include this file, so CI runs exactly the
//! checks the fuzzer ran.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use pi_dispatch::Tokens;
use pi_dispatch::domain::failure::Failure;
use pi_dispatch::domain::sse::EventReader;
use serde_json::Value;

const NOW: u64 = 1_770_000_000_000;

/// SSE framing: any bytes, split into chunks anywhere, never panic, and every byte pushed is
/// kept for pi. The first byte picks the chunk size, so splits at every position get tried.
pub fn sse(data: &[u8]) {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;
    let mut reader = EventReader::default();
    let mut pushed = 0;
    for chunk in body.chunks(step) {
        if reader.push(chunk).is_err() {
            return;
        }
        pushed += chunk.len();
        while reader.next_event(NOW).is_some() {}
        assert_eq!(reader.held_len(), pushed);
    }
    assert_eq!(reader.into_held(), body);
}

/// The usage payload and the usage headers: any input reads as some usage or none, never a
/// panic. As headers, the input is lines of `name: value`; short names stand for the ones the
/// reader looks for.
pub fn usage(data: &[u8]) {
    if let Ok(payload) = serde_json::from_slice::<Value>(data)
        && let Some(seen) = pi_dispatch::domain::usage::from_payload(&payload, NOW)
    {
        let _ = seen.usage.is_fresh(NOW);
        let _ = seen.usage.spent_until(NOW);
        let _ = seen.usage.shows_below("codex_bengalfox", 100.0, NOW);
    }
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
            b"a" => b"x-codex-active-limit",
            b"f" => b"x-codex-bengalfox-primary-used-percent",
            b"fw" => b"x-codex-bengalfox-primary-window-minutes",
            b"c" => b"x-codex-credits-balance",
            other => other,
        };
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    if let Some(seen) = pi_dispatch::domain::usage::from_headers(&headers, NOW) {
        let _ = seen.usage.spent_until(NOW);
        let merged = pi_dispatch::domain::usage::Usage::merge(
            Some(seen.usage.clone()),
            seen.usage.clone(),
            seen.source,
        );
        let _ = merged.windows_of("codex_bengalfox");
    }
}

/// JWT claims and the login identity read from them: any token text, and any claims payload
/// inside a well-formed token (id token, then a NUL, then access token), never panic.
pub fn jwt(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = pi_dispatch::domain::oauth::jwt_claims(&text);
    let _ = pi_dispatch::domain::oauth::jwt_expiry_ms(&text);
    let (id_part, access_part) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let wrap = |claims: &[u8]| format!("h.{}.s", URL_SAFE_NO_PAD.encode(claims));
    let tokens = Tokens {
        access_token: wrap(access_part),
        refresh_token: String::new(),
        id_token: Some(wrap(id_part)),
        expires_at_ms: 0,
    };
    let _ = pi_dispatch::domain::oauth::jwt_expiry_ms(&tokens.access_token);
    let _ = pi_dispatch::domain::oauth::identity(&tokens);
}

/// Error bodies: any status (two bytes, mostly 400..=599), `Retry-After` (up to the first
/// newline) and body, and the body as a stream event, read as a failure or none, never a
/// panic; what each failure means for the account is computed too.
pub fn failure(data: &[u8]) {
    let Some((head, body)) = data.split_at_checked(2) else {
        return;
    };
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
    let event = serde_json::from_slice::<Value>(body).ok();
    let failures = [
        Some(Failure::from_status(status, &headers, body, NOW)),
        Some(Failure::refused_after_refresh(body)),
        event.and_then(|event| Failure::from_event(&event, NOW)),
    ];
    for failure in failures.into_iter().flatten() {
        let _ = failure.account_change(NOW);
        let _ = failure.family_limit("codex", None, NOW);
        let _ = pi_dispatch::domain::text::report::failure(&failure);
        let _ = failure.action();
    }
}

/// The accounts file parser: any bytes give a file or an error that names the file, never a
/// panic; a file that parses survives a write and a read; and with every string value of the
/// input marked secret, no error quotes one (any value could be a token).
pub fn store(data: &[u8]) {
    let path = Path::new("/agent/dispatch.json");
    match pi_dispatch::domain::schema::parse(path, data) {
        Ok(parsed) => {
            let bytes = serde_json::to_vec(&parsed.file).expect("a parsed file encodes");
            let again =
                pi_dispatch::domain::schema::parse(path, &bytes).expect("an encoded file parses");
            assert_eq!(again.file.accounts.len(), parsed.file.accounts.len());
        }
        Err(e) => assert!(e.to_string().contains("dispatch.json"), "{e}"),
    }
    if let Ok(mut value) = serde_json::from_slice::<Value>(data) {
        mark_secrets(&mut value);
        let marked = serde_json::to_vec(&value).expect("a value encodes");
        if let Err(e) = pi_dispatch::domain::schema::parse(path, &marked) {
            assert!(
                !e.chain().contains("SECRET"),
                "an error quotes a value: {}",
                e.chain()
            );
        }
    }
}

/// Prefixes every string value (not key) with `SECRET`.
fn mark_secrets(value: &mut Value) {
    match value {
        Value::String(s) => *s = format!("SECRET{s}"),
        Value::Array(items) => items.iter_mut().for_each(mark_secrets),
        Value::Object(fields) => fields.values_mut().for_each(mark_secrets),
        _ => {}
    }
}
