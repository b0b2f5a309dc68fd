//! The browser login: a sign-in URL with PKCE, answered by the browser's redirect to a
//! loopback callback listener, or by the redirect URL pasted by hand. Whichever answer arrives
//! first decides the login.

use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use url::Url;

use super::{
    Lifecycle, LoginOptions, Phase, already_waiting, cancelled_error, clean, login_over, save,
    timed_out,
};
use crate::domain::account::LoginOutcome;
use crate::domain::oauth::redirect::{self, Redirect};
use crate::domain::oauth::{self, CALLBACK_PATH, Pkce};
use crate::domain::text::{self, Page};
use crate::error::{Error, ErrorKind};
use crate::io::loopback;
use crate::runtime::context::Context;

/// A browser that cannot send its request head in this long is not a browser.
const CALLBACK_HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the browser can deliver the answer itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Callback {
    Listening {
        port: u16,
    },
    /// Only a paste can complete this login; `notice` tells the user why.
    Unavailable {
        notice: String,
    },
}

/// An answer to the browser login, from the callback (which waits to show the outcome) or a
/// paste.
struct Answer {
    redirect: Redirect,
    /// The label saved, or the error message, for the browser's page.
    reply: Option<oneshot::Sender<Result<String, String>>>,
}

/// A browser login in progress: the URL to open, a callback listener when its port was free,
/// and a place for a pasted redirect. Whichever answer arrives first decides the login.
pub struct BrowserLogin {
    ctx: Arc<Context>,
    label: Option<String>,
    url: Url,
    redirect_uri: String,
    state: String,
    pkce: Pkce,
    callback: Callback,
    timeout: Duration,
    deadline: Instant,
    answers: mpsc::UnboundedSender<Answer>,
    inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<Answer>>,
    life: Lifecycle,
}

impl BrowserLogin {
    /// Checks the label, then listens on 127.0.0.1:`callback_port` (0: any free port). A port
    /// that cannot be had leaves the login to the paste path, and [`Self::callback`] says so.
    pub async fn start(
        ctx: Arc<Context>,
        options: LoginOptions,
        callback_port: u16,
    ) -> Result<Self, Error> {
        let label = options.checked_label()?;
        let pkce = Pkce::generate(&mut rand::rng());
        let state = oauth::random_token(&mut rand::rng());
        let (answers, inbox) = mpsc::unbounded_channel();
        let life = Lifecycle::new();
        let deadline = Instant::now() + options.timeout;
        let (callback, port) = match TcpListener::bind((Ipv4Addr::LOCALHOST, callback_port)).await {
            Ok(listener) => {
                let port = listener
                    .local_addr()
                    .map_err(|e| {
                        Error::new(ErrorKind::Login, "cannot read the callback port").with_source(e)
                    })?
                    .port();
                tokio::spawn(serve_callback(
                    listener,
                    answers.clone(),
                    life.0.subscribe(),
                    deadline,
                ));
                (Callback::Listening { port }, port)
            }
            Err(e) => {
                let notice = if e.kind() == std::io::ErrorKind::AddrInUse {
                    text::port_in_use(callback_port)
                } else {
                    text::cannot_listen(callback_port, &e.to_string())
                };
                (Callback::Unavailable { notice }, callback_port)
            }
        };
        let redirect_uri = format!("http://localhost:{port}{CALLBACK_PATH}");
        let url = oauth::authorize_url(
            &ctx.endpoints.authorize_url(),
            &redirect_uri,
            &pkce.challenge,
            &state,
        );
        Ok(Self {
            ctx,
            label,
            url,
            redirect_uri,
            state,
            pkce,
            callback,
            timeout: options.timeout,
            deadline,
            answers,
            inbox: tokio::sync::Mutex::new(inbox),
            life,
        })
    }

    /// The page the user signs in on.
    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn callback(&self) -> &Callback {
        &self.callback
    }

    /// Hands in a pasted redirect. Text that is not one is refused here and the login goes on;
    /// an answer is queued, and if it is the first, it decides the login.
    pub fn submit_paste(&self, text: &str) -> Result<(), Error> {
        let redirect = redirect::parse_paste(text)?;
        self.answers
            .send(Answer {
                redirect,
                reply: None,
            })
            .map_err(|_| login_over())
    }

    pub fn cancel(&self) {
        self.life.end(Phase::Cancelled);
    }

