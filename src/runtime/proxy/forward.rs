//! One model request's way upstream: seat the session on an account, get its token, send the
//! body, classify what comes back, and on a failure before any output move to the next account
//! until one serves or none is left.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName};
use hyper::{Request, Response, StatusCode};

use super::gate::{Refusal, read_body};
use super::relay::{
    HeldFailure, ProxyBody, exhausted_message, failure_stream, full_bytes, hold_back,
    read_error_body, respond,
};
use crate::domain::account::{Account, AccountsFile, Change};
use crate::domain::conversation::{Foreign, strip_foreign_state};
use crate::domain::failure::{Action, Failure};
use crate::domain::select::{self, Need, Reason};
use crate::domain::text;
use crate::domain::usage::{self, Observation};
use crate::error::Error;
use crate::io::clock::now_ms;
use crate::runtime::auth::TokenError;
use crate::runtime::context::Context;
use crate::runtime::pool::Seated;

/// Upstream attempts for one request at most, however large the pool.
const MAX_ATTEMPTS: usize = 16;
/// Overload is the backend's, not an account's: one other account is worth a try, more only
/// multiply the load, and pi's own turn retry (with its backoff) does better.
const MAX_OVERLOADED: usize = 2;
/// When no account can serve but one is back within this long (a brief throttle), the proxy
/// waits for it instead of failing the turn.
const BRIEF_WAIT_MS: u64 = 20_000;
/// How long a reply that follows failed attempts waits for what they taught to reach the file.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// A failed attempt: what it means, what its reply's headers said about usage, and the reply
/// as it came, for a failure pi must see itself.
struct Failed {
    failure: Failure,
    seen: Option<Observation>,
    relay: Option<Response<ProxyBody>>,
}

impl From<Failure> for Failed {
    fn from(failure: Failure) -> Self {
        Self {
            failure,
            seen: None,
            relay: None,
        }
    }
}

/// The model of the request, set by the extension on every model it mirrors (`index.ts`);
/// never sent upstream. It decides the request's limit family.
const MODEL_HEADER: &str = "x-pi-dispatch-model";

