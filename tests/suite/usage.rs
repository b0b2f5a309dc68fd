//! Usage against the simulator: learned before a session's first pick (joined, bounded), limit
//! families, credits and usage-based plans only with permission, fresh news lifting a limit,
//! every plan's windows in status, and the parsed accounts file kept by its identity.

use std::time::{Duration, Instant};

use super::common;
use super::common::{Rig, rig, rig_timed};
use dispatch_sim::{AccountScript, Credits, FamilyScript, Script, Usage, Window};
use pi_dispatch::domain::select::{self, Availability};
use pi_dispatch::domain::usage::MAIN_FAMILY;
use pi_dispatch::runtime::commands;
use pi_dispatch::{Timeouts, now_ms};

const SPARK: &str = "codex_bengalfox";

fn script(accounts: Vec<AccountScript>) -> Script {
    Script {
        accounts,
        ..Script::default()
    }
}

fn acct(id: &str, usage: Usage) -> AccountScript {
    AccountScript::new(id).with_usage(usage)
}

/// A weekly window at `used`% that resets in `days`.
fn week(used: f64, days: u64) -> Window {
    Window {
        reset_after_seconds: days * 86_400,
        ..Window::weekly(used)
    }
}

fn plus(five_hour: f64, weekly: Window) -> Usage {
    Usage {
        primary: Some(Window::five_hour(five_hour)),
        secondary: Some(weekly),
    }
}

/// Only the usage endpoint knows the accounts' usage: none is stored.
fn forget_usage(rig: &Rig) {
    rig.store
        .update(|file| {
            for account in &mut file.accounts {
                account.usage = None;
            }
            Ok(())
        })
        .unwrap();
}

/// Makes every stored view an hour old.
async fn age_usage(rig: &Rig) {
    rig.ctx.pool.flush().await;
    rig.store
        .update(|file| {
            for usage in file.accounts.iter_mut().filter_map(|a| a.usage.as_mut()) {
                usage.observed_at_ms -= 3_600_000;
            }
            Ok(())
        })
        .unwrap();
}

/// The reply to a request for `model` in `session`, as pi would read it.
async fn ask(rig: &Rig, session: &str, model: &str) -> String {
    let response = rig.pi_request_for(session, model).send().await.unwrap();
    assert_eq!(response.status(), 200);
    common::show(response.text().await.unwrap())
}

fn usage_calls(rig: &Rig, id: &str) -> u64 {
    rig.sim.stats().account(id).wham_usage
}

/// Four accounts whose usage only the endpoint knows; acct-c is untouched, acct-b is spent.
fn four_accounts() -> Script {
    script(vec![
        acct("acct-a", plus(30.0, week(60.0, 2))),
        acct("acct-b", plus(100.0, week(80.0, 1))),
        acct("acct-c", plus(0.0, week(0.0, 7))),
        acct("acct-d", Usage::pro(40.0)),
    ])
}

#[tokio::test]
async fn usage_is_learned_before_a_sessions_first_pick_so_the_untouched_account_serves() {
    let rig = rig(four_accounts()).await;
    forget_usage(&rig);
    for n in 0..5 {
        let text = ask(&rig, &format!("session-{n}"), "gpt-test").await;
        assert!(text.contains("hello from acct-c"), "{text}");
    }
    assert_eq!(rig.responses("acct-c"), 5);
    for id in ["acct-a", "acct-b", "acct-d"] {
        assert_eq!(rig.responses(id), 0, "{id} gets no request");
    }
    // Fetched once each: the later picks found it fresh.
    for id in ["acct-a", "acct-b", "acct-c", "acct-d"] {
        assert_eq!(usage_calls(&rig, id), 1, "{id}");
    }
    assert_eq!(rig.sim.stats().account("acct-b").limit_refused, 0);
}

