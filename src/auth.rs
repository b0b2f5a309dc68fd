//! Access tokens that are fresh when used, and refresh tokens that are never burned.
//!
//! Refresh tokens rotate: each works once, and a second use logs the account out for good. Users
//! run several pi processes at once, so a refresh is guarded twice: one refresh at a time per
//! account inside a process (a per-account async lock), and across processes a per-account lock
//! file, under which the stored tokens are re-read first. If another process already refreshed,
//! its tokens are adopted without calling the token endpoint. New tokens reach the disk before
//! anyone uses them, and the refresh runs in its own task, so a caller that gives up half-way
//! (pi aborted the request) cannot drop tokens the server has already rotated.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use serde::Deserialize;

use crate::config::join;
use crate::context::Context;
use crate::error::{Error, ErrorKind, json_problem};
use crate::now_ms;
use crate::store::{Account, AccountState, Tokens};

/// The OAuth client id of the Codex CLI, which pi uses too.
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
/// A token with less left than this is refreshed before an upstream call.
pub const REFRESH_MARGIN_MS: u64 = 5 * 60 * 1000;
/// Used when the token endpoint gives no lifetime and the token carries no `exp`.
const FALLBACK_LIFETIME_MS: u64 = 60 * 60 * 1000;

/// Refresh failure codes after which only a new login helps.
const PERMANENT_CODES: [&str; 4] = [
    "refresh_token_expired",
    "refresh_token_reused",
    "refresh_token_invalidated",
    // Standard OAuth's word for a refresh token the server no longer accepts.
    "invalid_grant",
];

/// The refreshes in flight in one process: one lock per account id, so refreshes of one
/// account queue while those of others run. Lives in [`Context`].
#[derive(Default)]
pub struct Auth {
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Auth {
    fn gate(&self, account_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.in_flight
            .lock()
            .entry(account_id.to_owned())
            .or_default()
            .clone()
    }
}

/// Why a token could not be had.
#[derive(Debug)]
pub enum TokenError {
    /// Only a new login makes the account usable again (it is marked so in the store, or it is
    /// no longer there).
    NeedsLogin(String),
    /// The token endpoint or the store failed for now; try again later.
    Transient(Error),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NeedsLogin(reason) => write!(f, "the account must log in again ({reason})"),
            Self::Transient(e) => f.write_str(&e.chain()),
        }
    }
}

/// An access token for `account` with at least [`REFRESH_MARGIN_MS`] left, refreshing first
/// if needed. If a refresh fails for now but the current token has not expired yet, the
/// current token is still good enough to use.
pub async fn access_token(ctx: &Arc<Context>, account: &Account) -> Result<String, TokenError> {
    let now = now_ms();
    if account.tokens.expires_at_ms > now + REFRESH_MARGIN_MS {
        return Ok(account.tokens.access_token.clone());
    }
    match refresh(ctx, account, None).await {
        Ok(tokens) => Ok(tokens.access_token),
        Err(TokenError::Transient(_)) if account.tokens.expires_at_ms > now_ms() => {
            Ok(account.tokens.access_token.clone())
        }
        Err(e) => Err(e),
    }
}

/// Replaces a token the backend refused (401): adopts a newer stored one if another process
/// refreshed already, else refreshes.
pub async fn replace_rejected(
    ctx: &Arc<Context>,
    account: &Account,
    rejected_access_token: &str,
) -> Result<String, TokenError> {
    refresh(ctx, account, Some(rejected_access_token.to_owned()))
        .await
        .map(|tokens| tokens.access_token)
}

async fn refresh(
    ctx: &Arc<Context>,
    account: &Account,
    rejected: Option<String>,
) -> Result<Tokens, TokenError> {
    let (ctx, id) = (ctx.clone(), account.id.clone());
    // Detached: dropping the caller's future must not abandon a rotation half-done.
    tokio::spawn(async move { refresh_detached(&ctx, &id, rejected).await })
        .await
        .unwrap_or_else(|e| {
            Err(TokenError::Transient(
                Error::new(ErrorKind::Auth, "the token refresh task failed").with_source(e),
            ))
        })
}

async fn refresh_detached(
    ctx: &Context,
    account_id: &str,
    rejected: Option<String>,
) -> Result<Tokens, TokenError> {
    let gate = ctx.auth.gate(account_id);
    let _in_process = gate.lock().await;
    let store = ctx.store.clone();
    let lock_name = account_id.to_owned();
    let _across_processes = tokio::task::spawn_blocking(move || store.account_lock(&lock_name))
        .await
        .map_err(|e| {
            TokenError::Transient(Error::new(ErrorKind::Auth, "lock task failed").with_source(e))
        })?
        .map_err(TokenError::Transient)?;

    // Under both locks: whatever is stored now is the truth.
    let stored = current(ctx, account_id)?;
    if let AccountState::NeedsLogin { reason } = &stored.state {
        return Err(TokenError::NeedsLogin(reason.clone()));
    }
    let already_replaced = match &rejected {
        Some(rejected) => stored.tokens.access_token != *rejected,
        None => stored.tokens.expires_at_ms > now_ms() + REFRESH_MARGIN_MS,
    };
    if already_replaced {
        return Ok(stored.tokens);
    }

    match call_token_endpoint(ctx, &stored.tokens.refresh_token).await {
        Ok(tokens) => {
            let saved = tokens.clone();
            ctx.store
                .update_account(account_id, |account| account.tokens = saved)
                .map_err(TokenError::Transient)?;
            Ok(tokens)
        }
        Err(RefreshFailure::Permanent(reason)) => {
            let marked = reason.clone();
            let used = &stored.tokens.refresh_token;
            ctx.store
                .update_account(account_id, |account| {
                    // Tokens saved meanwhile (a new login) are not the ones that failed.
                    if account.tokens.refresh_token == *used {
                        account.state = AccountState::NeedsLogin { reason: marked };
                    }
                })
                .map_err(TokenError::Transient)?;
            Err(TokenError::NeedsLogin(reason))
        }
        Err(RefreshFailure::Transient(e)) => Err(TokenError::Transient(e)),
    }
}

