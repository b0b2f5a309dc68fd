//! The Codex backend: streams, errors, headers, auth, the request log and disconnects.

mod common;

use std::time::{Duration, Instant};

use common::{client, parse_sse, post_responses, post_responses_with, request_body};
use dispatch_sim::{
    AccountScript, Behavior, Outcome, Script, Simulator, StreamErrorStyle, Usage,
    UsageEndpointScript, Window,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn ok_stream_arrives_event_by_event_with_real_delays() {
    let sim = Simulator::start(Script::default_accounts(1))
        .await
        .expect("sim starts");
    sim.set_behaviors(
        "acct-a",
        vec![Behavior::ok_slow("one two three four", 4, 150)],
    )
    .expect("known account");

    let started = Instant::now();
    let mut response = post_responses(&sim, "acct-a").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");

    let mut chunks = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("stream reads") {
        chunks.push((
            started.elapsed(),
            String::from_utf8_lossy(&chunk).into_owned(),
        ));
    }
    let text: String = chunks.iter().map(|(_, c)| c.as_str()).collect();
    let events = parse_sse(&text);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (name, data) in &events {
        assert_eq!(
            data["type"],
            name.as_str(),
            "data.type matches the event name"
        );
    }
    let streamed: String = events
        .iter()
        .filter(|(name, _)| name == "response.output_text.delta")
        .map(|(_, data)| data["delta"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(streamed, "one two three four");
    assert_eq!(
        events[12].1["item"]["content"][0]["text"],
        "one two three four"
    );
    let completed = &events[13].1["response"];
    assert_eq!(completed["status"], "completed");
    assert!(completed["usage"]["total_tokens"].as_u64().unwrap_or(0) > 0);

    // The first delta reached us well before the last event was sent (3 pauses of 150 ms).
    let first_delta_at = chunks
        .iter()
        .find(|(_, c)| c.contains("response.output_text.delta"))
        .map(|(at, _)| *at)
        .expect("a delta arrived");
    let completed_at = chunks
        .iter()
        .find(|(_, c)| c.contains("response.completed"))
        .map(|(at, _)| *at)
        .expect("completion arrived");
    assert!(
        chunks.len() >= 4,
        "events came in separate chunks: {}",
        chunks.len()
    );
    assert!(
        completed_at - first_delta_at >= Duration::from_millis(300),
        "first delta at {first_delta_at:?}, completed at {completed_at:?}"
    );

    let log = sim.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].outcome, Outcome::Finished);
    assert_eq!(log[0].status, 200);
    assert_eq!(log[0].behavior.as_ref().map(Behavior::kind), Some("ok"));
}

#[tokio::test]
async fn default_behavior_says_hello_from_the_account() {
    let sim = Simulator::start(Script::default_accounts(2))
        .await
        .expect("sim starts");
    let response = post_responses(&sim, "acct-b").await;
    let events = parse_sse(&response.text().await.expect("body"));
    let done = events
        .iter()
        .find(|(name, data)| {
            name == "response.output_item.done" && data["item"]["type"] == "message"
        })
        .expect("message done");
    assert_eq!(done.1["item"]["content"][0]["text"], "hello from acct-b");
    assert_eq!(sim.stats().account("acct-b").served, 1);
    assert_eq!(sim.stats().account("acct-a").served, 0);
}

#[tokio::test]
async fn usage_limit_is_a_429_with_reset_and_rate_limit_headers() {
    let account = AccountScript::new("acct-a")
        .with_usage(Usage {
            primary: Some(Window {
                used_percent: 100.0,
                window_minutes: 10080,
                reset_after_seconds: 5000,
            }),
            secondary: None,
        })
        .with_behaviors(vec![Behavior::usage_limit(3600)]);
    let sim = Simulator::start(Script::default().with_account(account))
        .await
        .expect("sim starts");

    let response = post_responses(&sim, "acct-a").await;
    assert_eq!(response.status(), 429);
    let headers = response.headers().clone();
    assert_eq!(headers["x-codex-primary-used-percent"], "100");
    assert_eq!(headers["x-codex-primary-window-minutes"], "10080");
    assert_eq!(headers["x-codex-plan-type"], "plus");
    let reset_after: u64 = headers["x-codex-primary-reset-after-seconds"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("numeric reset-after");
    assert!((4990..=5000).contains(&reset_after), "{reset_after}");
    assert!(headers.get("x-codex-primary-reset-at").is_some());
    assert!(
        headers.get("x-codex-secondary-used-percent").is_none(),
        "null window omitted"
    );

    let body: Value = response.json().await.expect("json body");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert_eq!(body["error"]["type"], "usage_limit_reached");
    assert_eq!(body["error"]["plan_type"], "plus");
    assert_eq!(body["error"]["resets_in_seconds"], 3600);
    let resets_at = body["error"]["resets_at"].as_u64().expect("resets_at");
    assert!(resets_at.abs_diff(now + 3600) <= 2);

    // The queue is used up, but the window is still spent: the sim itself refuses, with
    // the window's own reset.
    let refused = post_responses(&sim, "acct-a").await;
    assert_eq!(refused.status(), 429);
    let reset_at: u64 = refused.headers()["x-codex-primary-reset-at"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("numeric reset-at");
    let body: Value = refused.json().await.expect("json body");
    assert_eq!(body["error"]["type"], "usage_limit_reached");
    assert_eq!(body["error"]["resets_at"], reset_at);
}

#[tokio::test]
async fn other_error_behaviors_have_their_documented_shapes() {
    let sim = Simulator::start(Script::default_accounts(1))
        .await
        .expect("sim starts");
    sim.set_behaviors(
        "acct-a",
        vec![
            Behavior::UsageNotIncluded,
            Behavior::rate_limited(7),
            Behavior::ServerError {
                status: 503,
                retry_after_seconds: Some(2),
            },
            Behavior::Unauthorized,
        ],
    )
    .expect("known account");

    let response = post_responses(&sim, "acct-a").await;
    assert_eq!(response.status(), 429);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["type"], "usage_not_included");

    let response = post_responses(&sim, "acct-a").await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["type"], "rate_limit_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("try again in 7s")
    );

    let response = post_responses(&sim, "acct-a").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
    assert!(
        response
            .headers()
            .get("x-codex-primary-used-percent")
            .is_some()
    );

    let response = post_responses(&sim, "acct-a").await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn stream_errors_come_after_the_opening_events() {
    let sim = Simulator::start(Script::default_accounts(1))
        .await
        .expect("sim starts");
    sim.set_behaviors(
        "acct-a",
        vec![
            Behavior::stream_error("usage_limit_reached", StreamErrorStyle::Error),
            Behavior::stream_error("insufficient_quota", StreamErrorStyle::Failed),
        ],
    )
    .expect("known account");

    let events = parse_sse(
        &post_responses(&sim, "acct-a")
            .await
            .text()
            .await
            .expect("body"),
    );
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["response.created", "response.in_progress", "error"]);
    assert_eq!(events[2].1["code"], "usage_limit_reached");

    let events = parse_sse(
        &post_responses(&sim, "acct-a")
            .await
            .text()
            .await
            .expect("body"),
    );
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.failed"
        ]
    );
    assert_eq!(
        events[2].1["response"]["error"]["code"],
        "insufficient_quota"
    );
    assert_eq!(events[2].1["response"]["status"], "failed");
}

