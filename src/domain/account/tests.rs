use super::*;
use crate::domain::usage::{FamilyUsage, Source, UsageWindow};

const NOW: u64 = 1_770_000_000_000;

/// A usable account with empty tokens and nothing learned yet (also binding_tests' pool).
pub(super) fn account() -> Account {
    Account {
        id: "id".into(),
        label: "a".into(),
        chatgpt_account_id: "acct".into(),
        chatgpt_user_id: None,
        email: None,
        plan: None,
        tokens: Tokens {
            access_token: String::new(),
            refresh_token: String::new(),
            id_token: None,
            expires_at_ms: 0,
        },
        state: AccountState::Usable,
        usage: None,
        attention: None,
        limits: Vec::new(),
        added_at_ms: 0,
    }
}

fn limit(family: &str, used_percent: Option<f64>) -> FamilyLimit {
    FamilyLimit {
        family: family.into(),
        until_ms: NOW + 3_600_000,
        since_ms: NOW,
        used_percent,
        reason: text::BENCH_USAGE_LIMIT.into(),
    }
}

fn seen(at: u64, main: f64, spark: Option<f64>, source: Source) -> Observation {
    let window = |used| UsageWindow {
        window_seconds: Some(604_800),
        used_percent: used,
        resets_at_ms: Some(NOW + 86_400_000),
    };
    Observation {
        usage: Usage {
            observed_at_ms: at,
            windows: vec![window(main)],
            families: spark
                .map(|used| FamilyUsage {
                    id: "spark".into(),
                    name: None,
                    windows: vec![window(used)],
                })
                .into_iter()
                .collect(),
            ..Usage::default()
        },
        plan: None,
        active_family: None,
        source,
    }
}

#[test]
fn only_newer_lower_numbers_lift_a_family_limit() {
    let mut a = account();
    a.limit(limit(MAIN_FAMILY, Some(60.0)));
    a.limit(limit("spark", None));
    // Not newer than the limit: no news.
    a.observe(&seen(NOW, 0.0, Some(0.0), Source::Headers));
    assert_eq!(a.limits.len(), 2);
    // The numbers the limit came with, again: no news; Spark not reported: no news.
    a.observe(&seen(NOW + 1, 60.0, None, Source::Headers));
    assert_eq!(a.limits.len(), 2);
    // Lower than when the limit came (a reset, a banked reset redeemed): lifted.
    a.observe(&seen(NOW + 2, 59.0, Some(100.0), Source::Endpoint));
    assert_eq!(a.limits, vec![limit("spark", None)]);
    a.observe(&seen(NOW + 3, 59.0, Some(99.0), Source::Headers));
    assert!(a.limits.is_empty());
    // A limit whose reset has passed goes with the next view.
    a.limit(limit("spark", Some(100.0)));
    a.observe(&seen(NOW + 3_600_000, 100.0, Some(100.0), Source::Headers));
    assert!(a.limits.is_empty());
}

#[test]
fn a_limit_takes_the_reason_the_backend_gave_and_replaces_one_of_its_family() {
    let mut a = account();
    a.observe(&Observation {
        usage: Usage {
            observed_at_ms: NOW - 1,
            reached: Some("workspace_owner_usage_limit_reached".into()),
            ..Usage::default()
        },
        plan: None,
        active_family: None,
        source: Source::Endpoint,
    });
    a.limit(limit(MAIN_FAMILY, None));
    a.limit(limit(MAIN_FAMILY, Some(100.0)));
    assert_eq!(a.limits.len(), 1);
    assert_eq!(a.limits[0].reason, "workspace usage limit reached");
    assert_eq!(a.limits[0].used_percent, Some(100.0));
}

#[test]
fn a_models_family_is_what_replies_said_else_a_family_named_like_it_else_the_main_one() {
    let mut file = AccountsFile::empty(1);
    let mut a = account();
    a.usage = Some(Usage {
        families: vec![FamilyUsage {
            id: "codex_bengalfox".into(),
            name: Some("GPT-5.3-Codex-Spark".into()),
            windows: Vec::new(),
        }],
        ..Usage::default()
    });
    file.accounts.push(a);
    assert_eq!(file.family_of(None), MAIN_FAMILY);
    assert_eq!(file.family_of(Some("gpt-5.5")), MAIN_FAMILY);
    assert_eq!(
        file.family_of(Some("gpt-5.3-codex-spark")),
        "codex_bengalfox"
    );
    file.learn_family("gpt-5.3-codex-spark", "codex");
    file.learn_family("gpt-5.5", "codex_other");
    assert_eq!(file.family_of(Some("gpt-5.3-codex-spark")), MAIN_FAMILY);
    assert_eq!(file.family_of(Some("gpt-5.5")), "codex_other");
}