fn current(ctx: &Context, account_id: &str) -> Result<Account, TokenError> {
    let file = ctx.store.load().map_err(TokenError::Transient)?;
    file.accounts
        .into_iter()
        .find(|a| a.id == account_id)
        .ok_or_else(|| TokenError::NeedsLogin("the account was removed".into()))
}

enum RefreshFailure {
    Permanent(String),
    Transient(Error),
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

async fn call_token_endpoint(ctx: &Context, refresh_token: &str) -> Result<Tokens, RefreshFailure> {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", CLIENT_ID),
    ];
    let (status, body) = post_token_form(ctx, ErrorKind::Auth, &form)
        .await
        .map_err(RefreshFailure::Transient)?;
    if !status.is_success() {
        let codes = error_codes(&body);
        if let Some(code) = codes.iter().find(|c| PERMANENT_CODES.contains(&c.as_str())) {
            return Err(RefreshFailure::Permanent(code.clone()));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(RefreshFailure::Permanent(
                "the token endpoint refused the refresh token".into(),
            ));
        }
        return Err(RefreshFailure::Transient(Error::new(
            ErrorKind::Auth,
            format!("the token endpoint answered {status}"),
        )));
    }
    // A server that does not rotate keeps the old refresh token valid.
    parse_tokens(&body, ErrorKind::Auth, Some(refresh_token)).map_err(RefreshFailure::Transient)
}

/// Exchanges the authorization code of a browser or device login for the account's tokens.
pub async fn exchange_code(
    ctx: &Context,
    code: &str,
    redirect_uri: &str,
    code_verifier: &str,
) -> Result<Tokens, Error> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", CLIENT_ID),
        ("code_verifier", code_verifier),
    ];
    let (status, body) = post_token_form(ctx, ErrorKind::Login, &form).await?;
    if !status.is_success() {
        // Only the error code: the rest of an OAuth error body is free text from the server.
        let code = error_codes(&body)
            .into_iter()
            .next()
            .map_or_else(String::new, |c| format!(", {c}"));
        return Err(Error::new(
            ErrorKind::Login,
            format!(
                "the token endpoint refused the authorization code ({status}{code}); nothing was \
                 changed. Run /dispatch-login again"
            ),
        ));
    }
    parse_tokens(&body, ErrorKind::Login, None)
}

/// Posts a form to the token endpoint and reads the whole answer, whatever its status.
async fn post_token_form(
    ctx: &Context,
    kind: ErrorKind,
    form: &[(&str, &str)],
) -> Result<(reqwest::StatusCode, bytes::Bytes), Error> {
    let response = ctx
        .http
        .client()?
        .post(join(&ctx.endpoints.auth, "oauth/token"))
        .timeout(ctx.timeouts.token)
        .form(form)
        .send()
        .await
        // reqwest's message names the URL only; the form body never appears in it.
        .map_err(|e| Error::new(kind, "the token endpoint did not answer").with_source(e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| Error::new(kind, "the token endpoint's answer broke off").with_source(e))?;
    Ok((status, body))
}

/// The tokens in a successful token answer. `kept_refresh` stands in when the answer carries no
/// refresh token; without one, there is nothing to refresh with later.
fn parse_tokens(body: &[u8], kind: ErrorKind, kept_refresh: Option<&str>) -> Result<Tokens, Error> {
    let parsed: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        Error::new(
            kind,
            format!(
                "the token endpoint's answer is not a token response ({})",
                json_problem(&e)
            ),
        )
    })?;
    let refresh_token = parsed
        .refresh_token
        .or_else(|| kept_refresh.map(str::to_owned))
        .ok_or_else(|| Error::new(kind, "the token endpoint's answer has no refresh token"))?;
    let expires_at_ms = match parsed.expires_in {
        Some(seconds) => now_ms() + seconds.saturating_mul(1000),
        None => jwt_expiry_ms(&parsed.access_token).unwrap_or(now_ms() + FALLBACK_LIFETIME_MS),
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
pub(crate) fn error_codes(body: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
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
pub fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let error = parse_tokens(answer, ErrorKind::Auth, Some("kept")).unwrap_err();
            let shown = format!("{error} {error:?} {}", error.chain());
            assert!(shown.contains("not a token response"), "{shown}");
            assert!(!shown.contains("sentinel"), "{shown}");
        }
    }
}
