//! The accounts file, `<agent dir>/dispatch.json`.
//!
//! Several pi processes share it. Every change takes an exclusive lock on a sibling lock file,
//! re-reads the current file, applies the change, writes a temp file, fsyncs it, renames it over
//! the old one and fsyncs the directory, so a reader sees either the old or the new state and a
//! crash at any point loses nothing that was already on disk. Reads need no lock for the same
//! reason.
//!
//! A file that cannot be understood (bad JSON, unknown shape, a newer schema) is never
//! overwritten: every operation fails with a message that names the file and says what to do.
//! A file of an older schema is converted by [`MIGRATIONS`]; its original bytes are kept as
//! `dispatch.json.v<N>.bak` before the first write in the new schema.
//!
//! The file holds tokens, so it is refused outright (nothing read, nothing written) when it is
//! a symbolic link, is not a regular file, or it or its folder belongs to another user: a
//! write must never land somewhere else, and a file someone else controls must not be trusted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, json_problem};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
const FILE_NAME: &str = "dispatch.json";
const TEMP_PREFIX: &str = "dispatch.json.tmp-";
/// Labels are typed as command arguments and shown in one line of status, so they stay short.
pub const MAX_LABEL_CHARS: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountsFile {
    pub version: u32,
    #[serde(default)]
    pub accounts: Vec<Account>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// Stable local id; survives renames and re-logins.
    pub id: String,
    pub label: String,
    /// The ChatGPT account (workspace) id sent upstream as `chatgpt-account-id`.
    pub chatgpt_account_id: String,
    #[serde(default)]
    pub chatgpt_user_id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub plan: Option<String>,
    pub tokens: Tokens,
    #[serde(default)]
    pub state: AccountState,
    /// The last usage seen for this account, from the usage endpoint or response headers.
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub added_at_ms: u64,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    #[serde(default)]
    pub id_token: Option<String>,
    /// When the access token expires, in unix milliseconds.
    pub expires_at_ms: u64,
}

/// Secrets never reach a log through `{:?}`.
impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum AccountState {
    #[default]
    Usable,
    /// Out of quota (or briefly throttled) until the given time.
    #[serde(rename_all = "camelCase")]
    Benched { until_ms: u64, reason: String },
    /// Refresh failed for good; only a new login fixes it.
    #[serde(rename_all = "camelCase")]
    NeedsLogin { reason: String },
    /// The backend said this account cannot use Codex at all (its plan has no Codex); a new
    /// login, after the plan changed, makes it usable again.
    #[serde(rename_all = "camelCase")]
    Disabled { reason: String },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// When this view was taken, in unix milliseconds.
    pub observed_at_ms: u64,
    #[serde(default)]
    pub windows: Vec<UsageWindow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageWindow {
    /// The backend's name for a window beyond the standard two (`additional_rate_limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Length of the window in seconds (18000 = 5 hours, 604800 = weekly); the only reliable
    /// way to tell windows apart.
    #[serde(default)]
    pub window_seconds: Option<u64>,
    pub used_percent: f64,
    #[serde(default)]
    pub resets_at_ms: Option<u64>,
}

impl Account {
    pub fn is_usable(&self, now_ms: u64) -> bool {
        match &self.state {
            AccountState::Usable => true,
            AccountState::Benched { until_ms, .. } => *until_ms <= now_ms,
            AccountState::NeedsLogin { .. } | AccountState::Disabled { .. } => false,
        }
    }
}

impl AccountsFile {
    fn empty() -> Self {
        Self {
            version: SCHEMA_VERSION,
            accounts: Vec::new(),
        }
    }

    /// The first account that can serve a request now.
    pub fn first_usable(&self, now_ms: u64) -> Option<&Account> {
        self.accounts.iter().find(|a| a.is_usable(now_ms))
    }

    pub fn by_label(&self, label: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.label == label)
    }

    /// The first `account-N`, counting from 1, that no account uses.
    pub fn free_numbered_label(&self) -> String {
        (1..)
            .map(|n| format!("account-{n}"))
            .find(|label| self.by_label(label).is_none())
            .unwrap_or_default()
    }
}

