//! The pool as `/dispatch-status`, the footer and `/dispatch-use` show it: per account its
//! state, windows and tags, and which account serves the asking session and why. Pure: built
//! from the accounts, the session's seat and the policy's choice at a given time. Never holds a
//! token.

use std::collections::HashMap;

use crate::domain::account::{Account, Settings};
use crate::domain::select::{self, Availability, PaidBy, Reason, Seat};
use crate::domain::usage::{Credits, MAIN_FAMILY, UsageWindow, WindowKind};

#[derive(Clone, Debug, PartialEq)]
pub struct PoolStatus {
    /// The accounts file, named in the status header.
    pub path: String,
    pub accounts: Vec<AccountStatus>,
    /// Who serves the session (or would serve its next request).
    pub active: Option<Choice>,
    /// The last write of learned changes to the accounts file failed.
    pub write_error: Option<String>,
    pub settings: Settings,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AccountStatus {
    pub id: String,
    pub label: String,
    pub email: Option<String>,
    pub plan: Option<String>,
    /// For the main family's models.
    pub availability: Availability,
    /// How money could pay for a main-family request it cannot serve from included quota.
    pub paid_by: Option<PaidBy>,
    pub untouched: bool,
    pub active: bool,
    pub pinned: bool,
    pub five_hour: Option<WindowStatus>,
    pub weekly: Option<WindowStatus>,
    pub other_windows: Vec<WindowStatus>,
    /// Per-model limit families, each with its own windows and state.
    pub families: Vec<FamilyStatus>,
    pub credits: Option<Credits>,
    pub usage_observed_at_ms: Option<u64>,
    /// The usage shown is older than the freshness period.
    pub stale: bool,
    /// Why the last usage fetch for it failed, when one was just tried.
    pub fetch_error: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WindowStatus {
    pub used_percent: f64,
    /// Absent when unknown or already past.
    pub resets_at_ms: Option<u64>,
    pub kind: WindowKind,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FamilyStatus {
    pub id: String,
    /// The backend's display name, else the id.
    pub name: String,
    /// For this family's models.
    pub availability: Availability,
    pub windows: Vec<WindowStatus>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub account_id: String,
    pub label: String,
    pub reason: Reason,
    /// No request of the session has used it yet: this is who would serve next.
    pub preview: bool,
}

impl Choice {
    /// The policy's `choice` for a session that sits on `seat`; a kept account shows why it
    /// was chosen in the first place.
    pub fn new(account: &Account, reason: Reason, seat: Option<&Seat>) -> Self {
        let preview = seat.is_none_or(|s| s.account_id != account.id);
        let reason = match (seat, reason) {
            (Some(seat), Reason::Kept) => seat.reason.clone(),
            (_, reason) => reason,
        };
        Self {
            account_id: account.id.clone(),
            label: account.label.clone(),
            reason,
            preview,
        }
    }
}

impl PoolStatus {
    pub fn build(
        path: String,
        accounts: &[Account],
        active: Option<Choice>,
        mut fetch_errors: HashMap<String, String>,
        write_error: Option<String>,
        settings: Settings,
        now_ms: u64,
    ) -> Self {
        let accounts = accounts
            .iter()
            .map(|account| {
                let mut status = AccountStatus::of(account, active.as_ref(), now_ms);
                status.fetch_error = fetch_errors.remove(&account.id);
                status
            })
            .collect();
        Self {
            path,
            accounts,
            active,
            write_error,
            settings,
        }
    }
}

impl AccountStatus {
    pub fn of(account: &Account, active: Option<&Choice>, now_ms: u64) -> Self {
        let usage = account.usage.as_ref();
        let window = |w: &UsageWindow| WindowStatus {
            used_percent: w.used_now(now_ms),
            resets_at_ms: w.reset_ahead(now_ms),
            kind: w.kind(),
        };
        let main = |kind| usage.and_then(|u| u.window(kind)).map(window);
        let active = active.filter(|choice| choice.account_id == account.id);
        let mut families: Vec<FamilyStatus> = usage
            .map(|u| &u.families)
            .into_iter()
            .flatten()
            .map(|f| FamilyStatus {
                id: f.id.clone(),
                name: f.name.clone().unwrap_or_else(|| f.id.clone()),
                availability: select::availability(account, &f.id, now_ms),
                windows: f.windows.iter().map(window).collect(),
            })
            .collect();
        // A family known only from a limit the backend answered with.
        for limit in &account.limits {
            if limit.family != MAIN_FAMILY && !families.iter().any(|f| f.id == limit.family) {
                families.push(FamilyStatus {
                    id: limit.family.clone(),
                    name: limit.family.clone(),
                    availability: select::availability(account, &limit.family, now_ms),
                    windows: Vec::new(),
                });
            }
        }
        Self {
            id: account.id.clone(),
            label: account.label.clone(),
            email: account.email.clone(),
            plan: account.plan.clone(),
            availability: select::availability(account, MAIN_FAMILY, now_ms),
            paid_by: select::paid_by(account, MAIN_FAMILY, now_ms),
            untouched: usage.is_some_and(|u| u.is_untouched(now_ms)),
            active: active.is_some(),
            pinned: active.is_some_and(|choice| choice.reason == Reason::Pinned),
            five_hour: main(WindowKind::FiveHour),
            weekly: main(WindowKind::Weekly),
            other_windows: usage
                .map(|u| {
                    u.windows
                        .iter()
                        .filter(|w| !matches!(w.kind(), WindowKind::FiveHour | WindowKind::Weekly))
                        .map(window)
                        .collect()
                })
                .unwrap_or_default(),
            families,
            credits: usage.and_then(|u| u.credits.clone()),
            usage_observed_at_ms: usage.map(|u| u.observed_at_ms),
            stale: usage.is_none_or(|u| !u.is_fresh(now_ms)),
            fetch_error: None,
        }
    }
}
