//! Adding an account to the pool: the browser login (PKCE, answered by a loopback callback or by
//! the redirect URL pasted by hand) and the device-code login, both ending in the account saved
//! to the store under its label.
//!
//! A login changes the store only at its very end, after the code exchange succeeded: a refused
//! consent, a foreign answer, a failed exchange, a cancel or a timeout leave the pool as it was.
//! The PKCE verifier, the authorization code and the tokens never enter a message or a `Debug`
//! output.

use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::RngExt as _;
use reqwest::Url;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::auth::{self, CLIENT_ID};
use crate::config::join;
use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::loopback;
use crate::now_ms;
use crate::store::{self, Account, AccountState, AccountsFile, Store, Tokens};

/// How long a browser login waits for the callback or a paste.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long a device login polls; the user code expires about then anyway.
pub const DEVICE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const SCOPE: &str = "openid profile email offline_access";
/// Names the client to the authorization server, as pi does for its own Codex login.
const ORIGINATOR: &str = "pi";
const CALLBACK_PATH: &str = "/auth/callback";
const AUTH_CLAIM: &str = "https://api.openai.com/auth";
const PROFILE_CLAIM: &str = "https://api.openai.com/profile";
/// A browser that cannot send its request head in this long is not a browser.
const CALLBACK_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Each device-code call gets this long; a hung call must not outlive the login.
const DEVICE_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Used when the server names no polling interval.
const DEFAULT_DEVICE_INTERVAL: Duration = Duration::from_secs(5);
/// Server text shown to the user is cut here: it is outside data of any length.
const MAX_DESCRIPTION_CHARS: usize = 200;

/// A PKCE pair (RFC 7636, S256).
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    /// A fresh random pair.
    pub fn generate() -> Self {
        let verifier = random_token();
        Self {
            challenge: pkce_challenge(&verifier),
            verifier,
        }
    }
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkce")
            .field("verifier", &"<redacted>")
            .field("challenge", &self.challenge)
            .finish()
    }
}

/// The S256 challenge of a verifier: base64url(SHA-256(verifier)), unpadded.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// 32 random bytes as base64url: 43 characters, all valid in a PKCE verifier and a URL.
fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The browser login's start page at the issuer.
pub fn authorize_url(issuer: &Url, redirect_uri: &str, challenge: &str, state: &str) -> Url {
    let mut url = join(issuer, "oauth/authorize");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", SCOPE)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("id_token_add_organizations", "true")
        .append_pair("codex_cli_simplified_flow", "true")
        .append_pair("state", state)
        .append_pair("originator", ORIGINATOR);
    url
}

/// What the authorization server sent to the redirect URI.
#[derive(Clone, PartialEq, Eq)]
pub enum Redirect {
    Code {
        code: String,
        state: String,
    },
    /// The server refused, e.g. `access_denied` when the user declined.
    Refused {
        error: String,
        description: Option<String>,
        state: Option<String>,
    },
}

impl std::fmt::Debug for Redirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code { state, .. } => f
                .debug_struct("Code")
                .field("code", &"<redacted>")
                .field("state", state)
                .finish(),
            Self::Refused {
                error,
                description,
                state,
            } => f
                .debug_struct("Refused")
                .field("error", error)
                .field("description", description)
                .field("state", state)
                .finish(),
        }
    }
}

