//! A request body on its way from the client to a target (or into a function's event), with the two waits that
//! bound it: the client may not pause longer than `client_body_timeout` between two pieces (408), and a target
//! may not stop taking it for longer than `proxy_send_timeout` (504). `Progress` tells the forwarding side when
//! the body is all sent, so that `proxy_read_timeout` counts from there, and how it failed when the client was at
//! fault (`BodyFailure`): too large, too slow, or unreadable. `Draining` is an HTTP/2 answer given before its
//! request's body was all read (413), which reads the rest, within bounds, before its stream ends.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::Notify;
use tokio::time::Sleep;

use super::respond::Body as AnswerBody;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The most of a request body `Draining` reads and throws away after its answer.
pub const DRAIN_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// The longest `Draining` reads a request body after its answer.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pieces of a drained body read in one turn before other tasks get theirs.
const DRAIN_PIECES_PER_POLL: usize = 64;

/// The client paused longer than `client_body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no part of the request body within the body timeout")]
pub struct ClientBodyTimeout;

/// The body is longer than `client_max_body_size`.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than the limit")]
pub struct BodyTooLarge;

/// How a request body failed by the client's fault; each has its answer (`respond::body_failure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFailure {
    /// Longer than its limit (413).
    TooLarge,
    /// The client paused longer than `client_body_timeout` (408).
    TimedOut,
    /// The body could not be read: a malformed chunked coding (a chunk size that is not hexadecimal or overflows,
    /// chunk data without its CRLF …), or cut short by the client (400). Its connection cannot be read further.
    Broken,
}

pub struct Upload {
    /// `None`: no body at all (a request sent again, which had none).
    inner: Option<Incoming>,
    /// `None` for a request without a body: nothing to watch.
    watch: Option<Watch>,
}

struct Watch {
    gap: Duration,
    /// Bytes the body may still have.
    left: u64,
    timer: Option<Pin<Box<Sleep>>>,
    progress: Arc<Progress>,
}

/// How far a body has gone, shared with the side that waits for the target's answer.
pub struct Progress {
    start: Instant,
    /// Milliseconds from `start` to the last piece handed on (or to the start).
    last_piece_ms: AtomicU64,
    /// The body is being read from the client (a pause there is the client's, not the target's).
    waiting_on_client: AtomicBool,
    done: AtomicBool,
    /// Set once, when the body failed by the client's fault.
    failure: OnceLock<BodyFailure>,
    finished: Notify,
}

// === impl Upload ===

impl Upload {
    /// `inner`, cut off after `gap` without data from the client or past `limit` bytes.
    pub fn new(inner: Incoming, gap: Duration, limit: u64) -> Upload {
        let watch = (!inner.is_end_stream()).then(|| Watch {
            gap,
            left: limit,
            timer: None,
            progress: Arc::new(Progress {
                start: Instant::now(),
                last_piece_ms: AtomicU64::new(0),
                waiting_on_client: AtomicBool::new(false),
                done: AtomicBool::new(false),
                failure: OnceLock::new(),
                finished: Notify::new(),
            }),
        });
        Upload { inner: Some(inner), watch }
    }

    /// No body: a request that had none, sent again.
    pub fn empty() -> Upload {
        Upload { inner: None, watch: None }
    }

