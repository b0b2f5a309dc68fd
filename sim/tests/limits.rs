//! Limit families, enforced limits, credits, every plan's windows, and what the model
//! replies' headers and the usage payload report about them.

mod common;

use common::{assert_header, get_backend, header_text, post_model, post_responses};
use dispatch_sim::{
    AccountScript, Behavior, Credits, FamilyScript, LimitsError, LimitsUpdate, Script, Simulator,
    Usage, Window,
};
use serde_json::{Value, json};

const SPARK: &str = "gpt-5.3-codex-spark";
const MAIN_MODEL: &str = "gpt-5.1-codex";

fn spark(usage: Usage) -> FamilyScript {
    FamilyScript::new("codex_bengalfox", "GPT-5.3-Codex-Spark", &[SPARK]).with_usage(usage)
}

fn window(used_percent: f64, window_minutes: u64, reset_after_seconds: u64) -> Window {
    Window {
        used_percent,
        window_minutes,
        reset_after_seconds,
    }
}

async fn start(account: AccountScript) -> Simulator {
    Simulator::start(Script::default().with_account(account))
        .await
        .expect("sim starts")
}

fn number(response: &reqwest::Response, name: &str) -> u64 {
    header_text(response, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} is a number"))
}

async fn usage_payload(sim: &Simulator, account_id: &str) -> Value {
    let response = get_backend(sim, account_id, "/wham/usage").await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json payload")
}

#[tokio::test]
async fn every_reply_reports_each_family_and_the_family_it_counted_against() {
    let account = AccountScript::new("acct-a")
        .with_usage(Usage::percent(10.0, 20.0))
        .with_family(spark(Usage::percent(30.0, 60.0)));
    let sim = start(account).await;

    let main = post_model(&sim, "acct-a", MAIN_MODEL).await;
    assert_eq!(main.status(), 200);
    assert_header(&main, "x-codex-active-limit", "codex");
    assert_header(&main, "x-codex-primary-used-percent", "10");
    assert_header(&main, "x-codex-secondary-used-percent", "20");
    assert_header(&main, "x-codex-bengalfox-primary-used-percent", "30");
    assert_header(&main, "x-codex-bengalfox-primary-window-minutes", "300");
    assert_header(&main, "x-codex-bengalfox-secondary-used-percent", "60");
    assert_header(&main, "x-codex-bengalfox-secondary-window-minutes", "10080");
    assert_header(&main, "x-codex-bengalfox-limit-name", "GPT-5.3-Codex-Spark");
    let reset_after = number(&main, "x-codex-bengalfox-primary-reset-after-seconds");
    assert!((17_990..=18_000).contains(&reset_after), "{reset_after}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let reset_at = number(&main, "x-codex-bengalfox-secondary-reset-at");
    assert!(reset_at.abs_diff(now + 604_800) <= 2, "{reset_at}");
    assert_header(&main, "x-codex-credits-has-credits", "false");
    assert_header(&main, "x-codex-credits-unlimited", "false");
    assert_header(&main, "x-codex-credits-balance", "0");
    assert_header(&main, "x-codex-plan-type", "plus");

    // The family comes from the model in the (zstd) body; the plain headers stay the
    // main family's.
    let family = post_model(&sim, "acct-a", SPARK).await;
    assert_eq!(family.status(), 200);
    assert_header(&family, "x-codex-active-limit", "codex_bengalfox");
    assert_header(&family, "x-codex-primary-used-percent", "10");
    assert_header(&family, "x-codex-bengalfox-primary-used-percent", "30");
}

#[tokio::test]
async fn the_plain_headers_can_carry_the_active_familys_numbers() {
    let account = AccountScript::new("acct-a")
        .with_usage(Usage::percent(10.0, 20.0))
        .with_family(spark(Usage::weekly_only(70.0)))
        .with_family_in_plain_headers(true);
    let sim = start(account).await;

    let family = post_model(&sim, "acct-a", SPARK).await;
    assert_header(&family, "x-codex-primary-used-percent", "70");
    assert_header(&family, "x-codex-primary-window-minutes", "10080");
    assert_eq!(
        header_text(&family, "x-codex-secondary-used-percent"),
        None,
        "the family has no secondary window"
    );
    assert_header(&family, "x-codex-active-limit", "codex_bengalfox");

    // A main-model request still reports the main windows.
    let main = post_model(&sim, "acct-a", MAIN_MODEL).await;
    assert_header(&main, "x-codex-primary-used-percent", "10");
}

#[tokio::test]
async fn a_spent_window_refuses_with_the_real_429_and_its_reset() {
    let account = AccountScript::new("acct-a").with_usage(Usage {
        primary: Some(window(100.0, 300, 5000)),
        secondary: Some(window(40.0, 10080, 90_000)),
    });
    let sim = start(account).await;

    let refused = post_responses(&sim, "acct-a").await;
    assert_eq!(refused.status(), 429);
    assert_header(&refused, "x-codex-active-limit", "codex");
    let reset_at = number(&refused, "x-codex-primary-reset-at");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["type"], "usage_limit_reached");
    assert_eq!(body["error"]["plan_type"], "plus");
    assert_eq!(body["error"]["resets_at"], reset_at);
    let resets_in = body["error"]["resets_in_seconds"].as_u64().expect("number");
    assert!((4990..=5000).contains(&resets_in), "{resets_in}");

    // A queued behavior is answered as scripted, spent window or not.
    sim.push_behavior("acct-a", Behavior::ok("scripted"))
        .expect("known account");
    assert_eq!(post_responses(&sim, "acct-a").await.status(), 200);

    let counts = sim.stats().account("acct-a");
    assert_eq!(counts.limit_refused, 1);
    assert_eq!(counts.behaviors.get("usageLimit"), Some(&1));
    assert_eq!(counts.served, 2);

    // Enforcement can be switched off.
    sim.update_limits(
        "acct-a",
        LimitsUpdate {
            enforce_limits: Some(false),
            ..LimitsUpdate::default()
        },
    )
    .expect("known account");
    assert_eq!(post_responses(&sim, "acct-a").await.status(), 200);
}