#[tokio::test]
async fn bad_or_foreign_tokens_get_401_and_are_counted() {
    let sim = Simulator::start(Script::default_accounts(2))
        .await
        .expect("sim starts");
    let a_token = sim.tokens("acct-a").expect("acct-a").access;

    let response = post_responses_with(&sim, "acct-a", "not-a-token").await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "token_invalid");

    // acct-a's token does not open acct-b.
    assert_eq!(
        post_responses_with(&sim, "acct-b", &a_token).await.status(),
        401
    );
    // An account the script does not have.
    assert_eq!(
        post_responses_with(&sim, "acct-zzz", &a_token)
            .await
            .status(),
        401
    );
    // Revoked tokens stop working.
    sim.revoke_access_tokens("acct-a").expect("known account");
    assert_eq!(
        post_responses_with(&sim, "acct-a", &a_token).await.status(),
        401
    );

    let stats = sim.stats();
    assert_eq!(stats.account("acct-a").unauthorized, 2);
    assert_eq!(stats.account("acct-b").unauthorized, 1);
    assert_eq!(stats.account("acct-a").served, 0);
    assert_eq!(stats.global.unknown_account, 1);
    assert!(
        stats
            .requests
            .iter()
            .all(|r| r.behavior.is_none() && r.status == 401)
    );
}

