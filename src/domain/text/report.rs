//! The pool's state in words: why an account cannot serve, the `/dispatch-status` report and
//! the footer. Layout only; the time format and the plain sentences are the parent module's.

use jiff::tz::TimeZone;

use super::{BENCH_CDN, countdown, when};
use crate::domain::account::{AttentionKind, Settings};
use crate::domain::failure::Failure;
use crate::domain::select::{Availability, PaidBy, Reason};
use crate::domain::status::{AccountStatus, FamilyStatus, PoolStatus, WindowStatus};
use crate::domain::usage::{Credits, WindowKind};

/// A failed attempt, in words for a person.
pub fn failure(failure: &Failure) -> String {
    match failure {
        Failure::UsageLimit { .. } => "usage limit reached".into(),
        Failure::NotIncluded => "plan does not include Codex".into(),
        Failure::Throttled { .. } => "throttled by the backend".into(),
        Failure::Unauthorized => "token refused".into(),
        Failure::LoggedOut { reason } => format!("must log in again ({reason})"),
        Failure::Backend { what, .. } => format!("backend trouble ({what})"),
        Failure::NeedsAttention(kind, _) => attention_reason(*kind).into(),
        Failure::CdnChallenge => BENCH_CDN.into(),
        Failure::Overloaded { code } => format!("the backend is overloaded ({code})"),
        Failure::Stalled { what } => format!("stalled ({what})"),
        Failure::RequestFault { code } => match code {
            Some(code) => format!("the request was refused ({code})"),
            None => "the request was refused".into(),
        },
        Failure::ForeignCiphertext => "another account's reasoning in the request".into(),
    }
}

/// What is wrong with an account that needs attention.
pub fn attention_reason(kind: AttentionKind) -> &'static str {
    match kind {
        AttentionKind::Deactivated => "the account is deactivated",
        AttentionKind::Revoked => "its login was revoked",
        AttentionKind::MissingScope => "its login lacks a permission Codex needs",
        AttentionKind::TokenRefused => "the backend refuses its token even after a refresh",
        AttentionKind::WorkspaceDeactivated => "its workspace is deactivated",
        AttentionKind::Forbidden => "the backend does not allow this account",
        AttentionKind::Other => "the backend refused the account",
    }
}

/// What the user can do about it.
pub fn attention_fix(kind: AttentionKind, label: &str) -> String {
    match kind {
        AttentionKind::WorkspaceDeactivated | AttentionKind::Forbidden => format!(
            "check it at chatgpt.com (a workspace owner may need to act); /dispatch-status \
             tries it again, /dispatch-login {label} after a change"
        ),
        AttentionKind::Deactivated => {
            format!("check it at chatgpt.com, then /dispatch-login {label}")
        }
        _ => format!("log it in again: /dispatch-login {label}"),
    }
}

pub fn availability(availability: &Availability) -> String {
    match availability {
        Availability::Ready => "can serve".into(),
        Availability::Benched { reason, .. } => reason.clone(),
        Availability::Spent { reached, .. } => reached
            .as_deref()
            .and_then(super::workspace_limit)
            .unwrap_or("usage limit reached")
            .into(),
        Availability::NeedsLogin { .. } => "needs /dispatch-login".into(),
        Availability::NeedsAttention(attention) => attention_reason(attention.kind).into(),
        Availability::Disabled { reason } => reason.clone(),
    }
}

fn reason(reason: &Reason, now_ms: u64, tz: &TimeZone) -> String {
    match reason {
        Reason::Pinned => "pinned with /dispatch-use".into(),
        Reason::Kept => "this session already uses it (keeps the prompt cache warm)".into(),
        Reason::ServedBefore => {
            "it served this session before, so its prompt cache and reasoning are there".into()
        }
        Reason::Untouched => {
            "untouched: every window at 0%, so using it starts its clocks now".into()
        }
        Reason::SoonestReset { resets_at_ms, kind } => format!(
            "its {} window resets soonest, so what it has left is lost first ({})",
            window_name(*kind),
            when(*resets_at_ms, now_ms, tz)
        ),
        Reason::Any { .. } => {
            "no account is untouched or has a known reset; picked at random".into()
        }
        Reason::UsageUnknown { .. } => "no account's usage could be learned (see the stale rows); \
             picked at random"
            .into(),
        Reason::Paid { .. } => "every account's included quota is spent and paid requests are on \
             (/dispatch-settings), so this one spends money"
            .into(),
    }
}

