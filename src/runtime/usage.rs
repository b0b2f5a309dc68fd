//! Keeping each account's usage view fresh: the usage endpoint for every account whose view is
//! stale, all at once, each call bounded, the results written to the shared file in one go so
//! every pi process shares the 5-minute freshness.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Endpoints;
use crate::domain::account::{Account, AccountState};
use crate::domain::usage::{FRESH_FOR, Observation};
use crate::error::{Error, ErrorKind};
use crate::io::clock::now_ms;
use crate::io::http::Http;
use crate::io::store::Store;
use crate::io::usage;
use crate::runtime::auth::Auth;

/// How one account's usage fetch went.
#[derive(Debug)]
pub struct Fetched {
    pub account_id: String,
    pub result: Result<(), Error>,
}

/// What a usage refresh needs.
pub struct UsageFeed {
    store: Store,
    http: Http,
    auth: Arc<Auth>,
    endpoints: Endpoints,
    /// One account's fetch, both paths together.
    timeout: Duration,
}

impl UsageFeed {
    pub fn new(
        store: Store,
        http: Http,
        auth: Arc<Auth>,
        endpoints: Endpoints,
        timeout: Duration,
    ) -> Self {
        Self {
            store,
            http,
            auth,
            endpoints,
            timeout,
        }
    }

    /// Fetches usage for every account whose view is older than the freshness period.
    pub async fn refresh_stale(&self) -> Result<Vec<Fetched>, Error> {
        self.refresh_older_than(FRESH_FOR).await
    }

    /// Fetches usage for every account whose view is older than `max_age` (all of them at
    /// once) and stores the results in one write. Accounts that must log in again are skipped:
    /// their tokens cannot work.
    pub async fn refresh_older_than(&self, max_age: Duration) -> Result<Vec<Fetched>, Error> {
        let now = now_ms();
        let file = self.store.load()?;
        let due: Vec<Account> = file
            .accounts
            .into_iter()
            .filter(|a| !matches!(a.state, AccountState::NeedsLogin { .. }))
            .filter(|a| {
                a.usage.as_ref().is_none_or(|u| {
                    now.saturating_sub(u.observed_at_ms) >= max_age.as_millis() as u64
                })
            })
            .collect();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let calls = due.iter().map(|account| self.fetch_one(account));
        let results = futures_util::future::join_all(calls).await;

        let observed: Vec<(String, Observation)> = due
            .iter()
            .zip(&results)
            .filter_map(|(a, r)| Some((a.id.clone(), r.as_ref().ok()?.clone())))
            .collect();
        if !observed.is_empty() {
            self.store
                .off_thread(move |store| {
                    store.update(|file| {
                        for (id, observation) in &observed {
                            file.apply(id, |account| {
                                account.observe(observation);
                                // The backend answered for it: whatever needed attention is fixed.
                                account.attention = None;
                            });
                        }
                        Ok(())
                    })
                })
                .await?;
        }
        Ok(due
            .into_iter()
            .zip(results)
            .map(|(account, result)| Fetched {
                account_id: account.id,
                result: result.map(drop),
            })
            .collect())
    }

    /// `/wham/usage`, then `/codex/usage` if that fails: which one passes the CDN differs.
    async fn fetch_one(&self, account: &Account) -> Result<Observation, Error> {
        let work = async {
            let token = self
                .auth
                .access_token(account)
                .await
                .map_err(|e| Error::new(ErrorKind::Usage, e.to_string()))?;
            let id = &account.chatgpt_account_id;
            let primary = self.endpoints.usage_url();
            match usage::fetch(&self.http, primary, &token, id, now_ms()).await {
                Ok(observation) => Ok(observation),
                Err(first) => {
                    let fallback = self.endpoints.codex_usage_url();
                    usage::fetch(&self.http, fallback, &token, id, now_ms())
                        .await
                        .map_err(|second| {
                            Error::new(
                                ErrorKind::Usage,
                                format!("{}; then {}", first.chain(), second.chain()),
                            )
                        })
                }
            }
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
