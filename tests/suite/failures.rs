//! Failures as the real backend sends them (the table in codex-backend.md), against the
//! simulator: the request's own faults go to pi once, account faults stick, overload is not
//! amplified, every event shape is read, stalls are failed over, and the upstream counts per
//! account say so.
//!
//! The rig seeds accounts so the policy picks them in script order (acct-a first).

use std::time::{Duration, Instant};

use super::common;
use super::common::{Rig, rig, rig_timed};
use dispatch_sim::{Behavior, RetryAfterFormat, Script, StreamErrorStyle};
use pi_dispatch::domain::account::AttentionKind;
use pi_dispatch::{AccountState, Timeouts, now_ms};

/// `n` accounts; acct-a answers `first`, the others answer normally.
fn first_fails(n: usize, first: Behavior) -> Script {
    let mut script = Script::default_accounts(n);
    script.accounts[0].default = Some(first);
    script
}

/// A stream error with the backend's `message` and, for a usage limit, its reset.
fn stream_error(
    code: &str,
    style: StreamErrorStyle,
    words: Option<&str>,
    resets_in: Option<u64>,
) -> Behavior {
    let mut behavior = Behavior::stream_error(code, style);
    if let Behavior::StreamError {
        message,
        resets_in_seconds,
        ..
    } = &mut behavior
    {
        *message = words.map(str::to_owned);
        *resets_in_seconds = resets_in;
    }
    behavior
}

async fn reply(rig: &Rig) -> (u16, String) {
    let response = rig.pi_request().send().await.unwrap();
    let status = response.status().as_u16();
    (status, common::show(response.text().await.unwrap()))
}

fn total(rig: &Rig) -> u64 {
    ["acct-a", "acct-b", "acct-c", "acct-d"]
        .iter()
        .map(|id| rig.responses(id))
        .sum()
}

#[tokio::test]
async fn the_request_s_own_fault_reaches_pi_once_with_the_backend_s_words() {
    let words = |code: &str| format!("the backend's words for {code}");
    let stream_error = |code: &str, style| stream_error(code, style, Some(&words(code)), None);
    let cases = [
        (
            Behavior::invalid_request("Unsupported parameter: temperature"),
            "Unsupported parameter: temperature",
        ),
        (
            Behavior::instructions_required(),
            "Instructions are required",
        ),
        (
            Behavior::invalid_request_code("cyber_policy"),
            "cyber_policy",
        ),
        (
            Behavior::invalid_request_code("content_policy_violation"),
            "content_policy_violation",
        ),
        (
            Behavior::invalid_request_code("invalid_prompt"),
            "invalid_prompt",
        ),
        (
            Behavior::invalid_request_code("context_length_exceeded"),
            "context_length_exceeded",
        ),
        (
            stream_error("context_length_exceeded", StreamErrorStyle::Error),
            "the backend's words for context_length_exceeded",
        ),
        (
            stream_error("context_length_exceeded", StreamErrorStyle::Nested),
            "the backend's words for context_length_exceeded",
        ),
        (
            stream_error("cyber_policy", StreamErrorStyle::Failed),
            "the backend's words for cyber_policy",
        ),
    ];
    for (behavior, words) in cases {
        let rig = rig(first_fails(4, behavior.clone())).await;
        let (_, body) = reply(&rig).await;
        assert!(body.contains(words), "{behavior:?}: {body}");
        assert_eq!(total(&rig), 1, "exactly one upstream request: {behavior:?}");
        for label in ["acct-a", "acct-b", "acct-c", "acct-d"] {
            let account = rig.stored(label).await;
            assert_eq!(account.state, AccountState::Usable, "{behavior:?} {label}");
            assert!(account.attention.is_none(), "{behavior:?} {label}");
        }
        assert_eq!(
            rig.ctx.pool.seat("session-123").unwrap().account_id,
            "local-0",
            "the session keeps its account: {behavior:?}"
        );
        assert!(rig.ctx.pool.take_notices("session-123").is_empty());
    }
}

#[tokio::test]
async fn a_flagged_prompt_never_reaches_a_second_account() {
    let rig = rig(first_fails(
        4,
        Behavior::invalid_request_code("cyber_policy"),
    ))
    .await;
    for _ in 0..3 {
        let (_, body) = reply(&rig).await;
        assert!(body.contains("cyber_policy"), "{body}");
    }
    assert_eq!(rig.responses("acct-a"), 3);
    assert_eq!(total(&rig), 3, "no other account ever saw the prompt");
}

