//! The admin API over HTTP and the `dispatch-sim` binary, as Node tests use them.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{client, parse_sse};
use dispatch_sim::{Script, Simulator};
use serde_json::{Value, json};

async fn admin_post(base: &str, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{base}/__sim/{path}"))
        .json(&body)
        .send()
        .await
        .expect("admin answers")
}

async fn admin_get(base: &str, path: &str) -> Value {
    client()
        .get(format!("{base}/__sim/{path}"))
        .send()
        .await
        .expect("admin answers")
        .json()
        .await
        .expect("json")
}

async fn model_call(base: &str, account_id: &str, access: &str) -> reqwest::Response {
    model_call_with(
        base,
        account_id,
        access,
        r#"{"model":"m","input":[]}"#.to_string(),
    )
    .await
}

async fn model_call_with(
    base: &str,
    account_id: &str,
    access: &str,
    body: String,
) -> reqwest::Response {
    client()
        .post(format!("{base}/backend-api/codex/responses"))
        .header("authorization", format!("Bearer {access}"))
        .header("chatgpt-account-id", account_id)
        .body(body)
        .send()
        .await
        .expect("sent")
}

#[tokio::test]
async fn admin_api_scripts_behaviors_usage_and_reports_stats() {
    let sim = Simulator::start(Script::default_accounts(2))
        .await
        .expect("sim starts");
    let base = sim.base_url();
    let tokens = admin_get(&base, "tokens/acct-a").await;
    let access = tokens["access"].as_str().expect("access").to_string();
    assert_eq!(tokens["accountId"], "acct-a");
    assert!(tokens["expiresAtMs"].as_u64().is_some());

    // Replace the queue (bare array), then set the default (object form), then push.
    let ok = admin_post(
        &base,
        "behaviors/acct-a",
        json!([{"kind": "usageLimit", "resetsInSeconds": 60}]),
    )
    .await;
    assert_eq!(ok.status(), 200);
    admin_post(
        &base,
        "behaviors/acct-a",
        json!({"default": {"kind": "ok", "text": "new default"}}),
    )
    .await;
    admin_post(
        &base,
        "behaviors/acct-a/push",
        json!({"kind": "serverError", "status": 502}),
    )
    .await;
    admin_post(
        &base,
        "usage/acct-a",
        json!({"primary": {"usedPercent": 77, "windowMinutes": 300, "resetAfterSeconds": 100}, "secondary": null}),
    )
    .await;

    let first = model_call(&base, "acct-a", &access).await;
    assert_eq!(first.status(), 429);
    assert_eq!(first.headers()["x-codex-primary-used-percent"], "77");
    assert!(
        first
            .headers()
            .get("x-codex-secondary-window-minutes")
            .is_none()
    );
    assert_eq!(model_call(&base, "acct-a", &access).await.status(), 502);
    let third = model_call(&base, "acct-a", &access).await;
    let events = parse_sse(&third.text().await.expect("body"));
    assert!(
        events
            .iter()
            .any(|(_, d)| d["item"]["content"][0]["text"] == "new default")
    );

    let stats = admin_get(&base, "stats").await;
    assert_eq!(stats["accounts"]["acct-a"]["served"], 3);
    assert_eq!(stats["accounts"]["acct-a"]["behaviors"]["usageLimit"], 1);
    assert_eq!(stats["accounts"]["acct-b"]["responses"], 0);
    let logged = &stats["requests"][0];
    assert_eq!(logged["rawBodyBase64"], "eyJtb2RlbCI6Im0iLCJpbnB1dCI6W119");
    assert_eq!(logged["bodyJson"]["model"], "m");
    assert_eq!(logged["behavior"]["kind"], "usageLimit");
    assert_eq!(logged["status"], 429);
    assert_eq!(logged["outcome"], "finished");

    admin_post(&base, "reset-stats", json!({})).await;
    let stats = admin_get(&base, "stats").await;
    assert_eq!(stats["requests"], json!([]));
    assert_eq!(stats["accounts"]["acct-a"]["served"], 0);

    // Revoke makes the backend refuse the token.
    admin_post(&base, "revoke/acct-a", json!({})).await;
    assert_eq!(model_call(&base, "acct-a", &access).await.status(), 401);

    // Unknown accounts and bad bodies are reported, not ignored.
    assert_eq!(
        admin_post(&base, "behaviors/nope", json!([]))
            .await
            .status(),
        404
    );
    assert_eq!(
        admin_post(&base, "behaviors/acct-a", json!([{"kind": "bogus"}]))
            .await
            .status(),
        400
    );
    assert_eq!(
        admin_post(&base, "login", json!({"accountId": "nope"}))
            .await
            .status(),
        404
    );
    assert_eq!(
        admin_post(&base, "device/approve", json!({}))
            .await
            .status(),
        404
    );
    assert_eq!(
        admin_post(&base, "login", json!({"accountId": "acct-b"}))
            .await
            .status(),
        200
    );
    assert_eq!(
        admin_post(
            &base,
            "token-behaviors/acct-b",
            json!([{"kind": "delayMs", "ms": 10}])
        )
        .await
        .status(),
        200
    );
}

