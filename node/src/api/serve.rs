//! Serving the node's two HTTP servers (Application API, service API) with the limits
//! `axum::serve` lacks.
//!
//! The adversarial review held 1,100 idle sockets open and the Application API stopped
//! answering: nothing ever closed a socket that sent no request, and nothing capped how
//! many a client could hold. Here every connection goes through one accept loop that
//! - closes a connection that has not sent a whole request head within
//!   [`HEADER_READ_TIMEOUT`] (slow-loris) or sits idle between requests for
//!   [`IDLE_TIMEOUT`];
//! - holds at most [`MAX_CONNECTIONS`] connections, [`MAX_CONNECTIONS_PER_IP`] from one
//!   address (service API: [`MAX_SERVICE_CONNECTIONS`], [`MAX_SERVICE_CONNECTIONS_PER_IP`]).
//!   When a cap is reached an idle connection is closed to make room — the oldest that
//!   never sent a request (an attacker's silent socket), else a kept-alive one idle for
//!   [`EVICT_SERVED_AFTER`] — so a new honest caller is still served; only when no
//!   connection can go is the newcomer answered `503 too_many_connections`.
//!
//! A request in progress (a long `wait`, an SSE stream, a container's task stream) is
//! never closed by these limits.

use axum::Router;
use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};

/// A client must send a whole request head within this time of connecting (or of its
/// previous answer): long enough for any real client, short enough that a slow-loris
/// socket is gone quickly.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in progress is closed after this long: a backstop, as
/// the header timeout also runs between requests (hyper restarts it while waiting for
/// the next head), so a silent kept-alive connection goes after 10 s already.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections the Application API holds at once: below the usual 1,024 file
/// descriptors so the node keeps descriptors for Docker, the store and its peers, and
/// above the 256 requests in flight of the benchmarks.
pub const MAX_CONNECTIONS: usize = 768;
/// Connections the Application API holds at once from one IP address: two thirds of
/// the total, so one address cannot take every slot.
pub const MAX_CONNECTIONS_PER_IP: usize = 512;
/// Connections the service API holds at once (its callers are the node's containers:
/// one task stream per instance, plus the results and events they post).
pub const MAX_SERVICE_CONNECTIONS: usize = 256;
/// Connections the service API holds at once from one container address.
pub const MAX_SERVICE_CONNECTIONS_PER_IP: usize = 64;
/// A kept-alive connection that has served requests may be closed to make room only
/// after this long idle: a client about to reuse it then is unlikely.
pub const EVICT_SERVED_AFTER: Duration = Duration::from_secs(2);

/// The limits of one server (the constants above by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_per_ip: usize,
}

impl Default for ConnLimits {
    /// The Application API's limits.
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_per_ip: MAX_CONNECTIONS_PER_IP,
        }
    }
}

impl ConnLimits {
    /// The service API's limits.
    pub fn service() -> ConnLimits {
        ConnLimits {
            max_connections: MAX_SERVICE_CONNECTIONS,
            max_per_ip: MAX_SERVICE_CONNECTIONS_PER_IP,
            ..ConnLimits::default()
        }
    }
}

/// Requests in progress on one connection, and when the last one ended.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    /// Requests received so far.
    served: AtomicUsize,
    last_end: Mutex<Instant>,
}

impl Activity {
    /// Which idle connection to close first to make room: `None` when it must not be
    /// (a request in progress, or served and idle only briefly); lower goes first.
    /// Connections that never sent a request go before the ones that did.
    fn eviction_rank(&self, now: Instant) -> Option<(u8, Instant)> {
        if !self.is_idle() {
            return None;
        }
        let last = *self.last_end.lock().expect("activity lock");
        if self.served.load(Ordering::SeqCst) == 0 {
            return Some((0, last));
        }
        (now.saturating_duration_since(last) >= EVICT_SERVED_AFTER).then_some((1, last))
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
    }

    /// When the connection has been idle for `idle`, if it is idle now.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        self.is_idle()
            .then(|| *self.last_end.lock().expect("activity lock") + idle)
    }
}

