//! Network faults (docs/RELIABILITY.md, "Network"): token and usage endpoints that hang,
//! refuse or talk nonsense, and model streams broken in ways the simulator cannot produce,
//! served by a tiny raw TCP server inside the test.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::common;
use super::common::{Rig, client, one_account, rig, rig_timed};
use dispatch_sim::{Behavior, CdnChallenge, Script, TokenBehavior, UsageEndpointScript};
use pi_dispatch::AccountState;
use pi_dispatch::Endpoints;
use pi_dispatch::Proxy;
use pi_dispatch::now_ms;
use pi_dispatch::{Context, Timeouts};
use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SHORT: Timeouts = Timeouts {
    token: Duration::from_millis(800),
    usage: Duration::from_millis(800),
    ..Timeouts::PRODUCTION
};

async fn failure_text(rig: &Rig) -> (u16, String) {
    let response = rig.pi_request().send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        common::show(response.text().await.unwrap_or_default()),
    )
}

/// One account whose access token expired a second ago; the token endpoint answers `token`.
async fn rig_needing_refresh(token: TokenBehavior) -> Rig {
    let rig = rig_timed(
        one_account(Behavior::ok("never")),
        Some(now_ms() - 1_000),
        SHORT,
    )
    .await;
    rig.sim.set_token_behaviors("acct-a", vec![token]).unwrap();
    rig
}

#[tokio::test]
async fn a_hanging_token_endpoint_is_cut_off_at_the_timeout_and_the_account_kept() {
    let rig = rig_needing_refresh(TokenBehavior::Hang).await;
    let started = Instant::now();
    let (status, body) = failure_text(&rig).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Failures reach pi as a failed response event, which it shows as the error.
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("response.failed"), "{body}");
    assert!(body.contains("token refresh failed"), "{body}");
    let account = rig.store.load().unwrap().accounts.remove(0);
    assert_eq!(account.state, AccountState::Usable, "a hang burns nothing");
    assert_eq!(rig.forwarded(), 0);
}

/// A 401 from the token endpoint, even without an error code, means the refresh token is
/// refused: the account asks for a new login (kept, tokens and all) and the request fails at
/// once instead of being sent with a dead token.
#[tokio::test]
async fn a_bare_401_from_the_token_endpoint_asks_for_a_new_login_and_keeps_the_account() {
    let rig = rig_needing_refresh(TokenBehavior::ServerError { status: 401 }).await;
    let (status, body) = failure_text(&rig).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("response.failed"), "{body}");
    assert!(body.contains("must log in again"), "{body}");
    let accounts = rig.store.load().unwrap().accounts;
    assert_eq!(accounts.len(), 1);
    assert!(
        matches!(accounts[0].state, AccountState::NeedsLogin { .. }),
        "{body}"
    );
    assert_eq!(rig.forwarded(), 0);
}

fn usage_script(endpoint: UsageEndpointScript) -> Script {
    let mut script = Script::default_accounts(1);
    script.accounts[0].usage_endpoint = endpoint;
    script
}

/// Makes the seeded usage an hour old, so it is due for a fetch and shown stale.
fn age_usage(rig: &Rig) -> u64 {
    let old = now_ms() - 3_600_000;
    rig.store
        .update(|f| {
            f.accounts[0].usage.as_mut().unwrap().observed_at_ms = old;
            Ok(())
        })
        .unwrap();
    old
}

#[tokio::test]
async fn a_hanging_usage_endpoint_returns_on_time_with_the_older_data_stale() {
    let rig = rig_timed(
        usage_script(UsageEndpointScript {
            delay_ms: 60_000,
            ..Default::default()
        }),
        None,
        SHORT,
    )
    .await;
    let old = age_usage(&rig);
    let started = Instant::now();
    let fetched = rig
        .ctx
        .usage
        .refresh_older_than(Duration::ZERO)
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let error = common::show(fetched[0].result.as_ref().unwrap_err().chain());
    assert!(error.contains("no usage answer within"), "{error}");
    let usage = rig.store.load().unwrap().accounts.remove(0).usage.unwrap();
    assert_eq!(usage.observed_at_ms, old, "the older data is kept");
    assert!(!usage.is_fresh(now_ms()), "and shown as stale");
}