#[tokio::test]
async fn a_fetch_under_way_is_joined_not_repeated() {
    let mut script = four_accounts();
    for account in &mut script.accounts {
        account.usage_endpoint.delay_ms = 300;
    }
    let rig = rig(script).await;
    forget_usage(&rig);
    // As at session start: a refresh in the background, then the first request.
    let usage = rig.ctx.clone();
    let started = tokio::spawn(async move { usage.usage.refresh_stale().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let text = ask(&rig, "session-1", "gpt-test").await;
    assert!(text.contains("hello from acct-c"), "{text}");
    let fetched = started.await.unwrap().unwrap();
    assert_eq!(fetched.len(), 4);
    for id in ["acct-a", "acct-b", "acct-c", "acct-d"] {
        assert_eq!(usage_calls(&rig, id), 1, "{id}: joined, not repeated");
    }
}

#[tokio::test]
async fn the_first_pick_waits_at_most_its_deadline_and_ranks_what_is_still_unknown_last() {
    let mut slow = acct("acct-a", plus(0.0, week(0.0, 7)));
    slow.usage_endpoint.delay_ms = 10_000;
    let timeouts = Timeouts {
        usage: Duration::from_millis(1500),
        usage_before_pick: Duration::from_millis(300),
        ..Timeouts::PRODUCTION
    };
    let rig = rig_timed(
        script(vec![slow, acct("acct-b", plus(20.0, week(30.0, 3)))]),
        None,
        timeouts,
    )
    .await;
    forget_usage(&rig);
    let started = Instant::now();
    let text = ask(&rig, "session-1", "gpt-test").await;
    let waited = started.elapsed();
    // acct-a may be untouched, but nothing says so: a known account goes first.
    assert!(text.contains("hello from acct-b"), "{text}");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(1000),
        "{waited:?}"
    );
    // Once acct-a's fetch has failed, new sessions do not wait for it again.
    tokio::time::sleep(Duration::from_millis(1400)).await;
    let started = Instant::now();
    let text = ask(&rig, "session-2", "gpt-test").await;
    assert!(text.contains("hello from acct-b"), "{text}");
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(usage_calls(&rig, "acct-a"), 1);
}

#[tokio::test]
async fn a_sticky_session_needs_no_fetch_and_a_new_one_refreshes_what_is_stale() {
    let rig = rig(four_accounts()).await;
    assert!(
        ask(&rig, "session-1", "gpt-test")
            .await
            .contains("hello from acct-")
    );
    let before: Vec<u64> = ["acct-a", "acct-b", "acct-c", "acct-d"]
        .iter()
        .map(|id| usage_calls(&rig, id))
        .collect();
    assert_eq!(before, [0, 0, 0, 0], "the seeded usage was fresh");
    age_usage(&rig).await;
    ask(&rig, "session-1", "gpt-test").await;
    let kept: u64 = ["acct-a", "acct-b", "acct-c", "acct-d"]
        .iter()
        .map(|id| usage_calls(&rig, id))
        .sum();
    assert_eq!(
        kept, 0,
        "the session kept its account without asking for usage"
    );
    ask(&rig, "session-2", "gpt-test").await;
    for id in ["acct-a", "acct-b", "acct-c", "acct-d"] {
        // The account that served session-1 has fresh usage from its reply's headers.
        assert!(usage_calls(&rig, id) <= 1, "{id}");
    }
    let fetched: u64 = ["acct-a", "acct-b", "acct-c", "acct-d"]
        .iter()
        .map(|id| usage_calls(&rig, id))
        .sum();
    assert!(
        fetched >= 3,
        "the new session's pick refreshed the stale ones: {fetched}"
    );
}

#[tokio::test]
async fn an_account_the_last_headers_report_at_100_percent_is_never_asked() {
    // acct-a serves and its reply says it is now spent (the sim lets it through).
    let a = acct("acct-a", plus(10.0, week(20.0, 1))).with_enforce_limits(false);
    let rig = rig(script(vec![a, acct("acct-b", plus(30.0, week(40.0, 5)))])).await;
    rig.sim
        .set_usage("acct-a", plus(100.0, week(20.0, 1)))
        .unwrap();
    assert!(
        ask(&rig, "session-1", "gpt-test")
            .await
            .contains("hello from acct-a")
    );
    for n in 2..5 {
        let text = ask(&rig, &format!("session-{n}"), "gpt-test").await;
        assert!(text.contains("hello from acct-b"), "{text}");
    }
    assert_eq!(rig.responses("acct-a"), 1);
}

/// acct-a's Spark family is spent; acct-b's is not. The family's display name is `name`.
fn spark_pool(name: &str) -> Script {
    let spent =
        FamilyScript::new(SPARK, name, &["gpt-spark"]).with_usage(plus(100.0, week(40.0, 2)));
    let fine = FamilyScript::new(SPARK, name, &["gpt-spark"]);
    script(vec![
        acct("acct-a", plus(10.0, week(20.0, 1))).with_family(spent),
        acct("acct-b", plus(30.0, week(40.0, 5))).with_family(fine),
    ])
}

#[tokio::test]
async fn a_family_limit_leaves_the_account_serving_other_models_and_the_family_is_learned() {
    // The limit's name says nothing about the model, and no usage was fetched: the first Spark
    // request learns the family from the refusal.
    let rig = rig(spark_pool("Spark tier")).await;
    let text = ask(&rig, "session-1", "gpt-spark").await;
    assert!(text.contains("hello from acct-b"), "{text}");
    let notices = rig.ctx.pool.take_notices("session-1");
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].why, "usage limit reached");
    let a = rig.stored("acct-a").await;
    assert_eq!(a.limits.len(), 1, "{:?}", a.limits);
    assert_eq!(a.limits[0].family, SPARK);
    assert_eq!(
        select::availability(&a, MAIN_FAMILY, now_ms()),
        Availability::Ready
    );
    let file = rig.store.load().unwrap();
    assert_eq!(
        file.model_families.get("gpt-spark").map(String::as_str),
        Some(SPARK)
    );

    // Another Spark session never asks acct-a; the main model still goes to it.
    assert!(
        ask(&rig, "session-2", "gpt-spark")
            .await
            .contains("hello from acct-b")
    );
    assert_eq!(rig.responses("acct-a"), 1);
    assert!(
        ask(&rig, "session-3", "gpt-test")
            .await
            .contains("hello from acct-a")
    );
    assert_eq!(rig.responses("acct-a"), 2);
    assert_eq!(rig.sim.stats().account("acct-a").limit_refused, 1);
}

