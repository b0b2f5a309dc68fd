//! The pool as this process sees it: the accounts file plus what this process has learned but
//! not yet written, which session uses which account, and the notices owed to each session.
//!
//! Account changes (a bench, usage from reply headers) are known to this process at once and
//! written to the shared file by one background writer, in order and batched, so the request
//! path never waits for a disk flush and other pi processes still learn them shortly after.
//!
//! The parsed file is kept, with the identity of the file it came from, and read again only
//! when the file on disk has another identity: a request pays a `stat`, not a parse.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tokio::sync::mpsc;

use crate::config;
use crate::domain::account::{Account, AccountsFile, Change};
use crate::domain::failure::Failure;
use crate::domain::select::{self, Moved, Need, Reason, Sessions};
use crate::domain::text;
use crate::domain::usage::Observation;
use crate::error::Error;
use crate::io::store::{FileIdentity, Loaded, Store};

/// The account a request goes to, with the pool it was chosen from.
#[derive(Clone, Debug)]
pub struct Seated {
    pub file: Arc<AccountsFile>,
    /// The limit family the request counts against.
    pub family: String,
    pub account: Account,
    pub reason: Reason,
}

/// Told to a session once, after a request moved it to another account.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub from_label: String,
    pub to_label: String,
    /// Why the session left its account.
    pub why: String,
    /// When the account it left comes back, if known.
    pub back_at_ms: Option<u64>,
    pub pin_cleared: bool,
}

struct Pending {
    seq: u64,
    account_id: String,
    change: Change,
}

struct State {
    sessions: Sessions,
    rng: StdRng,
    pending: Vec<Pending>,
    next_seq: u64,
    notices: HashMap<String, Vec<Notice>>,
    last_write_error: Option<String>,
}

/// The file as last read or written, and the identity of that file.
type Parsed = Option<(FileIdentity, Arc<AccountsFile>)>;

pub struct Pool {
    store: Store,
    state: Arc<Mutex<State>>,
    parsed: Arc<Mutex<Parsed>>,
    writes: mpsc::UnboundedSender<u64>,
    queued: Mutex<Option<mpsc::UnboundedReceiver<u64>>>,
    writer_started: AtomicBool,
}

impl Pool {
    /// The pool of `store`, its random tie-break seeded by `PI_DISPATCH_SEED` when set.
    pub fn new(store: Store) -> Self {
        let rng = match config::seed() {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng(),
        };
        Self::with_rng(store, rng)
    }

    pub fn with_rng(store: Store, rng: StdRng) -> Self {
        let (writes, queued) = mpsc::unbounded_channel();
        Self {
            store,
            state: Arc::new(Mutex::new(State {
                sessions: Sessions::default(),
                rng,
                pending: Vec::new(),
                next_seq: 0,
                notices: HashMap::new(),
                last_write_error: None,
            })),
            parsed: Arc::default(),
            writes,
            queued: Mutex::new(Some(queued)),
            writer_started: AtomicBool::new(false),
        }
    }

    /// The accounts file with this process's unwritten changes applied.
    pub fn snapshot(&self) -> Result<Arc<AccountsFile>, Error> {
        // Copy the pending changes before reading the file: a change written in between is
        // then applied twice, which is harmless, instead of not at all.
        let pending: Vec<(String, Change)> = self
            .state
            .lock()
            .pending
            .iter()
            .map(|p| (p.account_id.clone(), p.change.clone()))
            .collect();
        let file = self.file()?;
        if pending.is_empty() {
            return Ok(file);
        }
        let mut file = AccountsFile::clone(&file);
        for (id, change) in &pending {
            file.apply_change(id, change);
        }
        Ok(Arc::new(file))
    }

    /// The file as it is on disk: the kept one while the file's identity is unchanged.
    fn file(&self) -> Result<Arc<AccountsFile>, Error> {
        let on_disk = self.store.identity()?;
        if let (Some(identity), Some((kept, file))) = (on_disk, &*self.parsed.lock())
            && identity == *kept
        {
            return Ok(file.clone());
        }
        Ok(keep(&self.parsed, self.store.load_identified()?))
    }