#[tokio::test]
async fn the_refusals_reset_is_the_windows_even_after_a_long_latency() {
    // The answer leaves more than a second after the decision: `resets_at` must still be
    // the window's own reset, not a countdown restarted at sending.
    let account = AccountScript::new("acct-a").with_usage(Usage::weekly_only(100.0));
    let script = Script::default()
        .with_account(account)
        .with_latency_ms(1100);
    let sim = Simulator::start(script).await.expect("sim starts");
    let refused = post_responses(&sim, "acct-a").await;
    assert_eq!(refused.status(), 429);
    let reset_at = number(&refused, "x-codex-primary-reset-at");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["resets_at"], reset_at);
}

#[tokio::test]
async fn two_spent_windows_refuse_until_the_later_reset() {
    let account = AccountScript::new("acct-a").with_usage(Usage {
        primary: Some(window(100.0, 300, 5000)),
        secondary: Some(window(100.0, 10080, 90_000)),
    });
    let sim = start(account).await;
    let refused = post_responses(&sim, "acct-a").await;
    assert_eq!(refused.status(), 429);
    let weekly_reset = number(&refused, "x-codex-secondary-reset-at");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["resets_at"], weekly_reset);
}

#[tokio::test]
async fn a_spent_window_whose_reset_has_passed_no_longer_refuses() {
    let account = AccountScript::new("acct-a").with_usage(Usage {
        primary: Some(window(100.0, 300, 0)),
        secondary: None,
    });
    let sim = start(account).await;
    assert_eq!(post_responses(&sim, "acct-a").await.status(), 200);
}

