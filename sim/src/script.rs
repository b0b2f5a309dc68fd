//! The script: what the simulated accounts are and how the backend answers them.
//!
//! Every type here is plain serde data in camelCase so that the same script can be
//! built in Rust tests or written as a JSON file for the `dispatch-sim` binary.
//! Missing fields take the defaults documented on each field (and in sim/README.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The whole simulated world: accounts plus a few global knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Script {
    /// The scripted ChatGPT accounts, in order. The first one is the default login.
    #[serde(default)]
    pub accounts: Vec<AccountScript>,
    /// Delay before every `/codex/responses` answer (benchmarks use 50 ms).
    #[serde(default)]
    pub latency_ms: u64,
    /// How the device-code login behaves.
    #[serde(default)]
    pub device: DeviceScript,
    /// How many of the newest `/codex/responses` requests the log keeps (default 1000).
    #[serde(default = "default_log_limit")]
    pub request_log_limit: usize,
}

fn default_log_limit() -> usize {
    1000
}

impl Default for Script {
    fn default() -> Script {
        Script {
            accounts: Vec::new(),
            latency_ms: 0,
            device: DeviceScript::default(),
            request_log_limit: default_log_limit(),
        }
    }
}

impl Script {
    /// `n` accounts named `acct-a`, `acct-b`, ... (`acct-26`, ... past the alphabet),
    /// each answering "hello from <id>" by default.
    pub fn default_accounts(n: usize) -> Script {
        let accounts = (0..n)
            .map(|i| AccountScript::new(&account_name(i)))
            .collect();
        Script {
            accounts,
            ..Script::default()
        }
    }

    /// Parses a script from its JSON text.
    pub fn from_json(text: &str) -> Result<Script, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Adds an account (builder style).
    pub fn with_account(mut self, account: AccountScript) -> Script {
        self.accounts.push(account);
        self
    }

    /// Sets the delay before every `/codex/responses` answer (builder style).
    pub fn with_latency_ms(mut self, latency_ms: u64) -> Script {
        self.latency_ms = latency_ms;
        self
    }

    /// Mutable access to one account by id, for tweaking a `default_accounts` script.
    pub fn account_mut(&mut self, account_id: &str) -> Option<&mut AccountScript> {
        self.accounts
            .iter_mut()
            .find(|a| a.account_id == account_id)
    }
}

/// The name `default_accounts` gives account number `i`.
pub fn account_name(i: usize) -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    match LETTERS.get(i) {
        Some(letter) => format!("acct-{}", *letter as char),
        None => format!("acct-{i}"),
    }
}

/// One ChatGPT account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountScript {
    /// The `chatgpt_account_id`; also the value of the `chatgpt-account-id` header.
    pub account_id: String,
    /// The `chatgpt_user_id`; defaults to `user-<accountId>`.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Defaults to `<accountId>@example.com`.
    #[serde(default)]
    pub email: Option<String>,
    /// `chatgpt_plan_type`; defaults to `plus`.
    #[serde(default = "default_plan")]
    pub plan: String,
    /// Rate-limit windows reported in headers and by the usage endpoints.
    #[serde(default)]
    pub usage: Usage,
    /// Queue of behaviors for `/codex/responses`, one popped per request.
    #[serde(default)]
    pub behaviors: Vec<Behavior>,
    /// What answers once the queue is empty; defaults to `ok` with "hello from <accountId>".
    #[serde(default)]
    pub default: Option<Behavior>,
    /// Lifetime of minted access tokens; an expired token gets 401 like a revoked one.
    #[serde(default = "default_ttl")]
    pub access_token_ttl_seconds: u64,
    /// Queue of behaviors for `/oauth/token` calls that concern this account.
    #[serde(default)]
    pub token_behaviors: Vec<TokenBehavior>,
    /// How the usage endpoints answer for this account.
    #[serde(default)]
    pub usage_endpoint: UsageEndpointScript,
    /// Per-model limit families besides the main `codex` windows (e.g. Spark's
    /// `codex_bengalfox`).
    #[serde(default)]
    pub families: Vec<FamilyScript>,
    /// Purchased credits: reported in the usage payload and headers, and they pay for
    /// requests past a spent window.
    #[serde(default)]
    pub credits: Credits,
    /// How many banked rate-limit resets `/wham/rate-limit-reset-credits` offers.
    #[serde(default)]
    pub banked_resets: u32,
    /// `rate_limit_reached_type.type` in the usage payload (e.g.
    /// `workspace_member_credits_depleted`); when unset it is `rate_limit_reached` while a
    /// main window is spent, else null.
    #[serde(default)]
    pub rate_limit_reached_type: Option<String>,
    /// The real backend's quirk: a request for a family's model gets that family's numbers
    /// in the plain `x-codex-primary-*`/`secondary-*` headers.
    #[serde(default)]
    pub family_in_plain_headers: bool,
    /// Refuse a request whose family has a spent window with the real 429 (unless credits
    /// pay for it). A queued behavior is always answered as scripted.
    #[serde(default = "default_true")]
    pub enforce_limits: bool,
    /// `x-codex-promo-message` on every model reply.
    #[serde(default)]
    pub promo_message: Option<String>,
    /// How `/codex/responses` checks the reasoning and compaction ciphertext in `input`.
    #[serde(default)]
    pub encrypted_content: EncryptedContentCheck,
    /// An account-level 401 code (`account_deactivated`, `token_revoked`, `missing_scope`):
    /// while set, every `/codex/responses` request that passes auth gets that 401, however
    /// fresh its token.
    #[serde(default)]
    pub deactivated: Option<String>,
}