/// Answers one model request: the session's account first, and on a failure before any output
/// the next account the policy picks, with the same body, until one serves or none is left.
pub async fn forward(
    ctx: &Arc<Context>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refusal> {
    let (parts, body) = req.into_parts();
    let body = Outgoing::new(
        read_body(body, ctx.timeouts.request_body).await?,
        &parts.headers,
    );
    let session = session_id(&parts.headers);
    let model = model_of(&parts.headers);

    let mut tried = HashSet::new();
    let mut failures: Vec<(String, Failure)> = Vec::new();
    let mut waited = false;
    while tried.len() < MAX_ATTEMPTS {
        let seated = match seat(ctx, session.as_deref(), model.as_deref(), &tried).await {
            Ok(Some(seated)) => seated,
            Ok(None) => {
                // Nothing left to try: when the first account is back soon, wait for it, once.
                let wait = ctx.pool.snapshot().ok().and_then(|file| {
                    brief_wait(&file.accounts, &file.family_of(model.as_deref()), now_ms())
                });
                match wait {
                    Some(wait) if !waited => {
                        // pi going away meanwhile drops this future, and the wait with it.
                        tokio::time::sleep(wait).await;
                        waited = true;
                        tried.clear();
                        continue;
                    }
                    _ => break,
                }
            }
            Err(e) => return Ok(failure_stream(&text::proxy_store_problem(&e.chain()))),
        };
        let (file, family, account) = (&seated.file, &seated.family, &seated.account);
        tried.insert(account.id.clone());
        // Only the account that served the session can read its reasoning.
        let known = session
            .as_deref()
            .and_then(|s| file.binding(s, now_ms()))
            .filter(|b| b.account_id == account.id)
            .map(|b| b.foreign.as_slice());
        match attempt(ctx, &parts.headers, account, &body, known).await {
            Ok((response, foreign)) => {
                let active = usage::active_family(response.headers());
                learn_family(ctx, file, model.as_deref(), active.as_deref());
                if let Some(session) = &session {
                    let now = now_ms();
                    ctx.pool.settle(session, &seated, &failures, foreign, now);
                }
                persist_failures(ctx, &failures).await;
                return Ok(response);
            }
            Err(Failed { failure, seen, .. }) => {
                let active = seen.as_ref().and_then(|s| s.active_family.as_deref());
                learn_family(ctx, file, model.as_deref(), active);
                ctx.pool
                    .record_failure(&account.id, &failure, family, seen.as_ref(), now_ms());
                failures.push((account.id.clone(), failure));
                let overloaded: Vec<&str> = failures
                    .iter()
                    .filter(|(_, f)| matches!(f, Failure::Overloaded { .. }))
                    .filter_map(|(id, _)| file.accounts.iter().find(|a| a.id == *id))
                    .map(|a| a.label.as_str())
                    .collect();
                if overloaded.len() >= MAX_OVERLOADED {
                    persist_failures(ctx, &failures).await;
                    return Ok(failure_stream(&text::overloaded(&overloaded)));
                }
            }
        }
    }
    persist_failures(ctx, &failures).await;
    let message = match ctx.pool.snapshot() {
        Ok(file) => {
            let family = file.family_of(model.as_deref());
            let need = Need {
                family: &family,
                spend_money: file.settings.spend_money,
            };
            let tz = jiff::tz::TimeZone::system();
            exhausted_message(&file.accounts, &failures, &need, now_ms(), &tz)
        }
        Err(e) => text::proxy_store_problem(&e.chain()),
    };
    Ok(failure_stream(&message))
}

/// How long until the first account is back for `family`, when that is soon enough to wait for.
fn brief_wait(accounts: &[Account], family: &str, now_ms: u64) -> Option<Duration> {
    let back = accounts
        .iter()
        .filter_map(|a| select::availability(a, family, now_ms).back_at())
        .min()?;
    let wait = back.saturating_sub(now_ms);
    (wait <= BRIEF_WAIT_MS).then(|| Duration::from_millis(wait))
}

/// The seat step: the session's own account while it can serve; else the policy's pick, made
/// once every account's usage is known and fresh ([`crate::runtime::usage::UsageFeed::before_pick`]).
async fn seat(
    ctx: &Context,
    session: Option<&str>,
    model: Option<&str>,
    tried: &HashSet<String>,
) -> Result<Option<Seated>, Error> {
    let file = ctx.pool.snapshot()?;
    let choose = |file: &Arc<AccountsFile>| {
        ctx.pool
            .choose(session, model, file, now_ms(), |a| tried.contains(&a.id))
    };
    let chosen = choose(&file);
    let sticky = chosen.as_ref().is_some_and(|s| {
        matches!(
            s.reason,
            Reason::Kept | Reason::Pinned | Reason::ServedBefore
        )
    });
    if sticky || !ctx.usage.before_pick(&file.accounts, now_ms()).await {
        return Ok(chosen);
    }
    Ok(choose(&ctx.pool.snapshot()?))
}

/// A reply named the family its request counted against: remembered for the model.
fn learn_family(ctx: &Context, file: &AccountsFile, model: Option<&str>, active: Option<&str>) {
    if let (Some(model), Some(family)) = (model, active) {
        ctx.pool.learn_family(file, model, family);
    }
}

/// A bench must be in the shared file before pi has its answer: pi may exit right after it (a
/// print-mode run does), and the next pi process would then send the benched account a
/// request. Only replies that follow a failed attempt wait, for one file write.
async fn persist_failures(ctx: &Context, failures: &[(String, Failure)]) {
    if !failures.is_empty() {
        ctx.pool.flush_recorded(FLUSH_LIMIT).await;
    }
}

/// The model the extension named; a name longer than any model id is not one.
fn model_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(MODEL_HEADER)?
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|model| !model.is_empty() && model.len() <= 200)
        .map(str::to_owned)
}

