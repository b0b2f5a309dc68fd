//! The selection policy, over generated pools: the rules hold for every pool, not just the
//! ones someone thought of. Pools mix every window shape (5 h + weekly, weekly only, 30-day,
//! monthly meters, none reported, usage unknown), a per-model family, family limits, credits and
//! usage-based plans; requests are of either family, with paid requests allowed or not.

use super::common;
use pi_dispatch::domain::account::FamilyLimit;
use pi_dispatch::domain::select::{self, Availability, Cost, Need, Reason, Sessions};
use pi_dispatch::domain::usage::{Credits, FamilyUsage, MAIN_FAMILY, WindowKind};
use pi_dispatch::{Account, AccountState, Usage, UsageWindow};
use proptest::prelude::*;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

const NOW: u64 = 1_770_000_000_000;
const HOUR: u64 = 3_600_000;
const SPARK: &str = "codex_bengalfox";
const FIVE_HOURS_S: u64 = 18_000;
const WEEK_S: u64 = 604_800;
const MONTH_S: u64 = 2_592_000;

fn window(seconds: u64, used: f64, reset_in_hours: u64) -> UsageWindow {
    UsageWindow {
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
            ..Usage::default()
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
            reason: "throttled".into(),
        }),
        1 => Just(AccountState::NeedsLogin { reason: "expired".into() }),
        1 => Just(AccountState::Disabled { reason: "no codex".into() }),
    ]
}

fn arb_used() -> impl Strategy<Value = f64> {
    prop_oneof![2 => Just(0.0), 3 => 0.0f64..100.0, 1 => Just(100.0)]
}

/// Every plan's windows: 5 h + weekly (Plus), weekly only (Pro, reported alone), a 30-day
/// window (free), 5 h + weekly + a monthly meter, a monthly meter alone, no window reported.
fn arb_windows() -> impl Strategy<Value = Vec<UsageWindow>> {
    let used = arb_used;
    prop_oneof![
        (used(), used(), 1u64..5, 1u64..168)
            .prop_map(|(f, w, fr, wr)| vec![window(FIVE_HOURS_S, f, fr), window(WEEK_S, w, wr)]),
        (used(), 1u64..168).prop_map(|(w, wr)| vec![window(WEEK_S, w, wr)]),
        (used(), 1u64..720).prop_map(|(m, mr)| vec![window(MONTH_S, m, mr)]),
        (used(), used(), used(), 1u64..5, 1u64..168, 1u64..720).prop_map(
            |(f, w, m, fr, wr, mr)| vec![
                window(FIVE_HOURS_S, f, fr),
                window(WEEK_S, w, wr),
                window(MONTH_S, m, mr)
            ]
        ),
        Just(Vec::new()),
    ]
}

/// Everything an account may carry besides its state.
#[derive(Clone, Debug)]
struct Spec {
    state: AccountState,
    /// `None`: its usage was never learned.
    main: Option<Vec<UsageWindow>>,
    spark: Option<Vec<UsageWindow>>,
    /// A usage limit the backend answered with: family, hours until it ends (0: over).
    limit: Option<(bool, u64)>,
    credits: Option<bool>,
    usage_based: bool,
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    (
        arb_state(),
        prop_oneof![5 => arb_windows().prop_map(Some), 1 => Just(None)],
        prop::option::of(arb_windows()),
        prop::option::weighted(0.25, (any::<bool>(), 0u64..10)),
        prop::option::weighted(0.3, any::<bool>()),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(state, main, spark, limit, credits, usage_based)| Spec {
            state,
            main,
            spark,
            limit,
            credits,
            usage_based,
        })
}

