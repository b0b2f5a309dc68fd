//! The pool's state in words: why an account cannot serve, the `/dispatch-status` report and
//! the footer. Layout only; the time format and the plain sentences are the parent module's.

use jiff::tz::TimeZone;

use super::{BENCH_CDN, countdown, when};
use crate::domain::account::AttentionKind;
use crate::domain::failure::Failure;
use crate::domain::select::{Availability, Reason};
use crate::domain::status::{AccountStatus, PoolStatus, WindowStatus};

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
        Availability::Spent { .. } => "usage limit reached".into(),
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
        Reason::SoonestWeeklyReset { resets_at_ms } => format!(
            "its weekly window resets soonest, so what it has left is lost first ({})",
            when(*resets_at_ms, now_ms, tz)
        ),
        Reason::Any { .. } => {
            "no account is untouched or has a known weekly reset; picked at random".into()
        }
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
    let mut lines = vec![format!(
        "pi-dispatch: {} account(s) in {}",
        pool.accounts.len(),
        pool.path
    )];
    for account in &pool.accounts {
        let tags = tags(account, now_ms, tz);
        let plan = account
            .plan
            .as_ref()
            .map_or_else(String::new, |p| format!(" ({p})"));
        let marker = if account.active { "▸" } else { " " };
        let tags = if tags.is_empty() {
            String::new()
        } else {
            format!("  [{}]", tags.join("; "))
        };
        lines.push(format!("{marker} {}{plan}{tags}", account.label));
        let stale = if account.stale {
            format!("  [stale: {}]", staleness(account, now_ms))
        } else {
            String::new()
        };
        lines.push(format!("    {}{stale}", windows(account, now_ms, tz)));
    }
    match &pool.active {
        Some(choice) => {
            let lead = match (&choice.reason, choice.preview) {
                (Reason::ServedBefore, _) => "This session continues on",
                (_, true) => "Next request goes to",
                (_, false) => "This session uses",
            };
            lines.push(format!(
                "{lead} {}: {}.",
                choice.label,
                reason(&choice.reason, now_ms, tz)
            ));
        }
        None => lines.push("No account can serve now.".into()),
    }
    if let Some(error) = &pool.write_error {
        lines.push(format!("Warning: could not save what was learned: {error}"));
    }
    lines.join("\n")
}

fn tags(account: &AccountStatus, now_ms: u64, tz: &TimeZone) -> Vec<String> {
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
            let back = account
                .availability
                .back_at()
                .map_or_else(|| "later".to_owned(), |at| when(at, now_ms, tz));
            tags.push(format!(
                "{}, back {back}",
                availability(&account.availability)
            ));
        }
        Availability::NeedsLogin { .. } => {
            tags.push(format!("needs login: /dispatch-login {}", account.label));
        }
        Availability::NeedsAttention(attention) => {
            let detail = attention
                .detail
                .as_ref()
                .map_or_else(String::new, |d| format!(" ({d})"));
            tags.push(format!(
                "needs attention: {}{detail}; {}",
                attention_reason(attention.kind),
                attention_fix(attention.kind, &account.label)
            ));
        }
        Availability::Disabled { reason } => tags.push(format!("unusable: {reason}")),
        Availability::Ready if account.untouched => tags.push("untouched".into()),
        Availability::Ready => {}
    }
    tags
}

/// "5h 12% used (resets Tue 09:00, in 2h 14m) · week —"
pub fn windows(account: &AccountStatus, now_ms: u64, tz: &TimeZone) -> String {
    let window = |name: &str, w: Option<&WindowStatus>| match w {
        None => format!("{name} —"),
        Some(w) => {
            let reset = w.resets_at_ms.map_or_else(String::new, |at| {
                format!(" (resets {})", when(at, now_ms, tz))
            });
            format!("{name} {}% used{reset}", w.used_percent.round())
        }
    };
    let mut parts = vec![
        window("5h", account.five_hour.as_ref()),
        window("week", account.weekly.as_ref()),
    ];
    for other in &account.other_windows {
        parts.push(window(
            other.name.as_deref().unwrap_or("other"),
            Some(other),
        ));
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
