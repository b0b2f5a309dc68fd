use super::*;
use serde_json::json;

const NOW: u64 = 1_770_000_000_000;

fn window(kind_seconds: u64, used: f64, reset_in_s: u64) -> Value {
    json!({"used_percent": used, "limit_window_seconds": kind_seconds,
           "reset_after_seconds": reset_in_s, "reset_at": NOW / 1000 + reset_in_s})
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    headers
}

#[test]
fn windows_are_told_apart_by_length_not_position() {
    // A weekly-only account reports its weekly window as the primary one.
    let payload = json!({"plan_type": "team", "rate_limit": {
        "primary_window": window(WEEK_S, 30.0, 1000), "secondary_window": null}});
    let seen = from_payload(&payload, NOW).unwrap();
    assert_eq!(seen.plan.as_deref(), Some("team"));
    assert_eq!(seen.usage.windows.len(), 1);
    assert!(seen.usage.window(WindowKind::FiveHour).is_none());
    let weekly = seen.usage.window(WindowKind::Weekly).unwrap();
    assert_eq!(weekly.used_percent, 30.0);
    assert_eq!(weekly.resets_at_ms, Some(NOW + 1_000_000));
}

#[test]
fn every_plan_shape_reads_by_length_and_no_data_windows_are_left_out() {
    // Free: a 30-day window and a "no data" secondary (0%, no length, no reset).
    let free = json!({"plan_type": "free", "rate_limit": {
        "primary_window": window(30 * DAY_S, 12.0, 1000),
        "secondary_window": {"used_percent": 0, "limit_window_seconds": null,
                             "reset_after_seconds": null, "reset_at": null}}});
    let seen = from_payload(&free, NOW).unwrap();
    assert_eq!(seen.usage.windows.len(), 1, "{:?}", seen.usage.windows);
    assert_eq!(seen.usage.windows[0].kind(), WindowKind::Monthly);
    assert!(!seen.usage.is_untouched(NOW));
    // Plus with a monthly meter: 5 h, weekly, and (in headers, minutes) a 31-day month.
    let seen = from_headers(
        &headers(&[
            ("x-codex-primary-used-percent", "0"),
            ("x-codex-primary-window-minutes", "0"),
            ("x-codex-primary-reset-at", ""),
            ("x-codex-secondary-used-percent", "4"),
            ("x-codex-secondary-window-minutes", "44640"),
            ("x-codex-secondary-reset-after-seconds", "100"),
        ]),
        NOW,
    )
    .unwrap();
    assert_eq!(
        seen.usage.windows.len(),
        1,
        "the 0-minute window is no data"
    );
    assert_eq!(seen.usage.windows[0].kind(), WindowKind::Monthly);
}

#[test]
fn missing_and_null_fields_are_tolerated() {
    for payload in [
        json!({}),
        json!(null),
        json!({"rate_limit": null}),
        json!({"rate_limit": {"primary_window": {"used_percent": null}}}),
        json!({"rate_limit": {"primary_window": "x", "secondary_window": 3}}),
        json!({"credits": null, "additional_rate_limits": null, "rate_limit_reached_type": null}),
        json!({"additional_rate_limits": [null, 3, {"rate_limit": null}]}),
    ] {
        assert_eq!(from_payload(&payload, NOW), None, "{payload}");
    }
    let sparse = json!({"rate_limit": {"primary_window": {"used_percent": 5}}});
    let seen = from_payload(&sparse, NOW).unwrap();
    assert_eq!(seen.usage.windows[0].kind(), WindowKind::Other);
    assert_eq!(seen.usage.windows[0].resets_at_ms, None);
    let odd = json!({"credits": {"balance": "lots"}, "rate_limit_reached_type": 7});
    let seen = from_payload(&odd, NOW).unwrap();
    assert_eq!(seen.usage.credits, Some(Credits::default()));
    assert_eq!(seen.usage.reached, None);
}

