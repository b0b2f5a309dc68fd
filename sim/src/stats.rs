//! What the sim observed: counters per account and endpoint, and the request log.

use std::collections::{BTreeMap, HashMap, VecDeque};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::script::Behavior;

/// A snapshot of every counter plus the `/codex/responses` request log.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub accounts: BTreeMap<String, AccountCounts>,
    pub global: GlobalCounts,
    pub requests: Vec<RecordedRequest>,
    /// The usage and banked-reset calls, oldest first.
    pub usage_requests: Vec<UsageRequest>,
}

impl Stats {
    /// The counters of one account (all zero for an account never seen).
    pub fn account(&self, account_id: &str) -> AccountCounts {
        self.accounts.get(account_id).cloned().unwrap_or_default()
    }
}

/// Counters for one scripted account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountCounts {
    /// Every `/codex/responses` request naming this account, whatever happened to it.
    pub responses: u64,
    /// Requests that passed auth and were answered by a behavior.
    pub served: u64,
    /// Requests refused with 401 because the bearer token was not valid for the account.
    pub unauthorized: u64,
    /// WebSocket upgrade attempts refused.
    pub websocket_refused: u64,
    /// Responses the client abandoned before the sim finished sending them.
    pub disconnects: u64,
    pub wham_usage: u64,
    pub codex_usage: u64,
    pub me: u64,
    /// `/oauth/token` calls with `grant_type=authorization_code` that named this account.
    pub token_authorization_code: u64,
    /// `/oauth/token` calls with `grant_type=refresh_token` that named this account.
    pub token_refresh: u64,
    /// Token calls for this account that did not produce a new token set.
    pub token_failures: u64,
    /// Behaviors that served a request, by kind (`ok`, `usageLimit`, ...).
    pub behaviors: BTreeMap<String, u64>,
    /// Requests past a spent window that were served and paid from credits.
    pub credit_served: u64,
    /// Requests refused with 429 because their family had a spent window (also counted
    /// as `usageLimit` in `behaviors`).
    pub limit_refused: u64,
    /// Usage and banked-reset calls the CDN answered with its challenge page.
    pub cdn_challenged: u64,
    /// `GET /wham/rate-limit-reset-credits` calls naming this account.
    pub reset_credits_listed: u64,
    /// `POST /wham/rate-limit-reset-credits/consume` calls naming this account.
    pub reset_consume_calls: u64,
    /// Banked resets spent (the main windows went back to 0%).
    pub resets_consumed: u64,
    /// Requests refused with 400 `invalid_encrypted_content`: their `input` held reasoning
    /// or compaction ciphertext that this account did not mint.
    pub encrypted_content_refused: u64,
    /// Requests refused with the account-level 401 while the account is deactivated.
    pub deactivated_refused: u64,
}

/// Counters not tied to a scripted account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalCounts {
    /// Backend requests without a `chatgpt-account-id` naming a scripted account.
    pub unknown_account: u64,
    /// WebSocket upgrades refused, whatever the account.
    pub websocket_refused: u64,
    pub authorize: u64,
    pub authorize_denied: u64,
    /// Token calls whose code or refresh token matched no account.
    pub token_unknown: u64,
    pub device_user_code: u64,
    pub device_poll: u64,
    pub not_found: u64,
}

/// How a `/codex/responses` answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Still being answered.
    InFlight,
    /// Fully handed to the connection.
    Finished,
    /// The client went away (or the connection broke) before the answer was complete.
    ClientDisconnected,
    /// The sim cut the connection on purpose (`cutAfterFirstDelta`).
    CutBySim,
}

/// Why a request that passed auth was refused before any behavior was taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Refusal {
    /// 400 `invalid_encrypted_content` (or `code: null`): foreign ciphertext in `input`.
    InvalidEncryptedContent,
    /// The account-level 401 of a deactivated account.
    AccountDeactivated,
}

/// One `/codex/responses` request as the sim received it.
///
/// Bodies are `Bytes`, so snapshots of a long log stay cheap to copy.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Position in the log since the sim started (not reset by `reset_stats`).
    pub seq: u64,
    /// The `chatgpt-account-id` header, whether or not it names a scripted account.
    pub account_id: Option<String>,
    pub method: String,
    pub path: String,
    /// Header names are lowercase; repeated headers are joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub content_encoding: Option<String>,
    /// The body bytes exactly as received.
    pub raw_body: Bytes,
    /// The body after undoing `content-encoding: zstd` (the raw bytes otherwise);
    /// None when decoding failed, with the reason in `decode_error`.
    pub body: Option<Bytes>,
    pub decode_error: Option<String>,
    /// The behavior that answered; None when auth or a check (`refusal`) refused the
    /// request.
    pub behavior: Option<Behavior>,
    /// The status sent, 0 while (or if) no headers were sent.
    pub status: u16,
    pub outcome: Outcome,
    pub received_at_ms: u64,
    /// Set when the request passed auth but was refused before the behavior queue.
    pub refusal: Option<Refusal>,
    /// The `content-encoding` of the answer (`gzip`), None when it went out as is.
    pub response_encoding: Option<String>,
}