    /// The account for a session's next request of `model` (its limit family decides what
    /// can serve), and why; `excluded` are already tried.
    pub fn choose(
        &self,
        session: Option<&str>,
        model: Option<&str>,
        file: &Arc<AccountsFile>,
        now_ms: u64,
        excluded: impl Fn(&Account) -> bool,
    ) -> Option<Seated> {
        let family = file.family_of(model);
        let need = Need {
            family: &family,
            spend_money: file.settings.spend_money,
        };
        let served_before = session
            .and_then(|s| file.binding(s, now_ms))
            .map(|b| b.account_id.as_str());
        let state = &mut *self.state.lock();
        let (account, reason) = state.sessions.choose(
            session,
            &file.accounts,
            served_before,
            &need,
            now_ms,
            excluded,
            &mut state.rng,
        )?;
        Some(Seated {
            account: account.clone(),
            reason,
            family,
            file: file.clone(),
        })
    }

    pub fn seat(&self, session: &str) -> Option<select::Seat> {
        self.state.lock().sessions.seat(session).cloned()
    }

    pub fn pin(&self, session: &str, account_id: &str) {
        self.state.lock().sessions.pin(session, account_id);
    }

    /// Records which account served the session's request of `family`; when that moved the
    /// session off another account, the session is owed a notice. The shared file learns the
    /// binding (with the fingerprints of the history's items the account cannot read,
    /// `foreign`) only when it changed: a session that stays on its account costs no write.
    pub fn settle(
        &self,
        session: &str,
        seated: &Seated,
        failures: &[(String, Failure)],
        foreign: Vec<String>,
        now_ms: u64,
    ) {
        let Seated {
            file,
            family,
            account: served_by,
            reason,
        } = seated;
        let binding = file.binding(session, now_ms);
        let served_before = binding.map(|b| b.account_id.clone());
        let unchanged =
            binding.is_some_and(|b| b.account_id == served_by.id && b.foreign == foreign);
        if !unchanged {
            let served = Change::Served {
                session: session.to_owned(),
                at_ms: now_ms,
                foreign,
            };
            self.record(&served_by.id, served);
        }
        let accounts = &file.accounts;
        let state = &mut *self.state.lock();
        let moved = state
            .sessions
            .settle(session, &served_by.id, reason.clone());
        let label = |id: &str| {
            accounts
                .iter()
                .find(|a| a.id == id)
                .map_or_else(|| id.to_owned(), |a| a.label.clone())
        };
        let left = match moved {
            Some(Moved {
                from_account_id,
                pin_cleared,
                ..
            }) => Some((from_account_id, pin_cleared)),
            // New to this process: it left the account that served it before (in any process),
            // or its first choice failed. Still worth telling.
            None => served_before
                .filter(|id| *id != served_by.id)
                .or_else(|| failures.first().map(|(id, _)| id.clone()))
                .map(|id| (id, false)),
        };
        let Some((from_id, pin_cleared)) = left else {
            return;
        };
        let from = accounts.iter().find(|a| a.id == from_id);
        let failed_here = failures.iter().find(|(id, _)| *id == from_id);
        let availability = from.map(|a| select::availability(a, family, now_ms));
        let why = match (failed_here, &availability) {
            (Some((_, failure)), _) => text::report::failure(failure),
            (None, Some(a)) => text::report::availability(a),
            (None, None) => text::WAS_REMOVED.into(),
        };
        state
            .notices
            .entry(session.to_owned())
            .or_default()
            .push(Notice {
                from_label: label(&from_id),
                to_label: served_by.label.clone(),
                why,
                back_at_ms: availability
                    .as_ref()
                    .and_then(select::Availability::back_at),
                pin_cleared,
            });
    }

