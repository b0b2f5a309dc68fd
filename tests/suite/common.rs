//! The rig every proxy-level test uses: a simulator, a store seeded with its accounts, and a
//! proxy on loopback pointed at the simulator.

#![allow(dead_code)] // each test file uses its own part of the rig

use std::sync::Arc;
use std::time::Duration;

use dispatch_sim::{Behavior, Script, Simulator};
use pi_dispatch::Endpoints;
use pi_dispatch::Proxy;
use pi_dispatch::{Account, AccountState, Store, Tokens, Usage, UsageWindow};
use pi_dispatch::{Context, Timeouts};
use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Rig {
    pub sim: Simulator,
    pub proxy: Proxy,
    pub store: Store,
    pub ctx: Arc<Context>,
    pub dir: tempfile::TempDir,
}

/// The sim's accounts, in order, all seeded into a fresh store as usable.
pub async fn rig(script: Script) -> Rig {
    rig_with(script, &[], None).await
}

pub async fn rig_with_states(script: Script, states: &[AccountState]) -> Rig {
    rig_with(script, states, None).await
}

/// `expires_at_ms`, when given, replaces every seeded access token's expiry.
pub async fn rig_with(script: Script, states: &[AccountState], expires_at_ms: Option<u64>) -> Rig {
    let ids: Vec<String> = script
        .accounts
        .iter()
        .map(|a| a.account_id.clone())
        .collect();
    let sim = Simulator::start(script).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    store
        .update(|file| {
            for (i, id) in ids.iter().enumerate() {
                let seeded = sim_account(&format!("local-{i}"), id, id, sim.tokens(id).unwrap());
                file.accounts.push(Account {
                    tokens: Tokens {
                        expires_at_ms: expires_at_ms.unwrap_or(seeded.tokens.expires_at_ms),
                        ..seeded.tokens.clone()
                    },
                    state: states.get(i).cloned().unwrap_or_default(),
                    usage: Some(ordered_usage(i)),
                    ..seeded
                });
            }
            Ok(())
        })
        .unwrap();
    assemble(sim, dir, store).await
}

/// The simulator with an empty pool, for tests that add accounts by logging in.
pub async fn rig_empty(script: Script) -> Rig {
    let sim = Simulator::start(script).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    assemble(sim, dir, store).await
}

async fn assemble(sim: Simulator, dir: tempfile::TempDir, store: Store) -> Rig {
    assemble_timed(sim, dir, store, Timeouts::default()).await
}

/// [`rig_with`], with other time limits for token and usage calls.
pub async fn rig_timed(script: Script, expires_at_ms: Option<u64>, timeouts: Timeouts) -> Rig {
    let rig = rig_with(script, &[], expires_at_ms).await;
    let Rig {
        sim, dir, store, ..
    } = rig;
    assemble_timed(sim, dir, store, timeouts).await
}

async fn assemble_timed(
    sim: Simulator,
    dir: tempfile::TempDir,
    store: Store,
    timeouts: Timeouts,
) -> Rig {
    let endpoints = Endpoints {
        backend: Url::parse(&sim.backend_base()).unwrap(),
        auth: Url::parse(&sim.issuer()).unwrap(),
    };
    let ctx = Arc::new(
        Context::new(endpoints, store.clone())
            .unwrap()
            .with_timeouts(timeouts),
    );
    let proxy = Proxy::start(ctx.clone()).await.unwrap();
    Rig {
        sim,
        proxy,
        store,
        ctx,
        dir,
    }
}

/// Touched accounts whose weekly windows reset one hour apart, in script order, so the policy
/// picks them in that order.
pub fn ordered_usage(i: usize) -> Usage {
    let now = pi_dispatch::now_ms();
    Usage {
        observed_at_ms: now,
        windows: vec![UsageWindow {
            window_seconds: Some(7 * 24 * 3600),
            used_percent: 10.0,
            resets_at_ms: Some(now + (i as u64 + 1) * 3_600_000),
        }],
        ..Usage::default()
    }
}

/// A plain usable account with made-up tokens, for store-level tests. The tokens start with
/// `sentinel-`, which the output scan of `npm test` looks for (scripts/rust-tests.mjs).
pub fn account(id: &str) -> Account {
    Account {
        id: id.into(),
        label: id.into(),
        chatgpt_account_id: format!("chatgpt-{id}"),
        chatgpt_user_id: None,
        email: None,
        plan: Some("plus".into()),
        tokens: Tokens {
            access_token: format!("sentinel-access-{id}"),
            refresh_token: format!("sentinel-refresh-{id}"),
            id_token: None,
            expires_at_ms: 0,
        },
        state: AccountState::Usable,
        usage: None,
        attention: None,
        limits: Vec::new(),
        added_at_ms: 0,
    }
}