/// Reads what a user pasted: the whole redirect URL, its query string (with or without `?`),
/// or `code#state`.
pub fn parse_paste(text: &str) -> Result<Redirect, Error> {
    let text = text.trim().trim_matches(|c| c == '"' || c == '\'');
    let not_a_redirect = |why: &str| {
        Error::new(
            ErrorKind::Paste,
            format!(
                "{why}. Paste the whole address the browser was sent to after signing in (it \
                 starts with http://localhost:1455/auth/callback?code=...)"
            ),
        )
    };
    if text.is_empty() {
        return Err(not_a_redirect("nothing was pasted"));
    }
    let query = if let Ok(url) = Url::parse(text) {
        url.query().unwrap_or_default().to_owned()
    } else if text.contains('=') {
        text.trim_start_matches('?').to_owned()
    } else if let Some((code, state)) = text.split_once('#') {
        if code.is_empty() || state.is_empty() {
            return Err(not_a_redirect("the pasted text has an empty code or state"));
        }
        return Ok(Redirect::Code {
            code: code.to_owned(),
            state: state.to_owned(),
        });
    } else {
        return Err(not_a_redirect("the pasted text is not a redirect URL"));
    };
    match redirect_from_query(&query) {
        Some(redirect) => Ok(redirect),
        None if query_has(&query, "code") => Err(not_a_redirect(
            "the pasted text has a code but no state, so it cannot be matched to this login",
        )),
        None => Err(not_a_redirect("the pasted text has no code")),
    }
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn query_has(query: &str, name: &str) -> bool {
    query_pairs(query)
        .iter()
        .any(|(n, v)| n == name && !v.is_empty())
}

/// The answer in a redirect's query string, if it holds one.
fn redirect_from_query(query: &str) -> Option<Redirect> {
    let pairs = query_pairs(query);
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    if let Some(error) = get("error") {
        return Some(Redirect::Refused {
            error,
            description: get("error_description"),
            state: get("state"),
        });
    }
    Some(Redirect::Code {
        code: get("code")?,
        state: get("state")?,
    })
}

/// Who logged in, from the token claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub chatgpt_account_id: String,
    pub chatgpt_user_id: Option<String>,
    pub email: Option<String>,
    pub plan: Option<String>,
}

/// The identity in a token set: the id token's claims first, the access token's where the id
/// token is silent.
pub fn identity(tokens: &Tokens) -> Result<Identity, Error> {
    let claims: Vec<Value> = tokens
        .id_token
        .iter()
        .chain([&tokens.access_token])
        .filter_map(|t| auth::jwt_claims(t))
        .collect();
    let find = |pointer: &str| {
        claims
            .iter()
            .find_map(|c| c.pointer(pointer)?.as_str().filter(|s| !s.is_empty()))
            .map(str::to_owned)
    };
    // JSON pointers escape `/` in claim names as `~1`.
    let auth = AUTH_CLAIM.replace('/', "~1");
    let profile = PROFILE_CLAIM.replace('/', "~1");
    let chatgpt_account_id = find(&format!("/{auth}/chatgpt_account_id")).ok_or_else(|| {
        Error::new(
            ErrorKind::Login,
            "the login's tokens name no ChatGPT account (no chatgpt_account_id claim); nothing \
             was changed",
        )
    })?;
    Ok(Identity {
        chatgpt_account_id,
        chatgpt_user_id: find(&format!("/{auth}/chatgpt_user_id"))
            .or_else(|| find(&format!("/{auth}/user_id"))),
        email: find("/email").or_else(|| find(&format!("/{profile}/email"))),
        plan: find(&format!("/{auth}/chatgpt_plan_type")),
    })
}

/// What a login did to the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginOutcome {
    pub label: String,
    pub email: Option<String>,
    pub plan: Option<String>,
    /// False when the identity was in the pool already and got new tokens.
    pub added: bool,
    /// The label asked for, when the identity already had another one (which it keeps).
    pub ignored_label: Option<String>,
}

/// Saves a login: a known identity gets the new tokens and becomes usable again, keeping its
/// id, label and history; a new one is added under `label`, else its email, else the first
/// free `account-N`. A label that belongs to another identity is refused.
pub fn save_login(
    store: &Store,
    identity: &Identity,
    tokens: Tokens,
    label: Option<&str>,
) -> Result<LoginOutcome, Error> {
    let label = label.map(store::check_label).transpose()?;
    let known = store
        .load()?
        .accounts
        .into_iter()
        .find(|a| same_identity(a, identity));
    // A refresh of this account in flight, here or in another process, finishes first, so it
    // cannot overwrite the new tokens with the old session's.
    let _refresh_lock = known.map(|a| store.account_lock(&a.id)).transpose()?;
    store.update(|file| upsert(file, identity, tokens, label))
}

