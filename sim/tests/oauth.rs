//! The issuer: browser login with PKCE, rotating refresh tokens, device login and
//! scripted token-endpoint failures.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{client, percent_encode, post_responses_with, token_form};
use dispatch_sim::{
    AccountScript, CLIENT_ID, CodePlacement, Script, Simulator, TokenBehavior, decode_jwt_payload,
    pkce_challenge,
};
use serde_json::{Value, json};

const REDIRECT: &str = "http://localhost:1455/auth/callback";
const VERIFIER: &str = "a-test-code-verifier-that-is-long-enough-for-pkce-0123456789";

/// Walks `/oauth/authorize` and returns the redirect's query parameters.
async fn authorize(sim: &Simulator, state: &str) -> HashMap<String, String> {
    let url = format!(
        "{}/oauth/authorize?response_type=code&client_id={CLIENT_ID}&redirect_uri={}&scope={}\
         &code_challenge={}&code_challenge_method=S256&state={state}&codex_cli_simplified_flow=true",
        sim.issuer(),
        percent_encode(REDIRECT),
        percent_encode("openid profile email offline_access"),
        pkce_challenge(VERIFIER),
    );
    let response = client().get(url).send().await.expect("authorize answers");
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii location")
        .to_string();
    let (base, query) = location.split_once('?').expect("query on the redirect");
    assert_eq!(base, REDIRECT);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn exchange(sim: &Simulator, code: &str, verifier: &str) -> reqwest::Response {
    token_form(
        sim,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await
}

async fn refresh(sim: &Simulator, refresh_token: &str) -> reqwest::Response {
    token_form(
        sim,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

#[tokio::test]
async fn authorization_code_login_checks_pkce_and_is_single_use() {
    let sim = Simulator::start(Script::default_accounts(2))
        .await
        .expect("sim starts");
    sim.queue_login("acct-b").expect("known account");

    let params = authorize(&sim, "state-1").await;
    assert_eq!(params["state"], "state-1");
    let code = params["code"].clone();

    let wrong = exchange(&sim, &code, "some-other-verifier").await;
    assert_eq!(wrong.status(), 400);
    let body: Value = wrong.json().await.expect("json");
    assert_eq!(body["error"], "invalid_grant");

    // A failed PKCE check spends the code, as a real issuer would.
    assert_eq!(exchange(&sim, &code, VERIFIER).await.status(), 400);

    sim.queue_login("acct-b").expect("known account");
    let code = authorize(&sim, "state-2").await["code"].clone();
    let response = exchange(&sim, &code, VERIFIER).await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.expect("json");
    assert_eq!(tokens["expires_in"], 3600);
    let access = tokens["access_token"].as_str().expect("access token");
    let claims = decode_jwt_payload(access).expect("jwt");
    assert_eq!(
        claims["https://api.openai.com/auth"]["chatgpt_account_id"],
        "acct-b"
    );
    let id = decode_jwt_payload(tokens["id_token"].as_str().expect("id token")).expect("jwt");
    assert_eq!(id["email"], "acct-b@example.com");

    // The minted token opens the backend, and the sim's notion of "current" follows.
    assert_eq!(
        post_responses_with(&sim, "acct-b", access).await.status(),
        200
    );
    assert_eq!(sim.tokens("acct-b").expect("acct-b").access, access);

    // Second use of the same code fails.
    assert_eq!(exchange(&sim, &code, VERIFIER).await.status(), 400);
    // Spent codes no longer name an account, so they count as unknown.
    let stats = sim.stats();
    assert_eq!(stats.account("acct-b").token_authorization_code, 2);
    assert_eq!(stats.account("acct-b").token_failures, 1);
    assert_eq!(stats.global.token_unknown, 2);
}

#[tokio::test]
async fn login_defaults_to_the_first_account_and_can_be_denied() {
    let sim = Simulator::start(Script::default_accounts(2))
        .await
        .expect("sim starts");
    sim.queue_login_denied();
    let params = authorize(&sim, "s").await;
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "s");

    let code = authorize(&sim, "s").await["code"].clone();
    let tokens: Value = exchange(&sim, &code, VERIFIER)
        .await
        .json()
        .await
        .expect("json");
    let claims =
        decode_jwt_payload(tokens["access_token"].as_str().unwrap_or_default()).expect("jwt");
    assert_eq!(
        claims["https://api.openai.com/auth"]["chatgpt_account_id"],
        "acct-a"
    );
    assert_eq!(sim.stats().global.authorize_denied, 1);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_is_refused() {
    let sim = Simulator::start(Script::default_accounts(1))
        .await
        .expect("sim starts");
    let first = sim.tokens("acct-a").expect("acct-a");

    let response = refresh(&sim, &first.refresh).await;
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.expect("json");
    let new_refresh = rotated["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let new_access = rotated["access_token"]
        .as_str()
        .expect("access")
        .to_string();
    assert_ne!(new_refresh, first.refresh);
    assert_ne!(new_access, first.access);
    assert!(rotated["id_token"].is_string());
    assert_eq!(sim.tokens("acct-a").expect("acct-a").refresh, new_refresh);
    assert_eq!(
        post_responses_with(&sim, "acct-a", &new_access)
            .await
            .status(),
        200
    );

    // Using the first refresh token again: refresh_token_reused, where codex-rs looks.
    let reused = refresh(&sim, &first.refresh).await;
    assert_eq!(reused.status(), 401);
    let body: Value = reused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "refresh_token_reused");

    let unknown = refresh(&sim, "rt_never_issued").await;
    assert_eq!(unknown.status(), 401);
    let body: Value = unknown.json().await.expect("json");
    assert_eq!(body["error"]["code"], "refresh_token_invalidated");

    // JSON bodies (the Codex CLI's encoding) work too.
    let response = client()
        .post(format!("{}/oauth/token", sim.issuer()))
        .json(&json!({"grant_type": "refresh_token", "client_id": CLIENT_ID, "refresh_token": new_refresh}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);

    let stats = sim.stats();
    assert_eq!(stats.account("acct-a").token_refresh, 3);
    assert_eq!(stats.account("acct-a").token_failures, 1);
    assert_eq!(stats.global.token_unknown, 1);
}

#[tokio::test]
async fn token_behaviors_fail_calls_without_rotating() {
    let account = AccountScript::new("acct-a").with_token_behaviors(vec![
        TokenBehavior::ServerError { status: 502 },
        TokenBehavior::Malformed,
        TokenBehavior::InvalidGrant,
        TokenBehavior::Expired,
        TokenBehavior::DelayMs { ms: 200 },
    ]);
    let sim = Simulator::start(Script::default().with_account(account))
        .await
        .expect("sim starts");
    let refresh_token = sim.tokens("acct-a").expect("acct-a").refresh;

    assert_eq!(refresh(&sim, &refresh_token).await.status(), 502);
    let malformed = refresh(&sim, &refresh_token).await;
    assert_eq!(malformed.status(), 200);
    assert!(malformed.json::<Value>().await.is_err());
    assert_eq!(refresh(&sim, &refresh_token).await.status(), 400);
    let expired = refresh(&sim, &refresh_token).await;
    assert_eq!(expired.status(), 401);
    assert_eq!(
        expired.json::<Value>().await.expect("json")["error"]["code"],
        "refresh_token_expired"
    );

    // None of that burnt the token; the delayed call succeeds.
    let started = std::time::Instant::now();
    assert_eq!(refresh(&sim, &refresh_token).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(180));
    assert_eq!(sim.stats().account("acct-a").token_failures, 4);

    sim.push_token_behavior("acct-a", TokenBehavior::Hang)
        .expect("known account");
    let current = sim.tokens("acct-a").expect("acct-a").refresh;
    let hung = client()
        .post(format!("{}/oauth/token", sim.issuer()))
        .json(&json!({"grant_type": "refresh_token", "client_id": CLIENT_ID, "refresh_token": current}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(hung.is_err(), "a hanging token call never answers");
}

#[tokio::test]
async fn permanent_refresh_failures_come_with_every_code_status_and_placement() {
    let account = AccountScript::new("acct-a").with_token_behaviors(vec![
        TokenBehavior::Exhausted,
        TokenBehavior::TokenExpired,
        TokenBehavior::refuse(400, "refresh_token_reused", CodePlacement::ErrorObject),
        TokenBehavior::refuse(401, "refresh_token_expired", CodePlacement::ErrorString),
        TokenBehavior::refuse(401, "refresh_token_invalidated", CodePlacement::TopLevel),
        TokenBehavior::Refuse {
            status: 400,
            code: "refresh_token_reused".into(),
            message: Some("Already used".into()),
            code_at: CodePlacement::All,
        },
    ]);
    let sim = Simulator::start(Script::default().with_account(account))
        .await
        .expect("sim starts");
    let refresh_token = sim.tokens("acct-a").expect("acct-a").refresh;
    let mut answers = Vec::new();
    for _ in 0..6 {
        let response = refresh(&sim, &refresh_token).await;
        let status = response.status().as_u16();
        answers.push((status, response.json::<Value>().await.expect("json")));
    }

    for (i, code) in ["refresh_token_exhausted", "token_expired"]
        .iter()
        .enumerate()
    {
        let (status, body) = &answers[i];
        assert_eq!(*status, 401);
        assert_eq!(body["error"]["code"], *code);
        assert_eq!(body["code"], *code);
    }
    let (status, body) = &answers[2];
    assert_eq!(*status, 400);
    assert_eq!(body["error"]["code"], "refresh_token_reused");
    assert!(body.get("code").is_none() && body.get("error_description").is_none());

    let (status, body) = &answers[3];
    assert_eq!(*status, 401);
    assert_eq!(body["error"], "refresh_token_expired");
    assert!(body["error_description"].is_string());
    assert!(body.get("code").is_none());

    let (status, body) = &answers[4];
    assert_eq!(*status, 401);
    assert_eq!(body["code"], "refresh_token_invalidated");
    assert!(body.get("error").is_none());

    let (status, body) = &answers[5];
    assert_eq!(*status, 400);
    assert_eq!(
        *body,
        json!({"error": {"code": "refresh_token_reused", "message": "Already used", "type": "invalid_request_error"},
               "error_description": "Already used", "code": "refresh_token_reused"})
    );

    // Scripted failures rotate nothing: the token still works.
    assert_eq!(refresh(&sim, &refresh_token).await.status(), 200);
    assert_eq!(sim.stats().account("acct-a").token_failures, 6);
}

async fn device_start(sim: &Simulator) -> Value {
    let response = client()
        .post(format!("{}/api/accounts/deviceauth/usercode", sim.issuer()))
        .json(&json!({"client_id": CLIENT_ID}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

async fn device_poll(sim: &Simulator, start: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/api/accounts/deviceauth/token", sim.issuer()))
        .json(&json!({"device_auth_id": start["device_auth_id"], "user_code": start["user_code"]}))
        .send()
        .await
        .expect("sent")
}

#[tokio::test]
async fn device_login_is_pending_until_approved_then_exchanges() {
    let sim = Simulator::start(Script::default_accounts(2))
        .await
        .expect("sim starts");
    let start = device_start(&sim).await;
    assert_eq!(
        start["interval"], "1",
        "interval is a string, as codex-rs expects"
    );
    let user_code = start["user_code"].as_str().expect("user code");

    let pending = device_poll(&sim, &start).await;
    assert_eq!(pending.status(), 403);
    let body: Value = pending.json().await.expect("json");
    assert_eq!(body["error"]["code"], "deviceauth_authorization_pending");

    // Approve over the admin API, as a Node test would.
    let approved = client()
        .post(format!("{}/__sim/device/approve", sim.base_url()))
        .json(&json!({"userCode": user_code, "accountId": "acct-b"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(approved.status(), 200);

    let success = device_poll(&sim, &start).await;
    assert_eq!(success.status(), 200);
    let grant: Value = success.json().await.expect("json");
    let verifier = grant["code_verifier"].as_str().expect("verifier");
    assert_eq!(grant["code_challenge"], pkce_challenge(verifier));

    let redirect = format!("{}/deviceauth/callback", sim.issuer());
    let response = token_form(
        &sim,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("code", grant["authorization_code"].as_str().expect("code")),
            ("code_verifier", verifier),
            ("redirect_uri", &redirect),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.expect("json");
    let claims =
        decode_jwt_payload(tokens["access_token"].as_str().unwrap_or_default()).expect("jwt");
    assert_eq!(
        claims["https://api.openai.com/auth"]["chatgpt_account_id"],
        "acct-b"
    );
    assert_eq!(sim.stats().global.device_poll, 2);
}

#[tokio::test]
async fn device_login_can_auto_approve_or_be_denied() {
    let mut script = Script::default_accounts(1);
    script.device.auto_approve_after_polls = Some(2);
    let sim = Simulator::start(script).await.expect("sim starts");

    let start = device_start(&sim).await;
    assert_eq!(device_poll(&sim, &start).await.status(), 403);
    assert_eq!(device_poll(&sim, &start).await.status(), 200);

    let start = device_start(&sim).await;
    sim.deny_device(start["user_code"].as_str())
        .expect("pending login");
    assert_eq!(device_poll(&sim, &start).await.status(), 400);
}