#[tokio::test]
async fn admin_api_changes_credits_families_and_banked_resets() {
    let sim = Simulator::start(Script::default_accounts(1))
        .await
        .expect("sim starts");
    let base = sim.base_url();
    let access = sim.tokens("acct-a").expect("acct-a").access;
    let usage = || async {
        client()
            .get(format!("{base}/backend-api/wham/usage"))
            .header("authorization", format!("Bearer {access}"))
            .header("chatgpt-account-id", "acct-a")
            .send()
            .await
            .expect("sent")
            .json::<Value>()
            .await
            .expect("json")
    };

    let changed = admin_post(
        &base,
        "limits/acct-a",
        json!({
            "families": [{"id": "codex_bengalfox", "limitName": "GPT-5.3-Codex-Spark", "models": ["m"]}],
            "credits": {"hasCredits": true, "balance": 4},
            "bankedResets": 3,
            "rateLimitReachedType": "workspace_owner_credits_depleted",
            "promoMessage": "hello"
        }),
    )
    .await;
    assert_eq!(changed.status(), 200);
    let family_usage = json!({"primary": {"usedPercent": 100, "windowMinutes": 300, "resetAfterSeconds": 60}, "secondary": null});
    let set = admin_post(&base, "usage/acct-a/codex_bengalfox", family_usage.clone()).await;
    assert_eq!(set.status(), 200);

    let payload = usage().await;
    assert_eq!(payload["credits"]["balance"], "4");
    assert_eq!(
        payload["additional_rate_limits"][0]["metered_feature"],
        "codex_bengalfox"
    );
    assert_eq!(
        payload["additional_rate_limits"][0]["rate_limit"]["primary_window"]["used_percent"],
        json!(100)
    );
    assert_eq!(
        payload["rate_limit_reached_type"]["type"],
        "workspace_owner_credits_depleted"
    );
    assert_eq!(payload["rate_limit_reset_credits"]["available_count"], 3);

    // The model "m" counts against the spent family; the credits pay for it.
    let reply = model_call(&base, "acct-a", &access).await;
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["x-codex-active-limit"], "codex_bengalfox");
    assert_eq!(reply.headers()["x-codex-promo-message"], "hello");
    let stats = admin_get(&base, "stats").await;
    assert_eq!(stats["accounts"]["acct-a"]["creditServed"], 1);
    assert_eq!(stats["accounts"]["acct-a"]["limitRefused"], 0);
    assert_eq!(stats["usageRequests"][0]["path"], "/backend-api/wham/usage");
    assert_eq!(stats["usageRequests"][0]["status"], 200);
    assert_eq!(stats["usageRequests"][0]["cdnChallenged"], false);

    // null clears a text; the other parts stay.
    admin_post(
        &base,
        "limits/acct-a",
        json!({"rateLimitReachedType": null, "credits": {}}),
    )
    .await;
    let payload = usage().await;
    assert_eq!(payload["rate_limit_reached_type"], Value::Null);
    assert_eq!(payload["credits"]["has_credits"], false);
    assert_eq!(payload["rate_limit_reset_credits"]["available_count"], 3);
    assert_eq!(model_call(&base, "acct-a", &access).await.status(), 429);
    let stats = admin_get(&base, "stats").await;
    assert_eq!(stats["accounts"]["acct-a"]["limitRefused"], 1);

    let status = |path: &'static str, body: Value| {
        let base = base.clone();
        async move { admin_post(&base, path, body).await.status() }
    };
    assert_eq!(status("limits/nope", json!({})).await, 404);
    assert_eq!(
        status("limits/acct-a", json!({"families": [{"id": "codex"}]})).await,
        400
    );
    assert_eq!(status("limits/acct-a", json!({"credits": 5})).await, 400);
    assert_eq!(
        status("usage/acct-a/codex_nope", family_usage.clone()).await,
        400
    );
    assert_eq!(
        status("usage/nope/codex_bengalfox", family_usage).await,
        404
    );
}

