//! The HTTP endpoint: `GET /metrics` and `GET /healthz`.
//!
//! A plain HTTP/1.1 server on hyper, run by our own accept loop so that it
//! can bound what clients hold: the number of open connections is capped,
//! and a client arriving at the cap takes the place of the oldest
//! connection that is not answering a request (one that never sent a
//! complete request head, or an idle keep-alive one), so a crowd of slow
//! clients cannot lock `/metrics` and `/healthz` out; a client gets
//! [`ServerLimits::header_read_timeout`] to send each request head (which
//! also ends idle keep-alive connections and stops slowloris clients), and
//! every connection is retired gracefully after
//! [`ServerLimits::max_connection_age`], getting
//! [`ServerLimits::shutdown_grace`] to finish its response (which bounds a
//! client that never reads it). So a slow client holds one slot for a
//! bounded time and never blocks the others for good.
//!
//! `/metrics` answers in the protobuf exposition format (with native
//! histograms) when the request's `Accept` prefers it, as Prometheus does
//! with `--enable-feature=native-histograms`, and in the text format
//! otherwise; see [`wants_protobuf`].
//!
//! Handlers only hand out the page the collector last rendered (shared
//! bytes, no copy): a scrape never renders, never touches a BPF map, and
//! costs the same on a busy node as on an idle one.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use log::{debug, info, warn};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use super::Pages;
use super::protobuf::PROTOBUF_CONTENT_TYPE;

/// Content type of the Prometheus text exposition format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where the endpoint listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to bind, e.g. `127.0.0.1:9435`.
    pub listen: SocketAddr,
}

impl ServerConfig {
    /// Binds the listening socket. Done apart from [`serve`] so that a bad
    /// address is reported before any probe is attached.
    pub async fn bind(&self) -> io::Result<TcpListener> {
        TcpListener::bind(self.listen)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", self.listen)))
    }
}

/// Bounds on what clients may hold; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Time a client has to send a request head, and the longest an idle
    /// keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// A connection is closed gracefully (after its current response) once
    /// it is this old.
    pub max_connection_age: Duration,
    /// How long a connection being closed (age, or server shutdown) may
    /// take to finish its response before it is dropped.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            // Prometheus uses one connection per target; this leaves room
            // for a few servers, curl and a dashboard.
            max_connections: 64,
            // Prometheus sends a request head at once; 10 s is generous.
            header_read_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(120),
            // Prometheus's default scrape timeout is 10 s.
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `GET /metrics` (the latest pages from `pages`, made by
/// [`page`](super::page): `text/plain; version=0.0.4`, or the protobuf
/// format when `Accept` prefers it), `GET /healthz`
/// (200 `ok`), 404 for other paths and 405 for methods other than GET and HEAD, with the default
/// [`ServerLimits`]. Stops accepting when `shutdown` resolves, then gives
/// open connections [`ServerLimits::shutdown_grace`] to finish.
pub async fn serve(
    listener: TcpListener,
    pages: watch::Receiver<Pages>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with_limits(listener, pages, shutdown, ServerLimits::default()).await
}

/// [`serve`] with explicit limits.
pub async fn serve_with_limits(
    listener: TcpListener,
    pages: watch::Receiver<Pages>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServerLimits,
) -> io::Result<()> {
    // acquire_many below takes a u32.
    let max = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let limits = Arc::new(limits);

    if let Ok(addr) = listener.local_addr() {
        info!("serving metrics on http://{addr}/metrics");
    }
    let open = Arc::new(OpenConnections::default());
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_connection_error(&e) => {
                debug!("accept: {e}");
                continue;
            }
            Err(e) => {
                // Out of file descriptors or memory: back off rather than spin.
                warn!("cannot accept a metrics connection: {e}");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // Full: make room by closing the oldest connection that is
                // not answering a request; it frees its slot at once.
                if !open.evict_oldest_idle() {
                    debug!("metrics connection from {peer} refused: every slot is busy");
                    continue;
                }
                let freed = tokio::time::timeout(EVICTION_WAIT, Arc::clone(&slots).acquire_owned());
                match freed.await {
                    Ok(Ok(slot)) => slot,
                    _ => {
                        debug!("metrics connection from {peer} refused: no slot freed in time");
                        continue;
                    }
                }
            }
        };
        debug!("metrics connection from {peer}");
        let state = open.register();
        tokio::spawn(connection(
            http.clone(),
            stream,
            pages.clone(),
            stop_rx.clone(),
            Arc::clone(&limits),
            (slot, Arc::clone(&open), state),
        ));
    }

    // Refuse new clients at once, then let open connections finish.
    drop(listener);
    stop_tx.send_replace(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    // Each connection ends within the grace after seeing the stop; the extra
    // second only covers scheduling.
    let drain = limits.shutdown_grace + Duration::from_secs(1);
    if tokio::time::timeout(drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        warn!("metrics server stopped with connections still open");
    }
    Ok(())
}

