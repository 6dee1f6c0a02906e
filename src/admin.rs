//! The admin HTTP endpoint: `/metrics` (Prometheus text), `/healthz` (the process serves), `/readyz` (lists are
//! loaded and an upstream answered recently).
//!
//! Three read-only GET routes need no HTTP framework: requests are read up to a small size and time limit,
//! answered, and the connection is closed. Connections at once are capped, so a scraper gone wild cannot
//! starve the resolver.

use crate::pipeline::Pipeline;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Largest request head read; anything longer is answered 431.
const MAX_HEAD: usize = 8192;
/// Time a client has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin connections served at once.
const MAX_CONNECTIONS: usize = 32;
/// How often histogram samples are folded in even when nobody scrapes (bounds their memory).
const UPKEEP: Duration = Duration::from_secs(5);
/// Upstream latency buckets in seconds: loopback (sub-ms) to a slow DoT handshake.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The admin endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(String),
    #[error("cannot bind {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Installs the process-wide Prometheus recorder; call before building the pipeline so its handles record.
pub fn install_recorder() -> Result<PrometheusHandle, AdminError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("c2sink_upstream_latency_seconds".into()),
            &LATENCY_BUCKETS,
        )
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| AdminError::Recorder(e.to_string()))?;
    crate::telemetry::describe();
    Ok(handle)
}

/// What the endpoint reads from.
pub struct Admin {
    pub pipeline: Arc<Pipeline>,
    /// Whose counts of queries turned away (by `allow`/`deny` or the rate limit) `/metrics` shows.
    pub admission: Arc<crate::admission::Admission>,
    pub metrics: PrometheusHandle,
    /// Upstream answers older than this make `/readyz` probe before saying "not ready".
    pub ready_upstream_age: Duration,
}

/// Binds the admin listener (before serving starts, so a bad address fails the start).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, AdminError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind { addr, source })
}

/// Serves admin requests until shutdown; folds histogram samples in every few seconds.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut upkeep = tokio::time::interval(UPKEEP);
    let mut errors = crate::listen::AcceptErrors::default();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    errors.pause(&e, "admin", Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = upkeep.tick() => {
                admin.metrics.run_upkeep();
                continue;
            }
            _ = shutdown.cancelled() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &admin).await {
                tracing::debug!(error = %e, "admin connection");
            }
            drop(permit);
        });
    }
}

/// One HTTP response: status line, content type, body.
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

async fn handle(mut stream: TcpStream, admin: &Admin) -> std::io::Result<()> {
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request head"))??;
    let (head_only, resp) = match head {
        None => (
            false,
            Response::text("431 Request Header Fields Too Large", ""),
        ),
        Some(h) => {
            let mut parts = h.split_whitespace();
            let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let path = target.split('?').next().unwrap_or("");
            match method {
                "GET" | "HEAD" => (method == "HEAD", route(path, admin).await),
                _ => (
                    false,
                    Response::text("405 Method Not Allowed", "GET only\n"),
                ),
            }
        }
    };
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        resp.status,
        resp.content_type,
        resp.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(resp.body.as_bytes());
    }
    stream.write_all(&out).await?;
    stream.shutdown().await
}

/// Reads the request head; `None` when it exceeds [`MAX_HEAD`]. Only the request line is kept.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        // Where the head ends (after its blank line), if it has: a head past MAX_HEAD is refused even when
        // its end came in the same read.
        let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
        let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
        let end = crlf.into_iter().chain(lf).min();
        match end {
            Some(end) if end <= MAX_HEAD => {
                let line = buf.split(|&b| b == b'\n').next().unwrap_or(&[]);
                return Ok(Some(String::from_utf8_lossy(line).trim().to_string()));
            }
            Some(_) => return Ok(None),
            None if buf.len() > MAX_HEAD => return Ok(None),
            None => {}
        }
    }
}

async fn route(path: &str, admin: &Admin) -> Response {
    match path {
        "/metrics" => {
            sample(admin);
            Response {
                status: "200 OK",
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: admin.metrics.render(),
            }
        }
        "/healthz" => Response::text("200 OK", "ok\n"),
        "/readyz" => readiness(admin).await,
        _ => Response::text("404 Not Found", "try /metrics, /healthz or /readyz\n"),
    }
}

/// Ready when lists are loaded and an upstream answered lately; an idle server probes the upstreams first.
async fn readiness(admin: &Admin) -> Response {
    let p = &admin.pipeline;
    let mut problems = Vec::new();
    if !p.telemetry.lists_ready() {
        problems.push("lists: not loaded yet".to_string());
    }
    if !p.upstreams.answered_within(admin.ready_upstream_age)
        && let Err(e) = p.upstreams.probe().await
    {
        problems.push(format!("upstream: {e}"));
    }
    if problems.is_empty() {
        Response::text("200 OK", "ready\n")
    } else {
        Response::text(
            "503 Service Unavailable",
            format!("not ready\n{}\n", problems.join("\n")),
        )
    }
}

/// Values read at scrape time rather than counted on the query path.
fn sample(admin: &Admin) {
    let p = &admin.pipeline;
    if let Some(cache) = &p.cache {
        metrics::gauge!("c2sink_cache_entries").set(cache.len() as f64);
    }
    let ev = p.events.stats();
    metrics::counter!("c2sink_events_written_total")
        .absolute(ev.written.load(std::sync::atomic::Ordering::Relaxed));
    metrics::counter!("c2sink_events_dropped_total")
        .absolute(ev.dropped.load(std::sync::atomic::Ordering::Relaxed));
    metrics::counter!("c2sink_events_coalesced_total")
        .absolute(ev.coalesced.load(std::sync::atomic::Ordering::Relaxed));
    let turned_away = &admin.admission.stats;
    for (reason, n) in [
        ("denied", &turned_away.denied),
        ("rate_limited", &turned_away.rate_limited),
    ] {
        metrics::counter!("c2sink_queries_rejected_total", "reason" => reason)
            .absolute(n.load(std::sync::atomic::Ordering::Relaxed));
    }
    metrics::counter!("c2sink_upstream_mismatched_total").absolute(
        p.upstreams
            .mismatched
            .load(std::sync::atomic::Ordering::Relaxed),
    );
}