#[tokio::test]
async fn a_family_the_usage_endpoint_reports_spent_is_never_asked_for_its_model() {
    // The backend names a Spark model's limit after the model: usage alone tells the family.
    let rig = rig(spark_pool("GPT-Spark")).await;
    forget_usage(&rig);
    assert!(
        ask(&rig, "session-1", "gpt-spark")
            .await
            .contains("hello from acct-b")
    );
    assert_eq!(rig.responses("acct-a"), 0);
    assert!(
        ask(&rig, "session-2", "gpt-test")
            .await
            .contains("hello from acct-a")
    );
    assert_eq!(rig.sim.stats().account("acct-a").limit_refused, 0);

    let status = commands::status(&rig.ctx, Some("session-2"), false)
        .await
        .unwrap();
    let shown = common::report(&status);
    assert!(
        shown.contains("\n    GPT-Spark: 5h 100% used (resets ")
            && shown.contains("week 40% used (resets "),
        "{shown}"
    );
    assert!(shown.contains("  [usage limit reached, back "), "{shown}");
}

#[tokio::test]
async fn credits_are_unused_unless_allowed_and_then_only_once_included_quota_is_spent() {
    let rig = rig(script(vec![
        acct("acct-a", plus(100.0, week(50.0, 2))).with_credits(Credits::balance(5.0)),
        acct("acct-b", plus(100.0, week(60.0, 3))),
        acct("acct-c", plus(100.0, week(70.0, 4))),
    ]))
    .await;
    forget_usage(&rig);
    let text = ask(&rig, "session-1", "gpt-test").await;
    assert!(
        text.contains("acct-a: usage limit reached; credits would pay, but paid requests are off"),
        "{text}"
    );
    let stats = rig.sim.stats();
    assert_eq!(stats.account("acct-a").responses, 0, "credits untouched");
    assert_eq!(stats.account("acct-a").credit_served, 0);

    commands::set_spend_money(&rig.ctx, true).unwrap();
    let text = ask(&rig, "session-2", "gpt-test").await;
    assert!(text.contains("hello from acct-a"), "{text}");
    assert_eq!(rig.sim.stats().account("acct-a").credit_served, 1);
    let status = commands::status(&rig.ctx, Some("session-2"), false)
        .await
        .unwrap();
    let shown = common::report(&status);
    assert!(
        shown.contains("\nThis session uses acct-a: every account's included quota is spent"),
        "{shown}"
    );
    assert!(
        shown.contains("\n    credits: 5 left") || shown.contains("\n    credits: 4 left"),
        "{shown}"
    );
    assert!(shown.contains("\nPaid requests: on."), "{shown}");

    // Included quota is back on acct-c: it serves, and the credits rest.
    rig.sim
        .set_usage("acct-c", plus(10.0, week(10.0, 4)))
        .unwrap();
    rig.ctx
        .usage
        .refresh_older_than(Duration::ZERO)
        .await
        .unwrap();
    assert!(
        ask(&rig, "session-3", "gpt-test")
            .await
            .contains("hello from acct-c")
    );
    assert!(
        ask(&rig, "session-2", "gpt-test")
            .await
            .contains("hello from acct-c"),
        "a paid seat moves"
    );
    assert_eq!(rig.sim.stats().account("acct-a").credit_served, 1);
}