fn default_plan() -> String {
    "plus".to_string()
}

fn default_ttl() -> u64 {
    3600
}

impl AccountScript {
    /// An account with every field at its default.
    pub fn new(account_id: &str) -> AccountScript {
        AccountScript {
            account_id: account_id.to_string(),
            user_id: None,
            email: None,
            plan: default_plan(),
            usage: Usage::default(),
            behaviors: Vec::new(),
            default: None,
            access_token_ttl_seconds: default_ttl(),
            token_behaviors: Vec::new(),
            usage_endpoint: UsageEndpointScript::default(),
            families: Vec::new(),
            credits: Credits::default(),
            banked_resets: 0,
            rate_limit_reached_type: None,
            family_in_plain_headers: false,
            enforce_limits: true,
            promo_message: None,
            encrypted_content: EncryptedContentCheck::default(),
            deactivated: None,
        }
    }

    pub fn with_usage(mut self, usage: Usage) -> AccountScript {
        self.usage = usage;
        self
    }

    pub fn with_behaviors(mut self, behaviors: Vec<Behavior>) -> AccountScript {
        self.behaviors = behaviors;
        self
    }

    pub fn with_default(mut self, behavior: Behavior) -> AccountScript {
        self.default = Some(behavior);
        self
    }

    pub fn with_plan(mut self, plan: &str) -> AccountScript {
        self.plan = plan.to_string();
        self
    }

    pub fn with_email(mut self, email: &str) -> AccountScript {
        self.email = Some(email.to_string());
        self
    }

    pub fn with_token_behaviors(mut self, behaviors: Vec<TokenBehavior>) -> AccountScript {
        self.token_behaviors = behaviors;
        self
    }

    pub fn with_access_token_ttl_seconds(mut self, seconds: u64) -> AccountScript {
        self.access_token_ttl_seconds = seconds;
        self
    }

    pub fn with_usage_endpoint(mut self, usage_endpoint: UsageEndpointScript) -> AccountScript {
        self.usage_endpoint = usage_endpoint;
        self
    }

    pub fn with_encrypted_content(mut self, check: EncryptedContentCheck) -> AccountScript {
        self.encrypted_content = check;
        self
    }

    /// Starts the account deactivated with this 401 code.
    pub fn with_deactivated(mut self, code: &str) -> AccountScript {
        self.deactivated = Some(code.to_string());
        self
    }

    /// The user id after defaults.
    pub fn user_id(&self) -> String {
        self.user_id
            .clone()
            .unwrap_or_else(|| format!("user-{}", self.account_id))
    }

    /// The email after defaults.
    pub fn email(&self) -> String {
        self.email
            .clone()
            .unwrap_or_else(|| format!("{}@example.com", self.account_id))
    }
}

