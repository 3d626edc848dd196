//! Serving HTTP/1.1 with the limits `axum::serve` lacks, so that slow or idle clients cannot
//! hold the service's connections:
//!
//! - at most `server.max_connections` connections are served at once; the next ones wait in
//!   the listen backlog (the kernel completes their handshake and queues them) and are
//!   accepted as soon as a served connection closes. Only when that backlog is full does the
//!   OS refuse new connections;
//! - a request's line and headers must be complete within `server.header_read_timeout_secs`
//!   of their first byte, or the connection is closed (no answer: the request never began);
//! - a connection with no request in flight that receives nothing for
//!   `server.idle_timeout_secs` is closed.
//!
//! A request's body and handler are bounded by `server.request_timeout_secs` (the API's time
//! limit). Graceful shutdown works as `axum::serve`'s does: stop accepting, let in-flight
//! requests finish (their responses are sent, then the connection closes), close idle
//! connections at once, and return when every connection has closed.
//!
//! hyper's own header timer is not used: it runs from the end of the previous response, so
//! it would also cut idle keep-alive connections, leaving no separate idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::ServerSettings;

/// The connection limits of `server.*`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Limits {
    pub fn from_settings(s: &ServerSettings) -> Limits {
        Limits {
            max_connections: s.max_connections,
            header_read_timeout: Duration::from_secs(s.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(s.idle_timeout_secs),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains (see the module
/// comment) and returns.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        // A slot first: beyond the cap, connections wait in the backlog, not in our memory.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Per-connection failures (reset before accept) need nothing; running out of
                    // file descriptors does: wait a little instead of spinning.
                    if !matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted) {
                        tracing::error!(error = %e, "accepting a connection failed");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = &mut shutdown => break,
                        }
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(stream, router.clone(), limits, stop.clone(), slot));
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
}

/// Why a connection is closed by its watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Part of a request head arrived, not all of it, within the header-read timeout.
    HeaderRead,
    /// Nothing in flight and nothing received within the idle timeout.
    Idle,
}

async fn serve_connection(stream: TcpStream, router: Router, limits: Limits, stop: CancellationToken, _slot: OwnedSemaphorePermit) {
    metrics::gauge!("kairos_http_connections").increment(1.0);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched { inner: stream, activity: activity.clone() });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let router = router.clone();
        let in_flight = InFlight::start(requests.clone());
        async move {
            let response = router.oneshot(req.map(axum::body::Body::new)).await;
            drop(in_flight);
            response
        }
    });
    // hyper's header timer off (see the module comment): `Activity` times heads and idleness.
    let conn = hyper::server::conn::http1::Builder::new().header_read_timeout(None).serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            expiry = activity.expired(limits), if !closing => {
                let reason = match expiry { Expiry::HeaderRead => "header_read_timeout", Expiry::Idle => "idle_timeout" };
                metrics::counter!("kairos_http_connections_closed_total", "reason" => reason).increment(1);
                match expiry {
                    // The request never began: drop the connection without an answer.
                    Expiry::HeaderRead => break,
                    Expiry::Idle => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }
    metrics::gauge!("kairos_http_connections").decrement(1.0);
}

/// What a connection is doing, as its reads, writes and requests show.
struct Activity {
    state: Mutex<ActivityState>,
    changed: Notify,
}

struct ActivityState {
    /// Requests handed to the router and not answered yet.
    in_flight: usize,
    /// Bytes of a request head arrived while nothing was in flight.
    head_started: bool,
    /// When the current phase began (idle: refreshed by every byte sent).
    since: Instant,
}

impl Activity {
    fn new() -> Activity {
        Activity { state: Mutex::new(ActivityState { in_flight: 0, head_started: false, since: Instant::now() }), changed: Notify::new() }
    }

    fn received(&self) {
        let mut s = self.state.lock().expect("activity lock");
        if s.in_flight == 0 && !s.head_started {
            s.head_started = true;
            s.since = Instant::now();
            drop(s);
            self.changed.notify_one();
        }
    }

    fn sent(&self) {
        let mut s = self.state.lock().expect("activity lock");
        if s.in_flight == 0 && !s.head_started {
            s.since = Instant::now();
        }
    }

    /// When the phase the connection is in expires, and why; `None` while a request is in
    /// flight (the API's time limit bounds it).
    fn deadline(&self, limits: Limits) -> Option<(Instant, Expiry)> {
        let s = self.state.lock().expect("activity lock");
        if s.in_flight > 0 {
            None
        } else if s.head_started {
            Some((s.since + limits.header_read_timeout, Expiry::HeaderRead))
        } else {
            Some((s.since + limits.idle_timeout, Expiry::Idle))
        }
    }

    /// Resolves once the connection has stayed in one phase past its limit.
    async fn expired(&self, limits: Limits) -> Expiry {
        loop {
            // Taken before reading the state: a change in between leaves a permit.
            let changed = self.changed.notified();
            let Some((at, expiry)) = self.deadline(limits) else {
                changed.await;
                continue;
            };
            if Instant::now() >= at {
                return expiry;
            }
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = changed => {}
            }
        }
    }
}

/// A request being handled; its drop ends it.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> InFlight {
        {
            let mut s = activity.state.lock().expect("activity lock");
            s.in_flight += 1;
            s.head_started = false;
        }
        activity.changed.notify_one();
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut s = self.0.state.lock().expect("activity lock");
            s.in_flight -= 1;
            if s.in_flight == 0 {
                s.head_started = false;
                s.since = Instant::now();
            }
        }
        self.0.changed.notify_one();
    }
}

/// The socket, telling `Activity` about the bytes that pass.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.sent();
        }
        polled
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.sent();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
