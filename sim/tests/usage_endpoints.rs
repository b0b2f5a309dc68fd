//! The usage endpoints as the core calls them: the client headers they log, the CDN
//! challenge in front of them, and banked resets.

mod common;

use common::{client, get_backend, header_text, post_responses};
use dispatch_sim::{
    AccountScript, CdnChallenge, Script, Simulator, Usage, UsageEndpointScript, Window,
};
use serde_json::{Value, json};

async fn start(account: AccountScript) -> Simulator {
    Simulator::start(Script::default().with_account(account))
        .await
        .expect("sim starts")
}

/// GETs `/wham/usage` with exactly these client headers.
async fn usage_with(
    sim: &Simulator,
    user_agent: Option<&str>,
    originator: Option<&str>,
) -> reqwest::Response {
    let token = sim.tokens("acct-a").expect("acct-a").access;
    let mut request = client()
        .get(format!("{}/wham/usage", sim.backend_base()))
        .header("authorization", format!("Bearer {token}"))
        .header("chatgpt-account-id", "acct-a");
    if let Some(agent) = user_agent {
        request = request.header("user-agent", agent);
    }
    if let Some(originator) = originator {
        request = request.header("originator", originator);
    }
    request.send().await.expect("sent")
}

async fn consume(sim: &Simulator, body: Value) -> reqwest::Response {
    let token = sim.tokens("acct-a").expect("acct-a").access;
    client()
        .post(format!(
            "{}/wham/rate-limit-reset-credits/consume",
            sim.backend_base()
        ))
        .header("authorization", format!("Bearer {token}"))
        .header("chatgpt-account-id", "acct-a")
        .header("user-agent", "codex_cli_rs/0.122.0 (Linux 6.8; x86_64)")
        .json(&body)
        .send()
        .await
        .expect("sent")
}