/// The account's rate-limit windows. A missing window takes its default (5 h primary,
/// weekly secondary, both at 0%); an explicit `null` means the account has no such window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    #[serde(default = "five_hour_window")]
    pub primary: Option<Window>,
    #[serde(default = "weekly_window")]
    pub secondary: Option<Window>,
}

impl Default for Usage {
    fn default() -> Usage {
        Usage {
            primary: five_hour_window(),
            secondary: weekly_window(),
        }
    }
}

impl Usage {
    /// Both default windows at the given percentages.
    pub fn percent(primary: f64, secondary: f64) -> Usage {
        Usage {
            primary: Some(Window::five_hour(primary)),
            secondary: Some(Window::weekly(secondary)),
        }
    }

    /// An account that only reports a weekly window, as `primary` (secondary null).
    pub fn weekly_only(used_percent: f64) -> Usage {
        Usage {
            primary: Some(Window::weekly(used_percent)),
            secondary: None,
        }
    }
}

fn five_hour_window() -> Option<Window> {
    Some(Window::five_hour(0.0))
}

fn weekly_window() -> Option<Window> {
    Some(Window::weekly(0.0))
}

/// One rate-limit window. `resetAfterSeconds` counts from the moment the usage is set
/// (sim start, `set_usage`, or the admin call); the sim then reports a fixed `reset_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    #[serde(default)]
    pub used_percent: f64,
    /// 0 (or left out) makes a "no data" window: no length and no reset.
    #[serde(default)]
    pub window_minutes: u64,
    #[serde(default)]
    pub reset_after_seconds: u64,
}

impl Window {
    pub fn five_hour(used_percent: f64) -> Window {
        Window {
            used_percent,
            window_minutes: 300,
            reset_after_seconds: 5 * 3600,
        }
    }

    pub fn weekly(used_percent: f64) -> Window {
        Window {
            used_percent,
            window_minutes: 10080,
            reset_after_seconds: 7 * 24 * 3600,
        }
    }
}

