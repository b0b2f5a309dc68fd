//! The order of a `/codex/responses` answer when sim-a's checks meet sim-b's limits:
//! auth, deactivation, ciphertext, then a queued behavior, else the limits, else the
//! default.

mod common;

use common::{assert_header, header_text, post_responses_body, request_body};
use dispatch_sim::{AccountScript, Behavior, Credits, FamilyScript, Script, Simulator, Usage};
use serde_json::{Value, json};

const SPARK: &str = "gpt-5.3-codex-spark";

/// acct-a: main windows spent, Spark's at 30%, one credit; acct-b only mints ciphertext.
async fn start() -> Simulator {
    let spent = AccountScript::new("acct-a")
        .with_usage(Usage::percent(100.0, 40.0))
        .with_family(
            FamilyScript::new("codex_bengalfox", "GPT-5.3-Codex-Spark", &[SPARK])
                .with_usage(Usage::percent(30.0, 50.0)),
        )
        .with_credits(Credits::balance(1.0));
    let script = Script::default()
        .with_account(spent)
        .with_account(AccountScript::new("acct-b"));
    Simulator::start(script).await.expect("sim starts")
}

/// A request for `model` replaying a reasoning item that acct-b minted.
fn foreign_replay(sim: &Simulator, model: &str) -> Value {
    let minted = sim
        .mint_encrypted_content("acct-b", "rs_from_b")
        .expect("acct-b is scripted");
    let mut body = request_body();
    body["model"] = model.into();
    body["input"].as_array_mut().expect("input").push(json!({
        "type": "reasoning", "id": "rs_from_b", "summary": [], "encrypted_content": minted
    }));
    body
}

fn balance(sim: &Simulator) -> f64 {
    sim.credits("acct-a").expect("acct-a has credits").balance
}

#[tokio::test]
async fn the_checks_come_before_the_queue_and_the_limits() {
    let sim = start().await;
    sim.push_behavior("acct-a", Behavior::ok("scripted"))
        .expect("known account");

    // Foreign ciphertext is refused before the queue: no behavior is taken.
    let spark = post_responses_body(&sim, "acct-a", &foreign_replay(&sim, SPARK)).await;
    assert_eq!(spark.status(), 400);
    assert_header(&spark, "x-codex-active-limit", "codex_bengalfox");
    let body: Value = spark.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_encrypted_content");

    // The queued behavior was kept for the first request that passes the checks, and
    // answers as scripted although the main windows are spent.
    let queued = post_responses_body(&sim, "acct-a", &request_body()).await;
    assert_eq!(queued.status(), 200);
    assert!(queued.text().await.expect("body").contains("scripted"));
    assert_eq!(balance(&sim), 1.0);

    // With the queue empty, the checks still come before the limits: no credit is
    // spent, and the refusal carries the same per-family headers as any other reply.
    let main = post_responses_body(&sim, "acct-a", &foreign_replay(&sim, "gpt-5.1-codex")).await;
    assert_eq!(main.status(), 400);
    assert_header(&main, "x-codex-active-limit", "codex");
    assert_header(&main, "x-codex-primary-used-percent", "100");
    assert_header(&main, "x-codex-bengalfox-primary-used-percent", "30");
    assert_header(&main, "x-codex-bengalfox-limit-name", "GPT-5.3-Codex-Spark");
    assert_header(&main, "x-codex-credits-balance", "1");
    assert_header(&main, "x-codex-plan-type", "plus");

    // A deactivated account gets its 401 without rate-limit headers, limits or not.
    sim.deactivate("acct-a", "account_deactivated")
        .expect("known account");
    let deactivated = post_responses_body(&sim, "acct-a", &request_body()).await;
    assert_eq!(deactivated.status(), 401);
    assert_eq!(header_text(&deactivated, "x-codex-active-limit"), None);
    sim.reactivate("acct-a").expect("known account");
    assert_eq!(balance(&sim), 1.0);

    // Then the limits: the credit pays once, and the next request is refused.
    let paid = post_responses_body(&sim, "acct-a", &request_body()).await;
    assert_eq!(paid.status(), 200);
    assert_eq!(balance(&sim), 0.0);
    let refused = post_responses_body(&sim, "acct-a", &request_body()).await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["type"], "usage_limit_reached");

    let counts = sim.stats().account("acct-a");
    assert_eq!(counts.encrypted_content_refused, 2);
    assert_eq!(counts.deactivated_refused, 1);
    assert_eq!(counts.credit_served, 1);
    assert_eq!(counts.limit_refused, 1);
    assert_eq!(counts.served, 3);
    assert_eq!(counts.responses, 6);
}
