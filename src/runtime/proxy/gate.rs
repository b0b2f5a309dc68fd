//! The first phase of every request: is it from the pi process that owns this proxy, and is it
//! a request the proxy serves? Anything else is answered here and never forwarded.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use rand::RngExt as _;

use super::relay::{ProxyBody, full};
use crate::config::is_loopback_host;

/// Request bodies hold a whole conversation, images included; beyond this something is wrong.
const MAX_REQUEST_BODY: usize = 64 * 1024 * 1024;
/// Request line plus headers. hyper's buffer limit does not hold a head that arrives in one
/// read, so the gate checks the size too.
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// The path pi's Codex client calls, relative to the base URL it is given.
const RESPONSES_PATH: &str = "/codex/responses";
/// What the credential's JWT payload names as the ChatGPT account. pi's client requires one
/// and forwards it as `chatgpt-account-id`; the proxy replaces it with the real account's.
const CREDENTIAL_ACCOUNT_ID: &str = "pi-dispatch";

/// A random credential for pi: JWT-shaped because pi's Codex client decodes an account id from
/// it; its signature part is this process's secret.
pub fn new_credential() -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    // pi decodes this part with `atob`, which takes the standard alphabet only.
    let claims = serde_json::json!({
        "https://api.openai.com/auth": { "chatgpt_account_id": CREDENTIAL_ACCOUNT_ID }
    });
    let payload = STANDARD.encode(claims.to_string());
    let secret: [u8; 32] = rand::rng().random();
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(secret))
}

/// Decides whether a request comes from the pi process that owns this proxy.
pub struct Gate {
    pub port: u16,
    pub expected_authorization: Vec<u8>,
}

impl Gate {
    pub fn new(port: u16, credential: &str) -> Self {
        Self {
            port,
            expected_authorization: format!("Bearer {credential}").into_bytes(),
        }
    }

    /// Everything about a request that is checked before its body is read.
    pub fn admit(&self, req: &Request<Incoming>) -> Result<(), Refusal> {
        check_head_size(req)?;
        self.check(req.headers())?;
        route(req)
    }

    fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if !self.host_is_ours(headers) {
            return Err(Refusal::forbidden(
                "the Host header must name this loopback proxy",
            ));
        }
        // Browsers always send Origin on cross-site requests; pi never does.
        if headers.contains_key(header::ORIGIN) {
            return Err(Refusal::forbidden(
                "requests from web pages are not accepted",
            ));
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if !constant_time_eq(presented, &self.expected_authorization) {
            return Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                message: "missing or wrong pi-dispatch credential".into(),
            });
        }
        Ok(())
    }

    /// Guards against DNS rebinding: only `127.0.0.1:<port>`, `localhost:<port>`, `[::1]:<port>`.
    fn host_is_ours(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let Some((name, port)) = host.rsplit_once(':') else {
            return false;
        };
        port.parse() == Ok(self.port) && is_loopback_host(name)
    }
}

/// Compares in time that depends only on the lengths, so the secret cannot be guessed byte by
/// byte from response times.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A request the proxy answers itself instead of forwarding.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn forbidden(message: &str) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }

    pub fn into_response(self) -> Response<ProxyBody> {
        let body = serde_json::json!({
            "error": { "type": "pi_dispatch", "message": format!("pi-dispatch: {}", self.message) }
        });
        let mut response = Response::new(full(body.to_string()));
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

fn check_head_size(req: &Request<Incoming>) -> Result<(), Refusal> {
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers + req.uri().to_string().len() > MAX_REQUEST_HEAD {
        return Err(Refusal {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            message: format!("request head over {} KiB", MAX_REQUEST_HEAD >> 10),
        });
    }
    Ok(())
}

fn route(req: &Request<Incoming>) -> Result<(), Refusal> {
    if req.headers().contains_key(header::UPGRADE) {
        // pi tries a WebSocket first; a refusal makes it use SSE for the rest of the session.
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            message: "WebSocket is not supported; use SSE".into(),
        });
    }
    if req.uri().path() != RESPONSES_PATH {
        return Err(Refusal {
            status: StatusCode::NOT_FOUND,
            message: format!("no route for {}", req.uri().path()),
        });
    }
    if req.method() != Method::POST {
        return Err(Refusal {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("{RESPONSES_PATH} takes POST"),
        });
    }
    Ok(())
}

/// The whole body, within `limit` in all (a client trickling bytes is cut off too).
pub async fn read_body(body: Incoming, limit: Duration) -> Result<Bytes, Refusal> {
    let too_large = || Refusal {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("request body over {} MiB", MAX_REQUEST_BODY >> 20),
    };
    match tokio::time::timeout(limit, Limited::new(body, MAX_REQUEST_BODY).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            message: format!("cannot read the request body: {e}"),
        }),
        Err(_) => Err(Refusal {
            status: StatusCode::REQUEST_TIMEOUT,
            message: "the request body did not arrive in time".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_is_what_pi_can_decode() {
        let credential = new_credential();
        let parts: Vec<&str> = credential.split('.').collect();
        assert_eq!(parts.len(), 3);
        // pi decodes with atob, which rejects the URL-safe alphabet.
        assert!(!parts[1].contains(['-', '_']));
        let claims: serde_json::Value =
            serde_json::from_slice(&STANDARD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims["https://api.openai.com/auth"]["chatgpt_account_id"],
            CREDENTIAL_ACCOUNT_ID
        );
        assert_ne!(
            new_credential(),
            credential,
            "each proxy has its own secret"
        );
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abd", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer ab", b"Bearer abc"));
        assert!(!constant_time_eq(b"", b"Bearer abc"));
    }
}