/// Why an account was not asked, when no account could answer: its state, and whether money
/// could have paid.
pub fn standing(availability: &Availability, paid_by: Option<PaidBy>, spend_money: bool) -> String {
    match (availability, paid_by) {
        (Availability::Ready, Some(by)) => {
            format!("its usage-based plan {}", paid_tag(by, spend_money))
        }
        (other, Some(by)) => format!(
            "{}; {}",
            self::availability(other),
            paid_tag(by, spend_money)
        ),
        (other, None) => self::availability(other),
    }
}

/// How money could pay for an account, and whether the user allows it.
fn paid_tag(by: PaidBy, spend_money: bool) -> String {
    let what = match by {
        PaidBy::Credits => "credits would pay",
        PaidBy::UsageBasedPlan => "bills every request",
    };
    if spend_money {
        format!("{what}: used once no account has included quota")
    } else {
        format!("{what}, but paid requests are off (/dispatch-settings spend on)")
    }
}

fn window_name(kind: WindowKind) -> &'static str {
    match kind {
        WindowKind::FiveHour => "5-hour",
        WindowKind::Weekly => "weekly",
        WindowKind::Monthly => "monthly",
        WindowKind::Other => "longest",
    }
}

/// "usage limit, back Tue 09:00, in 2h 14m"
fn resting(availability: &Availability, now_ms: u64, tz: &TimeZone) -> String {
    let back = availability
        .back_at()
        .map_or_else(|| "later".to_owned(), |at| when(at, now_ms, tz));
    format!("{}, back {back}", self::availability(availability))
}

/// "GPT-5.3-Codex-Spark: 5h 100% used (resets …) · week 20% used  [usage limit, back …]"
fn family_line(family: &FamilyStatus, now_ms: u64, tz: &TimeZone) -> String {
    let windows = if family.windows.is_empty() {
        "no windows reported".to_owned()
    } else {
        family
            .windows
            .iter()
            .map(|w| window(window_label(w.kind), Some(w), now_ms, tz))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let tag = match &family.availability {
        rest @ (Availability::Benched { .. } | Availability::Spent { .. }) => {
            format!("  [{}]", resting(rest, now_ms, tz))
        }
        _ => String::new(),
    };
    format!("{}: {windows}{tag}", family.name)
}

fn credits(credits: &Credits) -> Option<String> {
    if credits.unlimited {
        return Some("credits: unlimited".into());
    }
    let balance = credits.balance.filter(|b| *b > 0.0);
    match (credits.has_credits, balance) {
        (_, Some(balance)) => Some(format!("credits: {} left", amount(balance))),
        (true, None) => Some("credits: some left".into()),
        (false, None) => None,
    }
}

/// 120 → "120", 12.5 → "12.5".
fn amount(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The paid-requests setting, as the status report's last line says it.
pub fn spend_setting(spend_money: bool) -> String {
    if spend_money {
        "Paid requests: on. Credits and usage-based plans serve once every included quota is \
         spent (/dispatch-settings spend off stops that)."
            .into()
    } else {
        "Paid requests: off. Credits and usage-based plans are never used (/dispatch-settings \
         spend on allows them once every included quota is spent)."
            .into()
    }
}

/// `/dispatch-settings` without arguments.
pub fn settings(settings: &Settings, path: &str) -> String {
    let spend = if settings.spend_money {
        "spend on: once every account's included quota is spent, accounts whose credits pay and \
         usage-based plans serve, at your expense"
    } else {
        "spend off: credits and usage-based plans are never used"
    };
    format!(
        "pi-dispatch settings ({path}):\n  {spend}.\nChange with /dispatch-settings spend on|off."
    )
}

fn window_label(kind: WindowKind) -> &'static str {
    match kind {
        WindowKind::FiveHour => "5h",
        WindowKind::Weekly => "week",
        WindowKind::Monthly => "month",
        WindowKind::Other => "other",
    }
}

fn window(name: &str, w: Option<&WindowStatus>, now_ms: u64, tz: &TimeZone) -> String {
    match w {
        None => format!("{name} —"),
        Some(w) => {
            let reset = w.resets_at_ms.map_or_else(String::new, |at| {
                format!(" (resets {})", when(at, now_ms, tz))
            });
            format!("{name} {}% used{reset}", w.used_percent.round())
        }
    }
}

/// How a piece of the status report is meant to look; the extension maps each to a colour of
/// pi's theme where it has one, and print mode shows plain text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Plain,
    Accent,
    Muted,
    Dim,
    Success,
    Warning,
    Error,
}