/// `label` trimmed, or why it cannot be a label: one word, since commands take labels as
/// whitespace-separated arguments.
pub fn check_label(label: &str) -> Result<&str, Error> {
    let label = label.trim();
    let chars = label.chars().count();
    if chars == 0
        || chars > MAX_LABEL_CHARS
        || label.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::new(
            ErrorKind::Label,
            format!(
                "{label:?} cannot be a label: use one word of 1 to {MAX_LABEL_CHARS} characters, \
                 without spaces"
            ),
        ));
    }
    Ok(label)
}

/// The refusal when `label` already names `owner`, a different account.
pub fn label_taken(label: &str, owner: &Account) -> Error {
    let who = owner.email.as_deref().unwrap_or(&owner.chatgpt_account_id);
    Error::new(
        ErrorKind::Label,
        format!(
            "the label {label:?} is already used by another account ({who}); choose another \
             label, or free this one with /dispatch-rename or /dispatch-remove"
        ),
    )
}

fn unknown_label(label: &str) -> Error {
    Error::new(
        ErrorKind::Label,
        format!("no account is labelled {label:?}; /dispatch-status lists the accounts"),
    )
}

/// Handle on the accounts file of one agent directory. Cheap; does no I/O until used.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    path: PathBuf,
    migrations: &'static [Migration],
}

impl std::fmt::Debug for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migration")
            .field("from", &self.from)
            .finish()
    }
}

impl Store {
    pub fn new(agent_dir: impl Into<PathBuf>) -> Self {
        let dir = agent_dir.into();
        let path = dir.join(FILE_NAME);
        Self {
            dir,
            path,
            migrations: MIGRATIONS,
        }
    }

    /// The same store with another migration table; for tests of the migration path, since
    /// this build has no older schema to migrate from.
    #[doc(hidden)]
    pub fn with_migrations(mut self, migrations: &'static [Migration]) -> Self {
        self.migrations = migrations;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current contents; a missing file is an empty pool.
    pub fn load(&self) -> Result<AccountsFile, Error> {
        Ok(self
            .read()?
            .map_or_else(AccountsFile::empty, |(_, parsed)| parsed.file))
    }

    /// The file's bytes and what they say; `None` when there is no file. Refuses a link, a
    /// non-file and a file or folder of another user before reading a byte of it.
    fn read(&self) -> Result<Option<(Vec<u8>, Parsed)>, Error> {
        self.check_dir()?;
        let mut file = match nofollow_options().read(true).open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if is_link_refusal(&e) => return Err(self.refuse_link()),
            Err(e) => return Err(self.io_error("cannot read", e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| self.io_error("cannot inspect", e))?;
        if !meta.is_file() {
            return Err(self.unsafe_path(
                &self.path,
                "is not a regular file",
                "Move it aside and add your accounts again with /dispatch-login.",
            ));
        }
        self.check_owner(&self.path, &meta, "the file")?;
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut file, &mut bytes)
            .map_err(|e| self.io_error("cannot read", e))?;
        let parsed = parse_with(&self.path, &bytes, self.migrations)?;
        Ok(Some((bytes, parsed)))
    }

    /// Refuses a folder that is not a folder or belongs to another user. A missing folder is
    /// fine: the first write creates it.
    fn check_dir(&self) -> Result<(), Error> {
        let meta = match fs::metadata(&self.dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io_error("cannot inspect the folder of", e)),
        };
        if !meta.is_dir() {
            return Err(self.unsafe_path(
                &self.dir,
                "is not a folder",
                "Point PI_CODING_AGENT_DIR at a folder of yours.",
            ));
        }
        self.check_owner(&self.dir, &meta, "the folder")
    }

