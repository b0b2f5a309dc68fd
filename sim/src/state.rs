//! The simulated world: accounts, their tokens and queues, logins in progress, and the
//! recorder. One `World` lives behind a mutex in `Shared`; handlers lock it briefly and
//! never across an await.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::cipher::ContentKey;
use crate::clock;
use crate::jwt::{self, Tokens};
use crate::limits::AccountLimits;
use crate::script::{
    AccountScript, Behavior, DeviceScript, EncryptedContentCheck, Script, TokenBehavior, Usage,
    UsageEndpointScript,
};
use crate::stats::{Outcome, Recorder};

/// Everything the HTTP handlers share.
pub(crate) struct Shared {
    pub world: Mutex<World>,
    /// `http://127.0.0.1:PORT`, the issuer and origin of every endpoint.
    pub base_url: String,
    pub latency_ms: u64,
    /// The secret behind every `encrypted_content` this simulator mints.
    pub content_key: ContentKey,
}

/// Returned when an API call names an account the script does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAccount(pub String);

impl fmt::Display for UnknownAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no scripted account named {:?}", self.0)
    }
}

impl std::error::Error for UnknownAccount {}

/// Why a device login could not be approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproveError {
    UnknownAccount(UnknownAccount),
    NoAccounts,
    /// No pending device login (with that user code).
    NoPendingLogin,
}

impl fmt::Display for ApproveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApproveError::UnknownAccount(e) => e.fmt(f),
            ApproveError::NoAccounts => write!(f, "the script has no accounts"),
            ApproveError::NoPendingLogin => {
                write!(f, "no pending device login with that user code")
            }
        }
    }
}

impl std::error::Error for ApproveError {}

/// One rate-limit window with its reset pinned to a wall-clock time.
#[derive(Debug, Clone)]
pub(crate) struct LiveWindow {
    pub used_percent: f64,
    pub window_minutes: u64,
    pub reset_at_s: u64,
}

impl LiveWindow {
    pub fn reset_after_s(&self, now_s: u64) -> u64 {
        self.reset_at_s.saturating_sub(now_s)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct LiveUsage {
    pub primary: Option<LiveWindow>,
    pub secondary: Option<LiveWindow>,
}

impl LiveUsage {
    pub(crate) fn pin(usage: &Usage, now_s: u64) -> LiveUsage {
        let pin = |w: &crate::script::Window| LiveWindow {
            used_percent: w.used_percent,
            window_minutes: w.window_minutes,
            reset_at_s: now_s + w.reset_after_seconds,
        };
        LiveUsage {
            primary: usage.primary.as_ref().map(pin),
            secondary: usage.secondary.as_ref().map(pin),
        }
    }
}

/// A scripted account at run time.
pub(crate) struct Account {
    pub script: AccountScript,
    pub behaviors: VecDeque<Behavior>,
    pub default: Behavior,
    pub token_behaviors: VecDeque<TokenBehavior>,
    pub usage: LiveUsage,
    pub usage_endpoint: UsageEndpointScript,
    /// Limit families, credits and banked resets.
    pub limits: AccountLimits,
    /// Valid access tokens and when each expires (unix ms). Earlier tokens stay valid
    /// after a refresh until they expire, as with the real issuer.
    pub access_tokens: HashMap<String, u64>,
    /// The latest token set; its refresh token is the only one that still works.
    pub current: Tokens,
}

impl Account {
    pub fn next_behavior(&mut self) -> Behavior {
        self.behaviors
            .pop_front()
            .unwrap_or_else(|| self.default.clone())
    }
}

/// What became of a refresh token the sim handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefreshState {
    /// The account's one working refresh token.
    Current,
    /// Already exchanged once: using it again is `refresh_token_reused`.
    Used,
    /// Superseded by a newer login without ever being used: `refresh_token_invalidated`.
    Replaced,
}

/// An authorization code waiting to be exchanged.
#[derive(Debug, Clone)]
pub(crate) struct PendingCode {
    pub account_id: String,
    pub code_challenge: String,
    pub redirect_uri: String,
}

/// Who logs in at the next `/oauth/authorize`.
#[derive(Debug, Clone)]
pub(crate) enum LoginChoice {
    Account(String),
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeviceState {
    Pending,
    Approved(String),
    Denied,
}

/// A device-code login in progress.
#[derive(Debug, Clone)]
pub(crate) struct DeviceSession {
    pub device_auth_id: String,
    pub user_code: String,
    pub polls: u32,
    pub state: DeviceState,
}

/// Result of checking a backend request's credentials.
pub(crate) enum AccessCheck {
    Ok,
    /// No `chatgpt-account-id`, or one the script does not know.
    UnknownAccount,
    /// Known account, but the bearer token is missing, foreign, revoked or expired.
    BadToken,
}

pub(crate) struct World {
    accounts: Vec<Account>,
    refresh_tokens: HashMap<String, (String, RefreshState)>,
    pub codes: HashMap<String, PendingCode>,
    pub login_queue: VecDeque<LoginChoice>,
    pub devices: Vec<DeviceSession>,
    pub device_script: DeviceScript,
    pub recorder: Recorder,
    issuer: String,
}

impl World {
    pub fn new(script: &Script, issuer: &str) -> World {
        let now_ms = clock::now_ms();
        let mut world = World {
            accounts: Vec::new(),
            refresh_tokens: HashMap::new(),
            codes: HashMap::new(),
            login_queue: VecDeque::new(),
            devices: Vec::new(),
            device_script: script.device.clone(),
            recorder: Recorder::new(script.request_log_limit),
            issuer: issuer.to_string(),
        };
        for account_script in &script.accounts {
            let tokens = jwt::mint_tokens(account_script, issuer, now_ms);
            let default = account_script.default.clone().unwrap_or_else(|| {
                Behavior::ok(&format!("hello from {}", account_script.account_id))
            });
            world.recorder.account(&account_script.account_id);
            world.refresh_tokens.insert(
                tokens.refresh.clone(),
                (account_script.account_id.clone(), RefreshState::Current),
            );
            world.accounts.push(Account {
                script: account_script.clone(),
                behaviors: account_script.behaviors.iter().cloned().collect(),
                default,
                token_behaviors: account_script.token_behaviors.iter().cloned().collect(),
                usage: LiveUsage::pin(&account_script.usage, now_ms / 1000),
                usage_endpoint: account_script.usage_endpoint.clone(),
                limits: AccountLimits::new(account_script, now_ms / 1000),
                access_tokens: HashMap::from([(tokens.access.clone(), tokens.expires_at_ms)]),
                current: tokens,
            });
        }
        world
    }

