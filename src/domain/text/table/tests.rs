use super::*;
use crate::domain::account::Settings;
use crate::domain::status::Choice;
use crate::domain::usage::WindowKind;

const NOW: u64 = 1_770_000_000_000;

fn window(used: f64, reset_in_h: u64) -> Option<WindowStatus> {
    Some(WindowStatus {
        used_percent: used,
        resets_at_ms: Some(NOW + reset_in_h * 3_600_000),
        kind: WindowKind::Other,
    })
}

fn account(i: usize, availability: Availability) -> AccountStatus {
    AccountStatus {
        id: format!("id-{i}"),
        label: if i % 7 == 3 {
            format!("a-very-long-label-for-account-number-{i}@example.com")
        } else {
            format!("acct-{i}")
        },
        email: None,
        plan: Some(
            if i % 5 == 4 {
                "self_serve_business_usage_based"
            } else {
                "plus"
            }
            .into(),
        ),
        untouched: i % 4 == 1,
        active: i == 0,
        pinned: false,
        five_hour: window((i * 13 % 101) as f64, 2),
        weekly: if i % 6 == 5 {
            None
        } else {
            window((i * 29 % 101) as f64, 48)
        },
        other_windows: Vec::new(),
        families: Vec::new(),
        credits: None,
        paid_by: None,
        usage_observed_at_ms: Some(NOW),
        stale: i % 9 == 8,
        fetch_error: None,
        availability,
    }
}

fn pool(n: usize) -> PoolStatus {
    let availability = |i: usize| match i % 5 {
        2 => Availability::Benched {
            until_ms: NOW + 3_600_000,
            reason: "usage limit".into(),
        },
        3 => Availability::NeedsLogin {
            reason: "refresh_token_reused".into(),
        },
        _ => Availability::Ready,
    };
    PoolStatus {
        path: "/home/u/.pi/agent/dispatch.json".into(),
        accounts: (0..n).map(|i| account(i, availability(i))).collect(),
        active: Some(Choice {
            account_id: "id-0".into(),
            label: "acct-0".into(),
            reason: Reason::Untouched,
            preview: false,
        }),
        write_error: None,
        settings: Settings::default(),
    }
}

fn width(line: &Line) -> usize {
    line.iter().map(|s| s.text.chars().count()).sum()
}

#[test]
fn rows_are_aligned_and_never_wider_than_80_columns() {
    for n in [1, 5, 50] {
        let lines = status_lines(&pool(n), NOW, &TimeZone::UTC);
        let rows: Vec<&Line> = lines
            .iter()
            .filter(|l| l.first().is_some_and(|s| s.text == "▸ " || s.text == "  "))
            .collect();
        assert_eq!(rows.len(), n, "one row per account");
        for row in &rows {
            assert!(
                width(row) <= STATUS_WIDTH,
                "{n}: {:?}",
                plain(&[(*row).clone()])
            );
        }
        // The 5-hour gauge starts in the same column on every row.
        let starts: Vec<usize> = rows.iter().map(|row| width(&row[..4].to_vec())).collect();
        assert!(starts.windows(2).all(|w| w[0] == w[1]), "{n}: {starts:?}");
        let text = plain(&lines);
        assert!(!text.contains('\u{1b}'), "no escape codes");
        for account in &pool(n).accounts {
            let shown = fit(&account.label, LABEL_WIDTH);
            assert!(text.contains(&shown), "{n}: {shown} missing");
        }
    }
}

#[test]
fn a_row_says_at_a_glance_what_the_account_can_do() {
    let text = status(&pool(5), NOW, &TimeZone::UTC);
    let row = |label: &str| {
        text.lines()
            .find(|l| l.chars().skip(2).collect::<String>().starts_with(label))
            .unwrap_or_else(|| panic!("{label} in {text}"))
            .to_owned()
    };
    assert!(row("acct-0").starts_with("▸ acct-0"), "{text}");
    assert!(row("acct-0").ends_with("active"), "{text}");
    assert!(row("acct-1").ends_with("untouched"), "{text}");
    assert!(row("acct-2").contains(" 1h 0m ") && row("acct-2").ends_with("benched"));
    assert!(
        text.contains("\n    usage limit, back Mon 03:40, in 1h 0m\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "needs login: /dispatch-login a-very-long-label-for-account-number-3@example.com\n"
        ),
        "the command is never cut: {text}"
    );
    assert!(row("acct-4").contains("▰▰▰▱▱  52%"), "{text}");
    assert!(
        !text.lines().any(|l| l.ends_with(' ')),
        "no trailing spaces: {text}"
    );
    assert!(text.contains(
        "\nThis session uses acct-0: untouched: every window at 0%, so using it starts its clocks now.\nPaid requests: off."
    ), "{text}");
}
