use super::*;
use serde_json::json;

const NOW: u64 = 1_770_000_000_000;

fn with_headers(code: u16, headers: &[(&str, &str)], body: &str) -> Failure {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    Failure::from_status(
        StatusCode::from_u16(code).unwrap(),
        &map,
        body.as_bytes(),
        NOW,
    )
}

fn status(code: u16, body: Value) -> Failure {
    with_headers(code, &[], &body.to_string())
}

fn event(value: Value) -> Option<Failure> {
    Failure::from_event(&value, NOW)
}

#[test]
fn quota_and_throttling_rows() {
    let limit = json!({"error": {"type": "usage_limit_reached", "resets_at": NOW / 1000 + 60}});
    assert_eq!(
        status(429, limit),
        Failure::UsageLimit {
            until_ms: Some(NOW + 60_000)
        }
    );
    let limit_in = json!({"error": {"type": "usage_limit_reached", "resets_in_seconds": 30}});
    assert_eq!(
        status(429, limit_in),
        Failure::UsageLimit {
            until_ms: Some(NOW + 30_000)
        }
    );
    assert_eq!(
        status(429, json!({"error": {"type": "usage_not_included"}})),
        Failure::NotIncluded
    );
    let throttled = json!({"error": {"code": "rate_limit_exceeded",
        "message": "Rate limit reached. Please try again in 7s."}});
    assert_eq!(
        status(429, throttled),
        Failure::Throttled { for_ms: Some(7000) }
    );
    assert_eq!(
        status(429, Value::Null),
        Failure::Throttled { for_ms: None }
    );
}

#[test]
fn the_request_s_own_faults_go_to_pi() {
    for body in [
        json!({"error": {"type": "invalid_request_error", "message": "Unsupported parameter: x", "code": null}}),
        json!({"detail": "Instructions are required"}),
        json!({"error": {"code": "cyber_policy", "message": "flagged"}}),
        json!({"error": {"code": "content_policy_violation"}}),
        json!({"error": {"code": "invalid_prompt"}}),
        json!({"error": {"code": "context_length_exceeded", "message": "Your input exceeds the context window"}}),
    ] {
        let failure = status(400, body.clone());
        assert!(
            matches!(failure, Failure::RequestFault { .. }),
            "{body}: {failure:?}"
        );
        assert_eq!(failure.action(), Action::PassToPi, "{body}");
        assert_eq!(failure.account_change(NOW).map(|_| ()), None);
    }
    for code in ["context_length_exceeded", "cyber_policy", "invalid_prompt"] {
        let failure = event(json!({"type": "error", "error": {"code": code, "message": "m"}}));
        assert_eq!(
            failure.map(|f| f.action()),
            Some(Action::PassToPi),
            "{code}"
        );
    }
}

#[test]
fn foreign_ciphertext_in_both_shapes_is_stripped_and_retried() {
    let message = "The encrypted content for item rs_1 could not be verified. Reason: x";
    for code in [json!("invalid_encrypted_content"), Value::Null] {
        let body = json!({"error": {"message": message, "type": "invalid_request_error",
            "param": null, "code": code}});
        let failure = status(400, body);
        assert_eq!(failure, Failure::ForeignCiphertext, "{code}");
        assert_eq!(failure.action(), Action::StripAndRetry);
    }
}

