//! The policy: which account serves a session, and for how long.
//!
//! Among the accounts that can serve now, an untouched one (every known window at 0%) comes
//! first, because its windows only start when it is used; then the one whose weekly window
//! resets soonest, because what it has left is lost soonest; then any, at random. A session
//! keeps its account while that account can serve, so the backend's prompt cache stays warm,
//! and a pinned session keeps its pin until a rotation moves it off.
//!
//! Pure: time, the accounts and the random source are passed in.

use std::collections::HashMap;

use rand::{Rng, RngExt as _};

use crate::domain::account::{Account, AccountState, Attention};
use crate::domain::usage::WindowKind;

/// Whether an account can serve now, and if not, why and until when.
#[derive(Clone, Debug, PartialEq)]
pub enum Availability {
    Ready,
    /// Benched after a failure (usage limit, throttling) until the given time.
    Benched {
        until_ms: u64,
        reason: String,
    },
    /// A usage window is at 100% until it resets.
    Spent {
        until_ms: u64,
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
            Self::Benched { until_ms, .. } | Self::Spent { until_ms } => Some(*until_ms),
            _ => None,
        }
    }
}

pub fn availability(account: &Account, now_ms: u64) -> Availability {
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
    match account.usage.as_ref().and_then(|u| u.spent_until(now_ms)) {
        Some(until_ms) => Availability::Spent { until_ms },
        None => Availability::Ready,
    }
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
    /// Every known window at 0%.
    Untouched,
    /// Touched, and its weekly window resets first.
    SoonestWeeklyReset { resets_at_ms: u64 },
    /// No better rule applied; chosen at random among `among`.
    Any { among: usize },
}

/// Picks by the policy among ready accounts not excluded.
pub fn pick<'a>(
    accounts: &'a [Account],
    now_ms: u64,
    excluded: impl Fn(&Account) -> bool,
    rng: &mut impl Rng,
) -> Option<(&'a Account, Reason)> {
    let ready: Vec<&Account> = accounts
        .iter()
        .filter(|a| !excluded(a) && availability(a, now_ms) == Availability::Ready)
        .collect();

    let untouched: Vec<&Account> = ready
        .iter()
        .copied()
        .filter(|a| a.usage.as_ref().is_some_and(|u| u.is_untouched(now_ms)))
        .collect();
    if !untouched.is_empty() {
        return Some((choose(&untouched, rng), Reason::Untouched));
    }

    let weekly_reset = |a: &Account| {
        a.usage
            .as_ref()?
            .window(WindowKind::Weekly)?
            .reset_ahead(now_ms)
    };
    if let Some(soonest) = ready.iter().filter_map(|a| weekly_reset(a)).min() {
        let first: Vec<&Account> = ready
            .iter()
            .copied()
            .filter(|a| weekly_reset(a) == Some(soonest))
            .collect();
        return Some((
            choose(&first, rng),
            Reason::SoonestWeeklyReset {
                resets_at_ms: soonest,
            },
        ));
    }

    if ready.is_empty() {
        return None;
    }
    Some((choose(&ready, rng), Reason::Any { among: ready.len() }))
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

    /// The account for the session's next request: its own while that can serve and is not
    /// excluded, else the policy's pick.
    /// The account for the session's next request: its seat in this process while that can
    /// serve and is not excluded, else the account that `served_before` (from the shared file)
    /// while it can, else the policy's pick.
    pub fn choose<'a>(
        &self,
        session: Option<&str>,
        accounts: &'a [Account],
        served_before: Option<&str>,
        now_ms: u64,
        excluded: impl Fn(&Account) -> bool,
        rng: &mut impl Rng,
    ) -> Option<(&'a Account, Reason)> {
        let usable = |id: &str| {
            accounts
                .iter()
                .find(|a| a.id == id)
                .filter(|a| !excluded(a) && availability(a, now_ms) == Availability::Ready)
        };
        if let Some(seat) = session.and_then(|s| self.seat(s)) {
            if let Some(own) = usable(&seat.account_id) {
                let reason = match seat.reason {
                    Reason::Pinned => Reason::Pinned,
                    _ => Reason::Kept,
                };
                return Some((own, reason));
            }
        } else if let Some(own) = served_before.and_then(usable) {
            return Some((own, Reason::ServedBefore));
        }
        pick(accounts, now_ms, excluded, rng)
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
