//! The failure shapes of the real backend: in-stream errors in all three shapes, opening
//! events, error statuses with their bodies and headers, throttle hints, stalls, gzip
//! error bodies and the account-level 401 of a deactivated account.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, SystemTime};

use base64::Engine;
use common::{names, post_responses, request_body, responses_request, sse_events, token_form};
use dispatch_sim::{
    AccountScript, Behavior, CLIENT_ID, Outcome, Refusal, RetryAfterFormat, Script, Simulator,
    StreamErrorStyle,
};
use serde_json::{Map, Value, json};

const WAIT: Duration = Duration::from_secs(5);

async fn sim_with(behaviors: Vec<Behavior>) -> Simulator {
    let sim = Simulator::start(Script::default_accounts(1))
        .await
        .expect("sim starts");
    sim.set_behaviors("acct-a", behaviors)
        .expect("known account");
    sim
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn fields(value: Value) -> Map<String, Value> {
    value.as_object().cloned().expect("an object")
}

#[tokio::test]
async fn stream_errors_come_in_all_three_shapes_with_any_code_and_fields() {
    let usage_limit = |style| {
        Behavior::StreamError {
            code: "usage_limit_reached".into(),
            style,
            after_created: true,
            message: None,
            opening: None,
            error_type: None,
            resets_in_seconds: Some(600),
            extra: Map::new(),
        }
        .with_error_fields(fields(json!({"plan_type": "plus"})))
    };
    let sim = sim_with(vec![
        usage_limit(StreamErrorStyle::Error),
        usage_limit(StreamErrorStyle::Nested),
        usage_limit(StreamErrorStyle::Failed),
        Behavior::stream_error("context_length_exceeded", StreamErrorStyle::Nested),
        Behavior::stream_error("server_is_overloaded", StreamErrorStyle::Nested),
    ])
    .await;

    let top = sse_events(post_responses(&sim, "acct-a").await).await;
    assert_eq!(
        names(&top),
        ["response.created", "response.in_progress", "error"]
    );
    let error = &top[2].1;
    assert_eq!(error["code"], "usage_limit_reached");
    assert_eq!(error["resets_in_seconds"], 600);
    assert!(
        error["resets_at"]
            .as_u64()
            .is_some_and(|at| at.abs_diff(now_s() + 600) <= 2)
    );
    assert_eq!(error["plan_type"], "plus");

    let nested = sse_events(post_responses(&sim, "acct-a").await).await;
    assert_eq!(nested[2].0, "error");
    let error = &nested[2].1["error"];
    assert_eq!(nested[2].1["type"], "error");
    assert_eq!(error["type"], "usage_limit_reached");
    assert_eq!(error["code"], "usage_limit_reached");
    assert_eq!(error["message"], "The usage limit has been reached");
    assert_eq!(error["resets_in_seconds"], 600);
    assert_eq!(error["plan_type"], "plus");
    assert!(nested[2].1.get("code").is_none(), "the code is only nested");

    let failed = sse_events(post_responses(&sim, "acct-a").await).await;
    assert_eq!(failed[2].0, "response.failed");
    let error = &failed[2].1["response"]["error"];
    assert_eq!(error["code"], "usage_limit_reached");
    assert_eq!(error["resets_in_seconds"], 600);

    let context = sse_events(post_responses(&sim, "acct-a").await).await;
    let error = &context[2].1["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("context window"))
    );

    let overloaded = sse_events(post_responses(&sim, "acct-a").await).await;
    assert_eq!(
        overloaded[2].1["error"]["type"],
        "service_unavailable_error"
    );
}

#[tokio::test]
async fn opening_events_are_scriptable_for_answers_and_failures() {
    let opening = [
        "response.created",
        "response.in_progress",
        "response.queued",
        "response.metadata",
        "codex.something_new",
    ];
    let sim = sim_with(vec![
        Behavior::ok("hi").with_opening(&opening),
        Behavior::stream_error("server_error", StreamErrorStyle::Nested)
            .with_opening(&["response.queued"]),
        Behavior::StreamError {
            code: "cyber_policy".into(),
            style: StreamErrorStyle::Error,
            after_created: false,
            message: None,
            opening: None,
            error_type: None,
            resets_in_seconds: None,
            extra: Map::new(),
        },
    ])
    .await;

    let events = sse_events(post_responses(&sim, "acct-a").await).await;
    assert_eq!(
        &names(&events)[..6],
        [&opening[..], &["response.output_item.added"]].concat()
    );
    assert_eq!(events[2].1["response"]["status"], "queued");
    assert_eq!(events[1].1["response"]["status"], "in_progress");
    assert_eq!(
        events[3].1["metadata"]["openai_verification_recommendation"],
        json!([])
    );
    assert_eq!(events[4].1["type"], "codex.something_new");
    let sequence: Vec<u64> = events
        .iter()
        .filter_map(|(_, data)| data["sequence_number"].as_u64())
        .collect();
    assert_eq!(sequence, (0..events.len() as u64).collect::<Vec<_>>());

    let failure = sse_events(post_responses(&sim, "acct-a").await).await;
    assert_eq!(names(&failure), ["response.queued", "error"]);

    let bare = sse_events(post_responses(&sim, "acct-a").await).await;
    assert_eq!(names(&bare), ["error"]);
    assert_eq!(bare[0].1["code"], "cyber_policy");
}

#[tokio::test]
async fn first_delay_holds_back_all_output_including_the_reasoning_item() {
    let sim = sim_with(vec![Behavior::Ok {
        text: Some("late".into()),
        deltas: 1,
        delay_ms: 0,
        first_delay_ms: 400,
        opening: None,
        reasoning_summary: None,
    }])
    .await;
    let mut response = post_responses(&sim, "acct-a").await;
    let started = std::time::Instant::now();
    let mut before_delay = String::new();
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(Duration::from_millis(250), response.chunk()).await
    {
        before_delay.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(before_delay.contains("response.in_progress"));
    assert!(!before_delay.contains("response.output_item.added"));
    let rest = response.text().await.expect("rest");
    assert!(rest.starts_with("event: response.output_item.added"));
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn error_statuses_have_the_real_bodies() {
    let sim = sim_with(vec![
        Behavior::invalid_request("Unsupported parameter: max_output_tokens"),
        Behavior::instructions_required(),
        Behavior::invalid_request_code("cyber_policy"),
        Behavior::invalid_request_code("content_policy_violation"),
        Behavior::invalid_request_code("invalid_prompt"),
        Behavior::invalid_request_code("context_length_exceeded"),
        Behavior::DeactivatedWorkspace,
        Behavior::overloaded("server_is_overloaded"),
        Behavior::overloaded("slow_down"),
    ])
    .await;
    let mut answers = Vec::new();
    for _ in 0..9 {
        let response = post_responses(&sim, "acct-a").await;
        let status = response.status().as_u16();
        assert!(response.headers().get("x-codex-plan-type").is_some());
        assert_eq!(response.headers()["content-type"], "application/json");
        answers.push((status, response.json::<Value>().await.expect("json")));
    }
    assert_eq!(
        answers[0],
        (
            400,
            json!({"error": {"message": "Unsupported parameter: max_output_tokens",
                "type": "invalid_request_error", "param": null, "code": null}})
        )
    );
    assert_eq!(
        answers[1],
        (400, json!({"detail": "Instructions are required"}))
    );
    for (i, code) in [
        "cyber_policy",
        "content_policy_violation",
        "invalid_prompt",
        "context_length_exceeded",
    ]
    .iter()
    .enumerate()
    {
        let (status, body) = &answers[2 + i];
        assert_eq!(*status, 400);
        assert_eq!(body["error"]["code"], *code);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    assert_eq!(
        answers[6],
        (402, json!({"detail": {"code": "deactivated_workspace"}}))
    );
    for (i, code) in ["server_is_overloaded", "slow_down"].iter().enumerate() {
        let (status, body) = &answers[7 + i];
        assert_eq!(*status, 503);
        assert_eq!(body["error"]["code"], *code);
        assert_eq!(body["error"]["type"], "service_unavailable_error");
    }
}

#[tokio::test]
async fn a_cdn_challenge_is_an_html_403() {
    let sim = sim_with(vec![Behavior::CloudflareChallenge]).await;
    let response = post_responses(&sim, "acct-a").await;
    assert_eq!(response.status(), 403);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/html"))
    );
    assert_eq!(response.headers()["cf-mitigated"], "challenge");
    assert_eq!(response.headers()["server"], "cloudflare");
    assert!(response.headers().get("cf-ray").is_some());
    let page = response.text().await.expect("body");
    assert!(page.contains("<title>Just a moment...</title>"));
    assert!(serde_json::from_str::<Value>(&page).is_err());
}

/// The `x-error-json` header decoded as codex-rs does: standard base64 of JSON.
fn x_error_json(headers: &reqwest::header::HeaderMap) -> Value {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(headers["x-error-json"].as_bytes())
        .expect("standard base64");
    serde_json::from_slice(&decoded).expect("json")
}

#[tokio::test]
async fn an_authorization_403_names_the_problem_in_its_headers() {
    let sim = sim_with(vec![
        Behavior::forbidden(),
        Behavior::Forbidden {
            authorization_error: "missing_authorization_header".into(),
            error_code: "token_expired".into(),
            message: Some("Not allowed".into()),
        },
    ])
    .await;
    let response = post_responses(&sim, "acct-a").await;
    assert_eq!(response.status(), 403);
    let headers = response.headers().clone();
    assert_eq!(
        headers["x-openai-authorization-error"],
        "verification_required"
    );
    let error_json = base64::engine::general_purpose::STANDARD
        .decode(headers["x-error-json"].as_bytes())
        .expect("standard base64");
    let error_json: Value = serde_json::from_slice(&error_json).expect("json");
    assert_eq!(
        error_json["error"]["code"],
        "identity_verification_required"
    );
    let body: Value = response.json().await.expect("json body");
    assert_eq!(body["error"]["code"], "identity_verification_required");

    let response = post_responses(&sim, "acct-a").await;
    let headers = response.headers().clone();
    assert_eq!(
        headers["x-openai-authorization-error"],
        "missing_authorization_header"
    );
    assert_eq!(
        x_error_json(&headers),
        json!({"error": {"code": "token_expired", "message": "Not allowed"}})
    );
}

#[tokio::test]
async fn throttle_hints_come_as_seconds_dates_or_milliseconds() {
    let sim = sim_with(vec![
        Behavior::rate_limited(7),
        Behavior::rate_limited_as(90, RetryAfterFormat::HttpDate),
        Behavior::rate_limited_as(3, RetryAfterFormat::Millis),
        Behavior::rate_limited_as(3, RetryAfterFormat::Omitted),
        Behavior::Overloaded {
            code: "slow_down".into(),
            status: 503,
            retry_after_seconds: Some(4),
            retry_after_format: RetryAfterFormat::Millis,
        },
    ])
    .await;
    let seconds = post_responses(&sim, "acct-a").await;
    assert_eq!(seconds.headers()["retry-after"], "7");

    let date = post_responses(&sim, "acct-a").await;
    let value = date.headers()["retry-after"].to_str().expect("ascii");
    let at = httpdate::parse_http_date(value).expect("an HTTP date");
    let ahead = at
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .as_secs();
    assert!((85..=90).contains(&ahead), "{value}");
    assert!(date.headers().get("retry-after-ms").is_none());

    let millis = post_responses(&sim, "acct-a").await;
    assert_eq!(millis.headers()["retry-after-ms"], "3000");
    assert!(millis.headers().get("retry-after").is_none());

    let omitted = post_responses(&sim, "acct-a").await;
    assert_eq!(omitted.status(), 429);
    assert!(omitted.headers().get("retry-after").is_none());
    assert!(omitted.headers().get("retry-after-ms").is_none());

    let overloaded = post_responses(&sim, "acct-a").await;
    assert_eq!(overloaded.status(), 503);
    assert_eq!(overloaded.headers()["retry-after-ms"], "4000");
}

#[tokio::test]
async fn any_status_body_and_headers_can_be_scripted() {
    let sim = sim_with(vec![
        Behavior::HttpError {
            status: 429,
            body: None,
            text: None,
            content_type: None,
            headers: BTreeMap::new(),
        },
        Behavior::HttpError {
            status: 418,
            body: Some(json!({"detail": "teapot"})),
            text: None,
            content_type: None,
            headers: BTreeMap::from([("x-custom".to_string(), "yes".to_string())]),
        },
        Behavior::HttpError {
            status: 502,
            body: None,
            text: Some("<html>bad gateway</html>".into()),
            content_type: Some("text/html".into()),
            headers: BTreeMap::new(),
        },
    ])
    .await;
    let empty = post_responses(&sim, "acct-a").await;
    assert_eq!(empty.status(), 429);
    assert!(empty.bytes().await.expect("body").is_empty());

    let json = post_responses(&sim, "acct-a").await;
    assert_eq!(json.status(), 418);
    assert_eq!(json.headers()["x-custom"], "yes");
    assert_eq!(
        json.json::<Value>().await.expect("json"),
        json!({"detail": "teapot"})
    );

    let html = post_responses(&sim, "acct-a").await;
    assert_eq!(html.status(), 502);
    assert_eq!(html.headers()["content-type"], "text/html");
    assert_eq!(html.text().await.expect("body"), "<html>bad gateway</html>");
}

#[tokio::test]
async fn a_stall_after_created_sends_nothing_more_until_the_client_leaves() {
    let sim = sim_with(vec![
        Behavior::hang_after_created(),
        Behavior::hang_after_created().with_opening(&["response.created"]),
    ])
    .await;
    for expected in [
        &["response.created", "response.in_progress"][..],
        &["response.created"][..],
    ] {
        let mut response = post_responses(&sim, "acct-a").await;
        assert_eq!(response.status(), 200);
        let mut text = String::new();
        while let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(300), response.chunk()).await
        {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        let events = common::parse_sse(&text);
        assert_eq!(names(&events), expected);
        drop(response);
    }
    let stats = sim
        .wait_for(WAIT, |s| s.account("acct-a").disconnects == 2)
        .await
        .expect("both stalls end with the client leaving");
    assert!(
        stats
            .requests
            .iter()
            .all(|r| r.outcome == Outcome::ClientDisconnected)
    );
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

#[tokio::test]
async fn error_bodies_are_gzip_when_the_client_accepts_it() {
    let sim = sim_with(vec![Behavior::usage_limit(60); 3]).await;
    let token = sim.tokens("acct-a").expect("acct-a").access;
    let send = |accept: Option<&'static str>| {
        let mut request = responses_request(&sim, "acct-a", &token).json(&request_body());
        if let Some(accept) = accept {
            request = request.header("accept-encoding", accept);
        }
        request.send()
    };

    let gzip = send(Some("gzip, deflate")).await.expect("sent");
    assert_eq!(gzip.status(), 429);
    assert_eq!(gzip.headers()["content-encoding"], "gzip");
    let raw = gzip.bytes().await.expect("body");
    assert!(
        serde_json::from_slice::<Value>(&raw).is_err(),
        "not plain JSON"
    );
    let body: Value = serde_json::from_slice(&gunzip(&raw)).expect("gzip of JSON");
    assert_eq!(body["error"]["type"], "usage_limit_reached");

    for accept in [Some("identity"), None] {
        let plain = send(accept).await.expect("sent");
        assert!(plain.headers().get("content-encoding").is_none());
        let body: Value = plain.json().await.expect("plain JSON");
        assert_eq!(body["error"]["type"], "usage_limit_reached");
    }

    // 200 streams are never compressed, whatever the client accepts.
    let ok = send(Some("gzip")).await.expect("sent");
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().get("content-encoding").is_none());
    let _ = ok.text().await;

    // Auth refusals come through the same CDN.
    let refused = responses_request(&sim, "acct-a", "not-a-token")
        .header("accept-encoding", "gzip")
        .json(&request_body())
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["content-encoding"], "gzip");

    let encodings: Vec<Option<String>> = sim
        .requests()
        .into_iter()
        .map(|r| r.response_encoding)
        .collect();
    let gzip = || Some("gzip".to_string());
    assert_eq!(encodings, [gzip(), None, None, None, gzip()]);
}

#[tokio::test]
async fn a_deactivated_account_gets_its_401_even_after_a_refresh() {
    let account = AccountScript::new("acct-a")
        .with_deactivated("account_deactivated")
        .with_behaviors(vec![Behavior::ok("kept for later")]);
    let sim = Simulator::start(Script::default().with_account(account))
        .await
        .expect("sim starts");

    let response = post_responses(&sim, "acct-a").await;
    assert_eq!(response.status(), 401);
    assert!(
        response.headers().get("x-codex-plan-type").is_none(),
        "an auth-level refusal"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "account_deactivated");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    // A refresh works, and the fresh token is refused just the same.
    let refresh = sim.tokens("acct-a").expect("acct-a").refresh;
    let refreshed = token_form(
        &sim,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", CLIENT_ID),
        ],
    )
    .await;
    assert_eq!(refreshed.status(), 200);
    for code in ["token_revoked", "missing_scope"] {
        sim.deactivate("acct-a", code).expect("known account");
        let response = post_responses(&sim, "acct-a").await;
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], code);
    }

    let stats = sim.stats();
    assert_eq!(stats.account("acct-a").deactivated_refused, 3);
    assert_eq!(stats.account("acct-a").served, 0);
    assert!(
        stats
            .requests
            .iter()
            .all(|r| r.refusal == Some(Refusal::AccountDeactivated) && r.behavior.is_none())
    );

    // Cleared: the queue is as it was.
    sim.reactivate("acct-a").expect("known account");
    let events = sse_events(post_responses(&sim, "acct-a").await).await;
    assert_eq!(
        events
            .iter()
            .find(
                |(_, d)| d["item"]["type"] == "message" && d["type"] == "response.output_item.done"
            )
            .map(|(_, d)| d["item"]["content"][0]["text"].clone()),
        Some(json!("kept for later"))
    );
}
