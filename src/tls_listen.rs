//! Encrypted listeners for clients that support them: DNS over TLS (RFC 7858, port 853) and DNS over HTTPS
//! (RFC 8484, HTTP/2, port 443), feeding the same pipeline as UDP and TCP.
//!
//! Same limits as TCP: connections at once count against `tcp_max_connections` with TCP's, and against
//! `tcp_max_connections_per_client` on each listener; a client gets `tcp_idle_timeout_ms` for its TLS
//! handshake and between queries (a connection with an answer still due is not idle), and queries waiting
//! on upstreams count against `max_inflight` (and `max_inflight_per_client`).

use crate::admission::{Admission, Admit, ForwardSlots};
use crate::events::Protocol;
use crate::listen::{ConnectionCaps, Limits, padded, serve_stream};
use crate::pipeline::{Client, Decision, Pipeline};
use bytes::Bytes;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// HTTP/2 streams one DoH client may have open at once.
const DOH_STREAMS: u32 = 100;
/// Largest DNS query accepted in a DoH request (body or `?dns=`). A query is a few hundred octets even
/// padded (RFC 8467 pads to 468); at 64 KiB, 100 streams on each of 1,024 connections could have made c2sink
/// buffer gigabytes of request bodies, which a client it refuses (refused after the body is read) could send.
const MAX_QUERY: usize = 4096;
/// Largest header block of a DoH request (h2 would take 16 MiB): a GET's `?dns=` of [`MAX_QUERY`] octets in
/// base64url, with room for the usual headers.
const MAX_HEADERS: u32 = 16 * 1024;

/// TLS server settings for one ALPN protocol; fails if the key does not match the certificate.
pub fn server_config(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    alpn: &[u8],
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain.to_vec(), key.clone_key())?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(cfg))
}

/// What both encrypted listeners share.
#[derive(Clone)]
pub struct Shared {
    pub admission: Arc<Admission>,
    pub pipeline: Arc<Pipeline>,
    pub forwards: Arc<ForwardSlots>,
    pub limits: Limits,
    /// Each encrypted listener takes its own caps from these ([`ConnectionCaps::for_listener`]).
    pub caps: Arc<ConnectionCaps>,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

/// Accepts DNS-over-TLS connections until shutdown.
pub async fn serve_dot(listener: TcpListener, acceptor: TlsAcceptor, s: Shared) {
    accept_loop(listener, Protocol::Dot, s, move |tcp, client, s| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(Ok(tls)) = tokio::time::timeout(s.limits.tcp_idle, acceptor.accept(tcp)).await
            else {
                tracing::debug!(client = %client.addr, "DoT handshake failed or timed out");
                return;
            };
            let (rd, wr) = tokio::io::split(tls);
            serve_stream(
                rd,
                wr,
                client,
                s.admission,
                s.pipeline,
                s.forwards,
                s.limits.tcp_idle,
                s.tracker,
                s.shutdown,
            )
            .await;
        }
    })
    .await;
}

/// Accepts DNS-over-HTTPS (HTTP/2) connections until shutdown; queries are POSTed or GET with `?dns=`.
pub async fn serve_doh(listener: TcpListener, acceptor: TlsAcceptor, path: Arc<str>, s: Shared) {
    accept_loop(listener, Protocol::Doh, s, move |tcp, client, s| {
        let (acceptor, path) = (acceptor.clone(), path.clone());
        async move {
            let handshake = async {
                let tls = acceptor.accept(tcp).await.ok()?;
                h2::server::Builder::new()
                    .max_concurrent_streams(DOH_STREAMS)
                    // A client may send no more of a body than a query can hold before c2sink reads it.
                    .initial_window_size(MAX_QUERY as u32)
                    .max_header_list_size(MAX_HEADERS)
                    .handshake::<_, Bytes>(tls)
                    .await
                    .ok()
            };
            let Ok(Some(mut conn)) = tokio::time::timeout(s.limits.tcp_idle, handshake).await
            else {
                tracing::debug!(client = %client.addr, "DoH handshake failed or timed out");
                return;
            };
            // Each request's task holds a clone: more than one count means answers are still due.
            let busy = Arc::new(());
            let serve = |req, respond| {
                let (s2, path, held) = (s.clone(), path.clone(), busy.clone());
                s.tracker.spawn(async move {
                    doh_request(req, respond, &path, client, &s2).await;
                    drop(held);
                });
            };
            loop {
                let next = tokio::select! {
                    r = tokio::time::timeout(s.limits.tcp_idle, conn.accept()) => r,
                    _ = s.shutdown.cancelled() => break,
                };
                match next {
                    Ok(Some(Ok((req, respond)))) => serve(req, respond),
                    // Not idle while a query is still being forwarded: its answer is yet to leave.
                    Err(_) if Arc::strong_count(&busy) > 1 => continue,
                    _ => break,
                }
            }
            // Answers leave only while the connection is driven: finish the open streams, then close.
            conn.graceful_shutdown();
            let drain = async {
                while let Some(Ok((req, respond))) = conn.accept().await {
                    serve(req, respond);
                }
            };
            let _ = tokio::time::timeout(s.limits.tcp_idle, drain).await;
        }
    })
    .await;
}

