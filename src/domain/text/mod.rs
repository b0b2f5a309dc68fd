//! Every sentence pi-dispatch shows a person, and the one format for times. This module builds
//! them from plain values; [`report`] lays out the pool's state (status, failures) with them.
//!
//! Wording rules that matter beyond style: messages about quota never contain the words pi's
//! turn retry reacts to ("rate limit", "429", "overloaded", "timed out", …; see
//! codex-backend.md), so a spent pool ends the turn at once; a secret never enters any text.

use std::fmt::Write as _;

use jiff::tz::TimeZone;

pub mod report;
pub mod table;
pub mod ui;

// ---- Time ----

/// "Tue 09:00, in 2h 14m" in `tz`; a time more than six days ahead names its date too.
pub fn when(at_ms: u64, now_ms: u64, tz: &TimeZone) -> String {
    let local = i64::try_from(at_ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| {
            let format = if at_ms.saturating_sub(now_ms) > 6 * 24 * 3600 * 1000 {
                "%a %d %b %H:%M"
            } else {
                "%a %H:%M"
            };
            t.to_zoned(tz.clone()).strftime(format).to_string()
        })
        .unwrap_or_else(|| "later".into());
    format!("{local}, in {}", countdown(at_ms.saturating_sub(now_ms)))
}

/// "45s", "12m", "2h 14m", "3d 4h".
pub fn countdown(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

// ---- Why an account cannot serve ----

/// The reasons an account takes a state, as stored with it.
pub const BENCH_USAGE_LIMIT: &str = "usage limit";
pub const BENCH_THROTTLED: &str = "throttled";
pub const BENCH_CDN: &str = "blocked by the CDN (a challenge page instead of an answer)";
pub const BENCH_STALLED: &str = "stalled (no answer in time)";
pub const DISABLED_NO_CODEX: &str = "the plan does not include Codex";
pub const ACCOUNT_REMOVED: &str = "the account was removed";
/// Why a session left an account that is no longer in the pool.
pub const WAS_REMOVED: &str = "was removed";
pub const REFRESH_TOKEN_REFUSED: &str = "the token endpoint refused the refresh token";

/// The words for a `rate_limit_reached_type` about a workspace, when it is one.
pub fn workspace_limit(reached: &str) -> Option<&'static str> {
    match reached {
        "workspace_owner_credits_depleted" | "workspace_member_credits_depleted" => {
            Some("workspace credits depleted")
        }
        "workspace_owner_usage_limit_reached" | "workspace_member_usage_limit_reached" => {
            Some("workspace usage limit reached")
        }
        _ => None,
    }
}

// ---- Usage calls ----

/// A usage call the CDN in front of the backend answered with its challenge page.
pub fn cdn_challenge(path: &str) -> String {
    format!(
        "{path}: the CDN in front of ChatGPT (Cloudflare) answered with a challenge page \
         (HTTP 403): it blocked this call; the login is fine"
    )
}

// ---- Settings ----

pub fn spend_set(on: bool) -> String {
    if on {
        "pi-dispatch: paid requests are on: once every account's included quota is spent, \
         accounts whose credits pay and usage-based plans serve, at your expense."
            .into()
    } else {
        "pi-dispatch: paid requests are off: credits and usage-based plans are never used.".into()
    }
}

// ---- The proxy ----

/// A rotation, told once to the session it moved.
pub fn notice(
    from_label: &str,
    to_label: &str,
    why: &str,
    back_at_ms: Option<u64>,
    pin_cleared: bool,
    now_ms: u64,
    tz: &TimeZone,
) -> String {
    let back = back_at_ms.map_or_else(String::new, |at| {
        format!(" (back {})", when(at, now_ms, tz))
    });
    let pin = if pin_cleared {
        "; your /dispatch-use pin is cleared"
    } else {
        ""
    };
    format!("pi-dispatch: {from_label}: {why}{back}; now using {to_label}{pin}")
}

/// One account in the exhausted message.
pub struct Unavailable<'a> {
    pub label: &'a str,
    pub why: String,
    pub needs_login: bool,
    pub back_at_ms: Option<u64>,
}

