//! The loopback HTTP server that pi's own Codex client talks to.
//!
//! pi is given a base URL on 127.0.0.1 and a credential that is not any account's token. Each
//! request goes through the phases: [`gate`] (is it this pi process's, and a route the proxy
//! serves), [`forward`] (seat the session on an account, send, classify, rotate), [`relay`] (hold
//! the stream back until its first output, or answer for the pool). The reply streams back as
//! it arrives; when pi goes away, dropping the reply body drops the upstream request with it.

mod forward;
mod gate;
mod relay;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::{Error, ErrorKind};
use crate::io::loopback;
use crate::runtime::context::Context;
use gate::{Gate, MAX_REQUEST_HEAD, new_credential};
use relay::ProxyBody;

pub use relay::exhausted_message;

/// A running proxy. It serves until dropped.
pub struct Proxy {
    port: u16,
    credential: String,
    _shutdown: watch::Sender<()>,
}

impl Proxy {
    /// Binds 127.0.0.1 on an ephemeral port and starts serving on the current tokio runtime.
    pub async fn start(ctx: Arc<Context>) -> Result<Self, Error> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Proxy, "cannot listen on 127.0.0.1").with_source(e)
            })?;
        let port = listener
            .local_addr()
            .map_err(|e| {
                Error::new(ErrorKind::Proxy, "cannot read the proxy's port").with_source(e)
            })?
            .port();
        let credential = new_credential();
        let gate = Arc::new(Gate::new(port, &credential));
        let (shutdown, stopped) = watch::channel(());
        // Off the start-up path, and most likely done before pi's first request.
        ctx.http.prepare();
        tokio::spawn(accept_loop(listener, gate, ctx, stopped));
        Ok(Self {
            port,
            credential,
            _shutdown: shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL to give pi's Codex client; it appends `/codex/responses`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What pi must present as its API key: not any account's token.
    pub fn credential(&self) -> &str {
        &self.credential
    }
}

async fn accept_loop(
    listener: TcpListener,
    gate: Arc<Gate>,
    ctx: Arc<Context>,
    mut stopped: watch::Receiver<()>,
) {
    let stop = async move {
        let _ = stopped.changed().await;
    };
    loopback::accept_until(listener, stop, |stream| {
        let _ = stream.set_nodelay(true);
        let (gate, ctx) = (gate.clone(), ctx.clone());
        async move {
            let head_timeout = ctx.timeouts.request_head;
            let service = service_fn(move |req| serve(gate.clone(), ctx.clone(), req));
            let _ = loopback::http1(head_timeout)
                .max_buf_size(MAX_REQUEST_HEAD)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
}

async fn serve(
    gate: Arc<Gate>,
    ctx: Arc<Context>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let result = async {
        gate.admit(&req)?;
        forward::forward(&ctx, req).await
    }
    .await;
    Ok(result.unwrap_or_else(gate::Refusal::into_response))
}