    #[cfg(unix)]
    fn check_owner(&self, path: &Path, meta: &fs::Metadata, what: &str) -> Result<(), Error> {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() == me {
            return Ok(());
        }
        Err(self.unsafe_path(
            path,
            &format!(
                "belongs to another user (uid {}, while pi runs as uid {me})",
                meta.uid()
            ),
            &format!(
                "Tokens are kept only where no one else controls them: make {what} yours \
                 (chown), or point PI_CODING_AGENT_DIR at a folder of yours."
            ),
        ))
    }

    #[cfg(not(unix))]
    fn check_owner(&self, _: &Path, _: &fs::Metadata, _: &str) -> Result<(), Error> {
        Ok(())
    }

    fn refuse_link(&self) -> Error {
        let target = fs::read_link(&self.path)
            .map(|t| format!(" (to {})", t.display()))
            .unwrap_or_default();
        self.unsafe_path(
            &self.path,
            &format!("is a symbolic link{target}"),
            "pi-dispatch never reads or writes tokens through a link. Replace the link with the \
             file itself (or move it aside and log in again).",
        )
    }

    fn unsafe_path(&self, path: &Path, what: &str, fix: &str) -> Error {
        Error::new(
            ErrorKind::StoreUnsafe,
            format!(
                "refusing the accounts file {}: {} {what}. Nothing was read or written. {fix}",
                self.path.display(),
                path.display()
            ),
        )
    }

