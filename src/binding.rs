//! The napi layer the pi extension loads: converts types and errors, and holds the one proxy of
//! this process. No policy lives here.

use std::collections::HashMap;
use std::sync::Arc;

use napi_derive::napi;
use tokio::sync::OnceCell;

use crate::config;
use crate::context::Context;
use crate::error::Error;
use crate::login::{self, BrowserLogin, Callback, DeviceLogin, LoginOptions, LoginOutcome};
use crate::now_ms;
use crate::proxy::Proxy;
use crate::select::{self, Availability, Reason};
use crate::store::{Account, Store, UsageWindow};
use crate::usage::{self, WindowKind};

/// The core of this process: one context and one proxy, alive until the process exits; pi's
/// `/reload` gets the same ones.
struct Core {
    ctx: Arc<Context>,
    proxy: Proxy,
}

static CORE: OnceCell<Core> = OnceCell::const_new();

async fn core() -> Result<&'static Core, Error> {
    CORE.get_or_try_init(|| async {
        let ctx = Arc::new(Context::from_env()?);
        let proxy = Proxy::start(ctx.clone()).await?;
        Ok(Core { ctx, proxy })
    })
    .await
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

/// The labels of the pool's accounts, for argument completion.
#[napi]
pub fn account_labels() -> napi::Result<Vec<String>> {
    let store = Store::new(config::agent_dir().map_err(to_napi)?);
    let file = store.load().map_err(to_napi)?;
    Ok(file.accounts.into_iter().map(|a| a.label).collect())
}

/// Starts the loopback proxy (once per process). Binds a local port; makes no network call.
#[napi]
pub async fn start_proxy() -> napi::Result<ProxyInfo> {
    let core = core().await.map_err(to_napi)?;
    Ok(ProxyInfo {
        base_url: core.proxy.base_url(),
        api_key: core.proxy.credential().to_owned(),
    })
}

/// Fetches usage for accounts whose view is older than the freshness period, concurrently.
/// Returns how many accounts were fetched; failures show up as stale rows in the status.
#[napi]
pub async fn refresh_usage() -> napi::Result<u32> {
    let core = core().await.map_err(to_napi)?;
    let fetched = usage::refresh_stale(&core.ctx, usage::FRESH_FOR)
        .await
        .map_err(to_napi)?;
    Ok(fetched.len() as u32)
}

#[napi(object)]
pub struct WindowView {
    pub used_percent: f64,
    /// Unix milliseconds; absent when unknown or already past.
    pub resets_at_ms: Option<f64>,
    /// For windows beyond the 5-hour and weekly ones.
    pub name: Option<String>,
}

#[napi(object)]
pub struct AccountView {
    pub id: String,
    pub label: String,
    pub email: Option<String>,
    pub plan: Option<String>,
    /// `ready`, `benched`, `spent` (a window at 100%), `needsLogin` or `disabled`.
    pub state: String,
    /// Why it cannot serve, for every state but `ready`.
    pub reason: Option<String>,
    /// When a benched or spent account comes back, unix milliseconds.
    pub back_at_ms: Option<f64>,
    pub untouched: bool,
    /// Serves the asking session (or would serve its next request).
    pub active: bool,
    pub pinned: bool,
    pub five_hour: Option<WindowView>,
    pub weekly: Option<WindowView>,
    pub other_windows: Vec<WindowView>,
    /// When the usage shown was observed; absent if never.
    pub usage_observed_at_ms: Option<f64>,
    /// The usage shown is older than the freshness period.
    pub stale: bool,
    /// Why the last usage fetch for it failed, when one was just tried.
    pub fetch_error: Option<String>,
}

#[napi(object)]
pub struct ChoiceView {
    pub label: String,
    /// `pinned`, `kept`, `untouched`, `soonestWeeklyReset` or `any`.
    pub reason: String,
    pub resets_at_ms: Option<f64>,
    /// For `any`: how many accounts it was picked among.
    pub among: Option<u32>,
    /// No request of the session has used it yet: this is who would serve next.
    pub preview: bool,
}

#[napi(object)]
pub struct PoolView {
    pub path: String,
    pub accounts: Vec<AccountView>,
    pub active: Option<ChoiceView>,
    /// The last write of learned changes to the accounts file failed.
    pub write_error: Option<String>,
}

/// The pool as the status command and the footer show it; never includes tokens. With
/// `refresh`, usage older than the freshness period is fetched first (concurrently).
#[napi]
pub async fn status(session_id: Option<String>, refresh: bool) -> napi::Result<PoolView> {
    let core = core().await.map_err(to_napi)?;
    let ctx = &core.ctx;
    let mut fetch_errors = HashMap::new();
    if refresh {
        for fetched in usage::refresh_stale(ctx, usage::FRESH_FOR)
            .await
            .map_err(to_napi)?
        {
            if let Err(e) = fetched.result {
                fetch_errors.insert(fetched.account_id, e.chain());
            }
        }
    }
    let file = ctx.pool.snapshot(&ctx.store).map_err(to_napi)?;
    let now = now_ms();
    let session = session_id.as_deref();
    let seat = session.and_then(|s| ctx.pool.seat(s));
    let choice = ctx.pool.choose(session, &file.accounts, now, |_| false);
    let active = choice.map(|(account, reason)| {
        let preview = seat.as_ref().is_none_or(|s| s.account_id != account.id);
        // A kept account shows why it was chosen in the first place.
        let reason = match (&seat, reason) {
            (Some(seat), Reason::Kept) => seat.reason.clone(),
            (_, reason) => reason,
        };
        (account.id.clone(), account.label.clone(), reason, preview)
    });
    let accounts = file
        .accounts
        .iter()
        .map(|account| account_view(account, now, active.as_ref(), &mut fetch_errors))
        .collect();
    Ok(PoolView {
        path: ctx.store.path().display().to_string(),
        accounts,
        active: active.map(|(_, label, reason, preview)| choice_view(label, reason, preview)),
        write_error: ctx.pool.last_write_error(),
    })
}