fn build(i: usize, spec: &Spec) -> Account {
    let mut account = account(i, spec.state.clone(), spec.main.clone());
    if let Some(usage) = account.usage.as_mut() {
        if let Some(spark) = &spec.spark {
            usage.families.push(FamilyUsage {
                id: SPARK.into(),
                name: Some("GPT-5.3-Codex-Spark".into()),
                windows: spark.clone(),
            });
        }
        usage.credits = spec.credits.map(|pays| Credits {
            has_credits: true,
            unlimited: false,
            balance: Some(if pays { 25.0 } else { 0.0 }),
        });
    }
    if let Some((spark, hours)) = spec.limit {
        account.limits.push(FamilyLimit {
            family: if spark { SPARK } else { MAIN_FAMILY }.into(),
            until_ms: NOW + hours * HOUR,
            since_ms: NOW - HOUR,
            used_percent: Some(100.0),
            reason: "usage limit".into(),
        });
    }
    if spec.usage_based {
        account.plan = Some("self_serve_business_usage_based".into());
    }
    account
}

fn arb_pool() -> impl Strategy<Value = Vec<Account>> {
    prop::collection::vec(arb_spec(), 1..8).prop_map(|specs| {
        specs
            .iter()
            .enumerate()
            .map(|(i, spec)| build(i, spec))
            .collect()
    })
}

fn arb_need() -> impl Strategy<Value = (bool, bool)> {
    (any::<bool>(), any::<bool>())
}

fn need(spark: bool, spend_money: bool) -> Need<'static> {
    Need {
        family: if spark { SPARK } else { MAIN_FAMILY },
        spend_money,
    }
}

// The rules, written out independently of the policy's code.

fn family_windows<'a>(a: &'a Account, family: &str) -> Option<&'a [UsageWindow]> {
    let usage = a.usage.as_ref()?;
    Some(match usage.families.iter().find(|f| f.id == family) {
        Some(own) if family != MAIN_FAMILY => &own.windows,
        _ => &usage.windows,
    })
}

fn limited(a: &Account, family: &str) -> bool {
    a.limits
        .iter()
        .any(|l| l.family == family && l.until_ms > NOW)
}

fn spent(a: &Account, family: &str) -> bool {
    family_windows(a, family).is_some_and(|w| {
        w.iter()
            .any(|w| w.used_now(NOW) >= 100.0 && w.reset_ahead(NOW).is_some())
    })
}

fn state_ok(a: &Account) -> bool {
    match &a.state {
        AccountState::Usable => true,
        AccountState::Benched { until_ms, .. } => *until_ms <= NOW,
        _ => false,
    }
}

fn credits_pay(a: &Account) -> bool {
    let credits = a.usage.as_ref().and_then(|u| u.credits.as_ref());
    credits.is_some_and(|c| c.balance.is_some_and(|b| b > 0.0))
}

fn usage_based(a: &Account) -> bool {
    a.plan.as_deref() == Some("self_serve_business_usage_based")
}

/// Serves from included quota.
fn included(a: &Account, family: &str) -> bool {
    state_ok(a) && !limited(a, family) && !spent(a, family) && !usage_based(a)
}

/// Serves only at the user's expense.
fn paid(a: &Account, family: &str) -> bool {
    state_ok(a)
        && !limited(a, family)
        && (if spent(a, family) {
            credits_pay(a)
        } else {
            usage_based(a)
        })
}

fn untouched(a: &Account, family: &str) -> bool {
    family_windows(a, family)
        .is_some_and(|w| !w.is_empty() && w.iter().all(|w| w.used_now(NOW) <= 0.0))
}

