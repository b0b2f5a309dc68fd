//! Accounts as the pool keeps them, and the rules for their labels and identities.
//!
//! Pure: the accounts file's contents ([`AccountsFile`]) are changed here; reading and writing
//! the file is `io::store`'s job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::oauth::{Identity, Tokens};
use crate::domain::text;
use crate::domain::usage::{MAIN_FAMILY, Observation, Usage};
use crate::error::{Error, ErrorKind};

/// Labels are typed as command arguments and shown in one line of status, so they stay short.
pub const MAX_LABEL_CHARS: usize = 64;
/// Models whose limit family is remembered at most; a pool sees a handful.
const MAX_MODEL_FAMILIES: usize = 64;

/// Session bindings kept at most: the most recently served sessions.
pub const MAX_BINDINGS: usize = 256;
/// A binding older than this is forgotten. A session resumed later is chosen afresh (and its
/// old reasoning removed from the request); a month covers a long-running project.
pub const BINDING_LIFETIME_MS: u64 = 30 * 24 * 3600 * 1000;

/// The contents of `dispatch.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountsFile {
    pub version: u32,
    #[serde(default)]
    pub accounts: Vec<Account>,
    /// Which account served each recent session last, so any pi process continuing it sends it
    /// there: only that account can read the session's reasoning, and its prompt cache is warm.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<SessionBinding>,
    #[serde(default, skip_serializing_if = "Settings::is_default")]
    pub settings: Settings,
    /// The limit family each model counted against, as replies said (`x-codex-active-limit`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_families: BTreeMap<String, String>,
}

/// What the user decided for the whole pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Requests that cost money may be sent: past 100% on an account whose credits pay, and on
    /// plans that bill every request (`*_usage_based`), once no account has included quota left.
    #[serde(default)]
    pub spend_money: bool,
}

impl Settings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// A session and the account that served its last reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionBinding {
    pub session: String,
    pub account_id: String,
    pub served_at_ms: u64,
    /// Fingerprints of the reasoning items in the session's history that other accounts
    /// minted (see `domain::conversation`): removed from every request to this account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign: Vec<String>,
}

/// Foreign fingerprints kept per session at most; a history longer than this loses the oldest
/// from the list, and a request holding one is then refused and recovered (one more exchange).
const MAX_FOREIGN: usize = 4096;

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
    /// Something about the account that only a person can fix (deactivated, revoked, refused).
    /// A field beside `state` rather than a state of its own, so a file with it still loads in
    /// an older pi-dispatch (which ignores it) and a login or a good usage fetch clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<Attention>,
    /// Usage limits the backend answered with, each for one limit family.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<FamilyLimit>,
    #[serde(default)]
    pub added_at_ms: u64,
}

/// A usage limit the backend reported for one limit family: that family's models rest until
/// `until_ms`, the account's other models do not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilyLimit {
    pub family: String,
    pub until_ms: u64,
    /// When the limit was reported; only a later view of the family can lift it.
    pub since_ms: u64,
    /// The family's highest use when the limit came, if known: a later view below it is news
    /// (a reset, a banked reset redeemed), the same numbers again are not.
    #[serde(default)]
    pub used_percent: Option<f64>,
    pub reason: String,
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

/// What is wrong with an account until someone fixes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attention {
    pub kind: AttentionKind,
    /// The backend's own words, one line and bounded.
    #[serde(default)]
    pub detail: Option<String>,
    pub since_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttentionKind {
    /// `account_deactivated`.
    Deactivated,
    /// `token_revoked`.
    Revoked,
    /// `missing_scope`.
    MissingScope,
    /// A 401 without a known code, even after a refresh.
    TokenRefused,
    /// 402 `deactivated_workspace` (sometimes briefly).
    WorkspaceDeactivated,
    /// A JSON 403 naming an authorization problem.
    Forbidden,
    /// A kind a newer pi-dispatch wrote.
    #[serde(other)]
    Other,
}

