//! The pool as JavaScript sees it: accounts, windows, the session's choice, and the rendered
//! report and footer.

use napi::Either;
use napi_derive::napi;

use super::{Problem, core, outcome, tz};
use crate::domain::select::{Availability, Reason};
use crate::domain::status::{AccountStatus, Choice, PoolStatus, WindowStatus};
use crate::domain::text;
use crate::domain::text::report;
use crate::io::clock::now_ms;
use crate::runtime::commands;

#[napi(string_enum = "camelCase")]
pub enum AccountState {
    Ready,
    Benched,
    /// A window at 100% until it resets.
    Spent,
    NeedsLogin,
    /// Something only a person can fix; the reason says what.
    NeedsAttention,
    Disabled,
}

#[napi(object)]
pub struct WindowView {
    pub used_percent: f64,
    /// Unix milliseconds; absent when unknown or already past.
    pub resets_at_ms: Option<f64>,
    /// For windows beyond the 5-hour and weekly ones.
    pub name: Option<String>,
}

impl From<&WindowStatus> for WindowView {
    fn from(w: &WindowStatus) -> Self {
        Self {
            used_percent: w.used_percent,
            resets_at_ms: w.resets_at_ms.map(|t| t as f64),
            name: w.name.clone(),
        }
    }
}

#[napi(object)]
pub struct AccountView {
    pub id: String,
    pub label: String,
    pub email: Option<String>,
    pub plan: Option<String>,
    pub state: AccountState,
    /// Why it cannot serve, for every state but `ready`.
    pub reason: Option<String>,
    /// When a benched or spent account comes back, unix milliseconds.
    pub back_at_ms: Option<f64>,
    pub untouched: bool,
    /// Serves the asking session (or would serve its next request).
    pub active: bool,
    pub pinned: bool,
    pub five_hour: Option<WindowView>,
    pub weekly: Option<WindowView>,
    pub other_windows: Vec<WindowView>,
    /// The usage shown is older than the freshness period.
    pub stale: bool,
    /// Its windows in one line, for a choice dialog.
    pub summary: String,
}

impl From<&AccountStatus> for AccountView {
    fn from(a: &AccountStatus) -> Self {
        let (state, reason) = match &a.availability {
            Availability::Ready => (AccountState::Ready, None),
            Availability::Benched { .. } => (AccountState::Benched, Some(())),
            Availability::Spent { .. } => (AccountState::Spent, Some(())),
            Availability::NeedsLogin { .. } => (AccountState::NeedsLogin, Some(())),
            Availability::NeedsAttention(_) => (AccountState::NeedsAttention, Some(())),
            Availability::Disabled { .. } => (AccountState::Disabled, Some(())),
        };
        Self {
            id: a.id.clone(),
            label: a.label.clone(),
            email: a.email.clone(),
            plan: a.plan.clone(),
            state,
            reason: reason.map(|()| text::report::availability(&a.availability)),
            back_at_ms: a.availability.back_at().map(|t| t as f64),
            untouched: a.untouched,
            active: a.active,
            pinned: a.pinned,
            five_hour: a.five_hour.as_ref().map(WindowView::from),
            weekly: a.weekly.as_ref().map(WindowView::from),
            other_windows: a.other_windows.iter().map(WindowView::from).collect(),
            stale: a.stale,
            summary: text::report::windows(a, now_ms(), &tz()),
        }
    }
}

#[napi(string_enum = "camelCase")]
pub enum ChoiceReason {
    Pinned,
    Kept,
    ServedBefore,
    Untouched,
    SoonestWeeklyReset,
    Any,
}

#[napi(object)]
pub struct ChoiceView {
    pub label: String,
    pub reason: ChoiceReason,
    /// No request of the session has used it yet: this is who would serve next.
    pub preview: bool,
}

impl From<&Choice> for ChoiceView {
    fn from(c: &Choice) -> Self {
        Self {
            label: c.label.clone(),
            reason: match c.reason {
                Reason::Pinned => ChoiceReason::Pinned,
                Reason::Kept => ChoiceReason::Kept,
                Reason::ServedBefore => ChoiceReason::ServedBefore,
                Reason::Untouched => ChoiceReason::Untouched,
                Reason::SoonestWeeklyReset { .. } => ChoiceReason::SoonestWeeklyReset,
                Reason::Any { .. } => ChoiceReason::Any,
            },
            preview: c.preview,
        }
    }
}

/// How a piece of the report looks; the extension maps it to a theme colour.
#[napi(string_enum = "camelCase")]
pub enum Tone {
    Plain,
    Accent,
    Muted,
    Dim,
    Success,
    Warning,
    Error,
}

#[napi(object)]
pub struct SpanView {
    pub text: String,
    pub tone: Tone,
}

impl From<&report::Span> for SpanView {
    fn from(span: &report::Span) -> Self {
        Self {
            text: span.text.clone(),
            tone: match span.tone {
                report::Tone::Plain => Tone::Plain,
                report::Tone::Accent => Tone::Accent,
                report::Tone::Muted => Tone::Muted,
                report::Tone::Dim => Tone::Dim,
                report::Tone::Success => Tone::Success,
                report::Tone::Warning => Tone::Warning,
                report::Tone::Error => Tone::Error,
            },
        }
    }
}

#[napi(object)]
pub struct PoolView {
    pub path: String,
    pub accounts: Vec<AccountView>,
    pub active: Option<ChoiceView>,
    /// The whole `/dispatch-status` report, as plain text.
    pub report: String,
    /// The same report in toned pieces, line by line, for a terminal with colours.
    pub lines: Vec<Vec<SpanView>>,
    /// The footer line for the asking session.
    pub footer: String,
}

impl From<PoolStatus> for PoolView {
    fn from(pool: PoolStatus) -> Self {
        let active = pool.accounts.iter().find(|a| a.active);
        let lines = text::report::status_lines(&pool, now_ms(), &tz());
        Self {
            report: text::report::plain(&lines),
            lines: lines
                .iter()
                .map(|line| line.iter().map(SpanView::from).collect())
                .collect(),
            footer: text::report::footer(active),
            path: pool.path.clone(),
            accounts: pool.accounts.iter().map(AccountView::from).collect(),
            active: pool.active.as_ref().map(ChoiceView::from),
        }
    }
}

/// The pool as the status command and the footer show it; never includes tokens. With
/// `refresh`, usage older than the freshness period is fetched first (concurrently).
#[napi]
pub async fn status(session_id: Option<String>, refresh: bool) -> Either<PoolView, Problem> {
    let pool = async {
        let core = core().await?;
        commands::status(&core.ctx, session_id.as_deref(), refresh).await
    };
    outcome(pool.await)
}
