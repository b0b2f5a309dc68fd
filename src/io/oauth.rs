//! Calls to the OAuth issuer: the token endpoint and the device-login endpoints. Each call
//! reads the whole answer, whatever its status; what the answer means is `domain::oauth`'s.

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use url::Url;

use crate::domain::text;
use crate::error::{Error, ErrorKind};
use crate::io::http::Http;

/// What a call sends.
pub enum Body<'a> {
    /// The token endpoint takes a form.
    Form(&'a [(&'a str, &'a str)]),
    /// The device-login endpoints take JSON, as in the Codex CLI.
    Json(serde_json::Value),
}

/// Which call this is, for its errors.
#[derive(Clone, Copy)]
pub enum Call {
    Token(ErrorKind),
    Device,
}

/// Posts `body` to `url` within `timeout` and reads the whole answer.
pub async fn post(
    http: &Http,
    url: Url,
    timeout: Duration,
    call: Call,
    body: Body<'_>,
) -> Result<(StatusCode, Bytes), Error> {
    let (kind, no_answer, broke_off) = match call {
        Call::Token(kind) => (kind, text::TOKEN_NO_ANSWER, text::TOKEN_BROKE_OFF),
        Call::Device => (
            ErrorKind::Login,
            text::DEVICE_NO_ANSWER,
            text::DEVICE_BROKE_OFF,
        ),
    };
    let request = http.client()?.post(url).timeout(timeout);
    let request = match body {
        Body::Form(form) => request.form(form),
        Body::Json(value) => request.json(&value),
    };
    // reqwest's message names the URL only; the body never appears in it.
    let response = request
        .send()
        .await
        .map_err(|e| Error::new(kind, no_answer).with_source(e))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Error::new(kind, broke_off).with_source(e))?;
    Ok((status, bytes))
}