#[tokio::test]
async fn a_spent_family_stops_only_its_own_models() {
    let account = AccountScript::new("acct-a").with_family(spark(Usage {
        primary: Some(window(35.0, 300, 3000)),
        secondary: Some(window(100.0, 10080, 7000)),
    }));
    let sim = start(account).await;

    let refused = post_model(&sim, "acct-a", SPARK).await;
    assert_eq!(refused.status(), 429);
    assert_header(&refused, "x-codex-active-limit", "codex_bengalfox");
    let reset_at = number(&refused, "x-codex-bengalfox-secondary-reset-at");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["type"], "usage_limit_reached");
    assert_eq!(body["error"]["resets_at"], reset_at);

    let main = post_model(&sim, "acct-a", MAIN_MODEL).await;
    assert_eq!(main.status(), 200);

    // The family's windows can be changed on their own.
    sim.set_family_usage("acct-a", "codex_bengalfox", Usage::percent(5.0, 5.0))
        .expect("known family");
    assert_eq!(post_model(&sim, "acct-a", SPARK).await.status(), 200);
    assert_eq!(
        sim.set_family_usage("acct-a", "codex_nope", Usage::default()),
        Err(LimitsError::InvalidFamily(
            "no family \"codex_nope\"".to_string()
        ))
    );
}

#[tokio::test]
async fn credits_pay_for_requests_past_the_limit_until_they_run_out() {
    let account = AccountScript::new("acct-a")
        .with_usage(Usage::weekly_only(100.0))
        .with_credits(Credits {
            cost_per_request: 1.5,
            ..Credits::balance(2.5)
        });
    let sim = start(account).await;

    let payload = usage_payload(&sim, "acct-a").await;
    assert_eq!(
        payload["credits"],
        json!({"has_credits": true, "unlimited": false, "balance": "2.5"})
    );
    assert_eq!(payload["rate_limit"]["limit_reached"], true);
    assert_eq!(
        payload["rate_limit"]["allowed"], true,
        "credits keep it allowed"
    );

    let first = post_responses(&sim, "acct-a").await;
    assert_eq!(first.status(), 200);
    assert_header(&first, "x-codex-credits-balance", "1");
    assert_header(&first, "x-codex-credits-has-credits", "true");
    let second = post_responses(&sim, "acct-a").await;
    assert_eq!(second.status(), 200);
    assert_header(&second, "x-codex-credits-balance", "0");
    assert_header(&second, "x-codex-credits-has-credits", "false");
    assert_eq!(post_responses(&sim, "acct-a").await.status(), 429);

    let counts = sim.stats().account("acct-a");
    assert_eq!(counts.credit_served, 2);
    assert_eq!(counts.limit_refused, 1);
    let payload = usage_payload(&sim, "acct-a").await;
    assert_eq!(payload["credits"]["balance"], "0");
    assert_eq!(payload["rate_limit"]["allowed"], false);

    // Unlimited credits never run out and cost nothing.
    sim.set_credits("acct-a", Credits::unlimited())
        .expect("known account");
    for _ in 0..3 {
        let served = post_responses(&sim, "acct-a").await;
        assert_eq!(served.status(), 200);
        assert_header(&served, "x-codex-credits-unlimited", "true");
    }
    assert_eq!(sim.credits("acct-a"), Some(Credits::unlimited()));
    assert_eq!(sim.stats().account("acct-a").credit_served, 5);
}

#[tokio::test]
async fn credits_pay_for_a_spent_family_too() {
    let account = AccountScript::new("acct-a")
        .with_family(spark(Usage::weekly_only(100.0)))
        .with_credits(Credits::balance(1.0));
    let sim = start(account).await;
    assert_eq!(post_model(&sim, "acct-a", SPARK).await.status(), 200);
    assert_eq!(post_model(&sim, "acct-a", SPARK).await.status(), 429);
    assert_eq!(sim.credits("acct-a").map(|c| c.balance), Some(0.0));
}

#[tokio::test]
async fn has_credits_without_a_balance_pays_nothing() {
    let account = AccountScript::new("acct-a")
        .with_usage(Usage::weekly_only(100.0))
        .with_credits(Credits {
            has_credits: true,
            ..Credits::default()
        });
    let sim = start(account).await;
    assert_eq!(post_responses(&sim, "acct-a").await.status(), 429);
    let payload = usage_payload(&sim, "acct-a").await;
    assert_eq!(payload["rate_limit"]["allowed"], false);
}

