//! Rotation in the proxy: every row of the failure table moves the request on (or not) and does
//! the right thing to the account, and pi only ever sees the reply that served it.
//!
//! The rig seeds accounts so the policy picks them in script order (acct-a first).

use std::time::{Duration, Instant};

use super::common;
use super::common::{Rig, rig, rig_with_states};
use dispatch_sim::{Behavior, Outcome, Script, StreamErrorStyle};
use pi_dispatch::domain::select::{self, Availability};
use pi_dispatch::domain::usage::MAIN_FAMILY;
use pi_dispatch::now_ms;
use pi_dispatch::{Account, AccountState};

/// acct-a fails with `first`; acct-b and acct-c answer.
fn first_fails(first: Behavior) -> Script {
    let mut script = Script::default_accounts(3);
    script.accounts[0].default = Some(first);
    script
}

async fn answer(rig: &Rig) -> String {
    let response = rig.pi_request().send().await.unwrap();
    assert_eq!(response.status(), 200);
    common::show(response.text().await.unwrap())
}

/// Resting for the main family's models, by a bench or a limit.
fn benched(account: &Account) -> bool {
    matches!(
        select::availability(account, MAIN_FAMILY, now_ms()),
        Availability::Benched { .. }
    )
}

#[tokio::test]
async fn a_usage_limit_benches_the_account_until_its_reset_and_moves_on() {
    let rig = rig(first_fails(Behavior::usage_limit(3600))).await;
    let before = now_ms();
    let text = answer(&rig).await;
    assert!(text.contains("hello from acct-b"), "{text}");
    assert!(
        !text.contains("usage_limit"),
        "pi never sees the failed attempt"
    );

    // The limit rests the family the request counted against (the sim names it), not the
    // whole account.
    let a = rig.stored("acct-a").await;
    assert_eq!(a.state, AccountState::Usable);
    match select::availability(&a, MAIN_FAMILY, now_ms()) {
        Availability::Benched { until_ms, reason } => {
            assert_eq!(reason, "usage limit");
            let expected = before + 3_600_000;
            assert!(
                until_ms.abs_diff(expected) < 5_000,
                "{until_ms} vs {expected}"
            );
        }
        other => panic!("acct-a should be benched, is {other:?}"),
    }
    // The session stays on its new account, and the benched one is never asked again.
    for _ in 0..3 {
        assert!(answer(&rig).await.contains("hello from acct-b"));
    }
    assert_eq!(rig.responses("acct-a"), 1);
    assert_eq!(rig.responses("acct-b"), 4);
    assert_eq!(rig.responses("acct-c"), 0);
}

#[tokio::test]
async fn a_usage_limit_inside_the_stream_is_rotated_in_both_styles() {
    for style in [StreamErrorStyle::Error, StreamErrorStyle::Failed] {
        for code in ["usage_limit_reached", "insufficient_quota"] {
            let rig = rig(first_fails(Behavior::stream_error(code, style))).await;
            let text = answer(&rig).await;
            assert!(text.contains("hello from acct-b"), "{code}: {text}");
            assert_eq!(
                text.matches("event: response.created").count(),
                1,
                "the failed attempt's opening events were held back: {text}"
            );
            assert!(benched(&rig.stored("acct-a").await));
        }
    }
}

