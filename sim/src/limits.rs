//! What an account may still use: its main `codex` windows, per-model limit families,
//! credits and banked resets. This module decides whether a model request goes through,
//! and renders the `x-codex-*` headers and the usage payload that report the limits
//! (codex-backend.md, "Usage payload" and "Rate-limit headers").

use hyper::header::{HeaderMap, HeaderValue};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use crate::clock;
use crate::jwt::random_urlsafe;
use crate::reply::insert;
use crate::script::{AccountScript, Credits, FamilyScript, Usage};
use crate::state::{Account, LiveUsage, LiveWindow, UnknownAccount, World};

/// The id of the main limit family, whose headers are the plain `x-codex-*` ones.
pub(crate) const MAIN_FAMILY: &str = "codex";

/// Banked resets and the credits they are handed out as expire this long after the grant.
const RESET_CREDIT_LIFETIME_S: u64 = 30 * 24 * 3600;

/// One limit family at run time, its resets pinned to wall-clock times.
#[derive(Debug, Clone)]
pub(crate) struct LiveFamily {
    pub id: String,
    pub limit_name: String,
    pub models: Vec<String>,
    pub usage: LiveUsage,
}

impl LiveFamily {
    fn pin(script: &FamilyScript, now_s: u64) -> LiveFamily {
        LiveFamily {
            id: script.id.clone(),
            limit_name: script.limit_name().to_string(),
            models: script.models.clone(),
            usage: LiveUsage::pin(&script.usage, now_s),
        }
    }

    /// `x-codex-bengalfox` for `codex_bengalfox`.
    fn header_prefix(&self) -> String {
        header_prefix(&self.id)
    }
}

fn header_prefix(family_id: &str) -> String {
    format!("x-{}", family_id.replace('_', "-"))
}

/// One banked reset as `/wham/rate-limit-reset-credits` lists it.
#[derive(Debug, Clone)]
pub(crate) struct ResetCredit {
    pub id: String,
    pub granted_at_s: u64,
}

/// The limit state of one account that changes at run time.
#[derive(Debug, Clone)]
pub(crate) struct AccountLimits {
    pub families: Vec<LiveFamily>,
    pub credits: Credits,
    pub banked: Vec<ResetCredit>,
    /// `redeem_request_id`s already consumed: a repeat is `already_redeemed`.
    pub redeemed: Vec<String>,
}

impl AccountLimits {
    pub fn new(script: &AccountScript, now_s: u64) -> AccountLimits {
        AccountLimits {
            families: pin_families(&script.families, now_s),
            credits: script.credits.clone(),
            banked: bank(script.banked_resets, now_s),
            redeemed: Vec::new(),
        }
    }

    /// The index of the family `model` counts against; None for the main family.
    pub fn family_of(&self, model: Option<&str>) -> Option<usize> {
        let model = model?;
        self.families
            .iter()
            .position(|f| f.models.iter().any(|m| m.eq_ignore_ascii_case(model)))
    }
}

fn pin_families(families: &[FamilyScript], now_s: u64) -> Vec<LiveFamily> {
    families.iter().map(|f| LiveFamily::pin(f, now_s)).collect()
}

fn bank(count: u32, now_s: u64) -> Vec<ResetCredit> {
    (0..count)
        .map(|_| ResetCredit {
            id: format!("rlrc_{}", random_urlsafe(12)),
            granted_at_s: now_s,
        })
        .collect()
}

/// Checks a script's families: their ids become header names, and each must be unique.
pub(crate) fn validate_families(families: &[FamilyScript]) -> Result<(), String> {
    let mut seen = Vec::new();
    for family in families {
        let id = family.id.as_str();
        let allowed =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
        if id.is_empty() || !id.chars().all(allowed) {
            return Err(format!(
                "family id {id:?} must be lowercase letters, digits, '_' or '-'"
            ));
        }
        if header_prefix(id) == header_prefix(MAIN_FAMILY) {
            return Err(format!("family id {id:?} is the main family's"));
        }
        if seen.contains(&header_prefix(id)) {
            return Err(format!("family id {id:?} appears twice"));
        }
        seen.push(header_prefix(id));
        if HeaderValue::from_str(family.limit_name()).is_err() {
            return Err(format!(
                "family {id:?} has a limit name that cannot be a header"
            ));
        }
    }
    Ok(())
}

impl LiveWindow {
    /// A window with no length is "no data": 0%, no length, no reset.
    pub fn has_data(&self) -> bool {
        self.window_minutes > 0
    }
}

impl LiveUsage {
    pub fn limit_reached(&self) -> bool {
        self.windows()
            .any(|w| w.has_data() && w.used_percent >= 100.0)
    }