#[test]
fn additional_limits_are_families_with_their_own_windows() {
    let payload = json!({"rate_limit": {"primary_window": window(FIVE_HOURS_S, 1.0, 10)},
        "additional_rate_limits": [
            {"limit_name": "GPT-5.3-Codex-Spark", "metered_feature": "codex_bengalfox",
             "rate_limit": {"primary_window": window(WEEK_S, 100.0, 10)}},
            {"limit_name": "Other Model", "rate_limit": null}],
        "credits": {"has_credits": true, "unlimited": false, "balance": "12.5"},
        "rate_limit_reached_type": {"type": "workspace_member_credits_depleted"}});
    let seen = from_payload(&payload, NOW).unwrap();
    assert_eq!(seen.usage.windows.len(), 1);
    let spark = seen.usage.family("codex_bengalfox").unwrap();
    assert_eq!(spark.name.as_deref(), Some("GPT-5.3-Codex-Spark"));
    assert_eq!(spark.windows[0].used_percent, 100.0);
    // Without a metered feature, the name is the id.
    assert!(seen.usage.family("other model").unwrap().windows.is_empty());
    assert_eq!(
        seen.usage.windows_of("codex_bengalfox")[0].used_percent,
        100.0
    );
    assert_eq!(seen.usage.windows_of(MAIN_FAMILY)[0].used_percent, 1.0);
    assert_eq!(seen.usage.windows_of("unknown")[0].used_percent, 1.0);
    assert_eq!(
        seen.usage.spent_until(NOW),
        None,
        "the main family can serve"
    );
    let credits = seen.usage.credits.as_ref().unwrap();
    assert_eq!(credits.balance, Some(12.5));
    assert!(credits.can_pay());
    assert_eq!(
        seen.usage.reached.as_deref(),
        Some("workspace_member_credits_depleted")
    );
}

#[test]
fn credits_pay_when_unlimited_or_with_a_balance() {
    let credits = |has_credits, unlimited, balance| Credits {
        has_credits,
        unlimited,
        balance,
    };
    assert!(credits(false, true, Some(0.0)).can_pay());
    assert!(credits(true, false, Some(1.0)).can_pay());
    assert!(credits(true, false, None).can_pay());
    assert!(!credits(true, false, Some(0.0)).can_pay());
    assert!(!credits(false, false, Some(50.0)).can_pay());
}

#[test]
fn headers_give_the_same_view() {
    let seen = from_headers(
        &headers(&[
            ("x-codex-primary-used-percent", "12.5"),
            ("x-codex-primary-window-minutes", "300"),
            ("x-codex-primary-reset-after-seconds", "60"),
            ("x-codex-secondary-used-percent", "40"),
            ("x-codex-secondary-window-minutes", "10080"),
            ("x-codex-secondary-reset-at", "1770000900"),
            ("x-codex-plan-type", "pro"),
            ("x-codex-credits-has-credits", "True"),
            ("x-codex-credits-unlimited", "false"),
            ("x-codex-credits-balance", "3"),
        ]),
        NOW,
    )
    .unwrap();
    assert_eq!(seen.plan.as_deref(), Some("pro"));
    assert_eq!(seen.source, Source::Headers);
    let five = seen.usage.window(WindowKind::FiveHour).unwrap();
    assert_eq!(
        (five.used_percent, five.resets_at_ms),
        (12.5, Some(NOW + 60_000))
    );
    let weekly = seen.usage.window(WindowKind::Weekly).unwrap();
    assert_eq!(weekly.resets_at_ms, Some(1_770_000_900_000));
    assert_eq!(
        seen.usage.credits,
        Some(Credits {
            has_credits: true,
            unlimited: false,
            balance: Some(3.0)
        })
    );
    assert_eq!(from_headers(&HeaderMap::new(), NOW), None);
}

#[test]
fn family_headers_are_filed_under_their_family_and_the_active_one_is_named() {
    let spark = [
        ("x-codex-bengalfox-primary-used-percent", "100"),
        ("x-codex-bengalfox-primary-window-minutes", "300"),
        ("x-codex-bengalfox-primary-reset-after-seconds", "600"),
        ("x-codex-bengalfox-limit-name", "GPT-5.3-Codex-Spark"),
    ];
    let main = [
        ("x-codex-primary-used-percent", "7"),
        ("x-codex-primary-window-minutes", "300"),
    ];
    // A main-model request: the plain headers are the main family's.
    let mut pairs: Vec<_> = main.iter().chain(&spark).copied().collect();
    pairs.push(("x-codex-active-limit", "codex"));
    let seen = from_headers(&headers(&pairs), NOW).unwrap();
    assert_eq!(seen.active_family.as_deref(), Some(MAIN_FAMILY));
    assert_eq!(seen.usage.windows[0].used_percent, 7.0);
    let family = seen.usage.family("codex_bengalfox").unwrap();
    assert_eq!(family.name.as_deref(), Some("GPT-5.3-Codex-Spark"));
    assert_eq!(family.windows[0].used_percent, 100.0);

    // A Spark request, with the family's own headers: the plain ones may carry either
    // family's numbers, so they are not taken as the main family's.
    let mut pairs: Vec<_> = main.iter().chain(&spark).copied().collect();
    pairs.push(("x-codex-active-limit", "codex_bengalfox"));
    let seen = from_headers(&headers(&pairs), NOW).unwrap();
    assert!(seen.usage.windows.is_empty(), "{:?}", seen.usage.windows);
    assert_eq!(
        seen.usage.family("codex_bengalfox").unwrap().windows[0].used_percent,
        100.0
    );

    // A Spark request without the family's own headers: the plain ones are the family's.
    let mut pairs: Vec<_> = main.to_vec();
    pairs.push(("x-codex-active-limit", "codex-bengalfox"));
    let seen = from_headers(&headers(&pairs), NOW).unwrap();
    assert!(seen.usage.windows.is_empty());
    assert_eq!(
        seen.usage.family("codex_bengalfox").unwrap().windows[0].used_percent,
        7.0
    );
}

