//! Connections: the accept loop and each connection's life, which axum's own `serve` leaves uncontrolled. This
//! module owns the [`Connections`] limits and enforces them: at most `max_connections` open at once (at the
//! cap, idle keep-alive connections are closed to make room, so a client that needs the server, `/health`
//! included, gets in; beyond that new clients wait in the listen backlog rather than fail), a request head
//! must arrive complete within `header_timeout` of its first byte, a keep-alive connection with no request
//! for `idle_timeout` is closed, and after shutdown begins, connections get `drain_timeout` to finish what they
//! are answering before they are cut. It also watches each request head as it arrives on the wire and marks
//! one that carries both `Transfer-Encoding` and `Content-Length` (hyper drops the latter silently), so the
//! router can refuse it.

use super::log::Log;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How many connections may be open and how long each may sit without progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    /// Most connections open at once. At the cap, idle keep-alive connections are closed to admit new ones;
    /// if none is idle, new connections wait in the listen backlog.
    pub max_connections: usize,
    /// Longest from the first byte of a request head to its end (slow-header clients are cut off).
    pub header_timeout: Duration,
    /// Longest a keep-alive connection may wait for its next request (or an accepted one for its first).
    pub idle_timeout: Duration,
    /// After shutdown begins, how long connections get to finish the requests they are answering; whatever is
    /// still open then (a half-sent request head, a stuck client) is closed and `serve` returns.
    pub drain_timeout: Duration,
}

impl Default for Connections {
    /// 4,096 connections (four times OpenRLHF's default rollout burst of 1,024 one-query requests, each on its
    /// own connection), 10 s for a request head, 30 s idle, 35 s to drain (the default request timeout plus a
    /// margin, so a request admitted just before shutdown can still be answered).
    fn default() -> Self {
        Connections {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(35),
        }
    }
}

/// A request whose head carried both `Transfer-Encoding` and `Content-Length`, as an extension the router's
/// guard reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AmbiguousLength;

/// The longest request head the wire check keeps; hyper refuses longer heads itself.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// What a connection is doing, shared between its socket wrapper, its service and its watchdog.
struct Activity {
    /// When the connection was accepted; the millisecond stamps below count from it.
    epoch: Instant,
    /// Requests being handled (0 or 1 on HTTP/1).
    in_request: AtomicUsize,
    /// When the connection last became idle (accepted, or finished a request).
    idle_since_ms: AtomicU64,
    /// When the first byte of the next request head arrived, plus one; 0 while none has.
    head_started_ms: AtomicU64,
    /// The request head being received, until it is complete.
    head: Mutex<HeadScan>,
    /// The head just completed carried both Transfer-Encoding and Content-Length.
    ambiguous: AtomicBool,
}

#[derive(Default)]
struct HeadScan {
    bytes: Vec<u8>,
    done: bool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            in_request: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            head: Mutex::new(HeadScan::default()),
            ambiguous: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn head(&self) -> std::sync::MutexGuard<'_, HeadScan> {
        self.head.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes read from the socket: outside a request they belong to the next request head.
    fn received(&self, bytes: &[u8]) {
        if bytes.is_empty() || self.in_request.load(Ordering::Acquire) > 0 {
            return;
        }
        let _ = self.head_started_ms.compare_exchange(0, self.now_ms() + 1, Ordering::AcqRel, Ordering::Acquire);
        let mut head = self.head();
        if head.done || head.bytes.len() >= MAX_HEAD_BYTES {
            return;
        }
        head.bytes.extend_from_slice(bytes);
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut request = httparse::Request::new(&mut headers);
        // A head that does not parse (too many headers, bad syntax) is hyper's to refuse.
        match request.parse(&head.bytes) {
            Ok(httparse::Status::Partial) => {}
            Ok(httparse::Status::Complete(_)) => {
                let has = |name: &str| request.headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
                self.ambiguous.store(has("transfer-encoding") && has("content-length"), Ordering::Release);
                head.done = true;
                head.bytes = Vec::new();
            }
            Err(_) => head.done = true,
        }
    }

