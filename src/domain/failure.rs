//! What an upstream failure means for the account that got it (the table in codex-backend.md).
//!
//! A failure comes either as an error status or as an error event early in a 200 stream; both
//! are read into one [`Failure`], which says what happens to the account and whether the
//! request may move on to another one.

use http::StatusCode;
use http::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;

use crate::domain::account::{AccountState, FamilyLimit};
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

#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The account's quota is spent until the given time (when known).
    UsageLimit { until_ms: Option<u64> },
    /// The plan has no Codex at all.
    NotIncluded,
    /// A short-lived limit, often an incident with quota left.
    Throttled { for_ms: Option<u64> },
    /// The token was refused even after a refresh.
    Unauthorized,
    /// The refresh token is dead: only a new login helps (`auth` has marked the account).
    LoggedOut { reason: String },
    /// The backend failed (5xx, no connection, a stream that ended before any output);
    /// `retry_after_ms` is its `Retry-After`, if it sent one.
    Backend {
        what: String,
        retry_after_ms: Option<u64>,
    },
}

impl Failure {
    /// Backend trouble with no word on when to come back.
    pub fn backend(what: impl Into<String>) -> Self {
        Self::Backend {
            what: what.into(),
            retry_after_ms: None,
        }
    }

    /// How long to wait before trying the same account once more, when that is worth it: only
    /// for backend trouble, which is often a blip, and where the session's prompt cache is warm.
    /// Anything else says something about the account, so the request moves on.
    pub fn retry_here_after_ms(&self) -> Option<u64> {
        match self {
            Self::Backend { retry_after_ms, .. } => match retry_after_ms {
                None => Some(BACKEND_RETRY_PAUSE_MS),
                Some(ms) if *ms <= BACKEND_RETRY_MAX_WAIT_MS => {
                    Some((*ms).max(BACKEND_RETRY_PAUSE_MS))
                }
                Some(_) => None,
            },
            _ => None,
        }
    }

    /// Reads an error status. `None`: the failure is about the request, not the account, and
    /// goes to pi unchanged.
    pub fn from_status(
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        now_ms: u64,
    ) -> Option<Self> {
        let payload: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let error = &payload["error"];
        match status.as_u16() {
            401 => Some(Self::Unauthorized),
            429 => {
                let kind = error["type"].as_str().or_else(|| error["code"].as_str());
                Some(match kind {
                    Some("usage_limit_reached" | "insufficient_quota") => Self::UsageLimit {
                        until_ms: resets_at(error, now_ms),
                    },
                    Some("usage_not_included") => Self::NotIncluded,
                    _ => Self::Throttled {
                        for_ms: retry_after(headers)
                            .or_else(|| error["message"].as_str().and_then(try_again_in)),
                    },
                })
            }
            500..=599 => Some(Self::Backend {
                what: format!("HTTP {}", status.as_u16()),
                retry_after_ms: retry_after(headers),
            }),
            _ => None,
        }
    }

