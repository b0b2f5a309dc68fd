//! What an upstream failure means (the table in codex-backend.md).
//!
//! A failure comes as an error status or as an error event early in a 200 stream, in any of the
//! backend's shapes; [`ErrorInfo::read`] reads them all, and [`Failure`] says what they mean:
//! whether the request goes to pi as it is, is tried again here, or moves on, and what happens to
//! the account ([`Failure::account_change`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde_json::Value;

use crate::domain::account::{AccountState, Attention, AttentionKind, Change, FamilyLimit};
use crate::domain::text;
use crate::domain::usage::{Observation, reset_time, windows};

/// How long a usage-limited account rests when neither the body nor the headers say.
pub const USAGE_LIMIT_FALLBACK_MS: u64 = 15 * 60 * 1000;
/// How long a throttled account rests when nothing says how long.
pub const THROTTLE_FALLBACK_MS: u64 = 30 * 1000;
/// Throttling is short by nature; a longer hint is not believed.
const THROTTLE_MAX_MS: u64 = 10 * 60 * 1000;
/// Backend trouble is tried once more on the same account after this pause...
const BACKEND_RETRY_PAUSE_MS: u64 = 250;
/// ...or after the backend's own `Retry-After`, if no longer than this; a longer one moves the
/// request to the next account at once.
const BACKEND_RETRY_MAX_WAIT_MS: u64 = 2_000;
/// A stalled account sits out this long, so new sessions go elsewhere while it recovers.
pub const STALL_COOLDOWN_MS: u64 = 2 * 60 * 1000;
/// A CDN challenge is about this path and agent at this moment, not the account: a short rest.
pub const CDN_COOLDOWN_MS: u64 = 60 * 1000;
/// Server text kept in an account's state is cut here.
const MAX_DETAIL_CHARS: usize = 200;

#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The account's quota is spent until the given time (when known).
    UsageLimit { until_ms: Option<u64> },
    /// The plan has no Codex at all.
    NotIncluded,
    /// A short-lived limit, often an incident with quota left.
    Throttled { for_ms: Option<u64> },
    /// A 401: the token may just be stale; the proxy refreshes once before believing it.
    Unauthorized,
    /// The refresh token is dead: only a new login helps (`auth` has marked the account).
    LoggedOut { reason: String },
    /// Something about the account itself is wrong until someone fixes it (a 401 that survives
    /// a refresh, a deactivated workspace, a refusal naming an authorization problem).
    NeedsAttention(AttentionKind, Option<String>),
    /// The CDN in front of the backend answered with a challenge page.
    CdnChallenge,
    /// The model is at capacity for everyone; other accounts rarely help.
    Overloaded { code: String },
    /// No headers, or no byte before the first output, within the deadline.
    Stalled { what: String },
    /// The backend failed (5xx, no connection, a stream that ended before any output);
    /// `retry_after_ms` is its `Retry-After`, if it sent one.
    Backend {
        what: String,
        retry_after_ms: Option<u64>,
    },
    /// The request's own fault (bad parameter, policy flag, context too long): every account
    /// would answer the same, and replaying a flagged prompt flags them all.
    RequestFault { code: Option<String> },
    /// The input holds reasoning ciphertext another account minted.
    ForeignCiphertext,
}

/// What the proxy does with a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The reply goes to pi as it came; nothing else is tried.
    PassToPi,
    /// One more exchange with the same account after a pause.
    RetryHere { after_ms: u64 },
    /// Remove the foreign ciphertext and send once more to the same account.
    StripAndRetry,
    /// Another account gets the request.
    MoveOn,
}

impl Failure {
    /// Backend trouble with no word on when to come back.
    pub fn backend(what: impl Into<String>) -> Self {
        Self::Backend {
            what: what.into(),
            retry_after_ms: None,
        }
    }