#[tokio::test]
async fn expired_access_tokens_are_refused() {
    let account = AccountScript::new("acct-a").with_access_token_ttl_seconds(1);
    let sim = Simulator::start(Script::default().with_account(account))
        .await
        .expect("sim starts");
    assert_eq!(post_responses(&sim, "acct-a").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(post_responses(&sim, "acct-a").await.status(), 401);
}

#[tokio::test]
async fn zstd_bodies_are_logged_raw_and_decoded() {
    let sim = Simulator::start(Script::default_accounts(1))
        .await
        .expect("sim starts");
    let json = serde_json::to_vec(&request_body()).expect("serializes");
    let compressed =
        ruzstd::encoding::compress_to_vec(&json[..], ruzstd::encoding::CompressionLevel::Fastest);
    let token = sim.tokens("acct-a").expect("acct-a").access;

    let response = client()
        .post(format!("{}/codex/responses", sim.backend_base()))
        .header("authorization", format!("Bearer {token}"))
        .header("chatgpt-account-id", "acct-a")
        .header("content-type", "application/json")
        .header("content-encoding", "zstd")
        .header("session_id", "session-123")
        .body(compressed.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let _ = response.text().await;

    let log = sim.requests();
    let request = &log[0];
    assert_eq!(request.content_encoding.as_deref(), Some("zstd"));
    assert_eq!(request.raw_body, compressed);
    assert_eq!(request.body.as_deref(), Some(&json[..]));
    assert_eq!(
        request.body_json().map(|b| b["model"].clone()),
        Some("gpt-5.1-codex".into())
    );
    assert_eq!(request.header("session_id"), Some("session-123"));
    assert_eq!(request.header("Chatgpt-Account-Id"), Some("acct-a"));
    assert_eq!(request.account_id.as_deref(), Some("acct-a"));
}

#[tokio::test]
async fn websocket_upgrades_are_refused_and_counted() {
    let sim = Simulator::start(Script::default_accounts(1))
        .await
        .expect("sim starts");
    let response = client()
        .get(format!("{}/codex/responses", sim.backend_base()))
        .header("chatgpt-account-id", "acct-a")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 426);
    let stats = sim.stats();
    assert_eq!(stats.account("acct-a").websocket_refused, 1);
    assert_eq!(stats.global.websocket_refused, 1);
    assert_eq!(stats.account("acct-a").responses, 0);
}

#[tokio::test]
async fn a_client_leaving_mid_stream_is_recorded_as_a_disconnect() {
    let sim = Simulator::start(Script::default_accounts(1))
        .await
        .expect("sim starts");
    sim.set_behaviors(
        "acct-a",
        vec![Behavior::ok_slow("a b c d e f g h i j", 10, 200)],
    )
    .expect("known account");

    let mut response = post_responses(&sim, "acct-a").await;
    let first = response
        .chunk()
        .await
        .expect("reads")
        .expect("a first chunk");
    assert!(!first.is_empty());
    drop(response);

    let stats = sim
        .wait_for(WAIT, |s| s.account("acct-a").disconnects == 1)
        .await
        .expect("disconnect recorded");
    assert_eq!(stats.requests[0].outcome, Outcome::ClientDisconnected);
    assert!(stats.requests[0].client_disconnected());
}

#[tokio::test]
async fn a_client_leaving_during_a_hang_is_recorded_as_a_disconnect() {
    let sim = Simulator::start(Script::default_accounts(1))
        .await
        .expect("sim starts");
    sim.set_behaviors(
        "acct-a",
        vec![Behavior::HangBeforeHeaders, Behavior::HangAfterHeaders],
    )
    .expect("known account");
    let token = sim.tokens("acct-a").expect("acct-a").access;

    // Before headers: the client gives up waiting.
    let attempt = client()
        .post(format!("{}/codex/responses", sim.backend_base()))
        .header("authorization", format!("Bearer {token}"))
        .header("chatgpt-account-id", "acct-a")
        .json(&request_body())
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(attempt.is_err(), "no headers ever come");
    let stats = sim
        .wait_for(WAIT, |s| s.account("acct-a").disconnects == 1)
        .await
        .expect("disconnect before headers recorded");
    assert_eq!(stats.requests[0].status, 0);

    // After headers: the client drops the open stream.
    let response = post_responses(&sim, "acct-a").await;
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sim.stats().requests[1].outcome, Outcome::InFlight);
    drop(response);
    let stats = sim
        .wait_for(WAIT, |s| s.account("acct-a").disconnects == 2)
        .await
        .expect("disconnect after headers recorded");
    assert_eq!(stats.requests[1].outcome, Outcome::ClientDisconnected);
}

#[tokio::test]
async fn cut_after_first_delta_breaks_the_connection() {
    let sim = Simulator::start(Script::default_accounts(1))
        .await
        .expect("sim starts");
    sim.set_behaviors(
        "acct-a",
        vec![Behavior::CutAfterFirstDelta {
            text: Some("partial answer".into()),
        }],
    )
    .expect("known account");

    let mut response = post_responses(&sim, "acct-a").await;
    assert_eq!(response.status(), 200);
    let mut received = String::new();
    let ended = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(ended.is_err(), "the body must fail, not end cleanly");
    assert!(received.contains("response.output_text.delta"));
    assert!(!received.contains("response.completed"));

    let stats = sim
        .wait_for(WAIT, |s| s.requests[0].outcome != Outcome::InFlight)
        .await
        .expect("outcome recorded");
    assert_eq!(stats.requests[0].outcome, Outcome::CutBySim);
    assert_eq!(stats.account("acct-a").disconnects, 0);
}