#[tokio::test]
async fn a_cdn_challenge_on_the_usage_path_is_reported_as_such_and_no_other_path_is_asked() {
    let rig = rig_timed(
        usage_script(UsageEndpointScript {
            cdn_challenge: CdnChallenge::Always,
            ..Default::default()
        }),
        None,
        SHORT,
    )
    .await;
    let old = age_usage(&rig);
    let fetched = rig
        .ctx
        .usage
        .refresh_older_than(Duration::ZERO)
        .await
        .unwrap();
    let error = common::show(fetched[0].result.as_ref().unwrap_err().chain());
    assert!(
        error.contains("/wham/usage")
            && error.contains("Cloudflare")
            && error.contains("challenge"),
        "{error}"
    );
    assert!(
        error.contains("the login is fine"),
        "not an auth failure: {error}"
    );
    let stats = rig.sim.stats();
    let counts = stats.account("acct-a");
    assert_eq!(
        (counts.wham_usage, counts.codex_usage),
        (1, 0),
        "no fallback path"
    );
    assert_eq!(counts.cdn_challenged, 1);
    let account = rig.store.load().unwrap().accounts.remove(0);
    assert_eq!(
        account.usage.unwrap().observed_at_ms,
        old,
        "the older data is kept"
    );
    assert_eq!(
        account.state,
        AccountState::Usable,
        "nothing happens to the account"
    );

    // Status says so, next to the stale row.
    let status = pi_dispatch::runtime::commands::status(&rig.ctx, None, true)
        .await
        .unwrap();
    let report = common::report(&status);
    assert!(
        report.contains("\n    stale: 1h 0m old; /backend-api/wham/usage: the CDN in front of ChatGPT (Cloudflare) answered with a challenge page"),
        "{report}"
    );
}

#[tokio::test]
async fn usage_calls_introduce_themselves_as_codex_cli_and_pass_a_cdn_that_challenges_bare_clients()
{
    let rig = rig_timed(
        usage_script(UsageEndpointScript {
            cdn_challenge: CdnChallenge::WithoutUserAgent,
            ..Default::default()
        }),
        None,
        SHORT,
    )
    .await;
    let old = age_usage(&rig);
    let fetched = rig
        .ctx
        .usage
        .refresh_older_than(Duration::ZERO)
        .await
        .unwrap();
    assert!(fetched[0].result.is_ok(), "{:?}", fetched[0].result);
    rig.ctx.pool.flush().await;
    let usage = rig.store.load().unwrap().accounts.remove(0).usage.unwrap();
    assert!(usage.observed_at_ms > old);
    let calls = rig.sim.stats().usage_requests;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].path, "/backend-api/wham/usage");
    assert_eq!(calls[0].originator.as_deref(), Some("codex_cli_rs"));
    let agent = calls[0].user_agent.clone().unwrap_or_default();
    assert!(
        agent.starts_with("codex_cli_rs/0.")
            && agent.contains(&format!("; {}) pi-dispatch/", std::env::consts::ARCH)),
        "{agent}"
    );
}

/// A raw usage server: every path answers `body`, a complete 200 reply body. Returns the
/// backend base URL and the paths asked, in order.
async fn raw_usage_server(body: &'static str) -> (String, Arc<parking_lot::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/backend-api/", listener.local_addr().unwrap());
    let asked = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let log = asked.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut stream).await else {
                    return;
                };
                log.lock()
                    .push(head.split(' ').nth(1).unwrap_or_default().to_string());
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    (base, asked)
}

const NOT_JSON: &str = r#"{"plan_type":"plus","rate_limit":{"primary_window":{"used_perc"#;
const GOOD_USAGE: &str = r#"{"plan_type":"plus","rate_limit":{"primary_window":{"used_percent":42,"limit_window_seconds":18000,"reset_after_seconds":600}}}"#;

