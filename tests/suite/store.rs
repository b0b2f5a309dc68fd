//! The accounts file: modes, atomic replacement, refusal to touch what it cannot understand, and
//! no lost update when real OS processes write at once.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::common::{account, add};
use pi_dispatch::ErrorKind;
use pi_dispatch::Store;
use pi_dispatch::domain::schema::SCHEMA_VERSION;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_missing_file_is_an_empty_pool() {
    let dir = tempdir();
    let store = Store::new(dir.path().join("agent"));
    let file = store.load().unwrap();
    assert!(file.accounts.is_empty());
    assert!(!store.path().exists(), "reading never creates the file");
}

#[test]
fn writes_are_private_even_over_a_loose_file_and_folder() {
    let dir = tempdir();
    let agent = dir.path().join("agent");
    fs::create_dir_all(&agent).unwrap();
    fs::set_permissions(&agent, fs::Permissions::from_mode(0o755)).unwrap();
    let store = Store::new(&agent);
    fs::write(store.path(), br#"{"version":1,"accounts":[]}"#).unwrap();
    fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();

    add(&store, account("a")).unwrap();
    assert_eq!(mode(&agent), 0o700);
    assert_eq!(mode(store.path()), 0o600);

    store
        .update(|f| {
            f.accounts[0].label = "renamed".into();
            Ok(())
        })
        .unwrap();
    assert_eq!(
        mode(store.path()),
        0o600,
        "still private after every replace"
    );
    let file = store.load().unwrap();
    assert_eq!(file.version, SCHEMA_VERSION);
    assert_eq!(file.accounts[0].label, "renamed");
}

#[test]
fn a_corrupt_file_is_never_overwritten() {
    let dir = tempdir();
    let store = Store::new(dir.path());
    let garbage = b"{\"version\": 1, \"accounts\": [ {\"id\": \"trunc";
    fs::write(store.path(), garbage).unwrap();

    let err = store.load().unwrap_err();
    assert_eq!(err.kind, ErrorKind::StoreUnreadable);
    assert!(
        err.message.contains(&store.path().display().to_string()),
        "{}",
        err.message
    );
    assert!(err.message.contains("left untouched"), "{}", err.message);

    let err = add(&store, account("a")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::StoreUnreadable);
    assert_eq!(fs::read(store.path()).unwrap(), garbage);
}

#[test]
fn a_file_of_the_wrong_shape_is_never_overwritten() {
    let dir = tempdir();
    let store = Store::new(dir.path());
    let wrong = br#"{"version": 1, "accounts": [{"id": 7}]}"#;
    fs::write(store.path(), wrong).unwrap();
    let err = store.update(|_| Ok(())).unwrap_err();
    assert_eq!(err.kind, ErrorKind::StoreUnreadable);
    assert!(err.message.contains("schema"), "{}", err.message);
    assert_eq!(fs::read(store.path()).unwrap(), wrong);
}

#[test]
fn a_bad_field_is_named_and_its_value_never_quoted() {
    // Hand-edited files put tokens where they do not belong; the message must not repeat them.
    let dir = tempdir();
    let store = Store::new(dir.path());
    add(&store, account("a")).unwrap();
    add(&store, account("b")).unwrap();
    let mut value: serde_json::Value =
        serde_json::from_slice(&fs::read(store.path()).unwrap()).unwrap();
    let secret = value["accounts"][1]["tokens"]["refreshToken"].clone();
    assert!(secret.as_str().unwrap().starts_with("sentinel-"), "{value}");
    value["accounts"][1]["tokens"] = secret.clone();
    value["accounts"][0]["tokens"]["expiresAtMs"] = secret;
    let edited = serde_json::to_vec(&value).unwrap();
    fs::write(store.path(), &edited).unwrap();

    let err = store.load().unwrap_err();
    assert_eq!(err.kind, ErrorKind::StoreUnreadable);
    let shown = format!("{} {:?} {}", err, err, err.chain());
    assert!(!shown.contains("sentinel"), "{shown}");
    assert!(
        err.message
            .contains("a value of the wrong type at accounts[0].tokens.expiresAtMs"),
        "{}",
        err.message
    );
    assert_eq!(fs::read(store.path()).unwrap(), edited);
}

#[test]
fn a_newer_schema_is_refused_and_kept() {
    let dir = tempdir();
    let store = Store::new(dir.path());
    let newer = br#"{"version": 2, "accounts": [], "somethingNew": true}"#;
    fs::write(store.path(), newer).unwrap();

    let err = store.load().unwrap_err();
    assert_eq!(err.kind, ErrorKind::StoreTooNew);
    assert!(err.message.contains("newer pi-dispatch"), "{}", err.message);
    let err = store.update(|_| Ok(())).unwrap_err();
    assert_eq!(err.kind, ErrorKind::StoreTooNew);
    assert_eq!(fs::read(store.path()).unwrap(), newer);
}

#[test]
fn a_failed_change_writes_nothing() {
    let dir = tempdir();
    let store = Store::new(dir.path());
    add(&store, account("a")).unwrap();
    let before = fs::read(store.path()).unwrap();
    let err = store
        .update(|f| {
            f.accounts.clear();
            Err::<(), _>(pi_dispatch::Error::new(ErrorKind::Config, "refused"))
        })
        .unwrap_err();
    assert_eq!(err.message, "refused");
    assert_eq!(fs::read(store.path()).unwrap(), before);
}

#[test]
fn temp_files_left_by_a_crash_are_removed() {
    let dir = tempdir();
    let store = Store::new(dir.path());
    let stale = dir.path().join("dispatch.json.tmp-99999");
    fs::write(&stale, b"half a file").unwrap();
    add(&store, account("a")).unwrap();
    assert!(!stale.exists());
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

#[test]
fn tokens_never_show_in_debug_output() {
    let a = account("secretive");
    let debug = format!("{a:?}");
    assert!(!debug.contains("access-secretive"), "{debug}");
    assert!(!debug.contains("refresh-secretive"), "{debug}");
}

const WORKERS: usize = 8;
const UPDATES_PER_WORKER: usize = 100;
const WORKER_ENV: &str = "PI_DISPATCH_TEST_STORE_WORKER";

/// 8 OS processes each make 100 read-modify-write changes at once; every one must survive.
#[test]
fn concurrent_processes_lose_no_update() {
    let dir = tempdir();
    let children: Vec<_> = (0..WORKERS)
        .map(|worker| {
            super::common::worker(module_path!(), "store_worker")
                .env(WORKER_ENV, format!("{}:{worker}", dir.path().display()))
                // Keeps the children's own test summaries out of this run's output.
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let file = Store::new(dir.path()).load().unwrap();
    assert_eq!(file.accounts.len(), WORKERS * UPDATES_PER_WORKER);
    for worker in 0..WORKERS {
        for n in 0..UPDATES_PER_WORKER {
            let id = format!("w{worker}-{n}");
            let found = file.accounts.iter().find(|a| a.id == id);
            // Each entry was added, then changed by a second read-modify-write.
            assert_eq!(
                found.map(|a| a.label.as_str()),
                Some(format!("{id}-seen").as_str())
            );
        }
    }
    assert_eq!(mode(Store::new(dir.path()).path()), 0o600);
}

/// The body of one worker process for the test above; does nothing in a normal test run.
#[test]
fn store_worker() {
    let Ok(spec) = std::env::var(WORKER_ENV) else {
        return;
    };
    let (dir, worker) = spec.rsplit_once(':').unwrap();
    let store = Store::new(dir);
    for n in 0..UPDATES_PER_WORKER {
        let id = format!("w{worker}-{n}");
        add(&store, account(&id)).unwrap();
        store
            .update(|f| {
                let a = f.accounts.iter_mut().find(|a| a.id == id).unwrap();
                a.label = format!("{id}-seen");
                Ok(())
            })
            .unwrap();
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
