//! What the two local HTTP servers, the proxy and the login callback, share: accepting
//! connections until told to stop, and hyper's HTTP/1.1 settings for a local client.

use std::future::Future;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpStream};

/// Accepts connections until `stop` completes; `connection` makes each one's work, which runs on
/// a task of its own.
pub async fn accept_until<F, W>(
    listener: TcpListener,
    stop: impl Future<Output = ()>,
    connection: F,
) where
    F: Fn(TcpStream) -> W,
    W: Future<Output = ()> + Send + 'static,
{
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => return,
        };
        tokio::spawn(connection(stream));
    }
}

/// HTTP/1.1 for a local client, which must send its request head within `head_timeout`: one
/// that cannot is stuck or hostile.
pub fn http1(head_timeout: Duration) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout);
    builder
}