    /// The notices owed to a session, each given once.
    pub fn take_notices(&self, session: &str) -> Vec<Notice> {
        self.state
            .lock()
            .notices
            .remove(session)
            .unwrap_or_default()
    }

    /// Applies a change to an account now and writes it to the file soon.
    pub fn record(&self, account_id: &str, change: Change) {
        {
            let state = &mut *self.state.lock();
            state.next_seq += 1;
            let seq = state.next_seq;
            state.pending.push(Pending {
                seq,
                account_id: account_id.to_owned(),
                change,
            });
            let _ = self.writes.send(seq);
        }
        self.start_writer();
    }

    /// A failed attempt of a request of `family`: a limit on a family, or the account's new
    /// state, if the failure changes either.
    pub fn record_failure(
        &self,
        account_id: &str,
        failure: &Failure,
        family: &str,
        seen: Option<&Observation>,
        now_ms: u64,
    ) {
        if let Some(limit) = failure.family_limit(family, seen, now_ms) {
            self.record(account_id, Change::Limited(limit));
        } else if let Some(change) = failure.account_change(now_ms) {
            self.record(account_id, change);
        }
    }

    /// What a reply said about the family `model` counts against, when that is news.
    pub fn learn_family(&self, file: &AccountsFile, model: &str, family: &str) {
        if file.model_families.get(model).map(String::as_str) != Some(family) {
            self.record(
                "",
                Change::ModelFamily {
                    model: model.to_owned(),
                    family: family.to_owned(),
                },
            );
        }
    }

    /// Waits until every recorded change is in the file (or failed to get there).
    pub async fn flush(&self) {
        while !self.state.lock().pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits, at most `limit`, until every change recorded so far is in the file (or failed to
    /// get there). Changes recorded meanwhile are not waited for.
    pub async fn flush_recorded(&self, limit: Duration) {
        let through = self.state.lock().next_seq;
        let written = async {
            while self.state.lock().pending.iter().any(|p| p.seq <= through) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let _ = tokio::time::timeout(limit, written).await;
    }

    /// Why the last background write failed, if it did.
    pub fn last_write_error(&self) -> Option<String> {
        self.state.lock().last_write_error.clone()
    }

    fn start_writer(&self) {
        if self.writer_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(mut queued) = self.queued.lock().take() else {
            return;
        };
        let store = self.store.clone();
        // The writer must not keep the pool alive: it ends once the pool is gone.
        let state = Arc::downgrade(&self.state);
        let parsed = Arc::downgrade(&self.parsed);
        tokio::spawn(async move {
            while let Some(first) = queued.recv().await {
                let mut last = first;
                while let Ok(seq) = queued.try_recv() {
                    last = seq;
                }
                let Some(shared) = state.upgrade() else {
                    return;
                };
                let batch: Vec<(String, Change)> = shared
                    .lock()
                    .pending
                    .iter()
                    .filter(|p| p.seq <= last)
                    .map(|p| (p.account_id.clone(), p.change.clone()))
                    .collect();
                drop(shared);
                let written = store
                    .off_thread(move |store| {
                        store.update_identified(|file| {
                            for (id, change) in &batch {
                                file.apply_change(id, change);
                            }
                            Ok(())
                        })
                    })
                    .await;
                let Some(shared) = state.upgrade() else {
                    return;
                };
                // What was written is the file on disk now: the next read need not parse it.
                if let (Ok((_, loaded)), Some(parsed)) = (&written, parsed.upgrade()) {
                    keep(&parsed, loaded.clone());
                }
                let mut shared = shared.lock();
                shared.pending.retain(|p| p.seq > last);
                // Shown by the status command.
                shared.last_write_error = written.err().map(|e| e.chain());
            }
        });
    }
}

/// Keeps `loaded` as the parsed file of its identity, and returns it.
fn keep(parsed: &Mutex<Parsed>, loaded: Loaded) -> Arc<AccountsFile> {
    let file = Arc::new(loaded.file);
    *parsed.lock() = loaded.identity.map(|identity| (identity, file.clone()));
    file
}
