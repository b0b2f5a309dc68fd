use super::*;

fn pool(ids: &[&str]) -> AccountsFile {
    let account = |id: &str| Account {
        id: id.into(),
        label: id.into(),
        chatgpt_account_id: id.into(),
        ..super::tests::account()
    };
    AccountsFile {
        version: 1,
        accounts: ids.iter().map(|id| account(id)).collect(),
        ..AccountsFile::default()
    }
}

fn served(session: &str, at_ms: u64) -> Change {
    Change::Served {
        session: session.into(),
        at_ms,
        foreign: Vec::new(),
    }
}

#[test]
fn bindings_are_bounded_to_the_most_recent_sessions() {
    let mut file = pool(&["a"]);
    for n in 0..(MAX_BINDINGS as u64 + 40) {
        file.apply_change("a", &served(&format!("s{n}"), 1_000 + n));
    }
    assert_eq!(file.sessions.len(), MAX_BINDINGS);
    let now = 2_000;
    assert!(
        file.binding("s0", now).is_none(),
        "the oldest are forgotten"
    );
    assert!(
        file.binding(&format!("s{}", MAX_BINDINGS + 39), now)
            .is_some()
    );
    // Serving a session again moves it, it is not listed twice.
    file.apply_change("a", &served("s100", 5_000));
    assert_eq!(
        file.sessions.iter().filter(|b| b.session == "s100").count(),
        1
    );
}

#[test]
fn bindings_expire_and_die_with_their_account() {
    let mut file = pool(&["a", "b"]);
    file.apply_change("a", &served("old", 0));
    file.apply_change("b", &served("gone", 0));
    assert_eq!(
        file.binding("old", BINDING_LIFETIME_MS)
            .map(|b| b.account_id.as_str()),
        Some("a")
    );
    assert!(
        file.binding("old", BINDING_LIFETIME_MS + 1).is_none(),
        "expired"
    );
    file.accounts.retain(|a| a.id != "b");
    assert!(file.binding("gone", 1).is_none(), "its account was removed");
    // The next binding drops what has expired.
    file.apply_change("a", &served("new", BINDING_LIFETIME_MS + 1));
    assert!(!file.sessions.iter().any(|b| b.session == "old"));
}