fn binding_reset(a: &Account, family: &str) -> Option<u64> {
    family_windows(a, family)?
        .iter()
        .filter(|w| w.reset_ahead(NOW).is_some())
        .max_by_key(|w| w.window_seconds)
        .and_then(|w| w.reset_ahead(NOW))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_pick_follows_the_policy(pool in arb_pool(), (spark, spend) in arb_need(), seed in any::<u64>()) {
        let need = need(spark, spend);
        let family = need.family;
        let mut rng = StdRng::seed_from_u64(seed);
        let picked = select::pick(&pool, &need, NOW, |_| false, &mut rng);
        let any_included = pool.iter().any(|a| included(a, family));
        let any_paid = pool.iter().any(|a| paid(a, family));
        let Some((chosen, reason)) = picked else {
            // Nothing picked only when nothing can serve (money included, if allowed).
            let something_serves = any_included || (spend && any_paid);
            prop_assert!(!something_serves);
            return Ok(());
        };
        if any_included {
            // Included quota first: a paid account only once every included one is spent.
            prop_assert!(included(chosen, family), "{chosen:?}");
            let ready: Vec<&Account> = pool.iter().filter(|a| included(a, family)).collect();
            if ready.iter().any(|a| untouched(a, family)) {
                prop_assert!(untouched(chosen, family));
                prop_assert_eq!(reason, Reason::Untouched);
            } else if let Some(soonest) = ready.iter().filter_map(|a| binding_reset(a, family)).min() {
                prop_assert_eq!(binding_reset(chosen, family), Some(soonest));
                let at = match reason {
                    Reason::SoonestReset { resets_at_ms, .. } => Some(resets_at_ms),
                    _ => None,
                };
                prop_assert_eq!(at, Some(soonest));
            } else if ready.iter().any(|a| a.usage.is_some()) {
                // Usage that could not be learned ranks below every account whose usage is known.
                prop_assert!(chosen.usage.is_some());
                let among = ready.iter().filter(|a| a.usage.is_some()).count();
                prop_assert_eq!(reason, Reason::Any { among });
            } else {
                prop_assert_eq!(reason, Reason::UsageUnknown { among: ready.len() });
            }
        } else {
            // Money is spent only with the user's permission.
            prop_assert!(spend, "a paid account without permission: {chosen:?}");
            prop_assert!(paid(chosen, family));
            let among = pool.iter().filter(|a| paid(a, family)).count();
            prop_assert_eq!(reason, Reason::Paid { among });
        }
        // A benched, limited-in-family, logged-out or disabled account is never chosen, nor one
        // spent in the family unless its credits pay and paying is allowed.
        prop_assert!(state_ok(chosen) && !limited(chosen, family));
        prop_assert!(!spent(chosen, family) || (spend && credits_pay(chosen)));
        prop_assert_eq!(select::admits(chosen, &need, NOW), true);
    }

    #[test]
    fn a_family_limit_or_spent_family_stops_only_that_family(pool in arb_pool()) {
        // The main family's verdict on an account is the same with its Spark family (windows
        // and limits) removed: a spent Spark limit never stops the account's other models.
        for a in &pool {
            let mut plain = a.clone();
            if let Some(usage) = plain.usage.as_mut() {
                usage.families.clear();
            }
            plain.limits.retain(|l| l.family != SPARK);
            prop_assert_eq!(
                select::availability(a, MAIN_FAMILY, NOW),
                select::availability(&plain, MAIN_FAMILY, NOW)
            );
            let reports_spark = a.usage.as_ref().is_some_and(|u| !u.families.is_empty());
            if limited(a, SPARK) || (reports_spark && spent(a, SPARK)) {
                let spark = select::availability(a, SPARK, NOW);
                prop_assert_ne!(spark, Availability::Ready);
            }
        }
    }

    #[test]
    fn money_is_spent_only_when_allowed_and_only_after_included_quota(pool in arb_pool(), spark in any::<bool>(), seed in any::<u64>()) {
        let off = need(spark, false);
        let on = need(spark, true);
        let mut rng = StdRng::seed_from_u64(seed);
        if let Some((chosen, reason)) = select::pick(&pool, &off, NOW, |_| false, &mut rng) {
            prop_assert_eq!(select::cost(chosen, off.family, NOW), Some(Cost::Included));
            let paid_reason = matches!(reason, Reason::Paid { .. });
            prop_assert!(!paid_reason);
        }
        // Allowing money changes the choice only when no included quota is left.
        let mut same = StdRng::seed_from_u64(seed);
        let mut again = StdRng::seed_from_u64(seed);
        let without = select::pick(&pool, &off, NOW, |_| false, &mut same).map(|(a, r)| (a.id.clone(), r));
        let with = select::pick(&pool, &on, NOW, |_| false, &mut again).map(|(a, r)| (a.id.clone(), r));
        if without.is_some() {
            prop_assert_eq!(without, with);
        }
    }

    #[test]
    fn a_session_keeps_its_account_while_it_can_serve(pool in arb_pool(), (spark, spend) in arb_need(), seed in any::<u64>(), seat in 0usize..8) {
        let need = need(spark, spend);
        let mut rng = StdRng::seed_from_u64(seed);
        let seat = &pool[seat % pool.len()];
        let mut sessions = Sessions::default();
        sessions.settle("s", &seat.id, Reason::Untouched);
        let picked = sessions.choose(Some("s"), &pool, None, &need, NOW, |_| false, &mut rng);
        if included(seat, need.family) {
            let (chosen, reason) = picked.unwrap();
            prop_assert_eq!(&chosen.id, &seat.id);
            prop_assert_eq!(reason, Reason::Kept);
        } else if let Some((chosen, _)) = picked {
            // A session on an account that costs money moves as soon as included quota exists.
            if pool.iter().any(|a| included(a, need.family)) {
                prop_assert!(included(chosen, need.family));
            } else {
                prop_assert!(spend && paid(chosen, need.family));
            }
        }
    }

    #[test]
    fn excluded_accounts_are_never_picked(pool in arb_pool(), (spark, spend) in arb_need(), seed in any::<u64>(), mask in any::<u8>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let excluded = |a: &Account| {
            let i: usize = a.id.trim_start_matches("id-").parse().unwrap();
            mask & (1 << i) != 0
        };
        if let Some((chosen, _)) = select::pick(&pool, &need(spark, spend), NOW, excluded, &mut rng) {
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
            Some(vec![window(FIVE_HOURS_S, 5.0, 1), window(WEEK_S, 5.0, 100)]),
        ),
        account(
            1,
            AccountState::Usable,
            Some(vec![window(WEEK_S, 50.0, 20)]),
        ),
        account(
            2,
            AccountState::Usable,
            Some(vec![window(WEEK_S, 0.0, 150)]),
        ),
    ];
    let main = Need::main(false);
    for seed in 0..50 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (chosen, reason) = select::pick(&pool, &main, NOW, |_| false, &mut rng).unwrap();
        assert_eq!(chosen.id, "id-2", "untouched first");
        assert_eq!(reason, Reason::Untouched);
        let (next, reason) = select::pick(&pool, &main, NOW, |a| a.id == "id-2", &mut rng).unwrap();
        assert_eq!(next.id, "id-1", "then the soonest weekly reset");
        assert_eq!(
            reason,
            Reason::SoonestReset {
                resets_at_ms: NOW + 20 * HOUR,
                kind: WindowKind::Weekly
            }
        );
    }
}

