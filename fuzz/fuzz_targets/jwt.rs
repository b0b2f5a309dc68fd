//! JWT claims and the login identity read from them: any token text, and any claims payload
//! inside a well-formed token, never panic.
#![no_main]
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use pi_dispatch::auth::{jwt_claims, jwt_expiry_ms};
use pi_dispatch::login::identity;
use pi_dispatch::store::Tokens;

fuzz_target!(|data: &[u8]| {
    // As raw token text.
    let text = String::from_utf8_lossy(data);
    let _ = jwt_claims(&text);
    let _ = jwt_expiry_ms(&text);
    // As the claims of a token, so the JSON reader and the identity lookup get exercised.
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
    let _ = jwt_expiry_ms(&tokens.access_token);
    let _ = identity(&tokens);
});
