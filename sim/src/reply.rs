//! Small constructors for the replies every handler builds.

use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use crate::body::SimBody;

pub(crate) type Reply = Response<SimBody>;

/// A reply with a JSON body.
pub(crate) fn json(status: u16, value: &Value) -> Reply {
    with_type(status, "application/json", value.to_string())
}

/// `{"error":{"message","type","code"}}`, the backend's usual error shape.
pub(crate) fn error(status: u16, kind: &str, code: &str, message: &str) -> Reply {
    json(
        status,
        &json!({"error": {"message": message, "type": kind, "code": code}}),
    )
}

pub(crate) fn text(status: u16, body: &str) -> Reply {
    with_type(status, "text/plain; charset=utf-8", body.to_string())
}

pub(crate) fn html(status: u16, body: &str) -> Reply {
    with_type(status, "text/html; charset=utf-8", body.to_string())
}

pub(crate) fn redirect(location: &str) -> Reply {
    let mut reply = Response::new(SimBody::empty());
    *reply.status_mut() = StatusCode::FOUND;
    // The location is built from a URL the client gave us; an invalid header value
    // (control characters) gets a 400 instead of a panic.
    match HeaderValue::from_str(location) {
        Ok(value) => {
            reply.headers_mut().insert(LOCATION, value);
            reply
        }
        Err(_) => text(400, "redirect_uri is not a valid header value"),
    }
}

pub(crate) fn not_found() -> Reply {
    error(
        404,
        "invalid_request_error",
        "not_found",
        "no such endpoint in dispatch-sim",
    )
}

pub(crate) fn method_not_allowed() -> Reply {
    error(
        405,
        "invalid_request_error",
        "method_not_allowed",
        "method not allowed",
    )
}

fn with_type(status: u16, content_type: &'static str, body: String) -> Reply {
    let mut reply = Response::new(SimBody::full(body));
    *reply.status_mut() = status_code(status);
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    reply
}

/// Scripts may name any status; an impossible one becomes 500.
pub(crate) fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A reply with a body in any content type; one that is not a valid header value
/// becomes `application/octet-stream`.
pub(crate) fn with_content_type(status: u16, content_type: &str, body: &str) -> Reply {
    let mut reply = with_type(status, "application/octet-stream", body.to_string());
    if let Ok(value) = HeaderValue::from_str(content_type) {
        reply.headers_mut().insert(CONTENT_TYPE, value);
    }
    reply
}

/// A reply with no body.
pub(crate) fn empty(status: u16) -> Reply {
    let mut reply = Response::new(SimBody::empty());
    *reply.status_mut() = status_code(status);
    reply
}

/// A reply whose body is sent verbatim with a JSON content type (even if it is not JSON).
pub(crate) fn json_text(status: u16, body: &str) -> Reply {
    with_type(status, "application/json", body.to_string())
}

/// Sets a header; a name or value that is not valid HTTP is left out.
pub(crate) fn insert(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.insert(name, value);
    }
}