#[test]
fn free_and_monthly_accounts_are_ranked_by_their_longest_window_not_left_to_chance() {
    // Free accounts (a 30-day window only) and a Plus account with a monthly meter: the rule
    // "what is left is lost soonest" reads the window that binds longest.
    let pool = vec![
        account(
            0,
            AccountState::Usable,
            Some(vec![window(MONTH_S, 40.0, 500)]),
        ),
        account(
            1,
            AccountState::Usable,
            Some(vec![window(MONTH_S, 70.0, 90)]),
        ),
        account(
            2,
            AccountState::Usable,
            Some(vec![
                window(FIVE_HOURS_S, 10.0, 1),
                window(WEEK_S, 10.0, 48),
                window(MONTH_S, 10.0, 300),
            ]),
        ),
    ];
    for seed in 0..50 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (chosen, reason) =
            select::pick(&pool, &Need::main(false), NOW, |_| false, &mut rng).unwrap();
        assert_eq!(chosen.id, "id-1");
        assert_eq!(
            reason,
            Reason::SoonestReset {
                resets_at_ms: NOW + 90 * HOUR,
                kind: WindowKind::Monthly
            }
        );
    }
}

#[test]
fn an_account_whose_usage_could_not_be_learned_comes_after_every_known_one() {
    // The rule for unknown usage: below any account known to have quota (even one whose reset
    // is unknown), used only when no known account can serve.
    let known_without_reset = UsageWindow {
        window_seconds: Some(WEEK_S),
        used_percent: 90.0,
        resets_at_ms: None,
    };
    let pool = vec![
        account(0, AccountState::Usable, None),
        account(1, AccountState::Usable, Some(vec![known_without_reset])),
        account(2, AccountState::Usable, None),
    ];
    let main = Need::main(false);
    for seed in 0..50 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (chosen, reason) = select::pick(&pool, &main, NOW, |_| false, &mut rng).unwrap();
        assert_eq!(
            (chosen.id.as_str(), reason),
            ("id-1", Reason::Any { among: 1 })
        );
        let (chosen, reason) =
            select::pick(&pool, &main, NOW, |a| a.id == "id-1", &mut rng).unwrap();
        assert_ne!(chosen.id, "id-1");
        assert_eq!(reason, Reason::UsageUnknown { among: 2 });
    }
}

