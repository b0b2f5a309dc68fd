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
    ProxyBody, exhausted_message, failure_stream, full_bytes, hold_back, read_error_body, respond,
};
use crate::domain::account::{Account, AccountsFile};
use crate::domain::failure::Failure;
use crate::domain::select::{Need, Reason};
use crate::domain::text;
use crate::domain::usage::{self, Observation};
use crate::error::Error;
use crate::io::clock::now_ms;
use crate::runtime::auth::TokenError;
use crate::runtime::context::Context;
use crate::runtime::pool::Change;

/// Upstream attempts for one request at most, however large the pool.
const MAX_ATTEMPTS: usize = 16;
/// How long a reply that follows failed attempts waits for what they taught to reach the file.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// The model of the request, set by the extension on every model it mirrors (`index.ts`);
/// never sent upstream. It decides the request's limit family.
const MODEL_HEADER: &str = "x-pi-dispatch-model";

/// A failed attempt, with what its reply's headers said about usage.
type Failed = (Failure, Option<Observation>);

/// Answers one model request: the session's account first, and on a failure before any output
/// the next account the policy picks, with the same body, until one serves or none is left.
pub async fn forward(
    ctx: &Arc<Context>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refusal> {
    let (parts, body) = req.into_parts();
    let body = read_body(body, ctx.timeouts.request_body).await?;
    let session = session_id(&parts.headers);
    let model = model_of(&parts.headers);

    let mut tried = HashSet::new();
    let mut failures: Vec<(String, Failure)> = Vec::new();
    while tried.len() < MAX_ATTEMPTS {
        let Seated {
            file,
            family,
            account,
            reason,
        } = match seat(ctx, session.as_deref(), model.as_deref(), &tried).await {
            Ok(Some(seated)) => seated,
            Ok(None) => break,
            Err(e) => return Ok(failure_stream(&text::proxy_store_problem(&e.chain()))),
        };
        tried.insert(account.id.clone());
        match attempt(ctx, &parts.headers, &account, &body).await {
            Ok(response) => {
                let active = usage::active_family(response.headers());
                learn_family(ctx, &file, model.as_deref(), active.as_deref());
                if let Some(session) = &session {
                    let (accounts, now) = (&file.accounts, now_ms());
                    ctx.pool
                        .settle(session, &account, reason, &family, accounts, &failures, now);
                }
                persist_failures(ctx, &failures).await;
                return Ok(response);
            }
            Err((failure, seen)) => {
                let active = seen.as_ref().and_then(|s| s.active_family.as_deref());
                learn_family(ctx, &file, model.as_deref(), active);
                ctx.pool
                    .record_failure(&account.id, &failure, &family, seen.as_ref(), now_ms());
                failures.push((account.id, failure));
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

/// The account a request goes to, with the pool it was chosen from.
struct Seated {
    file: Arc<AccountsFile>,
    /// The limit family the request counts against.
    family: String,
    account: Account,
    reason: Reason,
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
    let chosen = choose(ctx, session, model, &file, tried);
    let sticky = chosen
        .as_ref()
        .is_some_and(|s| matches!(s.reason, Reason::Kept | Reason::Pinned));
    if sticky || !ctx.usage.before_pick(&file.accounts, now_ms()).await {
        return Ok(chosen);
    }
    Ok(choose(ctx, session, model, &ctx.pool.snapshot()?, tried))
}

fn choose(
    ctx: &Context,
    session: Option<&str>,
    model: Option<&str>,
    file: &Arc<AccountsFile>,
    tried: &HashSet<String>,
) -> Option<Seated> {
    let family = file.family_of(model);
    let need = Need {
        family: &family,
        spend_money: file.settings.spend_money,
    };
    let (account, reason) = ctx
        .pool
        .choose(session, &file.accounts, &need, now_ms(), |a| {
            tried.contains(&a.id)
        })
        .map(|(account, reason)| (account.clone(), reason))?;
    Some(Seated {
        file: file.clone(),
        family,
        account,
        reason,
    })
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

/// One account's try: a reply that may go to pi, or a failure that moves the request on.
/// Backend trouble gets one more exchange with the same account first (see
/// [`Failure::retry_here_after_ms`]); pi going away during the pause cancels it like any wait.
async fn attempt(
    ctx: &Arc<Context>,
    pi_headers: &HeaderMap,
    account: &Account,
    body: &Bytes,
) -> Result<Response<ProxyBody>, Failed> {
    let mut token = ctx
        .auth
        .access_token(account)
        .await
        .map_err(token_failure)?;
    match exchange(ctx, pi_headers, account, &mut token, body).await {
        Err((failure, seen)) => match failure.retry_here_after_ms() {
            Some(pause) => {
                tokio::time::sleep(Duration::from_millis(pause)).await;
                exchange(ctx, pi_headers, account, &mut token, body).await
            }
            None => Err((failure, seen)),
        },
        served => served,
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
    body: &Bytes,
) -> Result<Response<ProxyBody>, Failed> {
    let mut upstream = send_upstream(ctx, pi_headers, account, token, body.clone()).await?;
    if upstream.status() == StatusCode::UNAUTHORIZED {
        // Expired or revoked early: one refresh, one retry.
        *token = ctx
            .auth
            .replace_rejected(account, token)
            .await
            .map_err(token_failure)?;
        upstream = send_upstream(ctx, pi_headers, account, token, body.clone()).await?;
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
        let body = hold_back(upstream).await.map_err(|f| (f, seen.clone()))?;
        return Ok(respond(status, headers, body));
    }
    let upstream_headers = upstream.headers().clone();
    let bytes = read_error_body(upstream).await;
    match Failure::from_status(status, &upstream_headers, &bytes, now_ms()) {
        Some(failure) => Err((failure, seen)),
        // The request's own fault: pi sees it as it came.
        None => Ok(respond(status, headers, full_bytes(bytes))),
    }
}

async fn send_upstream(
    ctx: &Context,
    pi_headers: &HeaderMap,
    account: &Account,
    access_token: &str,
    body: Bytes,
) -> Result<reqwest::Response, Failed> {
    let client = ctx.http.client().map_err(|e| {
        (
            Failure::backend(format!("no HTTP client: {}", e.chain())),
            None,
        )
    })?;
    let mut upstream = client.post(ctx.endpoints.responses_url());
    for (name, value) in pi_headers {
        if forwards(name) {
            upstream = upstream.header(name, value);
        }
    }
    upstream
        .bearer_auth(access_token)
        .header("chatgpt-account-id", &account.chatgpt_account_id)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            let what = format!("cannot reach it: {}", crate::error::chain(&e));
            (Failure::backend(what), None)
        })
}

fn token_failure(error: TokenError) -> Failed {
    let failure = match error {
        TokenError::NeedsLogin(reason) => Failure::LoggedOut { reason },
        TokenError::Transient(e) => {
            Failure::backend(format!("token refresh failed: {}", e.chain()))
        }
    };
    (failure, None)
}

/// pi's headers go upstream, except those that describe this hop or carry pi's credential.
fn forwards(name: &HeaderName) -> bool {
    !is_hop_by_hop(name)
        && name != header::HOST
        && name != header::AUTHORIZATION
        && name != header::CONTENT_LENGTH
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