/// How `/codex/responses` answers one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Behavior {
    /// 200 SSE with the full event sequence of a text answer.
    Ok {
        /// The answer; defaults to "hello from <accountId>".
        #[serde(default)]
        text: Option<String>,
        /// How many `response.output_text.delta` events carry the text.
        #[serde(default = "default_deltas")]
        deltas: u32,
        /// Pause between two deltas.
        #[serde(default)]
        delay_ms: u64,
        /// Pause before the first delta (after the headers and `response.created`).
        #[serde(default)]
        first_delay_ms: u64,
        /// The events before the output; None sends `response.created` and
        /// `response.in_progress`.
        #[serde(default)]
        opening: Option<Vec<String>>,
        /// Summary text of the reasoning item (streamed as one summary part); None leaves
        /// `summary` empty.
        #[serde(default)]
        reasoning_summary: Option<String>,
    },
    /// 200 SSE of ~16 KiB deltas until about `bytes` bytes of SSE were sent.
    Big { bytes: u64 },
    /// 429 `usage_limit_reached`.
    UsageLimit {
        #[serde(default = "default_resets_in")]
        resets_in_seconds: u64,
    },
    /// 429 `usage_not_included`.
    UsageNotIncluded,
    /// 429 `rate_limit_exceeded` with `Retry-After`.
    RateLimited {
        #[serde(default = "default_retry_after")]
        retry_after_seconds: u64,
        /// How the delay is announced in the headers.
        #[serde(default)]
        retry_after_format: RetryAfterFormat,
    },
    /// 200 SSE that fails in-stream.
    StreamError {
        code: String,
        #[serde(default)]
        style: StreamErrorStyle,
        /// Send `response.created` and `response.in_progress` before the failure.
        #[serde(default = "default_true")]
        after_created: bool,
        #[serde(default)]
        message: Option<String>,
        /// The events before the failure; when set, it replaces `afterCreated`.
        #[serde(default)]
        opening: Option<Vec<String>>,
        /// `error.type` of the `nested` style; defaults by code.
        #[serde(default)]
        error_type: Option<String>,
        /// Adds `resets_at` (now + N) and `resets_in_seconds` to the error object.
        #[serde(default)]
        resets_in_seconds: Option<u64>,
        /// More fields for the error object (they win over the generated ones).
        #[serde(default)]
        extra: Map<String, Value>,
    },
    /// 401 as for a revoked token.
    Unauthorized,
    /// A 5xx (or any status) with a JSON error body.
    ServerError {
        #[serde(default = "default_server_status")]
        status: u16,
        #[serde(default)]
        retry_after_seconds: Option<u64>,
    },
    /// 200 SSE: created, output_item.added, one delta, then the connection is reset.
    CutAfterFirstDelta {
        #[serde(default)]
        text: Option<String>,
    },
    /// Never answers, not even headers, until the client goes away.
    HangBeforeHeaders,
    /// 200 headers, then nothing until the client goes away. `hang` is an alias.
    #[serde(alias = "hang")]
    HangAfterHeaders,
    /// 400 (or `status`) `{"error":{"message","type","param","code"}}`: the request's own
    /// fault (`code` null, e.g. "Unsupported parameter: ..."), or a refusal by code
    /// (`cyber_policy`, `content_policy_violation`, `invalid_prompt`,
    /// `context_length_exceeded`).
    InvalidRequest {
        #[serde(default = "default_bad_request_status")]
        status: u16,
        /// Defaults to the code's usual message, or "Unsupported parameter: temperature".
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        param: Option<String>,
        /// Defaults to `invalid_request_error`.
        #[serde(default)]
        error_type: Option<String>,
    },
    /// `{"detail": <detail>}` with `status` (400; "Instructions are required").
    Detail {
        #[serde(default = "default_bad_request_status")]
        status: u16,
        #[serde(default = "default_detail")]
        detail: Value,
    },
    /// 402 `{"detail":{"code":"deactivated_workspace"}}`.
    DeactivatedWorkspace,
    /// 403 HTML challenge page from the CDN (`content-type: text/html`).
    CloudflareChallenge,
    /// 403 JSON naming an authorization problem, with the `x-openai-authorization-error`
    /// header and the base64 `x-error-json` header `{"error":{"code","message"}}`.
    Forbidden {
        #[serde(default = "default_authorization_error")]
        authorization_error: String,
        #[serde(default = "default_forbidden_code")]
        error_code: String,
        #[serde(default)]
        message: Option<String>,
    },
    /// 503 (or `status`) `server_is_overloaded` or `slow_down`.
    Overloaded {
        #[serde(default = "default_overloaded_code")]
        code: String,
        #[serde(default = "default_overloaded_status")]
        status: u16,
        #[serde(default)]
        retry_after_seconds: Option<u64>,
        #[serde(default)]
        retry_after_format: RetryAfterFormat,
    },
    /// 200 SSE headers and the opening events, then silence until the client leaves.
    HangAfterCreated {
        /// None sends `response.created` and `response.in_progress`.
        #[serde(default)]
        opening: Option<Vec<String>>,
    },
    /// Any status with a JSON `body` (or a raw `text` body, or none) and extra headers.
    HttpError {
        status: u16,
        #[serde(default)]
        body: Option<Value>,
        /// A raw body, sent instead of `body`.
        #[serde(default)]
        text: Option<String>,
        /// The content type of `text` (default `text/plain; charset=utf-8`).
        #[serde(default)]
        content_type: Option<String>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
}

fn default_deltas() -> u32 {
    3
}

fn default_resets_in() -> u64 {
    3600
}

fn default_retry_after() -> u64 {
    5
}

fn default_server_status() -> u16 {
    500
}

fn default_true() -> bool {
    true
}

fn default_bad_request_status() -> u16 {
    400
}

fn default_detail() -> Value {
    Value::from("Instructions are required")
}

fn default_authorization_error() -> String {
    "verification_required".to_string()
}

fn default_forbidden_code() -> String {
    "identity_verification_required".to_string()
}

fn default_overloaded_code() -> String {
    "server_is_overloaded".to_string()
}

fn default_overloaded_status() -> u16 {
    503
}

impl Behavior {
    /// `ok` with the given text and defaults otherwise.
    pub fn ok(text: &str) -> Behavior {
        Behavior::Ok {
            text: Some(text.to_string()),
            deltas: default_deltas(),
            delay_ms: 0,
            first_delay_ms: 0,
            opening: None,
            reasoning_summary: None,
        }
    }