#[test]
fn a_paid_seat_is_kept_only_while_no_account_has_included_quota() {
    let mut spent_with_credits = account(
        0,
        AccountState::Usable,
        Some(vec![window(WEEK_S, 100.0, 5)]),
    );
    spent_with_credits.usage.as_mut().unwrap().credits = Some(Credits {
        has_credits: true,
        unlimited: false,
        balance: Some(10.0),
    });
    let mut other = account(
        1,
        AccountState::Usable,
        Some(vec![window(WEEK_S, 100.0, 9)]),
    );
    let paying = Need::main(true);
    let mut rng = StdRng::seed_from_u64(7);
    let mut sessions = Sessions::default();
    sessions.settle("s", "id-0", Reason::Paid { among: 1 });
    let pool = vec![spent_with_credits.clone(), other.clone()];
    let (kept, reason) = sessions
        .choose(Some("s"), &pool, None, &paying, NOW, |_| false, &mut rng)
        .unwrap();
    assert_eq!((kept.id.as_str(), reason), ("id-0", Reason::Kept));
    // Without permission the credits are not touched: nothing serves.
    assert!(
        sessions
            .choose(
                Some("s"),
                &pool,
                None,
                &Need::main(false),
                NOW,
                |_| false,
                &mut rng
            )
            .is_none()
    );
    // Included quota is back on the other account: the session moves off the paid one.
    other.usage.as_mut().unwrap().windows[0].used_percent = 30.0;
    let pool = vec![spent_with_credits, other];
    let (moved, _) = sessions
        .choose(Some("s"), &pool, None, &paying, NOW, |_| false, &mut rng)
        .unwrap();
    assert_eq!(moved.id, "id-1");
}

#[test]
fn a_pin_moves_only_by_rotation_and_the_move_says_the_pin_is_gone() {
    let pool = vec![
        account(0, AccountState::Usable, Some(vec![window(WEEK_S, 0.0, 1)])),
        account(1, AccountState::Usable, Some(vec![window(WEEK_S, 40.0, 1)])),
    ];
    let mut rng = StdRng::seed_from_u64(1);
    let mut sessions = Sessions::default();
    sessions.pin("s", "id-1");
    let (chosen, reason) = sessions
        .choose(
            Some("s"),
            &pool,
            None,
            &Need::main(false),
            NOW,
            |_| false,
            &mut rng,
        )
        .unwrap();
    assert_eq!((chosen.id.as_str(), reason), ("id-1", Reason::Pinned));
    assert_eq!(sessions.settle("s", "id-1", Reason::Pinned), None);
    let moved = sessions.settle("s", "id-0", Reason::Untouched).unwrap();
    assert!(moved.pin_cleared);
    assert_eq!(sessions.seat("s").unwrap().reason, Reason::Untouched);
}