    /// Applies `change` to the current contents under the cross-process lock and replaces the
    /// file atomically. If `change` fails, nothing is written.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut AccountsFile) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.ensure_dir()?;
        let _lock = self.lock()?;
        self.remove_stale_temps();
        let read = self.read()?;
        let (mut file, older) = match read {
            Some((bytes, parsed)) if parsed.from_version < SCHEMA_VERSION => {
                (parsed.file, Some((bytes, parsed.from_version)))
            }
            Some((_, parsed)) => (parsed.file, None),
            None => (AccountsFile::empty(), None),
        };
        let out = change(&mut file)?;
        if let Some((bytes, version)) = older {
            self.keep_backup(&bytes, version)?;
        }
        file.version = SCHEMA_VERSION;
        self.replace(&file)?;
        Ok(out)
    }

    /// Applies `change` to one account, found by its local id, under the same guarantees as
    /// [`Store::update`]. An account that is not there (any more) is left alone.
    pub fn update_account(
        &self,
        account_id: &str,
        change: impl FnOnce(&mut Account),
    ) -> Result<(), Error> {
        self.update(|file| {
            if let Some(account) = file.accounts.iter_mut().find(|a| a.id == account_id) {
                change(account);
            }
            Ok(())
        })
    }

    /// Gives the account labelled `label` the label `new_label`; refuses an unknown label and a
    /// label another account already has.
    pub fn rename_account(&self, label: &str, new_label: &str) -> Result<(), Error> {
        let new_label = check_label(new_label)?;
        self.update(|file| {
            if let Some(owner) = file.by_label(new_label)
                && owner.label != label
            {
                return Err(label_taken(new_label, owner));
            }
            let account = file
                .accounts
                .iter_mut()
                .find(|a| a.label == label)
                .ok_or_else(|| unknown_label(label))?;
            account.label = new_label.to_owned();
            Ok(())
        })
    }

    /// Removes the account labelled `label`, tokens and all, and returns what it was.
    pub fn remove_account(&self, label: &str) -> Result<Account, Error> {
        self.update(|file| {
            let index = file
                .accounts
                .iter()
                .position(|a| a.label == label)
                .ok_or_else(|| unknown_label(label))?;
            Ok(file.accounts.remove(index))
        })
    }

    /// Keeps the bytes of a file in an older schema beside it, before the first write in the
    /// new one; an earlier backup of the same version is left as it is.
    fn keep_backup(&self, bytes: &[u8], version: u32) -> Result<(), Error> {
        let path = self.dir.join(format!("{FILE_NAME}.v{version}.bak"));
        let written = (|| {
            let mut backup = match private_options().write(true).create_new(true).open(&path) {
                Ok(backup) => backup,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
                Err(e) => return Err(e),
            };
            backup.write_all(bytes)?;
            backup.sync_all()
        })();
        written.map_err(|e| {
            Error::new(
                ErrorKind::StoreIo,
                format!(
                    "cannot keep a backup of the accounts file {} (schema version {version}) as \
                     {} before converting it; nothing was changed",
                    self.path.display(),
                    path.display()
                ),
            )
            .with_source(e)
        })
    }

    fn io_error(&self, what: &str, e: io::Error) -> Error {
        let hint = match e.kind() {
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => format!(
                " (the folder {} is not writable by pi; the previous file, if any, is intact. \
                 Make the folder writable, or point PI_CODING_AGENT_DIR at one that is)",
                self.dir.display()
            ),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                " (the disk is full; the previous file is intact. Free some space)".to_owned()
            }
            _ => String::new(),
        };
        Error::new(
            ErrorKind::StoreIo,
            format!("{what} the accounts file {}{hint}", self.path.display()),
        )
        .with_source(e)
    }

    /// Creates the agent directory if needed and keeps it private: it holds tokens.
    fn ensure_dir(&self) -> Result<(), Error> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| self.io_error("cannot create the folder of", e))?;
        self.check_dir()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = fs::metadata(&self.dir)
                .map_err(|e| self.io_error("cannot inspect the folder of", e))?;
            // Only ever narrows: a folder the user made read-only stays read-only.
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                fs::set_permissions(&self.dir, fs::Permissions::from_mode(mode & 0o700))
                    .map_err(|e| self.io_error("cannot make private the folder of", e))?;
            }
        }
        Ok(())
    }

    /// Blocks until this process holds the lock that serialises refreshes of one account across
    /// processes; released when the returned file is dropped. Separate from the file's own lock
    /// so that a slow token endpoint never holds up other changes to the pool.
    pub fn account_lock(&self, account_id: &str) -> Result<File, Error> {
        self.ensure_dir()?;
        let safe: String = account_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.lock_file(&format!("{FILE_NAME}.refresh-{safe}.lock"))
    }

    fn lock(&self) -> Result<File, Error> {
        self.lock_file(&format!("{FILE_NAME}.lock"))
    }

    fn lock_file(&self, name: &str) -> Result<File, Error> {
        let lock_path = self.dir.join(name);
        let file = nofollow_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| self.io_error("cannot open the lock file of", e))?;
        // Blocks until every other writer, in this process or another, is done.
        file.lock().map_err(|e| self.io_error("cannot lock", e))?;
        Ok(file)
    }

    /// Temp files can only be left by a writer that died, since every writer holds the lock
    /// from creating its temp file until renaming it.
    fn remove_stale_temps(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn replace(&self, file: &AccountsFile) -> Result<(), Error> {
        let mut bytes = serde_json::to_vec_pretty(file).map_err(|e| {
            Error::new(ErrorKind::StoreIo, "cannot encode the accounts file").with_source(e)
        })?;
        bytes.push(b'\n');
        let temp_path = self
            .dir
            .join(format!("{TEMP_PREFIX}{}", std::process::id()));
        let written = (|| {
            let mut temp = private_options()
                .write(true)
                .create_new(true)
                .open(&temp_path)?;
            temp.write_all(&bytes)?;
            temp.sync_all()?;
            fs::rename(&temp_path, &self.path)?;
            sync_dir(&self.dir)
        })();
        written.map_err(|e| {
            let _ = fs::remove_file(&temp_path);
            self.io_error("cannot write", e)
        })
    }
}

/// A file read from disk: its contents in this build's schema, and the version it was written
/// in (older than [`SCHEMA_VERSION`] when it was migrated on reading).
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub file: AccountsFile,
    pub from_version: u32,
}

