//! Lists downloaded from a URL (`url = "https://..."`): fetched on a schedule with conditional GET, vetted, and
//! only then made the list's file, so that a bad download never replaces a good list.
//!
//! The list's `path` holds the last good copy (and `<path>.feed` its ETag / Last-Modified). At start a missing
//! copy is downloaded first, and c2sink refuses to start without one; an existing copy is served at once and
//! refreshed in the background. A download is rejected, and the copy kept, when it fails, is not a list in the
//! list's format, does not match a pinned `sha256`, or has fewer than (1 - `max_shrink`) of the entries of the
//! copy (default: shrinking by more than half). An accepted download replaces the copy atomically and triggers a
//! reload, which rebuilds only that list. One failing feed affects no other list.

use crate::blocklist::{self, ListError};
use crate::config::{Config, ListConfig, ListKind};
use crate::reload::Reloader;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// Largest download accepted.
const MAX_BYTES: u64 = 2 << 30;
/// Time allowed for one whole download.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Why a download did not become the list.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("download failed: {0}")]
    Http(String),
    #[error("server answered HTTP {0}")]
    Status(u16),
    #[error("writing the copy: {0}")]
    Io(#[from] std::io::Error),
    #[error("sha256 is {got}, the pin says {want}")]
    Sha256 { got: String, want: String },
    #[error("not a usable list: {0}")]
    Garbage(#[from] ListError),
    #[error(
        "has {new} entries where the last good copy has {old} (shrinks by more than max_shrink = {limit}); kept the copy"
    )]
    Shrunk { old: u64, new: u64, limit: f64 },
    #[error("the download holds no rule (only comments or blank lines); kept the last good copy")]
    Empty,
}

/// What a fetch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// The server said 304 Not Modified.
    Unchanged,
    /// A new copy with this many entries replaced the old one.
    Updated { entries: u64 },
}

/// The sidecar file with the validators of the last good copy.
fn meta_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".feed");
    PathBuf::from(p)
}