    pub fn action(&self) -> Action {
        match self {
            Self::RequestFault { .. } => Action::PassToPi,
            Self::ForeignCiphertext => Action::StripAndRetry,
            // Often a blip, and the session's prompt cache is on this account.
            Self::Backend { retry_after_ms, .. } => match retry_after_ms {
                None => Action::RetryHere {
                    after_ms: BACKEND_RETRY_PAUSE_MS,
                },
                Some(ms) if *ms <= BACKEND_RETRY_MAX_WAIT_MS => Action::RetryHere {
                    after_ms: (*ms).max(BACKEND_RETRY_PAUSE_MS),
                },
                Some(_) => Action::MoveOn,
            },
            _ => Action::MoveOn,
        }
    }

    /// Reads an error status: what it means for the request and the account.
    pub fn from_status(status: StatusCode, headers: &HeaderMap, body: &[u8], now_ms: u64) -> Self {
        if status == StatusCode::UNAUTHORIZED {
            // Whatever it says, a refresh comes first (see `refused_after_refresh`).
            return Self::Unauthorized;
        }
        let payload: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let info = ErrorInfo::read(&payload);
        if let Some(failure) = info.by_code(now_ms) {
            return match failure {
                Self::Throttled { for_ms } => Self::Throttled {
                    for_ms: retry_after(headers, now_ms).or(for_ms),
                },
                other => other,
            };
        }
        match status.as_u16() {
            400 if info.says_unverified() => Self::ForeignCiphertext,
            402 => Self::NeedsAttention(AttentionKind::WorkspaceDeactivated, info.detail()),
            403 if is_html(headers, body) => Self::CdnChallenge,
            403 => Self::NeedsAttention(
                AttentionKind::Forbidden,
                authorization_error(headers).or_else(|| info.detail()),
            ),
            429 => Self::Throttled {
                for_ms: retry_after(headers, now_ms),
            },
            503 => Self::Overloaded {
                code: "HTTP 503".into(),
            },
            500..=599 => Self::Backend {
                what: format!("HTTP {}", status.as_u16()),
                retry_after_ms: retry_after(headers, now_ms),
            },
            _ => Self::RequestFault {
                code: info.code.map(str::to_owned),
            },
        }
    }

    /// A 401 that came again after the token was refreshed: the account itself is refused.
    pub fn refused_after_refresh(body: &[u8]) -> Self {
        let payload: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let info = ErrorInfo::read(&payload);
        let kind = match info.code.or(info.kind) {
            Some("account_deactivated") => AttentionKind::Deactivated,
            Some("token_revoked") => AttentionKind::Revoked,
            Some("missing_scope") => AttentionKind::MissingScope,
            _ => AttentionKind::TokenRefused,
        };
        Self::NeedsAttention(kind, info.detail())
    }

    /// Reads an event of the stream; `None` for an event that is not a failure.
    pub fn from_event(event: &Value, now_ms: u64) -> Option<Self> {
        let info = match event["type"].as_str()? {
            "error" => ErrorInfo::read(event),
            "response.failed" => ErrorInfo::read(&event["response"]),
            _ => return None,
        };
        Some(info.by_code(now_ms).unwrap_or_else(|| {
            if info.says_unverified() {
                return Self::ForeignCiphertext;
            }
            Self::backend(format!(
                "stream error {}",
                info.code.or(info.kind).unwrap_or("without a code")
            ))
        }))
    }

