//! Faults of the accounts file (docs/RELIABILITY.md, "Store and files"): older schemas, links,
//! foreign owners, read-only folders, failed writes, writers killed at random, and real
//! processes changing the pool at once.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::common::{account, add};
use pi_dispatch::ErrorKind;
use pi_dispatch::Store;
use pi_dispatch::domain::schema::{Migration, SCHEMA_VERSION};

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

fn worker(test: &str, env: &str, spec: &str) -> Command {
    let mut command = super::common::worker(module_path!(), test);
    command.env(env, spec).stdout(Stdio::null());
    command
}

/// A made-up schema 0 that called the accounts list `pool`, to drive the migration path
/// (this build's real table is empty: version 1 is the first any release wrote).
fn rename_pool(mut value: serde_json::Value) -> Result<serde_json::Value, String> {
    let object = value.as_object_mut().ok_or("not an object")?;
    let pool = object.remove("pool").ok_or("no pool")?;
    object.insert("accounts".into(), pool);
    Ok(value)
}
static TEST_MIGRATIONS: &[Migration] = &[Migration {
    from: 0,
    apply: rename_pool,
}];

#[test]
fn an_older_schema_is_migrated_and_the_original_is_kept_as_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path()).with_migrations(TEST_MIGRATIONS);
    let old = serde_json::json!({"version": 0, "pool": [account("a")]});
    let old = serde_json::to_vec(&old).unwrap();
    fs::write(store.path(), &old).unwrap();

    // Reading converts in memory and writes nothing.
    assert_eq!(store.load().unwrap().accounts[0].id, "a");
    assert_eq!(fs::read(store.path()).unwrap(), old);

    add(&store, account("b")).unwrap();
    let backup = dir.path().join("dispatch.json.v0.bak");
    assert_eq!(
        fs::read(&backup).unwrap(),
        old,
        "the original bytes are kept"
    );
    assert_eq!(mode(&backup), 0o600);
    let file = Store::new(dir.path()).load().unwrap();
    assert_eq!(file.version, SCHEMA_VERSION);
    assert_eq!(file.accounts.len(), 2);

    // A later write keeps the first backup as it was.
    add(&store, account("c")).unwrap();
    assert_eq!(fs::read(&backup).unwrap(), old);
}

#[test]
fn an_older_schema_no_migration_reaches_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let old = br#"{"version":0,"accounts":[]}"#;
    fs::write(store.path(), old).unwrap();
    let err = store.load().unwrap_err();
    assert_eq!(err.kind, ErrorKind::StoreUnreadable);
    assert!(err.message.contains("schema version 0"), "{}", err.message);
    assert!(err.message.contains("left untouched"), "{}", err.message);
    assert_eq!(
        add(&store, account("a")).unwrap_err().kind,
        ErrorKind::StoreUnreadable
    );
    assert_eq!(fs::read(store.path()).unwrap(), old);
}

#[test]
fn a_symlinked_file_is_refused_and_nothing_is_written_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere.json");
    let agent = dir.path().join("agent");
    fs::create_dir(&agent).unwrap();
    let store = Store::new(&agent);
    let real = Store::new(dir.path().join("real"));
    add(&real, account("a")).unwrap();
    fs::copy(real.path(), &elsewhere).unwrap();
    let before = fs::read(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, store.path()).unwrap();

    let err = store.load().unwrap_err();
    assert_eq!(err.kind, ErrorKind::StoreUnsafe);
    assert!(err.message.contains("symbolic link"), "{}", err.message);
    assert!(err.message.contains("elsewhere.json"), "{}", err.message);
    let err = add(&store, account("b")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::StoreUnsafe);
    assert!(
        fs::symlink_metadata(store.path())
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::read(&elsewhere).unwrap(),
        before,
        "the target is untouched"
    );

    // A dangling link is refused the same way, and nothing is created at its target.
    fs::remove_file(store.path()).unwrap();
    let nowhere = dir.path().join("nowhere.json");
    std::os::unix::fs::symlink(&nowhere, store.path()).unwrap();
    assert_eq!(
        add(&store, account("b")).unwrap_err().kind,
        ErrorKind::StoreUnsafe
    );
    assert!(!nowhere.exists());
}

#[test]
fn a_symlinked_lock_file_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let target = dir.path().join("target");
    std::os::unix::fs::symlink(&target, dir.path().join("dispatch.json.lock")).unwrap();
    assert!(add(&store, account("a")).is_err());
    assert!(!target.exists(), "no file was created through the link");
}