/// How long a client arriving at the cap waits for an evicted connection to
/// free its slot before it is turned away.
const EVICTION_WAIT: Duration = Duration::from_millis(200);

/// A connection whose last request started longer ago than this is taken
/// as idle (its response, a few hundred KiB at most, is long written).
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// One open connection, as the accept loop sees it.
struct ConnState {
    id: u64,
    /// Start of its latest request, in ms since `OpenConnections::epoch`;
    /// `u64::MAX` while it has sent no complete request head.
    last_request_ms: AtomicU64,
    /// Told to close now.
    evict: Notify,
}

/// The open connections, oldest first.
struct OpenConnections {
    epoch: Instant,
    next_id: AtomicU64,
    list: Mutex<VecDeque<Arc<ConnState>>>,
}

impl Default for OpenConnections {
    fn default() -> Self {
        OpenConnections {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            list: Mutex::new(VecDeque::new()),
        }
    }
}

impl OpenConnections {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn register(&self) -> Arc<ConnState> {
        let state = Arc::new(ConnState {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            last_request_ms: AtomicU64::new(u64::MAX),
            evict: Notify::new(),
        });
        self.lock().push_back(Arc::clone(&state));
        state
    }

    fn remove(&self, id: u64) {
        self.lock().retain(|c| c.id != id);
    }

    /// Tells the oldest connection that is not answering a request to
    /// close; false if every one is busy.
    fn evict_oldest_idle(&self) -> bool {
        let now = self.now_ms();
        let idle_ms = IDLE_AFTER.as_millis() as u64;
        let mut list = self.lock();
        let Some(i) = list.iter().position(|c| {
            let last = c.last_request_ms.load(Ordering::Relaxed);
            last == u64::MAX || now.saturating_sub(last) >= idle_ms
        }) else {
            return false;
        };
        if let Some(c) = list.remove(i) {
            c.evict.notify_one();
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<ConnState>>> {
        // The list stays consistent whatever panicked while holding it.
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Errors that concern one connection only, not the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection until the client closes it, it gets too old, or
/// the server stops. Holds its slot until it returns.
async fn connection(
    http: http1::Builder,
    stream: TcpStream,
    pages: watch::Receiver<Pages>,
    mut stop: watch::Receiver<bool>,
    limits: Arc<ServerLimits>,
    (_slot, open, state): (OwnedSemaphorePermit, Arc<OpenConnections>, Arc<ConnState>),
) {
    // Unregisters on every way out, before the slot is released.
    struct Registered(Arc<OpenConnections>, u64);
    impl Drop for Registered {
        fn drop(&mut self) {
            self.0.remove(self.1);
        }
    }
    let _registered = Registered(Arc::clone(&open), state.id);
    let seen = Arc::clone(&state);
    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
        seen.last_request_ms.store(open.now_ms(), Ordering::Relaxed);
        let protobuf = request
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .any(|v| v.to_str().is_ok_and(wants_protobuf));
        let (method, path) = (request.method().clone(), request.uri().path().to_owned());
        let mut pages = pages.clone();
        async move { Ok::<_, Infallible>(respond(&method, &path, protobuf, &mut pages).await) }
    });
    let mut conn = pin!(http.serve_connection(TokioIo::new(stream), service));
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                debug!("metrics connection: {e}");
            }
            return;
        }
        // Evicted to make room for a new client: close at once.
        () = state.evict.notified() => return,
        () = tokio::time::sleep(limits.max_connection_age) => {}
        // An error means the server is gone: stop too.
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
    // Finishes the response in progress, if any, then closes.
    conn.as_mut().graceful_shutdown();
    match tokio::time::timeout(limits.shutdown_grace, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!("metrics connection: {e}"),
        Err(_) => debug!("metrics connection dropped: response not finished in time"),
    }
}

