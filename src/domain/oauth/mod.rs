//! The OAuth pieces of a login and a refresh, as data: PKCE, the authorize URL, pasted
//! redirects, token answers and the claims inside the tokens. Pure: randomness and the time are
//! passed in.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::{Rng, RngExt as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use crate::domain::text;

pub mod redirect;
use crate::error::{Error, ErrorKind, json_problem};

/// The OAuth client id of the Codex CLI, which pi uses too.
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
const SCOPE: &str = "openid profile email offline_access";
/// Names the client to the authorization server, as pi does for its own Codex login.
const ORIGINATOR: &str = "pi";
/// Where the browser login's answer arrives on the callback listener.
pub const CALLBACK_PATH: &str = "/auth/callback";
const AUTH_CLAIM: &str = "https://api.openai.com/auth";
const PROFILE_CLAIM: &str = "https://api.openai.com/profile";
/// Used when the token endpoint gives no lifetime and the token carries no `exp`.
const FALLBACK_LIFETIME_MS: u64 = 60 * 60 * 1000;

/// Refresh failure codes after which only a new login helps.
const PERMANENT_CODES: [&str; 6] = [
    "refresh_token_expired",
    "refresh_token_reused",
    "refresh_token_invalidated",
    "refresh_token_exhausted",
    // Seen from the token endpoint for a refresh token past its life.
    "token_expired",
    // Standard OAuth's word for a refresh token the server no longer accepts.
    "invalid_grant",
];

/// An account's OAuth tokens.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    #[serde(default)]
    pub id_token: Option<String>,
    /// When the access token expires, in unix milliseconds.
    pub expires_at_ms: u64,
}

/// Secrets never reach a log through `{:?}`.
impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// A PKCE pair (RFC 7636, S256).
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    /// A fresh pair from `rng`.
    pub fn generate(rng: &mut impl Rng) -> Self {
        let verifier = random_token(rng);
        Self {
            challenge: pkce_challenge(&verifier),
            verifier,
        }
    }
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkce")
            .field("verifier", &"<redacted>")
            .field("challenge", &self.challenge)
            .finish()
    }
}

/// The S256 challenge of a verifier: base64url(SHA-256(verifier)), unpadded.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// 32 random bytes as base64url: 43 characters, all valid in a PKCE verifier and a URL.
pub fn random_token(rng: &mut impl Rng) -> String {
    let bytes: [u8; 32] = rng.random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The browser login's start page: the issuer's authorize endpoint with this login's query.
pub fn authorize_url(endpoint: &Url, redirect_uri: &str, challenge: &str, state: &str) -> Url {
    let mut url = endpoint.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", SCOPE)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("id_token_add_organizations", "true")
        .append_pair("codex_cli_simplified_flow", "true")
        .append_pair("state", state)
        .append_pair("originator", ORIGINATOR);
    url
}

/// Who logged in, from the token claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub chatgpt_account_id: String,
    pub chatgpt_user_id: Option<String>,
    pub email: Option<String>,
    pub plan: Option<String>,
}

/// The identity in a token set: the id token's claims first, the access token's where the id
/// token is silent.
pub fn identity(tokens: &Tokens) -> Result<Identity, Error> {
    let claims: Vec<Value> = tokens
        .id_token
        .iter()
        .chain([&tokens.access_token])
        .filter_map(|t| jwt_claims(t))
        .collect();
    let find = |pointer: &str| {
        claims
            .iter()
            .find_map(|c| c.pointer(pointer)?.as_str().filter(|s| !s.is_empty()))
            .map(str::to_owned)
    };
    // JSON pointers escape `/` in claim names as `~1`.
    let auth = AUTH_CLAIM.replace('/', "~1");
    let profile = PROFILE_CLAIM.replace('/', "~1");
    let chatgpt_account_id = find(&format!("/{auth}/chatgpt_account_id"))
        .ok_or_else(|| Error::new(ErrorKind::Login, text::NO_ACCOUNT_ID))?;
    Ok(Identity {
        chatgpt_account_id,
        chatgpt_user_id: find(&format!("/{auth}/chatgpt_user_id"))
            .or_else(|| find(&format!("/{auth}/user_id"))),
        email: find("/email").or_else(|| find(&format!("/{profile}/email"))),
        plan: find(&format!("/{auth}/chatgpt_plan_type")),
    })
}