/// Counts a request as in progress until its answer's body has been sent.
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Busy {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        activity.served.fetch_add(1, Ordering::SeqCst);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last_end.lock().expect("activity lock") = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An answer's body that keeps its request counted as in progress while it streams.
#[derive(Debug)]
struct Guarded {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[derive(Debug)]
struct Conn {
    ip: IpAddr,
    activity: Arc<Activity>,
    close: Arc<Notify>,
}

/// The open connections, oldest first (ids only grow).
#[derive(Debug, Default)]
struct Table {
    conns: BTreeMap<u64, Conn>,
    per_ip: HashMap<IpAddr, usize>,
    next: u64,
}

impl Table {
    /// Room for a connection from `ip`, closing an idle one if a cap is reached.
    fn admit(
        &mut self,
        ip: IpAddr,
        limits: &ConnLimits,
    ) -> Option<(u64, Arc<Activity>, Arc<Notify>)> {
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= limits.max_per_ip
            && !self.evict_idle(Some(ip))
        {
            return None;
        }
        if self.conns.len() >= limits.max_connections && !self.evict_idle(None) {
            return None;
        }
        let id = self.next;
        self.next += 1;
        let activity = Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            last_end: Mutex::new(Instant::now()),
        });
        let close = Arc::new(Notify::new());
        self.conns.insert(
            id,
            Conn {
                ip,
                activity: activity.clone(),
                close: close.clone(),
            },
        );
        *self.per_ip.entry(ip).or_default() += 1;
        Some((id, activity, close))
    }

    /// Close an idle connection (from `ip`, if given): the oldest that never sent a
    /// request, else the one served connection idle longest (see [`EVICT_SERVED_AFTER`]).
    fn evict_idle(&mut self, ip: Option<IpAddr>) -> bool {
        let now = Instant::now();
        let victim = self
            .conns
            .iter()
            .filter(|(_, c)| ip.is_none_or(|ip| c.ip == ip))
            .filter_map(|(id, c)| c.activity.eviction_rank(now).map(|rank| (rank, *id)))
            .min()
            .map(|(_, id)| id);
        match victim.and_then(|id| self.remove(id)) {
            Some(conn) => {
                conn.close.notify_one();
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, id: u64) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&conn.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&conn.ip);
            }
        }
        Some(conn)
    }
}

/// What a refused connection reads before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 113\r\n\r\n{\"code\":\"too_many_connections\",\"message\":\"this node holds too many connections; retry in a moment\",\"details\":[]}";

/// Decides, per connection, whether its source address may be served at all.
pub type SourceCheck =
    Arc<dyn Fn(IpAddr) -> Pin<Box<dyn Future<Output = bool> + Send + 'static>> + Send + Sync>;

/// Serve `app` on `listener` with `limits` until `shutdown` completes; then stop
/// accepting, let requests in progress finish (idle connections close at once), and
/// return when every connection is closed. With `sources`, a connection whose source
/// address it refuses is closed unanswered.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    sources: Option<SourceCheck>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let table = Arc::new(Mutex::new(Table::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender: recv() returns None once all have ended.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let refusing = Arc::new(tokio::sync::Semaphore::new(MAX_REFUSALS_IN_PROGRESS));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a
                    // moment rather than spin.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let admitted = table
            .lock()
            .expect("connection table")
            .admit(peer.ip(), &limits);
        let Some((id, activity, close)) = admitted else {
            tracing::debug!(%peer, "connection refused: every slot has a request in progress");
            refuse(stream, &refusing);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            app: app.clone(),
            limits,
            activity,
            close,
            stop: stop_rx.clone(),
        };
        let table = table.clone();
        let done = done_tx.clone();
        let sources = sources.clone();
        tokio::spawn(async move {
            let allowed = match sources {
                Some(check) => check(peer.ip()).await,
                None => true,
            };
            if allowed {
                conn.run(stream).await;
            } else {
                tracing::debug!(%peer, "connection closed: not from an allowed address");
            }
            table.lock().expect("connection table").remove(id);
            drop(done);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_tx);
    let _ = done_rx.recv().await;
}

/// Refused connections being answered at once; beyond this they are closed unanswered.
const MAX_REFUSALS_IN_PROGRESS: usize = 64;

/// Answer 503 and close. The request is read (briefly) first: closing a socket with
/// unread data resets it, and the client would never see the answer.
fn refuse(stream: TcpStream, refusing: &Arc<tokio::sync::Semaphore>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(permit) = refusing.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let mut stream = stream;
        let mut buf = [0u8; 4096];
        let drain = async {
            let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
            stream.write_all(REFUSED).await?;
            stream.shutdown().await?;
            while stream.read(&mut buf).await? > 0 {}
            Ok::<_, std::io::Error>(())
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    });
}

