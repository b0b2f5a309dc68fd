//! `Simulator`: starts the server on loopback and is the Rust handle tests drive it with.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::cipher::ContentKey;
use crate::jwt::Tokens;
use crate::limits::{LimitsError, LimitsUpdate, validate_families};
use crate::script::{
    Behavior, Credits, EncryptedContentCheck, FamilyScript, Script, TokenBehavior, Usage,
};
use crate::server;
use crate::state::{ApproveError, Shared, UnknownAccount, World};
use crate::stats::{RecordedRequest, Stats};

/// A running simulated backend + issuer. Serves until dropped or `shutdown`.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Simulator {
    /// Starts on `127.0.0.1` with a free port. Must be called inside a tokio runtime.
    pub async fn start(script: Script) -> io::Result<Simulator> {
        Simulator::start_on_port(script, 0).await
    }

    /// Starts on `127.0.0.1:port` (0 picks a free port).
    pub async fn start_on_port(script: Script, port: u16) -> io::Result<Simulator> {
        validate(&script)?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let shared = Arc::new(Shared {
            world: Mutex::new(World::new(&script, &base_url)),
            base_url,
            latency_ms: script.latency_ms,
            content_key: ContentKey::random(),
        });
        let task = tokio::spawn(server::serve(listener, shared.clone()));
        Ok(Simulator { shared, addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// `http://127.0.0.1:PORT/backend-api`, the Codex backend base.
    pub fn backend_base(&self) -> String {
        format!("{}/backend-api", self.shared.base_url)
    }

    /// `http://127.0.0.1:PORT`, the OAuth issuer (`/oauth/authorize`, `/oauth/token`, ...).
    pub fn issuer(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The account's current token set: its refresh token is the one that works.
    pub fn tokens(&self, account_id: &str) -> Option<Tokens> {
        self.shared
            .world
            .lock()
            .account(account_id)
            .map(|a| a.current.clone())
    }

    /// The current token set of every account.
    pub fn all_tokens(&self) -> BTreeMap<String, Tokens> {
        let world = self.shared.world.lock();
        world
            .account_ids()
            .into_iter()
            .filter_map(|id| Some((id.clone(), world.account(&id)?.current.clone())))
            .collect()
    }

    /// Replaces the account's behavior queue.
    pub fn set_behaviors(
        &self,
        account_id: &str,
        behaviors: Vec<Behavior>,
    ) -> Result<(), UnknownAccount> {
        self.shared.world.lock().account_mut(account_id)?.behaviors = behaviors.into();
        Ok(())
    }

    /// Appends one behavior to the account's queue.
    pub fn push_behavior(
        &self,
        account_id: &str,
        behavior: Behavior,
    ) -> Result<(), UnknownAccount> {
        self.shared
            .world
            .lock()
            .account_mut(account_id)?
            .behaviors
            .push_back(behavior);
        Ok(())
    }

    /// Sets what answers once the account's queue is empty.
    pub fn set_default_behavior(
        &self,
        account_id: &str,
        behavior: Behavior,
    ) -> Result<(), UnknownAccount> {
        self.shared.world.lock().account_mut(account_id)?.default = behavior;
        Ok(())
    }

    /// Replaces the account's usage; `resetAfterSeconds` counts from now.
    pub fn set_usage(&self, account_id: &str, usage: Usage) -> Result<(), UnknownAccount> {
        self.shared.world.lock().set_usage(account_id, &usage)
    }

    /// Changes the account's limit families, credits, banked resets and limit flags; the
    /// parts left `None` stay as they are.
    pub fn update_limits(&self, account_id: &str, update: LimitsUpdate) -> Result<(), LimitsError> {
        self.shared.world.lock().update_limits(account_id, update)
    }

    /// Replaces the account's credits.
    pub fn set_credits(&self, account_id: &str, credits: Credits) -> Result<(), LimitsError> {
        let update = LimitsUpdate {
            credits: Some(credits),
            ..LimitsUpdate::default()
        };
        self.update_limits(account_id, update)
    }

    /// Replaces the account's limit families; their resets count from now.
    pub fn set_families(
        &self,
        account_id: &str,
        families: Vec<FamilyScript>,
    ) -> Result<(), LimitsError> {
        let update = LimitsUpdate {
            families: Some(families),
            ..LimitsUpdate::default()
        };
        self.update_limits(account_id, update)
    }

    /// Replaces one family's windows; their resets count from now.
    pub fn set_family_usage(
        &self,
        account_id: &str,
        family_id: &str,
        usage: Usage,
    ) -> Result<(), LimitsError> {
        self.shared
            .world
            .lock()
            .set_family_usage(account_id, family_id, &usage)
    }

    /// Gives the account this many fresh banked resets (replacing those it had).
    pub fn set_banked_resets(&self, account_id: &str, count: u32) -> Result<(), LimitsError> {
        let update = LimitsUpdate {
            banked_resets: Some(count),
            ..LimitsUpdate::default()
        };
        self.update_limits(account_id, update)
    }

    /// The account's credits now, after what requests past 100% have spent.
    pub fn credits(&self, account_id: &str) -> Option<Credits> {
        self.shared
            .world
            .lock()
            .account(account_id)
            .map(|a| a.limits.credits.clone())
    }

    /// Replaces the account's `/oauth/token` behavior queue.
    pub fn set_token_behaviors(
        &self,
        account_id: &str,
        behaviors: Vec<TokenBehavior>,
    ) -> Result<(), UnknownAccount> {
        self.shared
            .world
            .lock()
            .account_mut(account_id)?
            .token_behaviors = behaviors.into();
        Ok(())
    }

    /// Appends one behavior to the account's `/oauth/token` queue.
    pub fn push_token_behavior(
        &self,
        account_id: &str,
        behavior: TokenBehavior,
    ) -> Result<(), UnknownAccount> {
        self.shared
            .world
            .lock()
            .account_mut(account_id)?
            .token_behaviors
            .push_back(behavior);
        Ok(())
    }

    /// Deactivates the account: every `/codex/responses` request that passes auth gets a
    /// 401 with `code` (`account_deactivated`, `token_revoked`, `missing_scope`), even
    /// right after a refresh, until `reactivate`.
    pub fn deactivate(&self, account_id: &str, code: &str) -> Result<(), UnknownAccount> {
        self.shared
            .world
            .lock()
            .set_deactivated(account_id, Some(code))
    }

    /// Ends a deactivation: requests are answered by behaviors again.
    pub fn reactivate(&self, account_id: &str) -> Result<(), UnknownAccount> {
        self.shared.world.lock().set_deactivated(account_id, None)
    }

    /// Changes how the account's requests have their replayed ciphertext checked.
    pub fn set_encrypted_content_check(
        &self,
        account_id: &str,
        check: EncryptedContentCheck,
    ) -> Result<(), UnknownAccount> {
        self.shared
            .world
            .lock()
            .set_encrypted_content_check(account_id, check)
    }

    /// The `encrypted_content` this account would mint for item `item_id` (a reasoning
    /// `rs_…` or compaction `cmp_…` item), for building replayed input in tests.
    pub fn mint_encrypted_content(
        &self,
        account_id: &str,
        item_id: &str,
    ) -> Result<String, UnknownAccount> {
        self.shared.world.lock().account_mut(account_id)?;
        Ok(self.shared.content_key.mint(account_id, item_id))
    }

    /// Invalidates every access token of the account: the backend answers 401 until
    /// the client refreshes or logs in again.
    pub fn revoke_access_tokens(&self, account_id: &str) -> Result<(), UnknownAccount> {
        self.shared.world.lock().revoke_access_tokens(account_id)
    }

    /// Invalidates the account's refresh token (`refresh_token_invalidated`).
    pub fn revoke_refresh_token(&self, account_id: &str) -> Result<(), UnknownAccount> {
        self.shared.world.lock().revoke_refresh_token(account_id)
    }

    /// The next `/oauth/authorize` logs in as this account.
    pub fn queue_login(&self, account_id: &str) -> Result<(), UnknownAccount> {
        self.shared.world.lock().queue_login(Some(account_id))
    }

    /// The next `/oauth/authorize` is denied by the user.
    pub fn queue_login_denied(&self) {
        // Denying names no account, so it cannot fail.
        let _ = self.shared.world.lock().queue_login(None);
    }

    /// Approves a pending device login (by user code, else the newest pending one) as
    /// `account_id` (else the first account). Returns the approved user code.
    pub fn approve_device(
        &self,
        user_code: Option<&str>,
        account_id: Option<&str>,
    ) -> Result<String, ApproveError> {
        self.shared
            .world
            .lock()
            .approve_device(user_code, account_id, false)
    }

    /// Denies a pending device login; its next poll fails with `access_denied`.
    pub fn deny_device(&self, user_code: Option<&str>) -> Result<String, ApproveError> {
        self.shared
            .world
            .lock()
            .approve_device(user_code, None, true)
    }

    /// A snapshot of all counters and the request log.
    pub fn stats(&self) -> Stats {
        self.shared.world.lock().recorder.snapshot()
    }

    /// The `/codex/responses` request log.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .world
            .lock()
            .recorder
            .requests
            .iter()
            .cloned()
            .collect()
    }

    /// Zeroes the counters and clears the request log.
    pub fn reset_stats(&self) {
        self.shared.world.lock().recorder.reset();
    }

    /// Polls the stats until `done` holds or `timeout` passes; returns the last
    /// snapshot when it held. Disconnects and outcomes land a moment after the fact.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&Stats) -> bool,
    ) -> Option<Stats> {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats();
            if done(&stats) {
                return Some(stats);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops serving and closes every open connection.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Rejects scripts whose mistakes would otherwise show up as confusing test failures.
fn validate(script: &Script) -> io::Result<()> {
    let invalid = |message: String| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    let mut seen = HashSet::new();
    for account in &script.accounts {
        if account.account_id.is_empty() {
            return invalid("an account has an empty accountId".to_string());
        }
        if !seen.insert(account.account_id.as_str()) {
            return invalid(format!("accountId {:?} appears twice", account.account_id));
        }
        if let Err(message) = validate_families(&account.families) {
            return invalid(format!("account {:?}: {message}", account.account_id));
        }
    }
    if let Some(id) = &script.device.account_id
        && !seen.contains(id.as_str())
    {
        return invalid(format!("device.accountId {id:?} is not a scripted account"));
    }
    Ok(())
}