#[tokio::test]
async fn account_faults_stick_until_fixed_and_the_request_moves_on() {
    let cases = [
        (
            Behavior::Unauthorized,
            AttentionKind::TokenRefused,
            "refuses its token",
        ),
        (
            Behavior::DeactivatedWorkspace,
            AttentionKind::WorkspaceDeactivated,
            "workspace is deactivated",
        ),
        (
            Behavior::forbidden(),
            AttentionKind::Forbidden,
            "does not allow this account",
        ),
    ];
    for (behavior, kind, words) in cases {
        let rig = rig(first_fails(2, behavior.clone())).await;
        let (_, body) = reply(&rig).await;
        assert!(body.contains("hello from acct-b"), "{behavior:?}: {body}");
        let account = rig.stored("acct-a").await;
        assert_eq!(
            account.attention.as_ref().map(|a| a.kind),
            Some(kind),
            "{behavior:?}"
        );
        // A new session is never sent to it.
        let before = rig.responses("acct-a");
        let response = rig.pi_request_in("another").send().await.unwrap();
        assert!(response.text().await.unwrap().contains("hello from acct-b"));
        assert_eq!(rig.responses("acct-a"), before, "{behavior:?}");
        // Status shows the reason and the fix.
        let status = pi_dispatch::runtime::commands::status(&rig.ctx, None, false)
            .await
            .unwrap();
        let report = common::report(&status);
        assert!(
            report.contains("needs attention: ") && report.contains(words),
            "{report}"
        );
        assert!(report.contains("/dispatch-"), "the fix is named: {report}");
    }
}

#[tokio::test]
async fn a_login_refused_even_after_a_refresh_needs_attention_and_a_good_usage_fetch_clears_it() {
    let mut script = Script::default_accounts(2);
    script.accounts[0] = script.accounts[0]
        .clone()
        .with_deactivated("account_deactivated");
    let rig = rig(script).await;
    let (_, body) = reply(&rig).await;
    assert!(body.contains("hello from acct-b"), "{body}");
    let stats = rig.sim.stats();
    assert_eq!(
        stats.account("acct-a").token_refresh,
        1,
        "one refresh first"
    );
    assert_eq!(stats.account("acct-a").responses, 2, "then one more try");
    let account = rig.stored("acct-a").await;
    assert_eq!(
        account.attention.map(|a| a.kind),
        Some(AttentionKind::Deactivated)
    );
    // Fixed upstream: the next usage fetch that works lifts it.
    rig.sim.reactivate("acct-a").unwrap();
    let fetched = rig
        .ctx
        .usage
        .refresh_older_than(Duration::ZERO)
        .await
        .unwrap();
    assert!(fetched.iter().all(|f| f.result.is_ok()), "{fetched:?}");
    assert!(rig.stored("acct-a").await.attention.is_none());
}