fn same_identity(account: &Account, identity: &Identity) -> bool {
    account.chatgpt_account_id == identity.chatgpt_account_id
        && match (&account.chatgpt_user_id, &identity.chatgpt_user_id) {
            (Some(stored), Some(new)) => stored == new,
            // Accounts saved without a user id are known by their account id alone.
            _ => true,
        }
}

fn upsert(
    file: &mut AccountsFile,
    identity: &Identity,
    tokens: Tokens,
    label: Option<&str>,
) -> Result<LoginOutcome, Error> {
    if let Some(account) = file
        .accounts
        .iter_mut()
        .find(|a| same_identity(a, identity))
    {
        account.tokens = tokens;
        account.state = AccountState::Usable;
        if identity.chatgpt_user_id.is_some() {
            account
                .chatgpt_user_id
                .clone_from(&identity.chatgpt_user_id);
        }
        if identity.email.is_some() {
            account.email.clone_from(&identity.email);
        }
        if identity.plan.is_some() {
            account.plan.clone_from(&identity.plan);
        }
        return Ok(LoginOutcome {
            label: account.label.clone(),
            email: account.email.clone(),
            plan: account.plan.clone(),
            added: false,
            ignored_label: label.filter(|l| *l != account.label).map(str::to_owned),
        });
    }
    let label = match label {
        Some(label) => match file.by_label(label) {
            Some(owner) => return Err(store::label_taken(label, owner)),
            None => label.to_owned(),
        },
        None => identity
            .email
            .as_deref()
            .and_then(|email| store::check_label(email).ok())
            .filter(|email| file.by_label(email).is_none())
            .map_or_else(|| file.free_numbered_label(), str::to_owned),
    };
    let id: u64 = rand::rng().random();
    file.accounts.push(Account {
        id: format!("acc-{id:016x}"),
        label: label.clone(),
        chatgpt_account_id: identity.chatgpt_account_id.clone(),
        chatgpt_user_id: identity.chatgpt_user_id.clone(),
        email: identity.email.clone(),
        plan: identity.plan.clone(),
        tokens,
        state: AccountState::Usable,
        usage: None,
        added_at_ms: now_ms(),
    });
    Ok(LoginOutcome {
        label,
        email: identity.email.clone(),
        plan: identity.plan.clone(),
        added: true,
        ignored_label: None,
    })
}

/// Reads the identity from fresh tokens and saves them, off the async threads: the store
/// blocks on file locks.
async fn save(ctx: &Context, tokens: Tokens, label: Option<String>) -> Result<LoginOutcome, Error> {
    let identity = identity(&tokens)?;
    let store = ctx.store.clone();
    tokio::task::spawn_blocking(move || save_login(&store, &identity, tokens, label.as_deref()))
        .await
        .map_err(|e| Error::new(ErrorKind::Login, "saving the login failed").with_source(e))?
}

/// What either login needs at its start.
#[derive(Clone, Debug)]
pub struct LoginOptions {
    /// The label to give a new account; checked before anything else happens.
    pub label: Option<String>,
    pub timeout: Duration,
}

impl LoginOptions {
    /// The label, if given, once it passes the store's rules.
    fn checked_label(&self) -> Result<Option<String>, Error> {
        Ok(self
            .label
            .as_deref()
            .map(store::check_label)
            .transpose()?
            .map(str::to_owned))
    }
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
    Error::new(
        ErrorKind::LoginCancelled,
        "login cancelled; nothing was changed",
    )
}

fn timed_out(waited: Duration, for_what: &str) -> Error {
    let seconds = waited.as_secs();
    let span = if seconds >= 60 && seconds.is_multiple_of(60) {
        format!("{} minutes", seconds / 60)
    } else {
        format!("{seconds} seconds")
    };
    Error::new(
        ErrorKind::LoginTimedOut,
        format!("{for_what} within {span}; nothing was changed. Run /dispatch-login again"),
    )
}

fn login_over() -> Error {
    Error::new(
        ErrorKind::Login,
        "this login is over (it finished, was cancelled or timed out); run /dispatch-login again",
    )
}

