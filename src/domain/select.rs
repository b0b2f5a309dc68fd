//! The policy: which account serves a session, and for how long.
//!
//! A request counts against one limit family (its model's, else the main one), and only that
//! family's windows and limits decide whether an account can take it. Among the accounts whose
//! included quota can serve, an untouched one (every window of the family at 0%) comes first,
//! because its windows only start when it is used; then the one whose longest window with a
//! reset ahead (weekly for Plus and Pro, the 30-day window for free accounts, a monthly meter)
//! resets soonest, because what it has left is lost soonest; then any with known usage, at
//! random; then those whose usage could not be learned, at random: nothing tells an untouched
//! one from one nearly spent, so they come after every account known to have quota. Requests
//! that cost money (past 100% paid from credits, or a plan that bills every request) are sent
//! only when the user allowed it, and only once no account with included quota can serve.
//! A session keeps its account while that account can serve, so the backend's prompt cache
//! stays warm, and a pinned session keeps its pin until a rotation moves it off.
//!
//! Pure: time, the accounts and the random source are passed in.

use std::collections::HashMap;

use rand::{Rng, RngExt as _};

use crate::domain::account::{Account, AccountState, Attention};
use crate::domain::usage::{MAIN_FAMILY, UsageWindow, WindowKind, windows};

/// What a request needs of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need<'a> {
    /// The limit family its model counts against.
    pub family: &'a str,
    /// The user allows requests that cost money.
    pub spend_money: bool,
}

impl<'a> Need<'a> {
    /// A request of the main family.
    pub fn main(spend_money: bool) -> Self {
        Self {
            family: MAIN_FAMILY,
            spend_money,
        }
    }
}

/// Whether an account can serve a family now, and if not, why and until when.
#[derive(Clone, Debug, PartialEq)]
pub enum Availability {
    Ready,
    /// Benched after a failure (usage limit, throttling) until the given time.
    Benched {
        until_ms: u64,
        reason: String,
    },
    /// A usage window is at 100% until it resets; `reached` is why, when the backend said
    /// (`rate_limit_reached_type`).
    Spent {
        until_ms: u64,
        reached: Option<String>,
    },
    NeedsLogin {
        reason: String,
    },
    /// Something only a person can fix (see [`Attention`]).
    NeedsAttention(Attention),
    Disabled {
        reason: String,
    },
}

impl Availability {
    /// When the account comes back by itself, if it does.
    pub fn back_at(&self) -> Option<u64> {
        match self {
            Self::Benched { until_ms, .. } | Self::Spent { until_ms, .. } => Some(*until_ms),
            _ => None,
        }
    }
}

/// Whether the account can serve requests of `family` now.
pub fn availability(account: &Account, family: &str, now_ms: u64) -> Availability {
    if let AccountState::NeedsLogin { reason } = &account.state {
        return Availability::NeedsLogin {
            reason: reason.clone(),
        };
    }
    if let Some(attention) = &account.attention {
        return Availability::NeedsAttention(attention.clone());
    }
    match &account.state {
        AccountState::Disabled { reason } => {
            return Availability::Disabled {
                reason: reason.clone(),
            };
        }
        AccountState::Benched { until_ms, reason } if *until_ms > now_ms => {
            return Availability::Benched {
                until_ms: *until_ms,
                reason: reason.clone(),
            };
        }
        _ => {}
    }
    if let Some(limit) = account
        .limits
        .iter()
        .filter(|l| l.family == family && l.until_ms > now_ms)
        .max_by_key(|l| l.until_ms)
    {
        return Availability::Benched {
            until_ms: limit.until_ms,
            reason: limit.reason.clone(),
        };
    }
    let usage = account.usage.as_ref();
    match usage.and_then(|u| windows::spent_until(u.windows_of(family), now_ms)) {
        Some(until_ms) => Availability::Spent {
            until_ms,
            reached: usage.and_then(|u| u.reached.clone()),
        },
        None => Availability::Ready,
    }
}

/// What serving a request would cost the user, when the account can serve it at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cost {
    /// Out of the plan's included quota.
    Included,
    /// Money: the family is spent and the credits pay, or the plan bills every request.
    Paid(PaidBy),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaidBy {
    Credits,
    UsageBasedPlan,
}

/// What a request of `family` would cost on this account; `None` when it cannot serve it.
pub fn cost(account: &Account, family: &str, now_ms: u64) -> Option<Cost> {
    match availability(account, family, now_ms) {
        Availability::Ready if is_usage_based(account.plan.as_deref()) => {
            Some(Cost::Paid(PaidBy::UsageBasedPlan))
        }
        Availability::Ready => Some(Cost::Included),
        Availability::Spent { .. } if credits_pay(account) => Some(Cost::Paid(PaidBy::Credits)),
        _ => None,
    }
}

