//! The `c2sink` command: serve, or check a config before deploying it.

use anyhow::Context;
use c2sink::blocklist::Lists;
use c2sink::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc, not glibc's malloc: block events are allocated on the query path and freed on the writer thread,
/// the pattern glibc handles worst (locked frees into another thread's arena); see docs/performance.md.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A DNS resolver that sinkholes malware C2 domains and logs which client asked.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the resolver until SIGTERM or SIGINT.
    Serve {
        /// The TOML config file.
        #[arg(long, short, default_value = "config/c2sink.toml")]
        config: PathBuf,
    },
    /// Validate the config and every list it names; exit non-zero on any problem.
    Check {
        /// The TOML config file.
        #[arg(long, short, default_value = "config/c2sink.toml")]
        config: PathBuf,
        /// Explain whether and why NAME would be blocked.
        #[arg(long, value_name = "NAME")]
        explain: Option<String>,
        /// Exit 0 whenever serve would start (invalid list lines are still shown): for start-up gates such
        /// as systemd's ExecStartPre, which must not keep a network without DNS over one bad line.
        #[arg(long)]
        errors_only: bool,
    },
    /// Summarize event logs: infected clients, first/last seen, C2 names, beacon cadence.
    Report {
        /// Only events at or after this time (2026-11-27, "2026-11-27 10:00", RFC 3339, or "24h" ago).
        #[arg(long)]
        since: Option<String>,
        /// Only events before this time (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        /// Output form.
        #[arg(long, value_enum, default_value = "table")]
        format: c2sink::report::Format,
        /// Queries of one client for one name closer than this many seconds count as one beacon.
        #[arg(long, default_value_t = c2sink::report::cadence::BURST, value_name = "SECONDS",
              value_parser = c2sink::report::parse_burst)]
        burst: f64,
        /// Event logs (rotated and .gz files too).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Look back through query logs (and event logs) for names on a new list; exit 0 if found, 1 if not.
    Hunt {
        /// The list of indicators (one domain per line, as for [[blocklists]]).
        #[arg(long, value_name = "FILE")]
        list: PathBuf,
        /// Only lines at or after this time (same forms as report --since).
        #[arg(long)]
        since: Option<String>,
        /// Only lines before this time.
        #[arg(long)]
        until: Option<String>,
        /// Output form: table or json.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Query logs or event logs (rotated and .gz files too).
        #[arg(required = true, value_name = "LOG")]
        logs: Vec<PathBuf>,
    },
    /// Ask the running server a DNS question it answers itself; exit 0 only on the right answer.
    ///
    /// Asks for TXT `healthcheck.c2sink.invalid` over UDP at the config's first listen address (0.0.0.0 and
    /// :: are reached over loopback). Needs no upstream, so it reports on c2sink alone. For container
    /// HEALTHCHECKs: no shell or curl needed.
    Healthcheck {
        /// The TOML config file of the server to check.
        #[arg(long, short, default_value = "config/c2sink.toml")]
        config: PathBuf,
        /// Ask this address instead of the config's first listen address.
        #[arg(long, value_name = "IP:PORT")]
        server: Option<std::net::SocketAddr>,
        /// Give up after this long (three tries within it).
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        quiet_sigpipe();
    }
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Check {
            config,
            explain,
            errors_only,
        } => check(&config, explain.as_deref(), errors_only),
        Command::Report {
            since,
            until,
            format,
            burst,
            files,
        } => report(since.as_deref(), until.as_deref(), format, burst, files),
        Command::Hunt {
            list,
            since,
            until,
            format,
            logs,
        } => hunt(list, since.as_deref(), until.as_deref(), &format, logs),
        Command::Healthcheck {
            config,
            server,
            timeout,
        } => healthcheck(&config, server, timeout),
    }
}

/// A one-shot command piped into `head` or `less` ends as any Unix filter does when the reader goes, not
/// with a panic: Rust ignores SIGPIPE, which the server needs (a closed socket must be an error, not its
/// death) but `check`, `report` and `hunt` do not.
fn quiet_sigpipe() {
    // SAFETY: called at the start of main, before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_logging(log: &c2sink::config::LogConfig) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // RUST_LOG overrides the config; one that does not parse is said, not silently dropped.
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| match c2sink::config::rust_log_filter(&v) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("c2sink: RUST_LOG ignored: {e}");
                None
            }
        });
    // The config's filter was checked when it loaded.
    let filter = from_env.unwrap_or_else(|| log.filter().unwrap_or_default());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
}

