//! The selection policy, over generated pools: the rules hold for every pool, not just the
//! ones someone thought of.

use super::common;
use pi_dispatch::domain::select::{self, Availability, Reason, Sessions};
use pi_dispatch::domain::usage::WindowKind;
use pi_dispatch::{Account, AccountState, Usage, UsageWindow};
use proptest::prelude::*;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

const NOW: u64 = 1_770_000_000_000;
const HOUR: u64 = 3_600_000;

fn window(seconds: u64, used: f64, reset_in_hours: u64) -> UsageWindow {
    UsageWindow {
        name: None,
        window_seconds: Some(seconds),
        used_percent: used,
        resets_at_ms: Some(NOW + reset_in_hours * HOUR),
    }
}

fn account(i: usize, state: AccountState, windows: Option<Vec<UsageWindow>>) -> Account {
    Account {
        label: format!("label-{i}"),
        chatgpt_account_id: format!("acct-{i}"),
        plan: None,
        state,
        usage: windows.map(|windows| Usage {
            observed_at_ms: NOW,
            windows,
        }),
        ..common::account(&format!("id-{i}"))
    }
}

fn arb_state() -> impl Strategy<Value = AccountState> {
    prop_oneof![
        4 => Just(AccountState::Usable),
        1 => (0u64..48).prop_map(|h| AccountState::Benched {
            // Some benches have already run out.
            until_ms: NOW + h * HOUR - HOUR,
            reason: "usage limit".into(),
        }),
        1 => Just(AccountState::NeedsLogin { reason: "expired".into() }),
        1 => Just(AccountState::Disabled { reason: "no codex".into() }),
    ]
}

/// Pools mixing both window shapes: 5-hour + weekly, weekly only (reported alone), unknown.
fn arb_windows() -> impl Strategy<Value = Option<Vec<UsageWindow>>> {
    let used = prop_oneof![2 => Just(0.0), 3 => 0.0f64..100.0, 1 => Just(100.0)];
    prop_oneof![
        (used.clone(), used.clone(), 1u64..5, 1u64..168)
            .prop_map(|(f, w, fr, wr)| Some(vec![window(18_000, f, fr), window(604_800, w, wr)])),
        (used, 1u64..168).prop_map(|(w, wr)| Some(vec![window(604_800, w, wr)])),
        Just(None),
    ]
}

fn arb_pool() -> impl Strategy<Value = Vec<Account>> {
    prop::collection::vec((arb_state(), arb_windows()), 1..8).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (state, windows))| account(i, state, windows))
            .collect()
    })
}

fn ready(a: &Account) -> bool {
    select::availability(a, NOW) == Availability::Ready
}

fn untouched(a: &Account) -> bool {
    a.usage.as_ref().is_some_and(|u| u.is_untouched(NOW))
}

fn weekly_reset(a: &Account) -> Option<u64> {
    a.usage
        .as_ref()?
        .window(WindowKind::Weekly)?
        .reset_ahead(NOW)
}

proptest! {
    #[test]
    fn the_pick_follows_the_policy(pool in arb_pool(), seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let picked = select::pick(&pool, NOW, |_| false, &mut rng);
        let Some((chosen, reason)) = picked else {
            // Nothing picked only when nothing can serve.
            prop_assert!(pool.iter().all(|a| !ready(a)));
            return Ok(());
        };
        // A benched, spent, logged-out or disabled account is never chosen.
        prop_assert!(ready(chosen));
        if pool.iter().any(|a| ready(a) && untouched(a)) {
            prop_assert!(untouched(chosen));
            prop_assert_eq!(reason, Reason::Untouched);
        } else if let Some(soonest) = pool.iter().filter(|a| ready(a)).filter_map(weekly_reset).min() {
            prop_assert_eq!(weekly_reset(chosen), Some(soonest));
            prop_assert_eq!(reason, Reason::SoonestWeeklyReset { resets_at_ms: soonest });
        } else {
            let among = pool.iter().filter(|a| ready(a)).count();
            prop_assert_eq!(reason, Reason::Any { among });
        }
    }

    #[test]
    fn a_session_keeps_its_account_while_it_can_serve(pool in arb_pool(), seed in any::<u64>(), seat in 0usize..8) {
        let mut rng = StdRng::seed_from_u64(seed);
        let seat = &pool[seat % pool.len()];
        let mut sessions = Sessions::default();
        sessions.settle("s", &seat.id, Reason::Untouched);
        let picked = sessions.choose(Some("s"), &pool, None, NOW, |_| false, &mut rng);
        if ready(seat) {
            let (chosen, reason) = picked.unwrap();
            prop_assert_eq!(&chosen.id, &seat.id);
            prop_assert_eq!(reason, Reason::Kept);
        } else if let Some((chosen, _)) = picked {
            prop_assert!(chosen.id != seat.id && ready(chosen));
        }
    }

    #[test]
    fn excluded_accounts_are_never_picked(pool in arb_pool(), seed in any::<u64>(), mask in any::<u8>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let excluded = |a: &Account| {
            let i: usize = a.id.trim_start_matches("id-").parse().unwrap();
            mask & (1 << i) != 0
        };
        if let Some((chosen, _)) = select::pick(&pool, NOW, excluded, &mut rng) {
            prop_assert!(!excluded(chosen));
        }
    }
}

#[test]
fn weekly_only_accounts_compare_by_their_weekly_window() {
    // A weekly-only account reports its one window first; a tool that took "the second window"
    // as the weekly one would see no weekly window here and pick at random.
    let pool = vec![
        account(
            0,
            AccountState::Usable,
            Some(vec![window(18_000, 5.0, 1), window(604_800, 5.0, 100)]),
        ),
        account(
            1,
            AccountState::Usable,
            Some(vec![window(604_800, 50.0, 20)]),
        ),
        account(
            2,
            AccountState::Usable,
            Some(vec![window(604_800, 0.0, 150)]),
        ),
    ];
    for seed in 0..50 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (chosen, reason) = select::pick(&pool, NOW, |_| false, &mut rng).unwrap();
        assert_eq!(chosen.id, "id-2", "untouched first");
        assert_eq!(reason, Reason::Untouched);
        let (next, _) = select::pick(&pool, NOW, |a| a.id == "id-2", &mut rng).unwrap();
        assert_eq!(next.id, "id-1", "then the soonest weekly reset");
    }
}

#[test]
fn a_pin_moves_only_by_rotation_and_the_move_says_the_pin_is_gone() {
    let pool = vec![
        account(0, AccountState::Usable, Some(vec![window(604_800, 0.0, 1)])),
        account(
            1,
            AccountState::Usable,
            Some(vec![window(604_800, 40.0, 1)]),
        ),
    ];
    let mut rng = StdRng::seed_from_u64(1);
    let mut sessions = Sessions::default();
    sessions.pin("s", "id-1");
    let (chosen, reason) = sessions
        .choose(Some("s"), &pool, None, NOW, |_| false, &mut rng)
        .unwrap();
    assert_eq!((chosen.id.as_str(), reason), ("id-1", Reason::Pinned));
    assert_eq!(sessions.settle("s", "id-1", Reason::Pinned), None);
    let moved = sessions.settle("s", "id-0", Reason::Untouched).unwrap();
    assert!(moved.pin_cleared);
    assert_eq!(sessions.seat("s").unwrap().reason, Reason::Untouched);
}
