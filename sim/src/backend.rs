//! The Codex backend under `/backend-api`: the model stream and the profile (the usage
//! endpoints are in `usage.rs`). Every request must name a scripted account in
//! `chatgpt-account-id` and carry one of that account's valid access tokens.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response};
use serde_json::{Value, json};

use crate::body::{SimBody, Step};
use crate::cipher::ContentKey;
use crate::jwt::random_urlsafe;
use crate::limits::{Gate, LimitReport};
use crate::reply::{self, Reply};
use crate::script::{Behavior, RetryAfterFormat};
use crate::sse::{Reasoning, ResponseEvents, StreamFailure};
use crate::state::{AccessCheck, Account, RequestTracker, Shared};
use crate::stats::{Outcome, RecordedRequest, Refusal};
use crate::{clock, encoding, errors};

/// `POST /backend-api/codex/responses`.
pub(crate) async fn codex_responses(shared: Arc<Shared>, request: Request<Incoming>) -> Reply {
    let (parts, body) = request.into_parts();
    let account_id = header(&parts.headers, "chatgpt-account-id").map(str::to_string);

    if is_websocket_upgrade(&parts.headers) {
        // pi tries a WebSocket first on Node 22 and falls back to SSE when refused.
        let mut world = shared.world.lock();
        world.recorder.global.websocket_refused += 1;
        if let Some(id) = account_id
            .as_deref()
            .filter(|id| world.account(id).is_some())
        {
            world.recorder.account(id).websocket_refused += 1;
        }
        return reply::error(
            426,
            "invalid_request_error",
            "websocket_not_supported",
            "dispatch-sim only speaks SSE on this path",
        );
    }
    if parts.method != Method::POST {
        return reply::method_not_allowed();
    }

    let raw = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return reply::text(400, "could not read the request body"),
    };
    let content_encoding = header(&parts.headers, "content-encoding").map(str::to_string);
    let (decoded, decode_error) = match decode_body(content_encoding.as_deref(), &raw) {
        Ok(decoded) => (Some(decoded), None),
        Err(error) => (None, Some(error)),
    };
    let body_json = decoded
        .as_deref()
        .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok());
    // The answer echoes the requested model, as the real backend does.
    let model = body_json
        .as_ref()
        .and_then(|body| Some(body.get("model")?.as_str()?.to_string()));
    let bearer = bearer(&parts.headers);

    // Authenticate, pick the behavior and log the request under one lock, so that
    // concurrent requests each pop a distinct behavior.
    let (seq, plan, refused) = {
        let mut world = shared.world.lock();
        let check = world.check_access(account_id.as_deref(), bearer);
        let mut plan = None;
        let mut refused = None;
        match (&check, account_id.as_deref()) {
            (AccessCheck::Ok, Some(id)) => {
                if let Ok(account) = world.account_mut(id) {
                    let family = account.limits.family_of(model.as_deref());
                    refused =
                        Refused::check(account, family, &shared.content_key, body_json.as_ref());
                    if refused.is_none() {
                        // A queued behavior is answered as scripted; only the default
                        // answer is held to the limits.
                        let now_s = clock::now_s();
                        let gate = if account.behaviors.is_empty() {
                            account.gate(family, now_s)
                        } else {
                            Gate::Open
                        };
                        let behavior = match gate {
                            Gate::Refused { resets_at_s } => {
                                Behavior::usage_limit(resets_at_s.saturating_sub(now_s))
                            }
                            _ => account.next_behavior(),
                        };
                        plan = Some(Answer {
                            account_id: id.to_string(),
                            plan_type: account.script.plan.clone(),
                            limits: account.limit_report(family),
                            gate,
                            behavior,
                            model,
                            input_bytes: decoded.as_ref().map_or(raw.len(), Bytes::len),
                        });
                    }
                }
            }
            (AccessCheck::BadToken, Some(id)) => world.recorder.account(id).unauthorized += 1,
            _ => world.recorder.global.unknown_account += 1,
        }
        if let Some(id) = account_id
            .as_deref()
            .filter(|id| world.account(id).is_some())
        {
            let counts = world.recorder.account(id);
            counts.responses += 1;
            if let Some(answer) = &plan {
                counts.served += 1;
                match answer.gate {
                    Gate::Open => {}
                    Gate::PaidFromCredits => counts.credit_served += 1,
                    Gate::Refused { .. } => counts.limit_refused += 1,
                }
                *counts
                    .behaviors
                    .entry(answer.behavior.kind().to_string())
                    .or_default() += 1;
            }
            match &refused {
                Some(Refused::Deactivated(_)) => counts.deactivated_refused += 1,
                Some(Refused::ForeignCiphertext { .. }) => counts.encrypted_content_refused += 1,
                None => {}
            }
        }
        let seq = world.recorder.push_request(RecordedRequest {
            seq: 0,
            account_id: account_id.clone(),
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            headers: header_map(&parts.headers),
            content_encoding,
            raw_body: raw,
            body: decoded,
            decode_error,
            behavior: plan.as_ref().map(|answer| answer.behavior.clone()),
            status: 0,
            outcome: Outcome::InFlight,
            received_at_ms: clock::now_ms(),
            refusal: refused.as_ref().map(Refused::refusal),
            response_encoding: None,
        });
        (seq, plan, refused)
    };

    // The tracker lives in this future until the body takes it over: if the client
    // leaves during the latency or a hang, hyper drops the future and the tracker
    // records the disconnect.
    let tracker = RequestTracker::new(shared.clone(), seq);
    if shared.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(shared.latency_ms)).await;
    }
    let reply = match (plan, refused) {
        (Some(answer), _) => answer.send(&shared.content_key).await,
        (None, Some(refused)) => refused.reply(),
        (None, None) => reply::error(
            401,
            "invalid_request_error",
            "token_invalid",
            "Your authentication token is invalid or does not belong to this account.",
        ),
    };
    let (reply, response_encoding) =
        encoding::compress_error(reply, encoding::accepts_gzip(&parts.headers));
    tracker.set_status(reply.status().as_u16());
    if let Some(encoding) = response_encoding {
        tracker.set_response_encoding(encoding);
    }
    reply.map(|body| body.tracked(tracker))
}