    /// `ok` with text split into `deltas` pieces, `delay_ms` apart.
    pub fn ok_slow(text: &str, deltas: u32, delay_ms: u64) -> Behavior {
        Behavior::Ok {
            text: Some(text.to_string()),
            deltas,
            delay_ms,
            first_delay_ms: 0,
            opening: None,
            reasoning_summary: None,
        }
    }

    pub fn usage_limit(resets_in_seconds: u64) -> Behavior {
        Behavior::UsageLimit { resets_in_seconds }
    }

    pub fn rate_limited(retry_after_seconds: u64) -> Behavior {
        Behavior::RateLimited {
            retry_after_seconds,
            retry_after_format: RetryAfterFormat::Seconds,
        }
    }

    /// `rateLimited` with the delay announced as `format` says.
    pub fn rate_limited_as(retry_after_seconds: u64, format: RetryAfterFormat) -> Behavior {
        Behavior::RateLimited {
            retry_after_seconds,
            retry_after_format: format,
        }
    }

    pub fn server_error(status: u16) -> Behavior {
        Behavior::ServerError {
            status,
            retry_after_seconds: None,
        }
    }

    pub fn stream_error(code: &str, style: StreamErrorStyle) -> Behavior {
        Behavior::StreamError {
            code: code.to_string(),
            style,
            after_created: true,
            message: None,
            opening: None,
            error_type: None,
            resets_in_seconds: None,
            extra: Map::new(),
        }
    }

    /// 400 `invalid_request_error` with this message and `code: null`.
    pub fn invalid_request(message: &str) -> Behavior {
        Behavior::InvalidRequest {
            status: default_bad_request_status(),
            message: Some(message.to_string()),
            code: None,
            param: None,
            error_type: None,
        }
    }

    /// 400 `invalid_request_error` with this code and its usual message
    /// (`cyber_policy`, `content_policy_violation`, `invalid_prompt`,
    /// `context_length_exceeded`, ...).
    pub fn invalid_request_code(code: &str) -> Behavior {
        Behavior::InvalidRequest {
            status: default_bad_request_status(),
            message: None,
            code: Some(code.to_string()),
            param: None,
            error_type: None,
        }
    }

    /// 400 `{"detail": "Instructions are required"}`.
    pub fn instructions_required() -> Behavior {
        Behavior::Detail {
            status: default_bad_request_status(),
            detail: default_detail(),
        }
    }

    /// 403 JSON with the default authorization-error headers.
    pub fn forbidden() -> Behavior {
        Behavior::Forbidden {
            authorization_error: default_authorization_error(),
            error_code: default_forbidden_code(),
            message: None,
        }
    }

    /// 503 with this code (`server_is_overloaded` or `slow_down`).
    pub fn overloaded(code: &str) -> Behavior {
        Behavior::Overloaded {
            code: code.to_string(),
            status: default_overloaded_status(),
            retry_after_seconds: None,
            retry_after_format: RetryAfterFormat::Seconds,
        }
    }

    /// 200, `response.created` and `response.in_progress`, then silence.
    pub fn hang_after_created() -> Behavior {
        Behavior::HangAfterCreated { opening: None }
    }

    /// `status` with this JSON body and no extra headers.
    pub fn http_error(status: u16, body: Value) -> Behavior {
        Behavior::HttpError {
            status,
            body: Some(body),
            text: None,
            content_type: None,
            headers: BTreeMap::new(),
        }
    }

    /// Sets the opening events of `ok`, `streamError` or `hangAfterCreated`; other kinds
    /// come back unchanged.
    pub fn with_opening(mut self, events: &[&str]) -> Behavior {
        let events = events.iter().map(|e| e.to_string()).collect();
        match &mut self {
            Behavior::Ok { opening, .. }
            | Behavior::StreamError { opening, .. }
            | Behavior::HangAfterCreated { opening } => *opening = Some(events),
            _ => {}
        }
        self
    }

    /// Sets the reasoning summary text of an `ok`; other kinds come back unchanged.
    pub fn with_reasoning_summary(mut self, summary: &str) -> Behavior {
        if let Behavior::Ok {
            reasoning_summary, ..
        } = &mut self
        {
            *reasoning_summary = Some(summary.to_string());
        }
        self
    }

