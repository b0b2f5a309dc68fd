//! What each account has used of its quota windows, per limit family, and its credits.
//!
//! Two sources feed one per-account view: the usage endpoint (polled at most once per
//! freshness period, across all pi processes, because the result is kept in the shared file)
//! and the `x-*` rate-limit headers on every proxied reply, which cost nothing. Windows are told
//! apart by their length, never by their position: some accounts report only a weekly window,
//! and report it as the "primary" one. Limits come in families: the main `codex` one and
//! per-model ones (a Spark model's), each with its own windows; a spent family stops only its
//! own models.

use std::time::Duration;

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Usage younger than this is fresh enough to choose by and to show without a new fetch.
pub const FRESH_FOR: Duration = Duration::from_secs(5 * 60);

/// The limit family every model counts against unless it has one of its own.
pub const MAIN_FAMILY: &str = "codex";

const FIVE_HOURS_S: u64 = 5 * 3600;
const WEEK_S: u64 = 7 * 24 * 3600;
const DAY_S: u64 = 24 * 3600;

/// What a window is, judged by its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    FiveHour,
    Weekly,
    /// 30 days (free accounts) or a calendar month (the monthly meters of paid plans).
    Monthly,
    Other,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// When this view was taken, in unix milliseconds.
    pub observed_at_ms: u64,
    /// The main family's windows.
    #[serde(default)]
    pub windows: Vec<UsageWindow>,
    /// Per-model limit families (`additional_rate_limits`, `x-<id>-*` headers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<FamilyUsage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<Credits>,
    /// Why the backend says a limit was reached (`rate_limit_reached_type`), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageWindow {
    /// Length of the window in seconds (18000 = 5 hours, 604800 = weekly); the only reliable
    /// way to tell windows apart.
    #[serde(default)]
    pub window_seconds: Option<u64>,
    pub used_percent: f64,
    #[serde(default)]
    pub resets_at_ms: Option<u64>,
}

/// One per-model limit family and its windows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilyUsage {
    /// The limit id (`metered_feature`, e.g. `codex_bengalfox`).
    pub id: String,
    /// Its display name (`limit_name`, e.g. "GPT-5.3-Codex-Spark").
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub windows: Vec<UsageWindow>,
}

/// Purchased credits: they keep an account serving past 100%, at the user's expense.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credits {
    #[serde(default)]
    pub has_credits: bool,
    #[serde(default)]
    pub unlimited: bool,
    #[serde(default)]
    pub balance: Option<f64>,
}

impl Credits {
    /// Whether the backend would pay a request past a spent limit from them.
    pub fn can_pay(&self) -> bool {
        self.unlimited || (self.has_credits && self.balance.is_none_or(|b| b > 0.0))
    }
}

impl UsageWindow {
    pub fn kind(&self) -> WindowKind {
        // A little slack: the headers give minutes, the payload seconds, months differ.
        match self.window_seconds {
            Some(s) if s.abs_diff(FIVE_HOURS_S) <= 600 => WindowKind::FiveHour,
            Some(s) if s.abs_diff(WEEK_S) <= 3600 => WindowKind::Weekly,
            Some(s) if (27 * DAY_S..=32 * DAY_S).contains(&s) => WindowKind::Monthly,
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

    /// 0% with no length and no reset: the backend has nothing to say about this window (free
    /// accounts report such a secondary), which is not the same as untouched.
    fn is_no_data(&self) -> bool {
        self.window_seconds.is_none() && self.resets_at_ms.is_none() && self.used_percent <= 0.0
    }
}

/// Rules over one family's windows.
pub mod windows {
    use super::UsageWindow;

    /// Every window at 0%: using the account starts their clocks now.
    pub fn untouched(windows: &[UsageWindow], now_ms: u64) -> bool {
        !windows.is_empty() && windows.iter().all(|w| w.used_now(now_ms) <= 0.0)
    }

    /// When the family can serve again if a window is used up: the latest such reset, since
    /// every spent window must have reset.
    pub fn spent_until(windows: &[UsageWindow], now_ms: u64) -> Option<u64> {
        windows
            .iter()
            .filter(|w| w.used_now(now_ms) >= 100.0)
            .filter_map(|w| w.reset_ahead(now_ms))
            .max()
    }

    /// The window that binds longest: the longest one whose reset is still ahead. Its reset is
    /// when what is left of the family's quota is lost.
    pub fn binding(windows: &[UsageWindow], now_ms: u64) -> Option<&UsageWindow> {
        windows
            .iter()
            .filter(|w| w.reset_ahead(now_ms).is_some())
            .max_by_key(|w| w.window_seconds.unwrap_or(0))
    }

    /// The highest use among the windows, as of `now_ms`.
    pub fn most_used(windows: &[UsageWindow], now_ms: u64) -> Option<f64> {
        windows.iter().map(|w| w.used_now(now_ms)).reduce(f64::max)
    }
}

impl Usage {
    /// The main family's window of a kind.
    pub fn window(&self, kind: WindowKind) -> Option<&UsageWindow> {
        self.windows.iter().find(|w| w.kind() == kind)
    }

    pub fn family(&self, id: &str) -> Option<&FamilyUsage> {
        self.families.iter().find(|f| f.id == id)
    }

    /// The windows a request of `family` counts against. A family the account does not report
    /// is taken to count against its main windows: nothing says it has a limit of its own.
    pub fn windows_of(&self, family: &str) -> &[UsageWindow] {
        match self.family(family) {
            Some(own) if family != MAIN_FAMILY => &own.windows,
            _ => &self.windows,
        }
    }

    /// The windows this view reports for `family` itself, if it reports that family.
    fn reported(&self, family: &str) -> Option<&[UsageWindow]> {
        if family == MAIN_FAMILY {
            return (!self.windows.is_empty()).then_some(self.windows.as_slice());
        }
        self.family(family).map(|f| f.windows.as_slice())
    }

    /// Every main window at 0%: using this account starts its clocks now, so its quota renews
    /// sooner than if it sat idle.
    pub fn is_untouched(&self, now_ms: u64) -> bool {
        windows::untouched(&self.windows, now_ms)
    }

    /// When the main family can serve again, if one of its windows is used up.
    pub fn spent_until(&self, now_ms: u64) -> Option<u64> {
        windows::spent_until(&self.windows, now_ms)
    }

    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.observed_at_ms) < FRESH_FOR.as_millis() as u64
    }

