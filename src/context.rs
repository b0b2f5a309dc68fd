//! What every part of the core shares: where the servers are, the accounts file, and the one
//! HTTP client every upstream call goes through.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::auth::Auth;
use crate::config::{self, Endpoints};
use crate::error::{Error, ErrorKind};
use crate::pool::Pool;
use crate::store::Store;

#[derive(Clone)]
pub struct Context {
    pub endpoints: Endpoints,
    pub store: Store,
    /// Shared so connections to the backend are pooled across requests and accounts.
    pub http: Http,
    /// Token refreshes in flight in this process.
    pub auth: Arc<Auth>,
    /// Sessions, their accounts, and account changes not yet written.
    pub pool: Arc<Pool>,
    /// How long upstream calls that are not model replies may take.
    pub timeouts: Timeouts,
}

/// Time limits on whatever could otherwise hold pi up: calls that are not model replies, and
/// local clients that stall. The defaults are the production values; tests shorten them to
/// prove a hang is cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// One call to the token endpoint (refresh or code exchange).
    pub token: Duration,
    /// One account's usage fetch, both paths together.
    pub usage: Duration,
    /// A client of the proxy sending its request line and headers.
    pub request_head: Duration,
    /// A client of the proxy sending its whole request body.
    pub request_body: Duration,
}

impl Timeouts {
    /// Usable in constants, as `Timeouts { usage: …, ..Timeouts::PRODUCTION }`.
    pub const PRODUCTION: Self = Self {
        token: Duration::from_secs(30),
        // Per account, so one slow account cannot hold up the others.
        usage: Duration::from_secs(5),
        request_head: Duration::from_secs(10),
        // A conversation with images is tens of MiB; on loopback even that takes well under this.
        request_body: Duration::from_secs(60),
    };
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::PRODUCTION
    }
}

impl Context {
    /// Reads the configuration from the environment (see `config`).
    pub fn from_env() -> Result<Self, Error> {
        Self::new(Endpoints::from_env()?, Store::new(config::agent_dir()?))
    }

    pub fn new(endpoints: Endpoints, store: Store) -> Result<Self, Error> {
        Ok(Self {
            endpoints,
            store,
            http: Http::default(),
            auth: Arc::default(),
            pool: Arc::default(),
            timeouts: Timeouts::PRODUCTION,
        })
    }

    /// The same context with other time limits.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }
}

/// The one HTTP client, built when first needed. Building it loads the system's root
/// certificates, which takes milliseconds that pi's start-up should not wait for; the proxy asks
/// for it in the background as soon as it listens (see [`Http::prepare`]), so in practice the first
/// request finds it ready. Cheap to clone: clones share the client.
#[derive(Clone, Default)]
pub struct Http(Arc<OnceLock<Result<reqwest::Client, String>>>);

impl Http {
    /// The client; built now if this is the first use (other callers wait for that build).
    pub fn client(&self) -> Result<&reqwest::Client, Error> {
        self.0
            .get_or_init(|| build_client().map_err(|e| e.chain()))
            .as_ref()
            .map_err(|why| Error::new(ErrorKind::Config, why.clone()))
    }

    /// Builds the client on a blocking thread of the current tokio runtime, without waiting.
    pub fn prepare(&self) {
        let http = self.clone();
        tokio::task::spawn_blocking(move || drop(http.client()));
    }
}

fn build_client() -> Result<reqwest::Client, Error> {
    // reqwest is built without a bundled crypto provider; ring is ours (see Cargo.toml).
    // Installing fails only if a provider is already installed, which serves just as well.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        // A redirect would carry an account's token to wherever it points.
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Error::new(ErrorKind::Config, "cannot set up the HTTP client").with_source(e))
}
