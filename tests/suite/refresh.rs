//! Token refresh through the proxy against the simulator: done before it is needed, saved before
//! use, once per account however many callers or processes ask, and never losing an account.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use super::common;
use super::common::{Rig, one_account, rig, rig_with};
use dispatch_sim::{Behavior, CodePlacement, TokenBehavior};
use pi_dispatch::Context;
use pi_dispatch::Endpoints;
use pi_dispatch::now_ms;
use pi_dispatch::{AccountState, Store};
use reqwest::Url;

/// Seeds acct-a with a token that has one minute left: inside the refresh margin.
async fn expiring(behavior: Behavior, token_behaviors: Vec<TokenBehavior>) -> Rig {
    let rig = rig_with(one_account(behavior), &[], Some(now_ms() + 60_000)).await;
    rig.sim
        .set_token_behaviors("acct-a", token_behaviors)
        .unwrap();
    rig
}

fn file_mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn refreshes(rig: &Rig) -> u64 {
    rig.sim.stats().account("acct-a").token_refresh
}

fn stored(rig: &Rig) -> pi_dispatch::Account {
    rig.store.load().unwrap().accounts.remove(0)
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_and_saved_before_the_request() {
    let rig = expiring(Behavior::ok("hi"), vec![]).await;
    let response = rig.pi_request().send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();

    assert_eq!(refreshes(&rig), 1);
    let current = rig.sim.tokens("acct-a").unwrap();
    let account = stored(&rig);
    assert!(
        account.tokens.access_token == current.access,
        "the stored access token is the refreshed one"
    );
    assert!(
        account.tokens.refresh_token == current.refresh,
        "the rotated refresh token is kept"
    );
    assert!(account.tokens.expires_at_ms > now_ms() + 30 * 60_000);
    let seen = &rig.sim.requests()[0];
    assert!(
        seen.header("authorization") == Some(format!("Bearer {}", current.access).as_str()),
        "the request went out with the refreshed token"
    );
    assert_eq!(file_mode(rig.store.path()), 0o600);
}

#[tokio::test]
async fn a_fresh_token_is_used_as_it_is() {
    let rig = rig(one_account(Behavior::ok("hi"))).await;
    let response = rig.pi_request().send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(refreshes(&rig), 0);
}

#[tokio::test]
async fn a_reused_refresh_token_marks_the_account_needs_login_and_keeps_it() {
    let rig = expiring(Behavior::ok("never"), vec![TokenBehavior::Reused]).await;
    let before = stored(&rig);
    let body = failure_message(&rig).await;
    assert!(body.contains("/dispatch-login acct-a"), "{body}");
    assert!(body.contains("refresh_token_reused"), "{body}");

    let after = stored(&rig);
    assert!(
        matches!(after.state, AccountState::NeedsLogin { .. }),
        "{:?}",
        after.state
    );
    assert_eq!(
        after.tokens, before.tokens,
        "nothing else about the account changed"
    );
    assert_eq!(rig.forwarded(), 0);
}

#[tokio::test]
async fn every_permanent_refresh_failure_marks_needs_login() {
    for failure in [
        TokenBehavior::Expired,
        TokenBehavior::Invalidated,
        TokenBehavior::InvalidGrant,
        TokenBehavior::Exhausted,
        TokenBehavior::TokenExpired,
        // A 400 (not 401) reuse, and each place the code may sit: only the code says it is
        // permanent.
        TokenBehavior::refuse(400, "refresh_token_reused", CodePlacement::ErrorObject),
        TokenBehavior::refuse(400, "refresh_token_exhausted", CodePlacement::ErrorString),
        TokenBehavior::refuse(400, "token_expired", CodePlacement::TopLevel),
    ] {
        let rig = expiring(Behavior::ok("never"), vec![failure.clone()]).await;
        let body = failure_message(&rig).await;
        assert!(body.contains("must log in again"), "{failure:?}: {body}");
        let state = stored(&rig).state;
        assert!(
            matches!(state, AccountState::NeedsLogin { .. }),
            "{failure:?}: {state:?}"
        );
    }
}

#[tokio::test]
async fn a_transient_failure_keeps_the_account_and_its_still_valid_token_serves() {
    let rig = expiring(
        Behavior::ok("hi"),
        vec![TokenBehavior::ServerError { status: 500 }],
    )
    .await;
    let before = stored(&rig);
    let response = rig.pi_request().send().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "one minute left is still enough to serve"
    );
    response.text().await.unwrap();
    let after = stored(&rig);
    assert_eq!(after.state, AccountState::Usable);
    assert_eq!(after.tokens, before.tokens);
    let seen = &rig.sim.requests()[0];
    assert!(
        seen.header("authorization")
            == Some(format!("Bearer {}", before.tokens.access_token).as_str()),
        "the request went out with the still-valid token"
    );
}

