//! The usage endpoint: one account's quota windows, as the backend reports them.
//!
//! The call introduces itself as Codex CLI does (its `originator` and a User-Agent of its
//! shape): the tokens are Codex CLI's, and the CDN in front of the backend challenges agent
//! strings it does not know. A challenge is told apart from a refusal of the account.

use url::Url;

use crate::domain::text;
use crate::domain::usage::{self, Observation};
use crate::error::{Error, ErrorKind};
use crate::io::http::Http;

/// Codex CLI's `originator` header value.
const ORIGINATOR: &str = "codex_cli_rs";
/// The Codex CLI release whose User-Agent the usage calls follow.
const CODEX_CLI_VERSION: &str = "0.139.0";

/// `codex_cli_rs/<version> (<os>; <arch>) pi-dispatch/<version>`: Codex CLI's shape, with this
/// program where Codex CLI names the terminal.
pub fn user_agent() -> String {
    let os = match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Mac OS",
        "windows" => "Windows",
        other => other,
    };
    format!(
        "{ORIGINATOR}/{CODEX_CLI_VERSION} ({os}; {}) pi-dispatch/{}",
        std::env::consts::ARCH,
        env!("CARGO_PKG_VERSION")
    )
}

/// Asks `url` for the usage of the account `chatgpt_account_id` with its access `token`,
/// observed at `now_ms`.
pub async fn fetch(
    http: &Http,
    url: Url,
    token: &str,
    chatgpt_account_id: &str,
    now_ms: u64,
) -> Result<Observation, Error> {
    let path = url.path().to_owned();
    let fail = |what: &str| Error::new(ErrorKind::Usage, format!("{path}: {what}"));
    let response = http
        .client()?
        .get(url)
        .bearer_auth(token)
        .header("chatgpt-account-id", chatgpt_account_id)
        .header("accept", "application/json")
        .header("originator", ORIGINATOR)
        .header("user-agent", user_agent())
        .send()
        .await
        .map_err(|e| fail("request failed").with_source(e))?;
    let status = response.status();
    if status.as_u16() == 403 && is_cdn_challenge(response.headers()) {
        return Err(Error::new(ErrorKind::Usage, text::cdn_challenge(&path)));
    }
    if !status.is_success() {
        return Err(fail(&format!("HTTP {}", status.as_u16())));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| fail("reply cut short").with_source(e))?;
    let payload: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| fail("reply is not JSON").with_source(e))?;
    usage::from_payload(&payload, now_ms).ok_or_else(|| fail("reply has no usage windows"))
}

/// Cloudflare's challenge: `cf-mitigated: challenge`, or an HTML page where JSON was asked for.
fn is_cdn_challenge(headers: &reqwest::header::HeaderMap) -> bool {
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    value("cf-mitigated") == "challenge" || value("content-type").starts_with("text/html")
}