    /// When the last spent window resets, if a window is spent and its reset is still ahead
    /// (the sim does not roll usage over by itself, so a passed reset no longer refuses).
    fn spent_until(&self, now_s: u64) -> Option<u64> {
        self.windows()
            .filter(|w| w.has_data() && w.used_percent >= 100.0 && w.reset_at_s > now_s)
            .map(|w| w.reset_at_s)
            .max()
    }

    fn windows(&self) -> impl Iterator<Item = &LiveWindow> {
        [&self.primary, &self.secondary].into_iter().flatten()
    }

    /// Every window with data back at 0% and a full window ahead; returns how many.
    fn reset_all(&mut self, now_s: u64) -> u64 {
        let mut reset = 0;
        for window in [&mut self.primary, &mut self.secondary]
            .into_iter()
            .flatten()
            .filter(|w| w.has_data())
        {
            window.used_percent = 0.0;
            window.reset_at_s = now_s + window.window_minutes * 60;
            reset += 1;
        }
        reset
    }

    fn is_untouched(&self) -> bool {
        self.windows().all(|w| w.used_percent <= 0.0)
    }
}

impl Credits {
    fn usable(&self) -> bool {
        self.unlimited || (self.has_credits && self.balance > 0.0)
    }

    fn spend(&mut self) {
        if self.unlimited {
            return;
        }
        self.balance = (self.balance - self.cost_per_request).max(0.0);
        if self.balance <= 0.0 {
            self.has_credits = false;
        }
    }
}

/// How the limits treat one model request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    Open,
    /// Past a spent window, paid from credits.
    PaidFromCredits,
    /// Refused with 429 `usage_limit_reached` until this unix second.
    Refused {
        resets_at_s: u64,
    },
}

impl Account {
    /// Applies the limits of `family` (None = main) to a request that no queued behavior
    /// answers: open, paid from credits (which are charged here), or refused.
    pub fn gate(&mut self, family: Option<usize>, now_s: u64) -> Gate {
        if !self.script.enforce_limits {
            return Gate::Open;
        }
        let usage = match family.and_then(|i| self.limits.families.get(i)) {
            Some(family) => &family.usage,
            None => &self.usage,
        };
        let Some(resets_at_s) = usage.spent_until(now_s) else {
            return Gate::Open;
        };
        if self.limits.credits.usable() {
            self.limits.credits.spend();
            return Gate::PaidFromCredits;
        }
        Gate::Refused { resets_at_s }
    }

    /// What the headers and the usage payload report right now, with `active` as the
    /// family the request counted against.
    pub fn limit_report(&self, active: Option<usize>) -> LimitReport {
        LimitReport {
            plan_type: self.script.plan.clone(),
            main: self.usage.clone(),
            families: self.limits.families.clone(),
            active,
            family_in_plain_headers: self.script.family_in_plain_headers,
            credits: self.limits.credits.clone(),
            reached_type: self.script.rate_limit_reached_type.clone(),
            promo_message: self.script.promo_message.clone(),
            banked_resets: self.limits.banked.len(),
        }
    }

    /// `POST /wham/rate-limit-reset-credits/consume`: spends one banked reset on the main
    /// windows.
    pub fn consume_reset(
        &mut self,
        redeem_request_id: &str,
        credit_id: Option<&str>,
        now_s: u64,
    ) -> Value {
        let answer =
            |code: &str, windows_reset: u64| json!({"code": code, "windows_reset": windows_reset});
        if self
            .limits
            .redeemed
            .iter()
            .any(|id| id == redeem_request_id)
        {
            return answer("already_redeemed", 0);
        }
        let position = match credit_id {
            Some(id) => self.limits.banked.iter().position(|c| c.id == id),
            None => (!self.limits.banked.is_empty()).then_some(0),
        };
        let Some(position) = position else {
            return answer("no_credit", 0);
        };
        if self.usage.is_untouched() {
            return answer("nothing_to_reset", 0);
        }
        self.limits.banked.remove(position);
        self.limits.redeemed.push(redeem_request_id.to_string());
        let windows_reset = self.usage.reset_all(now_s);
        answer("reset", windows_reset)
    }
}

/// `GET /wham/rate-limit-reset-credits`.
pub(crate) fn reset_credits_payload(banked: &[ResetCredit]) -> Value {
    let credits: Vec<Value> = banked
        .iter()
        .map(|credit| {
            json!({
                "id": credit.id,
                "reset_type": "codex_rate_limits",
                "status": "available",
                "granted_at": iso8601(credit.granted_at_s),
                "expires_at": iso8601(credit.granted_at_s + RESET_CREDIT_LIFETIME_S),
                "title": "Full reset",
                "description": null,
            })
        })
        .collect();
    json!({"available_count": banked.len(), "credits": credits})
}

