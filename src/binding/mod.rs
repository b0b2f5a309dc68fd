//! The napi layer the pi extension loads: conversions between the core's types and typed
//! JavaScript values, and the one core of this process. No rule and no sentence lives here.
//!
//! Expected failures reach JavaScript as data, a [`Problem`] `{kind, message}` in place of the
//! result (`T | Problem`), never as text to be parsed; states, reasons and kinds are string
//! enums.

pub mod login;
pub mod ui;
pub mod views;

use jiff::tz::TimeZone;
use napi::Either;
use napi_derive::napi;
use tokio::sync::OnceCell;

use crate::config;
use crate::domain::text;
use crate::error::{Error, ErrorKind};
use crate::io::clock::now_ms;
use crate::io::store::Store;
use crate::runtime::commands;
use crate::runtime::context::Context;
use crate::runtime::pool::Notice;
use crate::runtime::proxy::Proxy;

/// The core of this process: one context and one proxy, alive until the process exits; pi's
/// `/reload` gets the same ones.
struct Core {
    ctx: std::sync::Arc<Context>,
    proxy: Proxy,
}

static CORE: OnceCell<Core> = OnceCell::const_new();

async fn core() -> Result<&'static Core, Error> {
    CORE.get_or_try_init(|| async {
        let ctx = std::sync::Arc::new(Context::from_env()?);
        let proxy = Proxy::start(ctx.clone()).await?;
        Ok(Core { ctx, proxy })
    })
    .await
}

fn store() -> Result<Store, Error> {
    Ok(Store::new(config::agent_dir()?))
}

/// Times are shown in the user's zone.
fn tz() -> TimeZone {
    TimeZone::system()
}

/// What went wrong, for a program (`kind`) and for the user (`message`, the whole cause chain).
#[napi(object)]
pub struct Problem {
    pub kind: ProblemKind,
    pub message: String,
}

#[napi(string_enum = "camelCase")]
pub enum ProblemKind {
    Config,
    StoreUnreadable,
    StoreTooNew,
    StoreIo,
    StoreUnsafe,
    Proxy,
    Auth,
    Usage,
    Login,
    LoginCancelled,
    LoginTimedOut,
    Paste,
    Label,
    Unavailable,
}

impl From<Error> for Problem {
    fn from(error: Error) -> Self {
        let kind = match error.kind {
            ErrorKind::Config => ProblemKind::Config,
            ErrorKind::StoreUnreadable => ProblemKind::StoreUnreadable,
            ErrorKind::StoreTooNew => ProblemKind::StoreTooNew,
            ErrorKind::StoreIo => ProblemKind::StoreIo,
            ErrorKind::StoreUnsafe => ProblemKind::StoreUnsafe,
            ErrorKind::Proxy => ProblemKind::Proxy,
            ErrorKind::Auth => ProblemKind::Auth,
            ErrorKind::Usage => ProblemKind::Usage,
            ErrorKind::Login => ProblemKind::Login,
            ErrorKind::LoginCancelled => ProblemKind::LoginCancelled,
            ErrorKind::LoginTimedOut => ProblemKind::LoginTimedOut,
            ErrorKind::Paste => ProblemKind::Paste,
            ErrorKind::Label => ProblemKind::Label,
            ErrorKind::Unavailable => ProblemKind::Unavailable,
        };
        Self {
            kind,
            message: error.chain(),
        }
    }
}

/// A result, or the problem that stands in for it (written out as `Either<T, Problem>` in each
/// signature, so the generated types read `T | Problem`).
fn outcome<T, U: From<T>>(result: Result<T, Error>) -> Either<U, Problem> {
    match result {
        Ok(value) => Either::A(value.into()),
        Err(error) => Either::B(error.into()),
    }
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
pub async fn start_proxy() -> Either<ProxyInfo, Problem> {
    outcome(core().await.map(|core| ProxyInfo {
        base_url: core.proxy.base_url(),
        api_key: core.proxy.credential().to_owned(),
    }))
}

/// The labels of the pool's accounts, for argument completion.
#[napi]
pub fn account_labels() -> Either<Vec<String>, Problem> {
    outcome(store().and_then(|s| s.load()).map(|file| {
        file.accounts
            .into_iter()
            .map(|a| a.label)
            .collect::<Vec<_>>()
    }))
}

/// Fetches usage for accounts whose view is older than the freshness period, concurrently
/// (joining a fetch under way). Returns how many accounts were fetched; failures show up as
/// stale rows in the status.
#[napi]
pub async fn refresh_usage() -> Either<u32, Problem> {
    let fetched = async { core().await?.ctx.usage.refresh_stale().await }.await;
    outcome(fetched.map(|f| f.len() as u32))
}

/// Starts the same fetch and returns at once, holding nothing open: a print-mode pi exits when
/// its answer is done, and its first request joins the fetch. Does nothing before the proxy
/// started.
#[napi]
pub fn start_usage_refresh() {
    if let Some(core) = CORE.get() {
        napi::bindgen_prelude::spawn(async move {
            let _ = core.ctx.usage.refresh_stale().await;
        });
    }
}

/// A sentence for the user, and the account it concerns.
#[napi(object)]
pub struct Done {
    pub label: String,
    pub message: String,
}

/// Pins an account, by label, for a session until a rotation moves it off. An account that
/// cannot serve now is refused (kind `unavailable`), an unknown label too (kind `label`).
#[napi]
pub async fn use_account(session_id: String, label: String) -> Either<Done, Problem> {
    let pinned = async {
        let core = core().await?;
        commands::use_account(&core.ctx, &session_id, &label)
    };
    outcome(pinned.await.map(|account| Done {
        message: text::pinned(&account.label),
        label: account.label,
    }))
}

#[napi(string_enum = "camelCase")]
pub enum NoticeKind {
    /// A request moved the session to another account.
    Rotation,
}

#[napi(object)]
pub struct NoticeView {
    pub kind: NoticeKind,
    pub message: String,
}

impl From<Notice> for NoticeView {
    fn from(n: Notice) -> Self {
        Self {
            kind: NoticeKind::Rotation,
            message: text::notice(
                &n.from_label,
                &n.to_label,
                &n.why,
                n.back_at_ms,
                n.pin_cleared,
                now_ms(),
                &tz(),
            ),
        }
    }
}

/// The notices owed to a session; each is returned once.
#[napi]
pub fn take_notices(session_id: String) -> Vec<NoticeView> {
    let Some(core) = CORE.get() else {
        return Vec::new();
    };
    core.ctx
        .pool
        .take_notices(&session_id)
        .into_iter()
        .map(NoticeView::from)
        .collect()
}

/// Gives an account a new label; an unknown or taken label is a problem of kind `label`.
#[napi]
pub fn rename_account(label: String, new_label: String) -> Either<String, Problem> {
    outcome(
        store()
            .and_then(|s| s.rename_account(&label, &new_label))
            .map(|()| text::renamed(&label, new_label.trim())),
    )
}

/// Removes an account and its tokens; an unknown label is a problem of kind `label`.
#[napi]
pub fn remove_account(label: String) -> Either<String, Problem> {
    outcome(
        store()
            .and_then(|s| s.remove_account(&label))
            .map(|removed| text::removed(&removed.label)),
    )
}