/// A change to one account that the proxy learned, applied in memory first and then to the file.
#[derive(Clone, Debug)]
pub enum Change {
    State(AccountState),
    Observed(Observation),
    Attention(Option<Attention>),
    /// A usage limit on one of its limit families.
    Limited(FamilyLimit),
    /// A reply said which limit family a model counts against (a change to the pool).
    ModelFamily {
        model: String,
        family: String,
    },
    /// The account served this session's reply; `foreign` are the fingerprints it cannot read
    /// (a change to the pool).
    Served {
        session: String,
        at_ms: u64,
        foreign: Vec<String>,
    },
}

impl Change {
    fn apply(&self, account: &mut Account) {
        match self {
            Self::State(state) => {
                // A bench or a throttle never hides that the account must log in again.
                if !matches!(account.state, AccountState::NeedsLogin { .. })
                    || matches!(state, AccountState::NeedsLogin { .. })
                {
                    account.state = state.clone();
                }
            }
            Self::Observed(observation) => account.observe(observation),
            Self::Attention(attention) => account.attention.clone_from(attention),
            Self::Limited(limit) => account.limit(limit.clone()),
            // Changes to the file, not the account (see `AccountsFile::apply_change`).
            Self::ModelFamily { .. } | Self::Served { .. } => {}
        }
    }
}

impl AccountsFile {
    pub fn empty(version: u32) -> Self {
        Self {
            version,
            ..Self::default()
        }
    }

