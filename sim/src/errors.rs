//! The failure replies of `/codex/responses` beyond the basic ones: their bodies, the
//! headers that go with them, and the messages the real backend puts next to each code.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::header::HeaderValue;
use serde_json::{Value, json};

use crate::reply::{self, Reply, insert};
use crate::script::RetryAfterFormat;

/// The message the real backend sends with an error code, in a stream or a status body.
pub(crate) fn message_for(code: &str) -> String {
    let known = match code {
        "usage_limit_reached" => "The usage limit has been reached",
        "insufficient_quota" => {
            "You exceeded your current quota, please check your plan and billing details."
        }
        "rate_limit_exceeded" => "Rate limit reached for requests. Please try again in 5s.",
        "context_length_exceeded" => {
            "Your input exceeds the context window of this model. Please adjust your input and try again."
        }
        "cyber_policy" => "This request has been flagged for possible cybersecurity risk.",
        "content_policy_violation" => "Your request was rejected as a result of our safety system.",
        "invalid_prompt" => {
            "Invalid prompt: your prompt was flagged as potentially violating our usage policy. Please try again with a different prompt."
        }
        "server_is_overloaded" => "Our servers are currently overloaded. Please try again later.",
        "slow_down" => "Please slow down your request rate and try again later.",
        "server_error" => {
            "An error occurred while processing your request. You can retry your request, or contact us through our help center at help.openai.com if the error persists."
        }
        "account_deactivated" => {
            "Your OpenAI account has been deactivated, please check your email for more information. If you feel this is an error, contact us through our help center at help.openai.com."
        }
        "token_revoked" => "Encountered invalidated oauth token for user, failing request",
        "missing_scope" => {
            "You have insufficient permissions for this operation. Missing scopes: model.request."
        }
        other => return format!("simulated error: {other}"),
    };
    known.to_string()
}

/// The `type` that goes with an error code where the backend sends both.
pub(crate) fn type_for(code: &str) -> &'static str {
    match code {
        "usage_limit_reached" => "usage_limit_reached",
        "usage_not_included" => "usage_not_included",
        "insufficient_quota" => "insufficient_quota",
        "rate_limit_exceeded" => "rate_limit_exceeded",
        "server_is_overloaded" | "slow_down" => "service_unavailable_error",
        "server_error" => "server_error",
        _ => "invalid_request_error",
    }
}

/// `{"error":{"message","type","param","code"}}` with `status`.
pub(crate) fn openai_error(
    status: u16,
    kind: &str,
    code: Option<&str>,
    param: Option<&str>,
    message: &str,
) -> Reply {
    reply::json(
        status,
        &json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
    )
}

/// The 400 for a reasoning or compaction item whose ciphertext the account did not mint.
pub(crate) fn invalid_encrypted_content(item_id: &str, null_code: bool) -> Reply {
    let message = format!(
        "The encrypted content for item {item_id} could not be verified. Reason: Encrypted content could not be decrypted or parsed."
    );
    let code = (!null_code).then_some("invalid_encrypted_content");
    openai_error(400, "invalid_request_error", code, None, &message)
}

/// The 401 every request of a deactivated account gets, however fresh its token.
pub(crate) fn deactivated(code: &str) -> Reply {
    openai_error(
        401,
        "invalid_request_error",
        Some(code),
        None,
        &message_for(code),
    )
}

/// 402 for a deactivated workspace.
pub(crate) fn deactivated_workspace() -> Reply {
    reply::json(402, &json!({"detail": {"code": "deactivated_workspace"}}))
}

/// The CDN's 403 challenge page: HTML, not JSON, and no word from the backend at all.
/// Both the `cloudflareChallenge` behavior and the usage endpoints' CDN send it.
pub(crate) fn cloudflare_challenge() -> Reply {
    let mut reply = reply::html(
        403,
        "<!DOCTYPE html><html lang=\"en-US\"><head><title>Just a moment...</title>\
         <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\"></head>\
         <body><noscript>Enable JavaScript and cookies to continue</noscript>\
         <div id=\"challenge-error-text\">Enable JavaScript and cookies to continue</div>\
         </body></html>",
    );
    let headers = reply.headers_mut();
    headers.insert("cf-mitigated", HeaderValue::from_static("challenge"));
    headers.insert("server", HeaderValue::from_static("cloudflare"));
    insert(headers, "cf-ray", &format!("{}-SIM", random_hex(8)));
    reply
}

/// 403 JSON with the identity headers codex-rs reads: `x-openai-authorization-error` (a
/// plain code) and `x-error-json` (standard base64 of `{"error":{"code","message"}}`).
pub(crate) fn forbidden(authorization_error: &str, error_code: &str, message: &str) -> Reply {
    let mut reply = openai_error(
        403,
        "invalid_request_error",
        Some(error_code),
        None,
        message,
    );
    let error_json = json!({"error": {"code": error_code, "message": message}}).to_string();
    let headers = reply.headers_mut();
    insert(headers, "x-openai-authorization-error", authorization_error);
    insert(headers, "x-error-json", &STANDARD.encode(error_json));
    reply
}

/// A scripted status with a JSON body, a raw body, or none, plus extra headers.
pub(crate) fn http_error(
    status: u16,
    body: Option<&Value>,
    text: Option<&str>,
    content_type: Option<&str>,
    headers: &BTreeMap<String, String>,
) -> Reply {
    let mut reply = match (text, body) {
        (Some(text), _) => reply::with_content_type(
            status,
            content_type.unwrap_or("text/plain; charset=utf-8"),
            text,
        ),
        (None, Some(body)) => reply::json(status, body),
        (None, None) => reply::empty(status),
    };
    for (name, value) in headers {
        insert(reply.headers_mut(), name, value);
    }
    reply
}

/// Announces a delay of `seconds` the way `format` says.
pub(crate) fn with_retry_hint(mut reply: Reply, seconds: u64, format: RetryAfterFormat) -> Reply {
    let headers = reply.headers_mut();
    match format {
        RetryAfterFormat::Seconds => insert(headers, "retry-after", &seconds.to_string()),
        RetryAfterFormat::HttpDate => {
            let at = SystemTime::now() + Duration::from_secs(seconds);
            insert(headers, "retry-after", &httpdate::fmt_http_date(at));
        }
        RetryAfterFormat::Millis => {
            insert(headers, "retry-after-ms", &(seconds * 1000).to_string())
        }
        RetryAfterFormat::Omitted => {}
    }
    reply
}

fn random_hex(bytes: usize) -> String {
    crate::jwt::random_bytes(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_message_and_a_type() {
        assert!(message_for("context_length_exceeded").contains("context window"));
        assert_eq!(message_for("whatever"), "simulated error: whatever");
        assert_eq!(type_for("slow_down"), "service_unavailable_error");
        assert_eq!(type_for("cyber_policy"), "invalid_request_error");
    }

    #[test]
    fn http_dates_are_imf_fixdates() {
        let reply = with_retry_hint(reply::empty(429), 60, RetryAfterFormat::HttpDate);
        let value = reply.headers()["retry-after"].to_str().unwrap_or_default();
        let parsed = httpdate::parse_http_date(value).expect("an HTTP date");
        let ahead = parsed
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .as_secs();
        assert!((55..=60).contains(&ahead), "{value}: {ahead}");
    }
}
