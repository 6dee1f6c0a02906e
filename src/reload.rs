//! Applying changed lists and config while serving: on SIGHUP, and when the config file or a list file changes.
//!
//! The new policy is built off to the side (on a blocking thread) and swapped in whole; queries keep being
//! answered from the old one meanwhile. A reload that fails for any reason (config error, missing or garbage
//! list) keeps the old policy, logs why and is counted. Lists whose config entry and file are unchanged are
//! shared with the old policy, not rebuilt, so only a changed list is ever held twice.
//!
//! Live: `[[blocklists]]` and `[sinkhole]`. Everything else (listen addresses, upstreams, cache, log, ...) is
//! read at start only; a reload that changes it logs a warning that a restart is needed.
//!
//! Changes are found by polling file metadata (device, inode, size, mtime, ctime) rather than inotify: it
//! sees atomic renames, symlink swaps (Kubernetes ConfigMaps), editors' truncate-then-write and network file
//! systems alike, costs a few `stat` calls a second and needs no extra crate.

use crate::blocklist::{FileStamp, Lists};
use crate::config::Config;
use crate::pipeline::{Pipeline, Policy};
use crate::sinkhole::Sinkhole;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Stamps of the files a policy was built from.
type Stamps = Vec<(PathBuf, Option<FileStamp>)>;

/// Reloads the policy of one pipeline from its config file.
pub struct Reloader {
    path: PathBuf,
    pipeline: Arc<Pipeline>,
    config: Mutex<Config>,
    /// The config c2sink started with: what is read at start only (`[server]`, `[upstream]`, `[reload]`, ...)
    /// is in force from it until a restart, and each reload compares with it, so a change that waits for a
    /// restart is reported on every reload until then, not only on the first.
    started: Config,
    /// Held through a reload: one triggered by a feed and one by SIGHUP or the watcher run one after the
    /// other, so the later one reads the files as the earlier left them and its policy is the one kept
    /// (run at once, the one that finished last won, even if it had read older files).
    one_at_a_time: tokio::sync::Mutex<()>,
    /// The files the watcher compares with: those the policy in force was built from, as every reload
    /// (a feed's too) leaves them, so that a reload is not followed by a second one for the same change;
    /// after a failed reload, also the lists the new config names, so that creating a missing one retries.
    watched: Mutex<Stamps>,
    /// Reloads that swapped in a new policy.
    pub reloads: AtomicU64,
    /// Reloads that failed and kept the old policy.
    pub failures: AtomicU64,
}