/// How money could pay for a request this account cannot serve from included quota.
pub fn paid_by(account: &Account, family: &str, now_ms: u64) -> Option<PaidBy> {
    match cost(account, family, now_ms)? {
        Cost::Paid(by) => Some(by),
        Cost::Included => None,
    }
}

/// Plans that bill every request (`self_serve_business_usage_based`, ...).
pub fn is_usage_based(plan: Option<&str>) -> bool {
    plan.is_some_and(|p| p.to_ascii_lowercase().ends_with("_usage_based"))
}

fn credits_pay(account: &Account) -> bool {
    account
        .usage
        .as_ref()
        .and_then(|u| u.credits.as_ref())
        .is_some_and(|c| c.can_pay())
}

/// Whether the account may take a request that needs `need`.
pub fn admits(account: &Account, need: &Need<'_>, now_ms: u64) -> bool {
    admitted(account, need, now_ms).is_some()
}

/// Whether the account may take a request that needs `need`, and at what cost.
fn admitted(account: &Account, need: &Need<'_>, now_ms: u64) -> Option<Cost> {
    cost(account, need.family, now_ms).filter(|c| *c == Cost::Included || need.spend_money)
}

/// Why an account was chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// The user pinned it for this session.
    Pinned,
    /// The session already used it and it can still serve.
    Kept,
    /// It served the session's last reply, maybe in another pi process: only it can read the
    /// session's reasoning, and its prompt cache is warm.
    ServedBefore,
    /// Every window of the family at 0%.
    Untouched,
    /// Touched, and its binding window (the longest with a reset ahead) resets first.
    SoonestReset { resets_at_ms: u64, kind: WindowKind },
    /// No better rule applied; chosen at random among `among` with known usage.
    Any { among: usize },
    /// No account with known usage can serve; chosen at random among `among` whose usage could
    /// not be learned.
    UsageUnknown { among: usize },
    /// No account has included quota left; the user allows paying, so one of `among` that
    /// costs money was chosen.
    Paid { among: usize },
}

/// Picks by the policy among accounts not excluded that can serve `need`.
pub fn pick<'a>(
    accounts: &'a [Account],
    need: &Need<'_>,
    now_ms: u64,
    excluded: impl Fn(&Account) -> bool,
    rng: &mut impl Rng,
) -> Option<(&'a Account, Reason)> {
    let admitted: Vec<(&Account, Cost)> = accounts
        .iter()
        .filter(|a| !excluded(a))
        .filter_map(|a| Some((a, admitted(a, need, now_ms)?)))
        .collect();
    let included: Vec<&Account> = admitted
        .iter()
        .filter(|(_, cost)| *cost == Cost::Included)
        .map(|(a, _)| *a)
        .collect();
    if !included.is_empty() {
        return Some(rank(&included, need.family, now_ms, rng));
    }
    let paid: Vec<&Account> = admitted.iter().map(|(a, _)| *a).collect();
    if paid.is_empty() {
        return None;
    }
    Some((choose(&paid, rng), Reason::Paid { among: paid.len() }))
}

/// The policy among accounts that all can serve from included quota.
fn rank<'a>(
    ready: &[&'a Account],
    family: &str,
    now_ms: u64,
    rng: &mut impl Rng,
) -> (&'a Account, Reason) {
    let family_windows = |a: &'a Account| family_windows(a, family);
    let untouched: Vec<&Account> = ready
        .iter()
        .copied()
        .filter(|a| family_windows(a).is_some_and(|w| windows::untouched(w, now_ms)))
        .collect();
    if !untouched.is_empty() {
        return (choose(&untouched, rng), Reason::Untouched);
    }

    let binding_reset = |a: &'a Account| {
        let window = windows::binding(family_windows(a)?, now_ms)?;
        Some((window.reset_ahead(now_ms)?, window.kind()))
    };
    if let Some((soonest, kind)) = ready
        .iter()
        .filter_map(|a| binding_reset(a))
        .min_by_key(|(at, _)| *at)
    {
        let first: Vec<&Account> = ready
            .iter()
            .copied()
            .filter(|a| binding_reset(a).is_some_and(|(at, _)| at == soonest))
            .collect();
        return (
            choose(&first, rng),
            Reason::SoonestReset {
                resets_at_ms: soonest,
                kind,
            },
        );
    }

    let known: Vec<&Account> = ready
        .iter()
        .copied()
        .filter(|a| a.usage.is_some())
        .collect();
    if !known.is_empty() {
        return (choose(&known, rng), Reason::Any { among: known.len() });
    }
    (
        choose(ready, rng),
        Reason::UsageUnknown { among: ready.len() },
    )
}

