//! Logging accounts in against the simulator: the browser flow through the callback listener or a
//! pasted redirect, the device-code flow, every way a login can fail without touching the pool,
//! re-login, label rules, and renaming and removing accounts.
//!
//! The tests play the browser themselves: they GET the authorize URL from the simulator without
//! following its redirect, then hand the `Location` to the callback listener or paste it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::common;
use super::common::{Rig, failed, rig_empty};
use dispatch_sim::{Behavior, Script, TokenBehavior};
use pi_dispatch::ErrorKind;
use pi_dispatch::domain::account::LoginOutcome;
use pi_dispatch::domain::oauth::Identity;
use pi_dispatch::runtime::login::browser::{BrowserLogin, Callback};
use pi_dispatch::runtime::login::device::DeviceLogin;
use pi_dispatch::runtime::login::{LoginOptions, save_login};
use pi_dispatch::{AccountState, Tokens, Usage};
use reqwest::Url;

fn options(label: Option<&str>, timeout: Duration) -> LoginOptions {
    LoginOptions {
        label: label.map(str::to_owned),
        timeout,
    }
}

const GENEROUS: Duration = Duration::from_secs(30);

async fn browser(rig: &Rig, label: Option<&str>) -> Arc<BrowserLogin> {
    Arc::new(
        BrowserLogin::start(rig.ctx.clone(), options(label, GENEROUS), 0)
            .await
            .unwrap(),
    )
}

fn spawn_wait(
    login: &Arc<BrowserLogin>,
) -> tokio::task::JoinHandle<Result<LoginOutcome, pi_dispatch::Error>> {
    let login = login.clone();
    tokio::spawn(async move { login.wait().await })
}