#[test]
fn account_faults_need_attention_and_move_on() {
    assert_eq!(
        status(401, json!({"error": {"code": "token_revoked"}})),
        Failure::Unauthorized
    );
    for (code, kind) in [
        ("account_deactivated", AttentionKind::Deactivated),
        ("token_revoked", AttentionKind::Revoked),
        ("missing_scope", AttentionKind::MissingScope),
        ("token_expired", AttentionKind::TokenRefused),
    ] {
        let body = json!({"error": {"code": code, "message": "m"}}).to_string();
        let failure = Failure::refused_after_refresh(body.as_bytes());
        assert_eq!(
            failure,
            Failure::NeedsAttention(kind, Some("m".into())),
            "{code}"
        );
        assert!(matches!(
            failure.account_change(NOW),
            Some(Change::Attention(Some(Attention { kind: k, since_ms: NOW, .. }))) if k == kind
        ));
    }
    let workspace = status(402, json!({"detail": {"code": "deactivated_workspace"}}));
    assert_eq!(
        workspace,
        Failure::NeedsAttention(AttentionKind::WorkspaceDeactivated, None)
    );
    let encoded = STANDARD.encode(br#"{"error":{"code":"no_access","message":"not allowed"}}"#);
    let forbidden = with_headers(
        403,
        &[
            ("content-type", "application/json"),
            ("x-error-json", &encoded),
        ],
        r#"{"error":{"message":"forbidden"}}"#,
    );
    assert_eq!(
        forbidden,
        Failure::NeedsAttention(AttentionKind::Forbidden, Some("not allowed".into()))
    );
    let cdn = with_headers(
        403,
        &[("content-type", "text/html; charset=UTF-8")],
        "<!DOCTYPE html><title>Just a moment...</title>",
    );
    assert_eq!(cdn, Failure::CdnChallenge);
    assert!(matches!(
        cdn.account_change(NOW),
        Some(Change::State(AccountState::Benched { until_ms, .. })) if until_ms == NOW + CDN_COOLDOWN_MS
    ));
}

#[test]
fn overload_and_backend_trouble() {
    assert_eq!(
        status(503, Value::Null),
        Failure::Overloaded {
            code: "HTTP 503".into()
        }
    );
    for code in ["server_is_overloaded", "slow_down"] {
        let expected = Failure::Overloaded { code: code.into() };
        assert_eq!(status(500, json!({"error": {"code": code}})), expected);
        assert_eq!(
            event(json!({"type": "error", "code": code})),
            Some(expected.clone())
        );
        assert_eq!(expected.action(), Action::MoveOn);
    }
    assert!(matches!(status(502, Value::Null), Failure::Backend { .. }));
}

#[test]
fn only_backend_trouble_is_tried_again_on_the_same_account() {
    let after = |value: &str| with_headers(502, &[("retry-after", value)], "").action();
    assert_eq!(
        status(502, Value::Null).action(),
        Action::RetryHere {
            after_ms: BACKEND_RETRY_PAUSE_MS
        }
    );
    assert_eq!(after("1"), Action::RetryHere { after_ms: 1000 });
    assert_eq!(
        after("0"),
        Action::RetryHere {
            after_ms: BACKEND_RETRY_PAUSE_MS
        }
    );
    assert_eq!(after("3"), Action::MoveOn);
    let in_stream = event(json!({"type": "error", "code": "server_error"})).unwrap();
    assert_eq!(
        in_stream.action(),
        Action::RetryHere {
            after_ms: BACKEND_RETRY_PAUSE_MS
        }
    );
    for other in [
        Failure::UsageLimit { until_ms: None },
        Failure::Throttled { for_ms: Some(100) },
        Failure::NotIncluded,
        Failure::Unauthorized,
        Failure::CdnChallenge,
        Failure::Stalled { what: "x".into() },
    ] {
        assert_eq!(other.action(), Action::MoveOn, "{other:?}");
    }
}

#[test]
fn every_form_of_retry_after() {
    let throttled = |headers: &[(&str, &str)]| with_headers(429, headers, "");
    assert_eq!(
        throttled(&[("retry-after", "12")]),
        Failure::Throttled {
            for_ms: Some(12_000)
        }
    );
    assert_eq!(
        throttled(&[("retry-after-ms", "1500"), ("retry-after", "12")]),
        Failure::Throttled { for_ms: Some(1500) }
    );
    // NOW is Mon, 02 Feb 2026 02:40:00 GMT.
    assert_eq!(
        throttled(&[("retry-after", "Mon, 02 Feb 2026 02:40:09 GMT")]),
        Failure::Throttled { for_ms: Some(9000) }
    );
    let message = json!({"error": {"code": "rate_limit_exceeded", "message": "try again in 5s"}});
    assert_eq!(
        with_headers(429, &[("retry-after", "2")], &message.to_string()),
        Failure::Throttled { for_ms: Some(2000) },
        "the header wins over the message"
    );
}

#[test]
fn every_event_shape_is_read_by_one_reader() {
    let limit = Some(Failure::UsageLimit { until_ms: None });
    assert_eq!(
        event(json!({"type": "error", "code": "usage_limit_reached"})),
        limit
    );
    assert_eq!(
        event(
            json!({"type": "error", "error": {"type": "usage_limit_reached", "code": "usage_limit_reached", "message": "m"}})
        ),
        limit
    );
    assert_eq!(
        event(
            json!({"type": "response.failed", "response": {"error": {"code": "insufficient_quota"}}})
        ),
        limit
    );
    let failed = json!({"type": "response.failed", "response": {"error": {
        "code": "rate_limit_exceeded", "message": "Please try again in 5s."}}});
    assert_eq!(
        event(failed),
        Some(Failure::Throttled { for_ms: Some(5000) })
    );
    assert_eq!(event(json!({"type": "response.created"})), None);
    assert!(matches!(
        event(json!({"type": "error"})),
        Some(Failure::Backend { .. })
    ));
}

#[test]
fn a_usage_limit_rests_the_family_the_reply_names_until_its_spent_window_resets() {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("x-codex-primary-used-percent", "20"),
        ("x-codex-primary-reset-after-seconds", "60"),
        ("x-codex-bengalfox-primary-used-percent", "100"),
        ("x-codex-bengalfox-primary-window-minutes", "300"),
        ("x-codex-bengalfox-primary-reset-after-seconds", "900"),
        ("x-codex-active-limit", "codex_bengalfox"),
    ] {
        headers.insert(name, value.parse().unwrap());
    }
    let seen = crate::domain::usage::from_headers(&headers, NOW);
    let body = json!({"error": {"type": "usage_limit_reached"}});
    let failure = Failure::from_status(
        StatusCode::TOO_MANY_REQUESTS,
        &headers,
        body.to_string().as_bytes(),
        NOW,
    );
    // The request was thought to be a main-model one; the reply knows better.
    let limit = failure.family_limit("codex", seen.as_ref(), NOW).unwrap();
    assert_eq!(limit.family, "codex_bengalfox");
    assert_eq!(limit.until_ms, NOW + 900_000);
    assert_eq!(limit.used_percent, Some(100.0));
}