impl Reloader {
    /// Installs the SIGHUP handler (so SIGHUP no longer ends the process) and starts watching until
    /// `shutdown`; await the handle before dropping the pipeline.
    pub fn spawn(
        cfg: &Config,
        pipeline: Arc<Pipeline>,
        shutdown: CancellationToken,
        hup: tokio::signal::unix::Signal,
    ) -> anyhow::Result<(Arc<Reloader>, tokio::task::JoinHandle<()>)> {
        let r = Arc::new(Reloader {
            path: cfg.source.clone(),
            pipeline,
            config: Mutex::new(cfg.clone()),
            started: cfg.clone(),
            one_at_a_time: tokio::sync::Mutex::new(()),
            watched: Mutex::new(Vec::new()),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        // The files as the policy in force was read from them, taken before c2sink says it is ready: a
        // change right after that is a change, not the starting point.
        r.set_watched(r.loaded_stamps());
        let task = tokio::spawn(r.clone().run(hup, shutdown));
        Ok((r, task))
    }

    async fn run(
        self: Arc<Self>,
        mut hup: tokio::signal::unix::Signal,
        shutdown: CancellationToken,
    ) {
        let mut settling: Option<Stamps> = None;
        let reload_cfg = &self.started.reload;
        let mut tick = tokio::time::interval(Duration::from_millis(reload_cfg.interval_ms.max(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = hup.recv() => {
                    self.reload("SIGHUP").await;
                    settling = None;
                }
                _ = tick.tick(), if reload_cfg.watch => {
                    let seen = self.watched.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let paths: Vec<PathBuf> = seen.iter().map(|(p, _)| p.clone()).collect();
                    let Ok(now) = tokio::task::spawn_blocking(move || stamps_of(paths)).await else {
                        continue;
                    };
                    if now == seen {
                        settling = None;
                    } else if settling.as_ref() == Some(&now) {
                        // Unchanged since the last look: the writer is done.
                        settling = None;
                        self.reload("file changed").await;
                    } else {
                        settling = Some(now);
                    }
                }
            }
        }
    }

    fn set_watched(&self, stamps: Stamps) {
        *self.watched.lock().unwrap_or_else(|p| p.into_inner()) = stamps;
    }

    /// The config in force (the last one that loaded).
    pub fn current_config(&self) -> Config {
        self.config()
    }

    fn config(&self) -> Config {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The files the current policy came from, as they were when read.
    fn loaded_stamps(&self) -> Stamps {
        let policy = self.pipeline.policy.load();
        let mut out = vec![(self.path.clone(), FileStamp::of(&self.path))];
        out.extend(policy.lists.lists.iter().map(|l| (l.path.clone(), l.stamp)));
        out
    }

    /// Rebuilds and swaps the policy; false when it failed and the old policy was kept.
    pub async fn reload(&self, why: &str) -> bool {
        let _one_at_a_time = self.one_at_a_time.lock().await;
        let started = Instant::now();
        let path = self.path.clone();
        let started_cfg = self.started.clone();
        let old = self.pipeline.policy.load_full();
        let built = tokio::task::spawn_blocking(move || build(&path, &started_cfg, &old)).await;
        let built = match built {
            Ok(b) => b,
            Err(e) => Err(anyhow::anyhow!("reload task failed: {e}")),
        };
        match built {
            Ok((cfg, policy, config_stamp)) => {
                let lists = policy.lists.lists.len();
                let entries = policy.lists.total();
                let mut stamps = vec![(self.path.clone(), config_stamp)];
                stamps.extend(policy.lists.lists.iter().map(|l| (l.path.clone(), l.stamp)));
                self.pipeline.policy.store(Arc::new(policy));
                *self.config.lock().unwrap_or_else(|p| p.into_inner()) = cfg;
                self.set_watched(stamps);
                let t = &self.pipeline.telemetry;
                t.lists_loaded(&self.pipeline.policy.load().lists);
                t.reloads.increment(1);
                let n = self.reloads.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::info!(
                    trigger = why,
                    lists,
                    entries,
                    took_ms = started.elapsed().as_millis() as u64,
                    reloads = n,
                    "reloaded"
                );
                true
            }
            Err(e) => {
                self.pipeline.telemetry.reload_failures.increment(1);
                let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                // One line, so that a log shipper or `grep "reload failed"` sees the reason with it.
                let error = format!("{e:#}").replace('\n', "; ");
                tracing::error!(
                    trigger = why,
                    failures = n,
                    error,
                    "reload failed, still serving the previous lists"
                );
                let paths = self
                    .watched
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let paths = paths.into_iter().map(|(p, _)| p).collect();
                let config = self.path.clone();
                let watch =
                    tokio::task::spawn_blocking(move || stamps_after_failure(&config, paths));
                if let Ok(stamps) = watch.await {
                    self.set_watched(stamps);
                }
                false
            }
        }
    }
}

/// Reads the config and the lists it names into a new policy, reusing unchanged lists of `old`; warns of
/// changes against `started` (the config in force for what is read at start only).
fn build(
    path: &Path,
    started: &Config,
    old: &Policy,
) -> anyhow::Result<(Config, Policy, Option<FileStamp>)> {
    let stamp = FileStamp::of(path);
    let cfg = Config::load(path).context("invalid config")?;
    let lists = Lists::load_reusing(&cfg, Some(&old.lists), |l| l.log_loaded())?;
    let restart = needs_restart(started, &cfg);
    if !restart.is_empty() {
        tracing::warn!(
            "config changes to {} need a restart to take effect; lists and [sinkhole] were applied",
            restart.join(", ")
        );
    }
    let policy = Policy::new(lists, Sinkhole::from_config(&cfg.sinkhole));
    Ok((cfg, policy, stamp))
}

/// The parts of the config that changed but are only read at start.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    if differs(&old.server, &new.server) {
        out.push("[server]");
    }
    if differs(&old.upstream, &new.upstream) {
        out.push("[upstream]");
    }
    if differs(&old.cache, &new.cache) {
        out.push("[cache]");
    }
    if differs(&old.log, &new.log) {
        out.push("[log]");
    }
    if differs(&old.reload, &new.reload) {
        out.push("[reload]");
    }
    // The trap listens on the sinkhole addresses, bound at start: a new address moves the answers at
    // once, but the trap only with a restart.
    if old.trap_addresses() != new.trap_addresses() {
        out.push("[trap] listening addresses (its ports, or the sinkhole's ipv4/ipv6)");
    }
    // Sections added later are caught here: everything but the live parts must be equal.
    let mut a = old.clone();
    a.blocklists = new.blocklists.clone();
    a.sinkhole = new.sinkhole.clone();
    if out.is_empty() && differs(&a, new) {
        out.push("settings outside [[blocklists]] and [sinkhole]");
    }
    out
}

/// What to watch after a failed reload: every file watched before and every list the config on disk names
/// (if it reads), as they are now. The same files fail the same way, so they wait for their next change; a
/// list that did not exist yet is retried when it appears.
fn stamps_after_failure(config: &Path, mut paths: Vec<PathBuf>) -> Stamps {
    // Only the list paths are read: the config as a whole does not load while a list it names is missing.
    #[derive(serde::Deserialize)]
    struct Named {
        #[serde(default)]
        blocklists: Vec<ListPath>,
    }
    #[derive(serde::Deserialize)]
    struct ListPath {
        path: PathBuf,
    }
    let named = std::fs::read_to_string(config)
        .ok()
        .and_then(|text| toml::from_str::<Named>(&text).ok());
    let base = config.parent().filter(|d| !d.as_os_str().is_empty());
    for l in named.map(|n| n.blocklists).unwrap_or_default() {
        let path = base.map_or_else(|| l.path.clone(), |d| d.join(&l.path));
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    stamps_of(paths)
}

fn stamps_of(paths: Vec<PathBuf>) -> Stamps {
    paths
        .into_iter()
        .map(|p| {
            let s = FileStamp::of(&p);
            (p, s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sinkhole_ip: &str) -> Config {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"127.0.0.1:5399\"]\n\
             [sinkhole]\nmode = \"address\"\nipv4 = \"{sinkhole_ip}\"\n[trap]\nports = [8080]\n"
        );
        Config::parse(&text, Path::new("c2sink.toml")).unwrap()
    }

    /// The sinkhole address is live, but the trap listening on it is bound at start.
    #[test]
    fn a_new_sinkhole_address_with_a_trap_needs_a_restart() {
        let (old, new) = (config("127.0.0.98"), config("127.0.0.97"));
        assert_eq!(needs_restart(&old, &old), Vec::<&str>::new());
        assert_eq!(
            needs_restart(&old, &new),
            vec!["[trap] listening addresses (its ports, or the sinkhole's ipv4/ipv6)"]
        );
    }
}