/// A snapshot of an account's limits, taken under the world lock and rendered later.
#[derive(Debug, Clone)]
pub(crate) struct LimitReport {
    plan_type: String,
    main: LiveUsage,
    families: Vec<LiveFamily>,
    active: Option<usize>,
    family_in_plain_headers: bool,
    credits: Credits,
    reached_type: Option<String>,
    promo_message: Option<String>,
    banked_resets: usize,
}

impl LimitReport {
    /// The headers every model reply carries, 200 or error.
    pub fn add_headers(&self, headers: &mut HeaderMap, now_s: u64) {
        let active = self.active.and_then(|i| self.families.get(i));
        let plain = match active {
            Some(family) if self.family_in_plain_headers => &family.usage,
            _ => &self.main,
        };
        add_window_headers(headers, "x-codex", plain, now_s);
        for family in &self.families {
            let prefix = family.header_prefix();
            add_window_headers(headers, &prefix, &family.usage, now_s);
            insert(headers, &format!("{prefix}-limit-name"), &family.limit_name);
        }
        let active_id = active.map_or(MAIN_FAMILY, |f| f.id.as_str());
        insert(headers, "x-codex-active-limit", active_id);
        insert(headers, "x-codex-plan-type", &self.plan_type);
        let flag = |on: bool| if on { "true" } else { "false" };
        insert(
            headers,
            "x-codex-credits-has-credits",
            flag(self.credits.has_credits),
        );
        insert(
            headers,
            "x-codex-credits-unlimited",
            flag(self.credits.unlimited),
        );
        insert(
            headers,
            "x-codex-credits-balance",
            &format_number(self.credits.balance),
        );
        if let Some(message) = &self.promo_message {
            insert(headers, "x-codex-promo-message", message);
        }
    }

    /// The usage payload of `/wham/usage` and `/codex/usage`.
    pub fn payload(&self, now_s: u64) -> Value {
        let usable = self.credits.usable();
        let additional: Vec<Value> = self
            .families
            .iter()
            .map(|family| {
                json!({
                    "limit_name": family.limit_name,
                    "metered_feature": family.id,
                    "rate_limit": rate_limit_json(&family.usage, usable, now_s),
                })
            })
            .collect();
        let reached_type = match &self.reached_type {
            Some(kind) => json!({"type": kind}),
            None if self.main.limit_reached() => json!({"type": "rate_limit_reached"}),
            None => Value::Null,
        };
        json!({
            "plan_type": self.plan_type,
            "rate_limit": rate_limit_json(&self.main, usable, now_s),
            "credits": {
                "has_credits": self.credits.has_credits,
                "unlimited": self.credits.unlimited,
                "balance": format_number(self.credits.balance),
            },
            "additional_rate_limits": additional,
            "rate_limit_reached_type": reached_type,
            "rate_limit_reset_credits": {"available_count": self.banked_resets},
        })
    }
}

/// `{allowed, limit_reached, primary_window, secondary_window}`; credits keep a spent
/// limit allowed.
fn rate_limit_json(usage: &LiveUsage, credits_usable: bool, now_s: u64) -> Value {
    let window = |w: &Option<LiveWindow>| match w {
        Some(w) if w.has_data() => json!({
            "used_percent": json_number(w.used_percent),
            "limit_window_seconds": w.window_minutes * 60,
            "reset_after_seconds": w.reset_after_s(now_s),
            "reset_at": w.reset_at_s,
        }),
        Some(w) => json!({
            "used_percent": json_number(w.used_percent),
            "limit_window_seconds": null,
            "reset_after_seconds": null,
            "reset_at": null,
        }),
        None => Value::Null,
    };
    let reached = usage.limit_reached();
    json!({
        "allowed": !reached || credits_usable,
        "limit_reached": reached,
        "primary_window": window(&usage.primary),
        "secondary_window": window(&usage.secondary),
    })
}

/// `x-<prefix>-{primary,secondary}-*`; a missing window is left out, a "no data" one has
/// window-minutes 0 and empty resets.
fn add_window_headers(headers: &mut HeaderMap, prefix: &str, usage: &LiveUsage, now_s: u64) {
    let windows = [("primary", &usage.primary), ("secondary", &usage.secondary)];
    for (slot, window) in windows {
        let Some(window) = window else { continue };
        let (reset_at, reset_after) = if window.has_data() {
            (
                window.reset_at_s.to_string(),
                window.reset_after_s(now_s).to_string(),
            )
        } else {
            (String::new(), String::new())
        };
        let values = [
            ("used-percent", format_number(window.used_percent)),
            ("window-minutes", window.window_minutes.to_string()),
            ("reset-at", reset_at),
            ("reset-after-seconds", reset_after),
        ];
        for (suffix, value) in values {
            insert(headers, &format!("{prefix}-{slot}-{suffix}"), &value);
        }
    }
}