#[test]
fn a_reset_in_the_past_means_the_window_starts_over() {
    let usage = Usage {
        observed_at_ms: NOW,
        windows: vec![UsageWindow {
            window_seconds: Some(WEEK_S),
            used_percent: 100.0,
            resets_at_ms: Some(NOW + 10),
        }],
        ..Usage::default()
    };
    assert_eq!(usage.spent_until(NOW), Some(NOW + 10));
    assert!(!usage.is_untouched(NOW));
    assert_eq!(usage.spent_until(NOW + 10), None);
    assert!(usage.is_untouched(NOW + 10));
}

#[test]
fn the_binding_window_is_the_longest_with_a_reset_ahead() {
    let w = |seconds, reset: Option<u64>| UsageWindow {
        window_seconds: Some(seconds),
        used_percent: 10.0,
        resets_at_ms: reset,
    };
    let set = [
        w(FIVE_HOURS_S, Some(NOW + 1)),
        w(30 * DAY_S, Some(NOW + 9)),
        w(WEEK_S, Some(NOW + 5)),
    ];
    assert_eq!(
        windows::binding(&set, NOW).unwrap().kind(),
        WindowKind::Monthly
    );
    let passed = [w(FIVE_HOURS_S, Some(NOW + 1)), w(WEEK_S, Some(NOW - 1))];
    assert_eq!(
        windows::binding(&passed, NOW).unwrap().kind(),
        WindowKind::FiveHour
    );
    assert!(windows::binding(&[w(WEEK_S, None)], NOW).is_none());
}

fn weekly(used: f64) -> UsageWindow {
    UsageWindow {
        window_seconds: Some(WEEK_S),
        used_percent: used,
        resets_at_ms: None,
    }
}

fn family(id: &str, used: f64) -> FamilyUsage {
    FamilyUsage {
        id: id.into(),
        name: None,
        windows: vec![weekly(used)],
    }
}

#[test]
fn headers_replace_the_families_they_carry_and_the_endpoint_replaces_everything() {
    let old = Usage {
        observed_at_ms: NOW,
        windows: vec![weekly(10.0)],
        families: vec![family("spark", 50.0), family("other", 5.0)],
        credits: Some(Credits::default()),
        reached: Some("rate_limit_reached".into()),
    };
    let from_reply = Usage {
        observed_at_ms: NOW + 1,
        families: vec![family("spark", 60.0)],
        ..Usage::default()
    };
    let merged = Usage::merge(Some(old.clone()), from_reply.clone(), Source::Headers);
    assert_eq!(merged.windows, old.windows, "not carried: kept");
    assert_eq!(
        merged.families,
        vec![family("spark", 60.0), family("other", 5.0)]
    );
    assert_eq!(merged.credits, old.credits);
    assert_eq!(merged.observed_at_ms, NOW + 1);

    let from_endpoint = Usage {
        observed_at_ms: NOW + 2,
        windows: vec![weekly(11.0)],
        ..Usage::default()
    };
    let replaced = Usage::merge(
        Some(merged.clone()),
        from_endpoint.clone(),
        Source::Endpoint,
    );
    assert_eq!(replaced, from_endpoint);
    // An older observation never overwrites a newer one.
    assert_eq!(
        Usage::merge(Some(replaced.clone()), from_reply, Source::Headers),
        replaced
    );
}

#[test]
fn a_view_shows_a_limit_lifted_only_below_what_was_seen_when_it_came() {
    let usage = Usage {
        observed_at_ms: NOW,
        windows: vec![weekly(40.0)],
        families: vec![family("spark", 97.0)],
        ..Usage::default()
    };
    assert!(usage.shows_below(MAIN_FAMILY, 100.0, NOW));
    assert!(usage.shows_below("spark", 100.0, NOW));
    // A limit that came at 98%: 97% is news, 98% or more is not.
    assert!(usage.shows_below("spark", 98.0, NOW));
    assert!(!usage.shows_below("spark", 97.0, NOW));
    assert!(!usage.shows_below("unreported", 100.0, NOW));
    let reached = Usage {
        reached: Some("workspace_owner_credits_depleted".into()),
        ..usage
    };
    assert!(!reached.shows_below(MAIN_FAMILY, 100.0, NOW));
}