#[tokio::test]
async fn a_usage_based_plan_is_used_only_when_allowed_and_after_included_quota() {
    let rig = rig(script(vec![
        acct("acct-a", plus(0.0, week(0.0, 7))).with_plan("self_serve_business_usage_based"),
        acct("acct-b", plus(30.0, week(40.0, 3))),
    ]))
    .await;
    forget_usage(&rig);
    // acct-a is untouched, but every request on it is billed.
    assert!(
        ask(&rig, "session-1", "gpt-test")
            .await
            .contains("hello from acct-b")
    );
    rig.sim
        .set_usage("acct-b", plus(100.0, week(40.0, 3)))
        .unwrap();
    rig.ctx
        .usage
        .refresh_older_than(Duration::ZERO)
        .await
        .unwrap();
    let text = ask(&rig, "session-2", "gpt-test").await;
    assert!(
        text.contains(
            "acct-a: its usage-based plan bills every request, but paid requests are off (/dispatch-settings spend on)"
        ),
        "{text}"
    );
    assert_eq!(rig.responses("acct-a"), 0);
    commands::set_spend_money(&rig.ctx, true).unwrap();
    assert!(
        ask(&rig, "session-3", "gpt-test")
            .await
            .contains("hello from acct-a")
    );
}

#[tokio::test]
async fn fresh_news_lifts_a_limit_before_its_reset() {
    // acct-a is spent and refuses; then a banked reset puts its windows back at 0%.
    let a = acct("acct-a", plus(100.0, week(50.0, 2))).with_banked_resets(1);
    let rig = rig(script(vec![a, acct("acct-b", plus(30.0, week(40.0, 5)))])).await;
    assert!(
        ask(&rig, "session-1", "gpt-test")
            .await
            .contains("hello from acct-b")
    );
    let limited = rig.stored("acct-a").await;
    assert_eq!(limited.limits.len(), 1);

    // The same numbers again are no news: still resting.
    rig.ctx
        .usage
        .refresh_older_than(Duration::ZERO)
        .await
        .unwrap();
    assert!(
        ask(&rig, "session-2", "gpt-test")
            .await
            .contains("hello from acct-b")
    );

    let tokens = rig.sim.tokens("acct-a").unwrap();
    let consumed = common::client()
        .post(format!(
            "{}/wham/rate-limit-reset-credits/consume",
            rig.sim.backend_base()
        ))
        .bearer_auth(&tokens.access)
        .header("chatgpt-account-id", "acct-a")
        .json(&serde_json::json!({"redeem_request_id": "redeem-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(consumed.status(), 200);
    rig.ctx
        .usage
        .refresh_older_than(Duration::ZERO)
        .await
        .unwrap();
    let lifted = rig.stored("acct-a").await;
    assert!(lifted.limits.is_empty(), "{:?}", lifted.limits);
    assert!(
        ask(&rig, "session-3", "gpt-test")
            .await
            .contains("hello from acct-a")
    );
}

#[tokio::test]
async fn status_shows_every_plans_windows_each_family_by_name_credits_and_the_reason_reached() {
    let spark = FamilyScript::new(SPARK, "GPT-5.3-Codex-Spark", &["gpt-5.3-codex-spark"])
        .with_usage(plus(100.0, week(30.0, 3)));
    let rig = rig(script(vec![
        acct("acct-a", plus(10.0, week(20.0, 2)))
            .with_family(spark)
            .with_credits(Credits::balance(120.0)),
        acct("acct-b", Usage::free(40.0)).with_plan("free"),
        acct("acct-c", Usage::pro(25.0)).with_plan("pro"),
        acct("acct-d", plus(100.0, week(90.0, 1)))
            .with_rate_limit_reached_type("workspace_member_credits_depleted"),
    ]))
    .await;
    forget_usage(&rig);
    let status = commands::status(&rig.ctx, None, true).await.unwrap();
    let shown = common::report(&status);
    let line = |start: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?} in\n{shown}"))
            .to_owned()
    };
    assert!(
        line("▸ acct-a ").contains(" ▰▱▱▱▱  10%  ▰▱▱▱▱  20%"),
        "{shown}"
    );
    let family = line("    GPT-5.3-Codex-Spark: ");
    assert!(
        family.starts_with("    GPT-5.3-Codex-Spark: 5h 100% used (resets "),
        "{family}"
    );
    assert!(
        family.contains(" · week 30% used (resets ")
            && family.contains("  [usage limit reached, back "),
        "{family}"
    );
    assert_eq!(line("    credits"), "    credits: 120 left");
    // Free: a 30-day window (its "no data" secondary is left out); Pro: weekly only.
    assert!(
        line("  acct-b ").contains(" free  —           —  "),
        "{shown}"
    );
    assert!(shown.contains("\n    month 40% used (resets "), "{shown}");
    assert!(
        line("  acct-c ").contains(" pro   —           ▰▱▱▱▱  25%"),
        "{shown}"
    );
    assert!(
        shown.contains("\n    workspace credits depleted, back "),
        "{shown}"
    );
    assert!(shown.ends_with("Paid requests: off. Credits and usage-based plans are never used (/dispatch-settings spend on allows them once every included quota is spent)."), "{shown}");
    // Ranked by the window that binds longest: acct-a's week ends first.
    let choice = status.active.unwrap();
    assert_eq!(choice.label, "acct-a");
    assert!(
        matches!(choice.reason, select::Reason::SoonestReset { .. }),
        "{:?}",
        choice.reason
    );
}

#[tokio::test]
async fn the_parsed_accounts_file_is_read_again_only_when_its_identity_changes() {
    use std::io::{Seek, Write};
    let rig = rig(Script::default_accounts(2)).await;
    let path = rig.store.path().to_owned();
    let first = rig.ctx.pool.snapshot().unwrap();
    assert_eq!(first.accounts[0].label, "acct-a");
    // The same bytes' length, written in place with the old modification time: the same
    // identity, so the kept parse is used (the change is not seen).
    let bytes = std::fs::read(&path).unwrap();
    let edited = String::from_utf8(bytes.clone()).unwrap().replacen(
        "\"label\": \"acct-a\"",
        "\"label\": \"acct-z\"",
        1,
    );
    assert_eq!(edited.len(), bytes.len());
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(std::io::SeekFrom::Start(0)).unwrap();
    file.write_all(edited.as_bytes()).unwrap();
    file.set_modified(modified).unwrap();
    drop(file);
    let kept = rig.ctx.pool.snapshot().unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &kept), "not parsed again");
    assert_eq!(kept.accounts[0].label, "acct-a");
    // A new modification time is a new identity: read again.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_modified(modified + Duration::from_secs(1))
        .unwrap();
    drop(file);
    assert_eq!(rig.ctx.pool.snapshot().unwrap().accounts[0].label, "acct-z");
    // A write by another process (a rename: a new inode) is seen too.
    rig.store
        .update(|f| {
            f.accounts[0].label = "acct-y".into();
            Ok(())
        })
        .unwrap();
    assert_eq!(rig.ctx.pool.snapshot().unwrap().accounts[0].label, "acct-y");
}