    /// Waits for the first answer, redeems it and saves the account. The callback listener
    /// closes when this returns.
    pub async fn wait(&self) -> Result<LoginOutcome, Error> {
        let Ok(mut inbox) = self.inbox.try_lock() else {
            return Err(already_waiting());
        };
        let result = tokio::select! {
            biased;
            () = self.life.cancelled() => Err(cancelled_error()),
            answer = inbox.recv() => match answer {
                Some(answer) => self.complete(answer).await,
                None => Err(login_over()),
            },
            () = tokio::time::sleep_until(self.deadline) => {
                Err(timed_out(self.timeout, text::NO_BROWSER_ANSWER))
            }
        };
        self.life.end(Phase::Finished);
        // Answers that came too late find the login over; their browser pages say so.
        inbox.close();
        while inbox.try_recv().is_ok() {}
        result
    }

    async fn complete(&self, answer: Answer) -> Result<LoginOutcome, Error> {
        let result = self.redeem(answer.redirect).await;
        if let Some(reply) = answer.reply {
            let _ = reply.send(match &result {
                Ok(outcome) => Ok(outcome.label.clone()),
                Err(e) => Err(e.chain()),
            });
        }
        result
    }

    async fn redeem(&self, redirect: Redirect) -> Result<LoginOutcome, Error> {
        let state_mismatch = || Error::new(ErrorKind::Login, text::STATE_MISMATCH);
        let code = match redirect {
            Redirect::Code { code, state } if state == self.state => code,
            Redirect::Code { .. } => return Err(state_mismatch()),
            Redirect::Refused {
                state: Some(state), ..
            } if state != self.state => return Err(state_mismatch()),
            Redirect::Refused {
                error, description, ..
            } => {
                let description = description.as_deref().map(clean);
                return Err(Error::new(
                    ErrorKind::Login,
                    text::sign_in_refused(&clean(&error), description.as_deref()),
                ));
            }
        };
        let tokens = self
            .ctx
            .auth
            .exchange_code(&code, &self.redirect_uri, &self.pkce.verifier)
            .await?;
        save(&self.ctx.store, tokens, self.label.clone()).await
    }
}

/// Serves the browser's redirect until the login ends or its time is up.
async fn serve_callback(
    listener: TcpListener,
    answers: mpsc::UnboundedSender<Answer>,
    mut phase: watch::Receiver<Phase>,
    deadline: Instant,
) {
    let stop = async move {
        tokio::select! {
            () = ended(&mut phase) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    };
    loopback::accept_until(listener, stop, |stream| {
        let answers = answers.clone();
        async move {
            let service = service_fn(move |req| answer_browser(answers.clone(), req));
            let _ = loopback::http1(CALLBACK_HEAD_TIMEOUT)
                // One request per connection, so nothing keeps the port busy after the login.
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
}

async fn ended(phase: &mut watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p != Phase::Open).await;
}

async fn answer_browser(
    answers: mpsc::UnboundedSender<Answer>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != CALLBACK_PATH {
        return Ok(page(StatusCode::NOT_FOUND, text::page_not_found()));
    }
    let Some(redirect) = req.uri().query().and_then(redirect::from_query) else {
        return Ok(page(StatusCode::BAD_REQUEST, text::page_not_an_answer()));
    };
    let (reply, outcome) = oneshot::channel();
    let sent = answers.send(Answer {
        redirect,
        reply: Some(reply),
    });
    Ok(match (sent, outcome.await) {
        (Ok(()), Ok(Ok(label))) => page(StatusCode::OK, text::page_signed_in(&label)),
        (Ok(()), Ok(Err(message))) => page(StatusCode::BAD_REQUEST, text::page_failed(message)),
        _ => page(StatusCode::GONE, text::page_over()),
    })
}

fn page(status: StatusCode, page: Page) -> Response<Full<Bytes>> {
    let Page { title, text } = page;
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>pi-dispatch: {title}</title>\
         </head><body style=\"font-family: sans-serif; margin: 3em\"><h1>{title}</h1><p>{}</p>\
         </body></html>",
        escape_html(&text)
    );
    let mut response = Response::new(Full::new(Bytes::from(html)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<b>\"a\" & 'b'</b>"),
            "&lt;b&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/b&gt;"
        );
    }
}