impl RecordedRequest {
    /// True when the client went away before the answer was complete.
    pub fn client_disconnected(&self) -> bool {
        self.outcome == Outcome::ClientDisconnected
    }

    /// One header by name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The decoded body parsed as JSON, when it is JSON.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(self.body.as_deref()?).ok()
    }
}

/// The admin API's JSON form: bodies as base64 plus the parsed JSON body.
impl Serialize for RecordedRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("RecordedRequest", 16)?;
        out.serialize_field("seq", &self.seq)?;
        out.serialize_field("accountId", &self.account_id)?;
        out.serialize_field("method", &self.method)?;
        out.serialize_field("path", &self.path)?;
        out.serialize_field("headers", &self.headers)?;
        out.serialize_field("contentEncoding", &self.content_encoding)?;
        out.serialize_field("rawBodyBase64", &STANDARD.encode(&self.raw_body))?;
        out.serialize_field(
            "bodyBase64",
            &self.body.as_ref().map(|b| STANDARD.encode(b)),
        )?;
        out.serialize_field("bodyJson", &self.body_json())?;
        out.serialize_field("decodeError", &self.decode_error)?;
        out.serialize_field("behavior", &self.behavior)?;
        out.serialize_field("status", &self.status)?;
        out.serialize_field("outcome", &self.outcome)?;
        out.serialize_field("receivedAtMs", &self.received_at_ms)?;
        out.serialize_field("refusal", &self.refusal)?;
        out.serialize_field("responseEncoding", &self.response_encoding)?;
        out.end()
    }
}

/// One call to a usage or banked-reset endpoint, with the client headers that decide
/// whether the CDN lets it through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageRequest {
    /// The `chatgpt-account-id` header, whether or not it names a scripted account.
    pub account_id: Option<String>,
    pub method: String,
    pub path: String,
    pub user_agent: Option<String>,
    pub originator: Option<String>,
    /// The status answered (the delay, if any, comes after it was decided).
    pub status: u16,
    pub cdn_challenged: bool,
    pub received_at_ms: u64,
}

/// The mutable book-keeping behind `Stats`.
#[derive(Debug)]
pub(crate) struct Recorder {
    pub accounts: HashMap<String, AccountCounts>,
    pub global: GlobalCounts,
    pub requests: VecDeque<RecordedRequest>,
    pub usage_requests: VecDeque<UsageRequest>,
    pub next_seq: u64,
    /// The log keeps only this many newest requests, so long benchmarks do not grow
    /// without bound; the counters are unaffected.
    pub log_limit: usize,
}

impl Recorder {
    pub fn new(log_limit: usize) -> Recorder {
        Recorder {
            accounts: HashMap::new(),
            global: GlobalCounts::default(),
            requests: VecDeque::new(),
            usage_requests: VecDeque::new(),
            next_seq: 0,
            log_limit,
        }
    }

    pub fn account(&mut self, account_id: &str) -> &mut AccountCounts {
        self.accounts.entry(account_id.to_string()).or_default()
    }

    pub fn snapshot(&self) -> Stats {
        Stats {
            accounts: self
                .accounts
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            global: self.global.clone(),
            requests: self.requests.iter().cloned().collect(),
            usage_requests: self.usage_requests.iter().cloned().collect(),
        }
    }

    /// Appends a usage call to its log, which keeps as many as the request log.
    pub fn push_usage_request(&mut self, request: UsageRequest) {
        self.usage_requests.push_back(request);
        while self.usage_requests.len() > self.log_limit {
            self.usage_requests.pop_front();
        }
    }

    /// Appends a request to the log and returns its sequence number.
    pub fn push_request(&mut self, mut request: RecordedRequest) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        request.seq = seq;
        self.requests.push_back(request);
        while self.requests.len() > self.log_limit {
            self.requests.pop_front();
        }
        seq
    }

    pub fn request_mut(&mut self, seq: u64) -> Option<&mut RecordedRequest> {
        // The log is in seq order, but a reset may have removed the front.
        self.requests.iter_mut().rev().find(|r| r.seq == seq)
    }

    /// Clears counters and the log; scripted accounts keep a zeroed entry.
    pub fn reset(&mut self) {
        for counts in self.accounts.values_mut() {
            *counts = AccountCounts::default();
        }
        self.global = GlobalCounts::default();
        self.requests.clear();
        self.usage_requests.clear();
    }
}