    pub fn account(&self, account_id: &str) -> Option<&Account> {
        self.accounts
            .iter()
            .find(|a| a.script.account_id == account_id)
    }

    pub fn account_mut(&mut self, account_id: &str) -> Result<&mut Account, UnknownAccount> {
        self.accounts
            .iter_mut()
            .find(|a| a.script.account_id == account_id)
            .ok_or_else(|| UnknownAccount(account_id.to_string()))
    }

    pub fn first_account_id(&self) -> Option<String> {
        self.accounts.first().map(|a| a.script.account_id.clone())
    }

    pub fn account_ids(&self) -> Vec<String> {
        self.accounts
            .iter()
            .map(|a| a.script.account_id.clone())
            .collect()
    }

    /// Checks `chatgpt-account-id` plus bearer token the way the backend does.
    pub fn check_access(&self, account_id: Option<&str>, bearer: Option<&str>) -> AccessCheck {
        let Some(account) = account_id.and_then(|id| self.account(id)) else {
            return AccessCheck::UnknownAccount;
        };
        let now_ms = clock::now_ms();
        match bearer.and_then(|token| account.access_tokens.get(token)) {
            Some(expires_at_ms) if *expires_at_ms > now_ms => AccessCheck::Ok,
            _ => AccessCheck::BadToken,
        }
    }

    /// Mints a new token set for an account after a login: the new refresh token becomes
    /// the only working one, and an unused previous one is invalidated.
    pub fn login(&mut self, account_id: &str) -> Result<Tokens, UnknownAccount> {
        let issuer = self.issuer.clone();
        let account = self.account_mut(account_id)?;
        let tokens = jwt::mint_tokens(&account.script, &issuer, clock::now_ms());
        let previous = std::mem::replace(&mut account.current, tokens.clone());
        account
            .access_tokens
            .insert(tokens.access.clone(), tokens.expires_at_ms);
        if let Some(entry) = self.refresh_tokens.get_mut(&previous.refresh)
            && entry.1 == RefreshState::Current
        {
            entry.1 = RefreshState::Replaced;
        }
        self.refresh_tokens.insert(
            tokens.refresh.clone(),
            (account_id.to_string(), RefreshState::Current),
        );
        Ok(tokens)
    }

    /// Looks up who a refresh token belongs to and what became of it.
    pub fn refresh_token_state(&self, refresh_token: &str) -> Option<(String, RefreshState)> {
        self.refresh_tokens.get(refresh_token).cloned()
    }

    /// Exchanges the current refresh token for a new set; the old one becomes `Used`.
    pub fn rotate(&mut self, refresh_token: &str) -> Option<Tokens> {
        let (account_id, state) = self.refresh_token_state(refresh_token)?;
        if state != RefreshState::Current {
            return None;
        }
        let tokens = self.login(&account_id).ok()?;
        self.refresh_tokens
            .insert(refresh_token.to_string(), (account_id, RefreshState::Used));
        Some(tokens)
    }

