//! The one HTTP client every upstream call goes through, so connections to the backend are
//! pooled across requests and accounts.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::{Error, ErrorKind};

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
