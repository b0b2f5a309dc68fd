//! What each account has used of its quota windows, and when each window resets.
//!
//! Two sources feed one per-account view: the usage endpoint (polled at most once per
//! freshness period, across all pi processes, because the result is kept in the shared file)
//! and the `x-codex-*` headers on every proxied reply, which cost nothing. Windows are told apart
//! by their length, never by their position: some accounts report only a weekly window, and
//! report it as the "primary" one.

use std::time::Duration;

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Usage younger than this is fresh enough to choose by and to show without a new fetch.
pub const FRESH_FOR: Duration = Duration::from_secs(5 * 60);

const FIVE_HOURS_S: u64 = 5 * 3600;
const WEEK_S: u64 = 7 * 24 * 3600;

/// What a window is, judged by its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    FiveHour,
    Weekly,
    Other,
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

impl UsageWindow {
    pub fn kind(&self) -> WindowKind {
        // A little slack: the headers give minutes, the payload seconds.
        match self.window_seconds {
            Some(s) if s.abs_diff(FIVE_HOURS_S) <= 600 => WindowKind::FiveHour,
            Some(s) if s.abs_diff(WEEK_S) <= 3600 => WindowKind::Weekly,
            _ => WindowKind::Other,
        }
    }

    /// The reset time, if it is still ahead.
    pub fn reset_ahead(&self, now_ms: u64) -> Option<u64> {
        self.resets_at_ms.filter(|&at| at > now_ms)
    }

    /// Used percent as of `now_ms`: a window whose reset has passed starts again from zero.
    pub fn used_now(&self, now_ms: u64) -> f64 {
        match self.resets_at_ms {
            Some(at) if at <= now_ms => 0.0,
            _ => self.used_percent,
        }
    }
}

impl Usage {
    pub fn window(&self, kind: WindowKind) -> Option<&UsageWindow> {
        self.windows.iter().find(|w| w.kind() == kind)
    }

    /// Every known window at 0%: using this account starts its clocks now, so its quota renews
    /// sooner than if it sat idle.
    pub fn is_untouched(&self, now_ms: u64) -> bool {
        !self.windows.is_empty() && self.windows.iter().all(|w| w.used_now(now_ms) <= 0.0)
    }

    /// When the account can serve again if some window is used up; the latest such reset,
    /// since every spent window must have reset.
    pub fn spent_until(&self, now_ms: u64) -> Option<u64> {
        self.windows
            .iter()
            .filter(|w| w.used_now(now_ms) >= 100.0)
            .filter_map(|w| w.reset_ahead(now_ms))
            .max()
    }

    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.observed_at_ms) < FRESH_FOR.as_millis() as u64
    }

    /// Folds a newer observation in. Windows the new one reports replace those of the same
    /// length (or name); windows it does not report (the headers carry only two) are kept.
    pub fn merge(old: Option<Usage>, new: Usage) -> Usage {
        let Some(old) = old else { return new };
        if old.observed_at_ms > new.observed_at_ms {
            return old;
        }
        let mut windows = new.windows;
        for kept in old.windows {
            let replaced = windows.iter().any(|w| match kept.kind() {
                WindowKind::Other => w.kind() == WindowKind::Other && w.name == kept.name,
                kind => w.kind() == kind,
            });
            if !replaced {
                windows.push(kept);
            }
        }
        Usage {
            observed_at_ms: new.observed_at_ms,
            windows,
        }
    }
}

/// One observation: the windows and, when reported, the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub usage: Usage,
    pub plan: Option<String>,
}

/// When something resets, in unix milliseconds: the backend gives an absolute time in unix
/// seconds, a count of seconds from now, or both (the absolute one wins).
pub fn reset_time(at_s: Option<u64>, after_s: Option<u64>, now_ms: u64) -> Option<u64> {
    at_s.map(|s| s.saturating_mul(1000))
        .or_else(|| Some(now_ms.saturating_add(after_s?.saturating_mul(1000))))
}