/// One step up the schema: turns a file of version `from` into version `from + 1`.
pub struct Migration {
    pub from: u32,
    pub apply: fn(serde_json::Value) -> Result<serde_json::Value, String>,
}

/// Every migration this build knows, oldest first. Version 1 is the first schema any release
/// wrote, so there is none yet; a later schema adds the step from the one before it here, and
/// files of every older version keep loading (the original is kept beside the file as
/// `dispatch.json.v<N>.bak` on the first write).
pub const MIGRATIONS: &[Migration] = &[];

/// Reads the bytes of an accounts file; pure, so it can be fuzzed. `path` only names the file
/// in messages. A newer schema, an older one no migration reaches, bad JSON and a wrong shape
/// are all errors that say what to do; nothing here panics on any input.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed, Error> {
    parse_with(path, bytes, MIGRATIONS)
}

fn parse_with(path: &Path, bytes: &[u8], migrations: &[Migration]) -> Result<Parsed, Error> {
    // Look at the version before the shape, so a newer file is reported as newer rather
    // than as broken.
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| unreadable(path, format!("it is not valid JSON ({})", json_problem(&e))))?;
    let from_version = match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => SCHEMA_VERSION,
        Some(v) if v > u64::from(SCHEMA_VERSION) => {
            return Err(Error::new(
                ErrorKind::StoreTooNew,
                format!(
                    "{} was written by a newer pi-dispatch (schema version {v}; this one \
                     understands {SCHEMA_VERSION}). It was left untouched. Update pi-dispatch \
                     (pi update) to use it.",
                    path.display()
                ),
            ));
        }
        Some(v) => {
            // Below SCHEMA_VERSION, so it fits.
            let from = u32::try_from(v).unwrap_or(0);
            value = migrate(path, value, from, migrations)?;
            from
        }
        None => return Err(unreadable(path, "it has no \"version\" number".into())),
    };
    let file = serde_path_to_error::deserialize(value).map_err(|e| {
        let problem = json_problem(e.inner());
        unreadable(
            path,
            format!(
                "its contents do not match the schema: {problem} at {}",
                e.path()
            ),
        )
    })?;
    Ok(Parsed { file, from_version })
}

/// Brings `value`, of schema version `from`, up to [`SCHEMA_VERSION`] one step at a time.
fn migrate(
    path: &Path,
    mut value: serde_json::Value,
    from: u32,
    migrations: &[Migration],
) -> Result<serde_json::Value, Error> {
    for version in from..SCHEMA_VERSION {
        let step = migrations
            .iter()
            .find(|m| m.from == version)
            .ok_or_else(|| {
                unreadable(
                    path,
                    format!(
                        "it has schema version {from}, which no pi-dispatch release wrote and this \
                     one cannot convert (it understands {SCHEMA_VERSION})"
                    ),
                )
            })?;
        value = (step.apply)(value).map_err(|why| {
            unreadable(
                path,
                format!("it could not be converted from schema version {version} ({why})"),
            )
        })?;
        if let Some(object) = value.as_object_mut() {
            object.insert("version".into(), (version + 1).into());
        }
    }
    Ok(value)
}

fn unreadable(path: &Path, why: String) -> Error {
    let path = path.display();
    Error::new(
        ErrorKind::StoreUnreadable,
        format!(
            "cannot use the accounts file {path}: {why}. It was left untouched. Repair it, or \
             move it aside (mv {path} {path}.bad) and add your accounts again with \
             /dispatch-login."
        ),
    )
}

/// Files created with owner-only access from the first byte (the umask can only narrow it).
fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// [`private_options`] that also refuse to open through a symbolic link.
fn nofollow_options() -> OpenOptions {
    let mut options = private_options();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options
}

/// Whether opening failed because the last part of the path is a symbolic link.
fn is_link_refusal(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Makes the rename itself durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