/// A request that passed auth but is answered before the behavior queue is consulted,
/// so it takes no behavior.
enum Refused {
    /// The account is deactivated: the 401 with this code.
    Deactivated(String),
    /// `input` replays ciphertext that this account did not mint.
    ForeignCiphertext {
        item_id: String,
        null_code: bool,
        /// Boxed: the report is large and the refusal is the rare case.
        limits: Box<LimitReport>,
    },
}

impl Refused {
    /// `family` is the one the request's model counts against, for the refusal's headers.
    fn check(
        account: &Account,
        family: Option<usize>,
        key: &ContentKey,
        body: Option<&Value>,
    ) -> Option<Refused> {
        if let Some(code) = &account.script.deactivated {
            return Some(Refused::Deactivated(code.clone()));
        }
        let check = account.script.encrypted_content;
        if !check.verify {
            return None;
        }
        let item_id = key.first_foreign_item(&account.script.account_id, body?)?;
        Some(Refused::ForeignCiphertext {
            item_id,
            null_code: check.null_code,
            limits: Box::new(account.limit_report(family)),
        })
    }

    fn refusal(&self) -> Refusal {
        match self {
            Refused::Deactivated(_) => Refusal::AccountDeactivated,
            Refused::ForeignCiphertext { .. } => Refusal::InvalidEncryptedContent,
        }
    }

    fn reply(self) -> Reply {
        match self {
            // Like a refused token, a deactivated account gets no rate-limit headers.
            Refused::Deactivated(code) => errors::deactivated(&code),
            Refused::ForeignCiphertext {
                item_id,
                null_code,
                limits,
            } => {
                let mut reply = errors::invalid_encrypted_content(&item_id, null_code);
                limits.add_headers(reply.headers_mut(), clock::now_s());
                reply
            }
        }
    }
}

/// Everything needed to answer an authenticated request.
struct Answer {
    account_id: String,
    plan_type: String,
    limits: LimitReport,
    gate: Gate,
    behavior: Behavior,
    model: Option<String>,
    input_bytes: usize,
}

