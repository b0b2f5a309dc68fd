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
//! Reading and parsing costs more than a request should pay, so each read and write also gives
//! the identity of the file it saw ([`FileIdentity`]: device, inode, size, modification time);
//! a caller that keeps the parsed contents re-reads only when the identity on disk changed.
//!
//! The file holds tokens, so it is refused outright (nothing read, nothing written) when it is
//! a symbolic link, is not a regular file, or it or its folder belongs to another user: a
//! write must never land somewhere else, and a file someone else controls must not be trusted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::domain::account::{Account, AccountsFile};
use crate::domain::schema::{MIGRATIONS, Migration, Parsed, SCHEMA_VERSION, parse_with};
use crate::error::{Error, ErrorKind};

const FILE_NAME: &str = "dispatch.json";
const TEMP_PREFIX: &str = "dispatch.json.tmp-";

/// One version of the file on disk. Every write renames a new file into place (a new inode);
/// an edit in place changes the size or the modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    device: u64,
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl FileIdentity {
    fn of(meta: &fs::Metadata) -> Self {
        #[cfg(unix)]
        let (device, inode) = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let (device, inode) = (0, 0);
        Self {
            device,
            inode,
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// The file's contents and the identity of the bytes they came from (`None`: no file).
#[derive(Clone, Debug)]
pub struct Loaded {
    pub file: AccountsFile,
    pub identity: Option<FileIdentity>,
}

/// Handle on the accounts file of one agent directory. Cheap; does no I/O until used.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    path: PathBuf,
    migrations: &'static [Migration],
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
        Ok(self.load_identified()?.file)
    }

    /// The current contents and the identity of the file they were read from.
    pub fn load_identified(&self) -> Result<Loaded, Error> {
        Ok(match self.read()? {
            Some(read) => Loaded {
                file: read.parsed.file,
                identity: Some(read.identity),
            },
            None => Loaded {
                file: AccountsFile::empty(SCHEMA_VERSION),
                identity: None,
            },
        })
    }

    /// The identity of the file on disk now, without reading it or following a link; `None`
    /// when there is no file.
    pub fn identity(&self) -> Result<Option<FileIdentity>, Error> {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) => Ok(Some(FileIdentity::of(&meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_error("cannot inspect", e)),
        }
    }

    /// The file's bytes, what they say and their identity; `None` when there is no file.
    /// Refuses a link, a non-file and a file or folder of another user before reading a byte
    /// of it.
    fn read(&self) -> Result<Option<Read>, Error> {
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
        Ok(Some(Read {
            bytes,
            parsed,
            identity: FileIdentity::of(&meta),
        }))
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

    /// Runs `work` with this store on a blocking thread of the tokio runtime: file locks block,
    /// and async threads must not.
    pub async fn off_thread<T, W>(&self, work: W) -> Result<T, Error>
    where
        T: Send + 'static,
        W: FnOnce(Store) -> Result<T, Error> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(store))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::StoreIo, "the accounts file worker failed").with_source(e)
            })?
    }

    /// Applies `change` to the current contents under the cross-process lock and replaces the
    /// file atomically. If `change` fails, nothing is written.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut AccountsFile) -> Result<T, Error>,
    ) -> Result<T, Error> {
        Ok(self.update_identified(change)?.0)
    }

    /// [`Store::update`], also giving the contents written and the identity of the new file.
    pub fn update_identified<T>(
        &self,
        change: impl FnOnce(&mut AccountsFile) -> Result<T, Error>,
    ) -> Result<(T, Loaded), Error> {
        self.ensure_dir()?;
        let _lock = self.lock()?;
        self.remove_stale_temps();
        let (mut file, older) = match self.read()? {
            Some(read) if read.parsed.from_version < SCHEMA_VERSION => {
                let version = read.parsed.from_version;
                (read.parsed.file, Some((read.bytes, version)))
            }
            Some(read) => (read.parsed.file, None),
            None => (AccountsFile::empty(SCHEMA_VERSION), None),
        };
        let out = change(&mut file)?;
        if let Some((bytes, version)) = older {
            self.keep_backup(&bytes, version)?;
        }
        file.version = SCHEMA_VERSION;
        let identity = self.replace(&file)?;
        Ok((
            out,
            Loaded {
                file,
                identity: Some(identity),
            },
        ))
    }

    /// Applies `change` to one account, found by its local id, under the same guarantees as
    /// [`Store::update`]. An account that is not there (any more) is left alone.
    pub fn update_account(
        &self,
        account_id: &str,
        change: impl FnOnce(&mut Account),
    ) -> Result<(), Error> {
        self.update(|file| {
            file.apply(account_id, change);
            Ok(())
        })
    }

    /// Gives the account labelled `label` the label `new_label` (see [`AccountsFile::rename`]).
    pub fn rename_account(&self, label: &str, new_label: &str) -> Result<(), Error> {
        self.update(|file| file.rename(label, new_label))
    }

    /// Removes the account labelled `label`, tokens and all, and returns what it was.
    pub fn remove_account(&self, label: &str) -> Result<Account, Error> {
        self.update(|file| file.remove(label))
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

    /// Writes `file` in place of the old one; returns the new file's identity.
    fn replace(&self, file: &AccountsFile) -> Result<FileIdentity, Error> {
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
            // The rename keeps the inode, size and modification time.
            let identity = FileIdentity::of(&temp.metadata()?);
            fs::rename(&temp_path, &self.path)?;
            sync_dir(&self.dir)?;
            Ok(identity)
        })();
        written.map_err(|e| {
            let _ = fs::remove_file(&temp_path);
            self.io_error("cannot write", e)
        })
    }
}

/// What one read of the file found.
struct Read {
    bytes: Vec<u8>,
    parsed: Parsed,
    identity: FileIdentity,
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
