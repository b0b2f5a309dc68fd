//! Where pi-dispatch keeps its state and which servers it talks to.
//!
//! This is the one configuration point: every environment variable the core reads is named
//! here, and every upstream URL it calls comes from one method of [`Endpoints`], so tests, the
//! demo and the benchmarks can point the whole core at the loopback simulator with two
//! environment variables.

use std::path::PathBuf;

use reqwest::Url;

use crate::error::{Error, ErrorKind};

/// Overrides the Codex backend base (default `https://chatgpt.com/backend-api`).
pub const ENV_BACKEND_URL: &str = "PI_DISPATCH_BACKEND_URL";
/// Overrides the OAuth issuer (default `https://auth.openai.com`).
pub const ENV_AUTH_URL: &str = "PI_DISPATCH_AUTH_URL";
/// pi's own variable for its agent directory; `dispatch.json` lives there.
pub const ENV_AGENT_DIR: &str = "PI_CODING_AGENT_DIR";
/// Overrides the browser login's callback port (default 1455). Tests use it to run logins side
/// by side, and `0` (any free port) to stay clear of a real login on the same machine.
pub const ENV_CALLBACK_PORT: &str = "PI_DISPATCH_CALLBACK_PORT";
/// A number that makes the random tie-break between equal accounts repeatable (tests).
pub const ENV_SEED: &str = "PI_DISPATCH_SEED";
/// How long a model reply may take to send its headers, or stay silent before its first output,
/// before the proxy fails it over (milliseconds; default 60000). Tests shorten it.
pub const ENV_STALL_MS: &str = "PI_DISPATCH_STALL_MS";
/// The port OpenAI's OAuth client registration redirects to.
pub const DEFAULT_CALLBACK_PORT: u16 = 1455;

const DEFAULT_BACKEND_URL: &str = "https://chatgpt.com/backend-api";
const DEFAULT_AUTH_URL: &str = "https://auth.openai.com";

/// The upstream servers.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// Base of the Codex backend; `/codex/responses` and `/wham/usage` hang off it.
    pub backend: Url,
    /// The OAuth issuer; `/oauth/token` and `/oauth/authorize` hang off it.
    pub auth: Url,
}

impl Endpoints {
    pub fn from_env() -> Result<Self, Error> {
        Ok(Self {
            backend: url_from_env(ENV_BACKEND_URL, DEFAULT_BACKEND_URL)?,
            auth: url_from_env(ENV_AUTH_URL, DEFAULT_AUTH_URL)?,
        })
    }

    /// `POST`: model streams.
    pub fn responses_url(&self) -> Url {
        join(&self.backend, "codex/responses")
    }

    /// `GET`: an account's usage windows. Codex CLI uses this path for `/backend-api` bases; a
    /// 403 on it is the CDN's verdict on the caller, which another path does not change.
    pub fn usage_url(&self) -> Url {
        join(&self.backend, "wham/usage")
    }

    /// `POST`: code exchanges and refreshes.
    pub fn token_url(&self) -> Url {
        join(&self.auth, "oauth/token")
    }

    /// The browser login's start page (its query is the login's, see `domain::oauth`).
    pub fn authorize_url(&self) -> Url {
        join(&self.auth, "oauth/authorize")
    }

    /// `POST`: starts a device login, answering with a user code.
    pub fn device_code_url(&self) -> Url {
        join(&self.auth, "api/accounts/deviceauth/usercode")
    }

    /// `POST`: polled until the user approves the device login.
    pub fn device_token_url(&self) -> Url {
        join(&self.auth, "api/accounts/deviceauth/token")
    }

    /// The page where the user enters the device code.
    pub fn device_page_url(&self) -> Url {
        join(&self.auth, "codex/device")
    }

    /// The redirect URI a device login's code is exchanged with.
    pub fn device_redirect_uri(&self) -> Url {
        join(&self.auth, "deviceauth/callback")
    }
}

/// The seed of the random tie-break, when `PI_DISPATCH_SEED` gives one.
pub fn seed() -> Option<u64> {
    std::env::var(ENV_SEED)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
}

/// Appends `path` to `base` as a sub-path, whether or not `base` ends in a slash.
fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{}", url.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url
}

fn url_from_env(var: &str, default: &str) -> Result<Url, Error> {
    let raw = std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    let text = raw.as_deref().unwrap_or(default).trim();
    let url = Url::parse(text).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("{var} is not a valid URL: {text:?}"),
        )
        .with_source(e)
    })?;
    check_transport(&url).map_err(|why| {
        Error::new(
            ErrorKind::Config,
            format!("{var}={text:?} is refused: {why}"),
        )
    })?;
    Ok(url)
}

/// Tokens travel to these servers, so plain HTTP is only allowed to this machine.
fn check_transport(url: &Url) -> Result<(), &'static str> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(url.host_str().unwrap_or("")) => Ok(()),
        "http" => Err("plain http is only allowed to a loopback address"),
        _ => Err("only http(s) URLs are supported"),
    }
}

pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The port the browser login's callback listener binds: `PI_DISPATCH_CALLBACK_PORT`, else 1455.
pub fn callback_port() -> Result<u16, Error> {
    match std::env::var(ENV_CALLBACK_PORT) {
        Ok(text) if !text.trim().is_empty() => text.trim().parse().map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("{ENV_CALLBACK_PORT} is not a port number: {text:?}"),
            )
            .with_source(e)
        }),
        _ => Ok(DEFAULT_CALLBACK_PORT),
    }
}

/// `PI_DISPATCH_STALL_MS`, when set.
pub fn stall_limit() -> Result<Option<std::time::Duration>, Error> {
    match std::env::var(ENV_STALL_MS) {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse()
            .map(|ms| Some(std::time::Duration::from_millis(ms)))
            .map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("{ENV_STALL_MS} is not a number of milliseconds: {text:?}"),
                )
                .with_source(e)
            }),
        _ => Ok(None),
    }
}

/// pi's agent directory: `PI_CODING_AGENT_DIR`, else `~/.pi/agent`.
pub fn agent_dir() -> Result<PathBuf, Error> {
    let home = std::env::home_dir();
    match std::env::var_os(ENV_AGENT_DIR).filter(|v| !v.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            // pi expands a leading `~` itself; match it so both agree on the directory.
            match (dir.strip_prefix("~"), home) {
                (Ok(rest), Some(home)) => Ok(home.join(rest)),
                _ => Ok(dir),
            }
        }
        None => home.map(|h| h.join(".pi").join("agent")).ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("cannot find the home directory; set {ENV_AGENT_DIR}"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_the_base_path() {
        let base = Url::parse("https://chatgpt.com/backend-api").unwrap();
        assert_eq!(
            join(&base, "codex/responses").as_str(),
            "https://chatgpt.com/backend-api/codex/responses"
        );
        let slash = Url::parse("http://127.0.0.1:9/backend-api/").unwrap();
        assert_eq!(
            join(&slash, "wham/usage").as_str(),
            "http://127.0.0.1:9/backend-api/wham/usage"
        );
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let ok = [
            "https://example.com",
            "http://127.0.0.1:1",
            "http://localhost:2",
            "http://[::1]:3",
        ];
        for u in ok {
            assert!(check_transport(&Url::parse(u).unwrap()).is_ok(), "{u}");
        }
        for u in ["http://example.com", "http://10.0.0.1", "ftp://127.0.0.1"] {
            assert!(check_transport(&Url::parse(u).unwrap()).is_err(), "{u}");
        }
    }
}
