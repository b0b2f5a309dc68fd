//! Access tokens that are fresh when used, and refresh tokens that are never burned.
//!
//! Refresh tokens rotate: each works once, and a second use logs the account out for good. Users
//! run several pi processes at once, so a refresh is a guarded transaction: one refresh at a
//! time per account inside a process (a per-account async lock), and across processes a
//! per-account lock file, under which the stored tokens are re-read first. If another process
//! already refreshed, its tokens are adopted without calling the token endpoint. New tokens
//! reach the disk before anyone uses them, and the refresh runs in its own task, so a caller
//! that gives up half-way (pi aborted the request) cannot drop tokens the server has already
//! rotated.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use url::Url;

use crate::domain::account::{Account, AccountState};
use crate::domain::oauth::Tokens;
use crate::domain::oauth::{self, CLIENT_ID, RefreshRefusal};
use crate::domain::text;
use crate::error::{Error, ErrorKind};
use crate::io::clock::now_ms;
use crate::io::http::Http;
use crate::io::oauth::{Body, Call, post};
use crate::io::store::Store;

/// A token with less left than this is refreshed before an upstream call.
pub const REFRESH_MARGIN_MS: u64 = 5 * 60 * 1000;

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

/// The token endpoint and the refreshes in flight in this process.
pub struct Auth {
    store: Store,
    http: Http,
    token_url: Url,
    timeout: Duration,
    /// One lock per account id: refreshes of one account queue while those of others run.
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Auth {
    /// `timeout` bounds each call to the token endpoint at `token_url`.
    pub fn new(store: Store, http: Http, token_url: Url, timeout: Duration) -> Self {
        Self {
            store,
            http,
            token_url,
            timeout,
            in_flight: Mutex::default(),
        }
    }

    /// An access token for `account` with at least [`REFRESH_MARGIN_MS`] left, refreshing
    /// first if needed. If a refresh fails for now but the current token has not expired yet,
    /// the current token is still good enough to use.
    pub async fn access_token(self: &Arc<Self>, account: &Account) -> Result<String, TokenError> {
        let now = now_ms();
        if account.tokens.expires_at_ms > now + REFRESH_MARGIN_MS {
            return Ok(account.tokens.access_token.clone());
        }
        match self.refresh(account, None).await {
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
        self: &Arc<Self>,
        account: &Account,
        rejected_access_token: &str,
    ) -> Result<String, TokenError> {
        self.refresh(account, Some(rejected_access_token.to_owned()))
            .await
            .map(|tokens| tokens.access_token)
    }

    /// Exchanges the authorization code of a browser or device login for the account's tokens.
    pub async fn exchange_code(
        &self,
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
        let (status, body) = self.call(ErrorKind::Login, &form).await?;
        if !status.is_success() {
            // Only the error code: the rest of an OAuth error body is free text from the server.
            let code = oauth::error_codes(&body).into_iter().next();
            return Err(Error::new(
                ErrorKind::Login,
                text::code_refused(&status.to_string(), code.as_deref()),
            ));
        }
        oauth::parse_tokens(&body, ErrorKind::Login, None, now_ms())
    }

    async fn refresh(
        self: &Arc<Self>,
        account: &Account,
        rejected: Option<String>,
    ) -> Result<Tokens, TokenError> {
        let (auth, id) = (self.clone(), account.id.clone());
        // Detached: dropping the caller's future must not abandon a rotation half-done.
        tokio::spawn(async move { auth.refresh_detached(&id, rejected).await })
            .await
            .unwrap_or_else(|e| {
                Err(TokenError::Transient(
                    Error::new(ErrorKind::Auth, text::REFRESH_TASK_FAILED).with_source(e),
                ))
            })
    }

    fn gate(&self, account_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.in_flight
            .lock()
            .entry(account_id.to_owned())
            .or_default()
            .clone()
    }

    async fn refresh_detached(
        &self,
        account_id: &str,
        rejected: Option<String>,
    ) -> Result<Tokens, TokenError> {
        let gate = self.gate(account_id);
        let _in_process = gate.lock().await;
        let lock_name = account_id.to_owned();
        let _across_processes = self
            .store
            .off_thread(move |store| store.account_lock(&lock_name))
            .await
            .map_err(TokenError::Transient)?;

        // Under both locks: whatever is stored now is the truth.
        let stored = self.current(account_id)?;
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

        let used = stored.tokens.refresh_token;
        match self.call_refresh(&used).await {
            Ok(tokens) => {
                let saved = tokens.clone();
                self.store
                    .update_account(account_id, |account| account.tokens = saved)
                    .map_err(TokenError::Transient)?;
                Ok(tokens)
            }
            Err(TokenError::NeedsLogin(reason)) => {
                let marked = reason.clone();
                self.store
                    .update_account(account_id, |account| {
                        // Tokens saved meanwhile (a new login) are not the ones that failed.
                        if account.tokens.refresh_token == used {
                            account.state = AccountState::NeedsLogin { reason: marked };
                        }
                    })
                    .map_err(TokenError::Transient)?;
                Err(TokenError::NeedsLogin(reason))
            }
            Err(transient) => Err(transient),
        }
    }

    fn current(&self, account_id: &str) -> Result<Account, TokenError> {
        let file = self.store.load().map_err(TokenError::Transient)?;
        file.accounts
            .into_iter()
            .find(|a| a.id == account_id)
            .ok_or_else(|| TokenError::NeedsLogin(text::ACCOUNT_REMOVED.into()))
    }

    async fn call_refresh(&self, refresh_token: &str) -> Result<Tokens, TokenError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", CLIENT_ID),
        ];
        let (status, body) = self
            .call(ErrorKind::Auth, &form)
            .await
            .map_err(TokenError::Transient)?;
        if !status.is_success() {
            return Err(match oauth::refresh_refusal(status.as_u16(), &body) {
                RefreshRefusal::Permanent(reason) => TokenError::NeedsLogin(reason),
                RefreshRefusal::Transient => TokenError::Transient(Error::new(
                    ErrorKind::Auth,
                    format!("the token endpoint answered {status}"),
                )),
            });
        }
        oauth::parse_tokens(&body, ErrorKind::Auth, Some(refresh_token), now_ms())
            .map_err(TokenError::Transient)
    }

    async fn call(
        &self,
        kind: ErrorKind,
        form: &[(&str, &str)],
    ) -> Result<(reqwest::StatusCode, bytes::Bytes), Error> {
        post(
            &self.http,
            self.token_url.clone(),
            self.timeout,
            Call::Token(kind),
            Body::Form(form),
        )
        .await
    }
}