    pub fn by_label(&self, label: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.label == label)
    }

    /// The account labelled `label`, or the error that names the unknown label.
    pub fn labelled(&self, label: &str) -> Result<&Account, Error> {
        self.by_label(label).ok_or_else(|| unknown_label(label))
    }

    /// Applies `change` to the account with local id `id`; an account that is not there (any
    /// more) is left alone, since it was removed meanwhile.
    pub fn apply(&mut self, id: &str, change: impl FnOnce(&mut Account)) {
        if let Some(account) = self.accounts.iter_mut().find(|a| a.id == id) {
            change(account);
        }
    }

    /// Applies a change learned about the account with local id `account_id`.
    pub fn apply_change(&mut self, account_id: &str, change: &Change) {
        match change {
            Change::Served {
                session,
                at_ms,
                foreign,
            } => self.bind(session, account_id, *at_ms, foreign),
            Change::ModelFamily { model, family } => self.learn_family(model, family),
            change => self.apply(account_id, |account| change.apply(account)),
        }
    }

    /// Which account served `session` last, if that account is still in the pool and the
    /// binding has not expired.
    pub fn binding(&self, session: &str, now_ms: u64) -> Option<&SessionBinding> {
        self.sessions
            .iter()
            .find(|b| b.session == session)
            .filter(|b| now_ms.saturating_sub(b.served_at_ms) <= BINDING_LIFETIME_MS)
            .filter(|b| self.accounts.iter().any(|a| a.id == b.account_id))
    }

    /// Records that `account_id` served `session`, keeping the bindings bounded: expired ones
    /// and, past [`MAX_BINDINGS`], the least recently served ones are dropped.
    fn bind(&mut self, session: &str, account_id: &str, at_ms: u64, foreign: &[String]) {
        self.sessions.retain(|b| {
            b.session != session && at_ms.saturating_sub(b.served_at_ms) <= BINDING_LIFETIME_MS
        });
        let skip = foreign.len().saturating_sub(MAX_FOREIGN);
        self.sessions.push(SessionBinding {
            session: session.to_owned(),
            account_id: account_id.to_owned(),
            served_at_ms: at_ms,
            foreign: foreign[skip..].to_vec(),
        });
        if self.sessions.len() > MAX_BINDINGS {
            self.sessions
                .sort_by_key(|b| std::cmp::Reverse(b.served_at_ms));
            self.sessions.truncate(MAX_BINDINGS);
        }
    }

    /// The limit family `model` counts against: what replies said, else a family whose display
    /// name is the model's (the backend names a Spark model's limit "GPT-5.3-Codex-Spark"),
    /// else the main one.
    pub fn family_of(&self, model: Option<&str>) -> String {
        let Some(model) = model else {
            return MAIN_FAMILY.into();
        };
        if let Some(family) = self.model_families.get(model) {
            return family.clone();
        }
        let plain = |name: &str| name.trim().to_ascii_lowercase().replace(' ', "-");
        let model = plain(model);
        self.accounts
            .iter()
            .filter_map(|a| a.usage.as_ref())
            .flat_map(|u| &u.families)
            .find(|f| f.name.as_deref().is_some_and(|name| plain(name) == model))
            .map_or_else(|| MAIN_FAMILY.into(), |f| f.id.clone())
    }

    /// Remembers the family a reply said `model` counted against.
    pub fn learn_family(&mut self, model: &str, family: &str) {
        if self.model_families.len() < MAX_MODEL_FAMILIES || self.model_families.contains_key(model)
        {
            self.model_families
                .insert(model.to_owned(), family.to_owned());
        }
    }

    /// The first `account-N`, counting from 1, that no account uses.
    pub fn free_numbered_label(&self) -> String {
        (1..)
            .map(|n| format!("account-{n}"))
            .find(|label| self.by_label(label).is_none())
            .unwrap_or_default()
    }

    /// Gives the account labelled `label` the label `new_label`; refuses an unknown label and a
    /// label another account already has.
    pub fn rename(&mut self, label: &str, new_label: &str) -> Result<(), Error> {
        let new_label = check_label(new_label)?;
        if let Some(owner) = self.by_label(new_label)
            && owner.label != label
        {
            return Err(label_taken(new_label, owner));
        }
        let account = self
            .accounts
            .iter_mut()
            .find(|a| a.label == label)
            .ok_or_else(|| unknown_label(label))?;
        account.label = new_label.to_owned();
        Ok(())
    }

    /// Removes the account labelled `label` and returns it.
    pub fn remove(&mut self, label: &str) -> Result<Account, Error> {
        let index = self
            .accounts
            .iter()
            .position(|a| a.label == label)
            .ok_or_else(|| unknown_label(label))?;
        Ok(self.accounts.remove(index))
    }

    /// The account a login of `identity` concerns, if it is in the pool already.
    pub fn find_identity(&self, identity: &Identity) -> Option<&Account> {
        self.accounts.iter().find(|a| a.is(identity))
    }

    /// Saves a login: a known identity gets the new tokens and becomes usable again, keeping its
    /// id, label and history; a new one is added as `new_id` under `label`, else its email, else
    /// the first free `account-N`. A label that belongs to another identity is refused.
    pub fn save_login(&mut self, login: NewLogin<'_>) -> Result<LoginOutcome, Error> {
        let NewLogin {
            identity,
            tokens,
            label,
            new_id,
            now_ms,
        } = login;
        let label = label.map(check_label).transpose()?;
        if let Some(account) = self.accounts.iter_mut().find(|a| a.is(identity)) {
            account.tokens = tokens;
            account.state = AccountState::Usable;
            account.attention = None;
            let keep = |field: &mut Option<String>, new: &Option<String>| {
                if new.is_some() {
                    field.clone_from(new);
                }
            };
            keep(&mut account.chatgpt_user_id, &identity.chatgpt_user_id);
            keep(&mut account.email, &identity.email);
            keep(&mut account.plan, &identity.plan);
            return Ok(LoginOutcome {
                label: account.label.clone(),
                email: account.email.clone(),
                plan: account.plan.clone(),
                added: false,
                ignored_label: label.filter(|l| *l != account.label).map(str::to_owned),
            });
        }
        let label = match label {
            Some(label) => match self.by_label(label) {
                Some(owner) => return Err(label_taken(label, owner)),
                None => label.to_owned(),
            },
            None => identity
                .email
                .as_deref()
                .and_then(|email| check_label(email).ok())
                .filter(|email| self.by_label(email).is_none())
                .map_or_else(|| self.free_numbered_label(), str::to_owned),
        };
        self.accounts.push(Account {
            id: new_id,
            label: label.clone(),
            chatgpt_account_id: identity.chatgpt_account_id.clone(),
            chatgpt_user_id: identity.chatgpt_user_id.clone(),
            email: identity.email.clone(),
            plan: identity.plan.clone(),
            tokens,
            state: AccountState::Usable,
            usage: None,
            attention: None,
            limits: Vec::new(),
            added_at_ms: now_ms,
        });
        Ok(LoginOutcome {
            label,
            email: identity.email.clone(),
            plan: identity.plan.clone(),
            added: true,
            ignored_label: None,
        })
    }
}