    /// Adds fields to a `streamError`'s error object; other kinds come back unchanged.
    pub fn with_error_fields(mut self, fields: Map<String, Value>) -> Behavior {
        if let Behavior::StreamError { extra, .. } = &mut self {
            extra.extend(fields);
        }
        self
    }

    /// The `kind` tag, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Behavior::Ok { .. } => "ok",
            Behavior::Big { .. } => "big",
            Behavior::UsageLimit { .. } => "usageLimit",
            Behavior::UsageNotIncluded => "usageNotIncluded",
            Behavior::RateLimited { .. } => "rateLimited",
            Behavior::StreamError { .. } => "streamError",
            Behavior::Unauthorized => "unauthorized",
            Behavior::ServerError { .. } => "serverError",
            Behavior::CutAfterFirstDelta { .. } => "cutAfterFirstDelta",
            Behavior::HangBeforeHeaders => "hangBeforeHeaders",
            Behavior::HangAfterHeaders => "hangAfterHeaders",
            Behavior::InvalidRequest { .. } => "invalidRequest",
            Behavior::Detail { .. } => "detail",
            Behavior::DeactivatedWorkspace => "deactivatedWorkspace",
            Behavior::CloudflareChallenge => "cloudflareChallenge",
            Behavior::Forbidden { .. } => "forbidden",
            Behavior::Overloaded { .. } => "overloaded",
            Behavior::HangAfterCreated { .. } => "hangAfterCreated",
            Behavior::HttpError { .. } => "httpError",
        }
    }
}

/// Which in-stream failure shape `streamError` sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamErrorStyle {
    /// `{"type":"error","code":...}`
    #[default]
    Error,
    /// `{"type":"response.failed","response":{"error":{"code":...}}}`
    Failed,
    /// `{"type":"error","error":{"type":...,"code":...,"message":...}}`
    Nested,
}

/// How a throttled reply announces its delay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RetryAfterFormat {
    /// `Retry-After: N`
    #[default]
    Seconds,
    /// `Retry-After: <IMF-fixdate now + N>`
    HttpDate,
    /// `retry-after-ms: N * 1000`
    Millis,
    /// No header (the message still says "try again in Ns" where it did).
    Omitted,
}

/// How `/codex/responses` treats reasoning and compaction items replayed in `input`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptedContentCheck {
    /// Refuse ciphertext this account did not mint (on by default, as the real backend).
    #[serde(default = "default_true")]
    pub verify: bool,
    /// Send `"code": null` instead of `"invalid_encrypted_content"` (same message).
    #[serde(default)]
    pub null_code: bool,
}

impl Default for EncryptedContentCheck {
    fn default() -> EncryptedContentCheck {
        EncryptedContentCheck {
            verify: true,
            null_code: false,
        }
    }
}

/// How one `/oauth/token` call for an account goes wrong (or is slowed down).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum TokenBehavior {
    /// Answer with this status and a JSON error body; nothing rotates.
    ServerError {
        #[serde(default = "default_server_status")]
        status: u16,
    },
    /// Never answer until the client goes away.
    Hang,
    /// 200 with a body that is not valid JSON.
    Malformed,
    /// 401 `refresh_token_expired`.
    Expired,
    /// 401 `refresh_token_invalidated`.
    Invalidated,
    /// 401 `refresh_token_reused`, as if another process had won the race.
    Reused,
    /// 400 `invalid_grant`.
    InvalidGrant,
    /// Wait, then answer normally.
    DelayMs { ms: u64 },
    /// 401 `refresh_token_exhausted`.
    Exhausted,
    /// 401 `token_expired`.
    TokenExpired,
    /// `status` (401) with `code` at the place `codeAt` names; nothing rotates.
    Refuse {
        #[serde(default = "default_refuse_status")]
        status: u16,
        code: String,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        code_at: CodePlacement,
    },
}

fn default_refuse_status() -> u16 {
    401
}

impl TokenBehavior {
    /// `refuse` with the code's usual message.
    pub fn refuse(status: u16, code: &str, code_at: CodePlacement) -> TokenBehavior {
        TokenBehavior::Refuse {
            status,
            code: code.to_string(),
            message: None,
            code_at,
        }
    }
}