#[test]
fn waits_in_messages() {
    assert_eq!(try_again_in("Please try again in 5s."), Some(5000));
    assert_eq!(try_again_in("try again in 1.5 seconds"), Some(1500));
    assert_eq!(try_again_in("Try again in 250ms"), Some(250));
    assert_eq!(try_again_in("try again in 2 minutes"), Some(120_000));
    assert_eq!(try_again_in("try again later"), None);
    assert_eq!(try_again_in("nothing"), None);
}

#[test]
fn bench_times() {
    let benched = |failure: Failure| match failure.account_change(NOW) {
        Some(Change::State(AccountState::Benched { until_ms, .. })) => Some(until_ms),
        _ => None,
    };
    let limit = Failure::UsageLimit { until_ms: None };
    assert_eq!(benched(limit.clone()), None, "a limit rests a family");
    assert_eq!(
        limit.family_limit("codex", None, NOW),
        Some(FamilyLimit {
            family: "codex".into(),
            until_ms: NOW + USAGE_LIMIT_FALLBACK_MS,
            since_ms: NOW,
            used_percent: None,
            reason: text::BENCH_USAGE_LIMIT.into()
        })
    );
    assert_eq!(Failure::NotIncluded.family_limit("codex", None, NOW), None);
    assert_eq!(
        benched(Failure::Throttled {
            for_ms: Some(u64::MAX / 2)
        }),
        Some(NOW + THROTTLE_MAX_MS)
    );
    assert_eq!(
        benched(Failure::Stalled { what: "x".into() }),
        Some(NOW + STALL_COOLDOWN_MS)
    );
    assert!(matches!(
        Failure::NotIncluded.account_change(NOW),
        Some(Change::State(AccountState::Disabled { .. }))
    ));
    assert!(Failure::backend("x").account_change(NOW).is_none());
    assert!(
        Failure::Overloaded { code: "x".into() }
            .account_change(NOW)
            .is_none()
    );
}