/// The accept loop both listeners share: connection cap, then `handle` in a tracked task.
async fn accept_loop<F, Fut>(listener: TcpListener, protocol: Protocol, s: Shared, handle: F)
where
    F: Fn(tokio::net::TcpStream, Client, Shared) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    // The same caps as plain TCP (the total shared with it): one address cannot take every encrypted slot.
    let caps = s.caps.for_listener();
    let mut errors = crate::listen::AcceptErrors::default();
    loop {
        let (tcp, src) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    errors.pause(&e, protocol.as_str(), Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = s.shutdown.cancelled() => return,
        };
        let client = Client {
            addr: src,
            protocol,
            from_host: crate::listen::connected_from_host(src, tcp.local_addr()),
        };
        let Some(admitted) = caps.admit(&s.admission, &client) else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        // Boxed: held by the task and awaited in it, the connection's future (kilobytes) took its room twice,
        // and a task's whole future is copied when it is spawned.
        let fut = Box::pin(handle(tcp, client, s.clone()));
        s.tracker.spawn(async move {
            fut.await;
            drop(admitted);
        });
    }
}

async fn doh_request(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    path: &str,
    client: Client,
    s: &Shared,
) {
    // A body that never ends must not park the stream (and its buffer) for the connection's life.
    let (head, mut req_body) = req.into_parts();
    let message = tokio::time::timeout(s.limits.tcp_idle, doh_message(&head, &mut req_body, path))
        .await
        .unwrap_or(Err((
            http::StatusCode::REQUEST_TIMEOUT,
            "request not complete in time\n",
        )));
    let (status, body) = match message {
        Err((status, why)) => (status, Bytes::from(why)),
        Ok(msg) => match answer(&msg, &client, s).await {
            // The answer to a padded query is padded too (RFC 7830 section 4).
            Some(a) => (
                http::StatusCode::OK,
                Bytes::from(padded(a, crate::wire::padding_asked(&msg))),
            ),
            None => (
                http::StatusCode::BAD_REQUEST,
                Bytes::from_static(b"not a DNS query\n"),
            ),
        },
    };
    let ctype = if status == http::StatusCode::OK {
        "application/dns-message"
    } else {
        "text/plain; charset=utf-8"
    };
    let Ok(resp) = http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, ctype)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(())
    else {
        return;
    };
    if let Ok(mut out) = respond.send_response(resp, false) {
        let _ = out.send_data(body, true);
    }
    // A request refused before its body ended (415, 413) still has a stream open on the client's side, and
    // dropping it resets the stream, which discards the response still queued: the client saw a stream
    // error instead of the status. What the client still sends is read and thrown away first, within its
    // window (not widened here) and a second.
    let rest = async { while let Some(Ok(_)) = req_body.data().await {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), rest).await;
}

/// The DNS message carried by a DoH request, or the HTTP status and reason to refuse it with.
async fn doh_message(
    req: &http::request::Parts,
    body: &mut h2::RecvStream,
    path: &str,
) -> Result<Vec<u8>, (http::StatusCode, &'static str)> {
    use http::StatusCode as S;
    if req.uri.path() != path {
        return Err((S::NOT_FOUND, "no such path\n"));
    }
    match req.method {
        http::Method::GET => {
            let dns = req
                .uri
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("dns="))
                .ok_or((S::BAD_REQUEST, "missing dns= parameter\n"))?;
            if dns.len() / 4 * 3 > MAX_QUERY {
                return Err((S::URI_TOO_LONG, "query too large\n"));
            }
            base64url_decode(dns).ok_or((S::BAD_REQUEST, "dns= is not base64url\n"))
        }
        http::Method::POST => {
            let ctype = req
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if ctype != "application/dns-message" {
                return Err((
                    S::UNSUPPORTED_MEDIA_TYPE,
                    "content type must be application/dns-message\n",
                ));
            }
            let mut msg = Vec::with_capacity(512);
            while let Some(chunk) = body.data().await {
                let chunk = chunk.map_err(|_| (S::BAD_REQUEST, "body cut short\n"))?;
                let _ = body.flow_control().release_capacity(chunk.len());
                if msg.len() + chunk.len() > MAX_QUERY {
                    return Err((S::PAYLOAD_TOO_LARGE, "query too large\n"));
                }
                msg.extend_from_slice(&chunk);
            }
            Ok(msg)
        }
        _ => Err((S::METHOD_NOT_ALLOWED, "GET or POST\n")),
    }
}

/// Runs one query through admission and the pipeline, forwarding within the shared in-flight limit.
async fn answer(msg: &[u8], client: &Client, s: &Shared) -> Option<Vec<u8>> {
    match s.admission.check_client(client, msg) {
        Admit::Pass => {}
        Admit::Reply(r) => return Some(r),
        Admit::Drop => return None,
    }
    match s.pipeline.decide(msg, client) {
        Decision::Reply(r) => Some(r),
        Decision::Drop => None,
        Decision::Forward => match s.forwards.take(client) {
            Some(slot) => {
                let forward = s.pipeline.forward(msg, client);
                let r = crate::encrypted::on_behalf_of(slot.asker(), forward).await;
                drop(slot);
                r
            }
            None => Some(s.pipeline.shed(msg)),
        },
    }
}

/// Decodes unpadded (or padded) base64url, as DoH GET requests carry the query.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be padding zeros, and a lone 6-bit group cannot end a message.
    (bits < 6 && acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_decodes_rfc8484_example() {
        // RFC 8484 section 4.1.1: www.example.com A, ID 0.
        let q = base64url_decode("AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB").expect("decodes");
        assert_eq!(&q[..4], &[0, 0, 1, 0]);
        assert_eq!(&q[12..16], b"\x03www");
        assert_eq!(q.len(), 33);
        assert_eq!(base64url_decode("AA").as_deref(), Some(&[0u8][..]));
        assert!(base64url_decode("A").is_none());
        assert!(base64url_decode("AB+/").is_none());
    }
}