/// pi 0.73 sends `session_id`, pi 1.x `session-id`.
fn session_id(headers: &HeaderMap) -> Option<String> {
    ["session-id", "session_id"]
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok())
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// The request body pi sent, and ways to send it without other accounts' conversation state.
struct Outgoing {
    sent: Bytes,
    encoding: Option<String>,
    /// Without any account-bound item: made once, when the request first goes to an account
    /// that did not serve the session.
    without_all: std::sync::OnceLock<Option<Body>>,
}

/// What one exchange sends.
#[derive(Clone)]
struct Body {
    bytes: Bytes,
    /// Rewritten, and decoded from pi's content encoding: sent without it.
    decoded: bool,
    /// Fingerprints of the items taken out (see `domain::conversation`).
    removed: Vec<String>,
}

impl Outgoing {
    fn new(sent: Bytes, headers: &HeaderMap) -> Self {
        let encoding = headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Self {
            sent,
            encoding,
            without_all: std::sync::OnceLock::new(),
        }
    }

    /// The body as pi sent it, byte for byte.
    fn as_sent(&self) -> Body {
        Body {
            bytes: self.sent.clone(),
            decoded: false,
            removed: Vec::new(),
        }
    }

    /// The body without the items `foreign` names; as sent when there are none, or when it
    /// cannot be read (the backend's refusal, if any, then goes to pi).
    fn without(&self, foreign: Foreign<'_>) -> Body {
        let strip = || {
            let stripped =
                strip_foreign_state(&self.sent, self.encoding.as_deref(), foreign).ok()?;
            stripped.changed.then(|| Body {
                bytes: Bytes::from(stripped.body),
                decoded: true,
                removed: stripped.removed,
            })
        };
        let body = match foreign {
            Foreign::All => self.without_all.get_or_init(strip).clone(),
            Foreign::Known(_) => strip(),
        };
        body.unwrap_or_else(|| self.as_sent())
    }
}

/// One account's try: a reply that may go to pi, or a failure that moves the request on.
/// Backend trouble gets one more exchange with the same account first, a request fault goes to
/// pi as it came, and a refusal of foreign reasoning the proxy could not foresee gets one more
/// exchange without any (see [`Failure::action`]); pi going away during a pause cancels it like
/// any wait. `known`: the account served the session before, and these are the fingerprints of
/// its history's items it cannot read (so the body goes as it came when there are none). On
/// success, the fingerprints the account cannot read from now on.
async fn attempt(
    ctx: &Arc<Context>,
    pi_headers: &HeaderMap,
    account: &Account,
    body: &Outgoing,
    known: Option<&[String]>,
) -> Result<(Response<ProxyBody>, Vec<String>), Failed> {
    let mut token = ctx
        .auth
        .access_token(account)
        .await
        .map_err(token_failure)?;
    let (mut sending, mut foreign) = match known {
        Some([]) => (body.as_sent(), Vec::new()),
        Some(known) => (body.without(Foreign::Known(known)), known.to_vec()),
        None => {
            let sending = body.without(Foreign::All);
            let removed = sending.removed.clone();
            (sending, removed)
        }
    };
    let mut retried = false;
    loop {
        let failed = match exchange(ctx, pi_headers, account, &mut token, &sending).await {
            Ok(response) => return Ok((response, foreign)),
            Err(failed) => failed,
        };
        match failed.failure.action() {
            Action::RetryHere { after_ms } if !retried => {
                retried = true;
                tokio::time::sleep(Duration::from_millis(after_ms)).await;
            }
            Action::StripAndRetry if !retried => {
                retried = true;
                let without = body.without(Foreign::All);
                if !without.decoded || without.bytes == sending.bytes {
                    // Nothing more to remove: the refusal is pi's to see.
                    return Ok((failed.relay.ok_or(failed.failure)?, foreign));
                }
                for fingerprint in &without.removed {
                    if !foreign.contains(fingerprint) {
                        foreign.push(fingerprint.clone());
                    }
                }
                sending = without;
            }
            Action::PassToPi | Action::StripAndRetry => {
                return Ok((failed.relay.ok_or(failed.failure)?, foreign));
            }
            _ => return Err(failed),
        }
    }
}