/// The JSON a 200 answer carries.
async fn json_of(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

async fn consumed(sim: &Simulator, body: Value) -> Value {
    json_of(consume(sim, body).await).await
}

async fn listed(sim: &Simulator) -> Value {
    json_of(get_backend(sim, "acct-a", "/wham/rate-limit-reset-credits").await).await
}

fn challenge_mode(mode: CdnChallenge) -> AccountScript {
    AccountScript::new("acct-a").with_usage_endpoint(UsageEndpointScript {
        cdn_challenge: mode,
        ..UsageEndpointScript::default()
    })
}

#[tokio::test]
async fn usage_calls_are_logged_with_their_client_headers() {
    let sim = start(AccountScript::new("acct-a")).await;
    let response = usage_with(&sim, Some("pi-dispatch/0.1.0 (linux; x64)"), Some("pi")).await;
    assert_eq!(response.status(), 200);
    let response = get_backend(&sim, "acct-a", "/codex/usage").await;
    assert_eq!(response.status(), 200);
    assert_eq!(usage_with(&sim, None, None).await.status(), 200);
    let token = sim.tokens("acct-a").expect("acct-a").access;
    let foreign = client()
        .get(format!("{}/wham/usage", sim.backend_base()))
        .header("authorization", format!("Bearer {token}"))
        .header("chatgpt-account-id", "acct-zzz")
        .send()
        .await
        .expect("sent");
    assert_eq!(foreign.status(), 401);

    let stats = sim.stats();
    let log: Vec<_> = stats
        .usage_requests
        .iter()
        .map(|r| {
            (
                r.account_id.as_deref(),
                r.path.as_str(),
                r.user_agent.as_deref(),
                r.originator.as_deref(),
                r.status,
            )
        })
        .collect();
    assert_eq!(
        log,
        [
            (
                Some("acct-a"),
                "/backend-api/wham/usage",
                Some("pi-dispatch/0.1.0 (linux; x64)"),
                Some("pi"),
                200
            ),
            (
                Some("acct-a"),
                "/backend-api/codex/usage",
                Some("codex_cli_rs/0.122.0 (Linux 6.8; x86_64)"),
                Some("codex_cli_rs"),
                200
            ),
            (Some("acct-a"), "/backend-api/wham/usage", None, None, 200),
            (Some("acct-zzz"), "/backend-api/wham/usage", None, None, 401),
        ]
    );
    assert!(stats.usage_requests.iter().all(|r| r.method == "GET"));
    assert_eq!(stats.account("acct-a").wham_usage, 2);
    assert_eq!(stats.account("acct-a").codex_usage, 1);
    assert_eq!(stats.global.unknown_account, 1);

    sim.reset_stats();
    assert!(sim.stats().usage_requests.is_empty());
}

#[tokio::test]
async fn the_usage_log_keeps_only_the_newest_calls() {
    let mut script = Script::default().with_account(AccountScript::new("acct-a"));
    script.request_log_limit = 2;
    let sim = Simulator::start(script).await.expect("sim starts");
    for agent in ["one/1", "two/2", "three/3"] {
        assert_eq!(usage_with(&sim, Some(agent), None).await.status(), 200);
    }
    let agents: Vec<Option<String>> = sim
        .stats()
        .usage_requests
        .into_iter()
        .map(|r| r.user_agent)
        .collect();
    assert_eq!(
        agents,
        [Some("two/2".to_string()), Some("three/3".to_string())]
    );
    assert_eq!(sim.stats().account("acct-a").wham_usage, 3);
}

#[tokio::test]
async fn the_cdn_challenges_calls_without_a_client_user_agent() {
    let sim = start(challenge_mode(CdnChallenge::WithoutUserAgent)).await;

    for agent in [None, Some("curl/8.5.0"), Some("node")] {
        let response = usage_with(&sim, agent, None).await;
        assert_eq!(response.status(), 403, "{agent:?}");
        let content_type = header_text(&response, "content-type").expect("a content type");
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert_eq!(
            header_text(&response, "cf-mitigated").as_deref(),
            Some("challenge")
        );
        assert!(header_text(&response, "cf-ray").is_some());
        assert_eq!(
            header_text(&response, "server").as_deref(),
            Some("cloudflare")
        );
        let page = response.text().await.expect("body");
        assert!(page.contains("<title>Just a moment...</title>"), "{page}");
    }
    let served = usage_with(
        &sim,
        Some("codex_cli_rs/0.122.0 (Linux 6.8; x86_64)"),
        Some("codex_cli_rs"),
    )
    .await;
    assert_eq!(served.status(), 200);

    let stats = sim.stats();
    assert_eq!(stats.account("acct-a").cdn_challenged, 3);
    assert_eq!(stats.account("acct-a").wham_usage, 4);
    let challenged: Vec<bool> = stats
        .usage_requests
        .iter()
        .map(|r| r.cdn_challenged)
        .collect();
    assert_eq!(challenged, [true, true, true, false]);
    assert_eq!(stats.usage_requests[0].status, 403);

    // Model calls are not behind this challenge.
    assert_eq!(post_responses(&sim, "acct-a").await.status(), 200);
}

#[tokio::test]
async fn an_always_on_challenge_comes_before_auth_and_covers_banked_resets() {
    let sim = start(challenge_mode(CdnChallenge::Always)).await;
    let response = client()
        .get(format!("{}/codex/usage", sim.backend_base()))
        .header("authorization", "Bearer not-a-token")
        .header("chatgpt-account-id", "acct-a")
        .header("user-agent", "codex_cli_rs/0.122.0")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 403);
    let reset = get_backend(&sim, "acct-a", "/wham/rate-limit-reset-credits").await;
    assert_eq!(reset.status(), 403);
    let counts = sim.stats().account("acct-a");
    assert_eq!(counts.cdn_challenged, 2);
    assert_eq!(counts.reset_credits_listed, 1);

    // "never" (the default) lets everything through.
    let sim = start(challenge_mode(CdnChallenge::Never)).await;
    assert_eq!(usage_with(&sim, None, None).await.status(), 200);
}