    /// Makes every access token of the account invalid (the backend then answers 401).
    pub fn revoke_access_tokens(&mut self, account_id: &str) -> Result<(), UnknownAccount> {
        self.account_mut(account_id)?.access_tokens.clear();
        Ok(())
    }

    /// Makes the account's refresh token invalid (`refresh_token_invalidated`).
    pub fn revoke_refresh_token(&mut self, account_id: &str) -> Result<(), UnknownAccount> {
        let refresh = self.account_mut(account_id)?.current.refresh.clone();
        if let Some(entry) = self.refresh_tokens.get_mut(&refresh) {
            entry.1 = RefreshState::Replaced;
        }
        Ok(())
    }

    pub fn set_usage(&mut self, account_id: &str, usage: &Usage) -> Result<(), UnknownAccount> {
        self.account_mut(account_id)?.usage = LiveUsage::pin(usage, clock::now_s());
        Ok(())
    }

    /// Deactivates the account with this 401 code, or (None) activates it again.
    pub fn set_deactivated(
        &mut self,
        account_id: &str,
        code: Option<&str>,
    ) -> Result<(), UnknownAccount> {
        self.account_mut(account_id)?.script.deactivated = code.map(str::to_string);
        Ok(())
    }

    pub fn set_encrypted_content_check(
        &mut self,
        account_id: &str,
        check: EncryptedContentCheck,
    ) -> Result<(), UnknownAccount> {
        self.account_mut(account_id)?.script.encrypted_content = check;
        Ok(())
    }

    /// Decides who consents at the next `/oauth/authorize` (None = deny).
    pub fn queue_login(&mut self, account_id: Option<&str>) -> Result<(), UnknownAccount> {
        let choice = match account_id {
            Some(id) => {
                self.account_mut(id)?;
                LoginChoice::Account(id.to_string())
            }
            None => LoginChoice::Deny,
        };
        self.login_queue.push_back(choice);
        Ok(())
    }

    /// Approves (or denies) a pending device login, by user code or else the newest
    /// pending one, as `account_id` or else the first account. Returns the user code.
    pub fn approve_device(
        &mut self,
        user_code: Option<&str>,
        account_id: Option<&str>,
        deny: bool,
    ) -> Result<String, ApproveError> {
        let account_id = match account_id {
            Some(id) => {
                self.account_mut(id).map_err(ApproveError::UnknownAccount)?;
                id.to_string()
            }
            None => self.first_account_id().ok_or(ApproveError::NoAccounts)?,
        };
        let session = self
            .devices
            .iter_mut()
            .rev()
            .filter(|d| d.state == DeviceState::Pending)
            .find(|d| user_code.is_none_or(|code| d.user_code.eq_ignore_ascii_case(code)))
            .ok_or(ApproveError::NoPendingLogin)?;
        session.state = if deny {
            DeviceState::Denied
        } else {
            DeviceState::Approved(account_id)
        };
        Ok(session.user_code.clone())
    }

    /// Records how a `/codex/responses` answer ended; a disconnect also counts per account.
    pub fn finish_request(&mut self, seq: u64, outcome: Outcome) {
        let Some(request) = self.recorder.request_mut(seq) else {
            return;
        };
        if request.outcome != Outcome::InFlight {
            return;
        }
        request.outcome = outcome;
        let account_id = request.account_id.clone();
        if outcome == Outcome::ClientDisconnected
            && let Some(account_id) = account_id.filter(|id| self.account(id).is_some())
        {
            self.recorder.account(&account_id).disconnects += 1;
        }
    }
}

/// Keeps the outcome of one logged request up to date. Dropping it before `finish`
/// means the connection went away first: hyper drops the handler future or the body
/// when the client disconnects.
pub(crate) struct RequestTracker {
    shared: Arc<Shared>,
    seq: u64,
    done: bool,
}

impl RequestTracker {
    pub fn new(shared: Arc<Shared>, seq: u64) -> RequestTracker {
        RequestTracker {
            shared,
            seq,
            done: false,
        }
    }

    pub fn set_status(&self, status: u16) {
        if let Some(request) = self.shared.world.lock().recorder.request_mut(self.seq) {
            request.status = status;
        }
    }

    pub fn set_response_encoding(&self, encoding: &str) {
        if let Some(request) = self.shared.world.lock().recorder.request_mut(self.seq) {
            request.response_encoding = Some(encoding.to_string());
        }
    }

    pub fn finish(&mut self, outcome: Outcome) {
        if !self.done {
            self.done = true;
            self.shared.world.lock().finish_request(self.seq, outcome);
        }
    }
}

impl Drop for RequestTracker {
    fn drop(&mut self) {
        self.finish(Outcome::ClientDisconnected);
    }
}