/// Reads the usage payload (see codex-backend.md). Every field may be missing or null; a
/// payload with no window at all gives `None`.
pub fn from_payload(payload: &Value, now_ms: u64) -> Option<Observation> {
    let mut windows = Vec::new();
    let mut add = |limits: &Value, name: Option<&str>| {
        for key in ["primary_window", "secondary_window"] {
            if let Some(window) = payload_window(&limits[key], now_ms, name) {
                windows.push(window);
            }
        }
    };
    add(&payload["rate_limit"], None);
    if let Some(extra) = payload["additional_rate_limits"].as_array() {
        for limit in extra {
            let name = limit["limit_name"]
                .as_str()
                .or_else(|| limit["metered_feature"].as_str());
            add(&limit["rate_limit"], Some(name.unwrap_or("additional")));
        }
    }
    if windows.is_empty() {
        return None;
    }
    Some(Observation {
        usage: Usage {
            observed_at_ms: now_ms,
            windows,
        },
        plan: payload["plan_type"].as_str().map(str::to_owned),
    })
}

fn payload_window(window: &Value, now_ms: u64, name: Option<&str>) -> Option<UsageWindow> {
    let used_percent = window["used_percent"].as_f64()?;
    let resets_at_ms = reset_time(
        window["reset_at"].as_u64(),
        window["reset_after_seconds"].as_u64(),
        now_ms,
    );
    Some(UsageWindow {
        name: name.map(str::to_owned),
        window_seconds: window["limit_window_seconds"].as_u64(),
        used_percent,
        resets_at_ms,
    })
}