#[tokio::test]
async fn the_usage_payload_lists_families_credits_and_why_a_limit_was_reached() {
    let account = AccountScript::new("acct-a")
        .with_usage(Usage::percent(42.0, 100.0))
        .with_family(spark(Usage::percent(12.5, 0.0)))
        .with_rate_limit_reached_type("workspace_member_credits_depleted")
        .with_banked_resets(2);
    let sim = start(account).await;
    let payload = usage_payload(&sim, "acct-a").await;

    let rate_limit = &payload["rate_limit"];
    assert_eq!(rate_limit["allowed"], false);
    assert_eq!(rate_limit["limit_reached"], true);
    assert_eq!(rate_limit["primary_window"]["used_percent"], json!(42));
    assert_eq!(
        rate_limit["secondary_window"]["limit_window_seconds"],
        604_800
    );
    let extra = payload["additional_rate_limits"]
        .as_array()
        .expect("a list");
    assert_eq!(extra.len(), 1);
    assert_eq!(extra[0]["limit_name"], "GPT-5.3-Codex-Spark");
    assert_eq!(extra[0]["metered_feature"], "codex_bengalfox");
    assert_eq!(extra[0]["rate_limit"]["allowed"], true);
    assert_eq!(extra[0]["rate_limit"]["limit_reached"], false);
    assert_eq!(
        extra[0]["rate_limit"]["primary_window"]["used_percent"],
        json!(12.5)
    );
    assert_eq!(
        extra[0]["rate_limit"]["primary_window"]["limit_window_seconds"],
        18_000
    );
    assert_eq!(
        payload["rate_limit_reached_type"],
        json!({"type": "workspace_member_credits_depleted"})
    );
    assert_eq!(
        payload["credits"],
        json!({"has_credits": false, "unlimited": false, "balance": "0"})
    );
    assert_eq!(payload["rate_limit_reset_credits"]["available_count"], 2);

    // Unscripted, the type follows the windows.
    sim.update_limits(
        "acct-a",
        LimitsUpdate {
            rate_limit_reached_type: Some(None),
            ..LimitsUpdate::default()
        },
    )
    .expect("known account");
    let payload = usage_payload(&sim, "acct-a").await;
    assert_eq!(
        payload["rate_limit_reached_type"],
        json!({"type": "rate_limit_reached"})
    );
    sim.set_usage("acct-a", Usage::percent(1.0, 1.0))
        .expect("known account");
    let payload = usage_payload(&sim, "acct-a").await;
    assert_eq!(payload["rate_limit_reached_type"], Value::Null);
    assert_eq!(payload["rate_limit"]["allowed"], true);
}

#[tokio::test]
async fn every_plan_reports_its_own_windows() {
    let script = Script::default()
        .with_account(
            AccountScript::new("free")
                .with_plan("free")
                .with_usage(Usage::free(30.0)),
        )
        .with_account(
            AccountScript::new("pro")
                .with_plan("pro")
                .with_usage(Usage::pro(55.0)),
        )
        .with_account(
            AccountScript::new("biz")
                .with_plan("self_serve_business_usage_based")
                .with_usage(Usage {
                    primary: Some(Window::monthly(8.0)),
                    secondary: None,
                }),
        );
    let sim = Simulator::start(script).await.expect("sim starts");

    let free = usage_payload(&sim, "free").await;
    assert_eq!(free["plan_type"], "free");
    let primary = &free["rate_limit"]["primary_window"];
    assert_eq!(primary["used_percent"], json!(30));
    assert_eq!(primary["limit_window_seconds"], 2_592_000);
    assert_eq!(
        free["rate_limit"]["secondary_window"],
        json!({"used_percent": 0, "limit_window_seconds": null, "reset_after_seconds": null, "reset_at": null}),
        "a free account's empty secondary is \"no data\""
    );
    let reply = post_responses(&sim, "free").await;
    assert_header(&reply, "x-codex-primary-window-minutes", "43200");
    assert_header(&reply, "x-codex-secondary-used-percent", "0");
    assert_header(&reply, "x-codex-secondary-window-minutes", "0");
    assert_header(&reply, "x-codex-secondary-reset-at", "");
    assert_header(&reply, "x-codex-secondary-reset-after-seconds", "");

    let pro = usage_payload(&sim, "pro").await;
    assert_eq!(pro["plan_type"], "pro");
    assert_eq!(
        pro["rate_limit"]["primary_window"]["limit_window_seconds"],
        604_800
    );
    assert_eq!(pro["rate_limit"]["secondary_window"], Value::Null);

    let biz = usage_payload(&sim, "biz").await;
    assert_eq!(biz["plan_type"], "self_serve_business_usage_based");
    assert_eq!(
        biz["rate_limit"]["primary_window"]["limit_window_seconds"],
        2_592_000
    );
    let reply = post_responses(&sim, "biz").await;
    assert_header(
        &reply,
        "x-codex-plan-type",
        "self_serve_business_usage_based",
    );
}