    /// Whether this view shows `family` below `below` percent in every window: a limit
    /// recorded when it was at `below` (or at 100% when that is not known) is no longer
    /// reached.
    pub fn shows_below(&self, family: &str, below: f64, now_ms: u64) -> bool {
        if self.reached.is_some() {
            return false;
        }
        self.reported(family)
            .and_then(|w| windows::most_used(w, now_ms))
            .is_some_and(|most| most < below.min(100.0))
    }

    /// Folds a newer observation in. The usage endpoint's view is complete and replaces the old
    /// one; reply headers report the families they carry (and the credits), so those replace
    /// their old counterparts and everything else is kept.
    pub fn merge(old: Option<Usage>, new: Usage, source: Source) -> Usage {
        let Some(mut old) = old else { return new };
        if old.observed_at_ms > new.observed_at_ms {
            return old;
        }
        if source == Source::Endpoint {
            return new;
        }
        old.observed_at_ms = new.observed_at_ms;
        if !new.windows.is_empty() {
            old.windows = new.windows;
        }
        for family in new.families {
            match old.families.iter_mut().find(|f| f.id == family.id) {
                Some(kept) => *kept = family,
                None => old.families.push(family),
            }
        }
        if new.credits.is_some() {
            old.credits = new.credits;
        }
        old
    }
}

/// Where an observation came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The usage endpoint: the whole picture.
    Endpoint,
    /// A model reply's headers: the families it carries.
    Headers,
}

/// One observation: the windows and, when reported, the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub usage: Usage,
    pub plan: Option<String>,
    /// The family the request counted against (`x-codex-active-limit`), from reply headers.
    pub active_family: Option<String>,
    pub source: Source,
}

/// When something resets, in unix milliseconds: the backend gives an absolute time in unix
/// seconds, a count of seconds from now, or both (the absolute one wins).
pub fn reset_time(at_s: Option<u64>, after_s: Option<u64>, now_ms: u64) -> Option<u64> {
    at_s.map(|s| s.saturating_mul(1000))
        .or_else(|| Some(now_ms.saturating_add(after_s?.saturating_mul(1000))))
}

/// A limit id as the backend writes it in a header value or a payload (`codex_bengalfox`).
fn family_id(raw: &str) -> String {
    raw.trim().to_ascii_lowercase().replace('-', "_")
}

/// Reads the usage payload (see codex-backend.md). Every field may be missing or null; a
/// payload with no window, no family and no credits gives `None`.
pub fn from_payload(payload: &Value, now_ms: u64) -> Option<Observation> {
    let windows = payload_windows(&payload["rate_limit"], now_ms);
    let families: Vec<FamilyUsage> = payload["additional_rate_limits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|limit| {
            let name = limit["limit_name"].as_str().map(str::to_owned);
            let id = limit["metered_feature"]
                .as_str()
                .or(name.as_deref())
                .map(family_id)
                .filter(|id| !id.is_empty() && id != MAIN_FAMILY)?;
            Some(FamilyUsage {
                id,
                name,
                windows: payload_windows(&limit["rate_limit"], now_ms),
            })
        })
        .collect();
    let credits = payload_credits(&payload["credits"]);
    if windows.is_empty() && families.is_empty() && credits.is_none() {
        return None;
    }
    let reached = &payload["rate_limit_reached_type"];
    let reached = reached["type"].as_str().or(reached.as_str());
    Some(Observation {
        usage: Usage {
            observed_at_ms: now_ms,
            windows,
            families,
            credits,
            reached: reached.map(str::to_owned),
        },
        plan: payload["plan_type"].as_str().map(str::to_owned),
        active_family: None,
        source: Source::Endpoint,
    })
}