/// Why a refresh was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshRefusal {
    /// Only a new login helps; the code (or what stands for it) says why.
    Permanent(String),
    /// The token endpoint's trouble: try again later.
    Transient,
}

/// What a refused refresh means, from its status and body. The code may sit in `error.code`,
/// in `error` as a string or in a top-level `code`; any 401 is permanent too.
pub fn refresh_refusal(status: u16, body: &[u8]) -> RefreshRefusal {
    if let Some(code) = error_codes(body)
        .into_iter()
        .find(|c| PERMANENT_CODES.contains(&c.as_str()))
    {
        return RefreshRefusal::Permanent(code);
    }
    if status == 401 {
        return RefreshRefusal::Permanent(text::REFRESH_TOKEN_REFUSED.into());
    }
    RefreshRefusal::Transient
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The tokens in a successful token answer received at `now_ms`. `kept_refresh` stands in when
/// the answer carries no refresh token (a server that does not rotate keeps the old one valid);
/// without one, there is nothing to refresh with later.
pub fn parse_tokens(
    body: &[u8],
    kind: ErrorKind,
    kept_refresh: Option<&str>,
    now_ms: u64,
) -> Result<Tokens, Error> {
    let parsed: TokenResponse = serde_json::from_slice(body)
        .map_err(|e| Error::new(kind, text::not_a_token_answer(&json_problem(&e))))?;
    let refresh_token = parsed
        .refresh_token
        .or_else(|| kept_refresh.map(str::to_owned))
        .ok_or_else(|| Error::new(kind, text::NO_REFRESH_TOKEN))?;
    let expires_at_ms = match parsed.expires_in {
        Some(seconds) => now_ms + seconds.saturating_mul(1000),
        None => jwt_expiry_ms(&parsed.access_token).unwrap_or(now_ms + FALLBACK_LIFETIME_MS),
    };
    Ok(Tokens {
        access_token: parsed.access_token,
        refresh_token,
        id_token: parsed.id_token,
        expires_at_ms,
    })
}

/// Error codes wherever OAuth servers put them: `error` as a string, `error.code`,
/// `error.type`, or a top-level `code`.
pub fn error_codes(body: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let candidates = [
        value.get("error").and_then(|e| e.as_str()),
        value.pointer("/error/code").and_then(|c| c.as_str()),
        value.pointer("/error/type").and_then(|c| c.as_str()),
        value.get("code").and_then(|c| c.as_str()),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(str::to_owned)
        .collect()
}

/// The `exp` claim of a JWT, in unix milliseconds.
pub fn jwt_expiry_ms(token: &str) -> Option<u64> {
    jwt_claims(token)?.get("exp")?.as_u64()?.checked_mul(1000)
}

/// The payload of a JWT as JSON. The signature is not checked: the token came straight from
/// the token endpoint over TLS, and only the backend relies on it.
pub fn jwt_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pkce_challenge_matches_rfc_7636() {
        // The example verifier and challenge of RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn pkce_pairs_are_fresh_valid_and_redacted() {
        let (a, b) = (
            Pkce::generate(&mut rand::rng()),
            Pkce::generate(&mut rand::rng()),
        );
        assert_ne!(a.verifier, b.verifier);
        assert_eq!(a.challenge, pkce_challenge(&a.verifier));
        // RFC 7636: 43 to 128 characters of [A-Za-z0-9-._~].
        assert_eq!(a.verifier.len(), 43);
        assert!(
            a.verifier
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
        );
        assert!(!format!("{a:?}").contains(&a.verifier));
    }

    #[test]
    fn authorize_url_carries_every_parameter() {
        let endpoint = Url::parse("https://auth.openai.com/oauth/authorize").unwrap();
        let url = authorize_url(
            &endpoint,
            "http://localhost:1455/auth/callback",
            "chal",
            "st",
        );
        assert_eq!(url.path(), "/oauth/authorize");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("client_id"), Some(CLIENT_ID));
        assert_eq!(
            get("redirect_uri"),
            Some("http://localhost:1455/auth/callback")
        );
        assert_eq!(get("scope"), Some("openid profile email offline_access"));
        assert_eq!(get("code_challenge"), Some("chal"));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("id_token_add_organizations"), Some("true"));
        assert_eq!(get("codex_cli_simplified_flow"), Some("true"));
        assert_eq!(get("state"), Some("st"));
        assert_eq!(get("originator"), Some("pi"));
    }

    fn jwt(claims: Value) -> String {
        format!(
            "h.{}.s",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
        )
    }

    fn tokens(id_token: Option<Value>, access: Value) -> Tokens {
        Tokens {
            access_token: jwt(access),
            refresh_token: "rt".into(),
            id_token: id_token.map(jwt),
            expires_at_ms: 0,
        }
    }

    #[test]
    fn identity_comes_from_the_id_token_then_the_access_token() {
        let id = json!({
            "email": "a@example.com",
            AUTH_CLAIM: {"chatgpt_account_id": "acct-1", "chatgpt_plan_type": "pro"},
        });
        let access = json!({
            AUTH_CLAIM: {"chatgpt_account_id": "acct-ignored", "chatgpt_user_id": "user-1"},
        });
        assert_eq!(
            identity(&tokens(Some(id), access)).unwrap(),
            Identity {
                chatgpt_account_id: "acct-1".into(),
                chatgpt_user_id: Some("user-1".into()),
                email: Some("a@example.com".into()),
                plan: Some("pro".into()),
            }
        );
        let profile_only = json!({
            AUTH_CLAIM: {"chatgpt_account_id": "acct-2", "user_id": "user-2"},
            PROFILE_CLAIM: {"email": "b@example.com"},
        });
        let found = identity(&tokens(None, profile_only)).unwrap();
        assert_eq!(found.email.as_deref(), Some("b@example.com"));
        assert_eq!(found.chatgpt_user_id.as_deref(), Some("user-2"));
        assert_eq!(found.plan, None);
    }

    #[test]
    fn tokens_without_an_account_id_are_refused() {
        let error = identity(&tokens(Some(json!({"email": "a@b"})), json!({}))).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Login);
        let garbage = Tokens {
            access_token: "not a jwt".into(),
            refresh_token: "rt".into(),
            id_token: Some("x.!!.y".into()),
            expires_at_ms: 0,
        };
        assert_eq!(identity(&garbage).unwrap_err().kind, ErrorKind::Login);
    }

    #[test]
    fn error_codes_are_found_in_every_usual_place() {
        let nested = br#"{"error":{"code":"refresh_token_reused","message":"m"}}"#;
        assert!(error_codes(nested).contains(&"refresh_token_reused".to_string()));
        let flat = br#"{"error":"invalid_grant","error_description":"d"}"#;
        assert_eq!(error_codes(flat), vec!["invalid_grant".to_string()]);
        let top = br#"{"code":"refresh_token_expired"}"#;
        assert_eq!(error_codes(top), vec!["refresh_token_expired".to_string()]);
        assert!(error_codes(b"<html>bad gateway</html>").is_empty());
    }

    #[test]
    fn jwt_expiry_reads_the_exp_claim() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"exp":1770000000}"#);
        assert_eq!(
            jwt_expiry_ms(&format!("h.{payload}.s")),
            Some(1_770_000_000_000)
        );
        assert_eq!(jwt_expiry_ms("not-a-jwt"), None);
        assert_eq!(jwt_expiry_ms("h.!!!.s"), None);
    }

    #[test]
    fn a_token_answer_of_the_wrong_shape_is_refused_without_quoting_it() {
        let answers: [&[u8]; 3] = [
            br#"{"access_token":"sentinel-a","refresh_token":"sentinel-r","expires_in":"sentinel-e"}"#,
            br#"{"access_token":["sentinel-a"],"refresh_token":"sentinel-r"}"#,
            br#"{"refresh_token":"sentinel-r","id_token":7}"#,
        ];
        for answer in answers {
            let error = parse_tokens(answer, ErrorKind::Auth, Some("kept"), 0).unwrap_err();
            let shown = format!("{error} {error:?} {}", error.chain());
            assert!(shown.contains("not a token response"), "{shown}");
            assert!(!shown.contains("sentinel"), "{shown}");
        }
    }
}
