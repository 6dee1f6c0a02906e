//! The `c2sink` command: serve, or check a config before deploying it.

use anyhow::Context;
use c2sink::blocklist::Lists;
use c2sink::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
        #[arg(long, default_value_t = c2sink::report::cadence::BURST, value_name = "SECONDS")]
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Check { config, explain } => check(&config, explain.as_deref()),
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
    }
}

fn init_logging(level: &str) {
    // hickory's and other crates' per-request chatter stays out of the operational log unless asked for.
    let default = format!("warn,c2sink={level}");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
    init_logging(&cfg.log.level);
    let rt = match tokio::runtime::Builder::new_multi_thread()
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
    match rt.block_on(c2sink::server::serve(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("c2sink: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path, explain: Option<&str>) -> ExitCode {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let lists = match Lists::load(&cfg) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{}: {e}", cfg.source.display());
            return ExitCode::from(2);
        }
    };
    let mut bad = false;
    for l in &lists.lists {
        for p in &l.problems {
            eprintln!("{}:{}: {}", l.path.display(), p.line, p.message);
        }
        if l.invalid > l.problems.len() {
            eprintln!(
                "{}: ... and {} more invalid lines",
                l.path.display(),
                l.invalid - l.problems.len()
            );
        }
        bad |= l.invalid > 0;
    }
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
        .map(|l| {
            let mut s = format!("{}={}", l.name, l.len());
            if l.invalid > 0 {
                s.push_str(&format!(" ({} invalid)", l.invalid));
            }
            s
        })
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
    // Client sources are read by c2sink, not written by the admin: problems are shown, not fatal.
    for line in c2sink::clients::check_sources(&cfg) {
        println!("{line}");
    }
    if let Some(name) = explain {
        explain_name(&lists, &cfg, name);
    }
    if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn explain_name(lists: &Lists, cfg: &Config, raw: &str) {
    let name = match c2sink::blocklist::normalize_domain(raw) {
        Ok(n) => n,
        Err(e) => {
            println!("{raw}: not a domain name: {e}");
            return;
        }
    };
    let hits = lists.explain(&name);
    if hits.is_empty() {
        println!(
            "{name}: not blocked (no list has it or a parent of it); it is forwarded upstream"
        );
        return;
    }
    for (i, v) in hits.iter().enumerate() {
        let mode = v.list.action.unwrap_or(cfg.sinkhole.mode);
        println!(
            "{name}: {} by list \"{}\" rule \"{}\" ({}:{}), action {}",
            if i == 0 { "BLOCKED" } else { "also matches" },
            v.list.name,
            v.rule.rule,
            v.list.path.display(),
            v.rule.line,
            mode.as_str()
        );
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
    Ok((when("--since", since)?, when("--until", until)?))
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
        burst: burst.max(0.0),
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