fn serve(path: &std::path::Path) -> ExitCode {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("c2sink: invalid config\n{e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg.log);
    // On one CPU (a small box, or a container limited to one core) a single-threaded runtime does the same
    // work with less scheduling bookkeeping per query (about 5 % fewer instructions, docs/performance.md).
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_cpu {
        // The runtime runs on this thread: it answers TCP and encrypted queries (UDP has threads of its own).
        c2sink::sched::query_thread();
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.on_thread_start(c2sink::sched::query_thread);
        b
    };
    let rt = match builder
        .enable_all()
        .thread_name("c2sink")
        .build()
        .context("starting the async runtime")
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("c2sink: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let served = rt.block_on(c2sink::server::serve(cfg));
    // A feed download still running on a blocking thread (up to its 120 s timeout) must not hold the exit:
    // everything that matters was drained and flushed inside `serve`.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("c2sink: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck(
    path: &std::path::Path,
    server: Option<std::net::SocketAddr>,
    timeout: std::time::Duration,
) -> ExitCode {
    let addr = match server {
        Some(a) => a,
        None => match Config::load(path) {
            Ok(cfg) => match cfg.server.listen.first() {
                Some(&l) if l.port() == 0 => {
                    eprintln!(
                        "{}: server.listen: port 0 is picked at start; pass --server IP:PORT",
                        path.display()
                    );
                    return ExitCode::from(2);
                }
                Some(&l) => c2sink::health::probe_addr(l),
                None => {
                    eprintln!("{}: server.listen is empty", path.display());
                    return ExitCode::from(2);
                }
            },
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
    };
    match c2sink::health::check(addr, timeout) {
        Ok(()) => {
            println!("healthy: {addr} answered {}", c2sink::health::NAME);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path, explain: Option<&str>, errors_only: bool) -> ExitCode {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // A feed whose copy is not on disk yet is not a problem: serve downloads it before answering.
    let mut present = cfg.clone();
    present.blocklists.retain(|l| {
        let path = cfg.resolve(&l.path);
        let waiting = l.url.is_some() && !path.exists();
        if waiting {
            println!(
                "list \"{}\" (feed): no copy at {} yet; serve downloads it before answering",
                l.name,
                path.display()
            );
        }
        !waiting
    });
    let lists = match Lists::load(&present) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{}: {e}", cfg.source.display());
            return ExitCode::from(2);
        }
    };
    let (report, bad) = c2sink::blocklist::report::summary(&lists);
    print!("{report}");
    let listen: Vec<String> = cfg.server.listen.iter().map(ToString::to_string).collect();
    let ups: Vec<String> = cfg
        .upstream
        .servers
        .iter()
        .map(ToString::to_string)
        .collect();
    let per_list: Vec<String> = lists
        .lists
        .iter()
        .map(|l| format!("{}={}", l.name, l.len() + l.allow.len()))
        .collect();
    println!(
        "{}: listen {}; upstreams {}; lists {}; sinkhole {}",
        if bad { "problems" } else { "ok" },
        listen.join(","),
        ups.join(","),
        if per_list.is_empty() {
            "none".to_string()
        } else {
            per_list.join(", ")
        },
        cfg.sinkhole.mode.as_str(),
    );
    // Warned as serve warns them at start; meant sometimes (a firewall in front), so not a problem.
    if let Ok(admission) = c2sink::admission::Admission::new(&cfg.server) {
        for warning in admission.warnings(&cfg.server) {
            println!("warning: {warning}");
        }
    }
    for note in cfg.notes() {
        println!("warning: {note}");
    }
    // Client sources are read by c2sink, not written by the admin: problems are shown, not fatal.
    for line in c2sink::clients::check_sources(&cfg) {
        println!("{line}");
    }
    if let Some(name) = explain {
        // A name that cannot be asked is a usage error: exit 2, as for a wrong date in `report`.
        if let Err(e) = c2sink::blocklist::normalize_domain(name) {
            eprintln!("c2sink check: --explain: \"{name}\" is not a domain name: {e}");
            return ExitCode::from(2);
        }
        print!(
            "{}",
            c2sink::blocklist::report::explain(&lists, name, cfg.sinkhole.mode, &|n| cfg
                .route_of(n))
        );
    }
    if bad && !errors_only {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
/// Reads `--since`/`--until`, printing the problem and giving the exit code on failure.
fn window(
    cmd: &str,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<(Option<std::time::SystemTime>, Option<std::time::SystemTime>), ExitCode> {
    let now = std::time::SystemTime::now();
    let when = |flag: &str, v: Option<&str>| {
        v.map(|s| c2sink::report::read::parse_when(s, now))
            .transpose()
            .map_err(|e| {
                eprintln!("c2sink {cmd}: {flag}: {e}");
                ExitCode::from(2)
            })
    };
    let (since, until) = (when("--since", since)?, when("--until", until)?);
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        // An empty window is a typo (the dates swapped), not "nothing happened".
        eprintln!("c2sink {cmd}: --since must be before --until");
        return Err(ExitCode::from(2));
    }
    Ok((since, until))
}

fn hunt(
    list: PathBuf,
    since: Option<&str>,
    until: Option<&str>,
    format: &str,
    logs: Vec<PathBuf>,
) -> ExitCode {
    let (since, until) = match window("hunt", since, until) {
        Ok(w) => w,
        Err(code) => return code,
    };
    let opts = c2sink::hunt::Options {
        list,
        logs,
        since,
        until,
    };
    match c2sink::hunt::run(&opts) {
        Ok((h, list)) => {
            for p in &list.problems {
                eprintln!("{}:{}: {}", list.path.display(), p.line, p.message);
            }
            for e in &h.skipped.examples {
                eprintln!("skipped {e}");
            }
            if format == "json" {
                println!("{}", serde_json::to_string_pretty(&h).unwrap_or_default());
            } else {
                print!("{}", h.table());
            }
            if h.hits > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("c2sink hunt: {e}");
            ExitCode::from(2)
        }
    }
}

fn report(
    since: Option<&str>,
    until: Option<&str>,
    format: c2sink::report::Format,
    burst: f64,
    files: Vec<PathBuf>,
) -> ExitCode {
    use c2sink::report;
    let (since, until) = match window("report", since, until) {
        Ok(w) => w,
        Err(code) => return code,
    };
    match report::build(&report::Options {
        files,
        since,
        until,
        burst,
    }) {
        Ok(r) => {
            print!("{}", r.render(format));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("c2sink report: cannot read {e}");
            ExitCode::from(2)
        }
    }
}