/// [`account`] holding the simulator's current tokens for its account `sim_id`.
pub fn sim_account(id: &str, label: &str, sim_id: &str, tokens: dispatch_sim::Tokens) -> Account {
    Account {
        label: label.into(),
        chatgpt_account_id: sim_id.into(),
        tokens: Tokens {
            access_token: tokens.access,
            refresh_token: tokens.refresh,
            id_token: Some(tokens.id_token),
            expires_at_ms: tokens.expires_at_ms,
        },
        ..account(id)
    }
}

pub fn add(store: &Store, account: Account) -> Result<(), pi_dispatch::Error> {
    store.update(|f| {
        f.accounts.push(account);
        Ok(())
    })
}

/// The /dispatch-status table as a user sees it (in UTC), through [`show`].
pub fn report(pool: &pi_dispatch::domain::status::PoolStatus) -> String {
    show(pi_dispatch::domain::text::table::status(
        pool,
        pi_dispatch::now_ms(),
        &jiff::tz::TimeZone::UTC,
    ))
}

/// Prints what a user would see, so `npm test`'s scan of all Rust test output
/// (scripts/rust-tests.mjs) checks it for tokens; returns it for the test's own assertions.
pub fn show(text: String) -> String {
    eprintln!("user sees: {text}");
    text
}

/// The error a call must fail with, printed as [`show`] does (message, causes and Debug).
pub fn failed<T>(result: Result<T, pi_dispatch::Error>) -> pi_dispatch::Error {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(error) => {
            show(format!("{} / {error:?}", error.chain()));
            error
        }
    }
}

/// A test client. reqwest is built here without a crypto provider; install the one the core uses.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub fn one_account(behavior: Behavior) -> Script {
    let mut script = Script::default_accounts(1);
    script.accounts[0].default = Some(behavior);
    script
}

impl Rig {
    /// The account labelled `label` as the file holds it, after the pool's pending writes.
    pub async fn stored(&self, label: &str) -> Account {
        self.ctx.pool.flush().await;
        let file = self.store.load().unwrap();
        file.accounts
            .into_iter()
            .find(|a| a.label == label)
            .unwrap()
    }

    /// Model requests the simulator answered for sim account `id`.
    pub fn responses(&self, id: &str) -> u64 {
        self.sim.stats().account(id).responses
    }

    pub fn url(&self) -> String {
        format!("{}/codex/responses", self.proxy.base_url())
    }

    /// A request as pi's Codex client makes it, in session `session-123`.
    pub fn pi_request(&self) -> reqwest::RequestBuilder {
        self.pi_request_in("session-123")
    }

    pub fn pi_request_in(&self, session: &str) -> reqwest::RequestBuilder {
        self.pi_request_for(session, "gpt-test")
    }

    /// A request for `model`, named as the extension names it (the model header) and in the
    /// body.
    pub fn pi_request_for(&self, session: &str, model: &str) -> reqwest::RequestBuilder {
        client()
            .post(self.url())
            .bearer_auth(self.proxy.credential())
            .header("chatgpt-account-id", "pi-dispatch")
            .header("accept", "text/event-stream")
            .header("content-type", "application/json")
            .header("openai-beta", "responses=experimental")
            .header("originator", "pi")
            .header("session_id", session)
            .header("x-client-request-id", "request-456")
            .header("x-pi-dispatch-model", model)
            .body(format!(r#"{{"model":"{model}","input":[],"stream":true}}"#))
    }

    /// Sends raw bytes, for requests no well-behaved client library would make.
    pub async fn raw(&self, head: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.proxy.port()))
            .await
            .unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        // Until the server closes, or for a moment if it keeps the connection open.
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(Ok(n @ 1..)) =
            tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await
        {
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    pub fn raw_post(&self, host: &str, authorization: &str, extra: &str) -> String {
        let body = "{}";
        format!(
            "POST /codex/responses HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    pub fn forwarded(&self) -> usize {
        self.sim.requests().len()
    }
}

/// This test binary, running only the test `name` of `module` (pass `module_path!()`): how the
/// multi-process tests start their workers as real OS processes.
pub fn worker(module: &str, name: &str) -> std::process::Command {
    // `module_path!()` starts with the crate (`all::`), test names do not.
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args([
        "--exact",
        &format!("{module}::{name}"),
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}
