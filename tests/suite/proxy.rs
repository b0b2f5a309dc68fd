//! The proxy against the simulated backend over real loopback HTTP: who may use it, what reaches
//! the backend, and that replies stream through as they arrive.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::common;
use super::common::{Rig, one_account, rig, rig_timed, rig_with_states};
use dispatch_sim::{Behavior, Outcome, Script};
use pi_dispatch::AccountState;
use pi_dispatch::Timeouts;

#[tokio::test]
async fn a_request_without_the_secret_is_refused_and_not_forwarded() {
    let rig = rig(one_account(Behavior::ok("never"))).await;
    let response = common::client()
        .post(rig.url())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(rig.forwarded(), 0);
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_not_forwarded() {
    let rig = rig(one_account(Behavior::ok("never"))).await;
    let mut wrong = rig.proxy.credential().to_string();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    for credential in [wrong.as_str(), "", "pi-dispatch"] {
        let response = common::client()
            .post(rig.url())
            .bearer_auth(credential)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "credential {credential:?}");
    }
    assert_eq!(rig.forwarded(), 0);
}

#[tokio::test]
async fn a_foreign_host_or_a_web_origin_is_refused_even_with_the_secret() {
    let rig = rig(one_account(Behavior::ok("never"))).await;
    let auth = format!("Bearer {}", rig.proxy.credential());
    let port = rig.proxy.port();
    let other_port = if port == 1 { 2 } else { port - 1 };
    for host in [
        format!("evil.example:{port}"),
        format!("127.0.0.1:{other_port}"),
        "127.0.0.1".to_string(),
    ] {
        let reply = rig.raw(&rig.raw_post(&host, &auth, "")).await;
        assert!(reply.starts_with("HTTP/1.1 403"), "host {host}: {reply}");
    }
    let reply = rig
        .raw(&rig.raw_post(
            &format!("localhost:{port}"),
            &auth,
            "Origin: https://evil.example\r\n",
        ))
        .await;
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert_eq!(rig.forwarded(), 0);
}

#[tokio::test]
async fn a_websocket_upgrade_is_refused_so_pi_falls_back_to_sse() {
    let rig = rig(one_account(Behavior::ok("never"))).await;
    let port = rig.proxy.port();
    let head = format!(
        "GET /codex/responses HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        rig.proxy.credential()
    );
    let reply = rig.raw(&head).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(!reply.contains("101"), "{reply}");
    assert_eq!(rig.forwarded(), 0);
}

#[tokio::test]
async fn upstream_sees_the_account_token_and_pi_headers_never_the_proxy_credential() {
    let rig = rig(one_account(Behavior::ok("hi"))).await;
    let response = rig.pi_request().send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();

    let requests = rig.sim.requests();
    assert_eq!(requests.len(), 1);
    let seen = &requests[0];
    let tokens = rig.sim.tokens("acct-a").unwrap();
    assert!(
        seen.header("authorization") == Some(format!("Bearer {}", tokens.access).as_str()),
        "upstream got acct-a's token"
    );
    assert_eq!(seen.header("chatgpt-account-id"), Some("acct-a"));
    for (name, value) in [
        ("originator", "pi"),
        ("session_id", "session-123"),
        ("x-client-request-id", "request-456"),
        ("openai-beta", "responses=experimental"),
        ("accept", "text/event-stream"),
    ] {
        assert_eq!(seen.header(name), Some(value), "{name} passed through");
    }
    assert_eq!(
        seen.header("x-pi-dispatch-model"),
        None,
        "the extension's model header stays between pi and the proxy"
    );
    let secret = rig.proxy.credential().rsplit('.').next().unwrap();
    for (name, value) in &seen.headers {
        assert!(
            !value.contains(secret),
            "proxy secret leaked upstream in {name}"
        );
    }
}

#[tokio::test]
async fn the_body_and_its_encoding_are_forwarded_byte_for_byte() {
    let rig = rig(one_account(Behavior::ok("hi"))).await;
    let json =
        br#"{"model":"gpt-test","input":[{"role":"user","content":"hi \u00e9"}],"stream":true}"#;
    let compressed =
        ruzstd::encoding::compress_to_vec(&json[..], ruzstd::encoding::CompressionLevel::Fastest);
    let response = rig
        .pi_request()
        .header("content-encoding", "zstd")
        .body(compressed.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();

    let seen = &rig.sim.requests()[0];
    assert_eq!(seen.raw_body, compressed, "bytes untouched");
    assert_eq!(seen.content_encoding.as_deref(), Some("zstd"));
    assert_eq!(
        seen.body.as_deref(),
        Some(&json[..]),
        "still decodes upstream"
    );
}

#[tokio::test]
async fn the_first_event_reaches_the_client_while_upstream_is_still_sending() {
    // Four deltas 400 ms apart: the reply takes over a second upstream.
    let rig = rig(one_account(Behavior::ok_slow("one two three four", 4, 400))).await;
    let mut response = rig.pi_request().send().await.unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("response.created"));
    assert_eq!(
        rig.sim.requests()[0].outcome,
        Outcome::InFlight,
        "the client had the first event before the backend finished"
    );
    let mut rest = Vec::from(first);
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("response.completed"), "{text}");
    assert_eq!(text.matches("event: response.output_text.delta").count(), 4);
}