/// `42` rather than `42.0` for whole numbers, like the real headers and balances.
fn format_number(number: f64) -> String {
    format!("{number}")
}

/// Whole percentages as JSON integers, as the real payload has them.
fn json_number(number: f64) -> Value {
    if number.fract() == 0.0 && number.abs() < 1e15 {
        json!(number as i64)
    } else {
        json!(number)
    }
}

/// `2026-05-01T12:00:00Z` for a unix second (the civil-from-days algorithm).
fn iso8601(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64;
    let seconds = unix_s % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// A change to an account's limits at run time; every part is optional, and `null`
/// clears the optional texts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitsUpdate {
    /// Replaces every family (their resets count from now).
    #[serde(default)]
    pub families: Option<Vec<FamilyScript>>,
    #[serde(default)]
    pub credits: Option<Credits>,
    /// Replaces the banked resets with this many fresh ones.
    #[serde(default)]
    pub banked_resets: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub rate_limit_reached_type: Option<Option<String>>,
    #[serde(default)]
    pub family_in_plain_headers: Option<bool>,
    #[serde(default)]
    pub enforce_limits: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub promo_message: Option<Option<String>>,
}

/// Tells a field set to `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// Why a limits change was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsError {
    UnknownAccount(UnknownAccount),
    /// A family that cannot be scripted (bad or repeated id, unknown family).
    InvalidFamily(String),
}

impl std::fmt::Display for LimitsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitsError::UnknownAccount(e) => e.fmt(f),
            LimitsError::InvalidFamily(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for LimitsError {}

impl From<UnknownAccount> for LimitsError {
    fn from(e: UnknownAccount) -> LimitsError {
        LimitsError::UnknownAccount(e)
    }
}

impl World {
    /// Applies every part of `update` that is set; resets it scripts count from now.
    pub fn update_limits(
        &mut self,
        account_id: &str,
        update: LimitsUpdate,
    ) -> Result<(), LimitsError> {
        let account = self.account_mut(account_id)?;
        if let Some(families) = &update.families {
            validate_families(families).map_err(LimitsError::InvalidFamily)?;
        }
        let now_s = clock::now_s();
        let script = &mut account.script;
        if let Some(families) = update.families {
            account.limits.families = pin_families(&families, now_s);
            script.families = families;
        }
        if let Some(credits) = update.credits {
            account.limits.credits = credits;
        }
        if let Some(count) = update.banked_resets {
            account.limits.banked = bank(count, now_s);
        }
        if let Some(kind) = update.rate_limit_reached_type {
            script.rate_limit_reached_type = kind;
        }
        if let Some(on) = update.family_in_plain_headers {
            script.family_in_plain_headers = on;
        }
        if let Some(on) = update.enforce_limits {
            script.enforce_limits = on;
        }
        if let Some(message) = update.promo_message {
            script.promo_message = message;
        }
        Ok(())
    }

    /// Replaces one family's windows; their resets count from now.
    pub fn set_family_usage(
        &mut self,
        account_id: &str,
        family_id: &str,
        usage: &Usage,
    ) -> Result<(), LimitsError> {
        let family = self
            .account_mut(account_id)?
            .limits
            .families
            .iter_mut()
            .find(|f| f.id == family_id)
            .ok_or_else(|| LimitsError::InvalidFamily(format!("no family {family_id:?}")))?;
        family.usage = LiveUsage::pin(usage, clock::now_s());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_like_the_backend() {
        assert_eq!(format_number(42.0), "42");
        assert_eq!(format_number(12.5), "12.5");
        assert_eq!(json_number(42.0), json!(42));
        assert_eq!(json_number(12.5), json!(12.5));
    }

    #[test]
    fn iso8601_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_770_000_000), "2026-02-02T02:40:00Z");
    }

    #[test]
    fn family_ids_are_checked() {
        let family = |id: &str| FamilyScript::new(id, "name", &[]);
        assert!(validate_families(&[family("codex_bengalfox")]).is_ok());
        assert!(validate_families(&[family("Codex_X")]).is_err());
        assert!(validate_families(&[family("codex")]).is_err());
        assert!(validate_families(&[family("a_b"), family("a-b")]).is_err());
        assert!(validate_families(&[family("")]).is_err());
    }
}
