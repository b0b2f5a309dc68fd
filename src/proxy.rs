//! The loopback HTTP server that pi's own Codex client talks to.
//!
//! pi is given a base URL on 127.0.0.1 and a credential that is not any account's token. For
//! each model request the proxy checks that the caller is this pi process (the credential, a
//! loopback `Host`, no browser `Origin`), picks an account, and forwards the request body
//! byte for byte to the real backend with that account's token. The reply streams back as it
//! arrives; when pi goes away, dropping the reply body drops the upstream request with it.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::RngExt as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{self, TokenError};
use crate::config::is_loopback_host;
use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::failure::Failure;
use crate::loopback;
use crate::now_ms;
use crate::pool::Change;
use crate::select;
use crate::sse::{EventReader, EventTooLarge, MAX_EVENT_BYTES, Peek};
use crate::store::Account;
use crate::usage::{self, Observation};

/// Request bodies hold a whole conversation, images included; beyond this something is wrong.
const MAX_REQUEST_BODY: usize = 64 * 1024 * 1024;
/// Request line plus headers. hyper's buffer limit does not hold a head that arrives in one
/// read, so the gate checks the size too.
const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// The path pi's Codex client calls, relative to the base URL it is given.
const RESPONSES_PATH: &str = "/codex/responses";
/// What the credential's JWT payload names as the ChatGPT account. pi's client requires one
/// and forwards it as `chatgpt-account-id`; the proxy replaces it with the real account's.
const CREDENTIAL_ACCOUNT_ID: &str = "pi-dispatch";
/// Upstream attempts for one request at most, however large the pool.
const MAX_ATTEMPTS: usize = 16;
/// An error reply is read up to this size, and for this long, to classify it.
const MAX_ERROR_BODY: usize = 64 * 1024;
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Opening events beyond this release the stream: no failure is coming that early.
const MAX_HELD_BYTES: usize = 8 * 1024 * 1024;
/// How long a reply that follows failed attempts waits for what they taught to reach the file.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A running proxy. It serves until dropped.
pub struct Proxy {
    port: u16,
    credential: String,
    _shutdown: watch::Sender<()>,
}

impl Proxy {
    /// Binds 127.0.0.1 on an ephemeral port and starts serving on the current tokio runtime.
    pub async fn start(ctx: Arc<Context>) -> Result<Self, Error> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Proxy, "cannot listen on 127.0.0.1").with_source(e)
            })?;
        let port = listener
            .local_addr()
            .map_err(|e| {
                Error::new(ErrorKind::Proxy, "cannot read the proxy's port").with_source(e)
            })?
            .port();
        let credential = new_credential();
        let gate = Arc::new(Gate {
            port,
            expected_authorization: format!("Bearer {credential}").into_bytes(),
        });
        let (shutdown, stopped) = watch::channel(());
        // Off the start-up path, and most likely done before pi's first request.
        ctx.http.prepare();
        tokio::spawn(accept_loop(listener, gate, ctx, stopped));
        Ok(Self {
            port,
            credential,
            _shutdown: shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL to give pi's Codex client; it appends `/codex/responses`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What pi must present as its API key. JWT-shaped because pi's Codex client decodes an
    /// account id from it; its signature part is this process's random secret.
    pub fn credential(&self) -> &str {
        &self.credential
    }
}

fn new_credential() -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    // pi decodes this part with `atob`, which takes the standard alphabet only.
    let claims = serde_json::json!({
        "https://api.openai.com/auth": { "chatgpt_account_id": CREDENTIAL_ACCOUNT_ID }
    });
    let payload = STANDARD.encode(claims.to_string());
    let secret: [u8; 32] = rand::rng().random();
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(secret))
}

