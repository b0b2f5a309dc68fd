//! Helpers shared by the integration tests.
#![allow(dead_code)]

use dispatch_sim::Simulator;
use serde_json::{Value, json};

pub fn client() -> reqwest::Client {
    // In a workspace build reqwest's features unify with pi-dispatch's, which brings rustls
    // without a built-in crypto provider; ring is the one pi-dispatch installs too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client builds")
}

/// A minimal Responses API body, as pi sends it.
pub fn request_body() -> Value {
    json!({
        "model": "gpt-5.1-codex",
        "store": false,
        "stream": true,
        "instructions": "You are a helpful assistant.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
    })
}

/// POSTs to /codex/responses as `account_id` with its current access token.
pub async fn post_responses(sim: &Simulator, account_id: &str) -> reqwest::Response {
    let token = sim.tokens(account_id).expect("scripted account").access;
    post_responses_with(sim, account_id, &token).await
}

pub async fn post_responses_with(
    sim: &Simulator,
    account_id: &str,
    token: &str,
) -> reqwest::Response {
    responses_request(sim, account_id, token)
        .json(&request_body())
        .send()
        .await
        .expect("request reaches the sim")
}

/// A /codex/responses request as `account_id` with `token`, body still to be added.
pub fn responses_request(
    sim: &Simulator,
    account_id: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}/codex/responses", sim.backend_base()))
        .header("authorization", format!("Bearer {token}"))
        .header("chatgpt-account-id", account_id)
        .header("accept", "text/event-stream")
}

/// POSTs `body` to /codex/responses as `account_id` with its current access token.
pub async fn post_responses_body(
    sim: &Simulator,
    account_id: &str,
    body: &Value,
) -> reqwest::Response {
    let token = sim.tokens(account_id).expect("scripted account").access;
    responses_request(sim, account_id, &token)
        .json(body)
        .send()
        .await
        .expect("request reaches the sim")
}

/// The whole SSE body of a response, as (event name, data) pairs.
pub async fn sse_events(response: reqwest::Response) -> Vec<(String, Value)> {
    parse_sse(&response.text().await.expect("body reads"))
}

/// The event names, in order.
pub fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

/// Splits an SSE text into (event name, parsed data) pairs.
pub fn parse_sse(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(rest) = line.strip_prefix("event: ") {
                    name = rest.to_string();
                } else if let Some(rest) = line.strip_prefix("data: ") {
                    data.push_str(rest);
                }
            }
            (name, serde_json::from_str(&data).expect("data is JSON"))
        })
        .collect()
}

/// POSTs a form to the token endpoint.
pub async fn token_form(sim: &Simulator, pairs: &[(&str, &str)]) -> reqwest::Response {
    let mut form = String::new();
    for (name, value) in pairs {
        if !form.is_empty() {
            form.push('&');
        }
        form.push_str(name);
        form.push('=');
        form.push_str(&percent_encode(value));
    }
    client()
        .post(format!("{}/oauth/token", sim.issuer()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("token endpoint answers")
}

pub fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// POSTs a request for `model` to /codex/responses as `account_id`, its body
/// zstd-compressed as pi 1.x sends it.
pub async fn post_model(sim: &Simulator, account_id: &str, model: &str) -> reqwest::Response {
    let token = sim.tokens(account_id).expect("scripted account").access;
    let mut body = request_body();
    body["model"] = model.into();
    let json = serde_json::to_vec(&body).expect("serializes");
    let compressed =
        ruzstd::encoding::compress_to_vec(&json[..], ruzstd::encoding::CompressionLevel::Fastest);
    client()
        .post(format!("{}/codex/responses", sim.backend_base()))
        .header("authorization", format!("Bearer {token}"))
        .header("chatgpt-account-id", account_id)
        .header("content-type", "application/json")
        .header("content-encoding", "zstd")
        .body(compressed)
        .send()
        .await
        .expect("request reaches the sim")
}

/// GETs a backend path (`/wham/usage`, ...) as `account_id` with its access token.
pub async fn get_backend(sim: &Simulator, account_id: &str, path: &str) -> reqwest::Response {
    let token = sim.tokens(account_id).expect("scripted account").access;
    client()
        .get(format!("{}{path}", sim.backend_base()))
        .header("authorization", format!("Bearer {token}"))
        .header("chatgpt-account-id", account_id)
        .header("user-agent", "codex_cli_rs/0.122.0 (Linux 6.8; x86_64)")
        .header("originator", "codex_cli_rs")
        .send()
        .await
        .expect("request reaches the sim")
}

/// A header as text ("" when it is empty, None when it is missing).
pub fn header_text(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii header").to_string())
}

/// Asserts a header's text.
#[track_caller]
pub fn assert_header(response: &reqwest::Response, name: &str, expected: &str) {
    assert_eq!(
        header_text(response, name).as_deref(),
        Some(expected),
        "{name}"
    );
}