    /// The body's progress; `None` when there is no body.
    pub fn progress(&self) -> Option<Arc<Progress>> {
        self.watch.as_ref().map(|w| w.progress.clone())
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(inner).poll_frame(cx);
        let Some(watch) = this.watch.as_mut() else {
            return polled.map_err(Into::into);
        };
        let progress = &watch.progress;
        match polled {
            Poll::Pending => {
                progress.waiting_on_client.store(true, Ordering::Relaxed);
                let gap = watch.gap;
                let timer = watch.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
                ready!(timer.as_mut().poll(cx));
                progress.fail(BodyFailure::TimedOut);
                Poll::Ready(Some(Err(ClientBodyTimeout.into())))
            }
            Poll::Ready(Some(Ok(frame))) if frame.data_ref().is_some_and(|data| data.len() as u64 > watch.left) => {
                progress.fail(BodyFailure::TooLarge);
                Poll::Ready(Some(Err(BodyTooLarge.into())))
            }
            Poll::Ready(Some(Err(e))) => {
                progress.fail(BodyFailure::Broken);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(piece) => {
                if let Some(Ok(data)) = piece.as_ref().map(|p| p.as_ref().map(Frame::data_ref)) {
                    watch.left -= data.map_or(0, |d| d.len() as u64);
                }
                watch.timer = None;
                progress.waiting_on_client.store(false, Ordering::Relaxed);
                progress.last_piece_ms.store(progress.start.elapsed().as_millis() as u64, Ordering::Relaxed);
                if piece.is_none() || this.inner.as_ref().is_none_or(Incoming::is_end_stream) {
                    progress.finish();
                }
                Poll::Ready(piece.map(|p| p.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

/// An HTTP/2 answer given before its request's body was all read (the body is too large): once the answer's own
/// body is handed on, the rest of the request's is read and thrown away (at most `DRAIN_MAX_BYTES`, for at most
/// `DRAIN_TIMEOUT`) before the answer's stream ends. A client still sending thus reads the answer and ends its
/// stream as it meant to; a stream ended with the request still open is reset, and clients such as curl then
/// report the reset, not the answer. Past either bound the stream ends all the same.
pub struct Draining<R = Incoming> {
    answer: AnswerBody,
    answered: bool,
    /// `None` once the request's body has ended, failed or gone past a bound.
    rest: Option<R>,
    /// Bytes of the request's body that may still be thrown away.
    left: u64,
    deadline: Pin<Box<Sleep>>,
}

// === impl Draining ===

impl Draining {
    /// `answer`, then the rest of `upload`'s body read and thrown away, within the bounds.
    pub fn new(answer: AnswerBody, upload: Upload) -> Draining {
        Draining::of(answer, upload.inner)
    }
}

impl<R> Draining<R> {
    /// `answer`, then the rest of the body `rest` read and thrown away, within the bounds.
    pub fn after(answer: AnswerBody, rest: R) -> Draining<R> {
        Draining::of(answer, Some(rest))
    }

    fn of(answer: AnswerBody, rest: Option<R>) -> Draining<R> {
        Draining {
            answer,
            answered: false,
            rest,
            left: DRAIN_MAX_BYTES,
            deadline: Box::pin(tokio::time::sleep(DRAIN_TIMEOUT)),
        }
    }
}

impl<R: Body<Data = Bytes> + Unpin> Body for Draining<R> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if !this.answered {
            match ready!(Pin::new(&mut this.answer).poll_frame(cx)) {
                Some(frame) => return Poll::Ready(Some(frame)),
                None => this.answered = true,
            }
        }
        for _ in 0..DRAIN_PIECES_PER_POLL {
            let Some(rest) = this.rest.as_mut() else { return Poll::Ready(None) };
            if this.deadline.as_mut().poll(cx).is_ready() {
                tracing::debug!("A request body was still coming when its drain ended.");
                this.rest = None;
                continue;
            }
            match ready!(Pin::new(rest).poll_frame(cx)) {
                Some(Ok(piece)) => {
                    this.left = this.left.saturating_sub(piece.data_ref().map_or(0, |d| d.len() as u64));
                    if this.left == 0 {
                        tracing::debug!("A request body was longer than its drain.");
                        this.rest = None;
                    }
                }
                Some(Err(_)) | None => this.rest = None,
            }
        }
        // Many pieces at once: the rest on another turn.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.answered && self.rest.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.answer.size_hint()
    }
}

// === impl Progress ===

impl Progress {
    fn finish(&self) {
        self.done.store(true, Ordering::Release);
        self.finished.notify_waiters();
    }

    fn fail(&self, failure: BodyFailure) {
        let _ = self.failure.set(failure);
        self.finish();
    }

    /// How the body failed by the client's fault, if it did.
    pub fn failure(&self) -> Option<BodyFailure> {
        self.failure.get().copied()
    }

    /// Waits until the whole body is handed on (or failed); returns `false` when a target took no part of it for
    /// `send_timeout` while the client had more to give.
    pub async fn sent(&self, send_timeout: Duration) -> bool {
        // While the client is the one pausing, the target is not to blame: look again a timeout later.
        let mut not_before = Instant::now();
        loop {
            let finished = self.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            if self.done.load(Ordering::Acquire) {
                return true;
            }
            let last = self.last_piece_ms.load(Ordering::Relaxed);
            let deadline = (self.start + Duration::from_millis(last) + send_timeout).max(not_before);
            tokio::select! {
                _ = finished => return true,
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let moved = self.last_piece_ms.load(Ordering::Relaxed) != last;
                    if moved || self.waiting_on_client.load(Ordering::Relaxed) {
                        not_before = Instant::now() + send_timeout;
                    } else if !self.done.load(Ordering::Acquire) {
                        return false;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::respond;

    /// A request body that never ends: `piece` bytes whenever asked, or nothing ever with `piece` 0.
    struct Endless {
        piece: usize,
        read: Arc<AtomicU64>,
    }

    impl Body for Endless {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.piece == 0 {
                return Poll::Pending;
            }
            self.read.fetch_add(self.piece as u64, Ordering::Relaxed);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![0; self.piece])))))
        }
    }

    /// The answer's bytes, once its stream ended.
    async fn answered(draining: Draining<Endless>) -> Bytes {
        http_body_util::BodyExt::collect(draining).await.expect("the answer").to_bytes()
    }

    #[tokio::test]
    async fn a_drained_body_is_read_up_to_its_byte_bound() {
        let read = Arc::new(AtomicU64::new(0));
        let rest = Endless { piece: 1 << 20, read: read.clone() };
        let answer = answered(Draining::after(respond::full("too large"), rest)).await;
        assert_eq!(&answer[..], b"too large");
        assert_eq!(read.load(Ordering::Relaxed), DRAIN_MAX_BYTES);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drained_body_is_read_up_to_its_time_bound() {
        let started = tokio::time::Instant::now();
        let rest = Endless { piece: 0, read: Arc::default() };
        let answer = answered(Draining::after(respond::full("too large"), rest)).await;
        assert_eq!(&answer[..], b"too large");
        assert_eq!(started.elapsed(), DRAIN_TIMEOUT);
    }
}