#[tokio::test]
async fn a_cdn_challenge_is_trouble_for_that_attempt_only() {
    let rig = rig(first_fails(2, Behavior::CloudflareChallenge)).await;
    let before = now_ms();
    let (_, body) = reply(&rig).await;
    assert!(body.contains("hello from acct-b"), "{body}");
    let account = rig.stored("acct-a").await;
    assert!(account.attention.is_none(), "not an account fault");
    match account.state {
        AccountState::Benched { until_ms, reason } => {
            assert!(
                until_ms <= before + 61_000,
                "a short rest, not a long bench"
            );
            assert!(reason.contains("CDN"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn overload_tries_one_other_account_then_tells_pi_to_retry() {
    for overloaded in [
        Behavior::overloaded("server_is_overloaded"),
        Behavior::overloaded("slow_down"),
        Behavior::server_error(503),
        Behavior::stream_error("server_is_overloaded", StreamErrorStyle::Nested),
    ] {
        let mut script = Script::default_accounts(4);
        for account in &mut script.accounts {
            account.default = Some(overloaded.clone());
        }
        let rig = rig(script).await;
        let (status, body) = reply(&rig).await;
        assert_eq!(status, 200);
        assert!(body.contains("response.failed"), "{body}");
        assert!(body.contains("overloaded"), "pi's retry word: {body}");
        assert_eq!(total(&rig), 2, "{overloaded:?}: at most one other account");
        for label in ["acct-a", "acct-b"] {
            assert_eq!(rig.stored(label).await.state, AccountState::Usable);
        }
    }
    // One overloaded account and a healthy one: the healthy one answers.
    let rig = rig(first_fails(2, Behavior::overloaded("server_is_overloaded"))).await;
    let (_, body) = reply(&rig).await;
    assert!(body.contains("hello from acct-b"), "{body}");
}

#[tokio::test]
async fn a_usage_limit_in_any_event_shape_after_any_opening_event_rotates() {
    for style in [
        StreamErrorStyle::Error,
        StreamErrorStyle::Nested,
        StreamErrorStyle::Failed,
    ] {
        let limit = stream_error("usage_limit_reached", style, None, Some(3600)).with_opening(&[
            "response.created",
            "response.metadata",
            "response.queued",
            "response.in_progress",
        ]);
        let rig = rig(first_fails(2, limit)).await;
        let (_, body) = reply(&rig).await;
        assert!(body.contains("hello from acct-b"), "{style:?}: {body}");
        assert!(
            !body.contains("response.metadata"),
            "the failed attempt's opening never reaches pi: {body}"
        );
        // A usage limit rests the family the request counted against (the main one here).
        let limits = rig.stored("acct-a").await.limits;
        assert_eq!(limits.len(), 1, "{style:?}: {limits:?}");
        assert!(
            limits[0].until_ms.abs_diff(now_ms() + 3_600_000) < 10_000,
            "{style:?}"
        );
    }
}

const SHORT: Timeouts = Timeouts {
    upstream_headers: Duration::from_millis(400),
    upstream_silence: Duration::from_millis(400),
    ..Timeouts::PRODUCTION
};

#[tokio::test]
async fn a_stalled_account_is_failed_over_and_rests_briefly() {
    for stall in [
        Behavior::hang_after_created(),
        Behavior::HangAfterHeaders,
        Behavior::HangBeforeHeaders,
        Behavior::hang_after_created().with_opening(&["response.created", "response.queued"]),
    ] {
        let rig = rig_timed(first_fails(2, stall.clone()), None, SHORT).await;
        let started = Instant::now();
        let (_, body) = reply(&rig).await;
        assert!(body.contains("hello from acct-b"), "{stall:?}: {body}");
        assert!(started.elapsed() < Duration::from_secs(10), "{stall:?}");
        assert_eq!(rig.responses("acct-a"), 1, "{stall:?}: not retried there");
        match rig.stored("acct-a").await.state {
            AccountState::Benched { reason, .. } => assert!(reason.contains("stalled")),
            other => panic!("{stall:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn every_form_of_retry_after_benches_for_its_time() {
    for format in [
        RetryAfterFormat::Seconds,
        RetryAfterFormat::HttpDate,
        RetryAfterFormat::Millis,
    ] {
        let rig = rig(first_fails(2, Behavior::rate_limited_as(40, format))).await;
        let before = now_ms();
        let (_, body) = reply(&rig).await;
        assert!(body.contains("hello from acct-b"), "{format:?}: {body}");
        match rig.stored("acct-a").await.state {
            AccountState::Benched { until_ms, .. } => {
                let rest = until_ms.saturating_sub(before);
                assert!((38_000..=42_000).contains(&rest), "{format:?}: {rest} ms");
            }
            other => panic!("{format:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn upstream_is_asked_for_identity_so_error_bodies_can_be_read() {
    let rig = rig(first_fails(2, Behavior::usage_limit(3600))).await;
    let response = rig
        .pi_request()
        .header("accept-encoding", "gzip, deflate")
        .send()
        .await
        .unwrap();
    assert!(response.text().await.unwrap().contains("hello from acct-b"));
    let first = &rig.sim.requests()[0];
    assert_eq!(
        first.headers.get("accept-encoding").map(String::as_str),
        Some("identity")
    );
    let limits = rig.stored("acct-a").await.limits;
    assert!(
        limits.iter().any(|l| l.reason == "usage limit"),
        "the 429 was read as what it is: {limits:?}"
    );
}

#[tokio::test]
async fn a_pool_only_briefly_throttled_is_waited_out_not_failed() {
    let mut script = Script::default_accounts(2);
    for account in &mut script.accounts {
        account.behaviors = vec![Behavior::rate_limited(1)];
    }
    let rig = rig(script).await;
    let started = Instant::now();
    let (_, body) = reply(&rig).await;
    assert!(
        body.contains("hello from acct-"),
        "served after the wait: {body}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(total(&rig), 3, "two throttled tries, then one that answers");
}

#[tokio::test]
async fn a_long_throttle_is_not_waited_for() {
    let mut script = Script::default_accounts(2);
    for account in &mut script.accounts {
        account.default = Some(Behavior::rate_limited(60));
    }
    let rig = rig(script).await;
    let started = Instant::now();
    let (_, body) = reply(&rig).await;
    assert!(body.contains("response.failed"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(total(&rig), 2);
}