#[tokio::test]
async fn admin_api_deactivates_accounts_switches_the_check_and_mints_ciphertext() {
    let sim = Simulator::start(Script::default_accounts(1))
        .await
        .expect("sim starts");
    let base = sim.base_url();
    let access = admin_get(&base, "tokens/acct-a").await["access"]
        .as_str()
        .expect("access")
        .to_string();

    assert_eq!(
        admin_post(&base, "deactivate/acct-a", json!({}))
            .await
            .status(),
        200
    );
    let refused = model_call(&base, "acct-a", &access).await;
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "account_deactivated");
    admin_post(&base, "deactivate/acct-a", json!({"code": "token_revoked"})).await;
    let body: Value = model_call(&base, "acct-a", &access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["error"]["code"], "token_revoked");
    assert_eq!(
        admin_post(&base, "reactivate/acct-a", json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(model_call(&base, "acct-a", &access).await.status(), 200);

    let minted = admin_post(&base, "mint/acct-a", json!({"itemId": "cmp_admin"}))
        .await
        .json::<Value>()
        .await
        .expect("json");
    let content = minted["encryptedContent"].as_str().expect("minted");
    let replay = |content: &str| json!({"model": "m", "input": [{"type": "compaction", "id": "cmp_admin", "encrypted_content": content}]});
    assert_eq!(
        model_call_with(&base, "acct-a", &access, replay(content).to_string())
            .await
            .status(),
        200
    );
    let forged = replay("c2ltMS5jbXBfYWRtaW4uMDA=");
    assert_eq!(
        model_call_with(&base, "acct-a", &access, forged.to_string())
            .await
            .status(),
        400
    );
    admin_post(&base, "encrypted-content/acct-a", json!({"verify": false})).await;
    assert_eq!(
        model_call_with(&base, "acct-a", &access, forged.to_string())
            .await
            .status(),
        200
    );
    admin_post(
        &base,
        "encrypted-content/acct-a",
        json!({"verify": true, "nullCode": true}),
    )
    .await;
    let refused = model_call_with(&base, "acct-a", &access, forged.to_string()).await;
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], Value::Null);

    let stats = admin_get(&base, "stats").await;
    assert_eq!(stats["accounts"]["acct-a"]["deactivatedRefused"], 2);
    assert_eq!(stats["accounts"]["acct-a"]["encryptedContentRefused"], 2);
    let requests = stats["requests"].as_array().expect("log");
    assert_eq!(requests[0]["refusal"], "accountDeactivated");
    assert_eq!(requests[4]["refusal"], "invalidEncryptedContent");
    assert_eq!(requests[5]["refusal"], Value::Null);
    assert_eq!(requests[6]["refusal"], "invalidEncryptedContent");
    assert_eq!(requests[2]["refusal"], Value::Null);
    assert_eq!(requests[2]["responseEncoding"], Value::Null);

    for path in ["deactivate/nope", "reactivate/nope", "mint/nope"] {
        let status = admin_post(&base, path, json!({"itemId": "x"}))
            .await
            .status();
        assert_eq!(status, 404, "{path}");
    }
}

