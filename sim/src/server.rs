//! The listener and the router: which handler owns which path.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::backend;
use crate::reply::{self, Reply};
use crate::state::Shared;
use crate::{admin, oauth, usage};

/// Accepts connections until the task is aborted; aborting also drops (and so closes)
/// every open connection, because they live in this task's `JoinSet`.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Small SSE events must leave at once, not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |request| {
                            let shared = shared.clone();
                            async move { Ok::<_, Infallible>(route(shared, request).await) }
                        });
                        // A client that breaks the connection is normal here.
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                // Out of file descriptors or similar: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn route(shared: Arc<Shared>, request: Request<Incoming>) -> Reply {
    let path = request.uri().path().to_string();
    let get = request.method() == Method::GET;
    let post = request.method() == Method::POST;
    if let Some((endpoint, method)) = usage::route(&path) {
        if request.method() != method {
            return reply::method_not_allowed();
        }
        return usage::handle(shared, request, endpoint).await;
    }
    match path.as_str() {
        "/backend-api/codex/responses" => backend::codex_responses(shared, request).await,
        "/backend-api/me" if get => backend::me(&shared, &request),
        "/oauth/authorize" if get => oauth::authorize(&shared, &request),
        "/oauth/token" if post => oauth::token(shared, request).await,
        "/api/accounts/deviceauth/usercode" if post => {
            oauth::device_user_code(shared, request).await
        }
        "/api/accounts/deviceauth/token" if post => oauth::device_poll(shared, request).await,
        "/codex/device" if get => reply::html(
            200,
            "<!doctype html><title>dispatch-sim device login</title>\
             <p>Approve with POST /__sim/device/approve.</p>",
        ),
        p if p.starts_with("/__sim/") => admin::handle(shared, request).await,
        "/backend-api/me"
        | "/oauth/authorize"
        | "/oauth/token"
        | "/api/accounts/deviceauth/usercode"
        | "/api/accounts/deviceauth/token" => reply::method_not_allowed(),
        _ => {
            shared.world.lock().recorder.global.not_found += 1;
            reply::not_found()
        }
    }
}
