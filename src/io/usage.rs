//! The usage endpoint: one account's quota windows, as the backend reports them.

use url::Url;

use crate::domain::usage::{self, Observation};
use crate::error::{Error, ErrorKind};
use crate::io::http::Http;

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
        .send()
        .await
        .map_err(|e| fail("request failed").with_source(e))?;
    let status = response.status();
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