impl Account {
    /// Records what was seen of its usage (and plan). A family limit that has run out is
    /// dropped, and so is one the observation shows lifted: fresh news brings the family back
    /// before its old reset.
    pub fn observe(&mut self, observation: &Observation) {
        let seen = &observation.usage;
        self.usage = Some(Usage::merge(
            self.usage.take(),
            seen.clone(),
            observation.source,
        ));
        if let Some(plan) = &observation.plan {
            self.plan = Some(plan.clone());
        }
        let at = seen.observed_at_ms;
        self.limits.retain(|limit| {
            let lifted = at > limit.since_ms
                && seen.shows_below(&limit.family, limit.used_percent.unwrap_or(100.0), at);
            limit.until_ms > at && !lifted
        });
    }

    /// Rests one family until the limit's reset; the reason shown is why the backend says the
    /// limit was reached, when it said.
    pub fn limit(&mut self, mut limit: FamilyLimit) {
        if let Some(words) = self
            .usage
            .as_ref()
            .and_then(|u| u.reached.as_deref())
            .and_then(text::workspace_limit)
        {
            limit.reason = words.into();
        }
        self.limits.retain(|l| l.family != limit.family);
        self.limits.push(limit);
    }

    /// Whether this account is the one `identity` logged in as. Several Team seats share one
    /// ChatGPT account id and differ by user id; accounts saved without a user id are known by
    /// their account id alone.
    pub fn is(&self, identity: &Identity) -> bool {
        self.chatgpt_account_id == identity.chatgpt_account_id
            && match (&self.chatgpt_user_id, &identity.chatgpt_user_id) {
                (Some(stored), Some(new)) => stored == new,
                _ => true,
            }
    }
}

/// What a finished login brings to the pool.
pub struct NewLogin<'a> {
    pub identity: &'a Identity,
    pub tokens: Tokens,
    /// The label asked for, if any.
    pub label: Option<&'a str>,
    /// The local id a new account gets.
    pub new_id: String,
    pub now_ms: u64,
}

/// What a login did to the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginOutcome {
    pub label: String,
    pub email: Option<String>,
    pub plan: Option<String>,
    /// False when the identity was in the pool already and got new tokens.
    pub added: bool,
    /// The label asked for, when the identity already had another one (which it keeps).
    pub ignored_label: Option<String>,
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
            text::bad_label(label, MAX_LABEL_CHARS),
        ));
    }
    Ok(label)
}

/// The refusal when `label` already names `owner`, a different account.
fn label_taken(label: &str, owner: &Account) -> Error {
    let who = owner.email.as_deref().unwrap_or(&owner.chatgpt_account_id);
    Error::new(ErrorKind::Label, text::label_taken(label, who))
}

fn unknown_label(label: &str) -> Error {
    Error::new(ErrorKind::Label, text::unknown_label(label))
}

#[cfg(test)]
mod binding_tests;
#[cfg(test)]
mod tests;
