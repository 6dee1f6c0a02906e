//! c2sink's own query path (`Pipeline`: lists, sinkhole, cache, upstreams, block events) served through
//! hickory-server's `Server` instead of c2sink's socket loops: the yardstick for the choice in ARCHITECTURE.md.
//!
//! Same config file as `c2sink serve` (lists, cache, upstream, events, the first `server.listen` address);
//! no admission, limits, attribution, reload or admin. Each answer the pipeline produces is parsed back into a
//! hickory `Message` and handed to hickory's `MessageResponseBuilder`, because hickory-server's
//! `ResponseHandler` takes only a `MessageResponse`, never bytes.
//!
//! `cargo run --release --example hickory_frontend -- [serve --config] CONFIG` (bench/run.sh runs it as server
//! `c2sink-hickory`).

use c2sink::blocklist::Lists;
use c2sink::config::Config;
use c2sink::events::{Events, Protocol};
use c2sink::pipeline::{Client, Decision, Pipeline};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol as HickoryProtocol;
use hickory_server::proto::op::{Message, ResponseCode};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use std::sync::Arc;
use std::time::Duration;

/// The same allocator as the c2sink binary, so that the comparison is of the frameworks only.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Adapts c2sink's pipeline to hickory-server's handler trait.
struct Frontend {
    pipeline: Arc<Pipeline>,
}

#[async_trait::async_trait]
impl RequestHandler for Frontend {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let raw = request.as_slice();
        let client = Client {
            addr: request.src(),
            protocol: match request.protocol() {
                HickoryProtocol::Tcp => Protocol::Tcp,
                _ => Protocol::Udp,
            },
            from_host: false,
        };
        let answer = match self.pipeline.decide(raw, &client) {
            Decision::Reply(bytes) => Some(bytes),
            Decision::Forward => self.pipeline.forward(raw, &client).await,
            Decision::Drop => None,
        };
        // Where c2sink's own loops send nothing (not a query, or a forward that ends in silence), so does this.
        let Some(answer) = answer else {
            return not_sent(request);
        };
        let builder = MessageResponseBuilder::from_message_request(request);
        let sent = match Message::from_vec(&answer) {
            Ok(msg) => {
                let mut builder = builder;
                if let Some(edns) = &msg.edns {
                    builder.edns(edns);
                }
                let response = builder.build(
                    msg.metadata,
                    msg.answers.iter(),
                    msg.authorities.iter(),
                    std::iter::empty(),
                    msg.additionals.iter(),
                );
                response_handle.send_response(response).await
            }
            // c2sink built these bytes itself or checked them as the upstream's answer: not expected.
            Err(_) => {
                let response = builder.error_msg(&request.metadata, ResponseCode::ServFail);
                response_handle.send_response(response).await
            }
        };
        sent.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "sending a response failed");
            not_sent(request)
        })
    }
}

/// What the handler reports to hickory-server for a query it sent no answer to.
fn not_sent(request: &Request) -> ResponseInfo {
    let mut metadata = request.metadata;
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(hickory_server::proto::op::Header {
        metadata,
        counts: Default::default(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        let quiet = tracing_subscriber::filter::Targets::new()
            .with_default(tracing::Level::WARN)
            .with_target(
                "hickory_server",
                tracing_subscriber::filter::LevelFilter::OFF,
            );
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer())
            .with(quiet)
            .init();
    }
    // `CONFIG` or, like the real binary, `serve --config CONFIG` (so bench/profile.sh can run either).
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.iter().position(|a| a == "--config") {
        Some(i) => args.get(i + 1),
        None => args.first(),
    }
    .ok_or_else(|| anyhow::anyhow!("usage: hickory_frontend [serve --config] CONFIG"))?
    .clone();
    let cfg = Config::load(path.as_ref())?;
    let lists = Lists::load(&cfg)?;
    let events = Events::from_config(&cfg, None)?;
    let pipeline = Arc::new(Pipeline::new(&cfg, lists, events));
    let addr = *cfg
        .server
        .listen
        .first()
        .ok_or_else(|| anyhow::anyhow!("{path}: server.listen is empty"))?;
    let mut server = Server::new(Frontend { pipeline });
    server.register_socket(tokio::net::UdpSocket::bind(addr).await?);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    // hickory-server leaves Nagle on for the connections it accepts; Linux copies TCP_NODELAY from the
    // listening socket to each accepted one, so set here it reaches them all (as c2sink's own loop sets it).
    socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
    server.register_listener(
        listener,
        Duration::from_millis(cfg.server.tcp_idle_timeout_ms),
        64,
    );
    eprintln!("listening on {addr} (hickory-server, udp x1, tcp)");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    server.shutdown_gracefully().await?;
    Ok(())
}