fn family_windows<'a>(account: &'a Account, family: &str) -> Option<&'a [UsageWindow]> {
    account.usage.as_ref().map(|u| u.windows_of(family))
}

fn choose<'a>(accounts: &[&'a Account], rng: &mut impl Rng) -> &'a Account {
    accounts[rng.random_range(0..accounts.len())]
}

/// Sessions remembered at most; the least recently used is forgotten first.
const MAX_SESSIONS: usize = 512;

/// A session's account.
#[derive(Clone, Debug, PartialEq)]
pub struct Seat {
    pub account_id: String,
    pub reason: Reason,
}

/// Which account each session uses.
#[derive(Default)]
pub struct Sessions {
    seats: HashMap<String, (Seat, u64)>,
    clock: u64,
}

/// A session left an account it had been using.
#[derive(Clone, Debug, PartialEq)]
pub struct Moved {
    pub from_account_id: String,
    pub to_account_id: String,
    /// The session had pinned the account it left; the pin is gone.
    pub pin_cleared: bool,
}

impl Sessions {
    pub fn seat(&self, session: &str) -> Option<&Seat> {
        self.seats.get(session).map(|(seat, _)| seat)
    }

    /// The account for the session's next request: its seat in this process while that can
    /// serve `need` and is not excluded (one that costs money only while no account has
    /// included quota), else the account that `served_before` (from the shared file) while it
    /// can serve out of included quota, else the policy's pick.
    #[allow(clippy::too_many_arguments)] // the policy's inputs, each its own; no state hides here
    pub fn choose<'a>(
        &self,
        session: Option<&str>,
        accounts: &'a [Account],
        served_before: Option<&str>,
        need: &Need<'_>,
        now_ms: u64,
        excluded: impl Fn(&Account) -> bool,
        rng: &mut impl Rng,
    ) -> Option<(&'a Account, Reason)> {
        let seat = session.and_then(|s| self.seat(s));
        if seat.is_none()
            && let Some(before) = served_before
                .and_then(|id| accounts.iter().find(|a| a.id == id))
                .filter(|a| !excluded(a))
            && admitted(before, need, now_ms) == Some(Cost::Included)
        {
            return Some((before, Reason::ServedBefore));
        }
        let own = seat
            .and_then(|seat| Some((seat, accounts.iter().find(|a| a.id == seat.account_id)?)))
            .filter(|(_, own)| !excluded(own));
        let own_cost = own.and_then(|(_, a)| admitted(a, need, now_ms));
        let kept = |seat: &Seat| match seat.reason {
            Reason::Pinned => Reason::Pinned,
            _ => Reason::Kept,
        };
        match (own, own_cost) {
            (Some((seat, own)), Some(Cost::Included)) => Some((own, kept(seat))),
            (Some((seat, own)), Some(Cost::Paid(_))) => {
                match pick(accounts, need, now_ms, excluded, rng) {
                    Some((_, Reason::Paid { .. })) => Some((own, kept(seat))),
                    other => other,
                }
            }
            _ => pick(accounts, need, now_ms, excluded, rng),
        }
    }

    /// Records that `account_id` served the session. Returns the move when the session had
    /// another account before; a session that kept its account keeps its original reason.
    pub fn settle(&mut self, session: &str, account_id: &str, reason: Reason) -> Option<Moved> {
        self.clock += 1;
        let clock = self.clock;
        if let Some((seat, used)) = self.seats.get_mut(session)
            && seat.account_id == account_id
        {
            *used = clock;
            return None;
        }
        let seat = Seat {
            account_id: account_id.to_owned(),
            reason,
        };
        let (old, _) = self.seat_at(session, seat)?;
        Some(Moved {
            from_account_id: old.account_id,
            to_account_id: account_id.to_owned(),
            pin_cleared: old.reason == Reason::Pinned,
        })
    }

    /// Pins the session to an account until a rotation moves it off.
    pub fn pin(&mut self, session: &str, account_id: &str) {
        self.clock += 1;
        let seat = Seat {
            account_id: account_id.to_owned(),
            reason: Reason::Pinned,
        };
        self.seat_at(session, seat);
    }

    fn seat_at(&mut self, session: &str, seat: Seat) -> Option<(Seat, u64)> {
        let previous = self.seats.insert(session.to_owned(), (seat, self.clock));
        if self.seats.len() > MAX_SESSIONS
            && let Some(oldest) = self
                .seats
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(session, _)| session.clone())
        {
            self.seats.remove(&oldest);
        }
        previous
    }
}