    /// A request was handed to the router.
    fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_request.fetch_add(1, Ordering::AcqRel);
        RequestGuard(Arc::clone(self))
    }

    /// When the watchdog should next look, and whether the connection has already overstayed.
    fn deadline(&self, limits: &Connections) -> (Instant, bool) {
        let now = Instant::now();
        if self.in_request.load(Ordering::Acquire) > 0 {
            // The request timeout governs a request in progress; look again later.
            return (now + limits.idle_timeout, false);
        }
        let due = match self.head_started_ms.load(Ordering::Acquire) {
            0 => self.at(self.idle_since_ms.load(Ordering::Acquire)) + limits.idle_timeout,
            started => self.at(started - 1) + limits.header_timeout,
        };
        (due, due <= now)
    }

    /// Idle: no request being handled and no byte of the next one received.
    fn idle(&self) -> bool {
        self.in_request.load(Ordering::Acquire) == 0 && self.head_started_ms.load(Ordering::Acquire) == 0
    }
}

/// Held while the router handles a request; dropping it makes the connection idle again.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since_ms.store(a.now_ms(), Ordering::Release);
        a.head_started_ms.store(0, Ordering::Release);
        *a.head() = HeadScan::default();
        a.in_request.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket, reporting what it reads to the connection's [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.activity.received(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts connections on `listener` and serves `router` on each within `limits` until `shutdown` resolves;
/// then stops accepting, lets connections finish for at most `drain_timeout`, closes the rest and returns.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    router: Router,
    limits: Connections,
    log: Log,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let pressure = Arc::new(Notify::new());
    let (stop, stopped) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = admit(&permits, &pressure) => permit,
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most often: say so and let connections close before trying again,
                    // instead of spinning or hanging silently.
                    log.line(&format!("accepting a connection failed: {e}; retrying in 100 ms"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        let watch = Watch {
            router: router.clone(),
            limits,
            stopped: stopped.clone(),
            pressure: Arc::clone(&pressure),
        };
        tasks.spawn(watch.serve(stream, permit));
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        log.line(&format!(
            "{} connection(s) still open {} s after shutdown began (the drain deadline): closing them",
            tasks.len(),
            limits.drain_timeout.as_secs_f64()
        ));
        tasks.shutdown().await;
    }
}

/// A connection slot: at once when one is free, else after asking idle connections to close (again every
/// 100 ms, since connections that were busy may have become idle).
async fn admit(permits: &Arc<Semaphore>, pressure: &Notify) -> OwnedSemaphorePermit {
    loop {
        if let Ok(permit) = Arc::clone(permits).try_acquire_owned() {
            return permit;
        }
        pressure.notify_waiters();
        if let Ok(Ok(permit)) = tokio::time::timeout(Duration::from_millis(100), Arc::clone(permits).acquire_owned()).await {
            return permit;
        }
    }
}

/// What one connection's task needs besides its socket.
struct Watch {
    router: Router,
    limits: Connections,
    stopped: watch::Receiver<bool>,
    pressure: Arc<Notify>,
}

impl Watch {
    /// Serves one connection until the client closes it, it overstays a timeout, it is idle when the server
    /// is at its connection cap, or shutdown asks it to finish.
    async fn serve(mut self, stream: TcpStream, _permit: OwnedSemaphorePermit) {
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: Arc::clone(&activity),
        });
        let (router, service_activity) = (self.router.clone(), Arc::clone(&activity));
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let guard = service_activity.begin();
            if service_activity.ambiguous.swap(false, Ordering::AcqRel) {
                request.extensions_mut().insert(AmbiguousLength);
            }
            let mut router = router.clone();
            async move {
                let response = tower_service::Service::call(&mut router, request).await;
                drop(guard);
                response
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            // The watchdog below enforces the head timeout from the head's first byte; hyper's own would also
            // count the idle wait before it.
            .header_read_timeout(None)
            .serve_connection(io, service);
        tokio::pin!(connection);
        let mut draining = false;
        loop {
            let (due, overdue) = activity.deadline(&self.limits);
            if overdue && !draining {
                return;
            }
            // Biased: the connection is polled first, so bytes already waiting are read before the connection
            // could be taken for idle and closed to make room.
            tokio::select! {
                biased;
                _ = connection.as_mut() => return,
                changed = self.stopped.changed(), if !draining => {
                    if changed.is_err() || *self.stopped.borrow() {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
                _ = self.pressure.notified(), if activity.idle() => return,
                _ = tokio::time::sleep_until(due), if !draining => {}
            }
        }
    }
}
