//! The napi layer the pi extension loads: converts types and errors, and holds the one proxy of
//! this process. No policy lives here.

use std::sync::{Arc, OnceLock};

use napi_derive::napi;
use tokio::sync::OnceCell;

use crate::context::Context;
use crate::error::Error;
use crate::login::{self, BrowserLogin, Callback, DeviceLogin, LoginOptions, LoginOutcome};
use crate::proxy::Proxy;
use crate::store::{AccountState, Store};
use crate::{config, now_ms};

/// One proxy per process, alive until the process exits; pi's `/reload` gets the same one.
static PROXY: OnceCell<Proxy> = OnceCell::const_new();
/// One context per process, so the proxy and every login share one HTTP client.
static CONTEXT: OnceLock<Arc<Context>> = OnceLock::new();

fn context() -> Result<Arc<Context>, Error> {
    if let Some(ctx) = CONTEXT.get() {
        return Ok(ctx.clone());
    }
    let ctx = Arc::new(Context::from_env()?);
    Ok(CONTEXT.get_or_init(|| ctx).clone())
}

/// The kind travels in the message because async functions can only reject with a plain error;
/// the extension shows the text after the bracket.
fn to_napi(e: Error) -> napi::Error {
    napi::Error::from_reason(format!("[{}] {}", e.kind.as_str(), e.chain()))
}

#[napi(object)]
pub struct ProxyInfo {
    /// Base URL for pi's Codex client.
    pub base_url: String,
    /// The credential pi presents to the proxy; not an account token.
    pub api_key: String,
}

/// Starts the loopback proxy (once per process). Binds a local port; makes no network call.
#[napi]
pub async fn start_proxy() -> napi::Result<ProxyInfo> {
    let proxy = PROXY
        .get_or_try_init(|| async { Proxy::start(context()?).await })
        .await
        .map_err(to_napi)?;
    Ok(ProxyInfo {
        base_url: proxy.base_url(),
        api_key: proxy.credential().to_owned(),
    })
}

#[napi(object)]
pub struct AccountView {
    pub id: String,
    pub label: String,
    pub email: Option<String>,
    pub plan: Option<String>,
    /// `usable`, `benched` or `needsLogin`.
    pub state: String,
    /// Unix milliseconds when a benched account comes back.
    pub benched_until_ms: Option<f64>,
    pub reason: Option<String>,
}

#[napi(object)]
pub struct PoolView {
    pub path: String,
    pub accounts: Vec<AccountView>,
}

/// The pool as the status command shows it. Never includes tokens.
#[napi]
pub fn list_accounts() -> napi::Result<PoolView> {
    let store = Store::new(config::agent_dir().map_err(to_napi)?);
    let file = store.load().map_err(to_napi)?;
    let now = now_ms();
    let accounts = file
        .accounts
        .into_iter()
        .map(|account| {
            let (state, benched_until_ms, reason) = match account.state {
                AccountState::Usable => ("usable", None, None),
                AccountState::Benched { until_ms, .. } if until_ms <= now => ("usable", None, None),
                AccountState::Benched { until_ms, reason } => {
                    ("benched", Some(until_ms as f64), Some(reason))
                }
                AccountState::NeedsLogin { reason } => ("needsLogin", None, Some(reason)),
            };
            AccountView {
                id: account.id,
                label: account.label,
                email: account.email,
                plan: account.plan,
                state: state.into(),
                benched_until_ms,
                reason,
            }
        })
        .collect();
    Ok(PoolView {
        path: store.path().display().to_string(),
        accounts,
    })
}

enum Flow {
    Browser(BrowserLogin),
    Device(DeviceLogin),
}

/// A login in progress: what to show the user, a place for a pasted redirect, and its end.
#[napi]
pub struct LoginFlow {
    flow: Flow,
}

#[napi(object)]
pub struct LoginResult {
    pub label: String,
    pub email: Option<String>,
    pub plan: Option<String>,
    /// False when the account was in the pool already and only got new tokens.
    pub added: bool,
    /// The label asked for, when the account already had another one (which it keeps).
    pub ignored_label: Option<String>,
}