impl Answer {
    async fn send(mut self, key: &ContentKey) -> Reply {
        let reasoning_id = format!("rs_sim_{}", random_urlsafe(12));
        let reasoning = Reasoning {
            encrypted_content: key.mint(&self.account_id, &reasoning_id),
            id: reasoning_id,
            summary: match &self.behavior {
                Behavior::Ok {
                    reasoning_summary, ..
                } => reasoning_summary.clone(),
                _ => None,
            },
        };
        let events = ResponseEvents::new(self.model.clone(), self.input_bytes, reasoning);
        let default_text = format!("hello from {}", self.account_id);
        let now = clock::now_s();
        if let Gate::Refused { resets_at_s } = self.gate {
            // Counted from the moment of sending, so `resets_at` is the spent window's.
            self.behavior = Behavior::usage_limit(resets_at_s.saturating_sub(now));
        }
        let mut reply = match self.behavior.clone() {
            Behavior::Ok {
                text,
                deltas,
                delay_ms,
                first_delay_ms,
                opening,
                reasoning_summary: _,
            } => {
                let text = text.unwrap_or(default_text);
                sse(events
                    .ok(&text, deltas, delay_ms, first_delay_ms, opening.as_deref())
                    .into_iter())
            }
            Behavior::Big { bytes } => sse(events.big(bytes)),
            Behavior::UsageLimit { resets_in_seconds } => reply::json(
                429,
                &json!({"error": {
                    "type": "usage_limit_reached",
                    "message": "The usage limit has been reached",
                    "plan_type": self.plan_type,
                    "resets_at": now + resets_in_seconds,
                    "resets_in_seconds": resets_in_seconds,
                }}),
            ),
            Behavior::UsageNotIncluded => reply::json(
                429,
                &json!({"error": {
                    "type": "usage_not_included",
                    "message": "Codex is not included in your plan.",
                    "plan_type": self.plan_type,
                }}),
            ),
            Behavior::RateLimited {
                retry_after_seconds,
                retry_after_format,
            } => {
                let message = format!(
                    "Rate limit reached for requests. Please try again in {retry_after_seconds}s."
                );
                let reply = reply::json(
                    429,
                    &json!({"error": {"type": "rate_limit_exceeded", "code": "rate_limit_exceeded", "message": message}}),
                );
                errors::with_retry_hint(reply, retry_after_seconds, retry_after_format)
            }
            Behavior::StreamError {
                code,
                style,
                after_created,
                message,
                opening,
                error_type,
                resets_in_seconds,
                extra,
            } => sse(events
                .stream_error(StreamFailure {
                    code: &code,
                    style,
                    after_created,
                    message: message.as_deref(),
                    opening: opening.as_deref(),
                    error_type: error_type.as_deref(),
                    resets_in_seconds,
                    fields: &extra,
                })
                .into_iter()),
            Behavior::Unauthorized => reply::error(
                401,
                "invalid_request_error",
                "token_expired",
                "Provided authentication token is expired. Please try signing in again.",
            ),
            Behavior::ServerError {
                status,
                retry_after_seconds,
            } => {
                let reply = reply::error(
                    status,
                    "server_error",
                    "server_error",
                    "dispatch-sim: simulated server error",
                );
                with_retry_after(reply, retry_after_seconds)
            }
            Behavior::CutAfterFirstDelta { text } => {
                let text = text.unwrap_or(default_text);
                sse(events.cut_after_first_delta(&text).into_iter())
            }
            Behavior::HangBeforeHeaders => std::future::pending().await,
            Behavior::HangAfterHeaders => sse(std::iter::once(Step::Hang)),
            Behavior::InvalidRequest {
                status,
                message,
                code,
                param,
                error_type,
            } => {
                let message = match (message, &code) {
                    (Some(message), _) => message,
                    (None, Some(code)) => errors::message_for(code),
                    (None, None) => "Unsupported parameter: temperature".to_string(),
                };
                errors::openai_error(
                    status,
                    error_type.as_deref().unwrap_or("invalid_request_error"),
                    code.as_deref(),
                    param.as_deref(),
                    &message,
                )
            }
            Behavior::Detail { status, detail } => reply::json(status, &json!({"detail": detail})),
            Behavior::DeactivatedWorkspace => errors::deactivated_workspace(),
            Behavior::CloudflareChallenge => errors::cloudflare_challenge(),
            Behavior::Forbidden {
                authorization_error,
                error_code,
                message,
            } => {
                let message = message.unwrap_or_else(|| {
                    "Your account is not authorized to use Codex. Please contact your workspace administrator."
                        .to_string()
                });
                errors::forbidden(&authorization_error, &error_code, &message)
            }
            Behavior::Overloaded {
                code,
                status,
                retry_after_seconds,
                retry_after_format,
            } => {
                let reply = errors::openai_error(
                    status,
                    errors::type_for(&code),
                    Some(&code),
                    None,
                    &errors::message_for(&code),
                );
                match retry_after_seconds {
                    Some(seconds) => errors::with_retry_hint(reply, seconds, retry_after_format),
                    None => reply,
                }
            }
            Behavior::HangAfterCreated { opening } => {
                sse(events.hang_after_opening(opening.as_deref()).into_iter())
            }
            Behavior::HttpError {
                status,
                body,
                text,
                content_type,
                headers,
            } => errors::http_error(
                status,
                body.as_ref(),
                text.as_deref(),
                content_type.as_deref(),
                &headers,
            ),
        };
        self.limits.add_headers(reply.headers_mut(), now);
        reply
    }
}

