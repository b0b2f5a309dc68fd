//! The usage endpoints (`/wham/usage`, `/codex/usage`) and the banked resets
//! (`/wham/rate-limit-reset-credits`, `.../consume`, as codex-rs `rate_limit_resets.rs`
//! calls them). A CDN sits in front of all four: scripted, it answers with its HTML
//! challenge before the backend sees the call. Every call is logged with the client
//! headers the CDN judges.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde::Deserialize;
use serde_json::Value;

use crate::backend::{bearer, header};
use crate::limits::{LimitReport, reset_credits_payload};
use crate::reply::{self, Reply};
use crate::script::CdnChallenge;
use crate::state::{AccessCheck, Shared};
use crate::stats::UsageRequest;
use crate::{clock, errors};

/// Which endpoint was called; tests can script the usage paths apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UsagePath {
    /// `GET /backend-api/wham/usage`
    Wham,
    /// `GET /backend-api/codex/usage`
    Codex,
    /// `GET /backend-api/wham/rate-limit-reset-credits`
    ResetCredits,
    /// `POST /backend-api/wham/rate-limit-reset-credits/consume`
    ConsumeReset,
}

/// The body codex-rs sends to consume a banked reset.
#[derive(Deserialize)]
struct ConsumeRequest {
    redeem_request_id: String,
    #[serde(default)]
    credit_id: Option<String>,
}

/// What one call is answered with, decided under the lock and sent after the delay.
enum Answer {
    Challenge,
    Unauthorized,
    ScriptedFailure(u16),
    BadRequest(String),
    /// Rendered when sent, so the countdowns are current.
    Usage(LimitReport),
    Json(Value),
}

impl Answer {
    fn status(&self) -> u16 {
        match self {
            Answer::Challenge => 403,
            Answer::Unauthorized => 401,
            Answer::ScriptedFailure(status) => *status,
            Answer::BadRequest(_) => 400,
            Answer::Usage(_) | Answer::Json(_) => 200,
        }
    }

    fn into_reply(self) -> Reply {
        match self {
            Answer::Challenge => errors::cloudflare_challenge(),
            Answer::Unauthorized => reply::error(
                401,
                "invalid_request_error",
                "token_invalid",
                "Unauthorized",
            ),
            Answer::ScriptedFailure(status) => reply::error(
                status,
                "server_error",
                "simulated_failure",
                "dispatch-sim: this usage path is scripted to fail",
            ),
            Answer::BadRequest(message) => {
                reply::error(400, "invalid_request_error", "invalid_request", &message)
            }
            Answer::Usage(report) => reply::json(200, &report.payload(clock::now_s())),
            Answer::Json(value) => reply::json(200, &value),
        }
    }
}