/// No account can serve: what each is doing and when the first is back. Worded so that pi's
/// turn retry does not fire (see the module comment).
pub fn exhausted(accounts: &[Unavailable<'_>], now_ms: u64, tz: &TimeZone) -> String {
    if accounts.is_empty() {
        return "pi-dispatch has no accounts yet: add one with /dispatch-login.".into();
    }
    let mut first_back: Option<(u64, &str)> = None;
    let rows: Vec<String> = accounts
        .iter()
        .map(|account| {
            let mut why = account.why.clone();
            if account.needs_login {
                let _ = write!(why, ", run /dispatch-login {}", account.label);
            }
            match account.back_at_ms {
                Some(at) => {
                    if first_back.is_none_or(|(t, _)| at < t) {
                        first_back = Some((at, account.label));
                    }
                    format!("{}: {why}, back {}", account.label, when(at, now_ms, tz))
                }
                None => format!("{}: {why}", account.label),
            }
        })
        .collect();
    let lead = match accounts.len() {
        1 => "your only account cannot answer now".to_string(),
        n => format!("none of your {n} accounts can answer now"),
    };
    let mut message = format!("pi-dispatch: {lead} ({}).", rows.join("; "));
    if let Some((at, label)) = first_back {
        let _ = write!(message, " First back: {label}, {}.", when(at, now_ms, tz));
    }
    message
}

/// The backend is overloaded on the accounts tried. Worded so pi's turn retry (with its
/// backoff) applies: "overloaded" is one of its retry words.
pub fn overloaded(labels: &[&str]) -> String {
    format!(
        "pi-dispatch: the backend is overloaded (tried {}); pi tries again shortly.",
        labels.join(" and ")
    )
}

/// The proxy could not read the accounts file.
pub fn proxy_store_problem(chain: &str) -> String {
    format!("pi-dispatch: {chain}")
}

// ---- /dispatch-status, the footer, /dispatch-use ----

pub fn pinned(label: &str) -> String {
    format!("pi-dispatch: this session now uses {label} (pinned until a rotation moves it off)")
}

pub fn cannot_pin(label: &str, why: &str) -> String {
    format!("{label:?} cannot serve now: {why}")
}

// ---- Labels and the pool's upkeep ----

pub fn bad_label(label: &str, max_chars: usize) -> String {
    format!(
        "{label:?} cannot be a label: use one word of 1 to {max_chars} characters, without spaces"
    )
}

pub fn label_taken(label: &str, owner: &str) -> String {
    format!(
        "the label {label:?} is already used by another account ({owner}); choose another \
         label, or free this one with /dispatch-rename or /dispatch-remove"
    )
}

pub fn unknown_label(label: &str) -> String {
    format!("no account is labelled {label:?}; /dispatch-status lists the accounts")
}

pub fn removed(label: &str) -> String {
    format!("pi-dispatch: removed {label:?}.")
}

pub fn renamed(label: &str, new_label: &str) -> String {
    format!("pi-dispatch: {label:?} is now {new_label:?}.")
}

// ---- Logins ----

/// Why pasted text is not a redirect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasteProblem {
    Empty,
    EmptyPart,
    NotARedirect,
    NoState,
    NoCode,
}

pub fn not_a_redirect(problem: PasteProblem) -> String {
    let why = match problem {
        PasteProblem::Empty => "nothing was pasted",
        PasteProblem::EmptyPart => "the pasted text has an empty code or state",
        PasteProblem::NotARedirect => "the pasted text is not a redirect URL",
        PasteProblem::NoState => {
            "the pasted text has a code but no state, so it cannot be matched to this login"
        }
        PasteProblem::NoCode => "the pasted text has no code",
    };
    format!(
        "{why}. Paste the whole address the browser was sent to after signing in (it starts \
         with http://localhost:1455/auth/callback?code=...)"
    )
}

pub const NO_ACCOUNT_ID: &str = "the login's tokens name no ChatGPT account (no \
    chatgpt_account_id claim); nothing was changed";
pub const NO_REFRESH_TOKEN: &str = "the token endpoint's answer has no refresh token";
pub const LOGIN_CANCELLED: &str = "login cancelled; nothing was changed";
pub const LOGIN_OVER: &str =
    "this login is over (it finished, was cancelled or timed out); run /dispatch-login again";
pub const ALREADY_WAITING: &str = "this login is already being waited for";
pub const STATE_MISMATCH: &str = "the answer does not belong to this login (its state does not \
    match), so nothing was changed. Run /dispatch-login again and use the newest link";
pub const NO_BROWSER_ANSWER: &str = "no answer from the browser";
pub const DEVICE_NOT_APPROVED: &str = "the device code was not approved";
pub const DEVICE_DENIED: &str = "the device login was denied; nothing was changed";
pub const DEVICE_NO_PASTE: &str = "a device login takes no pasted URL";
pub const TOKEN_NO_ANSWER: &str = "the token endpoint did not answer";
pub const TOKEN_BROKE_OFF: &str = "the token endpoint's answer broke off";
pub const DEVICE_NO_ANSWER: &str = "the device login could not start";
pub const DEVICE_BROKE_OFF: &str = "the device login's answer broke off";
pub const DEVICE_NOT_JSON: &str = "the device login's answer is not JSON";
pub const DEVICE_NO_CODE: &str = "the device login's answer has no device id or user code";
pub const DEVICE_APPROVAL_NOT_JSON: &str = "the device login's approval is not JSON";
pub const DEVICE_APPROVAL_NO_CODE: &str = "the device login's approval has no authorization code";
pub const REFRESH_TASK_FAILED: &str = "the token refresh task failed";
pub const USAGE_TASK_FAILED: &str = "the usage fetch task failed";

pub fn not_a_token_answer(problem: &str) -> String {
    format!("the token endpoint's answer is not a token response ({problem})")
}

pub fn timed_out(waited_s: u64, for_what: &str) -> String {
    let span = if waited_s >= 60 && waited_s.is_multiple_of(60) {
        format!("{} minutes", waited_s / 60)
    } else {
        format!("{waited_s} seconds")
    };
    format!("{for_what} within {span}; nothing was changed. Run /dispatch-login again")
}