fn already_waiting() -> Error {
    Error::new(ErrorKind::Login, "this login is already being waited for")
}

/// Server text for a message: one line, bounded.
fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_DESCRIPTION_CHARS)
        .collect()
}

/// Whether the browser can deliver the answer itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Callback {
    Listening {
        port: u16,
    },
    /// Only a paste can complete this login; `notice` tells the user why.
    Unavailable {
        notice: String,
    },
}

/// An answer to the browser login, from the callback (which waits to show the outcome) or a
/// paste.
struct Answer {
    redirect: Redirect,
    /// The label saved, or the error message, for the browser's page.
    reply: Option<oneshot::Sender<Result<String, String>>>,
}

/// A browser login in progress: the URL to open, a callback listener when its port was free,
/// and a place for a pasted redirect. Whichever answer arrives first decides the login.
pub struct BrowserLogin {
    ctx: Arc<Context>,
    label: Option<String>,
    url: Url,
    redirect_uri: String,
    state: String,
    pkce: Pkce,
    callback: Callback,
    timeout: Duration,
    deadline: Instant,
    answers: mpsc::UnboundedSender<Answer>,
    inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<Answer>>,
    life: Lifecycle,
}

impl BrowserLogin {
    /// Checks the label, then listens on 127.0.0.1:`callback_port` (0: any free port). A port
    /// that cannot be had leaves the login to the paste path, and [`Self::callback`] says so.
    pub async fn start(
        ctx: Arc<Context>,
        options: LoginOptions,
        callback_port: u16,
    ) -> Result<Self, Error> {
        let label = options.checked_label()?;
        let pkce = Pkce::generate();
        let state = random_token();
        let (answers, inbox) = mpsc::unbounded_channel();
        let life = Lifecycle::new();
        let deadline = Instant::now() + options.timeout;
        let (callback, port) = match TcpListener::bind((Ipv4Addr::LOCALHOST, callback_port)).await {
            Ok(listener) => {
                let port = listener
                    .local_addr()
                    .map_err(|e| {
                        Error::new(ErrorKind::Login, "cannot read the callback port").with_source(e)
                    })?
                    .port();
                tokio::spawn(serve_callback(
                    listener,
                    answers.clone(),
                    life.0.subscribe(),
                    deadline,
                ));
                (Callback::Listening { port }, port)
            }
            Err(e) => {
                let notice = if e.kind() == std::io::ErrorKind::AddrInUse {
                    format!("port {callback_port} is in use; paste the redirect URL")
                } else {
                    format!(
                        "cannot listen on 127.0.0.1:{callback_port} ({e}); paste the redirect URL"
                    )
                };
                (Callback::Unavailable { notice }, callback_port)
            }
        };
        let redirect_uri = format!("http://localhost:{port}{CALLBACK_PATH}");
        let url = authorize_url(&ctx.endpoints.auth, &redirect_uri, &pkce.challenge, &state);
        Ok(Self {
            ctx,
            label,
            url,
            redirect_uri,
            state,
            pkce,
            callback,
            timeout: options.timeout,
            deadline,
            answers,
            inbox: tokio::sync::Mutex::new(inbox),
            life,
        })
    }

    /// The page the user signs in on.
    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn callback(&self) -> &Callback {
        &self.callback
    }

    /// Hands in a pasted redirect. Text that is not one is refused here and the login goes on;
    /// an answer is queued, and if it is the first, it decides the login.
    pub fn submit_paste(&self, text: &str) -> Result<(), Error> {
        let redirect = parse_paste(text)?;
        self.answers
            .send(Answer {
                redirect,
                reply: None,
            })
            .map_err(|_| login_over())
    }

    pub fn cancel(&self) {
        self.life.end(Phase::Cancelled);
    }

