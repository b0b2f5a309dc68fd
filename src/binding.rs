//! The napi layer the pi extension loads: converts types and errors, and holds the one proxy of
//! this process. No policy lives here.

use std::sync::Arc;

use napi_derive::napi;
use tokio::sync::OnceCell;

use crate::context::Context;
use crate::error::Error;
use crate::proxy::Proxy;
use crate::store::{AccountState, Store};
use crate::{config, now_ms};

/// One proxy per process, alive until the process exits; pi's `/reload` gets the same one.
static PROXY: OnceCell<Proxy> = OnceCell::const_new();

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
        .get_or_try_init(|| async { Proxy::start(Arc::new(Context::from_env()?)).await })
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