struct Connection {
    app: Router,
    limits: ConnLimits,
    activity: Arc<Activity>,
    close: Arc<Notify>,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        let app = self.app.clone();
        let activity = self.activity.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut app = app.clone();
            let busy = Busy::start(&activity);
            async move {
                let resp = tower_service::Service::call(&mut app, req).await;
                resp.map(|r| r.map(|body| Body::new(Guarded { body, _busy: busy })))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout);
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let mut stopping = false;
        loop {
            let now = Instant::now();
            // Busy: look again in a second; idle: when the idle time runs out.
            let wake = self
                .activity
                .idle_deadline(self.limits.idle_timeout)
                .unwrap_or(now + Duration::from_secs(1))
                .max(now);
            tokio::select! {
                _ = conn.as_mut() => return,
                // Evicted to make room: it had no request in progress.
                _ = self.close.notified() => return,
                changed = self.stop.changed(), if !stopping => {
                    stopping = true;
                    if changed.is_err() || self.activity.is_idle() {
                        return;
                    }
                    conn.as_mut().graceful_shutdown();
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    if self
                        .activity
                        .idle_deadline(self.limits.idle_timeout)
                        .is_some_and(|d| d <= Instant::now())
                    {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits() -> ConnLimits {
        ConnLimits {
            header_read_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(30),
            max_connections: 8,
            max_per_ip: 6,
        }
    }

    async fn start(limits: ConnLimits) -> SocketAddr {
        let app = Router::new().route("/", get(|| async { "ok" })).route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "slow"
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, app, limits, None, std::future::pending()));
        addr
    }

    async fn fetch(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await;
        out
    }

    /// Whether the server closed `s` (EOF or reset) within `within`.
    async fn closed(s: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 256];
        matches!(
            tokio::time::timeout(within, s.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    #[tokio::test]
    async fn a_silent_socket_is_closed_after_the_header_timeout() {
        let addr = start(limits()).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        assert!(
            closed(&mut idle, Duration::from_secs(3)).await,
            "silent socket kept"
        );
        assert!(
            closed(&mut slow, Duration::from_secs(3)).await,
            "slow-loris kept"
        );
    }

    #[tokio::test]
    async fn an_idle_socket_flood_does_not_stop_honest_requests() {
        let addr = start(ConnLimits {
            header_read_timeout: Duration::from_secs(30),
            ..limits()
        })
        .await;
        let mut flood = Vec::new();
        for _ in 0..100 {
            flood.push(TcpStream::connect(addr).await.unwrap());
        }
        // Every honest request is answered while the flood is held open.
        for _ in 0..5 {
            let answer = fetch(addr, "/").await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        }
        // The server held at most its per-IP cap of the flood's sockets.
        let mut kept = 0;
        for s in &mut flood {
            if !closed(s, Duration::from_millis(20)).await {
                kept += 1;
            }
        }
        assert!(kept <= limits().max_per_ip, "kept {kept} idle sockets");
    }

    #[tokio::test]
    async fn requests_in_progress_are_not_evicted_and_a_full_server_says_503() {
        let addr = start(ConnLimits {
            max_per_ip: 8,
            ..limits()
        })
        .await;
        let mut slow = Vec::new();
        for _ in 0..8 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            slow.push(s);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let answer = fetch(addr, "/").await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
        assert!(answer.contains("too_many_connections"), "{answer:?}");
        for mut s in slow {
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            assert!(out.ends_with("slow"), "{out:?}");
        }
        assert!(fetch(addr, "/").await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn kept_alive_connections_are_not_closed_under_a_client_about_to_reuse_them() {
        let addr = start(limits()).await;
        // Six kept-alive connections that each served a request (the per-IP cap).
        let mut pool = Vec::new();
        for _ in 0..6 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            pool.push(s);
        }
        // A seventh right away: no kept-alive one is taken from under its client.
        assert!(fetch(addr, "/").await.starts_with("HTTP/1.1 503"));
        for s in &mut pool {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).await.unwrap();
            assert!(
                buf[..n].starts_with(b"HTTP/1.1 200"),
                "a pooled connection broke"
            );
        }
        // Once they have idled a while, the longest idle makes room.
        tokio::time::sleep(EVICT_SERVED_AFTER + Duration::from_millis(200)).await;
        assert!(fetch(addr, "/").await.starts_with("HTTP/1.1 200"));
    }
}