    /// Waits for the first answer, redeems it and saves the account. The callback listener
    /// closes when this returns.
    pub async fn wait(&self) -> Result<LoginOutcome, Error> {
        let Ok(mut inbox) = self.inbox.try_lock() else {
            return Err(already_waiting());
        };
        let result = tokio::select! {
            biased;
            () = self.life.cancelled() => Err(cancelled_error()),
            answer = inbox.recv() => match answer {
                Some(answer) => self.complete(answer).await,
                None => Err(login_over()),
            },
            () = tokio::time::sleep_until(self.deadline) => {
                Err(timed_out(self.timeout, "no answer from the browser"))
            }
        };
        self.life.end(Phase::Finished);
        // Answers that came too late find the login over; their browser pages say so.
        inbox.close();
        while inbox.try_recv().is_ok() {}
        result
    }

    async fn complete(&self, answer: Answer) -> Result<LoginOutcome, Error> {
        let result = self.redeem(answer.redirect).await;
        if let Some(reply) = answer.reply {
            let _ = reply.send(match &result {
                Ok(outcome) => Ok(outcome.label.clone()),
                Err(e) => Err(e.chain()),
            });
        }
        result
    }

    async fn redeem(&self, redirect: Redirect) -> Result<LoginOutcome, Error> {
        let state_mismatch = || {
            Error::new(
                ErrorKind::Login,
                "the answer does not belong to this login (its state does not match), so \
                 nothing was changed. Run /dispatch-login again and use the newest link",
            )
        };
        let code = match redirect {
            Redirect::Code { code, state } if state == self.state => code,
            Redirect::Code { .. } => return Err(state_mismatch()),
            Redirect::Refused {
                state: Some(state), ..
            } if state != self.state => return Err(state_mismatch()),
            Redirect::Refused {
                error, description, ..
            } => {
                let detail = description.map_or_else(String::new, |d| format!(": {}", clean(&d)));
                return Err(Error::new(
                    ErrorKind::Login,
                    format!(
                        "the sign-in was refused ({}{detail}); nothing was changed. Run \
                         /dispatch-login to try again",
                        clean(&error)
                    ),
                ));
            }
        };
        let tokens =
            auth::exchange_code(&self.ctx, &code, &self.redirect_uri, &self.pkce.verifier).await?;
        save(&self.ctx, tokens, self.label.clone()).await
    }
}