#[tokio::test]
async fn a_banked_reset_lifts_a_spent_limit_before_its_reset() {
    let account = AccountScript::new("acct-a")
        .with_usage(Usage {
            primary: Some(Window {
                used_percent: 100.0,
                window_minutes: 300,
                reset_after_seconds: 4000,
            }),
            secondary: Some(Window::weekly(64.0)),
        })
        .with_banked_resets(2);
    let sim = start(account).await;
    assert_eq!(post_responses(&sim, "acct-a").await.status(), 429);

    let banked = listed(&sim).await;
    assert_eq!(banked["available_count"], 2);
    let credits = banked["credits"].as_array().expect("a list");
    assert_eq!(credits.len(), 2);
    let first = &credits[0];
    assert_eq!(first["reset_type"], "codex_rate_limits");
    assert_eq!(first["status"], "available");
    let granted = first["granted_at"].as_str().expect("a date");
    assert!(granted.ends_with('Z') && granted.len() == 20, "{granted}");
    assert!(first["expires_at"].as_str().is_some_and(|at| at > granted));
    let first_id = first["id"].as_str().expect("an id").to_string();

    let answer = consumed(
        &sim,
        json!({"redeem_request_id": "redeem-1", "credit_id": first_id}),
    )
    .await;
    assert_eq!(answer, json!({"code": "reset", "windows_reset": 2}));

    // The usage shows the limit lifted, with fresh windows ahead.
    let payload = json_of(get_backend(&sim, "acct-a", "/wham/usage").await).await;
    let primary = &payload["rate_limit"]["primary_window"];
    assert_eq!(primary["used_percent"], json!(0));
    let after = primary["reset_after_seconds"].as_u64().expect("number");
    assert!((17_990..=18_000).contains(&after), "{after}");
    assert_eq!(
        payload["rate_limit"]["secondary_window"]["used_percent"],
        json!(0)
    );
    assert_eq!(payload["rate_limit"]["limit_reached"], false);
    assert_eq!(payload["rate_limit_reset_credits"]["available_count"], 1);
    assert_eq!(post_responses(&sim, "acct-a").await.status(), 200);

    // The same redeem id again is a repeat; with nothing used there is nothing to reset.
    let again = consumed(&sim, json!({"redeem_request_id": "redeem-1"})).await;
    assert_eq!(
        again,
        json!({"code": "already_redeemed", "windows_reset": 0})
    );
    let idle = consumed(&sim, json!({"redeem_request_id": "redeem-2"})).await;
    assert_eq!(
        idle,
        json!({"code": "nothing_to_reset", "windows_reset": 0})
    );

    // Spend the last one, then there is none.
    sim.set_usage("acct-a", Usage::percent(50.0, 10.0))
        .expect("known account");
    let last = consumed(&sim, json!({"redeem_request_id": "redeem-3"})).await;
    assert_eq!(last["code"], "reset");
    let none = consumed(&sim, json!({"redeem_request_id": "redeem-4"})).await;
    assert_eq!(none, json!({"code": "no_credit", "windows_reset": 0}));

    let bad = consume(&sim, json!({"credit_id": "x"})).await;
    assert_eq!(bad.status(), 400);

    let counts = sim.stats().account("acct-a");
    assert_eq!(counts.reset_credits_listed, 1);
    assert_eq!(counts.reset_consume_calls, 6);
    assert_eq!(counts.resets_consumed, 2);
    assert!(sim.stats().usage_requests.iter().any(|r| r.method == "POST"
        && r.path == "/backend-api/wham/rate-limit-reset-credits/consume"
        && r.user_agent.as_deref() == Some("codex_cli_rs/0.122.0 (Linux 6.8; x86_64)")));
}

#[tokio::test]
async fn an_unknown_credit_id_consumes_nothing() {
    let account = AccountScript::new("acct-a")
        .with_usage(Usage::percent(80.0, 10.0))
        .with_banked_resets(1);
    let sim = start(account).await;
    let answer = consumed(
        &sim,
        json!({"redeem_request_id": "r", "credit_id": "rlrc_nope"}),
    )
    .await;
    assert_eq!(answer, json!({"code": "no_credit", "windows_reset": 0}));
    assert_eq!(listed(&sim).await["available_count"], 1);
    let bad_method = client()
        .get(format!(
            "{}/wham/rate-limit-reset-credits/consume",
            sim.backend_base()
        ))
        .send()
        .await
        .expect("sent");
    assert_eq!(bad_method.status(), 405);
}
