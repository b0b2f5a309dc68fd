//! JWT-shaped tokens and randomness.
//!
//! Nothing is signed: the "signature" is random base64url. That random part makes every
//! token unique, so tests can grep logs and output for leaked tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::script::AccountScript;

/// The claim that carries the ChatGPT account, user and plan.
pub const AUTH_CLAIM: &str = "https://api.openai.com/auth";
/// The claim that carries the email.
pub const PROFILE_CLAIM: &str = "https://api.openai.com/profile";

/// One token set as the token endpoint hands it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tokens {
    pub account_id: String,
    pub access: String,
    pub refresh: String,
    pub id_token: String,
    /// When the access token stops working (unix ms); its `exp` claim is this in
    /// seconds, rounded down.
    pub expires_at_ms: u64,
}

/// Builds `header.payload.signature` from arbitrary claims; the signature is random.
pub fn make_jwt(claims: Value) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "dispatch-sim"});
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        random_urlsafe(32)
    )
}

/// Decodes the payload of a JWT-shaped token, or None when it is not one.
pub fn decode_jwt_payload(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Mints a fresh access/refresh/id token set for an account.
pub fn mint_tokens(account: &AccountScript, issuer: &str, now_ms: u64) -> Tokens {
    let now_s = now_ms / 1000;
    // The sim honours the token to the millisecond; the `exp` claim rounds down, so a
    // client trusting the claim never uses a token the sim already considers expired.
    let expires_at_ms = now_ms + account.access_token_ttl_seconds * 1000;
    let exp = expires_at_ms / 1000;
    let email = account.email();
    let auth = json!({
        "chatgpt_account_id": account.account_id,
        "chatgpt_user_id": account.user_id(),
        "chatgpt_plan_type": account.plan,
        "user_id": account.user_id(),
    });
    let access = make_jwt(json!({
        "iss": issuer,
        "aud": ["https://api.openai.com/v1"],
        "sub": account.user_id(),
        "iat": now_s,
        "exp": exp,
        "jti": random_urlsafe(12),
        AUTH_CLAIM: auth,
        PROFILE_CLAIM: {"email": email, "email_verified": true},
    }));
    let id_token = make_jwt(json!({
        "iss": issuer,
        "aud": crate::CLIENT_ID,
        "sub": account.user_id(),
        "iat": now_s,
        "exp": exp,
        "email": email,
        "email_verified": true,
        AUTH_CLAIM: auth,
        PROFILE_CLAIM: {"email": email},
    }));
    Tokens {
        account_id: account.account_id.clone(),
        access,
        refresh: format!("rt_sim_{}", random_urlsafe(32)),
        id_token,
        expires_at_ms,
    }
}

/// `n` random bytes as base64url without padding.
pub fn random_urlsafe(n: usize) -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(n))
}

/// `n` random bytes from the OS. Should the OS refuse, a hash of the clock and a counter
/// stands in: the sim only needs unique, unguessable-enough test tokens.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    if getrandom::fill(&mut buf).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut seed = Vec::new();
        for chunk in buf.chunks_mut(32) {
            seed.extend_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
            seed.extend_from_slice(&crate::clock::now_ms().to_le_bytes());
            let digest = Sha256::digest(&seed);
            chunk.copy_from_slice(&digest[..chunk.len()]);
        }
    }
    buf
}

/// The PKCE S256 challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A user code in the `ABCD-1234` shape the device page expects.
pub fn user_code() -> String {
    const LETTERS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    let bytes = random_bytes(8);
    let letters: String = bytes[..4]
        .iter()
        .map(|b| LETTERS[*b as usize % LETTERS.len()] as char)
        .collect();
    let digits: String = bytes[4..].iter().map(|b| (b'0' + b % 10) as char).collect();
    format!("{letters}-{digits}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_carry_the_account_claims() {
        let account = AccountScript::new("acct-a");
        let tokens = mint_tokens(&account, "http://127.0.0.1:1", 1_000_000);
        let access = decode_jwt_payload(&tokens.access).expect("access decodes");
        assert_eq!(access[AUTH_CLAIM]["chatgpt_account_id"], "acct-a");
        assert_eq!(access["exp"], 1000 + 3600);
        let id = decode_jwt_payload(&tokens.id_token).expect("id decodes");
        assert_eq!(id["email"], "acct-a@example.com");
        assert_eq!(id[PROFILE_CLAIM]["email"], "acct-a@example.com");
        assert_eq!(tokens.expires_at_ms, (1000 + 3600) * 1000);
    }

    #[test]
    fn every_token_is_unique() {
        let account = AccountScript::new("acct-a");
        let a = mint_tokens(&account, "http://x", 0);
        let b = mint_tokens(&account, "http://x", 0);
        assert_ne!(a.access, b.access);
        assert_ne!(a.refresh, b.refresh);
        assert_ne!(a.id_token, b.id_token);
    }

    /// pi decodes the payload with `atob`, which rejects the base64url characters `-`
    /// and `_`. JSON made of ASCII without `>`, `?` or `~` never produces them.
    #[test]
    fn payloads_decode_with_plain_base64() {
        let account = AccountScript::new("acct-a");
        for _ in 0..50 {
            let tokens = mint_tokens(&account, "http://127.0.0.1:4567", crate::clock::now_ms());
            for token in [&tokens.access, &tokens.id_token] {
                let payload = token.split('.').nth(1).unwrap_or_default();
                assert!(!payload.contains(['-', '_']), "payload {payload}");
            }
        }
    }

    #[test]
    fn pkce_matches_rfc7636_example() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
