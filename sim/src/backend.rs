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
use crate::clock;
use crate::limits::{Gate, LimitReport};
use crate::reply::{self, Reply};
use crate::script::Behavior;
use crate::sse::ResponseEvents;
use crate::state::{AccessCheck, RequestTracker, Shared};
use crate::stats::{Outcome, RecordedRequest};

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
    // The answer echoes the requested model, as the real backend does.
    let model = decoded
        .as_deref()
        .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
        .and_then(|body| Some(body.get("model")?.as_str()?.to_string()));
    let bearer = bearer(&parts.headers);

    // Authenticate, pick the behavior and log the request under one lock, so that
    // concurrent requests each pop a distinct behavior.
    let (seq, plan) = {
        let mut world = shared.world.lock();
        let check = world.check_access(account_id.as_deref(), bearer);
        let mut plan = None;
        match (&check, account_id.as_deref()) {
            (AccessCheck::Ok, Some(id)) => {
                if let Ok(account) = world.account_mut(id) {
                    // A queued behavior is answered as scripted; only the default
                    // answer is held to the limits.
                    let family = account.limits.family_of(model.as_deref());
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
        });
        (seq, plan)
    };

    // The tracker lives in this future until the body takes it over: if the client
    // leaves during the latency or a hang, hyper drops the future and the tracker
    // records the disconnect.
    let tracker = RequestTracker::new(shared.clone(), seq);
    if shared.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(shared.latency_ms)).await;
    }
    let reply = match plan {
        Some(answer) => answer.send().await,
        None => reply::error(
            401,
            "invalid_request_error",
            "token_invalid",
            "Your authentication token is invalid or does not belong to this account.",
        ),
    };
    tracker.set_status(reply.status().as_u16());
    reply.map(|body| body.tracked(tracker))
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
    async fn send(mut self) -> Reply {
        let events = ResponseEvents::new(self.model.clone(), self.input_bytes);
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
            } => {
                let text = text.unwrap_or(default_text);
                sse(events
                    .ok(&text, deltas, delay_ms, first_delay_ms)
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
            } => {
                let message = format!(
                    "Rate limit reached for requests. Please try again in {retry_after_seconds}s."
                );
                let reply = reply::json(
                    429,
                    &json!({"error": {"type": "rate_limit_exceeded", "code": "rate_limit_exceeded", "message": message}}),
                );
                with_retry_after(reply, Some(retry_after_seconds))
            }
            Behavior::StreamError {
                code,
                style,
                after_created,
                message,
            } => sse(events
                .stream_error(&code, style, after_created, message.as_deref())
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

fn with_retry_after(mut reply: Reply, seconds: Option<u64>) -> Reply {
    if let Some(seconds) = seconds {
        reply
            .headers_mut()
            .insert("retry-after", HeaderValue::from(seconds));
    }
    reply
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
