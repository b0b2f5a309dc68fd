//! Keeping each account's usage view fresh: the usage endpoint for every account whose view is
//! stale, all at once, each call bounded. What arrives goes into the pool at once (the policy
//! picks by it) and to the shared file with the pool's next write, so every pi process shares
//! the 5-minute freshness.
//!
//! A fetch under way is joined, never repeated: one started at session start, by
//! `/dispatch-status` or by another session serves every caller that needs the same account.
//! Before a session picks an account, usage missing or stale is fetched for at most
//! [`Timeouts::usage_before_pick`](crate::runtime::context::Timeouts): the pick uses what
//! arrived; whatever arrives later still lands in the pool.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use parking_lot::Mutex;

use crate::config::Endpoints;
use crate::domain::account::Change;
use crate::domain::account::{Account, AccountState};
use crate::domain::text;
use crate::domain::usage::{FRESH_FOR, Observation};
use crate::error::{Error, ErrorKind};
use crate::io::clock::now_ms;
use crate::io::http::Http;
use crate::io::usage;
use crate::runtime::auth::Auth;
use crate::runtime::pool::Pool;

/// How one account's usage fetch went.
#[derive(Debug)]
pub struct Fetched {
    pub account_id: String,
    pub result: Result<(), Error>,
}

/// One batch of fetches, shared by every caller waiting for one of its accounts: each
/// account's outcome (the error's whole chain on failure).
type Batch = Shared<BoxFuture<'static, Arc<Vec<(String, Result<(), String>)>>>>;

/// What a usage refresh needs.
pub struct UsageFeed {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    auth: Arc<Auth>,
    endpoints: Endpoints,
    pool: Arc<Pool>,
    /// One account's fetch.
    timeout: Duration,
    /// How long a session's first pick waits for usage.
    before_pick: Duration,
    /// The batch each account's fetch under way belongs to, by batch number.
    in_flight: Mutex<HashMap<String, (u64, Batch)>>,
    next_batch: AtomicU64,
    /// When each account's last fetch failed: the pick does not wait for it again until its
    /// usage would have gone stale anyway.
    failed_at: Mutex<HashMap<String, u64>>,
}

impl UsageFeed {
    pub fn new(
        http: Http,
        auth: Arc<Auth>,
        endpoints: Endpoints,
        pool: Arc<Pool>,
        timeout: Duration,
        before_pick: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                http,
                auth,
                endpoints,
                pool,
                timeout,
                before_pick,
                in_flight: Mutex::default(),
                next_batch: AtomicU64::new(0),
                failed_at: Mutex::default(),
            }),
        }
    }

    /// Fetches usage for every account whose view is older than the freshness period.
    pub async fn refresh_stale(&self) -> Result<Vec<Fetched>, Error> {
        self.refresh_older_than(FRESH_FOR).await
    }

    /// Fetches usage for every account whose view is older than `max_age` (all of them at
    /// once), joining fetches already under way. Accounts that must log in again are skipped:
    /// their tokens cannot work.
    pub async fn refresh_older_than(&self, max_age: Duration) -> Result<Vec<Fetched>, Error> {
        let file = self.inner.pool.snapshot()?;
        let now = now_ms();
        let due: Vec<Account> = file
            .accounts
            .iter()
            .filter(|a| !matches!(a.state, AccountState::NeedsLogin { .. }))
            .filter(|a| older_than(a, max_age, now))
            .cloned()
            .collect();
        Ok(self.fetch(due).await)
    }

    /// Before the policy picks an account for a session: every account that could serve and
    /// whose usage is missing or stale is fetched (joined if under way), waiting at most the
    /// deadline. An account whose fetch failed within the freshness period is not waited for
    /// again. Returns whether anything was due, so the caller reads the pool again.
    pub async fn before_pick(&self, accounts: &[Account], now_ms: u64) -> bool {
        let failed_at = self.inner.failed_at.lock().clone();
        let recently_failed = |a: &Account| {
            failed_at
                .get(&a.id)
                .is_some_and(|&at| now_ms.saturating_sub(at) < FRESH_FOR.as_millis() as u64)
        };
        let due: Vec<Account> = accounts
            .iter()
            .filter(|a| {
                !matches!(
                    a.state,
                    AccountState::NeedsLogin { .. } | AccountState::Disabled { .. }
                )
            })
            // One that needs attention cannot be picked; /dispatch-status still asks for it.
            .filter(|a| a.attention.is_none())
            .filter(|a| older_than(a, FRESH_FOR, now_ms) && !recently_failed(a))
            .cloned()
            .collect();
        if due.is_empty() {
            return false;
        }
        let _ = tokio::time::timeout(self.inner.before_pick, self.fetch(due)).await;
        true
    }

    /// The outcome for each of `due`: joins the batches under way for some, starts one batch
    /// for the rest.
    async fn fetch(&self, due: Vec<Account>) -> Vec<Fetched> {
        if due.is_empty() {
            return Vec::new();
        }
        let ids: Vec<String> = due.iter().map(|a| a.id.clone()).collect();
        let mut batches: Vec<(u64, Batch)> = Vec::new();
        {
            let mut in_flight = self.inner.in_flight.lock();
            let mut new = Vec::new();
            for account in due {
                match in_flight.get(&account.id) {
                    Some((number, batch)) => {
                        if !batches.iter().any(|(n, _)| n == number) {
                            batches.push((*number, batch.clone()));
                        }
                    }
                    None => new.push(account),
                }
            }
            if !new.is_empty() {
                let number = self.inner.next_batch.fetch_add(1, Ordering::Relaxed);
                let batch = Inner::start(&self.inner, number, new.clone());
                for account in &new {
                    in_flight.insert(account.id.clone(), (number, batch.clone()));
                }
                batches.push((number, batch));
            }
        }
        let outcomes =
            futures_util::future::join_all(batches.into_iter().map(|(_, batch)| batch)).await;
        ids.into_iter()
            .map(|id| {
                let outcome = outcomes
                    .iter()
                    .flat_map(|batch| batch.iter())
                    .find(|(done, _)| *done == id)
                    .map_or_else(
                        || Err(text::USAGE_TASK_FAILED.to_owned()),
                        |(_, result)| result.clone(),
                    );
                Fetched {
                    account_id: id,
                    result: outcome.map_err(|chain| Error::new(ErrorKind::Usage, chain)),
                }
            })
            .collect()
    }
}