fn payload_windows(limits: &Value, now_ms: u64) -> Vec<UsageWindow> {
    ["primary_window", "secondary_window"]
        .into_iter()
        .filter_map(|key| {
            let window = &limits[key];
            let used_percent = window["used_percent"].as_f64().filter(|p| p.is_finite())?;
            Some(UsageWindow {
                window_seconds: window["limit_window_seconds"].as_u64().filter(|&s| s > 0),
                used_percent,
                resets_at_ms: reset_time(
                    window["reset_at"].as_u64(),
                    window["reset_after_seconds"].as_u64(),
                    now_ms,
                ),
            })
        })
        .filter(|w| !w.is_no_data())
        .collect()
}

fn payload_credits(credits: &Value) -> Option<Credits> {
    if !credits.is_object() {
        return None;
    }
    let balance = match &credits["balance"] {
        Value::String(text) => text.trim().parse::<f64>().ok(),
        other => other.as_f64(),
    };
    Some(Credits {
        has_credits: credits["has_credits"].as_bool().unwrap_or(false),
        unlimited: credits["unlimited"].as_bool().unwrap_or(false),
        balance: balance.filter(|b| b.is_finite()),
    })
}

/// Reads the rate-limit headers every model reply carries, success or error: for each family
/// `x-<id>-primary-*` / `-secondary-*` (the main family's are `x-codex-*`), the family the
/// request counted against, the credits and the plan.
pub fn from_headers(headers: &HeaderMap, now_ms: u64) -> Option<Observation> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut prefixes: Vec<&str> = headers
        .keys()
        .filter_map(|name| {
            let name = name.as_str();
            name.strip_suffix("-primary-used-percent")
                .or_else(|| name.strip_suffix("-secondary-used-percent"))
        })
        .filter(|prefix| prefix.starts_with("x-") && prefix.len() > 2)
        .collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    let active = active_family(headers);

    let mut main = Vec::new();
    let mut families = Vec::new();
    for prefix in prefixes {
        let id = family_id(&prefix[2..]);
        let windows = header_windows(headers, prefix, now_ms);
        if id == MAIN_FAMILY {
            main = windows;
        } else {
            let name = text(&format!("{prefix}-limit-name")).map(str::to_owned);
            families.push(FamilyUsage { id, name, windows });
        }
    }
    // The plain headers have been seen carrying the numbers of the family the request counted
    // against. With that family's own headers present they cannot be told apart, so they are
    // left out; without them they are that family's.
    if let Some(active) = active.as_deref().filter(|a| *a != MAIN_FAMILY) {
        let plain = std::mem::take(&mut main);
        if !families.iter().any(|f| f.id == active) && !plain.is_empty() {
            families.push(FamilyUsage {
                id: active.to_owned(),
                name: None,
                windows: plain,
            });
        }
    }
    let credits = header_credits(headers);
    if main.is_empty() && families.is_empty() && credits.is_none() {
        return None;
    }
    Some(Observation {
        usage: Usage {
            observed_at_ms: now_ms,
            windows: main,
            families,
            credits,
            reached: None,
        },
        plan: text("x-codex-plan-type").map(str::to_owned),
        active_family: active,
        source: Source::Headers,
    })
}

/// The family a reply says its request counted against (`x-codex-active-limit`).
pub fn active_family(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("x-codex-active-limit")?.to_str().ok()?;
    Some(family_id(value)).filter(|id| !id.is_empty())
}

fn header_windows(headers: &HeaderMap, prefix: &str, now_ms: u64) -> Vec<UsageWindow> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let whole = |name: &str| text(name).and_then(|v| v.trim().parse::<u64>().ok());
    ["primary", "secondary"]
        .into_iter()
        .filter_map(|slot| {
            let used_percent = text(&format!("{prefix}-{slot}-used-percent"))?
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| p.is_finite())?;
            Some(UsageWindow {
                window_seconds: whole(&format!("{prefix}-{slot}-window-minutes"))
                    .filter(|&m| m > 0)
                    .map(|m| m.saturating_mul(60)),
                used_percent,
                resets_at_ms: reset_time(
                    whole(&format!("{prefix}-{slot}-reset-at")),
                    whole(&format!("{prefix}-{slot}-reset-after-seconds")),
                    now_ms,
                ),
            })
        })
        .filter(|w| !w.is_no_data())
        .collect()
}

fn header_credits(headers: &HeaderMap) -> Option<Credits> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let flag = |name: &str| text(name).map(|v| v.trim().eq_ignore_ascii_case("true"));
    let has_credits = flag("x-codex-credits-has-credits");
    let unlimited = flag("x-codex-credits-unlimited");
    let balance = text("x-codex-credits-balance").and_then(|v| v.trim().parse::<f64>().ok());
    if has_credits.is_none() && unlimited.is_none() && balance.is_none() {
        return None;
    }
    Some(Credits {
        has_credits: has_credits.unwrap_or(false),
        unlimited: unlimited.unwrap_or(false),
        balance: balance.filter(|b| b.is_finite()),
    })
}

#[cfg(test)]
mod tests;