#[tokio::test]
async fn a_usage_reply_that_is_not_json_is_an_error_for_that_account_and_the_older_data_kept() {
    let rig = rig(Script::default_accounts(1)).await;
    let old = age_usage(&rig);
    let (base, asked) = raw_usage_server(NOT_JSON).await;
    let ctx = Arc::new(context_to(&rig, &base).with_timeouts(SHORT));
    let fetched = ctx.usage.refresh_older_than(Duration::ZERO).await.unwrap();
    let error = common::show(fetched[0].result.as_ref().unwrap_err().chain());
    // One path, and the message says what was wrong with it.
    assert_eq!(*asked.lock(), ["/backend-api/wham/usage"]);
    assert_eq!(error.matches("reply is not JSON").count(), 1, "{error}");
    assert!(
        !error.contains("used_perc"),
        "the reply body is not echoed: {error}"
    );
    let account = rig.store.load().unwrap().accounts.remove(0);
    assert_eq!(
        account.usage.unwrap().observed_at_ms,
        old,
        "the older data is kept"
    );
    assert_eq!(account.state, AccountState::Usable);

    // A good answer is taken.
    let (base, _) = raw_usage_server(GOOD_USAGE).await;
    let ctx = Arc::new(context_to(&rig, &base).with_timeouts(SHORT));
    let fetched = ctx.usage.refresh_older_than(Duration::ZERO).await.unwrap();
    assert!(fetched[0].result.is_ok(), "{:?}", fetched[0].result);
    ctx.pool.flush().await;
    let usage = rig.store.load().unwrap().accounts.remove(0).usage.unwrap();
    assert!(usage.observed_at_ms > old);
    assert_eq!(usage.windows[0].used_percent, 42.0);
}

/// How the raw upstream treats one model request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Misbehave {
    /// Reads the request, then resets the connection without a byte of answer.
    ResetBeforeHeaders,
    /// 200 and `response.created`, then the connection ends.
    CutBeforeOutput,
    /// 302 to another server.
    Redirect,
    /// 200, then one event larger than the proxy's cap.
    OversizedEvent,
    /// A good answer.
    Answer,
}

const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
const CREATED: &str =
    "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{}}\n\n";

/// A raw HTTP/1.1 server: acct-a's requests get `first`, every other account a good answer.
/// Returns its base URL and a count of requests per kind seen (acct-a, others).
async fn raw_upstream(first: Misbehave) -> (String, Arc<[AtomicUsize; 2]>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/backend-api/", listener.local_addr().unwrap());
    let seen: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counts = counts.clone();
            tokio::spawn(async move { serve(stream, first, &counts).await });
        }
    });
    (base, seen)
}