/// Serves one usage or banked-reset call.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    path: UsagePath,
) -> Reply {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return reply::text(400, "could not read the request body"),
    };
    let headers = &parts.headers;
    let account_id = header(headers, "chatgpt-account-id");
    let user_agent = header(headers, "user-agent");

    let (answer, delay_ms) = {
        let mut world = shared.world.lock();
        let now_s = clock::now_s();
        let check = world.check_access(account_id, bearer(headers));
        let known = account_id.filter(|id| world.account(id).is_some());
        let mut consumed = false;
        let mut delay_ms = 0;
        let answer = match known.map(|id| world.account_mut(id)) {
            Some(Ok(account)) => {
                let script = account.usage_endpoint.clone();
                if challenges(script.cdn_challenge, user_agent) {
                    Answer::Challenge
                } else if !matches!(check, AccessCheck::Ok) {
                    Answer::Unauthorized
                } else {
                    let (delay, status) = match path {
                        UsagePath::Wham => (script.wham_delay_ms, script.wham_status),
                        UsagePath::Codex => (script.codex_delay_ms, script.codex_status),
                        UsagePath::ResetCredits | UsagePath::ConsumeReset => (None, None),
                    };
                    delay_ms = delay.unwrap_or(script.delay_ms);
                    match (path, status) {
                        (_, Some(status)) if status != 200 => Answer::ScriptedFailure(status),
                        (UsagePath::Wham | UsagePath::Codex, _) => {
                            Answer::Usage(account.limit_report(None))
                        }
                        (UsagePath::ResetCredits, _) => {
                            Answer::Json(reset_credits_payload(&account.limits.banked))
                        }
                        (UsagePath::ConsumeReset, _) => {
                            match serde_json::from_slice::<ConsumeRequest>(&body) {
                                Ok(consume) => {
                                    let result = account.consume_reset(
                                        &consume.redeem_request_id,
                                        consume.credit_id.as_deref(),
                                        now_s,
                                    );
                                    consumed = result["code"] == "reset";
                                    Answer::Json(result)
                                }
                                Err(e) => Answer::BadRequest(format!(
                                    "expected {{\"redeem_request_id\", \"credit_id\"?}}: {e}"
                                )),
                            }
                        }
                    }
                }
            }
            _ => Answer::Unauthorized,
        };
        let challenged = matches!(answer, Answer::Challenge);
        match known {
            Some(id) => {
                let counts = world.recorder.account(id);
                match path {
                    UsagePath::Wham => counts.wham_usage += 1,
                    UsagePath::Codex => counts.codex_usage += 1,
                    UsagePath::ResetCredits => counts.reset_credits_listed += 1,
                    UsagePath::ConsumeReset => counts.reset_consume_calls += 1,
                }
                counts.cdn_challenged += u64::from(challenged);
                counts.resets_consumed += u64::from(consumed);
            }
            None => world.recorder.global.unknown_account += 1,
        }
        world.recorder.push_usage_request(UsageRequest {
            account_id: account_id.map(str::to_string),
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            user_agent: user_agent.map(str::to_string),
            originator: header(headers, "originator").map(str::to_string),
            status: answer.status(),
            cdn_challenged: challenged,
            received_at_ms: clock::now_ms(),
        });
        (answer, delay_ms)
    };

    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    answer.into_reply()
}

/// The endpoint a path names and the method it takes.
pub(crate) fn route(path: &str) -> Option<(UsagePath, Method)> {
    match path {
        "/backend-api/wham/usage" => Some((UsagePath::Wham, Method::GET)),
        "/backend-api/codex/usage" => Some((UsagePath::Codex, Method::GET)),
        "/backend-api/wham/rate-limit-reset-credits" => {
            Some((UsagePath::ResetCredits, Method::GET))
        }
        "/backend-api/wham/rate-limit-reset-credits/consume" => {
            Some((UsagePath::ConsumeReset, Method::POST))
        }
        _ => None,
    }
}

/// Generic HTTP libraries and tools, which the CDN's bot rules challenge; real clients
/// name themselves (`codex_cli_rs/0.x (...)`, `pi/1.x (...)`, a browser).
const BARE_AGENTS: &[&str] = &[
    "curl",
    "wget",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "go-http-client",
    "java",
    "okhttp",
    "axios",
    "node-fetch",
    "undici",
    "node",
    "reqwest",
    "libwww-perl",
];

fn challenges(mode: CdnChallenge, user_agent: Option<&str>) -> bool {
    match mode {
        CdnChallenge::Never => false,
        CdnChallenge::Always => true,
        CdnChallenge::WithoutUserAgent => !looks_like_a_client(user_agent),
    }
}

fn looks_like_a_client(user_agent: Option<&str>) -> bool {
    let Some(agent) = user_agent.map(str::trim).filter(|a| !a.is_empty()) else {
        return false;
    };
    let product = agent.split(['/', ' ']).next().unwrap_or_default();
    !BARE_AGENTS
        .iter()
        .any(|bare| product.eq_ignore_ascii_case(bare))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_http_libraries_do_not_look_like_clients() {
        for agent in [
            "curl/8.5.0",
            "reqwest/0.12",
            "node",
            "Python-urllib/3.12",
            "  ",
        ] {
            assert!(!looks_like_a_client(Some(agent)), "{agent}");
        }
        assert!(!looks_like_a_client(None));
        for agent in [
            "codex_cli_rs/0.122.0 (Linux 6.8; x86_64) xterm",
            "pi/1.6.0 (linux; node/22.15.0; x64)",
            "Mozilla/5.0 (X11; Linux x86_64)",
        ] {
            assert!(looks_like_a_client(Some(agent)), "{agent}");
        }
    }
}