#[tokio::test]
async fn a_no_data_window_never_refuses() {
    // A "no data" window has no length and no reset: even at 100% it never refuses.
    let account = AccountScript::new("acct-a").with_usage(Usage {
        primary: Some(Window::monthly(20.0)),
        secondary: Some(Window {
            used_percent: 100.0,
            reset_after_seconds: 600,
            ..Window::no_data()
        }),
    });
    let sim = start(account).await;
    assert_eq!(post_responses(&sim, "acct-a").await.status(), 200);
    let payload = usage_payload(&sim, "acct-a").await;
    assert_eq!(payload["rate_limit"]["limit_reached"], false);
}

#[tokio::test]
async fn scripts_in_json_load_every_new_key() {
    let text = r#"{"accounts": [{
        "accountId": "acct-a",
        "plan": "prolite",
        "usage": {"primary": {"usedPercent": 5, "windowMinutes": 300, "resetAfterSeconds": 100},
                  "secondary": {}},
        "families": [{"id": "codex_bengalfox", "limitName": "GPT-5.3-Codex-Spark",
                      "models": ["GPT-5.3-Codex-Spark"],
                      "usage": {"primary": {"usedPercent": 100, "windowMinutes": 300, "resetAfterSeconds": 600}, "secondary": null}}],
        "credits": {"hasCredits": true, "unlimited": false, "balance": 3, "costPerRequest": 2},
        "bankedResets": 1,
        "rateLimitReachedType": "workspace_owner_usage_limit_reached",
        "familyInPlainHeaders": true,
        "enforceLimits": true,
        "promoMessage": "Try Spark",
        "usageEndpoint": {"cdnChallenge": "never"}
    }]}"#;
    let script = Script::from_json(text).expect("the script parses");
    let sim = Simulator::start(script).await.expect("sim starts");

    // The model matches in any case; credits pay for the spent family at 2 a request.
    let reply = post_model(&sim, "acct-a", SPARK).await;
    assert_eq!(reply.status(), 200);
    assert_eq!(
        header_text(&reply, "x-codex-primary-used-percent").as_deref(),
        Some("100"),
        "the plain headers carry the family's numbers"
    );
    assert_header(&reply, "x-codex-credits-balance", "1");
    assert_header(&reply, "x-codex-promo-message", "Try Spark");
    assert_header(&reply, "x-codex-plan-type", "prolite");
    let payload = usage_payload(&sim, "acct-a").await;
    assert_eq!(
        payload["rate_limit"]["secondary_window"]["limit_window_seconds"],
        Value::Null
    );
    assert_eq!(
        payload["rate_limit_reached_type"]["type"],
        "workspace_owner_usage_limit_reached"
    );
    assert_eq!(payload["rate_limit_reset_credits"]["available_count"], 1);
}

#[tokio::test]
async fn scripts_with_unusable_families_are_refused() {
    for id in ["codex", "Spark!", ""] {
        let account = AccountScript::new("acct-a").with_family(FamilyScript::new(id, "x", &[]));
        let started = Simulator::start(Script::default().with_account(account)).await;
        assert!(started.is_err(), "family id {id:?} must be refused");
    }
    let twice = AccountScript::new("acct-a")
        .with_family(FamilyScript::new("codex_x", "x", &[]))
        .with_family(FamilyScript::new("codex-x", "x", &[]));
    assert!(
        Simulator::start(Script::default().with_account(twice))
            .await
            .is_err()
    );
}