/// Reads the `x-codex-*` headers every model reply carries, success or error.
pub fn from_headers(headers: &HeaderMap, now_ms: u64) -> Option<Observation> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let number = |name: &str| text(name).and_then(|v| v.trim().parse::<f64>().ok());
    let whole = |name: &str| text(name).and_then(|v| v.trim().parse::<u64>().ok());
    let windows: Vec<UsageWindow> = ["primary", "secondary"]
        .into_iter()
        .filter_map(|slot| {
            let used_percent = number(&format!("x-codex-{slot}-used-percent"))?;
            let resets_at_ms = reset_time(
                whole(&format!("x-codex-{slot}-reset-at")),
                whole(&format!("x-codex-{slot}-reset-after-seconds")),
                now_ms,
            );
            Some(UsageWindow {
                name: None,
                window_seconds: whole(&format!("x-codex-{slot}-window-minutes"))
                    .map(|m| m.saturating_mul(60)),
                used_percent,
                resets_at_ms,
            })
        })
        .collect();
    if windows.is_empty() {
        return None;
    }
    Some(Observation {
        usage: Usage {
            observed_at_ms: now_ms,
            windows,
        },
        plan: text("x-codex-plan-type").map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_770_000_000_000;

    fn window(kind_seconds: u64, used: f64, reset_in_s: u64) -> Value {
        json!({"used_percent": used, "limit_window_seconds": kind_seconds,
               "reset_after_seconds": reset_in_s, "reset_at": NOW / 1000 + reset_in_s})
    }

    #[test]
    fn windows_are_told_apart_by_length_not_position() {
        // A weekly-only account reports its weekly window as the primary one.
        let payload = json!({"plan_type": "team", "rate_limit": {
            "primary_window": window(WEEK_S, 30.0, 1000), "secondary_window": null}});
        let seen = from_payload(&payload, NOW).unwrap();
        assert_eq!(seen.plan.as_deref(), Some("team"));
        assert_eq!(seen.usage.windows.len(), 1);
        assert!(seen.usage.window(WindowKind::FiveHour).is_none());
        let weekly = seen.usage.window(WindowKind::Weekly).unwrap();
        assert_eq!(weekly.used_percent, 30.0);
        assert_eq!(weekly.resets_at_ms, Some(NOW + 1_000_000));
    }

    #[test]
    fn missing_and_null_fields_are_tolerated() {
        for payload in [
            json!({}),
            json!(null),
            json!({"rate_limit": null}),
            json!({"rate_limit": {"primary_window": {"used_percent": null}}}),
            json!({"rate_limit": {"primary_window": "x", "secondary_window": 3}}),
        ] {
            assert_eq!(from_payload(&payload, NOW), None, "{payload}");
        }
        let sparse = json!({"rate_limit": {"primary_window": {"used_percent": 5}}});
        let seen = from_payload(&sparse, NOW).unwrap();
        assert_eq!(seen.usage.windows[0].kind(), WindowKind::Other);
        assert_eq!(seen.usage.windows[0].resets_at_ms, None);
    }

    #[test]
    fn additional_limits_are_kept_by_name() {
        let payload = json!({"rate_limit": {"primary_window": window(FIVE_HOURS_S, 1.0, 10)},
            "additional_rate_limits": [{"limit_name": "gpt-6-pro", "rate_limit": {
                "primary_window": window(WEEK_S, 50.0, 10)}}]});
        let seen = from_payload(&payload, NOW).unwrap();
        assert_eq!(seen.usage.windows.len(), 2);
        assert_eq!(seen.usage.windows[1].name.as_deref(), Some("gpt-6-pro"));
    }

    #[test]
    fn headers_give_the_same_view() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-codex-primary-used-percent", "12.5"),
            ("x-codex-primary-window-minutes", "300"),
            ("x-codex-primary-reset-after-seconds", "60"),
            ("x-codex-secondary-used-percent", "40"),
            ("x-codex-secondary-window-minutes", "10080"),
            ("x-codex-secondary-reset-at", "1770000900"),
            ("x-codex-plan-type", "pro"),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
        let seen = from_headers(&headers, NOW).unwrap();
        assert_eq!(seen.plan.as_deref(), Some("pro"));
        let five = seen.usage.window(WindowKind::FiveHour).unwrap();
        assert_eq!(
            (five.used_percent, five.resets_at_ms),
            (12.5, Some(NOW + 60_000))
        );
        let weekly = seen.usage.window(WindowKind::Weekly).unwrap();
        assert_eq!(weekly.resets_at_ms, Some(1_770_000_900_000));
        assert_eq!(from_headers(&HeaderMap::new(), NOW), None);
    }

    #[test]
    fn a_reset_in_the_past_means_the_window_starts_over() {
        let usage = Usage {
            observed_at_ms: NOW,
            windows: vec![UsageWindow {
                name: None,
                window_seconds: Some(WEEK_S),
                used_percent: 100.0,
                resets_at_ms: Some(NOW + 10),
            }],
        };
        assert_eq!(usage.spent_until(NOW), Some(NOW + 10));
        assert!(!usage.is_untouched(NOW));
        assert_eq!(usage.spent_until(NOW + 10), None);
        assert!(usage.is_untouched(NOW + 10));
    }

    #[test]
    fn merging_keeps_windows_the_headers_do_not_carry() {
        let named = UsageWindow {
            name: Some("extra".into()),
            window_seconds: Some(WEEK_S * 4),
            used_percent: 3.0,
            resets_at_ms: None,
        };
        let weekly = |used| UsageWindow {
            name: None,
            window_seconds: Some(WEEK_S),
            used_percent: used,
            resets_at_ms: None,
        };
        let old = Usage {
            observed_at_ms: NOW,
            windows: vec![weekly(10.0), named.clone()],
        };
        let new = Usage {
            observed_at_ms: NOW + 1,
            windows: vec![weekly(11.0)],
        };
        let merged = Usage::merge(Some(old.clone()), new.clone());
        assert_eq!(merged.windows, vec![weekly(11.0), named]);
        // An older observation never overwrites a newer one.
        assert_eq!(Usage::merge(Some(merged.clone()), old), merged);
    }
}
