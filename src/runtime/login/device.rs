//! The device-code login, for machines without a browser: the user enters a code on any
//! device while this polls the issuer until they approve.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use url::Url;

use super::{Lifecycle, LoginOptions, Phase, already_waiting, cancelled_error, save, timed_out};
use crate::domain::account::LoginOutcome;
use crate::domain::oauth::{self, CLIENT_ID};
use crate::domain::text;
use crate::error::{Error, ErrorKind};
use crate::io::oauth::{Body, Call, post};
use crate::runtime::context::Context;

/// Each device-code call gets this long; a hung call must not outlive the login.
const DEVICE_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Used when the server names no polling interval.
const DEFAULT_DEVICE_INTERVAL: Duration = Duration::from_secs(5);

/// What an approved device login hands over: a code and the verifier the server made for it.
struct Approval {
    code: String,
    verifier: String,
}

/// A device-code login in progress: the user enters [`Self::user_code`] at
/// [`Self::verification_url`] on any device while this polls.
pub struct DeviceLogin {
    ctx: Arc<Context>,
    label: Option<String>,
    device_auth_id: String,
    user_code: String,
    verification_url: Url,
    interval: Duration,
    timeout: Duration,
    deadline: Instant,
    waiting: AtomicBool,
    life: Lifecycle,
}

impl DeviceLogin {
    /// Checks the label and asks the issuer for a user code.
    pub async fn start(ctx: Arc<Context>, options: LoginOptions) -> Result<Self, Error> {
        let label = options.checked_label()?;
        let (status, body) = post(
            &ctx.http,
            ctx.endpoints.device_code_url(),
            DEVICE_CALL_TIMEOUT,
            Call::Device,
            Body::Json(json!({ "client_id": CLIENT_ID })),
        )
        .await?;
        if !status.is_success() {
            return Err(Error::new(
                ErrorKind::Login,
                text::device_cannot_start(&status.to_string()),
            ));
        }
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| Error::new(ErrorKind::Login, text::DEVICE_NOT_JSON).with_source(e))?;
        let text = |name: &str| value.get(name)?.as_str().map(str::to_owned);
        let (Some(device_auth_id), Some(user_code)) = (
            text("device_auth_id"),
            text("user_code").or_else(|| text("usercode")),
        ) else {
            return Err(Error::new(ErrorKind::Login, text::DEVICE_NO_CODE));
        };
        // The real server sends the interval as a string; accept a number too.
        let interval = match value.get("interval") {
            Some(Value::String(s)) => s.trim().parse().ok(),
            Some(v) => v.as_u64(),
            None => None,
        }
        .map_or(DEFAULT_DEVICE_INTERVAL, Duration::from_secs)
        // Never a busy loop, whatever the server says.
        .max(Duration::from_secs(1));
        Ok(Self {
            verification_url: ctx.endpoints.device_page_url(),
            ctx,
            label,
            device_auth_id,
            user_code,
            interval,
            timeout: options.timeout,
            deadline: Instant::now() + options.timeout,
            waiting: AtomicBool::new(false),
            life: Lifecycle::new(),
        })
    }

    pub fn user_code(&self) -> &str {
        &self.user_code
    }

    pub fn verification_url(&self) -> &Url {
        &self.verification_url
    }

    pub fn cancel(&self) {
        self.life.end(Phase::Cancelled);
    }

    /// Polls at the server's interval until the user approves, then saves the account. Ends
    /// with an error on denial, cancel or timeout.
    pub async fn wait(&self) -> Result<LoginOutcome, Error> {
        if self.waiting.swap(true, Ordering::SeqCst) {
            return Err(already_waiting());
        }
        let approval = tokio::select! {
            biased;
            () = self.life.cancelled() => Err(cancelled_error()),
            approval = self.poll_until_approved() => approval,
            () = tokio::time::sleep_until(self.deadline) => {
                Err(timed_out(self.timeout, text::DEVICE_NOT_APPROVED))
            }
        };
        self.life.end(Phase::Finished);
        let approval = approval?;
        let redirect_uri = self.ctx.endpoints.device_redirect_uri();
        let tokens = self
            .ctx
            .auth
            .exchange_code(&approval.code, redirect_uri.as_str(), &approval.verifier)
            .await?;
        save(&self.ctx.store, tokens, self.label.clone()).await
    }

    async fn poll_until_approved(&self) -> Result<Approval, Error> {
        loop {
            tokio::time::sleep(self.interval).await;
            if let Some(approval) = self.poll().await? {
                return Ok(approval);
            }
        }
    }

    /// One poll: `None` while the user has not decided yet.
    async fn poll(&self) -> Result<Option<Approval>, Error> {
        let sent = post(
            &self.ctx.http,
            self.ctx.endpoints.device_token_url(),
            DEVICE_CALL_TIMEOUT,
            Call::Device,
            Body::Json(
                json!({ "device_auth_id": self.device_auth_id, "user_code": self.user_code }),
            ),
        )
        .await;
        // The user may be approving right now: a failed poll is retried at the next interval.
        let Ok((status, body)) = sent else {
            return Ok(None);
        };
        // Pending is 403 or 404 on this server; a 5xx is the server's trouble, not an answer.
        if matches!(status.as_u16(), 403 | 404) || status.is_server_error() {
            return Ok(None);
        }
        if !status.is_success() {
            let denied = oauth::error_codes(&body)
                .iter()
                .any(|c| c == "access_denied");
            let message = if denied {
                text::DEVICE_DENIED.to_owned()
            } else {
                text::device_failed(&status.to_string())
            };
            return Err(Error::new(ErrorKind::Login, message));
        }
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            Error::new(ErrorKind::Login, text::DEVICE_APPROVAL_NOT_JSON).with_source(e)
        })?;
        let text = |name: &str| value.get(name)?.as_str().map(str::to_owned);
        match (text("authorization_code"), text("code_verifier")) {
            (Some(code), Some(verifier)) => Ok(Some(Approval { code, verifier })),
            _ => Err(Error::new(ErrorKind::Login, text::DEVICE_APPROVAL_NO_CODE)),
        }
    }
}