fn sse(steps: impl Iterator<Item = Step> + Send + 'static) -> Reply {
    let mut reply = Response::new(SimBody::stream(steps));
    let headers = reply.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    reply
}

fn with_retry_after(reply: Reply, seconds: Option<u64>) -> Reply {
    match seconds {
        Some(seconds) => errors::with_retry_hint(reply, seconds, RetryAfterFormat::Seconds),
        None => reply,
    }
}

/// `GET /backend-api/me`.
pub(crate) fn me(shared: &Shared, request: &Request<Incoming>) -> Reply {
    let headers = request.headers();
    let account_id = header(headers, "chatgpt-account-id");
    let mut world = shared.world.lock();
    let check = world.check_access(account_id, bearer(headers));
    let profile = match (check, account_id.and_then(|id| world.account(id))) {
        (AccessCheck::Ok, Some(account)) => Some(json!({
            "id": account.script.user_id(),
            "email": account.script.email(),
            "name": account.script.account_id,
        })),
        _ => None,
    };
    match account_id.filter(|id| world.account(id).is_some()) {
        Some(id) => world.recorder.account(id).me += 1,
        None => world.recorder.global.unknown_account += 1,
    }
    match profile {
        Some(profile) => reply::json(200, &profile),
        None => reply::error(
            401,
            "invalid_request_error",
            "token_invalid",
            "Unauthorized",
        ),
    }
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = header(headers, "authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    header(headers, "upgrade").is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// All headers, lowercase names, repeated ones joined with ", ".
fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_string())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    map
}

/// Undoes the request's content-encoding for the log.
fn decode_body(content_encoding: Option<&str>, raw: &Bytes) -> Result<Bytes, String> {
    match content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => Ok(raw.clone()),
        Some("zstd") => decode_zstd(raw).map(Bytes::from),
        Some(other) => Err(format!("unsupported content-encoding {other:?}")),
    }
}

/// Decodes one or more concatenated zstd frames.
pub(crate) fn decode_zstd(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut input = raw;
    let mut out = Vec::new();
    while !input.is_empty() {
        let before = input.len();
        let mut decoder = ruzstd::decoding::StreamingDecoder::new(&mut input)
            .map_err(|e| format!("zstd frame header: {e}"))?;
        decoder
            .read_to_end(&mut out)
            .map_err(|e| format!("zstd body: {e}"))?;
        drop(decoder);
        if input.len() == before {
            return Err("zstd decoder made no progress".to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_round_trip_with_concatenated_frames() {
        let one = ruzstd::encoding::compress_to_vec(
            &b"hello "[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let two = ruzstd::encoding::compress_to_vec(
            &b"world"[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let both = [one, two].concat();
        assert_eq!(decode_zstd(&both).as_deref(), Ok(&b"hello world"[..]));
        assert!(decode_zstd(b"not zstd").is_err());
    }
}
