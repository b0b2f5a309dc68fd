//! The pool's state in words: why an account cannot serve or why it was chosen, its windows,
//! families and credits, and the footer. The `/dispatch-status` table that lays them out is
//! [`super::table`].

use jiff::tz::TimeZone;

use super::{BENCH_CDN, countdown, when};
use crate::domain::account::{AttentionKind, Settings};
use crate::domain::failure::Failure;
use crate::domain::select::{Availability, PaidBy, Reason};
use crate::domain::status::{AccountStatus, FamilyStatus, WindowStatus};
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

pub(super) fn reason(reason: &Reason, now_ms: u64, tz: &TimeZone) -> String {
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
pub(super) fn paid_tag(by: PaidBy, spend_money: bool) -> String {
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
pub(super) fn resting(availability: &Availability, now_ms: u64, tz: &TimeZone) -> String {
    let back = availability
        .back_at()
        .map_or_else(|| "later".to_owned(), |at| when(at, now_ms, tz));
    format!("{}, back {back}", self::availability(availability))
}

/// "GPT-5.3-Codex-Spark: 5h 100% used (resets …) · week 20% used  [usage limit, back …]"
pub(super) fn family_line(family: &FamilyStatus, now_ms: u64, tz: &TimeZone) -> String {
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

pub(super) fn credits(credits: &Credits) -> Option<String> {
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

pub(super) fn window_label(kind: WindowKind) -> &'static str {
    match kind {
        WindowKind::FiveHour => "5h",
        WindowKind::Weekly => "week",
        WindowKind::Monthly => "month",
        WindowKind::Other => "other",
    }
}

pub(super) fn window(name: &str, w: Option<&WindowStatus>, now_ms: u64, tz: &TimeZone) -> String {
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

pub(super) fn staleness(account: &AccountStatus, now_ms: u64) -> String {
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
