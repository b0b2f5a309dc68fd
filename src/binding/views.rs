//! The pool as JavaScript sees it: accounts, windows, the session's choice, and the rendered
//! report and footer.

use napi::Either;
use napi_derive::napi;

use super::{Problem, core, outcome, tz};
use crate::domain::select::{Availability, PaidBy, Reason};
use crate::domain::status::{AccountStatus, Choice, FamilyStatus, PoolStatus, WindowStatus};
use crate::domain::text;
use crate::domain::text::table;
use crate::domain::usage::{Credits, WindowKind};
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

/// A window, by its length.
#[napi(string_enum = "camelCase")]
pub enum WindowLength {
    FiveHour,
    Weekly,
    /// 30 days or a calendar month.
    Monthly,
    Other,
}

#[napi(object)]
pub struct WindowView {
    pub used_percent: f64,
    /// Unix milliseconds; absent when unknown or already past.
    pub resets_at_ms: Option<f64>,
    pub length: WindowLength,
}

impl From<&WindowStatus> for WindowView {
    fn from(w: &WindowStatus) -> Self {
        Self {
            used_percent: w.used_percent,
            resets_at_ms: w.resets_at_ms.map(|t| t as f64),
            length: match w.kind {
                WindowKind::FiveHour => WindowLength::FiveHour,
                WindowKind::Weekly => WindowLength::Weekly,
                WindowKind::Monthly => WindowLength::Monthly,
                WindowKind::Other => WindowLength::Other,
            },
        }
    }
}

/// A state, with why and until when, as the views carry it.
struct StateView {
    state: AccountState,
    reason: Option<String>,
    back_at_ms: Option<f64>,
}

impl From<&Availability> for StateView {
    fn from(availability: &Availability) -> Self {
        let state = match availability {
            Availability::Ready => AccountState::Ready,
            Availability::Benched { .. } => AccountState::Benched,
            Availability::Spent { .. } => AccountState::Spent,
            Availability::NeedsLogin { .. } => AccountState::NeedsLogin,
            Availability::NeedsAttention(_) => AccountState::NeedsAttention,
            Availability::Disabled { .. } => AccountState::Disabled,
        };
        Self {
            reason: (*availability != Availability::Ready)
                .then(|| text::report::availability(availability)),
            back_at_ms: availability.back_at().map(|t| t as f64),
            state,
        }
    }
}

/// A per-model limit family of an account.
#[napi(object)]
pub struct FamilyView {
    /// The limit id (`codex_bengalfox`).
    pub id: String,
    pub name: String,
    /// For this family's models.
    pub state: AccountState,
    pub reason: Option<String>,
    pub back_at_ms: Option<f64>,
    pub windows: Vec<WindowView>,
}

impl From<&FamilyStatus> for FamilyView {
    fn from(f: &FamilyStatus) -> Self {
        let StateView {
            state,
            reason,
            back_at_ms,
        } = StateView::from(&f.availability);
        Self {
            id: f.id.clone(),
            name: f.name.clone(),
            state,
            reason,
            back_at_ms,
            windows: f.windows.iter().map(WindowView::from).collect(),
        }
    }
}

#[napi(object)]
pub struct CreditsView {
    pub has_credits: bool,
    pub unlimited: bool,
    pub balance: Option<f64>,
}

impl From<&Credits> for CreditsView {
    fn from(c: &Credits) -> Self {
        Self {
            has_credits: c.has_credits,
            unlimited: c.unlimited,
            balance: c.balance,
        }
    }
}

/// What would pay for a main-model request past the included quota.
#[napi(string_enum = "camelCase")]
pub enum PaidByView {
    Credits,
    UsageBasedPlan,
}

#[napi(object)]
pub struct AccountView {
    pub id: String,
    pub label: String,
    pub email: Option<String>,
    pub plan: Option<String>,
    /// For the main family's models.
    pub state: AccountState,
    /// Why it cannot serve, for every state but `ready`.
    pub reason: Option<String>,
    /// Money could pay for a request it cannot serve from included quota.
    pub paid_by: Option<PaidByView>,
    /// When a benched or spent account comes back, unix milliseconds.
    pub back_at_ms: Option<f64>,
    pub untouched: bool,
    /// Serves the asking session (or would serve its next request).
    pub active: bool,
    pub pinned: bool,
    pub five_hour: Option<WindowView>,
    pub weekly: Option<WindowView>,
    pub other_windows: Vec<WindowView>,
    pub families: Vec<FamilyView>,
    pub credits: Option<CreditsView>,
    /// The usage shown is older than the freshness period.
    pub stale: bool,
    /// Its windows in one line, for a choice dialog.
    pub summary: String,
}

