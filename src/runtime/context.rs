//! The composition root: builds every part of the core once and hands the flows (the proxy,
//! the logins, the binding) what they need. Only the modules that wire things import it.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, Endpoints};
use crate::error::Error;
use crate::io::http::Http;
use crate::io::store::Store;
use crate::runtime::auth::Auth;
use crate::runtime::pool::Pool;
use crate::runtime::usage::UsageFeed;

#[derive(Clone)]
pub struct Context {
    pub endpoints: Endpoints,
    pub store: Store,
    /// Shared so connections to the backend are pooled across requests and accounts.
    pub http: Http,
    /// Tokens, and the refreshes in flight in this process.
    pub auth: Arc<Auth>,
    /// Sessions, their accounts, and account changes not yet written.
    pub pool: Arc<Pool>,
    /// Usage fetches.
    pub usage: Arc<UsageFeed>,
    /// How long whatever could hold pi up may take.
    pub timeouts: Timeouts,
}

/// Time limits on whatever could otherwise hold pi up: calls that are not model replies, and
/// local clients that stall. The defaults are the production values; tests shorten them to
/// prove a hang is cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// One call to the token endpoint (refresh or code exchange).
    pub token: Duration,
    /// One account's usage fetch.
    pub usage: Duration,
    /// How long a session's first pick waits for the usage of accounts whose view is missing
    /// or stale; the pick then uses what arrived.
    pub usage_before_pick: Duration,
    /// A client of the proxy sending its request line and headers.
    pub request_head: Duration,
    /// A client of the proxy sending its whole request body.
    pub request_body: Duration,
    /// The backend's reply headers to a model request.
    pub upstream_headers: Duration,
    /// The longest silence of a model stream before its first output.
    pub upstream_silence: Duration,
}

impl Timeouts {
    /// Usable in constants, as `Timeouts { usage: …, ..Timeouts::PRODUCTION }`.
    pub const PRODUCTION: Self = Self {
        token: Duration::from_secs(30),
        // Per account, so one slow account cannot hold up the others.
        usage: Duration::from_secs(5),
        // A usage round trip is a few hundred milliseconds; a slower endpoint must not hold up
        // the first answer for long.
        usage_before_pick: Duration::from_millis(1500),
        request_head: Duration::from_secs(10),
        // A conversation with images is tens of MiB; on loopback even that takes well under this.
        request_body: Duration::from_secs(60),
        // Before the first output event the backend only queues and reads the prompt, which
        // takes seconds even for a full context window; pi would wait 300 s (as codex-rs does
        // for silence anywhere in a stream, where long reasoning may be quiet) and then re-run
        // the turn on the same account. A minute of nothing there is a stall: move on.
        upstream_headers: Duration::from_secs(60),
        upstream_silence: Duration::from_secs(60),
    };
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::PRODUCTION
    }
}

impl Context {
    /// Everything as the environment configures it (see `config`).
    pub fn from_env() -> Result<Self, Error> {
        let context = Self::new(Endpoints::from_env()?, Store::new(config::agent_dir()?))?;
        Ok(match config::stall_limit()? {
            Some(limit) => context.with_timeouts(Timeouts {
                upstream_headers: limit,
                upstream_silence: limit,
                ..Timeouts::PRODUCTION
            }),
            None => context,
        })
    }

    pub fn new(endpoints: Endpoints, store: Store) -> Result<Self, Error> {
        Ok(Self::assemble(endpoints, store, Timeouts::PRODUCTION))
    }

    /// The same context with other time limits (and its parts built anew to follow them).
    pub fn with_timeouts(self, timeouts: Timeouts) -> Self {
        Self::assemble(self.endpoints, self.store, timeouts)
    }

    fn assemble(endpoints: Endpoints, store: Store, timeouts: Timeouts) -> Self {
        let http = Http::default();
        let auth = Arc::new(Auth::new(
            store.clone(),
            http.clone(),
            endpoints.token_url(),
            timeouts.token,
        ));
        let pool = Arc::new(Pool::new(store.clone()));
        let usage = Arc::new(UsageFeed::new(
            http.clone(),
            auth.clone(),
            endpoints.clone(),
            pool.clone(),
            timeouts.usage,
            timeouts.usage_before_pick,
        ));
        Self {
            pool,
            endpoints,
            store,
            http,
            auth,
            usage,
            timeouts,
        }
    }
}
