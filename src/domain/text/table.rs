//! The `/dispatch-status` report as a table: toned spans, aligned columns within 80 columns,
//! the details a row cannot hold under it. The words come from [`super::report`].

use jiff::tz::TimeZone;

use super::countdown;
use super::report::{
    attention_fix, attention_reason, credits, family_line, paid_tag, reason, resting,
    spend_setting, staleness, window, window_label,
};
use crate::domain::select::{Availability, Reason};
use crate::domain::status::{AccountStatus, PoolStatus, WindowStatus};

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

#[cfg(test)]
mod tests;