/// The whole routing table. Cheap: `/metrics` clones a reference to the
/// latest page, once it is rendered.
async fn respond(
    method: &Method,
    path: &str,
    protobuf: bool,
    pages: &mut watch::Receiver<Pages>,
) -> Response<Body> {
    // hyper leaves out the body of a HEAD response by itself.
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => {
            if protobuf {
                super::note_protobuf_scrape();
            }
            let choose = |pages: &Pages| match (&pages.protobuf, protobuf) {
                (Some(page), true) => (page.clone(), PROTOBUF_CONTENT_TYPE),
                // Asked for, not rendered yet (the first such scrape): the
                // text page is a valid answer meanwhile.
                _ => (pages.text.clone(), METRICS_CONTENT_TYPE),
            };
            // An error means the agent has stopped publishing: the last
            // pages are all there is.
            let chosen = pages
                .wait_for(|p| !p.rendering)
                .await
                .map(|p| choose(&p))
                .ok();
            let (body, content_type) = chosen.unwrap_or_else(|| choose(&pages.borrow()));
            let mut response = Response::new(Body::from(body));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            // The body depends on Accept: a cache must not mix the two.
            headers.insert(header::VARY, HeaderValue::from_static("Accept"));
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Whether an `Accept` value prefers the protobuf exposition format
/// (`application/vnd.google.protobuf` with
/// `proto=io.prometheus.client.MetricFamily` and `encoding=delimited`) to
/// the text format. Prometheus sends, with native histograms on,
/// `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.1`,
/// and without them only text types. Quality values decide; a tie, or no
/// protobuf at all, keeps the text format, the default.
pub fn wants_protobuf(accept: &str) -> bool {
    let mut protobuf = 0.0f64;
    let mut text = 0.0f64;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0f64;
        let (mut proto, mut encoding) = (None, None);
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "q" => q = v.parse().unwrap_or(0.0),
                "proto" => proto = Some(v.to_owned()),
                "encoding" => encoding = Some(v.to_ascii_lowercase()),
                _ => {}
            }
        }
        match media.as_str() {
            "application/vnd.google.protobuf"
                if proto.as_deref() == Some("io.prometheus.client.MetricFamily")
                    && encoding.as_deref() == Some("delimited") =>
            {
                protobuf = protobuf.max(q);
            }
            // What the text page satisfies.
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    protobuf > 0.0 && protobuf > text
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::collect::{Snapshot, TargetInfo};

    /// Bound on every wait, so a broken server fails the test, not hangs it.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// Status, head and body of one response.
    struct Reply {
        status: u16,
        head: String,
        body: String,
    }

    /// One request on a fresh connection, read until the server closes it.
    async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
        let (head, body) = request_raw(addr, method, path, "").await;
        Reply {
            status: status_of(&head),
            head: head.to_ascii_lowercase(),
            body: String::from_utf8(body).unwrap(),
        }
    }

    /// The response is the text page of a snapshot with `targets` targets.
    fn assert_text_page(head: &str, body: Vec<u8>, targets: usize) {
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(
            String::from_utf8(body)
                .unwrap()
                .contains(&format!("\npausewatch_targets {targets}\n"))
        );
    }

    /// One request with extra header lines; the head and the raw body.
    async fn request_raw(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &str,
    ) -> (String, Vec<u8>) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let req =
            format!("{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}Connection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
            .await
            .expect("response in time")
            .unwrap();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head");
        let head = String::from_utf8(raw[..split].to_vec()).unwrap();
        (head, raw[split + 4..].to_vec())
    }

    fn status_of(head: &str) -> u16 {
        head.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status")
    }

    /// The pages of a snapshot with `targets` targets, in both formats.
    fn page(targets: u32) -> Pages {
        super::super::page_with(
            &crate::rules::Report::from(Snapshot {
                targets: (1..=targets)
                    .map(|pid| TargetInfo {
                        pid,
                        comm: "java".to_owned(),
                        current_comm: String::new(),
                        runtime: crate::runtimes::Runtime::HotSpot,
                        runtime_version: "21".to_owned(),
                        exe: "/usr/bin/java".to_owned(),
                        container: Default::default(),
                    })
                    .map(std::sync::Arc::new)
                    .collect(),
                ..Snapshot::default()
            }),
            true,
        )
    }

    /// Starts a server on an ephemeral loopback port.
    async fn start(
        limits: ServerLimits,
    ) -> (
        SocketAddr,
        watch::Sender<Pages>,
        oneshot::Sender<()>,
        JoinHandle<io::Result<()>>,
    ) {
        let listener = ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
        .bind()
        .await
        .unwrap();
        let addr = listener.local_addr().unwrap();
        let (snap_tx, snap_rx) = watch::channel(page(1));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stop_rx.await;
        };
        let task = tokio::spawn(serve_with_limits(listener, snap_rx, shutdown, limits));
        (addr, snap_tx, stop_tx, task)
    }

    async fn stop(stop_tx: oneshot::Sender<()>, task: JoinHandle<io::Result<()>>) {
        stop_tx.send(()).unwrap();
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("server stops in time")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn serves_metrics_health_and_errors() {
        let (addr, snap_tx, stop_tx, task) = start(ServerLimits::default()).await;

        let r = request(addr, "GET", "/metrics").await;
        assert_eq!(r.status, 200);
        assert!(
            r.head
                .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
            "{}",
            r.head
        );
        assert!(r.body.contains("\npausewatch_targets 1\n"), "{}", r.body);
        assert!(r.body.contains("# TYPE pausewatch_target_info gauge\n"));

        // A new page is what the next scrape sees.
        snap_tx.send(page(3)).unwrap();
        let r = request(addr, "GET", "/metrics?x=1").await;
        assert!(r.body.contains("\npausewatch_targets 3\n"), "{}", r.body);

        // A scrape during a render waits for its page, not the empty one.
        snap_tx.send_replace(Pages {
            rendering: true,
            ..Pages::default()
        });
        let waiting = tokio::spawn(async move { request(addr, "GET", "/metrics").await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "answered while the page renders");
        snap_tx.send(page(5)).unwrap();
        let r = tokio::time::timeout(PATIENCE, waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body.contains("\npausewatch_targets 5\n"), "{}", r.body);

        let r = request(addr, "GET", "/healthz").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));

        let r = request(addr, "HEAD", "/metrics").await;
        assert_eq!((r.status, r.body.as_str()), (200, ""));

        assert_eq!(request(addr, "GET", "/").await.status, 404);
        assert_eq!(request(addr, "GET", "/metrics/x").await.status, 404);
        let r = request(addr, "POST", "/metrics").await;
        assert_eq!(r.status, 405);
        assert!(r.head.contains("allow: get, head"), "{}", r.head);
        assert_eq!(request(addr, "DELETE", "/nope").await.status, 405);

        stop(stop_tx, task).await;
    }

    #[test]
    fn accept_negotiation_follows_quality_values() {
        // Prometheus 2.42 with native histograms on, and off.
        assert!(wants_protobuf(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
             encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.1"
        ));
        assert!(!wants_protobuf(
            "application/openmetrics-text;version=0.0.1,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(wants_protobuf(
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
        ));
        for text in [
            "",
            "*/*",
            "text/plain",
            // Not the delimited MetricFamily stream: not what we serve.
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text",
            "application/vnd.google.protobuf",
            // A tie keeps the default.
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,*/*",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0",
        ] {
            assert!(!wants_protobuf(text), "{text}");
        }
    }

    #[tokio::test]
    async fn metrics_in_protobuf_when_accept_prefers_it() {
        use super::super::protobuf::MetricFamily;
        use prost::Message;
        let (addr, _snap_tx, stop_tx, task) = start(ServerLimits::default()).await;
        let accept = "Accept: application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                      encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.1\r\n";
        let (head, body) = request_raw(addr, "GET", "/metrics", accept).await;
        assert_eq!(status_of(&head), 200);
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("content-type: application/vnd.google.protobuf; proto=io.prometheus.client.metricfamily; encoding=delimited"),
            "{head}"
        );
        assert!(head.contains("vary: accept"), "{head}");
        let mut buf = body.as_slice();
        let mut names = Vec::new();
        while !buf.is_empty() {
            let f = MetricFamily::decode_length_delimited(&mut buf).unwrap();
            if f.name == "pausewatch_targets" {
                assert_eq!(f.metric[0].gauge.as_ref().unwrap().value, 1.0);
            }
            names.push(f.name);
        }
        assert!(
            names.iter().any(|n| n == "pausewatch_target_info"),
            "{names:?}"
        );
        // Without that Accept, the text page.
        let (head, body) = request_raw(addr, "GET", "/metrics", "Accept: */*\r\n").await;
        assert_text_page(&head, body, 1);
        stop(stop_tx, task).await;
    }

    #[tokio::test]
    async fn protobuf_not_rendered_yet_falls_back_to_text() {
        let (addr, snap_tx, stop_tx, task) = start(ServerLimits::default()).await;
        let mut pages = page(2);
        pages.protobuf = None;
        snap_tx.send(pages).unwrap();
        let accept = "Accept: application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                      encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3\r\n";
        let (head, body) = request_raw(addr, "GET", "/metrics", accept).await;
        assert_text_page(&head, body, 2);
        // The next snapshots carry the protobuf page.
        assert!(super::super::PROTOBUF_SCRAPED.load(Ordering::Relaxed));
        stop(stop_tx, task).await;
    }

    #[tokio::test]
    async fn keep_alive_serves_several_requests() {
        let (addr, _snap_tx, stop_tx, task) = start(ServerLimits::default()).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let twice = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n\
                     GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        stream.write_all(twice.as_bytes()).await.unwrap();
        let mut raw = String::new();
        tokio::time::timeout(PATIENCE, stream.read_to_string(&mut raw))
            .await
            .expect("responses in time")
            .unwrap();
        assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 2, "{raw}");
        stop(stop_tx, task).await;
    }

    #[tokio::test]
    async fn a_slow_client_does_not_block_others() {
        let limits = ServerLimits {
            max_connections: 1,
            header_read_timeout: Duration::from_millis(300),
            ..ServerLimits::default()
        };
        let (addr, _snap_tx, stop_tx, task) = start(limits).await;

        // Holds the only slot with half a request head (slowloris).
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /metr").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;

        let started = Instant::now();
        let r = request(addr, "GET", "/healthz").await;
        assert_eq!(r.status, 200);
        assert!(started.elapsed() < Duration::from_secs(5));

        // The slow client was cut off (an error response or a plain close).
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(PATIENCE, slow.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "slow connection still open");
        stop(stop_tx, task).await;
    }

    #[tokio::test]
    async fn a_crowd_of_slow_clients_cannot_lock_others_out() {
        // The default header timeout (10 s) is longer than the test: only
        // eviction can make room.
        let limits = ServerLimits {
            max_connections: 4,
            ..ServerLimits::default()
        };
        let (addr, _snap_tx, stop_tx, task) = start(limits).await;
        let mut crowd = Vec::new();
        for _ in 0..40 {
            let mut slow = TcpStream::connect(addr).await.unwrap();
            slow.write_all(b"GET /metr").await.unwrap();
            crowd.push(slow);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        for path in ["/healthz", "/metrics"] {
            let started = Instant::now();
            let r = request(addr, "GET", path).await;
            assert_eq!(r.status, 200);
            assert!(started.elapsed() < Duration::from_secs(2), "{path}");
        }
        drop(crowd);
        stop(stop_tx, task).await;
    }

    #[tokio::test]
    async fn shutdown_does_not_wait_forever_for_clients() {
        let limits = ServerLimits {
            shutdown_grace: Duration::from_millis(200),
            ..ServerLimits::default()
        };
        let (addr, _snap_tx, stop_tx, task) = start(limits).await;
        // One idle keep-alive connection and one stuck in its request head.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(n > 0);
        let mut stuck = TcpStream::connect(addr).await.unwrap();
        stuck.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;

        let started = Instant::now();
        stop(stop_tx, task).await;
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