/// A client that, like the test's "browser", sees each redirect instead of following it.
fn browser_client() -> reqwest::Client {
    common::client();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Plays the user's consent at the simulator; returns where the issuer sends the browser.
async fn consent(url: &Url) -> Url {
    let response = browser_client().get(url.clone()).send().await.unwrap();
    assert_eq!(response.status(), 302, "the issuer redirects back");
    let location = response.headers()["location"].to_str().unwrap();
    Url::parse(location).unwrap()
}

fn param(url: &Url, name: &str) -> String {
    url.query_pairs()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The redirect as the browser would request it: same path and query, at the listener.
async fn follow(location: &Url, port: u16) -> (u16, String) {
    let mut at = location.clone();
    at.set_host(Some("127.0.0.1")).unwrap();
    at.set_port(Some(port)).unwrap();
    let response = browser_client().get(at).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn port_of(login: &BrowserLogin) -> u16 {
    match login.callback() {
        Callback::Listening { port } => *port,
        Callback::Unavailable { notice } => panic!("no listener: {notice}"),
    }
}

/// Waits until nothing accepts connections on `port` any more.
async fn assert_closes(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "the callback listener on {port} is still open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn file_bytes(rig: &Rig) -> Option<Vec<u8>> {
    std::fs::read(rig.store.path()).ok()
}

/// The pool holds `account_id` with exactly the tokens the simulator issued last.
fn assert_saved_current_tokens(rig: &Rig, label: &str, account_id: &str) {
    let file = rig.store.load().unwrap();
    let account = file.by_label(label).expect("the account is saved");
    let current = rig.sim.tokens(account_id).unwrap();
    assert_eq!(account.chatgpt_account_id, account_id);
    assert!(
        account.tokens.access_token == current.access,
        "the stored access token is the one the login got"
    );
    assert!(
        account.tokens.refresh_token == current.refresh,
        "the stored refresh token is the one the login got"
    );
    assert!(
        account.tokens.id_token.as_deref() == Some(current.id_token.as_str()),
        "the stored id token is the one the login got"
    );
    assert_eq!(account.state, AccountState::Usable);
}

#[tokio::test]
async fn the_browser_callback_logs_in_answers_the_page_and_closes_the_listener() {
    let rig = rig_empty(Script::default_accounts(1)).await;
    let login = browser(&rig, None).await;
    let port = port_of(&login);
    assert_eq!(
        param(login.url(), "redirect_uri"),
        format!("http://localhost:{port}/auth/callback")
    );
    let waiting = spawn_wait(&login);

    // A stray request (the browser's favicon) neither answers nor ends the login.
    let (favicon, _) = follow(&Url::parse("http://x/favicon.ico").unwrap(), port).await;
    assert_eq!(favicon, 404);
    let location = consent(login.url()).await;
    let (status, page) = follow(&location, port).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("acct-a@example.com"), "{page}");

    let outcome = waiting.await.unwrap().unwrap();
    assert_eq!(
        outcome,
        LoginOutcome {
            label: "acct-a@example.com".into(),
            email: Some("acct-a@example.com".into()),
            plan: Some("plus".into()),
            added: true,
            ignored_label: None,
        }
    );
    assert_saved_current_tokens(&rig, "acct-a@example.com", "acct-a");
    let account = rig.store.load().unwrap().accounts.remove(0);
    assert_eq!(account.chatgpt_user_id.as_deref(), Some("user-acct-a"));
    assert_closes(port).await;

    // The new account serves a model request with its new token.
    let response = rig.pi_request().send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("hello from acct-a"));
    let seen = &rig.sim.requests()[0];
    assert!(
        seen.header("authorization")
            == Some(format!("Bearer {}", rig.sim.tokens("acct-a").unwrap().access).as_str()),
        "the new account's token was sent"
    );
}

#[tokio::test]
async fn a_pasted_redirect_logs_in_in_every_form() {
    let rig = rig_empty(Script::default_accounts(3)).await;
    type Form = fn(&Url) -> String;
    let forms: [(&str, Form); 3] = [
        ("acct-a", |location| location.to_string()),
        ("acct-b", |location| {
            format!("{}#{}", param(location, "code"), param(location, "state"))
        }),
        ("acct-c", |location| location.query().unwrap().to_owned()),
    ];
    for (account_id, form) in forms {
        rig.sim.queue_login(account_id).unwrap();
        let login = browser(&rig, Some(account_id)).await;
        let waiting = spawn_wait(&login);
        let location = consent(login.url()).await;
        login.submit_paste(&form(&location)).unwrap();
        let outcome = waiting.await.unwrap().unwrap();
        assert_eq!(outcome.label, account_id);
        assert!(outcome.added);
        assert_saved_current_tokens(&rig, account_id, account_id);
        assert_closes(port_of(&login)).await;
    }
    assert_eq!(rig.store.load().unwrap().accounts.len(), 3);
}

#[tokio::test]
async fn text_that_is_no_redirect_is_refused_and_the_login_goes_on() {
    let rig = rig_empty(Script::default_accounts(1)).await;
    let login = browser(&rig, None).await;
    let waiting = spawn_wait(&login);
    let refused = failed(login.submit_paste("not a url"));
    assert_eq!(refused.kind, ErrorKind::Paste);
    let location = consent(login.url()).await;
    login.submit_paste(location.as_str()).unwrap();
    assert!(waiting.await.unwrap().is_ok());
    let late = failed(login.submit_paste(location.as_str()));
    assert_eq!(late.kind, ErrorKind::Login, "the login is over");
}

#[tokio::test]
async fn a_busy_port_leaves_the_paste_path() {
    let rig = rig_empty(Script::default_accounts(1)).await;
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let login = Arc::new(
        BrowserLogin::start(rig.ctx.clone(), options(None, GENEROUS), port)
            .await
            .unwrap(),
    );
    assert_eq!(
        login.callback(),
        &Callback::Unavailable {
            notice: format!("port {port} is in use; paste the redirect URL")
        }
    );
    // The redirect still names the port, so the address the browser fails to load is the one
    // to paste.
    assert_eq!(
        param(login.url(), "redirect_uri"),
        format!("http://localhost:{port}/auth/callback")
    );
    let waiting = spawn_wait(&login);
    let location = consent(login.url()).await;
    login.submit_paste(location.as_str()).unwrap();
    assert!(waiting.await.unwrap().unwrap().added);
    assert_saved_current_tokens(&rig, "acct-a@example.com", "acct-a");
}

#[tokio::test]
async fn a_state_mismatch_changes_nothing() {
    let rig = rig_empty(Script::default_accounts(1)).await;
    let before = file_bytes(&rig);

    // From the browser: the page says why, and the login ends.
    let login = browser(&rig, None).await;
    let waiting = spawn_wait(&login);
    let mut location = consent(login.url()).await;
    let code = param(&location, "code");
    location.set_query(Some(&format!("code={code}&state=someone-elses")));
    let (status, page) = follow(&location, port_of(&login)).await;
    assert_eq!(status, 400);
    assert!(page.contains("state does not match"), "{page}");
    let error = failed(waiting.await.unwrap());
    assert_eq!(error.kind, ErrorKind::Login);
    assert!(error.message.contains("state does not match"));
    assert!(!error.chain().contains(&code), "the code never shows");

    // Pasted, in the `code#state` form.
    let login = browser(&rig, None).await;
    let waiting = spawn_wait(&login);
    let location = consent(login.url()).await;
    login
        .submit_paste(&format!("{}#wrong", param(&location, "code")))
        .unwrap();
    let error = failed(waiting.await.unwrap());
    assert!(error.message.contains("state does not match"));

    assert_eq!(file_bytes(&rig), before, "the store was not touched");
    assert_eq!(
        rig.sim.stats().account("acct-a").token_authorization_code,
        0,
        "no code was exchanged"
    );
}

#[tokio::test]
async fn a_denied_consent_changes_nothing() {
    let rig = rig_empty(Script::default_accounts(1)).await;
    rig.sim.queue_login_denied();
    let login = browser(&rig, None).await;
    let waiting = spawn_wait(&login);
    let location = consent(login.url()).await;
    assert_eq!(param(&location, "error"), "access_denied");
    let (status, page) = follow(&location, port_of(&login)).await;
    assert_eq!(status, 400);
    assert!(page.contains("access_denied"), "{page}");
    let error = failed(waiting.await.unwrap());
    assert_eq!(error.kind, ErrorKind::Login);
    assert!(
        error.message.contains("refused (access_denied"),
        "{}",
        error.message
    );
    assert_eq!(file_bytes(&rig), None);
    assert_closes(port_of(&login)).await;
}

#[tokio::test]
async fn a_failed_code_exchange_changes_nothing() {
    let rig = rig_empty(Script::default_accounts(1)).await;
    rig.sim
        .set_token_behaviors("acct-a", vec![TokenBehavior::ServerError { status: 500 }])
        .unwrap();
    let login = browser(&rig, None).await;
    let waiting = spawn_wait(&login);
    let location = consent(login.url()).await;
    login.submit_paste(location.as_str()).unwrap();
    let error = failed(waiting.await.unwrap());
    assert_eq!(error.kind, ErrorKind::Login);
    assert!(
        error
            .message
            .contains("refused the authorization code (500 Internal Server Error, server_error)"),
        "{}",
        error.message
    );
    assert!(!error.chain().contains(&param(&location, "code")));
    assert_eq!(file_bytes(&rig), None);

    // A code that was already spent is refused the same way.
    let login = browser(&rig, None).await;
    let waiting = spawn_wait(&login);
    let location = consent(login.url()).await;
    login.submit_paste(location.as_str()).unwrap();
    waiting.await.unwrap().unwrap();
    let saved = file_bytes(&rig);
    let again = browser(&rig, None).await;
    let waiting = spawn_wait(&again);
    let replay = format!(
        "{}#{}",
        param(&location, "code"),
        param(again.url(), "state")
    );
    again.submit_paste(&replay).unwrap();
    let error = failed(waiting.await.unwrap());
    assert!(error.message.contains("invalid_grant"), "{}", error.message);
    assert_eq!(file_bytes(&rig), saved);
}

#[tokio::test]
async fn a_browser_login_can_be_cancelled_and_times_out() {
    let rig = rig_empty(Script::default_accounts(1)).await;
    let login = browser(&rig, None).await;
    let waiting = spawn_wait(&login);
    login.cancel();
    let error = failed(waiting.await.unwrap());
    assert_eq!(error.kind, ErrorKind::LoginCancelled);
    assert_closes(port_of(&login)).await;

    let login = Arc::new(
        BrowserLogin::start(
            rig.ctx.clone(),
            options(None, Duration::from_millis(300)),
            0,
        )
        .await
        .unwrap(),
    );
    let started = Instant::now();
    let error = failed(login.wait().await);
    assert_eq!(error.kind, ErrorKind::LoginTimedOut);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_closes(port_of(&login)).await;
    assert_eq!(file_bytes(&rig), None);
}

async fn device(rig: &Rig, label: Option<&str>, timeout: Duration) -> Arc<DeviceLogin> {
    Arc::new(
        DeviceLogin::start(rig.ctx.clone(), options(label, timeout))
            .await
            .unwrap(),
    )
}

async fn wait_for_polls(rig: &Rig, polls: u64) {
    let reached = rig
        .sim
        .wait_for(Duration::from_secs(10), |s| s.global.device_poll >= polls)
        .await;
    assert!(reached.is_some(), "the device login polls");
}

#[tokio::test]
async fn a_device_login_polls_while_pending_then_succeeds() {
    let rig = rig_empty(Script::default_accounts(2)).await;
    let login = device(&rig, None, GENEROUS).await;
    assert_eq!(
        login.verification_url().as_str(),
        format!("{}/codex/device", rig.sim.issuer())
    );
    let waiting = {
        let login = login.clone();
        tokio::spawn(async move { login.wait().await })
    };
    wait_for_polls(&rig, 1).await;
    assert!(!waiting.is_finished(), "pending keeps it polling");
    rig.sim
        .approve_device(Some(login.user_code()), Some("acct-b"))
        .unwrap();
    let outcome = waiting.await.unwrap().unwrap();
    assert_eq!(outcome.label, "acct-b@example.com");
    assert_saved_current_tokens(&rig, "acct-b@example.com", "acct-b");
    assert!(rig.sim.stats().global.device_poll >= 2);
}

#[tokio::test]
async fn a_device_login_stops_at_its_deadline() {
    let rig = rig_empty(Script::default_accounts(1)).await;
    let login = device(&rig, None, Duration::from_millis(2500)).await;
    let started = Instant::now();
    let error = failed(login.wait().await);
    assert_eq!(error.kind, ErrorKind::LoginTimedOut);
    assert!(
        error.message.contains("within 2 seconds"),
        "{}",
        error.message
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    let polls = rig.sim.stats().global.device_poll;
    assert!(
        (1..=2).contains(&polls),
        "one poll a second, then none: {polls}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rig.sim.stats().global.device_poll, polls);
    assert_eq!(file_bytes(&rig), None);
}

#[tokio::test]
async fn a_device_login_can_be_cancelled_or_denied() {
    let rig = rig_empty(Script::default_accounts(1)).await;
    let login = device(&rig, None, GENEROUS).await;
    let waiting = {
        let login = login.clone();
        tokio::spawn(async move { login.wait().await })
    };
    wait_for_polls(&rig, 1).await;
    login.cancel();
    let error = failed(waiting.await.unwrap());
    assert_eq!(error.kind, ErrorKind::LoginCancelled);
    let polls = rig.sim.stats().global.device_poll;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rig.sim.stats().global.device_poll,
        polls,
        "no poll after cancel"
    );

    let login = device(&rig, None, GENEROUS).await;
    rig.sim.deny_device(Some(login.user_code())).unwrap();
    let error = failed(login.wait().await);
    assert_eq!(error.kind, ErrorKind::Login);
    assert!(error.message.contains("denied"), "{}", error.message);
    assert_eq!(file_bytes(&rig), None);
}

/// Logs `account_id` in through a paste, as `label` if given.
async fn log_in(rig: &Rig, account_id: &str, label: Option<&str>) -> LoginOutcome {
    rig.sim.queue_login(account_id).unwrap();
    let login = browser(rig, label).await;
    let waiting = spawn_wait(&login);
    let location = consent(login.url()).await;
    login.submit_paste(location.as_str()).unwrap();
    waiting.await.unwrap().unwrap()
}

#[tokio::test]
async fn logging_in_again_updates_the_tokens_and_keeps_id_label_and_history() {
    let rig = rig_empty(Script::default_accounts(1)).await;
    log_in(&rig, "acct-a", Some("work")).await;
    let first = rig.store.load().unwrap().accounts.remove(0);
    let usage = Usage {
        observed_at_ms: 42,
        ..Usage::default()
    };
    let kept = usage.clone();
    rig.store
        .update_account(&first.id, |account| {
            account.state = AccountState::NeedsLogin {
                reason: "refresh_token_reused".into(),
            };
            account.usage = Some(kept);
        })
        .unwrap();

    let outcome = log_in(&rig, "acct-a", Some("other")).await;
    assert!(!outcome.added);
    assert_eq!(outcome.label, "work");
    assert_eq!(outcome.ignored_label.as_deref(), Some("other"));

    let file = rig.store.load().unwrap();
    assert_eq!(
        file.accounts.len(),
        1,
        "no second entry for the same identity"
    );
    let again = &file.accounts[0];
    assert_eq!(again.id, first.id);
    assert_eq!(again.label, "work");
    assert_eq!(again.added_at_ms, first.added_at_ms);
    assert_eq!(again.usage, Some(usage));
    assert!(
        again.tokens.refresh_token != first.tokens.refresh_token,
        "a re-login stores a new refresh token"
    );
    assert_saved_current_tokens(&rig, "work", "acct-a");
}

fn identity(account_id: &str, email: Option<&str>) -> Identity {
    Identity {
        chatgpt_account_id: account_id.into(),
        chatgpt_user_id: Some(format!("user-{account_id}")),
        email: email.map(str::to_owned),
        plan: None,
    }
}

fn fake_tokens() -> Tokens {
    Tokens {
        access_token: "at".into(),
        refresh_token: "rt".into(),
        id_token: None,
        expires_at_ms: 0,
    }
}

#[tokio::test]
async fn labels_come_from_the_argument_the_email_or_the_first_free_number() {
    let rig = rig_empty(Script::default_accounts(1)).await;
    let store = &rig.store;
    let save = |id: &str, email: Option<&str>, label: Option<&str>| {
        save_login(store, &identity(id, email), fake_tokens(), label)
    };
    assert_eq!(
        save("a", Some("a@example.com"), Some("mine"))
            .unwrap()
            .label,
        "mine"
    );
    assert_eq!(
        save("b", Some("b@example.com"), None).unwrap().label,
        "b@example.com"
    );
    assert_eq!(save("c", None, None).unwrap().label, "account-1");
    assert_eq!(save("d", None, None).unwrap().label, "account-2");
    // The same email in another workspace is another identity; its email label is taken.
    assert_eq!(
        save("e", Some("b@example.com"), None).unwrap().label,
        "account-3"
    );

    let before = file_bytes(&rig);
    let taken = failed(save("f", Some("f@example.com"), Some("mine")));
    assert_eq!(taken.kind, ErrorKind::Label);
    assert!(
        taken
            .message
            .contains("\"mine\" is already used by another account"),
        "{}",
        taken.message
    );
    let spaced = failed(save("f", None, Some("two words")));
    assert_eq!(spaced.kind, ErrorKind::Label);
    assert_eq!(file_bytes(&rig), before);

    // A malformed label is refused before the browser is involved.
    let early = BrowserLogin::start(rig.ctx.clone(), options(Some(" "), GENEROUS), 0).await;
    assert_eq!(early.err().map(|e| e.kind), Some(ErrorKind::Label));
}

#[tokio::test]
async fn accounts_are_renamed_and_removed_by_label() {
    let rig = rig_empty(Script::default_accounts(1)).await;
    let store = &rig.store;
    for (id, label) in [("a", "one"), ("b", "two")] {
        save_login(store, &identity(id, None), fake_tokens(), Some(label)).unwrap();
    }
    store.rename_account("one", "first").unwrap();
    store.rename_account("first", "first").unwrap();
    let labels = |rig: &Rig| -> Vec<String> {
        rig.store
            .load()
            .unwrap()
            .accounts
            .into_iter()
            .map(|a| a.label)
            .collect()
    };
    assert_eq!(labels(&rig), ["first", "two"]);

    let duplicate = failed(store.rename_account("first", "two"));
    assert_eq!(duplicate.kind, ErrorKind::Label);
    assert!(duplicate.message.contains("already used"));
    let unknown = failed(store.rename_account("nobody", "x"));
    assert_eq!(unknown.kind, ErrorKind::Label);
    assert!(
        unknown
            .message
            .contains("no account is labelled \"nobody\"")
    );
    assert_eq!(
        failed(store.rename_account("two", "")).kind,
        ErrorKind::Label
    );
    assert_eq!(labels(&rig), ["first", "two"]);

    let removed = store.remove_account("first").unwrap();
    assert_eq!(removed.chatgpt_account_id, "a");
    assert_eq!(labels(&rig), ["two"]);
    assert_eq!(failed(store.remove_account("first")).kind, ErrorKind::Label);
    // The removed identity comes back as a new account.
    let back = save_login(store, &identity("a", None), fake_tokens(), None).unwrap();
    assert!(back.added);
    assert_eq!(back.label, "account-1");
}

#[tokio::test]
async fn a_logged_in_account_that_hit_its_limit_is_usable_again_after_a_new_login() {
    let mut script = Script::default_accounts(1);
    script.accounts[0].default = Some(Behavior::ok("back again"));
    let rig = rig_empty(script).await;
    log_in(&rig, "acct-a", None).await;
    let id = rig.store.load().unwrap().accounts[0].id.clone();
    rig.store
        .update_account(&id, |account| {
            account.state = AccountState::Benched {
                until_ms: u64::MAX,
                reason: "usage limit".into(),
            };
        })
        .unwrap();
    let refused = rig.pi_request().send().await.unwrap().text().await.unwrap();
    assert!(refused.starts_with("event: response.failed"), "{refused}");
    assert_eq!(rig.forwarded(), 0, "a benched account serves nothing");
    log_in(&rig, "acct-a", None).await;
    let response = rig.pi_request().send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("back again"));
}