async fn serve(mut stream: TcpStream, first: Misbehave, counts: &[AtomicUsize; 2]) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let text = head.to_ascii_lowercase();
    let is_a = text.contains("chatgpt-account-id: acct-a");
    counts[usize::from(!is_a)].fetch_add(1, Ordering::SeqCst);
    let action = if is_a { first } else { Misbehave::Answer };
    match action {
        Misbehave::ResetBeforeHeaders => {
            #[allow(deprecated)] // blocking for zero seconds is no block
            let _ = stream.set_linger(Some(Duration::ZERO));
            drop(stream);
        }
        Misbehave::CutBeforeOutput => {
            let _ = stream.write_all(SSE_HEAD.as_bytes()).await;
            let _ = stream.write_all(CREATED.as_bytes()).await;
            #[allow(deprecated)] // blocking for zero seconds is no block
            let _ = stream.set_linger(Some(Duration::ZERO));
        }
        Misbehave::Redirect => {
            let reply = "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/steal\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            let _ = stream.write_all(reply.as_bytes()).await;
        }
        Misbehave::OversizedEvent => {
            let _ = stream.write_all(SSE_HEAD.as_bytes()).await;
            let _ = stream.write_all(CREATED.as_bytes()).await;
            let chunk = vec![b'x'; 64 * 1024];
            let _ = stream.write_all(b"data: ").await;
            for _ in 0..(5 * 1024 * 1024 / chunk.len()) {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
        Misbehave::Answer => {
            let body = format!(
                "{SSE_HEAD}{CREATED}event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"delta\":\"raw answer\"}}\n\nevent: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{}}}}\n\n"
            );
            let _ = stream.write_all(body.as_bytes()).await;
        }
    }
}

/// Reads a request up to the end of its head (the raw servers ignore bodies).
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// The rig's store and token endpoint, with the backend at `backend`.
fn context_to(rig: &Rig, backend: &str) -> Context {
    let endpoints = Endpoints {
        backend: Url::parse(backend).unwrap(),
        auth: Url::parse(&rig.sim.issuer()).unwrap(),
    };
    Context::new(endpoints, rig.store.clone()).unwrap()
}

/// A proxy over the rig's two accounts, sending model requests to `backend`.
async fn proxy_to(rig: &Rig, backend: &str) -> Proxy {
    Proxy::start(Arc::new(context_to(rig, backend)))
        .await
        .unwrap()
}

async fn ask(proxy: &Proxy) -> reqwest::Response {
    let _ = client();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/codex/responses", proxy.base_url()))
        .bearer_auth(proxy.credential())
        .header("chatgpt-account-id", "pi-dispatch")
        .header("accept", "text/event-stream")
        .header("content-type", "application/json")
        .header("session_id", "session-raw")
        .body(r#"{"model":"gpt-test","input":[],"stream":true}"#)
        .send()
        .await
        .unwrap()
}

fn states(rig: &Rig) -> Vec<AccountState> {
    rig.store
        .load()
        .unwrap()
        .accounts
        .into_iter()
        .map(|a| a.state)
        .collect()
}

#[tokio::test]
async fn a_reset_or_a_cut_before_any_output_is_tried_once_more_then_on_the_next_account() {
    for first in [Misbehave::ResetBeforeHeaders, Misbehave::CutBeforeOutput] {
        let rig = rig(Script::default_accounts(2)).await;
        let (base, seen) = raw_upstream(first).await;
        let proxy = proxy_to(&rig, &base).await;
        let response = ask(&proxy).await;
        assert_eq!(response.status(), 200, "{first:?}");
        let text = response.text().await.unwrap();
        assert!(text.contains("raw answer"), "{first:?}: {text}");
        assert!(!text.contains("response.created\",\"response\":{}}\n\nevent: response.created"));
        assert_eq!(
            seen[0].load(Ordering::SeqCst),
            2,
            "once more on acct-a: {first:?}"
        );
        assert_eq!(seen[1].load(Ordering::SeqCst), 1, "{first:?}");
        assert!(
            states(&rig).iter().all(|s| *s == AccountState::Usable),
            "{first:?}"
        );
    }
}

#[tokio::test]
async fn connection_refused_everywhere_gives_pi_one_clear_failure_and_benches_nothing() {
    let rig = rig(Script::default_accounts(2)).await;
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = proxy_to(&rig, &format!("http://127.0.0.1:{port}/backend-api/")).await;
    let started = Instant::now();
    let response = ask(&proxy).await;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("response.failed"), "{text}");
    assert!(!text.contains("response.output_text"), "{text}");
    assert!(states(&rig).iter().all(|s| *s == AccountState::Usable));
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let rig = rig(Script::default_accounts(2)).await;
    let (base, seen) = raw_upstream(Misbehave::Redirect).await;
    let proxy = proxy_to(&rig, &base).await;
    let response = ask(&proxy).await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    // Whatever pi gets, the token never went to the redirect's target (port 9, discard): only
    // the two accounts' requests reached any server.
    assert_eq!(seen[0].load(Ordering::SeqCst), 1, "{status}: {text}");
    assert!(seen[1].load(Ordering::SeqCst) <= 1);
    eprintln!("a redirect reaches pi as: {status} {text}");
}

#[tokio::test]
async fn an_event_over_the_size_cap_ends_with_a_clear_error() {
    let rig = rig(one_account(Behavior::ok("unused"))).await;
    let (base, _) = raw_upstream(Misbehave::OversizedEvent).await;
    let proxy = proxy_to(&rig, &base).await;
    let started = Instant::now();
    let response = ask(&proxy).await;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!status.is_success() || text.contains("error"), "{status}");
    assert!(text.len() < 64 * 1024, "the oversized event is not relayed");
    assert!(
        text.contains("MiB") || text.contains("too large") || text.contains("size"),
        "{status}: {text}"
    );
    assert!(states(&rig).iter().all(|s| *s == AccountState::Usable));
}
