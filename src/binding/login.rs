//! A login in progress, as JavaScript drives it: what to show, a pasted redirect, its end.

use napi::Either;
use napi_derive::napi;

use super::{Done, Problem, core, outcome};
use crate::config;
use crate::domain::text;
use crate::error::{Error, ErrorKind};
use crate::runtime::login::browser::{BrowserLogin, Callback};
use crate::runtime::login::device::DeviceLogin;
use crate::runtime::login::{self, LoginOptions};

#[napi(string_enum = "camelCase")]
pub enum LoginMethod {
    Browser,
    Device,
}

enum Flow {
    Browser(BrowserLogin),
    Device(DeviceLogin),
}

/// A login in progress: what to show the user, a place for a pasted redirect, and its end.
#[napi]
pub struct LoginFlow {
    flow: Flow,
}

#[napi]
impl LoginFlow {
    #[napi(getter)]
    pub fn method(&self) -> LoginMethod {
        match self.flow {
            Flow::Browser(_) => LoginMethod::Browser,
            Flow::Device(_) => LoginMethod::Device,
        }
    }

    /// Where the user goes: the sign-in page, or the page that takes the device code.
    #[napi(getter)]
    pub fn url(&self) -> String {
        match &self.flow {
            Flow::Browser(login) => login.url().to_string(),
            Flow::Device(login) => login.verification_url().to_string(),
        }
    }

    /// The code to enter on the device page.
    #[napi(getter)]
    pub fn user_code(&self) -> Option<String> {
        match &self.flow {
            Flow::Browser(_) => None,
            Flow::Device(login) => Some(login.user_code().to_owned()),
        }
    }

    /// Why the browser cannot hand the answer back by itself, leaving the paste path.
    #[napi(getter)]
    pub fn notice(&self) -> Option<String> {
        match &self.flow {
            Flow::Browser(login) => match login.callback() {
                Callback::Listening { .. } => None,
                Callback::Unavailable { notice } => Some(notice.clone()),
            },
            Flow::Device(_) => None,
        }
    }

    /// Hands in the redirect URL the user pasted. Text that is not one gives a problem of kind
    /// `paste`, and the login goes on and takes another paste.
    #[napi]
    pub fn submit_paste(&self, text: String) -> Option<Problem> {
        let submitted = match &self.flow {
            Flow::Browser(login) => login.submit_paste(&text),
            Flow::Device(_) => Err(Error::new(ErrorKind::Login, text::DEVICE_NO_PASTE)),
        };
        submitted.err().map(Problem::from)
    }

    /// Ends when the account is saved, or with the problem (`login`, `loginCancelled`,
    /// `loginTimedOut`, `label`) that left the pool unchanged.
    #[napi]
    pub async fn wait(&self) -> Either<Done, Problem> {
        let outcome = match &self.flow {
            Flow::Browser(login) => login.wait().await,
            Flow::Device(login) => login.wait().await,
        };
        self::outcome(outcome.map(|o| Done {
            message: text::login_done(
                &o.label,
                o.email.as_deref(),
                o.plan.as_deref(),
                o.added,
                o.ignored_label.as_deref(),
            ),
            label: o.label,
        }))
    }

    #[napi]
    pub fn cancel(&self) {
        match &self.flow {
            Flow::Browser(login) => login.cancel(),
            Flow::Device(login) => login.cancel(),
        }
    }
}

/// Starts a browser login: listens for the callback (port 1455 unless
/// `PI_DISPATCH_CALLBACK_PORT` says otherwise) and builds the sign-in URL.
#[napi]
pub async fn start_browser_login(label: Option<String>) -> Either<LoginFlow, Problem> {
    let started = async {
        let options = LoginOptions {
            label,
            timeout: login::BROWSER_TIMEOUT,
        };
        let port = config::callback_port()?;
        let ctx = core().await?.ctx.clone();
        BrowserLogin::start(ctx, options, port).await
    };
    outcome(started.await.map(|login| LoginFlow {
        flow: Flow::Browser(login),
    }))
}

/// Starts a device-code login: asks the issuer for a user code.
#[napi]
pub async fn start_device_login(label: Option<String>) -> Either<LoginFlow, Problem> {
    let started = async {
        let options = LoginOptions {
            label,
            timeout: login::DEVICE_TIMEOUT,
        };
        DeviceLogin::start(core().await?.ctx.clone(), options).await
    };
    outcome(started.await.map(|login| LoginFlow {
        flow: Flow::Device(login),
    }))
}