    /// The limit a usage limit puts on one family of the account: the family the reply names
    /// (`x-codex-active-limit`), else the one the request counted against (`family`). `seen` is
    /// what the same reply's headers said about usage: a limit without a reset time in its
    /// body rests until the family's spent window resets.
    pub fn family_limit(
        &self,
        family: &str,
        seen: Option<&Observation>,
        now_ms: u64,
    ) -> Option<FamilyLimit> {
        let Self::UsageLimit { until_ms } = self else {
            return None;
        };
        let family = seen
            .and_then(|s| s.active_family.as_deref())
            .unwrap_or(family);
        let reported = seen.map(|s| s.usage.windows_of(family)).unwrap_or_default();
        let until_ms = until_ms
            .or_else(|| windows::spent_until(reported, now_ms))
            .or_else(|| reported.iter().filter_map(|w| w.reset_ahead(now_ms)).min())
            .unwrap_or(now_ms + USAGE_LIMIT_FALLBACK_MS);
        Some(FamilyLimit {
            family: family.to_owned(),
            until_ms,
            since_ms: now_ms,
            used_percent: windows::most_used(reported, now_ms),
            reason: text::BENCH_USAGE_LIMIT.into(),
        })
    }

    /// What the account learns from this failure, if anything. A usage limit is not here: it
    /// rests one family ([`Failure::family_limit`]).
    pub fn account_change(&self, now_ms: u64) -> Option<Change> {
        let bench = |until_ms: u64, reason: &str| {
            Some(Change::State(AccountState::Benched {
                until_ms,
                reason: reason.into(),
            }))
        };
        match self {
            Self::Throttled { for_ms } => bench(
                now_ms
                    + for_ms
                        .unwrap_or(THROTTLE_FALLBACK_MS)
                        .clamp(1000, THROTTLE_MAX_MS),
                text::BENCH_THROTTLED,
            ),
            Self::NotIncluded => Some(Change::State(AccountState::Disabled {
                reason: text::DISABLED_NO_CODEX.into(),
            })),
            Self::NeedsAttention(kind, detail) => Some(Change::Attention(Some(Attention {
                kind: *kind,
                detail: detail.clone(),
                since_ms: now_ms,
            }))),
            Self::CdnChallenge => bench(now_ms + CDN_COOLDOWN_MS, text::BENCH_CDN),
            Self::Stalled { .. } => bench(now_ms + STALL_COOLDOWN_MS, text::BENCH_STALLED),
            Self::UsageLimit { .. }
            | Self::Unauthorized
            | Self::LoggedOut { .. }
            | Self::Overloaded { .. }
            | Self::Backend { .. }
            | Self::RequestFault { .. }
            | Self::ForeignCiphertext => None,
        }
    }
}

/// The fields of an error, wherever the backend put them: `{"error": {type, code, message}}`,
/// `{"error": "code"}`, `{"detail": "..."}` or `{"detail": {code, message}}`, a top-level
/// `code`/`message` (stream events), or `response.error` (`response.failed`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorInfo<'a> {
    pub kind: Option<&'a str>,
    pub code: Option<&'a str>,
    pub message: Option<&'a str>,
    /// The object that held them, for fields such as `resets_at`.
    pub fields: Option<&'a Value>,
}

impl<'a> ErrorInfo<'a> {
    pub fn read(value: &'a Value) -> Self {
        let text = |v: &'a Value| v.as_str().filter(|s| !s.is_empty());
        let object = [&value["error"], &value["detail"], value]
            .into_iter()
            .find(|v| {
                ["type", "code", "message"]
                    .iter()
                    .any(|k| v.get(k).is_some())
            });
        let mut info = match object {
            Some(o) => Self {
                kind: text(&o["type"]),
                code: text(&o["code"]),
                message: text(&o["message"]),
                fields: Some(o),
            },
            None => Self::default(),
        };
        if info.code.is_none() {
            info.code = text(&value["error"]);
        }
        if info.message.is_none() {
            info.message = text(&value["detail"]);
        }
        info
    }