#[tokio::test]
async fn a_transient_failure_with_an_expired_token_fails_the_request_not_the_account() {
    let rig = rig_with(
        one_account(Behavior::ok("never")),
        &[],
        Some(now_ms() - 1_000),
    )
    .await;
    rig.sim
        .set_token_behaviors("acct-a", vec![TokenBehavior::Malformed])
        .unwrap();
    let body = failure_message(&rig).await;
    assert!(body.contains("token refresh failed"), "{body}");
    assert_eq!(stored(&rig).state, AccountState::Usable);
    assert_eq!(rig.forwarded(), 0);

    // The next request refreshes for real.
    let response = rig.pi_request().send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(refreshes(&rig), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_refresh() {
    let rig = expiring(Behavior::ok("hi"), vec![TokenBehavior::DelayMs { ms: 300 }]).await;
    let requests: Vec<_> = (0..4)
        .map(|_| tokio::spawn(rig.pi_request().send()))
        .collect();
    for request in requests {
        let response = request.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap();
    }
    assert_eq!(refreshes(&rig), 1);
}

#[tokio::test]
async fn an_upstream_401_refreshes_once_and_retries_once() {
    let mut script = one_account(Behavior::ok("after refresh"));
    script.accounts[0].behaviors = vec![Behavior::Unauthorized];
    let rig = common::rig(script).await;
    let response = rig.pi_request().send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("after"));
    assert_eq!(refreshes(&rig), 1);
    assert_eq!(rig.forwarded(), 2);

    // A second 401 in a row reaches the caller instead of looping, and the account, refused
    // even with a fresh token, needs attention until someone fixes it.
    rig.sim.reset_stats();
    rig.sim
        .set_behaviors(
            "acct-a",
            vec![Behavior::Unauthorized, Behavior::Unauthorized],
        )
        .unwrap();
    let body = failure_message(&rig).await;
    assert!(
        body.contains("refuses its token even after a refresh"),
        "{body}"
    );
    assert_eq!(refreshes(&rig), 1);
    assert_eq!(rig.forwarded(), 2);
    rig.ctx.pool.flush().await;
    let attention = stored(&rig).attention.expect("the account needs attention");
    assert_eq!(
        attention.kind,
        pi_dispatch::domain::account::AttentionKind::TokenRefused
    );
}

/// The proxy's own answer when no account could serve: a `response.failed` event.
async fn failure_message(rig: &common::Rig) -> String {
    let response = rig.pi_request().send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body = common::show(response.text().await.unwrap());
    assert!(body.starts_with("event: response.failed\n"), "{body}");
    body
}

#[tokio::test]
async fn a_refresh_finishes_and_is_saved_even_if_the_caller_gives_up() {
    let rig = expiring(Behavior::ok("hi"), vec![TokenBehavior::DelayMs { ms: 400 }]).await;
    let pending = tokio::spawn(rig.pi_request().send());
    tokio::time::sleep(Duration::from_millis(150)).await;
    pending.abort();
    let sim_tokens = loop {
        let done = rig.sim.stats().account("acct-a").token_refresh == 1;
        let tokens = rig.sim.tokens("acct-a").unwrap();
        if done && stored(&rig).tokens.refresh_token == tokens.refresh {
            break tokens;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        stored(&rig).tokens.access_token == sim_tokens.access,
        "the stored access token is the simulator's current one"
    );
}

const WORKER_ENV: &str = "PI_DISPATCH_TEST_REFRESH_WORKER";
const PROCESSES: usize = 4;

/// 4 OS processes find the same expired token at the same moment: one token call, one
/// shared result, a valid private file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_refreshing_at_once_make_one_token_call() {
    let rig = rig_with(one_account(Behavior::ok("hi")), &[], Some(now_ms() - 1_000)).await;
    // Keeps the first refresh open long enough for every process to pile up behind it.
    rig.sim
        .set_token_behaviors("acct-a", vec![TokenBehavior::DelayMs { ms: 300 }])
        .unwrap();
    let go = rig.dir.path().join("go");
    let spec = format!(
        "{}|{}|{}",
        rig.dir.path().display(),
        rig.sim.backend_base(),
        rig.sim.issuer()
    );
    let children: Vec<_> = (0..PROCESSES)
        .map(|n| {
            common::worker(module_path!(), "refresh_worker")
                .env(WORKER_ENV, format!("{spec}|{n}"))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::fs::write(&go, b"").unwrap();
    for mut child in children {
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        assert!(status.success());
    }

    assert_eq!(refreshes(&rig), 1, "exactly one token-endpoint call");
    let current = rig.sim.tokens("acct-a").unwrap();
    for n in 0..PROCESSES {
        let got = std::fs::read_to_string(rig.dir.path().join(format!("worker-{n}"))).unwrap();
        assert!(
            got == current.access,
            "process {n} ended with the working token"
        );
    }
    let account = stored(&rig);
    assert!(
        account.tokens.refresh_token == current.refresh,
        "the stored refresh token is the simulator's current one"
    );
    assert_eq!(account.state, AccountState::Usable);
    assert_eq!(file_mode(rig.store.path()), 0o600);
}

/// The body of one process of the test above; does nothing in a normal run.
#[test]
fn refresh_worker() {
    let Ok(spec) = std::env::var(WORKER_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [dir, backend, issuer, n] = parts[..] else {
        panic!("bad worker spec {spec}");
    };
    let dir = std::path::Path::new(dir);
    while !dir.join("go").exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let token = runtime.block_on(async {
        let endpoints = Endpoints {
            backend: Url::parse(backend).unwrap(),
            auth: Url::parse(issuer).unwrap(),
        };
        let ctx = Arc::new(Context::new(endpoints, Store::new(dir)).unwrap());
        let account = ctx.store.load().unwrap().accounts.remove(0);
        ctx.auth.access_token(&account).await.unwrap()
    });
    std::fs::write(dir.join(format!("worker-{n}")), token).unwrap();
}
