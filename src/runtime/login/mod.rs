//! Adding an account to the pool: the browser login ([`browser`]: PKCE, answered by a loopback
//! callback or by the redirect URL pasted by hand) and the device-code login ([`device`]), both
//! ending in the account saved to the store under its label.
//!
//! A login changes the store only at its very end, after the code exchange succeeded: a refused
//! consent, a foreign answer, a failed exchange, a cancel or a timeout leave the pool as it was.
//! The PKCE verifier, the authorization code and the tokens never enter a message or a `Debug`
//! output.

pub mod browser;
pub mod device;

use std::time::Duration;

use rand::RngExt as _;
use tokio::sync::watch;

use crate::domain::account::{self, LoginOutcome, NewLogin};
use crate::domain::oauth::{self, Tokens};
use crate::domain::text;
use crate::error::{Error, ErrorKind};
use crate::io::clock::now_ms;
use crate::io::store::Store;

/// How long a browser login waits for the callback or a paste.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long a device login polls; the user code expires about then anyway.
pub const DEVICE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Server text shown to the user is cut here: it is outside data of any length.
const MAX_DESCRIPTION_CHARS: usize = 200;

/// What either login needs at its start.
#[derive(Clone, Debug)]
pub struct LoginOptions {
    /// The label to give a new account; checked before anything else happens.
    pub label: Option<String>,
    pub timeout: Duration,
}

impl LoginOptions {
    /// The label, if given, once it passes the label rules.
    fn checked_label(&self) -> Result<Option<String>, Error> {
        Ok(self
            .label
            .as_deref()
            .map(account::check_label)
            .transpose()?
            .map(str::to_owned))
    }
}

/// Saves fresh tokens as a login: the identity in their claims decides which account they
/// belong to (see [`account::AccountsFile::save_login`]). A refresh of that account in flight,
/// here or in another process, finishes first, so it cannot overwrite the new tokens with the
/// old session's. Blocks on file locks.
pub fn save_login(
    store: &Store,
    identity: &oauth::Identity,
    tokens: Tokens,
    label: Option<&str>,
) -> Result<LoginOutcome, Error> {
    let known = store.load()?.find_identity(identity).cloned();
    let _refresh_lock = known.map(|a| store.account_lock(&a.id)).transpose()?;
    let new_id = format!("acc-{:016x}", rand::rng().random::<u64>());
    store.update(|file| {
        file.save_login(NewLogin {
            identity,
            tokens,
            label,
            new_id,
            now_ms: now_ms(),
        })
    })
}

/// Reads the identity from fresh tokens and saves them, off the async threads.
async fn save(store: &Store, tokens: Tokens, label: Option<String>) -> Result<LoginOutcome, Error> {
    let identity = oauth::identity(&tokens)?;
    store
        .off_thread(move |store| save_login(&store, &identity, tokens, label.as_deref()))
        .await
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    Cancelled,
    Finished,
}

/// Where a login is in its life; the callback listener and the waiter both watch it.
struct Lifecycle(watch::Sender<Phase>);

impl Lifecycle {
    fn new() -> Self {
        Self(watch::Sender::new(Phase::Open))
    }

    fn end(&self, phase: Phase) {
        self.0.send_if_modified(|current| {
            let open = *current == Phase::Open;
            if open {
                *current = phase;
            }
            open
        });
    }

    async fn cancelled(&self) {
        let _ = self
            .0
            .subscribe()
            .wait_for(|phase| *phase == Phase::Cancelled)
            .await;
    }
}

fn cancelled_error() -> Error {
    Error::new(ErrorKind::LoginCancelled, text::LOGIN_CANCELLED)
}

fn timed_out(waited: Duration, for_what: &str) -> Error {
    Error::new(
        ErrorKind::LoginTimedOut,
        text::timed_out(waited.as_secs(), for_what),
    )
}

fn login_over() -> Error {
    Error::new(ErrorKind::Login, text::LOGIN_OVER)
}

fn already_waiting() -> Error {
    Error::new(ErrorKind::Login, text::ALREADY_WAITING)
}

/// Server text for a message: one line, bounded.
fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_DESCRIPTION_CHARS)
        .collect()
}
