//! The accounts file's schema: its version, the conversions from older versions, and reading
//! its bytes. Pure, so it can be fuzzed; `io::store` does the file I/O around it.

use std::path::Path;

use crate::domain::account::AccountsFile;
use crate::error::{Error, ErrorKind, json_problem};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

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

pub fn parse_with(path: &Path, bytes: &[u8], migrations: &[Migration]) -> Result<Parsed, Error> {
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

impl std::fmt::Debug for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migration")
            .field("from", &self.from)
            .finish()
    }
}