/// Downloads `cfg.url` and, if it passes every check, makes it the file at `path`. Blocking.
pub fn fetch(cfg: &ListConfig, path: &Path) -> Result<Fetched, FeedError> {
    let Some(url) = cfg.url.as_deref() else {
        return Ok(Fetched::Unchanged);
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let mut req = agent.get(url);
    let have_copy = path.is_file();
    if have_copy && let Ok(meta) = std::fs::read_to_string(meta_path(path)) {
        for line in meta.lines() {
            if let Some(v) = line.strip_prefix("etag: ") {
                req = req.header("If-None-Match", v);
            } else if let Some(v) = line.strip_prefix("last-modified: ") {
                req = req.header("If-Modified-Since", v);
            }
        }
    }
    let mut resp = req.call().map_err(|e| FeedError::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    if status == 304 && have_copy {
        return Ok(Fetched::Unchanged);
    }
    if status != 200 {
        return Err(FeedError::Status(status));
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (etag, modified) = (header("etag"), header("last-modified"));
    let tmp = download_path(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        let mut reader = resp.body_mut().with_config().limit(MAX_BYTES).reader();
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| FeedError::Http(e.to_string()))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            file.write_all(&buf[..n])?;
        }
        file.sync_all()?;
        let got: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if let Some(want) = &cfg.sha256
            && !want.eq_ignore_ascii_case(&got)
        {
            return Err(FeedError::Sha256 {
                got,
                want: want.clone(),
            });
        }
        let new = blocklist::scan(cfg, &tmp)?;
        // An empty page (a feed between builds, a captive portal's blank 200) would unblock every name of a
        // block list, at the next start too. An allow list may well be empty, `max_shrink = 1` turns the
        // guard off, and a first download has nothing better to keep.
        let guarded = !matches!(cfg.kind, ListKind::Allow) && cfg.shrink_limit() < 1.0;
        if new.entries == 0 && guarded && have_copy {
            return Err(FeedError::Empty);
        }
        if have_copy && let Ok(old) = blocklist::scan(cfg, path) {
            let limit = cfg.shrink_limit();
            if (new.entries as f64) < old.entries as f64 * (1.0 - limit) {
                return Err(FeedError::Shrunk {
                    old: old.entries,
                    new: new.entries,
                    limit,
                });
            }
        }
        std::fs::rename(&tmp, path)?;
        let mut meta = String::new();
        if let Some(e) = &etag {
            meta.push_str(&format!("etag: {e}\n"));
        }
        if let Some(m) = &modified {
            meta.push_str(&format!("last-modified: {m}\n"));
        }
        std::fs::write(meta_path(path), meta)?;
        Ok(Fetched::Updated {
            entries: new.entries,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Where a download of the list at `path` is written until it is vetted.
fn download_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".download");
    PathBuf::from(p)
}

/// Removes the part-written download of every feed of `cfg`: called when c2sink stops with a download still
/// running on its thread, which ends with the process and would leave the file behind.
pub fn abandon_downloads(cfg: &Config) {
    for l in cfg.blocklists.iter().filter(|l| l.url.is_some()) {
        let _ = std::fs::remove_file(download_path(&cfg.resolve(&l.path)));
    }
}

/// Downloads every feed that has no copy yet; fails naming the first that cannot be fetched (c2sink never
/// serves a feed list without a copy).
pub fn fetch_missing(cfg: &Config) -> anyhow::Result<()> {
    for l in cfg.blocklists.iter().filter(|l| l.url.is_some()) {
        let path = cfg.resolve(&l.path);
        if path.is_file() {
            continue;
        }
        tracing::info!(list = %l.name, "no saved copy of the feed: downloading it before serving");
        match fetch(l, &path) {
            Ok(f) => tracing::info!(list = %l.name, result = ?f, "feed downloaded"),
            Err(e) => anyhow::bail!(
                "list \"{}\": no saved copy at {} and the download failed: {e}",
                l.name,
                path.display()
            ),
        }
    }
    Ok(())
}

/// Per-feed schedule and health, as logged.
#[derive(Default)]
struct State {
    next: Option<Instant>,
    last_good: Option<SystemTime>,
    last_error: Option<String>,
}

/// Refreshes every feed of the current config on its schedule until `shutdown`; follows config reloads.
pub async fn run(reloader: Arc<Reloader>, shutdown: CancellationToken) {
    let mut states: HashMap<String, State> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let cfg = reloader.current_config();
        let now = Instant::now();
        for l in cfg.blocklists.iter().filter(|l| l.url.is_some()) {
            let state = states.entry(l.name.clone()).or_default();
            // First look: refresh at once (the copy may be old), then every `refresh`.
            if state.next.is_some_and(|t| t > now) {
                continue;
            }
            state.next = Some(now + l.refresh_every());
            let (list, path) = (l.clone(), cfg.resolve(&l.path));
            let task = tokio::task::spawn_blocking(move || fetch(&list, &path));
            let result = tokio::select! {
                r = task => r,
                // The download is left on its thread, which ends with the process; its result is not
                // applied, and what it wrote so far is removed.
                _ = shutdown.cancelled() => {
                    abandon_downloads(&cfg);
                    return;
                }
            };
            let age = state
                .last_good
                .and_then(|t| t.elapsed().ok())
                .map(|d| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string());
            match result {
                Ok(Ok(Fetched::Unchanged)) => {
                    crate::telemetry::feed_checked(&l.name);
                    state.last_good = Some(SystemTime::now());
                    state.last_error = None;
                    tracing::info!(list = %l.name, "feed unchanged (not modified)");
                }
                Ok(Ok(Fetched::Updated { entries })) => {
                    crate::telemetry::feed_checked(&l.name);
                    state.last_good = Some(SystemTime::now());
                    state.last_error = None;
                    tracing::info!(list = %l.name, entries, "feed updated");
                    reloader.reload(&format!("feed {} updated", l.name)).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(
                        list = %l.name,
                        last_good_ago = age.as_deref().unwrap_or("never (this run)"),
                        "feed refresh failed, keeping the last good copy: {e}"
                    );
                    state.last_error = Some(e.to_string());
                }
                Err(e) => tracing::error!(list = %l.name, "feed task failed: {e}"),
            }
        }
    }
}