impl From<&AccountStatus> for AccountView {
    fn from(a: &AccountStatus) -> Self {
        let StateView {
            state,
            reason,
            back_at_ms,
        } = StateView::from(&a.availability);
        Self {
            id: a.id.clone(),
            label: a.label.clone(),
            email: a.email.clone(),
            plan: a.plan.clone(),
            state,
            reason,
            paid_by: a.paid_by.map(|by| match by {
                PaidBy::Credits => PaidByView::Credits,
                PaidBy::UsageBasedPlan => PaidByView::UsageBasedPlan,
            }),
            back_at_ms,
            untouched: a.untouched,
            active: a.active,
            pinned: a.pinned,
            five_hour: a.five_hour.as_ref().map(WindowView::from),
            weekly: a.weekly.as_ref().map(WindowView::from),
            other_windows: a.other_windows.iter().map(WindowView::from).collect(),
            families: a.families.iter().map(FamilyView::from).collect(),
            credits: a.credits.as_ref().map(CreditsView::from),
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
    /// Its longest window with a reset ahead resets first.
    SoonestReset,
    Any,
    /// No account's usage could be learned.
    UsageUnknown,
    /// Every included quota is spent; paid requests are on.
    Paid,
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
                Reason::SoonestReset { .. } => ChoiceReason::SoonestReset,
                Reason::Any { .. } => ChoiceReason::Any,
                Reason::UsageUnknown { .. } => ChoiceReason::UsageUnknown,
                Reason::Paid { .. } => ChoiceReason::Paid,
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

impl From<&table::Span> for SpanView {
    fn from(span: &table::Span) -> Self {
        Self {
            text: span.text.clone(),
            tone: match span.tone {
                table::Tone::Plain => Tone::Plain,
                table::Tone::Accent => Tone::Accent,
                table::Tone::Muted => Tone::Muted,
                table::Tone::Dim => Tone::Dim,
                table::Tone::Success => Tone::Success,
                table::Tone::Warning => Tone::Warning,
                table::Tone::Error => Tone::Error,
            },
        }
    }
}

#[napi(object)]
pub struct PoolView {
    pub path: String,
    pub accounts: Vec<AccountView>,
    pub active: Option<ChoiceView>,
    /// Requests that cost money are allowed (`/dispatch-settings spend on`).
    pub spend_money: bool,
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
        let lines = text::table::status_lines(&pool, now_ms(), &tz());
        Self {
            report: text::table::plain(&lines),
            lines: lines
                .iter()
                .map(|line| line.iter().map(SpanView::from).collect())
                .collect(),
            footer: text::report::footer(active),
            path: pool.path.clone(),
            accounts: pool.accounts.iter().map(AccountView::from).collect(),
            active: pool.active.as_ref().map(ChoiceView::from),
            spend_money: pool.settings.spend_money,
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

#[napi(object)]
pub struct SettingsView {
    /// Requests that cost money are allowed.
    pub spend_money: bool,
    /// The settings in words, for `/dispatch-settings`.
    pub report: String,
}

/// The pool's settings, stored in the accounts file for every pi process.
#[napi]
pub async fn settings() -> Either<SettingsView, Problem> {
    let settings = async { commands::settings(&core().await?.ctx) };
    outcome(settings.await.map(|(settings, path)| SettingsView {
        spend_money: settings.spend_money,
        report: text::report::settings(&settings, &path),
    }))
}

/// Allows (`true`) or stops requests that cost money; returns the sentence saying so.
#[napi]
pub async fn set_spend_money(on: bool) -> Either<String, Problem> {
    let set = async { commands::set_spend_money(&core().await?.ctx, on) };
    outcome(set.await.map(|()| text::spend_set(on)))
}