/// Where a token-endpoint failure puts its error code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CodePlacement {
    /// `{"error":{"code","message","type"},"error_description","code"}`: every place at
    /// once, the shape of the sim's own refresh failures.
    #[default]
    All,
    /// Only `{"error":{"code","message","type"}}`.
    ErrorObject,
    /// Only `{"error":"<code>","error_description"}`.
    ErrorString,
    /// Only `{"code","message"}` at the top level.
    TopLevel,
}

/// How the usage endpoints answer for one account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageEndpointScript {
    /// Delay before either usage endpoint answers.
    #[serde(default)]
    pub delay_ms: u64,
    /// Overrides `delayMs` for `/wham/usage`.
    #[serde(default)]
    pub wham_delay_ms: Option<u64>,
    /// Overrides `delayMs` for `/codex/usage`.
    #[serde(default)]
    pub codex_delay_ms: Option<u64>,
    /// Status for `/wham/usage`; anything but 200 answers with an error body.
    #[serde(default)]
    pub wham_status: Option<u16>,
    /// Status for `/codex/usage`.
    #[serde(default)]
    pub codex_status: Option<u16>,
    /// When the CDN in front answers usage and banked-reset calls with its HTML challenge.
    #[serde(default)]
    pub cdn_challenge: CdnChallenge,
}

/// How the device-code login behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceScript {
    /// The `interval` handed out (as a string, like the real server). The real one is 5.
    #[serde(default = "default_interval")]
    pub interval_seconds: u64,
    /// Approve every device login on its Nth poll (1 = the first poll succeeds).
    #[serde(default)]
    pub auto_approve_after_polls: Option<u32>,
    /// The account an auto-approved login signs in as; defaults to the first account.
    #[serde(default)]
    pub account_id: Option<String>,
}

fn default_interval() -> u64 {
    1
}

impl Default for DeviceScript {
    fn default() -> DeviceScript {
        DeviceScript {
            interval_seconds: default_interval(),
            auto_approve_after_polls: None,
            account_id: None,
        }
    }
}

impl AccountScript {
    pub fn with_families(mut self, families: Vec<FamilyScript>) -> AccountScript {
        self.families = families;
        self
    }

    pub fn with_family(mut self, family: FamilyScript) -> AccountScript {
        self.families.push(family);
        self
    }

    pub fn with_credits(mut self, credits: Credits) -> AccountScript {
        self.credits = credits;
        self
    }

    pub fn with_banked_resets(mut self, count: u32) -> AccountScript {
        self.banked_resets = count;
        self
    }

    pub fn with_rate_limit_reached_type(mut self, kind: &str) -> AccountScript {
        self.rate_limit_reached_type = Some(kind.to_string());
        self
    }

    pub fn with_family_in_plain_headers(mut self, on: bool) -> AccountScript {
        self.family_in_plain_headers = on;
        self
    }

    pub fn with_enforce_limits(mut self, on: bool) -> AccountScript {
        self.enforce_limits = on;
        self
    }

    pub fn with_promo_message(mut self, message: &str) -> AccountScript {
        self.promo_message = Some(message.to_string());
        self
    }
}

/// The windows of each plan, as the real backend reports them.
impl Usage {
    /// Plus: 5 hours + weekly (the same as `percent`).
    pub fn plus(five_hour: f64, weekly: f64) -> Usage {
        Usage::percent(five_hour, weekly)
    }

    /// Pro: weekly only, reported as the primary window (the same as `weekly_only`).
    pub fn pro(weekly: f64) -> Usage {
        Usage::weekly_only(weekly)
    }

    /// Free: a 30-day window plus a "no data" secondary.
    pub fn free(monthly: f64) -> Usage {
        Usage {
            primary: Some(Window::monthly(monthly)),
            secondary: Some(Window::no_data()),
        }
    }
}

impl Window {
    /// The 30-day (2592000 s) window of free accounts; paid plans have shown it as a
    /// monthly meter too.
    pub fn monthly(used_percent: f64) -> Window {
        Window {
            used_percent,
            window_minutes: 30 * 24 * 60,
            reset_after_seconds: 30 * 24 * 3600,
        }
    }

    /// A window the backend has no data for: 0%, no length, no reset.
    pub fn no_data() -> Window {
        Window {
            used_percent: 0.0,
            window_minutes: 0,
            reset_after_seconds: 0,
        }
    }
}