impl From<LoginOutcome> for LoginResult {
    fn from(outcome: LoginOutcome) -> Self {
        Self {
            label: outcome.label,
            email: outcome.email,
            plan: outcome.plan,
            added: outcome.added,
            ignored_label: outcome.ignored_label,
        }
    }
}

#[napi]
impl LoginFlow {
    /// `browser` or `device`.
    #[napi(getter)]
    pub fn kind(&self) -> String {
        match self.flow {
            Flow::Browser(_) => "browser".into(),
            Flow::Device(_) => "device".into(),
        }
    }

    /// Where the user goes: the sign-in page, or the page that takes the device code.
    #[napi(getter)]
    pub fn url(&self) -> String {
        match &self.flow {
            Flow::Browser(login) => login.url().to_string(),
            Flow::Device(login) => login.verification_url().to_string(),
        }
    }

    /// The code to enter on the device page.
    #[napi(getter)]
    pub fn user_code(&self) -> Option<String> {
        match &self.flow {
            Flow::Browser(_) => None,
            Flow::Device(login) => Some(login.user_code().to_owned()),
        }
    }

    /// Why the browser cannot hand the answer back by itself, leaving the paste path.
    #[napi(getter)]
    pub fn notice(&self) -> Option<String> {
        match &self.flow {
            Flow::Browser(login) => match login.callback() {
                Callback::Listening { .. } => None,
                Callback::Unavailable { notice } => Some(notice.clone()),
            },
            Flow::Device(_) => None,
        }
    }

    /// Hands in the redirect URL the user pasted. Throws `[paste] ...` for text that is not
    /// one; the login goes on and takes another paste.
    #[napi]
    pub fn submit_paste(&self, text: String) -> napi::Result<()> {
        match &self.flow {
            Flow::Browser(login) => login.submit_paste(&text).map_err(to_napi),
            Flow::Device(_) => Err(napi::Error::from_reason(
                "[login] a device login takes no pasted URL",
            )),
        }
    }

    /// Resolves when the account is saved; rejects with `[login]`, `[login_cancelled]`,
    /// `[login_timed_out]` or `[label]` and the reason, leaving the pool unchanged.
    #[napi]
    pub async fn wait(&self) -> napi::Result<LoginResult> {
        let outcome = match &self.flow {
            Flow::Browser(login) => login.wait().await,
            Flow::Device(login) => login.wait().await,
        };
        outcome.map(LoginResult::from).map_err(to_napi)
    }

    #[napi]
    pub fn cancel(&self) {
        match &self.flow {
            Flow::Browser(login) => login.cancel(),
            Flow::Device(login) => login.cancel(),
        }
    }
}

/// Starts a browser login: listens for the callback (port 1455 unless
/// `PI_DISPATCH_CALLBACK_PORT` says otherwise) and builds the sign-in URL.
#[napi]
pub async fn start_browser_login(label: Option<String>) -> napi::Result<LoginFlow> {
    let options = LoginOptions {
        label,
        timeout: login::BROWSER_TIMEOUT,
    };
    let port = config::callback_port().map_err(to_napi)?;
    let login = BrowserLogin::start(context().map_err(to_napi)?, options, port)
        .await
        .map_err(to_napi)?;
    Ok(LoginFlow {
        flow: Flow::Browser(login),
    })
}

/// Starts a device-code login: asks the issuer for a user code.
#[napi]
pub async fn start_device_login(label: Option<String>) -> napi::Result<LoginFlow> {
    let options = LoginOptions {
        label,
        timeout: login::DEVICE_TIMEOUT,
    };
    let login = DeviceLogin::start(context().map_err(to_napi)?, options)
        .await
        .map_err(to_napi)?;
    Ok(LoginFlow {
        flow: Flow::Device(login),
    })
}

/// Gives an account a new label; throws `[label] ...` for an unknown or taken label.
#[napi]
pub fn rename_account(label: String, new_label: String) -> napi::Result<()> {
    let store = Store::new(config::agent_dir().map_err(to_napi)?);
    store.rename_account(&label, &new_label).map_err(to_napi)
}

/// Removes an account and its tokens; throws `[label] ...` for an unknown label.
#[napi]
pub fn remove_account(label: String) -> napi::Result<()> {
    let store = Store::new(config::agent_dir().map_err(to_napi)?);
    store.remove_account(&label).map(drop).map_err(to_napi)
}