#[test]
fn a_file_that_is_a_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    fs::create_dir(store.path()).unwrap();
    let err = store.load().unwrap_err();
    assert_eq!(err.kind, ErrorKind::StoreUnsafe);
    assert!(
        err.message.contains("not a regular file"),
        "{}",
        err.message
    );
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

const NOBODY: u32 = 65534;

/// Needs root to hand a folder to another user; skipped (passing) otherwise.
#[test]
fn a_folder_or_file_of_another_user_is_refused_with_a_clear_message() {
    if !running_as_root() {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("agent");
    let store = Store::new(&agent);
    add(&store, account("a")).unwrap();
    let before = fs::read(store.path()).unwrap();

    std::os::unix::fs::chown(&agent, Some(NOBODY), Some(NOBODY)).unwrap();
    let err = store.load().unwrap_err();
    assert_eq!(err.kind, ErrorKind::StoreUnsafe);
    assert!(err.message.contains("another user"), "{}", err.message);
    assert!(
        err.message.contains("PI_CODING_AGENT_DIR"),
        "{}",
        err.message
    );
    assert_eq!(
        add(&store, account("b")).unwrap_err().kind,
        ErrorKind::StoreUnsafe
    );

    std::os::unix::fs::chown(&agent, Some(0), Some(0)).unwrap();
    std::os::unix::fs::chown(store.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let err = store.load().unwrap_err();
    assert_eq!(err.kind, ErrorKind::StoreUnsafe);
    assert!(err.message.contains("another user"), "{}", err.message);
    assert_eq!(
        add(&store, account("b")).unwrap_err().kind,
        ErrorKind::StoreUnsafe
    );
    assert_eq!(fs::read(store.path()).unwrap(), before);
    assert_eq!(fs::metadata(store.path()).unwrap().uid(), NOBODY);
}

const READONLY_ENV: &str = "PI_DISPATCH_TEST_READONLY_WORKER";

/// The folder is read-only to the user pi runs as: the pool still loads, a change fails with
/// a message that says so, and the file is as it was. Root ignores permissions, so as root the
/// worker process drops to `nobody`, owning the folder.
#[test]
fn a_read_only_agent_folder_reads_and_refuses_changes_clearly() {
    let outer = tempfile::tempdir().unwrap();
    fs::set_permissions(outer.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let agent = outer.path().join("agent");
    let store = Store::new(&agent);
    add(&store, account("a")).unwrap();
    let before = fs::read(store.path()).unwrap();
    if running_as_root() {
        for path in [
            agent.as_path(),
            store.path(),
            &agent.join("dispatch.json.lock"),
        ] {
            std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    fs::set_permissions(&agent, fs::Permissions::from_mode(0o500)).unwrap();
    // The lock file may be created fresh; without it the change fails one step earlier.
    fs::remove_file(agent.join("dispatch.json.lock")).ok();

    let status = worker(
        "read_only_worker",
        READONLY_ENV,
        &agent.display().to_string(),
    )
    .status()
    .unwrap();
    assert!(status.success());
    assert_eq!(fs::read(store.path()).unwrap(), before);
    assert_eq!(
        mode(&agent),
        0o500,
        "a read-only folder is never made writable"
    );
}

#[test]
fn read_only_worker() {
    let Ok(dir) = std::env::var(READONLY_ENV) else {
        return;
    };
    if running_as_root() {
        // SAFETY: plain syscalls; this process only runs this worker.
        unsafe {
            assert_eq!(libc::setgid(NOBODY), 0);
            assert_eq!(libc::setuid(NOBODY), 0);
        }
    }
    let store = Store::new(&dir);
    assert_eq!(store.load().unwrap().accounts.len(), 1);
    let err = add(&store, account("b")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::StoreIo);
    assert!(err.message.contains("not writable"), "{}", err.message);
    assert!(err.message.contains(&dir), "{}", err.message);
    assert_eq!(store.load().unwrap().accounts.len(), 1);
}

/// A write that fails half way (here: the temp file cannot be created) leaves the previous file
/// intact and readable, and the next write works.
#[test]
fn a_failed_write_leaves_the_previous_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    add(&store, account("a")).unwrap();
    let before = fs::read(store.path()).unwrap();
    let blocker = dir
        .path()
        .join(format!("dispatch.json.tmp-{}", std::process::id()));
    fs::create_dir(&blocker).unwrap();

    let err = add(&store, account("b")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::StoreIo);
    assert!(err.message.contains("cannot write"), "{}", err.message);
    assert_eq!(fs::read(store.path()).unwrap(), before);
    assert_eq!(store.load().unwrap().accounts.len(), 1);

    fs::remove_dir(&blocker).unwrap();
    add(&store, account("b")).unwrap();
    assert_eq!(store.load().unwrap().accounts.len(), 2);
}

const UMASK_ENV: &str = "PI_DISPATCH_TEST_UMASK_WORKER";

/// Even with umask 0, every temp file seen while writes happen is 0600, and so is the file.
#[test]
fn temp_files_are_never_readable_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let status = worker("umask_worker", UMASK_ENV, &dir.path().display().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(mode(&dir.path().join("dispatch.json")), 0o600);
    assert_eq!(mode(dir.path()), 0o700);
}

#[test]
fn umask_worker() {
    let Ok(dir) = std::env::var(UMASK_ENV) else {
        return;
    };
    // SAFETY: sets this process's umask; the process runs only this worker.
    unsafe { libc::umask(0) };
    let dir = std::path::PathBuf::from(dir);
    let store = Store::new(&dir);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (dir, done) = (dir.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seen = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if let Ok(meta) = entry.metadata()
                        && name.starts_with("dispatch.json")
                    {
                        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
                        seen += usize::from(name.contains(".tmp-"));
                    }
                }
            }
            seen
        })
    };
    for n in 0..300 {
        add(&store, account(&format!("a{n}"))).unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    eprintln!("temp files observed mid-write: {seen}");
}

const KILL_ENV: &str = "PI_DISPATCH_TEST_KILL_WORKER";
const KILLS: usize = 60;
const KILL_ACCOUNTS: usize = 50;

/// A writer process is killed with SIGKILL at a random moment, 60 times. After each kill the
/// file parses and holds one whole generation (every account carries the same one, never a
/// mix), never older than the last one seen; leftover temp files are private and the next
/// writer removes them.
#[test]
fn a_writer_killed_at_random_points_leaves_the_old_or_the_new_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    store
        .update(|f| {
            f.accounts = (0..KILL_ACCOUNTS)
                .map(|n| account(&format!("k{n}")))
                .collect();
            for a in &mut f.accounts {
                a.label = "gen-0".into();
            }
            Ok(())
        })
        .unwrap();
    let mut last = 0u64;
    let mut progressed = 0;
    let mut leftovers = 0;
    for kill in 0..KILLS {
        let mut child = worker("kill_worker", KILL_ENV, &dir.path().display().to_string())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Anywhere from before the first write to deep into the loop.
        let wait = rand::random_range(0..40u64);
        std::thread::sleep(Duration::from_millis(wait));
        child.kill().unwrap();
        child.wait().unwrap();

        let file = store
            .load()
            .unwrap_or_else(|e| panic!("kill {kill} after {wait} ms: {e}"));
        assert_eq!(file.accounts.len(), KILL_ACCOUNTS);
        let generation: u64 = file.accounts[0].label["gen-".len()..].parse().unwrap();
        for a in &file.accounts {
            assert_eq!(
                a.label,
                format!("gen-{generation}"),
                "kill {kill}: a torn state"
            );
        }
        assert!(
            generation >= last,
            "kill {kill}: went back from {last} to {generation}"
        );
        progressed += usize::from(generation > last);
        last = generation;
        for entry in fs::read_dir(dir.path()).unwrap().flatten() {
            if entry.file_name().to_string_lossy().contains(".tmp-") {
                leftovers += 1;
                assert_eq!(mode(&entry.path()), 0o600);
            }
        }
    }
    eprintln!("{KILLS} kills: {progressed} made progress, {leftovers} temp files left");
    assert!(
        progressed > KILLS / 4,
        "most kills landed mid-work ({progressed})"
    );
    // The next writer cleans up after every crash.
    add(&store, account("after")).unwrap();
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

#[test]
fn kill_worker() {
    let Ok(dir) = std::env::var(KILL_ENV) else {
        return;
    };
    let store = Store::new(&dir);
    loop {
        store
            .update(|f| {
                let generation: u64 = f.accounts[0].label["gen-".len()..].parse().unwrap();
                for a in &mut f.accounts {
                    a.label = format!("gen-{}", generation + 1);
                }
                Ok(())
            })
            .unwrap();
    }
}