#[tokio::test]
async fn a_client_that_goes_away_mid_stream_cancels_the_upstream_request() {
    // Output starts, then the backend takes its time with the rest.
    let rig = rig(behind_a_spare(Behavior::ok_slow("slow answer", 5, 30_000))).await;
    let mut response = rig.pi_request().send().await.unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("response.output_item.added"));
    drop(response);
    assert_upstream_saw_disconnect(&rig).await;
}

#[tokio::test]
async fn a_client_that_goes_away_before_the_reply_starts_cancels_the_upstream_request() {
    let rig = rig(behind_a_spare(Behavior::HangBeforeHeaders)).await;
    abort_while_pending(&rig).await;
}

#[tokio::test]
async fn a_client_that_goes_away_while_the_reply_is_held_back_cancels_the_upstream_request() {
    // Headers came, but no output yet: the proxy is still holding the reply back.
    let rig = rig(behind_a_spare(Behavior::HangAfterHeaders)).await;
    abort_while_pending(&rig).await;
}

async fn abort_while_pending(rig: &common::Rig) {
    let pending = tokio::spawn(rig.pi_request().send());
    rig.sim
        .wait_for(Duration::from_secs(5), |s| s.requests.len() == 1)
        .await
        .expect("request forwarded");
    pending.abort();
    assert_upstream_saw_disconnect(rig).await;
}

/// acct-a answers with `first`; acct-b would answer well, were a request ever moved to it.
fn behind_a_spare(first: Behavior) -> Script {
    let mut script = Script::default_accounts(2);
    script.accounts[0].default = Some(first);
    script.accounts[1].default = Some(Behavior::ok("moved"));
    script
}

/// The sim records the upstream connection closing under a request it had not finished; and a
/// request pi gave up on is not a failure: nothing benched, no notice, not moved to acct-b.
async fn assert_upstream_saw_disconnect(rig: &common::Rig) {
    let stats = rig
        .sim
        .wait_for(Duration::from_secs(5), |s| {
            s.requests.first().map(|r| r.outcome) == Some(Outcome::ClientDisconnected)
        })
        .await;
    assert!(
        stats.is_some(),
        "upstream saw the disconnect: {:?}",
        rig.sim.requests()
    );
    // Time for a wrongly started retry to reach the sim.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.forwarded(), 1, "{:?}", rig.sim.requests());
    let pool = rig.ctx.pool.snapshot().unwrap();
    assert!(
        pool.accounts
            .iter()
            .all(|a| a.state == AccountState::Usable),
        "{:?}",
        pool.accounts
    );
    assert!(rig.ctx.pool.take_notices("session-123").is_empty());
}

#[tokio::test]
async fn the_first_usable_account_serves() {
    let mut script = Script::default_accounts(3);
    for account in &mut script.accounts {
        account.default = Some(Behavior::ok("hi"));
    }
    let far_future = pi_dispatch::now_ms() + 3_600_000;
    let states = [
        AccountState::NeedsLogin {
            reason: "expired".into(),
        },
        AccountState::Benched {
            until_ms: far_future,
            reason: "usage limit".into(),
        },
        AccountState::Usable,
    ];
    let rig = rig_with_states(script, &states).await;
    let response = rig.pi_request().send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();
    let requests = rig.sim.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].account_id.as_deref(), Some("acct-c"));
}

#[tokio::test]
async fn with_no_usable_account_the_proxy_answers_itself() {
    let states = [AccountState::NeedsLogin {
        reason: "expired".into(),
    }];
    let rig = rig_with_states(one_account(Behavior::ok("never")), &states).await;
    let response = rig.pi_request().send().await.unwrap();
    // A failure event rather than an error status: pi 0.73 retries error statuses.
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(body.starts_with("event: response.failed\n"), "{body}");
    assert!(body.contains("/dispatch-login"), "{body}");
    assert_eq!(rig.forwarded(), 0);
}

#[tokio::test]
async fn errors_about_the_request_itself_pass_through() {
    let mut script = Script::default_accounts(2);
    script.accounts[0].default = Some(Behavior::server_error(400));
    let rig = rig(script).await;
    let response = rig.pi_request().send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .headers()
            .contains_key("x-codex-primary-used-percent")
    );
    let body = response.text().await.unwrap();
    assert!(body.contains("simulated server error"), "{body}");
    assert_eq!(rig.forwarded(), 1, "a bad request is not tried elsewhere");
}

