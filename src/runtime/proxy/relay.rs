//! What goes back to pi: a 200 stream held back until its first output, an upstream error
//! relayed as it came, or the proxy's own answer when no account can serve.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use crate::domain::account::Account;
use crate::domain::failure::{Action, Failure};
use crate::domain::select::{self, Availability, Need};
use crate::domain::sse::{EventReader, EventTooLarge, MAX_EVENT_BYTES, Peek};
use crate::domain::text::{self, Unavailable};
use crate::io::clock::now_ms;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// An error reply is read up to this size, and for this long, to classify it.
const MAX_ERROR_BODY: usize = 64 * 1024;
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Opening events beyond this release the stream: no failure is coming that early.
const MAX_HELD_BYTES: usize = 8 * 1024 * 1024;

pub fn full(text: String) -> ProxyBody {
    full_bytes(Bytes::from(text))
}

pub fn full_bytes(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn respond(
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: ProxyBody,
) -> Response<ProxyBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().extend(headers);
    response
}

/// A 200 stream's start that failed before any output.
pub struct HeldFailure {
    pub failure: Failure,
    /// The stream as it came (held bytes and the rest), for a failure pi must see itself.
    pub relay: Option<ProxyBody>,
}

/// Holds a 200 stream until its first output event. A failure before that is returned so the
/// request can move on; once output starts, the held bytes and the rest stream to pi as they
/// arrive, and dropping the body (pi went away) closes the upstream connection. `silence`
/// bounds the wait for each chunk before the first output: a stalled upstream is failed over.
pub async fn hold_back(
    upstream: reqwest::Response,
    silence: Duration,
) -> Result<ProxyBody, HeldFailure> {
    let failed = |failure| HeldFailure {
        failure,
        relay: None,
    };
    let mut stream = upstream.bytes_stream();
    let mut reader = EventReader::default();
    'held: loop {
        let chunk = match tokio::time::timeout(silence, stream.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(_)) | None) => {
                return Err(failed(Failure::backend(
                    "the reply ended before any output",
                )));
            }
            Err(_) => {
                return Err(failed(Failure::Stalled {
                    what: format!(
                        "no byte for {} s before any output",
                        silence.as_secs_f64().round()
                    ),
                }));
            }
        };
        reader.push(&chunk).map_err(|EventTooLarge| {
            failed(Failure::backend(format!(
                "an event over {} MiB",
                MAX_EVENT_BYTES >> 20
            )))
        })?;
        while let Some(peek) = reader.next_event(now_ms()) {
            match peek {
                Peek::Opening => {}
                Peek::Failed(failure) if failure.action() == Action::PassToPi => {
                    // pi reads the backend's own words (a context overflow makes it compact).
                    return Err(HeldFailure {
                        failure,
                        relay: Some(released(reader, stream)),
                    });
                }
                Peek::Failed(failure) => return Err(failed(failure)),
                Peek::Output => break 'held,
            }
        }
        if reader.held_len() > MAX_HELD_BYTES {
            break;
        }
    }
    Ok(released(reader, stream))
}

/// What was held, then the rest of the stream as it arrives.
fn released(
    reader: EventReader,
    stream: impl futures_util::Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
) -> ProxyBody {
    let held = futures_util::stream::once(std::future::ready(Ok(Frame::data(Bytes::from(
        reader.into_held(),
    )))));
    let rest = stream
        .map_ok(Frame::data)
        .map_err(|e| Box::new(e) as BoxError);
    StreamBody::new(held.chain(rest)).boxed_unsync()
}

/// Enough of an error body to classify it; a body that does not come is treated as empty.
pub async fn read_error_body(upstream: reqwest::Response) -> Bytes {
    let mut stream = upstream.bytes_stream();
    let mut bytes = Vec::new();
    let read = async {
        while let Some(Ok(chunk)) = stream.next().await {
            bytes.extend_from_slice(&chunk);
            if bytes.len() >= MAX_ERROR_BODY {
                bytes.truncate(MAX_ERROR_BODY);
                break;
            }
        }
    };
    let _ = tokio::time::timeout(ERROR_BODY_TIMEOUT, read).await;
    Bytes::from(bytes)
}

/// No account can serve: each account's state, the last failure of those that were tried.
/// Quota words ("usage limit", "needs /dispatch-login") never match pi's auto-retry, so a spent
/// pool ends the turn at once. A backend failure keeps its own words ("HTTP 503", "connection
/// refused"), which pi's session layer does retry: that retry is cheap (benched accounts are
/// skipped) and is what plain pi gives a brief outage.
pub fn exhausted_message(
    accounts: &[Account],
    failures: &[(String, Failure)],
    need: &Need<'_>,
    now_ms: u64,
    tz: &jiff::tz::TimeZone,
) -> String {
    let rows: Vec<Unavailable<'_>> = accounts
        .iter()
        .map(|account| {
            let availability = select::availability(account, need.family, now_ms);
            let failed_here = failures.iter().rev().find(|(id, _)| *id == account.id);
            let paid_by = select::paid_by(account, need.family, now_ms);
            Unavailable {
                label: &account.label,
                why: match failed_here {
                    Some((_, failure)) => text::report::failure(failure),
                    None => text::report::standing(&availability, paid_by, need.spend_money),
                },
                needs_login: matches!(availability, Availability::NeedsLogin { .. }),
                back_at_ms: availability.back_at(),
            }
        })
        .collect();
    text::exhausted(&rows, now_ms, tz)
}

/// A 200 event stream holding one `response.failed`: pi reports its message as the error. Never
/// an error status, which pi 0.73's client would retry three times (it retries 429 and 5xx).
pub fn failure_stream(message: &str) -> Response<ProxyBody> {
    let event = serde_json::json!({
        "type": "response.failed",
        "response": {
            "id": "resp_pi_dispatch",
            "status": "failed",
            "error": { "code": "pi_dispatch_unavailable", "message": message },
        },
    });
    let mut response = Response::new(full(format!("event: response.failed\ndata: {event}\n\n")));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}
