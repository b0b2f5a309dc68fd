//! 8 real OS processes changing one pool at the same moment, every kind of change at once:
//! logins saved (new accounts and a re-login of a known one), removes, renames, and several
//! processes refreshing the same expired accounts. Each operation has its own account, so the
//! end state is the same whatever the interleaving, and any lost update or burned refresh token
//! shows.

use std::collections::BTreeSet;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::common;
use super::common::{Rig, account, rig_empty};
use dispatch_sim::{Script, TokenBehavior, account_name};
use pi_dispatch::Context;
use pi_dispatch::Endpoints;
use pi_dispatch::now_ms;
use pi_dispatch::runtime::login::LoginOptions;
use pi_dispatch::runtime::login::browser::BrowserLogin;
use pi_dispatch::{Account, AccountState, Store, Tokens, Usage};
use reqwest::Url;

const WORKER_ENV: &str = "PI_DISPATCH_TEST_MIXED_WORKER";
const PROCESSES: usize = 8;
/// Renames and removes each process makes, interleaved.
const CHANGES_PER_PROCESS: usize = 4;
/// Expired accounts every process needs a token of at once, by label; the simulator's first
/// two accounts.
const SHARED: [&str; 2] = ["shared-a", "shared-b"];
/// Accounts nobody touches; they must come out byte-for-byte as they went in.
const BYSTANDERS: [&str; 2] = ["bystander-1", "bystander-2"];
/// No worker should come near this; it only stops a deadlock from hanging the run.
const DEADLINE: Duration = Duration::from_secs(60);