fn account_view(
    account: &Account,
    now: u64,
    active: Option<&(String, String, Reason, bool)>,
    fetch_errors: &mut HashMap<String, String>,
) -> AccountView {
    let availability = select::availability(account, now);
    let (state, reason) = match &availability {
        Availability::Ready => ("ready", None),
        Availability::Benched { .. } => ("benched", Some(availability.describe())),
        Availability::Spent { .. } => ("spent", Some(availability.describe())),
        Availability::NeedsLogin { reason } => ("needsLogin", Some(reason.clone())),
        Availability::Disabled { reason } => ("disabled", Some(reason.clone())),
    };
    let usage = account.usage.as_ref();
    let window = |w: &UsageWindow| WindowView {
        used_percent: w.used_now(now),
        resets_at_ms: w.reset_ahead(now).map(|t| t as f64),
        name: w.name.clone(),
    };
    let is_active = active.is_some_and(|(id, ..)| *id == account.id);
    AccountView {
        id: account.id.clone(),
        label: account.label.clone(),
        email: account.email.clone(),
        plan: account.plan.clone(),
        state: state.into(),
        reason,
        back_at_ms: availability.back_at().map(|t| t as f64),
        untouched: usage.is_some_and(|u| u.is_untouched(now)),
        active: is_active,
        pinned: is_active && active.is_some_and(|(.., reason, _)| *reason == Reason::Pinned),
        five_hour: usage
            .and_then(|u| u.window(WindowKind::FiveHour))
            .map(window),
        weekly: usage.and_then(|u| u.window(WindowKind::Weekly)).map(window),
        other_windows: usage
            .map(|u| {
                u.windows
                    .iter()
                    .filter(|w| w.kind() == WindowKind::Other)
                    .map(window)
                    .collect()
            })
            .unwrap_or_default(),
        usage_observed_at_ms: usage.map(|u| u.observed_at_ms as f64),
        stale: usage.is_none_or(|u| !u.is_fresh(now)),
        fetch_error: fetch_errors.remove(&account.id),
    }
}

fn choice_view(label: String, reason: Reason, preview: bool) -> ChoiceView {
    let (kind, resets_at_ms, among) = match reason {
        Reason::Pinned => ("pinned", None, None),
        Reason::Kept => ("kept", None, None),
        Reason::Untouched => ("untouched", None, None),
        Reason::SoonestWeeklyReset { resets_at_ms } => {
            ("soonestWeeklyReset", Some(resets_at_ms as f64), None)
        }
        Reason::Any { among } => ("any", None, Some(among as u32)),
    };
    ChoiceView {
        label,
        reason: kind.into(),
        resets_at_ms,
        among,
        preview,
    }
}

/// Pins an account, by label, for a session until a rotation moves it off. Refuses an
/// account that cannot serve now, saying why.
#[napi]
pub async fn use_account(session_id: String, label: String) -> napi::Result<AccountView> {
    let core = core().await.map_err(to_napi)?;
    let ctx = &core.ctx;
    let file = ctx.pool.snapshot(&ctx.store).map_err(to_napi)?;
    let now = now_ms();
    let Some(account) = file.accounts.iter().find(|a| a.label == label) else {
        let known: Vec<&str> = file.accounts.iter().map(|a| a.label.as_str()).collect();
        return Err(napi::Error::from_reason(format!(
            "no account is labelled \"{label}\" (known: {})",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )));
    };
    let availability = select::availability(account, now);
    if availability != Availability::Ready {
        return Err(napi::Error::from_reason(format!(
            "\"{label}\" cannot serve now: {}",
            availability.describe()
        )));
    }
    ctx.pool.pin(&session_id, &account.id);
    let active = (account.id.clone(), label, Reason::Pinned, false);
    Ok(account_view(
        account,
        now,
        Some(&active),
        &mut HashMap::new(),
    ))
}

#[napi(object)]
pub struct NoticeView {
    pub from_label: String,
    pub to_label: String,
    pub why: String,
    pub back_at_ms: Option<f64>,
    pub pin_cleared: bool,
}

/// The rotation notices owed to a session; each is returned once.
#[napi]
pub fn take_notices(session_id: String) -> Vec<NoticeView> {
    let Some(core) = CORE.get() else {
        return Vec::new();
    };
    core.ctx
        .pool
        .take_notices(&session_id)
        .into_iter()
        .map(|n| NoticeView {
            from_label: n.from_label,
            to_label: n.to_label,
            why: n.why,
            back_at_ms: n.back_at_ms.map(|t| t as f64),
            pin_cleared: n.pin_cleared,
        })
        .collect()
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
    let login = BrowserLogin::start(core().await.map_err(to_napi)?.ctx.clone(), options, port)
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
    let login = DeviceLogin::start(core().await.map_err(to_napi)?.ctx.clone(), options)
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