pub fn sign_in_refused(error: &str, description: Option<&str>) -> String {
    let detail = description.map_or_else(String::new, |d| format!(": {d}"));
    format!(
        "the sign-in was refused ({error}{detail}); nothing was changed. Run /dispatch-login \
         to try again"
    )
}

pub fn code_refused(status: &str, code: Option<&str>) -> String {
    let code = code.map_or_else(String::new, |c| format!(", {c}"));
    format!(
        "the token endpoint refused the authorization code ({status}{code}); nothing was \
         changed. Run /dispatch-login again"
    )
}

pub fn device_failed(status: &str) -> String {
    format!("the device login failed (the issuer answered {status}); nothing was changed")
}

pub fn device_cannot_start(status: &str) -> String {
    format!(
        "the device login could not start (the issuer answered {status}); try the browser login"
    )
}

pub fn port_in_use(port: u16) -> String {
    format!("port {port} is in use; paste the redirect URL")
}

pub fn cannot_listen(port: u16, why: &str) -> String {
    format!("cannot listen on 127.0.0.1:{port} ({why}); paste the redirect URL")
}

/// The page the browser shows after the callback: a title and a sentence.
pub struct Page {
    pub title: &'static str,
    pub text: String,
}

pub fn page_signed_in(label: &str) -> Page {
    Page {
        title: "Signed in",
        text: format!(
            "pi-dispatch saved the account {label:?}. You can close this tab and return to pi."
        ),
    }
}

pub fn page_failed(message: String) -> Page {
    Page {
        title: "Sign-in failed",
        text: message,
    }
}

pub fn page_over() -> Page {
    Page {
        title: "This sign-in is over",
        text: "pi-dispatch is no longer waiting for this sign-in: it finished, was cancelled or \
               timed out. Return to pi."
            .into(),
    }
}

pub fn page_not_found() -> Page {
    Page {
        title: "Not found",
        text: "pi-dispatch's login answers only at /auth/callback.".into(),
    }
}

pub fn page_not_an_answer() -> Page {
    Page {
        title: "Not a sign-in answer",
        text: "This address expects the redirect from the OpenAI sign-in page.".into(),
    }
}

/// What a finished login did, for the user.
pub fn login_done(
    label: &str,
    email: Option<&str>,
    plan: Option<&str>,
    added: bool,
    ignored_label: Option<&str>,
) -> String {
    let details: Vec<&str> = [email, plan].into_iter().flatten().collect();
    let head = if added {
        format!("pi-dispatch: added {label:?}")
    } else {
        format!("pi-dispatch: logged {label:?} in again")
    };
    let mut text = if details.is_empty() {
        format!("{head}.")
    } else {
        format!("{head} ({}).", details.join(", "))
    };
    if let Some(asked) = ignored_label {
        let _ = write!(
            text,
            " This account was already in the pool as {label:?} and keeps that label; \
             /dispatch-rename {label} {asked} changes it."
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdowns_round_up_to_the_unit_shown() {
        assert_eq!(countdown(0), "0s");
        assert_eq!(countdown(44_100), "45s");
        assert_eq!(countdown(3_599_000), "59m");
        assert_eq!(countdown(2 * 3_600_000 + 14 * 60_000), "2h 14m");
        assert_eq!(countdown(3 * 86_400_000 + 4 * 3_600_000), "3d 4h");
    }

    #[test]
    fn times_read_the_same_everywhere() {
        let utc = TimeZone::UTC;
        // 2026-02-02 02:40 UTC, a Monday.
        let now = 1_770_000_000_000;
        assert_eq!(when(now + 3_600_000, now, &utc), "Mon 03:40, in 1h 0m");
        assert_eq!(
            when(now + 7 * 86_400_000, now, &utc),
            "Mon 09 Feb 02:40, in 7d 0h"
        );
    }

    #[test]
    fn the_exhausted_message_reads_right_for_one_and_many() {
        let utc = TimeZone::UTC;
        let now = 1_770_000_000_000;
        let one = exhausted(
            &[Unavailable {
                label: "solo",
                why: "usage limit reached".into(),
                needs_login: false,
                back_at_ms: Some(now + 60_000),
            }],
            now,
            &utc,
        );
        assert!(
            one.starts_with("pi-dispatch: your only account cannot answer now (solo: "),
            "{one}"
        );
        let two = exhausted(
            &[
                Unavailable {
                    label: "a",
                    why: "needs /dispatch-login".into(),
                    needs_login: true,
                    back_at_ms: None,
                },
                Unavailable {
                    label: "b",
                    why: "usage limit reached".into(),
                    needs_login: false,
                    back_at_ms: Some(now + 60_000),
                },
            ],
            now,
            &utc,
        );
        assert!(two.starts_with("pi-dispatch: none of your 2 accounts can answer now (a: needs /dispatch-login, run /dispatch-login a; b: "), "{two}");
        assert!(two.ends_with("First back: b, Mon 02:41, in 1m."), "{two}");
    }
}