/// Simulator account of the one shared refresh target with index `i`.
fn shared_sim(i: usize) -> String {
    account_name(i)
}
/// Simulator account that process `n` logs in again (it is in the pool already).
fn old_sim(n: usize) -> String {
    account_name(SHARED.len() + n)
}
/// Simulator account that process `n` logs in for the first time.
fn new_sim(n: usize) -> String {
    account_name(SHARED.len() + PROCESSES + n)
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

/// Token text never reaches an assertion message; its fingerprint may. Parent and workers are
/// the same binary, so `DefaultHasher::new` gives the same fingerprint in both.
fn fingerprint(token: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    token.hash(&mut hasher);
    hasher.finish()
}

/// Whether the stored tokens are exactly the set the simulator issued last, so the stored
/// refresh token is the one that still works. Compared, never printed.
fn is_current(stored: &Tokens, sim: &dispatch_sim::Tokens) -> bool {
    stored.access_token == sim.access
        && stored.refresh_token == sim.refresh
        && stored.id_token.as_deref() == Some(sim.id_token.as_str())
}

/// The pool before the run: the shared accounts expired, each process's re-login target with a
/// history to keep, its rename and remove targets, and two bystanders.
fn seed(rig: &Rig) -> Vec<Account> {
    let sim_account = |sim_id: &str, id: &str, label: &str| Account {
        chatgpt_user_id: Some(format!("user-{sim_id}")),
        email: Some(format!("{sim_id}@example.com")),
        added_at_ms: 7,
        ..common::sim_account(id, label, sim_id, rig.sim.tokens(sim_id).unwrap())
    };
    let mut accounts = Vec::new();
    for (i, label) in SHARED.iter().enumerate() {
        let mut shared = sim_account(&shared_sim(i), &format!("id-{label}"), label);
        // Expired a second ago: every process must refresh before it can use the account.
        shared.tokens.expires_at_ms = now_ms() - 1_000;
        accounts.push(shared);
    }
    for n in 0..PROCESSES {
        let mut old = sim_account(&old_sim(n), &format!("id-old-{n}"), &format!("w{n}-old"));
        old.state = AccountState::NeedsLogin {
            reason: "refresh_token_reused".into(),
        };
        old.usage = Some(Usage {
            observed_at_ms: 40 + n as u64,
            ..Usage::default()
        });
        accounts.push(old);
        for k in 0..CHANGES_PER_PROCESS {
            accounts.push(account(&format!("w{n}-ren-{k}")));
            accounts.push(account(&format!("w{n}-rm-{k}")));
        }
    }
    accounts.extend(BYSTANDERS.map(account));
    let seeded = accounts.clone();
    rig.store
        .update(|file| {
            file.accounts = accounts;
            Ok(())
        })
        .unwrap();
    seeded
}

/// Waits for every child, at most [`DEADLINE`] in all. If any failed or hung (it is then
/// killed), fails with every child's stderr.
async fn wait_all(mut children: Vec<Child>, control: &Path) {
    let started = Instant::now();
    let mut failed = Vec::new();
    let mut pending: Vec<usize> = (0..children.len()).collect();
    while !pending.is_empty() {
        if started.elapsed() > DEADLINE {
            for &n in &pending {
                let _ = children[n].kill();
                let _ = children[n].wait();
                failed.push(format!("process {n} did not finish within {DEADLINE:?}"));
            }
            break;
        }
        let mut still = Vec::new();
        for n in pending {
            match children[n].try_wait().unwrap() {
                Some(status) if status.success() => {}
                Some(status) => failed.push(format!("process {n} ended with {status}")),
                None => still.push(n),
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !failed.is_empty() {
        let stderr: String = (0..children.len())
            .map(|n| {
                let text = fs::read_to_string(control.join(format!("stderr-{n}"))).unwrap();
                format!("--- stderr of process {n}:\n{text}\n")
            })
            .collect();
        panic!("{}\n{stderr}", failed.join("\n"));
    }
}

/// What worker `n` reported, as `name -> value` lines.
fn report(control: &Path, n: usize) -> Vec<(String, String)> {
    fs::read_to_string(control.join(format!("result-{n}")))
        .unwrap()
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(' ').unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

fn reported<'a>(report: &'a [(String, String)], name: &str) -> &'a str {
    report
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in the worker's report"))
}

/// 8 processes at once, each logging in a new account and an existing one again, renaming and
/// removing 4 accounts of its own, and needing tokens of the same 2 expired accounts. After it:
/// every change is there, each shared account was refreshed exactly once with no token call
/// refused, and the stored refresh tokens still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_logging_in_removing_renaming_and_refreshing_at_once_lose_nothing() {
    let started = Instant::now();
    let rig = rig_empty(Script::default_accounts(SHARED.len() + 2 * PROCESSES)).await;
    let seeded = seed(&rig);
    for i in 0..SHARED.len() {
        // Holds the one real refresh open long enough for the other processes to pile up
        // behind its lock. Only the first token call is delayed; any second one would be a
        // reuse of the rotated refresh token and be refused.
        rig.sim
            .set_token_behaviors(&shared_sim(i), vec![TokenBehavior::DelayMs { ms: 200 }])
            .unwrap();
    }
    let control_dir = tempfile::tempdir().unwrap();
    let control = control_dir.path();
    let spec = format!(
        "{}|{}|{}|{}",
        rig.dir.path().display(),
        control.display(),
        rig.sim.backend_base(),
        rig.sim.issuer()
    );
    let mut children: Vec<Child> = (0..PROCESSES)
        .map(|n| {
            let stderr = fs::File::create(control.join(format!("stderr-{n}"))).unwrap();
            super::common::worker(module_path!(), "mixed_worker")
                .env(WORKER_ENV, format!("{spec}|{n}"))
                // Keeps a failing worker's message short enough to read in the assertion.
                .env("RUST_BACKTRACE", "0")
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap()
        })
        .collect();

    // The barrier: every process has its logins consented to and the expired accounts read
    // before any of them may change the pool. One that ends before it is ready has failed, and
    // wait_all says how.
    let all_ready = || (0..PROCESSES).all(|n| control.join(format!("ready-{n}")).exists());
    let ready_by = Instant::now() + DEADLINE;
    while !all_ready()
        && Instant::now() < ready_by
        && children.iter_mut().all(|c| c.try_wait().unwrap().is_none())
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    fs::write(control.join("go"), b"").unwrap();
    let go = Instant::now();
    wait_all(children, control).await;
    let ran = go.elapsed();

    let file = rig.store.load().expect("the file parses");
    let stats = rig.sim.stats();
    let find = |label: &str| file.by_label(label);
    let mut expected_labels = BTreeSet::new();

    for (i, label) in SHARED.iter().enumerate() {
        let sim_id = shared_sim(i);
        let counts = stats.account(&sim_id);
        assert_eq!(counts.token_refresh, 1, "{label}: one token call in all");
        assert_eq!(counts.token_failures, 0, "{label}: no token call refused");
        let current = rig.sim.tokens(&sim_id).unwrap();
        let stored = find(label).unwrap_or_else(|| panic!("{label} is gone"));
        assert_eq!(stored.id, format!("id-{label}"));
        assert_eq!(stored.state, AccountState::Usable, "{label}");
        assert!(
            is_current(&stored.tokens, &current),
            "{label}: the stored tokens are the rotated ones"
        );
        for n in 0..PROCESSES {
            let got: u64 = reported(&report(control, n), &format!("token-{label}"))
                .parse()
                .unwrap();
            assert!(
                got == fingerprint(&current.access),
                "process {n} ended with another access token of {label} than the stored one"
            );
        }
        expected_labels.insert(label.to_string());
    }

    for n in 0..PROCESSES {
        let report = report(control, n);
        let seeded_old = seeded
            .iter()
            .find(|a| a.id == format!("id-old-{n}"))
            .unwrap();

        // The re-login kept id, label and history, ignored the label it was given, and holds
        // the tokens that login got.
        let label = format!("w{n}-old");
        assert_eq!(
            reported(&report, "relogin"),
            format!("{label} added=false ignored=w{n}-again")
        );
        let old = find(&label).unwrap_or_else(|| panic!("{label} is gone"));
        assert_eq!(old.id, seeded_old.id);
        assert_eq!(old.added_at_ms, seeded_old.added_at_ms);
        assert_eq!(old.usage, seeded_old.usage, "{label} keeps its usage");
        assert_eq!(old.state, AccountState::Usable, "{label}");
        let current = rig.sim.tokens(&old_sim(n)).unwrap();
        assert!(
            is_current(&old.tokens, &current),
            "{label}: holds the tokens of the re-login"
        );
        assert!(old.tokens.refresh_token != seeded_old.tokens.refresh_token);
        expected_labels.insert(label);

        // The new login is there under its label with its tokens.
        let label = format!("w{n}-new");
        assert_eq!(reported(&report, "login"), format!("{label} added=true"));
        let new = find(&label).unwrap_or_else(|| panic!("{label} was lost"));
        assert_eq!(new.chatgpt_account_id, new_sim(n));
        assert_eq!(new.state, AccountState::Usable);
        let current = rig.sim.tokens(&new_sim(n)).unwrap();
        assert!(
            is_current(&new.tokens, &current),
            "{label}: holds the tokens of its login"
        );
        expected_labels.insert(label);

        for k in 0..CHANGES_PER_PROCESS {
            let renamed = find(&format!("w{n}-renamed-{k}"))
                .unwrap_or_else(|| panic!("the rename of w{n}-ren-{k} was lost"));
            assert_eq!(renamed.id, format!("w{n}-ren-{k}"));
            expected_labels.insert(renamed.label.clone());
            assert!(
                !file.accounts.iter().any(|a| a.id == format!("w{n}-rm-{k}")),
                "the remove of w{n}-rm-{k} was lost"
            );
        }
    }
    for label in BYSTANDERS {
        let before = seeded.iter().find(|a| a.label == label).unwrap();
        assert_eq!(find(label), Some(before), "{label} is untouched");
        expected_labels.insert(label.to_owned());
    }
    let labels: BTreeSet<String> = file.accounts.iter().map(|a| a.label.clone()).collect();
    assert_eq!(labels, expected_labels, "nothing more and nothing less");
    assert_eq!(file.accounts.len(), expected_labels.len(), "no duplicates");

    for (sim_id, counts) in &stats.accounts {
        assert_eq!(counts.token_failures, 0, "{sim_id}: no token call refused");
    }
    assert_eq!(stats.global.token_unknown, 0, "no spent code or token used");
    for n in 0..PROCESSES {
        for sim_id in [old_sim(n), new_sim(n)] {
            assert_eq!(stats.account(&sim_id).token_authorization_code, 1);
        }
    }

    // The stored refresh tokens are the working ones: one more refresh of each succeeds.
    for (i, label) in SHARED.iter().enumerate() {
        let stored = rig.store.load().unwrap();
        let stored = stored.by_label(label).unwrap();
        let replaced = rig
            .ctx
            .auth
            .replace_rejected(stored, &stored.tokens.access_token)
            .await;
        assert!(replaced.is_ok(), "{label}: {}", replaced.unwrap_err());
        let counts = rig.sim.stats().account(&shared_sim(i));
        assert_eq!((counts.token_refresh, counts.token_failures), (2, 0));
        let current = rig.sim.tokens(&shared_sim(i)).unwrap();
        assert!(is_current(
            &rig.store.load().unwrap().by_label(label).unwrap().tokens,
            &current
        ));
    }

    // Nothing left behind but the file and its lock files, all private.
    let agent = rig.dir.path();
    assert_eq!(mode(agent), 0o700);
    let mut names: Vec<String> = fs::read_dir(agent)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for name in &names {
        let lock = name == "dispatch.json.lock"
            || (name.starts_with("dispatch.json.refresh-") && name.ends_with(".lock"));
        assert!(
            name == "dispatch.json" || lock,
            "{name} left in the agent folder: {names:?}"
        );
        assert_eq!(mode(&agent.join(name)), 0o600, "{name}");
    }
    // How much the processes' working spans overlapped, to show the run was concurrent.
    let spans: Vec<(u64, u64)> = (0..PROCESSES)
        .map(|n| {
            let span = reported(&report(control, n), "span").to_owned();
            let (from, to) = span.split_once(' ').unwrap();
            (from.parse().unwrap(), to.parse().unwrap())
        })
        .collect();
    let latest_start = spans.iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans.iter().map(|s| s.1).min().unwrap();
    eprintln!(
        "{PROCESSES} processes ran for {ran:?} after the barrier ({:?} in all); all {PROCESSES} \
         were working at once for {} ms",
        started.elapsed(),
        earliest_end.saturating_sub(latest_start)
    );
}

/// A login of process `n`'s own, played up to the pasted redirect: only the code exchange and
/// the save are left for after the barrier.
async fn consented_login(
    ctx: &Arc<Context>,
    control: &Path,
    issuer: &str,
    sim_id: &str,
    label: &str,
) -> BrowserLogin {
    let options = LoginOptions {
        label: Some(label.into()),
        timeout: DEADLINE,
    };
    let login = BrowserLogin::start(ctx.clone(), options, 0).await.unwrap();
    common::client();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The simulator's consent queue is shared: the next authorize takes the login queued first.
    // Queueing and consenting are one step per process, then, as with one user's browser.
    let consent_lock = fs::File::create(control.join("consent.lock")).unwrap();
    consent_lock.lock().unwrap();
    let queued = browser
        .post(format!("{issuer}/__sim/login"))
        .json(&serde_json::json!({ "accountId": sim_id }))
        .send()
        .await
        .unwrap();
    assert!(queued.status().is_success(), "{}", queued.status());
    let consent = browser.get(login.url().clone()).send().await.unwrap();
    assert_eq!(consent.status(), 302, "the issuer redirects back");
    let location = consent.headers()["location"].to_str().unwrap().to_owned();
    drop(consent_lock);
    login.submit_paste(&location).unwrap();
    login
}

/// The body of one process of the test above; does nothing in a normal run. Its stdout is the
/// test harness's, so it reports in `result-<n>` in the control folder (token fingerprints,
/// never tokens); any failure panics (exit code 101) with a message that carries no token.
#[test]
fn mixed_worker() {
    let Ok(spec) = std::env::var(WORKER_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [agent, control, backend, issuer, n] = parts[..] else {
        panic!("bad worker spec {spec}");
    };
    let (agent, control) = (PathBuf::from(agent), PathBuf::from(control));
    let n: usize = n.parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lines = runtime.block_on(async {
        let endpoints = Endpoints {
            backend: Url::parse(backend).unwrap(),
            auth: Url::parse(issuer).unwrap(),
        };
        let ctx = Arc::new(Context::new(endpoints, Store::new(&agent)).unwrap());
        let relogin =
            consented_login(&ctx, &control, issuer, &old_sim(n), &format!("w{n}-again")).await;
        let login =
            consented_login(&ctx, &control, issuer, &new_sim(n), &format!("w{n}-new")).await;
        // The expired accounts as this process last read them, as a pi would hold them.
        let file = ctx.store.load().unwrap();
        let shared: Vec<Account> = SHARED
            .iter()
            .map(|label| file.by_label(label).unwrap().clone())
            .collect();

        fs::write(control.join(format!("ready-{n}")), b"").unwrap();
        while !control.join("go").exists() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let began = now_ms();

        let refreshes: Vec<_> = shared
            .into_iter()
            .map(|account| {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let token = ctx.auth.access_token(&account).await;
                    (account.label, token.map_err(|e| e.to_string()))
                })
            })
            .collect();
        let store = ctx.store.clone();
        let changes = tokio::task::spawn_blocking(move || {
            for k in 0..CHANGES_PER_PROCESS {
                store
                    .rename_account(&format!("w{n}-ren-{k}"), &format!("w{n}-renamed-{k}"))
                    .unwrap();
                store.remove_account(&format!("w{n}-rm-{k}")).unwrap();
            }
        });
        let (relogin, login) = tokio::join!(relogin.wait(), login.wait());
        let relogin = relogin.unwrap();
        let login = login.unwrap();
        changes.await.unwrap();

        let mut lines = vec![
            format!(
                "relogin {} added={} ignored={}",
                relogin.label,
                relogin.added,
                relogin.ignored_label.unwrap_or_default()
            ),
            format!("login {} added={}", login.label, login.added),
        ];
        for refresh in refreshes {
            let (label, token) = refresh.await.unwrap();
            let token = token.unwrap_or_else(|e| panic!("no token for {label}: {e}"));
            lines.push(format!("token-{label} {}", fingerprint(&token)));
        }
        lines.push(format!("span {began} {}", now_ms()));
        lines
    });
    fs::write(control.join(format!("result-{n}")), lines.join("\n") + "\n").unwrap();
}