/// One request to the backend with `token`, and one more with a refreshed token (which then
/// replaces `token`) if that is refused; the reply read far enough to know whether it may go
/// to pi.
async fn exchange(
    ctx: &Arc<Context>,
    pi_headers: &HeaderMap,
    account: &Account,
    token: &mut String,
    body: &Body,
) -> Result<Response<ProxyBody>, Failed> {
    let mut upstream = send_upstream(ctx, pi_headers, account, token, body).await?;
    let mut refreshed = false;
    if upstream.status() == StatusCode::UNAUTHORIZED {
        // Expired or revoked early: one refresh, one retry.
        *token = ctx
            .auth
            .replace_rejected(account, token)
            .await
            .map_err(token_failure)?;
        upstream = send_upstream(ctx, pi_headers, account, token, body).await?;
        refreshed = true;
    }
    let seen = usage::from_headers(upstream.headers(), now_ms());
    if let Some(seen) = &seen {
        ctx.pool.record(&account.id, Change::Observed(seen.clone()));
    }
    let status = upstream.status();
    let headers: Vec<_> = upstream
        .headers()
        .iter()
        .filter(|(name, _)| !is_hop_by_hop(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if status.is_success() {
        return match hold_back(upstream, ctx.timeouts.upstream_silence).await {
            Ok(body) => Ok(respond(status, headers, body)),
            Err(HeldFailure { failure, relay }) => Err(Failed {
                failure,
                seen,
                relay: relay.map(|body| respond(status, headers, body)),
            }),
        };
    }
    let upstream_headers = upstream.headers().clone();
    let bytes = read_error_body(upstream).await;
    let failure = if status == StatusCode::UNAUTHORIZED && refreshed {
        Failure::refused_after_refresh(&bytes)
    } else {
        Failure::from_status(status, &upstream_headers, &bytes, now_ms())
    };
    Err(Failed {
        failure,
        seen,
        relay: Some(respond(status, headers, full_bytes(bytes))),
    })
}

async fn send_upstream(
    ctx: &Context,
    pi_headers: &HeaderMap,
    account: &Account,
    access_token: &str,
    body: &Body,
) -> Result<reqwest::Response, Failed> {
    let client = ctx
        .http
        .client()
        .map_err(|e| Failure::backend(format!("no HTTP client: {}", e.chain())))?;
    let mut upstream = client.post(ctx.endpoints.responses_url());
    for (name, value) in pi_headers {
        if forwards(name) && !(body.decoded && name == header::CONTENT_ENCODING) {
            upstream = upstream.header(name, value);
        }
    }
    let sent = upstream
        .bearer_auth(access_token)
        .header("chatgpt-account-id", &account.chatgpt_account_id)
        // Error bodies are read to classify them, and this client decodes nothing.
        .header(header::ACCEPT_ENCODING, "identity")
        .body(body.bytes.clone())
        .send();
    let limit = ctx.timeouts.upstream_headers;
    match tokio::time::timeout(limit, sent).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => {
            Err(Failure::backend(format!("cannot reach it: {}", crate::error::chain(&e))).into())
        }
        Err(_) => Err(Failure::Stalled {
            what: format!("no answer within {} s", limit.as_secs_f64().round()),
        }
        .into()),
    }
}

fn token_failure(error: TokenError) -> Failed {
    match error {
        TokenError::NeedsLogin(reason) => Failure::LoggedOut { reason },
        TokenError::Transient(e) => {
            Failure::backend(format!("token refresh failed: {}", e.chain()))
        }
    }
    .into()
}

/// pi's headers go upstream, except those that describe this hop, carry pi's credential, or
/// ask for a compression the proxy would have to undo.
fn forwards(name: &HeaderName) -> bool {
    !is_hop_by_hop(name)
        && name != header::HOST
        && name != header::AUTHORIZATION
        && name != header::CONTENT_LENGTH
        && name != header::ACCEPT_ENCODING
        && name.as_str() != "chatgpt-account-id"
        && name.as_str() != MODEL_HEADER
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}
