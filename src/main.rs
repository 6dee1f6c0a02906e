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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Check { config, explain } => check(&config, explain.as_deref()),
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
    // On one CPU (a small box, or a container limited to one core) a single-threaded runtime does the same
    // work with less scheduling bookkeeping per query (about 5 % fewer instructions, docs/performance.md).
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
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