async fn accept_loop(
    listener: TcpListener,
    gate: Arc<Gate>,
    ctx: Arc<Context>,
    mut stopped: watch::Receiver<()>,
) {
    let stop = async move {
        let _ = stopped.changed().await;
    };
    loopback::accept_until(listener, stop, |stream| {
        let _ = stream.set_nodelay(true);
        let (gate, ctx) = (gate.clone(), ctx.clone());
        async move {
            let head_timeout = ctx.timeouts.request_head;
            let service = service_fn(move |req| serve(gate.clone(), ctx.clone(), req));
            let _ = loopback::http1(head_timeout)
                .max_buf_size(MAX_REQUEST_HEAD)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
}

/// Decides whether a request comes from the pi process that owns this proxy.
struct Gate {
    port: u16,
    expected_authorization: Vec<u8>,
}

impl Gate {
    fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if !self.host_is_ours(headers) {
            return Err(Refusal::forbidden(
                "the Host header must name this loopback proxy",
            ));
        }
        // Browsers always send Origin on cross-site requests; pi never does.
        if headers.contains_key(header::ORIGIN) {
            return Err(Refusal::forbidden(
                "requests from web pages are not accepted",
            ));
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if !constant_time_eq(presented, &self.expected_authorization) {
            return Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                message: "missing or wrong pi-dispatch credential".into(),
            });
        }
        Ok(())
    }

    /// Guards against DNS rebinding: only `127.0.0.1:<port>`, `localhost:<port>`, `[::1]:<port>`.
    fn host_is_ours(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let Some((name, port)) = host.rsplit_once(':') else {
            return false;
        };
        port.parse() == Ok(self.port) && is_loopback_host(name)
    }
}

/// Compares in time that depends only on the lengths, so the secret cannot be guessed byte by
/// byte from response times.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A request the proxy answers itself instead of forwarding.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn forbidden(message: &str) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }

    fn into_response(self) -> Response<ProxyBody> {
        let body = serde_json::json!({
            "error": { "type": "pi_dispatch", "message": format!("pi-dispatch: {}", self.message) }
        });
        let mut response = Response::new(full(body.to_string()));
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

fn full(text: String) -> ProxyBody {
    full_bytes(Bytes::from(text))
}

fn full_bytes(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

async fn serve(
    gate: Arc<Gate>,
    ctx: Arc<Context>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let result = async {
        check_head_size(&req)?;
        gate.check(req.headers())?;
        route(&req)?;
        forward(&ctx, req).await
    }
    .await;
    Ok(result.unwrap_or_else(Refusal::into_response))
}

fn check_head_size(req: &Request<Incoming>) -> Result<(), Refusal> {
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers + req.uri().to_string().len() > MAX_REQUEST_HEAD {
        return Err(Refusal {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            message: format!("request head over {} KiB", MAX_REQUEST_HEAD >> 10),
        });
    }
    Ok(())
}

fn route(req: &Request<Incoming>) -> Result<(), Refusal> {
    if req.headers().contains_key(header::UPGRADE) {
        // pi tries a WebSocket first; a refusal makes it use SSE for the rest of the session.
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            message: "WebSocket is not supported; use SSE".into(),
        });
    }
    if req.uri().path() != RESPONSES_PATH {
        return Err(Refusal {
            status: StatusCode::NOT_FOUND,
            message: format!("no route for {}", req.uri().path()),
        });
    }
    if req.method() != Method::POST {
        return Err(Refusal {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("{RESPONSES_PATH} takes POST"),
        });
    }
    Ok(())
}

/// Answers one model request: the session's account first, and on a failure before any output
/// the next account the policy picks, with the same body, until one serves or none is left.
async fn forward(
    ctx: &Arc<Context>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refusal> {
    let (parts, body) = req.into_parts();
    let body = read_body(body, ctx.timeouts.request_body).await?;
    let session = session_id(&parts.headers);

    let mut tried = HashSet::new();
    let mut failures: Vec<(String, Failure)> = Vec::new();
    while tried.len() < MAX_ATTEMPTS {
        let file = match ctx.pool.snapshot(&ctx.store) {
            Ok(file) => file,
            Err(e) => return Ok(failure_stream(&format!("pi-dispatch: {}", e.chain()))),
        };
        let now = now_ms();
        let Some((account, reason)) =
            ctx.pool
                .choose(session.as_deref(), &file.accounts, now, |a| {
                    tried.contains(&a.id)
                })
        else {
            break;
        };
        let account = account.clone();
        tried.insert(account.id.clone());
        match attempt(ctx, &parts.headers, &account, &body).await {
            Ok(response) => {
                if let Some(session) = &session {
                    ctx.pool
                        .settle(session, &account, reason, &file.accounts, &failures, now);
                }
                persist_failures(ctx, &failures).await;
                return Ok(response);
            }
            Err((failure, seen)) => {
                ctx.pool
                    .record_failure(&ctx.store, &account.id, &failure, seen.as_ref(), now_ms());
                failures.push((account.id, failure));
            }
        }
    }
    persist_failures(ctx, &failures).await;
    Ok(exhausted(ctx, &failures))
}

/// A bench must be in the shared file before pi has its answer: pi may exit right after it (a
/// print-mode run does), and the next pi process would then send the benched account a
/// request. Only replies that follow a failed attempt wait, for one file write.
async fn persist_failures(ctx: &Context, failures: &[(String, Failure)]) {
    if !failures.is_empty() {
        ctx.pool.flush_recorded(FLUSH_LIMIT).await;
    }
}

/// pi 0.73 sends `session_id`, pi 1.x `session-id`.
fn session_id(headers: &HeaderMap) -> Option<String> {
    ["session-id", "session_id"]
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok())
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// A failed attempt, with what its reply's headers said about usage.
type Failed = (Failure, Option<Observation>);

/// One account's try: a reply that may go to pi, or a failure that moves the request on.
/// Backend trouble gets one more exchange with the same account first (see
/// [`Failure::retry_here_after_ms`]); pi going away during the pause cancels it like any wait.
async fn attempt(
    ctx: &Arc<Context>,
    pi_headers: &HeaderMap,
    account: &Account,
    body: &Bytes,
) -> Result<Response<ProxyBody>, Failed> {
    let mut token = auth::access_token(ctx, account)
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
        *token = auth::replace_rejected(ctx, account, token)
            .await
            .map_err(token_failure)?;
        upstream = send_upstream(ctx, pi_headers, account, token, body.clone()).await?;
    }
    let seen = usage::from_headers(upstream.headers(), now_ms());
    if let Some(seen) = &seen {
        ctx.pool
            .record(&ctx.store, &account.id, Change::Observed(seen.clone()));
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

fn respond(
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: ProxyBody,
) -> Response<ProxyBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().extend(headers);
    response
}

/// Holds a 200 stream until its first output event. A failure before that is returned so the
/// request can move on; once output starts, the held bytes and the rest stream to pi as they
/// arrive, and dropping the body (pi went away) closes the upstream connection.
async fn hold_back(upstream: reqwest::Response) -> Result<ProxyBody, Failure> {
    let mut stream = upstream.bytes_stream();
    let mut reader = EventReader::default();
    'held: loop {
        let chunk = match stream.next().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(_)) | None => {
                return Err(Failure::backend("the reply ended before any output"));
            }
        };
        reader.push(&chunk).map_err(|EventTooLarge| {
            Failure::backend(format!("an event over {} MiB", MAX_EVENT_BYTES >> 20))
        })?;
        while let Some(peek) = reader.next_event(now_ms()) {
            match peek {
                Peek::Opening => {}
                Peek::Failed(failure) => return Err(failure),
                Peek::Output => break 'held,
            }
        }
        if reader.held_len() > MAX_HELD_BYTES {
            break;
        }
    }
    let held = futures_util::stream::once(std::future::ready(Ok(Frame::data(Bytes::from(
        reader.into_held(),
    )))));
    let rest = stream
        .map_ok(Frame::data)
        .map_err(|e| Box::new(e) as BoxError);
    Ok(StreamBody::new(held.chain(rest)).boxed_unsync())
}

