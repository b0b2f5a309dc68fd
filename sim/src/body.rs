//! The response body type: either a whole buffer or a live stream fed by a task.
//!
//! Streams go through a small channel so every SSE event is its own write and delays
//! are real. A stream can end cleanly, be cut on purpose (the body yields an error, so
//! hyper resets the connection instead of sending the last chunk), or be abandoned by
//! the client (hyper drops the body; the feeding task sees its sends fail and stops).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::state::RequestTracker;
use crate::stats::Outcome;

/// One item on a stream body's channel.
pub(crate) enum Chunk {
    Data(Bytes),
    /// Break the connection instead of ending the body.
    Abort,
}

/// One step of a scripted stream.
pub(crate) enum Step {
    Send(Bytes),
    Sleep(Duration),
    /// Break the connection abruptly.
    Abort,
    /// Send nothing more until the client goes away.
    Hang,
}

enum Content {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Chunk>),
}

pub(crate) struct SimBody {
    content: Content,
    tracker: Option<RequestTracker>,
}

impl SimBody {
    pub fn full(bytes: impl Into<Bytes>) -> SimBody {
        SimBody {
            content: Content::Full(Some(bytes.into())),
            tracker: None,
        }
    }

    pub fn empty() -> SimBody {
        SimBody {
            content: Content::Full(None),
            tracker: None,
        }
    }

    /// The bytes of a whole, non-empty body; None for streams and empty bodies.
    pub fn full_bytes(&self) -> Option<&Bytes> {
        match &self.content {
            Content::Full(Some(bytes)) if !bytes.is_empty() => Some(bytes),
            _ => None,
        }
    }

    /// A body fed by a task that plays `steps`; the task stops when the client leaves.
    pub fn stream(steps: impl Iterator<Item = Step> + Send + 'static) -> SimBody {
        // A small buffer keeps memory flat for big streams and lets a stalled client
        // apply back-pressure to the producer.
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(play(tx, steps));
        SimBody {
            content: Content::Stream(rx),
            tracker: None,
        }
    }

    /// Hands the request's tracker to the body, which reports how sending ended.
    pub fn tracked(mut self, mut tracker: RequestTracker) -> SimBody {
        if self.is_end_stream() {
            tracker.finish(Outcome::Finished);
        } else {
            self.tracker = Some(tracker);
        }
        self
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(tracker) = self.tracker.as_mut() {
            tracker.finish(outcome);
        }
    }
}

async fn play(tx: mpsc::Sender<Chunk>, steps: impl Iterator<Item = Step>) {
    for step in steps {
        match step {
            Step::Send(bytes) => {
                if tx.send(Chunk::Data(bytes)).await.is_err() {
                    return;
                }
            }
            Step::Sleep(duration) => {
                tokio::select! {
                    _ = tokio::time::sleep(duration) => {}
                    _ = tx.closed() => return,
                }
            }
            Step::Abort => {
                let _ = tx.send(Chunk::Abort).await;
                return;
            }
            Step::Hang => {
                tx.closed().await;
                return;
            }
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match &mut this.content {
            Content::Full(bytes) => match bytes.take() {
                Some(bytes) => {
                    this.finish(Outcome::Finished);
                    Poll::Ready(Some(Ok(Frame::data(bytes))))
                }
                None => Poll::Ready(None),
            },
            Content::Stream(rx) => match rx.poll_recv(cx) {
                Poll::Ready(Some(Chunk::Data(bytes))) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Poll::Ready(Some(Chunk::Abort)) => {
                    this.finish(Outcome::CutBySim);
                    Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "dispatch-sim cut the stream on purpose",
                    ))))
                }
                Poll::Ready(None) => {
                    this.finish(Outcome::Finished);
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.content, Content::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.content {
            Content::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Content::Full(None) => SizeHint::with_exact(0),
            Content::Stream(_) => SizeHint::default(),
        }
    }
}
