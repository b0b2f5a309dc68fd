//! The pool's state in words: why an account cannot serve, the `/dispatch-status` report and
//! the footer. Layout only; the time format and the plain sentences are the parent module's.

use jiff::tz::TimeZone;

use super::{countdown, when};
use crate::domain::account::Settings;
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
        Availability::Disabled { reason } => reason.clone(),
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

fn reason(reason: &Reason, now_ms: u64, tz: &TimeZone) -> String {
    match reason {
        Reason::Pinned => "pinned with /dispatch-use".into(),
        Reason::Kept => "this session already uses it (keeps the prompt cache warm)".into(),
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

/// The whole `/dispatch-status` report.
pub fn status(pool: &PoolStatus, now_ms: u64, tz: &TimeZone) -> String {
    if pool.accounts.is_empty() {
        return format!(
            "pi-dispatch: no accounts yet ({}). Add one with /dispatch-login.",
            pool.path
        );
    }
    let spend_money = pool.settings.spend_money;
    let mut lines = vec![format!(
        "pi-dispatch: {} account(s) in {}",
        pool.accounts.len(),
        pool.path
    )];
    for account in &pool.accounts {
        let tags = tags(account, spend_money, now_ms, tz);
        let plan = account
            .plan
            .as_ref()
            .map_or_else(String::new, |p| format!(" ({p})"));
        let marker = if account.active { "▸" } else { " " };
        lines.push(format!(
            "{marker} {}{plan}{}",
            account.label,
            bracket(&tags)
        ));
        let stale = if account.stale {
            format!("  [stale: {}]", staleness(account, now_ms))
        } else {
            String::new()
        };
        lines.push(format!("    {}{stale}", windows(account, now_ms, tz)));
        for family in &account.families {
            lines.push(format!("    {}", family_line(family, now_ms, tz)));
        }
        if let Some(credits) = account.credits.as_ref().and_then(credits) {
            lines.push(format!("    {credits}"));
        }
    }
    match &pool.active {
        Some(choice) => {
            let lead = if choice.preview {
                "Next request goes to"
            } else {
                "This session uses"
            };
            lines.push(format!(
                "{lead} {}: {}.",
                choice.label,
                reason(&choice.reason, now_ms, tz)
            ));
        }
        None => lines.push("No account can serve now.".into()),
    }
    lines.push(spend_setting(spend_money));
    if let Some(error) = &pool.write_error {
        lines.push(format!("Warning: could not save what was learned: {error}"));
    }
    lines.join("\n")
}

fn bracket(tags: &[String]) -> String {
    if tags.is_empty() {
        String::new()
    } else {
        format!("  [{}]", tags.join("; "))
    }
}

fn tags(account: &AccountStatus, spend_money: bool, now_ms: u64, tz: &TimeZone) -> Vec<String> {
    let mut tags = Vec::new();
    if account.active {
        tags.push(
            if account.pinned {
                "active, pinned"
            } else {
                "active"
            }
            .to_owned(),
        );
    }
    match &account.availability {
        Availability::Benched { .. } | Availability::Spent { .. } => {
            tags.push(resting(&account.availability, now_ms, tz));
        }
        Availability::NeedsLogin { .. } => {
            tags.push(format!("needs login: /dispatch-login {}", account.label));
        }
        Availability::Disabled { reason } => tags.push(format!("unusable: {reason}")),
        Availability::Ready if account.untouched => tags.push("untouched".into()),
        Availability::Ready => {}
    }
    if let Some(by) = account.paid_by {
        tags.push(paid_tag(by, spend_money));
    }
    tags
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
            bracket(&[resting(rest, now_ms, tz)])
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
