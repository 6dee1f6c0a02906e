//! Running c2sink: load everything, bind, serve until SIGTERM/SIGINT, then drain and flush.

use crate::admin;
use crate::admission::Admission;
use crate::blocklist::Lists;
use crate::clients::Clients;
use crate::config::Config;
use crate::events::Events;
use crate::listen::{self, Limits};
use crate::pipeline::Pipeline;
use crate::privilege;
use crate::tls_listen;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest wait for queries in flight at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves DNS per `cfg` until a termination signal.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    // Signal handlers first: SIGHUP's default action would kill a server whose reloader is not listening yet.
    let mut stop = stop_signals()?;
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing SIGHUP handler")?;
    let boot = cfg.clone();
    let first_copies = tokio::task::spawn_blocking(move || crate::feed::fetch_missing(&boot));
    // A download may take minutes (its timeout is 120 s): a stop meanwhile is honoured at once, as
    // `docker stop` and systemd expect; the download is abandoned on its thread.
    tokio::select! {
        r = first_copies => r.context("feed download task")??,
        () = next_signal(&mut stop) => {
            tracing::info!("stopped while downloading the first copy of a feed list");
            crate::feed::abandon_downloads(&cfg);
            return Ok(());
        }
    }
    let lists = Lists::load(&cfg).context("loading block lists")?;
    for l in &lists.lists {
        l.log_loaded();
    }
    let alerts = crate::alerts::start(&cfg).context("starting alerts")?;
    let events = Events::from_config(&cfg, alerts.map(|(tap, _stats)| tap))
        .with_context(|| format!("opening event log {:?}", cfg.log.events))?;
    // The recorder must exist before the pipeline registers its metric handles.
    let metrics = match &cfg.admin {
        Some(_) => Some(admin::install_recorder()?),
        None => None,
    };
    let mut pipeline = Pipeline::new(&cfg, lists, events);
    pipeline.clients = Clients::start(&cfg);
    let pipeline = Arc::new(pipeline);
    pipeline
        .telemetry
        .lists_loaded(&pipeline.policy.load().lists);
    reopen_logs_on_sighup(Arc::downgrade(&pipeline))?;
    let admission = Arc::new(
        Admission::new(&cfg.server)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{}: server.allow/deny", cfg.source.display()))?,
    );
    for note in cfg.notes() {
        tracing::warn!("{note}");
    }
    for warning in admission.warnings(&cfg.server) {
        tracing::warn!("{warning}");
    }

    let udp_sockets = match cfg.server.udp_sockets {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let limits = Limits {
        udp_sockets,
        tcp_max_connections: cfg.server.tcp_max_connections,
        tcp_max_connections_per_client: cfg.server.tcp_max_connections_per_client,
        tcp_idle: Duration::from_millis(cfg.server.tcp_idle_timeout_ms),
    };
    let forwards = crate::admission::ForwardSlots::new(&cfg.server, &cfg.clients.edns_from);
    let caps = listen::ConnectionCaps::new(&limits);
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    // UDP threads end only when told to: a start that fails after they run must stop them too.
    let _stop_threads_on_return = shutdown.clone().drop_guard();
    // Each UDP socket gets a thread of its own, with a runtime of its own (`listen::spawn_udp_thread`).
    let udp_shared = listen::UdpShared {
        admission: admission.clone(),
        pipeline: pipeline.clone(),
        forwards: forwards.clone(),
        shutdown: shutdown.clone(),
        drain: DRAIN,
    };
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
            let thread = listen::spawn_udp_thread(sock, udp_shared.clone())
                .context("starting a UDP listener thread")?;
            listeners.push(tokio::task::spawn_blocking(move || {
                let _ = thread.join();
            }));
        }
        listeners.push(tokio::spawn(listen::serve_tcp(
            bound.tcp,
            caps.for_listener(),
            admission.clone(),
            pipeline.clone(),
            forwards.clone(),
            limits,
            tracker.clone(),
            shutdown.clone(),
        )));
    }
    drop(udp_shared);
    if let Some(t) = &cfg.tls_listen {
        let shared = tls_listen::Shared {
            admission: admission.clone(),
            pipeline: pipeline.clone(),
            forwards: forwards.clone(),
            limits,
            caps: Arc::new(caps),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
        };
        let (Some(dot_tls), Some(doh_tls)) = (t.dot_tls.clone(), t.doh_tls.clone()) else {
            anyhow::bail!(
                "{}: tls_listen: certificate not loaded",
                cfg.source.display()
            );
        };
        let path: Arc<str> = t.doh_path.as_str().into();
        for (addrs, kind) in [(&t.dot, "dot"), (&t.doh, "doh")] {
            for &addr in addrs {
                // Bound as `listen`'s TCP sockets are: `[::]` is IPv6 only, so `0.0.0.0` may share its port.
                let listener = listen::tcp_listener(addr)
                    .and_then(tokio::net::TcpListener::from_std)
                    .with_context(|| {
                        format!(
                            "{}: tls_listen.{kind}: cannot bind {addr}",
                            cfg.source.display()
                        )
                    })?;
                let bound = listener
                    .local_addr()
                    .context("encrypted listener address")?;
                tracing::info!("listening on {bound} ({kind})");
                listeners.push(if kind == "dot" {
                    tokio::spawn(tls_listen::serve_dot(
                        listener,
                        dot_tls.clone().into(),
                        shared.clone(),
                    ))
                } else {
                    tokio::spawn(tls_listen::serve_doh(
                        listener,
                        doh_tls.clone().into(),
                        path.clone(),
                        shared.clone(),
                    ))
                });
            }
        }
    }
    if let (Some(admin_cfg), Some(metrics)) = (&cfg.admin, metrics) {
        let listener = admin::bind(admin_cfg.listen)
            .await
            .with_context(|| format!("{}: admin.listen", cfg.source.display()))?;
        let addr = listener.local_addr().context("admin listener address")?;
        tracing::info!("admin listening on http://{addr}/ (metrics, healthz, readyz)");
        let state = Arc::new(admin::Admin {
            pipeline: pipeline.clone(),
            admission: admission.clone(),
            metrics,
            ready_upstream_age: Duration::from_secs(admin_cfg.ready_upstream_age_s),
        });
        listeners.push(tokio::spawn(admin::serve(
            listener,
            state,
            shutdown.clone(),
        )));
    }
    if let Some(t) = &cfg.trap {
        let limits = crate::trap::TrapLimits {
            max_connections: t.max_connections,
            max_per_client: t.max_connections_per_client,
            read_timeout: Duration::from_millis(t.read_timeout_ms),
        };
        // Weak: connections still being read at shutdown must not keep the pipeline (and its log) alive.
        let p = Arc::downgrade(&pipeline);
        let record: Arc<dyn Fn(crate::trap::Connection) + Send + Sync> = Arc::new(move |conn| {
            if let Some(p) = p.upgrade() {
                let who = p.clients.lookup(conn.client.ip());
                p.events
                    .record_connection(crate::events::ConnectionEvent::new(conn, who));
            }
        });
        for addr in cfg.trap_addresses() {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("{}: trap: cannot listen on {addr}", cfg.source.display())
            })?;
            let bound = listener.local_addr().context("trap listener address")?;
            tracing::info!("sinkhole host listening on {bound} (tcp)");
            listeners.push(tokio::spawn(crate::trap::serve(
                listener,
                limits,
                record.clone(),
                shutdown.clone(),
            )));
        }
    }
    // Every socket is bound: root is no longer needed.
    if let Some(spec) = &cfg.server.user {
        let run_as = privilege::RunAs::parse(spec)
            .and_then(|r| privilege::drop_to(&r))
            .with_context(|| format!("{}: server.user", cfg.source.display()))?;
        match run_as {
            privilege::Dropped::To(uid, gid) => {
                tracing::info!(uid, gid, "dropped root privileges")
            }
            privilege::Dropped::NotRoot(uid) => {
                tracing::info!(uid, "not started as root; server.user has nothing to drop")
            }
        }
    }
    let (reloader, reload_task) =
        crate::reload::Reloader::spawn(&cfg, pipeline.clone(), shutdown.clone(), hup)?;
    let feed_task = tokio::spawn(crate::feed::run(reloader.clone(), shutdown.clone()));
    tracing::info!(
        upstreams = ?cfg.upstream.servers,
        lists = pipeline.policy.load().lists.lists.len(),
        entries = pipeline.policy.load().lists.total(),
        "c2sink ready"
    );

    wait_for_signal(stop).await;
    tracing::info!("shutting down: draining queries in flight");
    shutdown.cancel();
    // One drain period for everything: UDP threads wait for their own queries meanwhile.
    let drained_by = tokio::time::Instant::now() + DRAIN;
    for l in listeners {
        let _ = l.await;
    }
    let _ = reload_task.await;
    let _ = feed_task.await;
    drop(reloader);
    tracker.close();
    pipeline.refreshes.close();
    let drained = async {
        tracker.wait().await;
        // Fetches that refresh the cache after a stale answer: their clients are answered already.
        pipeline.refreshes.wait().await;
    };
    if tokio::time::timeout_at(drained_by, drained).await.is_err() {
        tracing::warn!("some queries were still in flight after {DRAIN:?}; stopping anyway");
    }
    match Arc::try_unwrap(pipeline) {
        Ok(mut p) => {
            p.events.close();
            log_totals(&p, &admission);
        }
        Err(p) => {
            tracing::warn!("pipeline still shared at exit; events are flushed on drop");
            log_totals(&p, &admission);
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// One line of totals at exit, so an admin (and the tests) can see what was turned away and why.
fn log_totals(p: &Pipeline, a: &Admission) {
    use std::sync::atomic::Ordering::Relaxed;
    let events = p.events.stats();
    tracing::info!(
        queries = p.stats.queries.load(Relaxed),
        blocked = p.stats.blocked.load(Relaxed),
        cached = p.stats.cached.load(Relaxed),
        forwarded = p.stats.forwarded.load(Relaxed),
        failed = p.stats.failed.load(Relaxed),
        shed = p.stats.shed.load(Relaxed),
        malformed = p.stats.malformed.load(Relaxed),
        denied = a.stats.denied.load(Relaxed),
        rate_limited = a.stats.rate_limited.load(Relaxed),
        upstream_mismatched = p.upstreams.mismatched.load(Relaxed),
        events_written = events.written.load(Relaxed),
        events_dropped = events.dropped.load(Relaxed),
        events_coalesced = events.coalesced.load(Relaxed),
        "totals"
    );
}

/// SIGTERM and SIGINT handlers, installed before any socket is announced so an early signal still
/// leads to a clean, flushed stop.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

fn stop_signals() -> anyhow::Result<StopSignals> {
    use tokio::signal::unix::{SignalKind, signal};
    Ok(StopSignals {
        term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
        int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
    })
}

async fn wait_for_signal(mut s: StopSignals) {
    next_signal(&mut s).await;
}

/// The next SIGTERM or SIGINT.
async fn next_signal(s: &mut StopSignals) {
    tokio::select! {
        _ = s.term.recv() => {}
        _ = s.int.recv() => {}
    }
}

/// Reopens the log files on every SIGHUP, for logrotate. Other SIGHUP listeners (list reload) each get
/// their own stream of the same signal, so this composes with them.
fn reopen_logs_on_sighup(pipeline: std::sync::Weak<Pipeline>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let Some(p) = pipeline.upgrade() else { return };
            tracing::info!("SIGHUP: reopening log files");
            p.events.reopen();
        }
    });
    Ok(())
}