/// A per-model limit family: its own windows, counted by requests for its models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilyScript {
    /// The limit id (`metered_feature`), e.g. `codex_bengalfox`; its headers are
    /// `x-<id with _ as ->-...`. Lowercase letters, digits, `_` and `-`; not `codex`.
    pub id: String,
    /// The display name (`limit_name`, `x-<prefix>-limit-name`); defaults to the id.
    #[serde(default)]
    pub limit_name: Option<String>,
    /// Request models (the body's `model`, any case) that count against this family.
    #[serde(default)]
    pub models: Vec<String>,
    /// The family's windows, with the same defaults as an account's `usage`.
    #[serde(default)]
    pub usage: Usage,
}

impl FamilyScript {
    /// A family at 0% in both default windows.
    pub fn new(id: &str, limit_name: &str, models: &[&str]) -> FamilyScript {
        FamilyScript {
            id: id.to_string(),
            limit_name: Some(limit_name.to_string()),
            models: models.iter().map(|m| m.to_string()).collect(),
            usage: Usage::default(),
        }
    }

    pub fn with_usage(mut self, usage: Usage) -> FamilyScript {
        self.usage = usage;
        self
    }

    /// The display name after defaults.
    pub fn limit_name(&self) -> &str {
        self.limit_name.as_deref().unwrap_or(&self.id)
    }
}

/// Purchased credits. With `unlimited`, or `hasCredits` and a positive balance, a request
/// past a spent window is served and `costPerRequest` comes off the balance (not when
/// unlimited). `hasCredits` turns false once the balance is used up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credits {
    #[serde(default)]
    pub has_credits: bool,
    #[serde(default)]
    pub unlimited: bool,
    #[serde(default)]
    pub balance: f64,
    #[serde(default = "default_credit_cost")]
    pub cost_per_request: f64,
}

fn default_credit_cost() -> f64 {
    1.0
}

impl Default for Credits {
    fn default() -> Credits {
        Credits {
            has_credits: false,
            unlimited: false,
            balance: 0.0,
            cost_per_request: default_credit_cost(),
        }
    }
}

impl Credits {
    /// A balance that pays for requests past 100%.
    pub fn balance(balance: f64) -> Credits {
        Credits {
            has_credits: balance > 0.0,
            balance,
            ..Credits::default()
        }
    }

    /// Credits that never run out.
    pub fn unlimited() -> Credits {
        Credits {
            has_credits: true,
            unlimited: true,
            ..Credits::default()
        }
    }
}

/// When the CDN in front of the usage endpoints answers with its HTML challenge (403).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CdnChallenge {
    #[default]
    Never,
    Always,
    /// Calls with no User-Agent, or one of a bare HTTP library (curl, reqwest, node, ...).
    WithoutUserAgent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = r#"{ "accounts": [ { "accountId": "acct-a", "userId": "user-a", "email": "a@example.com", "plan": "plus",
            "usage": { "primary": {"usedPercent": 0, "windowMinutes": 300, "resetAfterSeconds": 18000}, "secondary": null },
            "behaviors": [ {"kind": "usageLimit", "resetsInSeconds": 3600}, {"kind": "hang"} ],
            "default": {"kind": "ok", "text": "hello from acct-a", "deltas": 5, "delayMs": 0, "firstDelayMs": 0},
            "accessTokenTtlSeconds": 3600 } ],
          "latencyMs": 50 }"#;
        let script = Script::from_json(text).expect("example parses");
        let account = &script.accounts[0];
        assert_eq!(account.usage.secondary, None);
        assert_eq!(account.behaviors[1], Behavior::HangAfterHeaders);
        assert_eq!(script.latency_ms, 50);
    }

    #[test]
    fn missing_windows_take_defaults() {
        let script = Script::from_json(r#"{"accounts":[{"accountId":"x"}]}"#).expect("parses");
        assert_eq!(script.accounts[0].usage, Usage::default());
        assert_eq!(script.accounts[0].email(), "x@example.com");
    }

    #[test]
    fn default_accounts_are_named_by_letter() {
        let script = Script::default_accounts(3);
        let ids: Vec<_> = script
            .accounts
            .iter()
            .map(|a| a.account_id.as_str())
            .collect();
        assert_eq!(ids, ["acct-a", "acct-b", "acct-c"]);
    }
}