/// Enough of an error body to classify it; a body that does not come is treated as empty.
async fn read_error_body(upstream: reqwest::Response) -> Bytes {
    let mut stream = upstream.bytes_stream();
    let mut bytes = Vec::new();
    let read = async {
        while let Some(Ok(chunk)) = stream.next().await {
            bytes.extend_from_slice(&chunk);
            if bytes.len() >= MAX_ERROR_BODY {
                bytes.truncate(MAX_ERROR_BODY);
                break;
            }
        }
    };
    let _ = tokio::time::timeout(ERROR_BODY_TIMEOUT, read).await;
    Bytes::from(bytes)
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

/// No account can serve. pi gets a well-formed failure event at once, never a status code (pi
/// 0.73 would retry that three times). Quota words ("usage limit", "needs /dispatch-login")
/// never match pi's auto-retry, so a spent pool ends the turn at once. A backend failure keeps
/// its own words ("HTTP 503", "connection refused"), which pi's session layer does retry: that
/// retry is cheap (benched accounts are skipped) and is what plain pi gives a brief outage.
fn exhausted(ctx: &Context, failures: &[(String, Failure)]) -> Response<ProxyBody> {
    let message = match ctx.pool.snapshot(&ctx.store) {
        Ok(file) => exhausted_message(&file.accounts, failures, now_ms()),
        Err(e) => format!("pi-dispatch: {}", e.chain()),
    };
    failure_stream(&message)
}

pub fn exhausted_message(
    accounts: &[Account],
    failures: &[(String, Failure)],
    now_ms: u64,
) -> String {
    if accounts.is_empty() {
        return "pi-dispatch has no accounts yet: add one with /dispatch-login.".into();
    }
    let mut first_back: Option<(u64, &str)> = None;
    let rows: Vec<String> = accounts
        .iter()
        .map(|account| {
            let availability = select::availability(account, now_ms);
            let failed_here = failures.iter().rev().find(|(id, _)| *id == account.id);
            let mut why = match failed_here {
                Some((_, failure)) => failure.describe(),
                None => availability.describe(),
            };
            if matches!(availability, select::Availability::NeedsLogin { .. }) {
                why.push_str(&format!(", run /dispatch-login {}", account.label));
            }
            match availability.back_at() {
                Some(at) => {
                    if first_back.is_none_or(|(t, _)| at < t) {
                        first_back = Some((at, &account.label));
                    }
                    format!("{}: {why}, back {}", account.label, when(at, now_ms))
                }
                None => format!("{}: {why}", account.label),
            }
        })
        .collect();
    let count = match accounts.len() {
        1 => "your only account".to_string(),
        n => format!("none of your {n} accounts"),
    };
    let mut message = format!("pi-dispatch: {count} can answer now ({}).", rows.join("; "));
    if let Some((at, label)) = first_back {
        message.push_str(&format!(" First back: {label}, {}.", when(at, now_ms)));
    }
    message
}

/// "Tue 09:00 (in 2h 14m)" in the user's time zone.
fn when(at_ms: u64, now_ms: u64) -> String {
    let local = i64::try_from(at_ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| {
            let zoned = t.to_zoned(jiff::tz::TimeZone::system());
            let format = if at_ms.saturating_sub(now_ms) > 6 * 24 * 3600 * 1000 {
                "%a %d %b %H:%M"
            } else {
                "%a %H:%M"
            };
            zoned.strftime(format).to_string()
        })
        .unwrap_or_else(|| "later".into());
    format!("{local} (in {})", countdown(at_ms.saturating_sub(now_ms)))
}

/// "45s", "12m", "2h 14m", "3d 4h".
pub fn countdown(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// A 200 event stream holding one `response.failed`: pi reports its message as the error.
fn failure_stream(message: &str) -> Response<ProxyBody> {
    let event = serde_json::json!({
        "type": "response.failed",
        "response": {
            "id": "resp_pi_dispatch",
            "status": "failed",
            "error": { "code": "pi_dispatch_unavailable", "message": message },
        },
    });
    let mut response = Response::new(full(format!("event: response.failed\ndata: {event}\n\n")));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// The whole body, within `limit` in all (a client trickling bytes is cut off too).
async fn read_body(body: Incoming, limit: Duration) -> Result<Bytes, Refusal> {
    let too_large = || Refusal {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("request body over {} MiB", MAX_REQUEST_BODY >> 20),
    };
    match tokio::time::timeout(limit, Limited::new(body, MAX_REQUEST_BODY).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            message: format!("cannot read the request body: {e}"),
        }),
        Err(_) => Err(Refusal {
            status: StatusCode::REQUEST_TIMEOUT,
            message: "the request body did not arrive in time".into(),
        }),
    }
}

/// pi's headers go upstream, except those that describe this hop or carry pi's credential.
fn forwards(name: &HeaderName) -> bool {
    !is_hop_by_hop(name)
        && name != header::HOST
        && name != header::AUTHORIZATION
        && name != header::CONTENT_LENGTH
        && name.as_str() != "chatgpt-account-id"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_is_what_pi_can_decode() {
        let credential = new_credential();
        let parts: Vec<&str> = credential.split('.').collect();
        assert_eq!(parts.len(), 3);
        // pi decodes with atob, which rejects the URL-safe alphabet.
        assert!(!parts[1].contains(['-', '_']));
        let claims: serde_json::Value =
            serde_json::from_slice(&STANDARD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims["https://api.openai.com/auth"]["chatgpt_account_id"],
            CREDENTIAL_ACCOUNT_ID
        );
        assert_ne!(
            new_credential(),
            credential,
            "each proxy has its own secret"
        );
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abd", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer ab", b"Bearer abc"));
        assert!(!constant_time_eq(b"", b"Bearer abc"));
    }
}