#[tokio::test]
async fn throttling_benches_for_seconds_not_hours() {
    let rig = rig(first_fails(Behavior::rate_limited(20))).await;
    let before = now_ms();
    assert!(answer(&rig).await.contains("hello from acct-b"));
    match rig.stored("acct-a").await.state {
        AccountState::Benched { until_ms, reason } => {
            assert_eq!(reason, "throttled");
            assert!(until_ms.abs_diff(before + 20_000) < 5_000, "{until_ms}");
        }
        other => panic!("{other:?}"),
    }
    // In the stream, the wait comes from the message ("try again in 5s").
    let rig = common::rig(first_fails(Behavior::stream_error(
        "rate_limit_exceeded",
        StreamErrorStyle::Failed,
    )))
    .await;
    let before = now_ms();
    assert!(answer(&rig).await.contains("hello from acct-b"));
    match rig.stored("acct-a").await.state {
        AccountState::Benched { until_ms, .. } => {
            assert!(until_ms.abs_diff(before + 5_000) < 3_000, "{until_ms}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_plan_without_codex_makes_the_account_unusable() {
    let rig = rig(first_fails(Behavior::UsageNotIncluded)).await;
    assert!(answer(&rig).await.contains("hello from acct-b"));
    assert!(matches!(
        rig.stored("acct-a").await.state,
        AccountState::Disabled { .. }
    ));
}

#[tokio::test]
async fn backend_errors_are_tried_once_more_then_move_on_without_benching() {
    // (behaviour, requests acct-a gets): a Retry-After over 2 s moves on at once, and so does
    // a 503 (overload: the same account would be just as busy).
    for (behavior, tries) in [
        (Behavior::server_error(500), 2),
        (
            Behavior::ServerError {
                status: 502,
                retry_after_seconds: Some(3),
            },
            1,
        ),
        (
            Behavior::ServerError {
                status: 502,
                retry_after_seconds: Some(1),
            },
            2,
        ),
        (Behavior::server_error(503), 1),
    ] {
        let rig = rig(first_fails(behavior.clone())).await;
        assert!(answer(&rig).await.contains("hello from acct-b"));
        assert_eq!(rig.stored("acct-a").await.state, AccountState::Usable);
        let stats = rig.sim.stats();
        assert_eq!(stats.account("acct-a").responses, tries, "{behavior:?}");
        assert_eq!(stats.account("acct-b").responses, 1, "{behavior:?}");
    }
}

#[tokio::test]
async fn a_backend_blip_is_absorbed_by_the_same_account() {
    // One 502, then the same account answers: no rotation, no notice, the session stays put.
    let mut script = Script::default_accounts(2);
    script.accounts[0].behaviors = vec![Behavior::server_error(502)];
    let rig = rig(script).await;
    assert!(answer(&rig).await.contains("hello from acct-a"));
    let stats = rig.sim.stats();
    assert_eq!(stats.account("acct-a").responses, 2);
    assert_eq!(stats.account("acct-b").responses, 0);
    assert!(rig.ctx.pool.take_notices("session-123").is_empty());
    assert_eq!(
        rig.ctx.pool.seat("session-123").unwrap().account_id,
        "local-0"
    );
}

#[tokio::test]
async fn a_blip_after_a_token_refresh_is_retried_with_the_new_token() {
    let mut script = Script::default_accounts(2);
    script.accounts[0].behaviors = vec![Behavior::Unauthorized, Behavior::server_error(502)];
    let rig = rig(script).await;
    assert!(answer(&rig).await.contains("hello from acct-a"));
    let stats = rig.sim.stats();
    let a = stats.account("acct-a");
    assert_eq!(a.token_refresh, 1);
    // 401, then 502 with the refreshed token, then the answer with it: no third token use of
    // the refused one.
    assert_eq!(a.responses, 3);
    let tokens: Vec<_> = rig
        .sim
        .requests()
        .iter()
        .map(|r| r.headers.get("authorization").cloned())
        .collect();
    // Compared, never printed: they are tokens.
    assert_eq!(tokens.len(), 3);
    assert!(tokens[0] != tokens[1], "the refresh gave a new token");
    assert!(tokens[1] == tokens[2], "the retry used the refused token");
}

#[tokio::test]
async fn a_token_refused_twice_moves_on_after_exactly_one_refresh() {
    let rig = rig(first_fails(Behavior::Unauthorized)).await;
    assert!(answer(&rig).await.contains("hello from acct-b"));
    let a = rig.sim.stats().account("acct-a");
    assert_eq!(a.token_refresh, 1);
    assert_eq!(a.responses, 2, "one try, one retry with the new token");
}

#[tokio::test]
async fn a_failure_after_output_reaches_pi_and_is_not_retried() {
    let rig = rig(first_fails(Behavior::CutAfterFirstDelta { text: None })).await;
    let response = rig.pi_request().send().await.unwrap();
    assert_eq!(response.status(), 200);
    let result = response.text().await;
    assert!(result.is_err(), "the cut reaches the client: {result:?}");
    assert_eq!(rig.responses("acct-a"), 1);
    assert_eq!(rig.responses("acct-b"), 0);
    assert_eq!(rig.stored("acct-a").await.state, AccountState::Usable);
}

#[tokio::test]
async fn when_every_account_is_spent_pi_gets_one_clear_failure_at_once() {
    let mut script = Script::default_accounts(3);
    for (i, account) in script.accounts.iter_mut().enumerate() {
        account.default = Some(Behavior::usage_limit(3600 * (i as u64 + 1)));
    }
    let rig = rig(script).await;
    let text = answer(&rig).await;
    assert!(text.starts_with("event: response.failed\n"), "{text}");
    let event: serde_json::Value =
        serde_json::from_str(text.lines().nth(1).unwrap().trim_start_matches("data: ")).unwrap();
    let message = event["response"]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("none of your 3 accounts"),
        "says how many: {message}"
    );
    assert!(
        message.contains("First back: acct-a"),
        "says which comes back first: {message}"
    );
    assert!(
        message.ends_with(", in 59m.") || message.ends_with(", in 1h 0m."),
        "{message}"
    );
    // Words that make pi's session layer re-run the turn.
    let retried = [
        "rate limit",
        "rate_limit",
        "429",
        "500",
        "502",
        "503",
        "504",
        "overloaded",
        "timeout",
        "timed out",
        "terminated",
        "server error",
    ];
    for word in retried {
        assert!(!message.to_lowercase().contains(word), "{word}: {message}");
    }
    for id in ["acct-a", "acct-b", "acct-c"] {
        assert_eq!(rig.responses(id), 1, "{id}");
    }

    // Known to be benched now: the next request is answered without any upstream call.
    let started = Instant::now();
    let again = answer(&rig).await;
    assert!(again.contains("First back: acct-a"), "{again}");
    assert_eq!(rig.forwarded(), 3);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_bench_is_in_the_file_before_pi_has_its_reply() {
    // pi may exit as soon as it has its answer (a print-mode run does); the next pi process
    // must find the bench in the shared file. Another process holds the file's lock for a
    // moment, so the background writer cannot win the race by luck.
    for exhausted in [false, true] {
        let mut script = Script::default_accounts(2);
        script.accounts[0].default = Some(Behavior::usage_limit(3600));
        if exhausted {
            script.accounts[1].default = Some(Behavior::usage_limit(1800));
        }
        let rig = rig(script).await;
        let (locked, lock_taken) = tokio::sync::oneshot::channel();
        let store = rig.store.clone();
        let holder = tokio::task::spawn_blocking(move || {
            store.update(|_| {
                let _ = locked.send(());
                std::thread::sleep(Duration::from_millis(400));
                Ok(())
            })
        });
        lock_taken.await.unwrap();
        let text = answer(&rig).await;
        // Read straight from disk: no flush, as another process would.
        let file = rig.store.load().unwrap();
        let benched =
            |label: &str| benched(file.accounts.iter().find(|a| a.label == label).unwrap());
        assert!(benched("acct-a"), "exhausted: {exhausted}");
        assert_eq!(benched("acct-b"), exhausted);
        assert_eq!(text.contains("hello from acct-b"), !exhausted, "{text}");
        holder.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn an_account_known_to_be_benched_or_spent_is_never_asked() {
    let mut script = Script::default_accounts(3);
    for account in &mut script.accounts {
        account.default = Some(Behavior::ok("hi"));
    }
    let later = now_ms() + 3_600_000;
    let states = [
        AccountState::Benched {
            until_ms: later,
            reason: "usage limit".into(),
        },
        AccountState::Usable,
        AccountState::Usable,
    ];
    let rig = rig_with_states(script, &states).await;
    // acct-b has a window at 100% that resets in the future.
    rig.store
        .update_account("local-1", |b| {
            let usage = b.usage.as_mut().unwrap();
            usage.windows[0].used_percent = 100.0;
        })
        .unwrap();
    for _ in 0..3 {
        answer(&rig).await;
    }
    assert_eq!(rig.responses("acct-a"), 0);
    assert_eq!(rig.responses("acct-b"), 0);
    assert_eq!(rig.responses("acct-c"), 3);
}

#[tokio::test]
async fn a_session_keeps_its_account_and_other_sessions_are_chosen_afresh() {
    let mut script = Script::default_accounts(2);
    for account in &mut script.accounts {
        account.default = Some(Behavior::ok("hi"));
    }
    let rig = rig(script).await;
    answer(&rig).await;
    // The sim's headers now report acct-a untouched, and acct-b has a later weekly reset:
    // make acct-b the policy's favourite so only stickiness keeps the session on acct-a.
    rig.store
        .update_account("local-1", |b| {
            b.usage = Some(pi_dispatch::Usage {
                observed_at_ms: now_ms() + 60_000,
                windows: vec![pi_dispatch::UsageWindow {
                    window_seconds: Some(18_000),
                    used_percent: 0.0,
                    resets_at_ms: None,
                }],
                ..Default::default()
            })
        })
        .unwrap();
    rig.store
        .update_account("local-0", |a| {
            a.usage.as_mut().unwrap().windows[0].used_percent = 50.0;
            a.usage.as_mut().unwrap().observed_at_ms = now_ms() + 60_000;
        })
        .unwrap();
    answer(&rig).await;
    assert_eq!(rig.responses("acct-a"), 2, "the session kept acct-a");
    let other = rig.pi_request_in("another-session").send().await.unwrap();
    other.text().await.unwrap();
    assert_eq!(
        rig.responses("acct-b"),
        1,
        "a new session gets the policy's pick"
    );
}

#[tokio::test]
async fn a_rotation_leaves_one_notice_for_the_session() {
    let rig = rig(first_fails(Behavior::usage_limit(600))).await;
    answer(&rig).await;
    let notices = rig.ctx.pool.take_notices("session-123");
    common::show(format!("{notices:?}"));
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0].from_label, "acct-a");
    assert_eq!(notices[0].to_label, "acct-b");
    assert_eq!(notices[0].why, "usage limit reached");
    assert!(notices[0].back_at_ms.is_some());
    assert!(
        rig.ctx.pool.take_notices("session-123").is_empty(),
        "told once"
    );
    answer(&rig).await;
    assert!(rig.ctx.pool.take_notices("session-123").is_empty());
}

#[tokio::test]
async fn a_pin_holds_until_a_rotation_clears_it() {
    let mut script = Script::default_accounts(3);
    script.accounts[2].behaviors = vec![Behavior::ok("pinned answer"), Behavior::usage_limit(600)];
    let rig = rig(script).await;
    rig.ctx.pool.pin("session-123", "local-2");
    assert!(answer(&rig).await.contains("pinned answer"));
    // The pinned account hits its limit: the session moves and the pin is gone.
    assert!(answer(&rig).await.contains("hello from acct-a"));
    let notices = rig.ctx.pool.take_notices("session-123");
    common::show(format!("{notices:?}"));
    assert_eq!(notices.len(), 1);
    assert!(notices[0].pin_cleared);
    assert_eq!(
        rig.ctx.pool.seat("session-123").unwrap().account_id,
        "local-0"
    );
}

#[tokio::test]
async fn headers_on_every_reply_update_the_accounts_usage() {
    let mut script = Script::default_accounts(1);
    script.accounts[0].usage = dispatch_sim::Usage::percent(42.0, 7.0);
    let rig = rig(script).await;
    answer(&rig).await;
    let usage = rig.stored("acct-a").await.usage.unwrap();
    let five = usage
        .window(pi_dispatch::domain::usage::WindowKind::FiveHour)
        .unwrap();
    let weekly = usage
        .window(pi_dispatch::domain::usage::WindowKind::Weekly)
        .unwrap();
    assert_eq!((five.used_percent, weekly.used_percent), (42.0, 7.0));
    assert!(usage.is_fresh(now_ms()));
}

#[tokio::test]
async fn pi_aborting_during_a_retry_cancels_it_and_benches_nothing_more() {
    let mut script = first_fails(Behavior::usage_limit(600));
    script.accounts[1].default = Some(Behavior::HangBeforeHeaders);
    let rig = rig(script).await;
    let pending = tokio::spawn(rig.pi_request().send());
    rig.sim
        .wait_for(Duration::from_secs(5), |s| s.requests.len() == 2)
        .await
        .expect("the retry reached acct-b");
    pending.abort();
    let seen = rig
        .sim
        .wait_for(Duration::from_secs(5), |s| {
            s.requests.get(1).map(|r| r.outcome) == Some(Outcome::ClientDisconnected)
        })
        .await;
    assert!(seen.is_some(), "{:?}", rig.sim.requests());
    assert_eq!(rig.stored("acct-b").await.state, AccountState::Usable);
    assert_eq!(rig.responses("acct-c"), 0, "nothing tried after the abort");
}
