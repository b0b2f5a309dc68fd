//! Replays the kept fuzz inputs (tests/fuzz-corpus/<target>/) through the same checks as the
//! cargo-fuzz targets in fuzz/, so CI covers them without a fuzzer. A crash reproducer found by
//! `cargo fuzz` goes into the target's folder here, and stays.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pi_dispatch::failure::Failure;
use pi_dispatch::sse::EventReader;
use pi_dispatch::store::Tokens;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

const NOW: u64 = 1_770_000_000_000;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no inputs in {}", dir.display());
    out
}

#[test]
fn sse_framing() {
    for (_, data) in inputs("sse") {
        let Some((&step, body)) = data.split_first() else {
            continue;
        };
        let step = usize::from(step % 64) + 1;
        let mut reader = EventReader::default();
        let mut pushed = 0;
        for chunk in body.chunks(step) {
            if reader.push(chunk).is_err() {
                break;
            }
            pushed += chunk.len();
            while reader.next_event(NOW).is_some() {}
            assert_eq!(reader.held_len(), pushed);
        }
    }
}

#[test]
fn usage_payload_and_headers() {
    for (_, data) in inputs("usage") {
        if let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&data)
            && let Some(seen) = pi_dispatch::usage::from_payload(&payload, NOW)
        {
            let _ = seen.usage.spent_until(NOW);
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
                other => other,
            };
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                headers.append(name, value);
            }
        }
        if let Some(seen) = pi_dispatch::usage::from_headers(&headers, NOW) {
            let _ = seen.usage.spent_until(NOW);
        }
    }
}

#[test]
fn jwt_claims_and_identity() {
    for (_, data) in inputs("jwt") {
        let text = String::from_utf8_lossy(&data);
        let _ = pi_dispatch::auth::jwt_claims(&text);
        let _ = pi_dispatch::auth::jwt_expiry_ms(&text);
        let (id_part, access_part) = match data.iter().position(|&b| b == 0) {
            Some(at) => (&data[..at], &data[at + 1..]),
            None => (&data[..], &b""[..]),
        };
        let wrap = |claims: &[u8]| format!("h.{}.s", URL_SAFE_NO_PAD.encode(claims));
        let tokens = Tokens {
            access_token: wrap(access_part),
            refresh_token: String::new(),
            id_token: Some(wrap(id_part)),
            expires_at_ms: 0,
        };
        let _ = pi_dispatch::login::identity(&tokens);
    }
}

#[test]
fn error_bodies() {
    for (_, data) in inputs("failure") {
        let Some((head, body)) = data.split_at_checked(2) else {
            continue;
        };
        let status = 400 + u16::from_be_bytes([head[0], head[1]]) % 200;
        let status = StatusCode::from_u16(status).unwrap();
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
        if let Ok(event) = serde_json::from_slice::<serde_json::Value>(body)
            && let Some(failure) = Failure::from_event(&event, NOW)
        {
            let _ = failure.account_state(None, NOW);
        }
    }
}

#[test]
fn store_file_parser() {
    let path = Path::new("/agent/dispatch.json");
    for (name, data) in inputs("store") {
        match pi_dispatch::store::parse(path, &data) {
            Ok(parsed) => {
                let bytes = serde_json::to_vec(&parsed.file).unwrap();
                let again = pi_dispatch::store::parse(path, &bytes).unwrap();
                assert_eq!(
                    again.file.accounts.len(),
                    parsed.file.accounts.len(),
                    "{name}"
                );
            }
            Err(e) => assert!(e.to_string().contains("dispatch.json"), "{name}: {e}"),
        }
        // Every string value made a secret: no error may quote one.
        if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&data) {
            mark_secrets(&mut value);
            let marked = serde_json::to_vec(&value).unwrap();
            if let Err(e) = pi_dispatch::store::parse(path, &marked) {
                assert!(!e.chain().contains("SECRET"), "{name}: {}", e.chain());
            }
        }
    }
}

fn mark_secrets(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => *s = format!("SECRET{s}"),
        Value::Array(items) => items.iter_mut().for_each(mark_secrets),
        Value::Object(fields) => fields.values_mut().for_each(mark_secrets),
        _ => {}
    }
}