/// Serves the browser's redirect until the login ends or its time is up.
async fn serve_callback(
    listener: TcpListener,
    answers: mpsc::UnboundedSender<Answer>,
    mut phase: watch::Receiver<Phase>,
    deadline: Instant,
) {
    let stop = async move {
        tokio::select! {
            () = ended(&mut phase) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    };
    loopback::accept_until(listener, stop, |stream| {
        let answers = answers.clone();
        async move {
            let service = service_fn(move |req| answer_browser(answers.clone(), req));
            let _ = loopback::http1(CALLBACK_HEAD_TIMEOUT)
                // One request per connection, so nothing keeps the port busy after the login.
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
}

async fn ended(phase: &mut watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p != Phase::Open).await;
}

async fn answer_browser(
    answers: mpsc::UnboundedSender<Answer>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != CALLBACK_PATH {
        return Ok(page(
            StatusCode::NOT_FOUND,
            "Not found",
            "pi-dispatch's login answers only at /auth/callback.",
        ));
    }
    let Some(redirect) = req.uri().query().and_then(redirect_from_query) else {
        return Ok(page(
            StatusCode::BAD_REQUEST,
            "Not a sign-in answer",
            "This address expects the redirect from the OpenAI sign-in page.",
        ));
    };
    let (reply, outcome) = oneshot::channel();
    let sent = answers.send(Answer {
        redirect,
        reply: Some(reply),
    });
    Ok(match (sent, outcome.await) {
        (Ok(()), Ok(Ok(label))) => page(
            StatusCode::OK,
            "Signed in",
            &format!(
                "pi-dispatch saved the account \"{label}\". You can close this tab and return \
                 to pi."
            ),
        ),
        (Ok(()), Ok(Err(message))) => page(StatusCode::BAD_REQUEST, "Sign-in failed", &message),
        _ => page(
            StatusCode::GONE,
            "This sign-in is over",
            "pi-dispatch is no longer waiting for this sign-in: it finished, was cancelled or \
             timed out. Return to pi.",
        ),
    })
}

fn page(status: StatusCode, title: &str, text: &str) -> Response<Full<Bytes>> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>pi-dispatch: {title}</title>\
         </head><body style=\"font-family: sans-serif; margin: 3em\"><h1>{title}</h1><p>{}</p>\
         </body></html>",
        escape_html(text)
    );
    let mut response = Response::new(Full::new(Bytes::from(html)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What an approved device login hands over: a code and the verifier the server made for it.
struct Approval {
    code: String,
    verifier: String,
}

/// A device-code login in progress: the user enters [`Self::user_code`] at
/// [`Self::verification_url`] on any device while this polls.
pub struct DeviceLogin {
    ctx: Arc<Context>,
    label: Option<String>,
    device_auth_id: String,
    user_code: String,
    verification_url: Url,
    interval: Duration,
    timeout: Duration,
    deadline: Instant,
    waiting: AtomicBool,
    life: Lifecycle,
}

impl DeviceLogin {
    /// Checks the label and asks the issuer for a user code.
    pub async fn start(ctx: Arc<Context>, options: LoginOptions) -> Result<Self, Error> {
        let label = options.checked_label()?;
        let response = ctx
            .http
            .client()?
            .post(join(
                &ctx.endpoints.auth,
                "api/accounts/deviceauth/usercode",
            ))
            .timeout(DEVICE_CALL_TIMEOUT)
            .json(&json!({ "client_id": CLIENT_ID }))
            .send()
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Login, "the device login could not start").with_source(e)
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            Error::new(ErrorKind::Login, "the device login's answer broke off").with_source(e)
        })?;
        if !status.is_success() {
            return Err(Error::new(
                ErrorKind::Login,
                format!(
                    "the device login could not start (the issuer answered {status}); try the \
                     browser login"
                ),
            ));
        }
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            Error::new(ErrorKind::Login, "the device login's answer is not JSON").with_source(e)
        })?;
        let text = |name: &str| value.get(name)?.as_str().map(str::to_owned);
        let (Some(device_auth_id), Some(user_code)) = (
            text("device_auth_id"),
            text("user_code").or_else(|| text("usercode")),
        ) else {
            return Err(Error::new(
                ErrorKind::Login,
                "the device login's answer has no device id or user code",
            ));
        };
        // The real server sends the interval as a string; accept a number too.
        let interval = match value.get("interval") {
            Some(Value::String(s)) => s.trim().parse().ok(),
            Some(v) => v.as_u64(),
            None => None,
        }
        .map_or(DEFAULT_DEVICE_INTERVAL, Duration::from_secs)
        // Never a busy loop, whatever the server says.
        .max(Duration::from_secs(1));
        Ok(Self {
            verification_url: join(&ctx.endpoints.auth, "codex/device"),
            ctx,
            label,
            device_auth_id,
            user_code,
            interval,
            timeout: options.timeout,
            deadline: Instant::now() + options.timeout,
            waiting: AtomicBool::new(false),
            life: Lifecycle::new(),
        })
    }

    pub fn user_code(&self) -> &str {
        &self.user_code
    }

    pub fn verification_url(&self) -> &Url {
        &self.verification_url
    }

    pub fn cancel(&self) {
        self.life.end(Phase::Cancelled);
    }

    /// Polls at the server's interval until the user approves, then saves the account. Ends
    /// with an error on denial, cancel or timeout.
    pub async fn wait(&self) -> Result<LoginOutcome, Error> {
        if self.waiting.swap(true, Ordering::SeqCst) {
            return Err(already_waiting());
        }
        let approval = tokio::select! {
            biased;
            () = self.life.cancelled() => Err(cancelled_error()),
            approval = self.poll_until_approved() => approval,
            () = tokio::time::sleep_until(self.deadline) => {
                Err(timed_out(self.timeout, "the device code was not approved"))
            }
        };
        self.life.end(Phase::Finished);
        let approval = approval?;
        let redirect_uri = join(&self.ctx.endpoints.auth, "deviceauth/callback");
        let tokens = auth::exchange_code(
            &self.ctx,
            &approval.code,
            redirect_uri.as_str(),
            &approval.verifier,
        )
        .await?;
        save(&self.ctx, tokens, self.label.clone()).await
    }

    async fn poll_until_approved(&self) -> Result<Approval, Error> {
        loop {
            tokio::time::sleep(self.interval).await;
            if let Some(approval) = self.poll().await? {
                return Ok(approval);
            }
        }
    }

    /// One poll: `None` while the user has not decided yet.
    async fn poll(&self) -> Result<Option<Approval>, Error> {
        let sent = self
            .ctx
            .http
            .client()?
            .post(join(
                &self.ctx.endpoints.auth,
                "api/accounts/deviceauth/token",
            ))
            .timeout(DEVICE_CALL_TIMEOUT)
            .json(&json!({ "device_auth_id": self.device_auth_id, "user_code": self.user_code }))
            .send()
            .await;
        // The user may be approving right now: a failed poll is retried at the next interval.
        let Ok(response) = sent else { return Ok(None) };
        let status = response.status();
        let Ok(body) = response.bytes().await else {
            return Ok(None);
        };
        // Pending is 403 or 404 on this server; a 5xx is the server's trouble, not an answer.
        if matches!(status.as_u16(), 403 | 404) || status.is_server_error() {
            return Ok(None);
        }
        if !status.is_success() {
            let denied = auth::error_codes(&body)
                .iter()
                .any(|c| c == "access_denied");
            let message = if denied {
                "the device login was denied; nothing was changed".to_owned()
            } else {
                format!(
                    "the device login failed (the issuer answered {status}); nothing was changed"
                )
            };
            return Err(Error::new(ErrorKind::Login, message));
        }
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            Error::new(ErrorKind::Login, "the device login's approval is not JSON").with_source(e)
        })?;
        let text = |name: &str| value.get(name)?.as_str().map(str::to_owned);
        match (text("authorization_code"), text("code_verifier")) {
            (Some(code), Some(verifier)) => Ok(Some(Approval { code, verifier })),
            _ => Err(Error::new(
                ErrorKind::Login,
                "the device login's approval has no authorization code",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_matches_rfc_7636() {
        // The example verifier and challenge of RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn pkce_pairs_are_fresh_valid_and_redacted() {
        let (a, b) = (Pkce::generate(), Pkce::generate());
        assert_ne!(a.verifier, b.verifier);
        assert_eq!(a.challenge, pkce_challenge(&a.verifier));
        // RFC 7636: 43 to 128 characters of [A-Za-z0-9-._~].
        assert_eq!(a.verifier.len(), 43);
        assert!(
            a.verifier
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
        );
        assert!(!format!("{a:?}").contains(&a.verifier));
    }

    #[test]
    fn authorize_url_carries_every_parameter() {
        let issuer = Url::parse("https://auth.openai.com").unwrap();
        let url = authorize_url(&issuer, "http://localhost:1455/auth/callback", "chal", "st");
        assert_eq!(url.path(), "/oauth/authorize");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("client_id"), Some(CLIENT_ID));
        assert_eq!(
            get("redirect_uri"),
            Some("http://localhost:1455/auth/callback")
        );
        assert_eq!(get("scope"), Some("openid profile email offline_access"));
        assert_eq!(get("code_challenge"), Some("chal"));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("id_token_add_organizations"), Some("true"));
        assert_eq!(get("codex_cli_simplified_flow"), Some("true"));
        assert_eq!(get("state"), Some("st"));
        assert_eq!(get("originator"), Some("pi"));
    }

    fn code(code: &str, state: &str) -> Redirect {
        Redirect::Code {
            code: code.into(),
            state: state.into(),
        }
    }

    #[test]
    fn every_paste_form_is_understood() {
        let forms = [
            "http://localhost:1455/auth/callback?code=ac_1&state=st_1",
            "  http://localhost:1455/auth/callback?state=st_1&code=ac_1&scope=x\n",
            "\"http://localhost:1455/auth/callback?code=ac_1&state=st_1\"",
            "code=ac_1&state=st_1",
            "?code=ac_1&state=st_1",
            "ac_1#st_1",
        ];
        for form in forms {
            assert_eq!(parse_paste(form).unwrap(), code("ac_1", "st_1"), "{form:?}");
        }
        assert_eq!(
            parse_paste("code=a%2Bb&state=s%20t").unwrap(),
            code("a+b", "s t"),
            "values are percent-decoded"
        );
    }

    #[test]
    fn a_pasted_refusal_is_an_answer() {
        let pasted = "http://localhost:1455/auth/callback?error=access_denied&error_description=The+user+denied&state=st_1";
        assert_eq!(
            parse_paste(pasted).unwrap(),
            Redirect::Refused {
                error: "access_denied".into(),
                description: Some("The user denied".into()),
                state: Some("st_1".into()),
            }
        );
    }

    #[test]
    fn pastes_that_are_no_answer_are_refused_with_the_paste_kind() {
        for bad in [
            "",
            "   ",
            "hello",
            "http://localhost:1455/auth/callback",
            "http://localhost:1455/auth/callback?state=st_1",
            "code=ac_1",
            "#st_1",
            "ac_1#",
        ] {
            let error = parse_paste(bad).unwrap_err();
            assert_eq!(error.kind, ErrorKind::Paste, "{bad:?}");
        }
        let no_state = parse_paste("code=ac_secret_1").unwrap_err();
        assert!(
            no_state.message.contains("no state"),
            "{}",
            no_state.message
        );
        assert!(!no_state.message.contains("ac_secret_1"));
    }

    #[test]
    fn a_redirect_debug_never_shows_the_code() {
        let shown = format!("{:?}", code("ac_secret_42", "st_1"));
        assert!(!shown.contains("ac_secret_42"), "{shown}");
        assert!(shown.contains("st_1"));
    }

    fn jwt(claims: Value) -> String {
        format!(
            "h.{}.s",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
        )
    }

    fn tokens(id_token: Option<Value>, access: Value) -> Tokens {
        Tokens {
            access_token: jwt(access),
            refresh_token: "rt".into(),
            id_token: id_token.map(jwt),
            expires_at_ms: 0,
        }
    }

    #[test]
    fn identity_comes_from_the_id_token_then_the_access_token() {
        let id = json!({
            "email": "a@example.com",
            AUTH_CLAIM: {"chatgpt_account_id": "acct-1", "chatgpt_plan_type": "pro"},
        });
        let access = json!({
            AUTH_CLAIM: {"chatgpt_account_id": "acct-ignored", "chatgpt_user_id": "user-1"},
        });
        assert_eq!(
            identity(&tokens(Some(id), access)).unwrap(),
            Identity {
                chatgpt_account_id: "acct-1".into(),
                chatgpt_user_id: Some("user-1".into()),
                email: Some("a@example.com".into()),
                plan: Some("pro".into()),
            }
        );
        let profile_only = json!({
            AUTH_CLAIM: {"chatgpt_account_id": "acct-2", "user_id": "user-2"},
            PROFILE_CLAIM: {"email": "b@example.com"},
        });
        let found = identity(&tokens(None, profile_only)).unwrap();
        assert_eq!(found.email.as_deref(), Some("b@example.com"));
        assert_eq!(found.chatgpt_user_id.as_deref(), Some("user-2"));
        assert_eq!(found.plan, None);
    }

    #[test]
    fn tokens_without_an_account_id_are_refused() {
        let error = identity(&tokens(Some(json!({"email": "a@b"})), json!({}))).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Login);
        let garbage = Tokens {
            access_token: "not a jwt".into(),
            refresh_token: "rt".into(),
            id_token: Some("x.!!.y".into()),
            expires_at_ms: 0,
        };
        assert_eq!(identity(&garbage).unwrap_err().kind, ErrorKind::Login);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<b>\"a\" & 'b'</b>"),
            "&lt;b&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/b&gt;"
        );
    }
}