    /// The failure a known code (or type) names, whatever status carried it.
    fn by_code(&self, now_ms: u64) -> Option<Failure> {
        let resets_at = || {
            let fields = self.fields?;
            reset_time(
                fields["resets_at"].as_u64(),
                fields["resets_in_seconds"].as_u64(),
                now_ms,
            )
            .filter(|&at| at > now_ms)
        };
        let known = |code: &str| {
            Some(match code {
                "usage_limit_reached" | "insufficient_quota" => Failure::UsageLimit {
                    until_ms: resets_at(),
                },
                "usage_not_included" => Failure::NotIncluded,
                "rate_limit_exceeded" => Failure::Throttled {
                    for_ms: self.message.and_then(try_again_in),
                },
                "server_is_overloaded" | "slow_down" => Failure::Overloaded { code: code.into() },
                "invalid_encrypted_content" => Failure::ForeignCiphertext,
                "context_length_exceeded"
                | "cyber_policy"
                | "content_policy_violation"
                | "invalid_prompt" => Failure::RequestFault {
                    code: Some(code.into()),
                },
                "account_deactivated" | "deactivated_workspace" => Failure::NeedsAttention(
                    if code == "account_deactivated" {
                        AttentionKind::Deactivated
                    } else {
                        AttentionKind::WorkspaceDeactivated
                    },
                    self.detail(),
                ),
                _ => return None,
            })
        };
        self.code
            .and_then(known)
            .or_else(|| self.kind.and_then(known))
    }

    /// `code: null` with only the message: the backend's other shape of a foreign ciphertext.
    fn says_unverified(&self) -> bool {
        self.code.is_none()
            && self
                .message
                .is_some_and(|m| m.contains("could not be verified"))
    }

    /// The backend's message, one line and bounded, to show with an account's state.
    fn detail(&self) -> Option<String> {
        let message = self.message?;
        Some(
            message
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_DETAIL_CHARS)
                .collect(),
        )
    }
}

/// The CDN's challenge is an HTML page; the backend's own errors are JSON.
fn is_html(headers: &HeaderMap, body: &[u8]) -> bool {
    let html_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().contains("text/html"));
    html_type || body.trim_ascii_start().starts_with(b"<")
}

/// The authorization problem a 403 names in its headers: `x-error-json` (base64 of an error
/// body, as codex-rs reads it) for the message, else the `x-openai-authorization-error` code.
fn authorization_error(headers: &HeaderMap) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let from_json = header("x-error-json").and_then(|encoded| {
        let bytes = STANDARD.decode(encoded.trim()).ok()?;
        let value: Value = serde_json::from_slice(&bytes).ok()?;
        let info = ErrorInfo::read(&value);
        info.detail().or_else(|| info.code.map(str::to_owned))
    });
    let detail = from_json.or_else(|| header("x-openai-authorization-error").map(str::to_owned))?;
    Some(
        detail
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_DETAIL_CHARS)
            .collect(),
    )
}

/// How long the backend asks to wait: `retry-after-ms`, else `Retry-After` in seconds or as an
/// HTTP date.
fn retry_after(headers: &HeaderMap, now_ms: u64) -> Option<u64> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let number = |text: &str| {
        text.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    if let Some(ms) = header("retry-after-ms").and_then(number) {
        return Some(ms as u64);
    }
    let text = header(RETRY_AFTER.as_str())?;
    if let Some(seconds) = number(text) {
        return Some((seconds * 1000.0) as u64);
    }
    let at = jiff::fmt::rfc2822::parse(text)
        .ok()?
        .timestamp()
        .as_millisecond();
    Some(u64::try_from(at).ok()?.saturating_sub(now_ms))
}

/// "... try again in 5s", "in 1.5 s", "in 250ms": the wait in milliseconds.
fn try_again_in(message: &str) -> Option<u64> {
    let lower = message.to_ascii_lowercase();
    let rest = &lower[lower.find("try again in")? + "try again in".len()..];
    let rest = rest.trim_start();
    let digits = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let value: f64 = rest[..digits].parse().ok()?;
    let unit = rest[digits..].trim_start();
    let ms = if unit.starts_with("ms") {
        value
    } else if unit.starts_with('m') && !unit.starts_with("ms") {
        value * 60_000.0
    } else {
        value * 1000.0
    };
    ms.is_finite().then_some(ms as u64)
}

#[cfg(test)]
mod tests;