#[tokio::test]
async fn big_streams_about_the_requested_volume() {
    let sim = Simulator::start(Script::default_accounts(1))
        .await
        .expect("sim starts");
    sim.set_behaviors("acct-a", vec![Behavior::Big { bytes: 4_000_000 }])
        .expect("known account");
    let mut response = post_responses(&sim, "acct-a").await;
    let mut total = 0usize;
    let mut tail = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("reads") {
        total += chunk.len();
        tail = chunk.to_vec();
    }
    assert!((3_800_000..4_200_000).contains(&total), "{total}");
    assert!(String::from_utf8_lossy(&tail).contains("response.completed"));
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let sim = Simulator::start(Script::default_accounts(1).with_latency_ms(200))
        .await
        .expect("sim starts");
    let started = Instant::now();
    let response = post_responses(&sim, "acct-a").await;
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(180));
}

#[tokio::test]
async fn usage_endpoints_report_windows_and_can_be_scripted_to_fail() {
    let account = AccountScript::new("acct-a")
        .with_usage(Usage::percent(42.0, 10.0))
        .with_usage_endpoint(UsageEndpointScript {
            wham_status: Some(403),
            codex_delay_ms: Some(300),
            ..UsageEndpointScript::default()
        });
    let sim = Simulator::start(Script::default().with_account(account))
        .await
        .expect("sim starts");
    let token = sim.tokens("acct-a").expect("acct-a").access;
    let get = |path: &'static str| {
        client()
            .get(format!("{}{path}", sim.backend_base()))
            .header("authorization", format!("Bearer {token}"))
            .header("chatgpt-account-id", "acct-a")
            .send()
    };

    let wham = get("/wham/usage").await.expect("sent");
    assert_eq!(wham.status(), 403);

    let started = Instant::now();
    let codex = get("/codex/usage").await.expect("sent");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "scripted delay applies"
    );
    assert_eq!(codex.status(), 200);
    let body: Value = codex.json().await.expect("json");
    assert_eq!(body["plan_type"], "plus");
    let primary = &body["rate_limit"]["primary_window"];
    assert_eq!(primary["used_percent"], 42.0);
    assert_eq!(primary["limit_window_seconds"], 18000);
    assert!(primary["reset_at"].as_u64().is_some());
    assert_eq!(
        body["rate_limit"]["secondary_window"]["limit_window_seconds"],
        604800
    );
    assert_eq!(body["rate_limit"]["limit_reached"], false);

    // set_usage changes what both the endpoint and the headers report.
    sim.set_usage("acct-a", Usage::weekly_only(100.0))
        .expect("known account");
    sim.set_behaviors("acct-a", vec![]).expect("known account");
    let body: Value = get("/codex/usage")
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(body["rate_limit"]["secondary_window"], Value::Null);
    assert_eq!(body["rate_limit"]["limit_reached"], true);

    let stats = sim.stats();
    assert_eq!(stats.account("acct-a").wham_usage, 1);
    assert_eq!(stats.account("acct-a").codex_usage, 2);

    let me: Value = get("/me").await.expect("sent").json().await.expect("json");
    assert_eq!(me["email"], "acct-a@example.com");
}

#[tokio::test]
async fn concurrent_requests_each_take_their_own_behavior() {
    let sim = Simulator::start(Script::default_accounts(1))
        .await
        .expect("sim starts");
    sim.set_behaviors(
        "acct-a",
        vec![Behavior::usage_limit(60), Behavior::ok("second")],
    )
    .expect("known account");
    let (one, two) = tokio::join!(
        post_responses(&sim, "acct-a"),
        post_responses(&sim, "acct-a")
    );
    let mut statuses = [one.status().as_u16(), two.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 429]);
}

#[tokio::test]
async fn the_request_log_keeps_only_the_newest_entries() {
    let mut script = Script::default_accounts(1);
    script.request_log_limit = 2;
    let sim = Simulator::start(script).await.expect("sim starts");
    for _ in 0..3 {
        let _ = post_responses(&sim, "acct-a").await.text().await;
    }
    let log = sim.requests();
    assert_eq!(log.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        sim.stats().account("acct-a").served,
        3,
        "counters keep counting"
    );
}