/// A run of text in one tone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub text: String,
    pub tone: Tone,
}

/// One line of the report.
pub type Line = Vec<Span>;

/// The report's width: every account row fits a standard terminal.
pub const STATUS_WIDTH: usize = 80;
const LABEL_WIDTH: usize = 18;
const PLAN_WIDTH: usize = 10;
const BAR_CELLS: usize = 5;
/// A gauge: the bar, a space and up to "100%".
const GAUGE_WIDTH: usize = BAR_CELLS + 5;
const RESETS_WIDTH: usize = 8;

/// The whole `/dispatch-status` report, as plain text.
pub fn status(pool: &PoolStatus, now_ms: u64, tz: &TimeZone) -> String {
    plain(&status_lines(pool, now_ms, tz))
}

/// Lines as plain text.
pub fn plain(lines: &[Line]) -> String {
    lines
        .iter()
        .map(|line| {
            line.iter()
                .map(|span| span.text.as_str())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn span(text: impl Into<String>, tone: Tone) -> Span {
    Span {
        text: text.into(),
        tone,
    }
}

/// The report: a header, one aligned row per account (marker, label, plan, a bar and the
/// percentage used of its 5-hour and weekly windows, the next reset, its state), under a row
/// any detail it needs (why it cannot serve and until when, other windows by name, stale usage),
/// and the line that says who serves the session and why. No account row is wider than
/// [`STATUS_WIDTH`].
pub fn status_lines(pool: &PoolStatus, now_ms: u64, tz: &TimeZone) -> Vec<Line> {
    if pool.accounts.is_empty() {
        let text = format!(
            "pi-dispatch: no accounts yet ({}). Add one with /dispatch-login.",
            pool.path
        );
        return vec![vec![span(text, Tone::Plain)]];
    }
    let columns = Columns {
        label: column_width(
            pool.accounts.iter().map(|a| a.label.as_str()),
            "account",
            LABEL_WIDTH,
        ),
        plan: column_width(
            pool.accounts
                .iter()
                .map(|a| a.plan.as_deref().unwrap_or("—")),
            "plan",
            PLAN_WIDTH,
        ),
    };
    let mut lines = vec![vec![span(
        format!(
            "pi-dispatch: {} account(s) in {}",
            pool.accounts.len(),
            pool.path
        ),
        Tone::Plain,
    )]];
    let header = format!(
        "  {} {}  {}  {}  {}  state",
        cell("account", columns.label),
        cell("plan", columns.plan),
        cell("5h used", GAUGE_WIDTH),
        cell("week used", GAUGE_WIDTH),
        cell("resets", RESETS_WIDTH),
    );
    lines.push(vec![span(header, Tone::Dim)]);
    for account in &pool.accounts {
        lines.push(row(account, &columns, now_ms));
        for detail in details(account, pool.settings.spend_money, now_ms, tz) {
            // A detail is a sentence with a command in it: never cut, even if it wraps.
            lines.push(vec![span(format!("    {detail}"), Tone::Muted)]);
        }
    }
    let closing = match &pool.active {
        Some(choice) => {
            let lead = match (&choice.reason, choice.preview) {
                (Reason::ServedBefore, _) => "This session continues on",
                (_, true) => "Next request goes to",
                (_, false) => "This session uses",
            };
            format!(
                "{lead} {}: {}.",
                choice.label,
                reason(&choice.reason, now_ms, tz)
            )
        }
        None => "No account can serve now.".into(),
    };
    lines.push(vec![span(closing, Tone::Plain)]);
    lines.push(vec![span(
        spend_setting(pool.settings.spend_money),
        Tone::Muted,
    )]);
    if let Some(error) = &pool.write_error {
        lines.push(vec![span(
            format!("Warning: could not save what was learned: {error}"),
            Tone::Warning,
        )]);
    }
    lines
}

/// The widths of the columns that depend on the pool.
struct Columns {
    label: usize,
    plan: usize,
}

/// The width of a column: its longest entry or its head, at most `max`.
fn column_width<'a>(entries: impl Iterator<Item = &'a str>, head: &str, max: usize) -> usize {
    entries
        .map(|e| e.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(head.chars().count(), max)
}

/// `text` cut to `width` characters, ending in "…" when cut.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `text` fitted and padded to exactly `width` characters.
fn cell(text: &str, width: usize) -> String {
    format!("{:width$}", fit(text, width))
}

/// One account's row.
fn row(account: &AccountStatus, columns: &Columns, now_ms: u64) -> Line {
    let (marker, label_tone) = if account.active {
        ("▸ ", Tone::Accent)
    } else {
        ("  ", Tone::Plain)
    };
    let mut line = vec![
        span(marker, Tone::Accent),
        span(cell(&account.label, columns.label), label_tone),
        span(" ", Tone::Plain),
        span(
            cell(account.plan.as_deref().unwrap_or("—"), columns.plan),
            Tone::Muted,
        ),
    ];
    for window in [account.five_hour.as_ref(), account.weekly.as_ref()] {
        line.push(span("  ", Tone::Plain));
        line.extend(gauge(window));
    }
    // A resting account's reset that matters is the one that brings it back.
    let resets = account
        .availability
        .back_at()
        .or_else(|| next_reset(account, now_ms))
        .map_or_else(|| "—".to_owned(), |at| countdown(at.saturating_sub(now_ms)));
    line.push(span(
        format!("  {}", cell(&resets, RESETS_WIDTH)),
        Tone::Muted,
    ));
    let (state, tone) = state_tag(account);
    if state.is_empty() {
        if let Some(last) = line.last_mut() {
            last.text = last.text.trim_end().to_owned();
        }
    } else {
        let used: usize = line.iter().map(|s| s.text.chars().count()).sum();
        let room = STATUS_WIDTH.saturating_sub(used + 2);
        line.push(span(format!("  {}", fit(&state, room)), tone));
    }
    line
}

/// "▰▰▱▱▱  42%", toned by how much is used; "—" when the window is unknown.
fn gauge(window: Option<&WindowStatus>) -> Vec<Span> {
    let Some(window) = window else {
        return vec![span(cell("—", GAUGE_WIDTH), Tone::Dim)];
    };
    let used = window.used_percent.clamp(0.0, 100.0);
    let filled = ((used / 100.0) * BAR_CELLS as f64).round() as usize;
    let tone = match used {
        u if u >= 90.0 => Tone::Error,
        u if u >= 70.0 => Tone::Warning,
        _ => Tone::Success,
    };
    vec![
        span("▰".repeat(filled), tone),
        span("▱".repeat(BAR_CELLS - filled), Tone::Dim),
        span(format!(" {:>4}", format!("{}%", used.round())), tone),
    ]
}

/// The next reset among the account's windows that is still ahead.
fn next_reset(account: &AccountStatus, now_ms: u64) -> Option<u64> {
    [account.five_hour.as_ref(), account.weekly.as_ref()]
        .into_iter()
        .flatten()
        .chain(&account.other_windows)
        .filter_map(|w| w.resets_at_ms)
        .filter(|&at| at > now_ms)
        .min()
}

/// A word or two for the row's last column, and how it looks.
fn state_tag(account: &AccountStatus) -> (String, Tone) {
    let mut words = Vec::new();
    if account.active {
        words.push(if account.pinned { "pinned" } else { "active" });
    }
    let (word, tone) = match &account.availability {
        Availability::Benched { .. } => (Some("benched"), Tone::Warning),
        Availability::Spent { .. } => (Some("spent"), Tone::Warning),
        Availability::NeedsLogin { .. } => (Some("needs login"), Tone::Error),
        Availability::NeedsAttention(_) => (Some("needs attention"), Tone::Error),
        Availability::Disabled { .. } => (Some("unusable"), Tone::Error),
        Availability::Ready if account.untouched => (Some("untouched"), Tone::Success),
        Availability::Ready if account.active => (None, Tone::Accent),
        Availability::Ready => (None, Tone::Plain),
    };
    words.extend(word);
    if account.stale {
        words.push("stale");
    }
    (words.join(", "), tone)
}

/// What an account's row cannot say: why it cannot serve and until when, its other windows,
/// and how old its usage is when stale.
fn details(account: &AccountStatus, spend_money: bool, now_ms: u64, tz: &TimeZone) -> Vec<String> {
    let mut details = Vec::new();
    match &account.availability {
        rest @ (Availability::Benched { .. } | Availability::Spent { .. }) => {
            details.push(resting(rest, now_ms, tz));
        }
        Availability::NeedsLogin { .. } => {
            details.push(format!("needs login: /dispatch-login {}", account.label));
        }
        Availability::NeedsAttention(attention) => {
            let detail = attention
                .detail
                .as_ref()
                .map_or_else(String::new, |d| format!(" ({d})"));
            details.push(format!(
                "needs attention: {}{detail}",
                attention_reason(attention.kind)
            ));
            details.push(format!(
                "fix: {}",
                attention_fix(attention.kind, &account.label)
            ));
        }
        Availability::Disabled { reason } => details.push(format!("unusable: {reason}")),
        Availability::Ready => {}
    }
    if !account.other_windows.is_empty() {
        let others: Vec<String> = account
            .other_windows
            .iter()
            .map(|w| window(window_label(w.kind), Some(w), now_ms, tz))
            .collect();
        details.push(others.join(" · "));
    }
    for family in &account.families {
        details.push(family_line(family, now_ms, tz));
    }
    if let Some(credits) = account.credits.as_ref().and_then(credits) {
        details.push(credits);
    }
    if let Some(by) = account.paid_by {
        details.push(paid_tag(by, spend_money));
    }
    if account.stale {
        details.push(format!("stale: {}", staleness(account, now_ms)));
    }
    details
}

/// "5h 12% used (resets Tue 09:00, in 2h 14m) · week —"
pub fn windows(account: &AccountStatus, now_ms: u64, tz: &TimeZone) -> String {
    let mut parts = vec![
        window("5h", account.five_hour.as_ref(), now_ms, tz),
        window("week", account.weekly.as_ref(), now_ms, tz),
    ];
    for other in &account.other_windows {
        parts.push(window(window_label(other.kind), Some(other), now_ms, tz));
    }
    parts.join(" · ")
}

fn staleness(account: &AccountStatus, now_ms: u64) -> String {
    let age = account.usage_observed_at_ms.map_or_else(
        || "never fetched".to_owned(),
        |at| format!("{} old", countdown(now_ms.saturating_sub(at))),
    );
    match &account.fetch_error {
        Some(error) => format!("{age}; {error}"),
        None => age,
    }
}

/// The footer: the session's account and what is left of its windows.
pub fn footer(active: Option<&AccountStatus>) -> String {
    let Some(account) = active else {
        return "⇄ no usable account".into();
    };
    let left = |w: Option<&WindowStatus>| {
        w.map_or_else(
            || "?".to_owned(),
            // `+ 0.0` turns a rounded -0 into 0.
            |w| format!("{}%", (100.0 - w.used_percent).round().max(0.0) + 0.0),
        )
    };
    format!(
        "⇄ {} · 5h {} left · week {} left",
        account.label,
        left(account.five_hour.as_ref()),
        left(account.weekly.as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::status::Choice;

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
}