#[tokio::test]
async fn oversized_bodies_and_heads_are_refused_and_not_forwarded() {
    let rig = rig(one_account(Behavior::ok("never"))).await;
    let body = vec![b'x'; 64 * 1024 * 1024 + 1];
    let response = rig.pi_request().body(body).send().await.unwrap();
    assert_eq!(response.status(), 413);

    let huge = "a".repeat(70 * 1024);
    let head = rig.raw_post(
        &format!("127.0.0.1:{}", rig.proxy.port()),
        &format!("Bearer {}", rig.proxy.credential()),
        &format!("X-Filler: {huge}\r\n"),
    );
    let answer = rig.raw(&head).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.80}");
    assert_eq!(rig.forwarded(), 0);
}

/// Shorter than production (10 s head, 60 s body) so the tests prove the cut without the wait.
const SLOW_CLIENT_LIMITS: Timeouts = Timeouts {
    request_head: Duration::from_millis(500),
    request_body: Duration::from_millis(500),
    ..Timeouts::PRODUCTION
};

/// Reads until the proxy closes the connection; None if it is still open after 10 s.
async fn until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn a_client_that_sends_its_head_too_slowly_is_cut_off() {
    let rig = rig_timed(one_account(Behavior::ok("never")), None, SLOW_CLIENT_LIMITS).await;
    let mut stream = TcpStream::connect(("127.0.0.1", rig.proxy.port()))
        .await
        .unwrap();
    stream
        .write_all(b"POST /codex/responses HTTP/1.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(until_closed(&mut stream).await.is_some(), "still open");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(rig.forwarded(), 0);
}

/// A whole valid head, then `sent` of the body's `len` bytes, one every `gap`, then silence.
async fn slow_body(rig: &Rig, len: usize, sent: usize, gap: Duration) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", rig.proxy.port()))
        .await
        .unwrap();
    let head = format!(
        "POST /codex/responses HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\nsession_id: slow\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n",
        rig.proxy.port(),
        rig.proxy.credential()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..sent {
        if stream.write_all(b" ").await.is_err() {
            break;
        }
        tokio::time::sleep(gap).await;
    }
    until_closed(&mut stream).await.expect("still open")
}

#[tokio::test]
async fn a_client_that_stalls_in_its_body_is_cut_off_and_nothing_is_forwarded() {
    let rig = rig_timed(one_account(Behavior::ok("never")), None, SLOW_CLIENT_LIMITS).await;
    let answer = slow_body(&rig, 100, 10, Duration::ZERO).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:.200}");
    assert!(answer.contains("did not arrive in time"), "{answer:.400}");
    assert_eq!(rig.forwarded(), 0);
}

#[tokio::test]
async fn a_client_that_trickles_its_body_is_cut_off_at_the_total_limit() {
    // Each byte comes well within the limit; the body as a whole does not.
    let rig = rig_timed(one_account(Behavior::ok("never")), None, SLOW_CLIENT_LIMITS).await;
    let answer = slow_body(&rig, 100, 100, Duration::from_millis(50)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:.200}");
    assert_eq!(rig.forwarded(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_sessions_each_keep_their_own_account() {
    let mut script = Script::default_accounts(5);
    for account in &mut script.accounts {
        account.default = Some(Behavior::ok_slow("hi", 3, 20));
    }
    let rig = rig(script).await;
    // Twenty sessions at once, each asking twice in turn (pi sends one turn at a time).
    let sessions: Vec<_> = (0..20)
        .map(|s| {
            let first = rig.pi_request_in(&format!("session-{s}"));
            let second = rig.pi_request_in(&format!("session-{s}"));
            tokio::spawn(async move {
                for request in [first, second] {
                    let text = request.send().await.unwrap().text().await.unwrap();
                    assert!(text.contains("response.completed"), "{text}");
                }
            })
        })
        .collect();
    for session in sessions {
        session.await.unwrap();
    }
    let mut served: std::collections::HashMap<String, std::collections::HashSet<String>> =
        Default::default();
    for request in rig.sim.requests() {
        let session = request.header("session_id").unwrap().to_owned();
        let account = request.account_id.clone().unwrap();
        // The upstream call carried this account's own token and this session's id.
        assert!(
            request.header("authorization").unwrap()
                == format!("Bearer {}", rig.sim.tokens(&account).unwrap().access),
            "a request of {session} went out with another account's token"
        );
        served.entry(session).or_default().insert(account);
    }
    assert_eq!(served.len(), 20);
    for (session, accounts) in &served {
        assert_eq!(accounts.len(), 1, "{session} crossed over: {accounts:?}");
    }
}