    /// Reads a failure event from the stream (`error` or `response.failed`); `None` for any
    /// other event.
    pub fn from_event(event: &Value, now_ms: u64) -> Option<Self> {
        let error = match event["type"].as_str()? {
            "error" => event,
            "response.failed" => &event["response"]["error"],
            _ => return None,
        };
        let code = error["code"].as_str().or_else(|| error["type"].as_str());
        Some(match code {
            Some("usage_limit_reached" | "insufficient_quota") => Self::UsageLimit {
                until_ms: resets_at(error, now_ms),
            },
            Some("usage_not_included") => Self::NotIncluded,
            Some("rate_limit_exceeded") => Self::Throttled {
                for_ms: error["message"].as_str().and_then(try_again_in),
            },
            other => Self::backend(format!(
                "stream error {}",
                other.unwrap_or("without a code")
            )),
        })
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

    /// The state the account takes after this failure, if it changes. A usage limit changes
    /// no state: it rests one family ([`Failure::family_limit`]).
    pub fn account_state(&self, now_ms: u64) -> Option<AccountState> {
        match self {
            Self::Throttled { for_ms } => Some(AccountState::Benched {
                until_ms: now_ms
                    + for_ms
                        .unwrap_or(THROTTLE_FALLBACK_MS)
                        .clamp(1000, THROTTLE_MAX_MS),
                reason: text::BENCH_THROTTLED.into(),
            }),
            Self::NotIncluded => Some(AccountState::Disabled {
                reason: text::DISABLED_NO_CODEX.into(),
            }),
            Self::UsageLimit { .. }
            | Self::Unauthorized
            | Self::LoggedOut { .. }
            | Self::Backend { .. } => None,
        }
    }
}

/// `resets_at` (unix seconds), else `resets_in_seconds` from now.
fn resets_at(error: &Value, now_ms: u64) -> Option<u64> {
    reset_time(
        error["resets_at"].as_u64(),
        error["resets_in_seconds"].as_u64(),
        now_ms,
    )
    .filter(|&at| at > now_ms)
}

/// `Retry-After` in seconds (the HTTP-date form is not used by this backend).
fn retry_after(headers: &HeaderMap) -> Option<u64> {
    let seconds: f64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (seconds.is_finite() && seconds >= 0.0).then_some((seconds * 1000.0) as u64)
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
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_770_000_000_000;

    fn status(code: u16, body: Value) -> Option<Failure> {
        Failure::from_status(
            StatusCode::from_u16(code).unwrap(),
            &HeaderMap::new(),
            body.to_string().as_bytes(),
            NOW,
        )
    }

    #[test]
    fn every_row_of_the_status_table() {
        let limit = json!({"error": {"type": "usage_limit_reached", "resets_at": NOW / 1000 + 60}});
        assert_eq!(
            status(429, limit),
            Some(Failure::UsageLimit {
                until_ms: Some(NOW + 60_000)
            })
        );
        let limit_in = json!({"error": {"type": "usage_limit_reached", "resets_in_seconds": 30}});
        assert_eq!(
            status(429, limit_in),
            Some(Failure::UsageLimit {
                until_ms: Some(NOW + 30_000)
            })
        );
        assert_eq!(
            status(429, json!({"error": {"type": "usage_not_included"}})),
            Some(Failure::NotIncluded)
        );
        let throttled = json!({"error": {"code": "rate_limit_exceeded",
            "message": "Rate limit reached. Please try again in 7s."}});
        assert_eq!(
            status(429, throttled),
            Some(Failure::Throttled { for_ms: Some(7000) })
        );
        assert_eq!(
            status(429, Value::Null),
            Some(Failure::Throttled { for_ms: None })
        );
        assert_eq!(status(401, Value::Null), Some(Failure::Unauthorized));
        assert!(matches!(
            status(503, Value::Null),
            Some(Failure::Backend { .. })
        ));
        // The request's own fault: pi must see it as it is.
        assert_eq!(status(400, json!({"error": {"message": "bad"}})), None);
    }

    #[test]
    fn only_backend_trouble_is_tried_again_on_the_same_account() {
        let with_retry_after = |seconds: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, seconds.parse().unwrap());
            Failure::from_status(StatusCode::SERVICE_UNAVAILABLE, &headers, b"", NOW).unwrap()
        };
        let plain = Failure::from_status(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"", NOW);
        assert_eq!(
            plain.unwrap().retry_here_after_ms(),
            Some(BACKEND_RETRY_PAUSE_MS)
        );
        assert_eq!(with_retry_after("1").retry_here_after_ms(), Some(1000));
        assert_eq!(
            with_retry_after("0").retry_here_after_ms(),
            Some(BACKEND_RETRY_PAUSE_MS)
        );
        assert_eq!(with_retry_after("3").retry_here_after_ms(), None);
        let in_stream = Failure::from_event(&json!({"type": "error", "code": "server_error"}), NOW);
        assert_eq!(
            in_stream.unwrap().retry_here_after_ms(),
            Some(BACKEND_RETRY_PAUSE_MS)
        );
        for other in [
            Failure::UsageLimit { until_ms: None },
            Failure::Throttled { for_ms: Some(100) },
            Failure::NotIncluded,
            Failure::Unauthorized,
        ] {
            assert_eq!(other.retry_here_after_ms(), None, "{other:?}");
        }
    }

    #[test]
    fn retry_after_wins_over_the_message() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "12".parse().unwrap());
        let failure = Failure::from_status(StatusCode::TOO_MANY_REQUESTS, &headers, b"", NOW);
        assert_eq!(
            failure,
            Some(Failure::Throttled {
                for_ms: Some(12_000)
            })
        );
    }

    #[test]
    fn stream_events() {
        let error = json!({"type": "error", "code": "usage_limit_reached", "message": "x"});
        assert_eq!(
            Failure::from_event(&error, NOW),
            Some(Failure::UsageLimit { until_ms: None })
        );
        let failed = json!({"type": "response.failed", "response": {"error": {
            "code": "rate_limit_exceeded", "message": "Please try again in 5s."}}});
        assert_eq!(
            Failure::from_event(&failed, NOW),
            Some(Failure::Throttled { for_ms: Some(5000) })
        );
        let quota = json!({"type": "response.failed", "response": {"error": {"code": "insufficient_quota"}}});
        assert!(matches!(
            Failure::from_event(&quota, NOW),
            Some(Failure::UsageLimit { .. })
        ));
        assert_eq!(
            Failure::from_event(&json!({"type": "response.created"}), NOW),
            None
        );
        assert!(matches!(
            Failure::from_event(&json!({"type": "error"}), NOW),
            Some(Failure::Backend { .. })
        ));
    }

    #[test]
    fn a_usage_limit_rests_the_family_the_reply_names_until_its_spent_window_resets() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-codex-primary-used-percent", "20"),
            ("x-codex-primary-reset-after-seconds", "60"),
            ("x-codex-bengalfox-primary-used-percent", "100"),
            ("x-codex-bengalfox-primary-window-minutes", "300"),
            ("x-codex-bengalfox-primary-reset-after-seconds", "900"),
            ("x-codex-active-limit", "codex_bengalfox"),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
        let seen = crate::domain::usage::from_headers(&headers, NOW);
        let body = json!({"error": {"type": "usage_limit_reached"}});
        let failure = Failure::from_status(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            body.to_string().as_bytes(),
            NOW,
        )
        .unwrap();
        // The request was thought to be a main-model one; the reply knows better.
        let limit = failure.family_limit("codex", seen.as_ref(), NOW).unwrap();
        assert_eq!(limit.family, "codex_bengalfox");
        assert_eq!(limit.until_ms, NOW + 900_000);
        assert_eq!(limit.used_percent, Some(100.0));
    }

    #[test]
    fn waits_in_messages() {
        assert_eq!(try_again_in("Please try again in 5s."), Some(5000));
        assert_eq!(try_again_in("try again in 1.5 seconds"), Some(1500));
        assert_eq!(try_again_in("Try again in 250ms"), Some(250));
        assert_eq!(try_again_in("try again in 2 minutes"), Some(120_000));
        assert_eq!(try_again_in("try again later"), None);
        assert_eq!(try_again_in("nothing"), None);
    }

    #[test]
    fn bench_times() {
        let limit = Failure::UsageLimit { until_ms: None };
        assert_eq!(limit.account_state(NOW), None, "a limit rests a family");
        assert_eq!(
            limit.family_limit("codex", None, NOW),
            Some(FamilyLimit {
                family: "codex".into(),
                until_ms: NOW + USAGE_LIMIT_FALLBACK_MS,
                since_ms: NOW,
                used_percent: None,
                reason: text::BENCH_USAGE_LIMIT.into()
            })
        );
        assert_eq!(Failure::NotIncluded.family_limit("codex", None, NOW), None);
        let throttled = Failure::Throttled {
            for_ms: Some(u64::MAX / 2),
        }
        .account_state(NOW);
        assert!(
            matches!(throttled, Some(AccountState::Benched { until_ms, .. }) if until_ms == NOW + THROTTLE_MAX_MS)
        );
        assert!(matches!(
            Failure::NotIncluded.account_state(NOW),
            Some(AccountState::Disabled { .. })
        ));
        assert_eq!(Failure::backend("x").account_state(NOW), None);
    }
}