impl Inner {
    /// Fetches every account of the batch at once, each observation into the pool as soon as it
    /// arrives. Runs as its own task, so it finishes even when every waiter stopped waiting.
    fn start(inner: &Arc<Inner>, number: u64, accounts: Vec<Account>) -> Batch {
        let inner = inner.clone();
        let task = tokio::spawn(async move {
            let calls = accounts.iter().map(|account| async {
                let result = inner.fetch_one(account).await;
                match &result {
                    Ok(observation) => {
                        inner
                            .pool
                            .record(&account.id, Change::Observed(observation.clone()));
                        if account.attention.is_some() {
                            // The backend answered for it: whatever needed attention is fixed.
                            inner.pool.record(&account.id, Change::Attention(None));
                        }
                        inner.failed_at.lock().remove(&account.id);
                    }
                    Err(_) => {
                        inner.failed_at.lock().insert(account.id.clone(), now_ms());
                    }
                }
                (account.id.clone(), result.map(drop).map_err(|e| e.chain()))
            });
            let outcomes = futures_util::future::join_all(calls).await;
            inner
                .in_flight
                .lock()
                .retain(|_, (batch, _)| *batch != number);
            Arc::new(outcomes)
        });
        async move { task.await.unwrap_or_default() }
            .boxed()
            .shared()
    }

    async fn fetch_one(&self, account: &Account) -> Result<Observation, Error> {
        let work = async {
            let token = self
                .auth
                .access_token(account)
                .await
                .map_err(|e| Error::new(ErrorKind::Usage, e.to_string()))?;
            usage::fetch(
                &self.http,
                self.endpoints.usage_url(),
                &token,
                &account.chatgpt_account_id,
                now_ms(),
            )
            .await
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Usage,
                    format!("no usage answer within {:.1} s", self.timeout.as_secs_f64()),
                ))
            })
    }
}

/// Whether the account's usage is missing or at least `max_age` old.
fn older_than(account: &Account, max_age: Duration, now_ms: u64) -> bool {
    account
        .usage
        .as_ref()
        .is_none_or(|u| now_ms.saturating_sub(u.observed_at_ms) >= max_age.as_millis() as u64)
}