#[test]
fn json_scripts_name_every_failure_kind() {
    let script = json!({"accounts": [{
        "accountId": "acct-a",
        "deactivated": "missing_scope",
        "encryptedContent": {"verify": true, "nullCode": true},
        "behaviors": [
            {"kind": "ok", "opening": ["response.created", "response.queued", "response.metadata"], "reasoningSummary": "why"},
            {"kind": "streamError", "code": "usage_limit_reached", "style": "nested", "resetsInSeconds": 60,
             "errorType": "usage_limit_reached", "extra": {"plan_type": "plus"}, "opening": ["response.created"]},
            {"kind": "rateLimited", "retryAfterSeconds": 3, "retryAfterFormat": "httpDate"},
            {"kind": "invalidRequest", "message": "Unsupported parameter: foo", "param": "foo"},
            {"kind": "invalidRequest", "code": "cyber_policy"},
            {"kind": "detail"},
            {"kind": "detail", "status": 402, "detail": {"code": "deactivated_workspace"}},
            {"kind": "deactivatedWorkspace"},
            {"kind": "cloudflareChallenge"},
            {"kind": "forbidden", "authorizationError": "missing_authorization_header"},
            {"kind": "overloaded", "code": "slow_down", "retryAfterSeconds": 2, "retryAfterFormat": "millis"},
            {"kind": "hangAfterCreated", "opening": ["response.created"]},
            {"kind": "httpError", "status": 429},
            {"kind": "httpError", "status": 400, "body": {"detail": "x"}, "headers": {"x-a": "b"}}
        ],
        "tokenBehaviors": [
            {"kind": "exhausted"}, {"kind": "tokenExpired"},
            {"kind": "refuse", "status": 400, "code": "refresh_token_reused", "codeAt": "errorString"}
        ]
    }]});
    let script = Script::from_json(&script.to_string()).expect("parses");
    let account = &script.accounts[0];
    assert_eq!(account.deactivated.as_deref(), Some("missing_scope"));
    assert!(account.encrypted_content.null_code);
    let kinds: Vec<&str> = account.behaviors.iter().map(|b| b.kind()).collect();
    assert_eq!(
        kinds,
        [
            "ok",
            "streamError",
            "rateLimited",
            "invalidRequest",
            "invalidRequest",
            "detail",
            "detail",
            "deactivatedWorkspace",
            "cloudflareChallenge",
            "forbidden",
            "overloaded",
            "hangAfterCreated",
            "httpError",
            "httpError"
        ]
    );
    assert_eq!(account.token_behaviors.len(), 3);

    // Scripts written before these keys existed keep their meaning.
    let old = Script::from_json(
        r#"{"accounts":[{"accountId":"x","behaviors":[{"kind":"ok"},{"kind":"rateLimited"}]}]}"#,
    )
    .expect("parses");
    assert!(old.accounts[0].encrypted_content.verify);
    assert_eq!(old.accounts[0].deactivated, None);
    assert_eq!(
        old.accounts[0].behaviors[1],
        dispatch_sim::Behavior::rate_limited(5)
    );
}

/// Kills the child if a test assertion fails before it exits.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_prints_its_urls_and_tokens_then_serves() {
    let script = json!({
        "accounts": [
            {"accountId": "acct-x", "default": {"kind": "ok", "text": "from the binary"}},
            {"accountId": "acct-y", "usage": {"primary": {"usedPercent": 5, "windowMinutes": 10080}, "secondary": null}}
        ],
        "latencyMs": 0
    });
    let path = std::env::temp_dir().join(format!("dispatch-sim-test-{}.json", std::process::id()));
    std::fs::write(&path, script.to_string()).expect("script written");

    let child = Command::new(env!("CARGO_BIN_EXE_dispatch-sim"))
        .arg("--script")
        .arg(&path)
        .arg("--exit-on-stdin-close")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().expect("stdout piped");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("reader joins")
    .expect("one line");
    let _ = std::fs::remove_file(&path);

    let ready: Value = serde_json::from_str(&line).expect("the line is JSON");
    let base = ready["baseUrl"].as_str().expect("baseUrl").to_string();
    assert!(base.starts_with("http://127.0.0.1:"));
    assert_eq!(ready["backendBase"], format!("{base}/backend-api"));
    assert_eq!(ready["issuer"], base);
    let access = ready["accounts"]["acct-x"]["access"]
        .as_str()
        .expect("token")
        .to_string();
    assert!(ready["accounts"]["acct-y"]["refresh"].is_string());

    let response = model_call(&base, "acct-x", &access).await;
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("from the binary")
    );

    // Closing stdin ends the process.
    if let Some(mut stdin) = child.0.stdin.take() {
        let _ = stdin.flush();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait works") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "exits cleanly once stdin closes"
    );
}

#[test]
fn binary_rejects_a_missing_script() {
    let output = Command::new(env!("CARGO_BIN_EXE_dispatch-sim"))
        .arg("--script")
        .arg("/nonexistent/script.json")
        .output()
        .expect("binary runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot load"));
}
