//! Running c2sink: load everything, bind, serve until SIGTERM/SIGINT, then drain and flush.

use crate::blocklist::Lists;
use crate::config::Config;
use crate::events::Events;
use crate::listen::{self, Limits};
use crate::pipeline::Pipeline;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest wait for queries in flight at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves DNS per `cfg` until a termination signal.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let boot = cfg.clone();
    tokio::task::spawn_blocking(move || crate::feed::fetch_missing(&boot))
        .await
        .context("feed download task")??;
    let lists = Lists::load(&cfg).context("loading block lists")?;
    for l in &lists.lists {
        l.log_loaded();
    }
    let events = Events::start(&cfg.event_sink())
        .with_context(|| format!("opening event log {:?}", cfg.log.events))?;
    let pipeline = Arc::new(Pipeline::new(&cfg, lists, events));

    let udp_sockets = match cfg.server.udp_sockets {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let limits = Limits {
        udp_sockets,
        max_inflight: cfg.server.max_inflight,
        tcp_max_connections: cfg.server.tcp_max_connections,
        tcp_idle: Duration::from_millis(cfg.server.tcp_idle_timeout_ms),
    };
    let inflight = Arc::new(Semaphore::new(limits.max_inflight));
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let mut listeners = Vec::new();
    for &addr in &cfg.server.listen {
        let bound = listen::bind(addr, limits.udp_sockets).with_context(|| {
            format!(
                "{}: server.listen: cannot bind {addr}",
                cfg.source.display()
            )
        })?;
        tracing::info!(
            "listening on {} (udp x{}, tcp)",
            bound.addr,
            bound.udp.len()
        );
        for sock in bound.udp {
            listeners.push(tokio::spawn(listen::serve_udp(
                sock,
                pipeline.clone(),
                inflight.clone(),
                tracker.clone(),
                shutdown.clone(),
            )));
        }
        listeners.push(tokio::spawn(listen::serve_tcp(
            bound.tcp,
            pipeline.clone(),
            inflight.clone(),
            limits,
            tracker.clone(),
            shutdown.clone(),
        )));
    }
    let (reloader, reload_task) =
        crate::reload::Reloader::spawn(&cfg, pipeline.clone(), shutdown.clone())?;
    let feed_task = tokio::spawn(crate::feed::run(reloader.clone(), shutdown.clone()));
    tracing::info!(
        upstreams = ?cfg.upstream.servers,
        lists = pipeline.policy.load().lists.lists.len(),
        entries = pipeline.policy.load().lists.total(),
        "c2sink ready"
    );

    wait_for_signal().await?;
    tracing::info!("shutting down: draining queries in flight");
    shutdown.cancel();
    for l in listeners {
        let _ = l.await;
    }
    let _ = reload_task.await;
    let _ = feed_task.await;
    drop(reloader);
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!("some queries were still in flight after {DRAIN:?}; stopping anyway");
    }
    match Arc::try_unwrap(pipeline) {
        Ok(mut p) => p.events.close(),
        Err(_) => tracing::warn!("pipeline still shared at exit; events are flushed on drop"),
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
