//! `keel demo`: a three-zone database on one machine in one command, and the
//! faults that let a newcomer watch it fail over.
//!
//! # Layout
//! - [`layout`]: ports, directories and the state file (`demo.toml`) through
//!   which every `keel demo ...` invocation finds the running nodes.
//! - [`supervise`]: `keel demo` itself: checks the ports, starts the three
//!   nodes as child processes of this binary, waits until the backups are
//!   ready, prints the screen, and stops every node on Ctrl-C.
//! - [`ops`]: `kill`, `pause`, `restart` and `stop`, run from another
//!   terminal against the pids in the state file.
//! - [`watch`]: the live per-node table (role, term, lag, ready, ops/s).
//! - [`probe`]: the blocking RESP client they all ask the nodes with.
//!
//! `main.rs` hands over to [`main`] when the first argument is `demo`, before
//! the server's own flags are parsed, so `keel FILE` keeps meaning a config.

pub mod layout;
pub mod ops;
pub mod probe;
pub mod supervise;
pub mod watch;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Why a demo command failed; printed as `keel demo: ...` with exit code 1
/// (2 for usage errors).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    State(PathBuf, String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

/// keel demo: a three-zone database on 127.0.0.1 (nodes a, b, c in zones
/// a, b, c), and faults to watch it fail over.
///
/// Without a subcommand: start the three nodes (client ports 6379, 6380,
/// 6381; /health on 7379, 7380, 7381), wait until the backups are ready,
/// print how to connect, and run until Ctrl-C, which stops all three.
/// Data stays in the demo directory; the next run starts from it.
#[derive(Debug, Parser)]
#[command(name = "keel demo", bin_name = "keel demo")]
pub struct DemoArgs {
    /// The demo's directory (data, logs, state). Default: $KEEL_DEMO_DIR,
    /// else $XDG_STATE_HOME/keel-demo, else ~/.local/state/keel-demo.
    #[arg(long, global = true)]
    pub dir: Option<PathBuf>,
    /// First client port (the others follow; HTTP on port + 1000, the
    /// cluster bus on port + 20000, replication from port + 10000).
    /// Default: $KEEL_DEMO_PORT, else 6379.
    #[arg(long)]
    pub port: Option<u16>,
    /// Shards per node. Default: a third of the cores (at least 1, at
    /// most 4); a demo directory keeps the count of its first run.
    #[arg(long)]
    pub shards: Option<usize>,
    #[command(subcommand)]
    pub command: Option<DemoCommand>,
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Kill a node with SIGKILL (as a crash or a lost zone would), then wait
    /// for the survivors to elect a new primary if it was the primary.
    Kill { node: String },
    /// Freeze a node (SIGSTOP) for some seconds, then let it go on
    /// (SIGCONT): a node that stops answering without dying.
    Pause { node: String, seconds: u64 },
    /// Start a stopped or killed node again, then wait until it serves
    /// (a returning node rejoins as a backup and resyncs).
    Restart { node: String },
    /// Show each node's role, term, lag, readiness and ops/s, refreshed
    /// every second, until Ctrl-C.
    Watch {
        /// Print one table (measured over one second) and exit.
        #[arg(long, conflicts_with = "count")]
        once: bool,
        /// Print this many tables, one a second, and exit.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Stop every node of the demo (SIGTERM), as Ctrl-C in its terminal
    /// does; for a demo whose terminal is gone.
    Stop,
}

/// Runs `keel demo ...`; `args` starts with the program name. Returns the
/// process exit code.
pub fn main(args: Vec<std::ffi::OsString>) -> i32 {
    let args = match DemoArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let dir = args
        .dir
        .clone()
        .or_else(|| {
            std::env::var_os("KEEL_DEMO_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(layout::default_dir);
    let result = match args.command {
        None => {
            let port = match args.port {
                Some(p) => Ok(p),
                None => match std::env::var("KEEL_DEMO_PORT") {
                    Ok(p) => p.parse().map_err(|_| {
                        DemoError::Usage(format!("KEEL_DEMO_PORT={p:?} is not a port"))
                    }),
                    Err(_) => Ok(6379),
                },
            };
            port.and_then(|port| supervise::run(&dir, port, args.shards))
        }
        Some(DemoCommand::Kill { node }) => ops::kill(&dir, &node),
        Some(DemoCommand::Pause { node, seconds }) => ops::pause(&dir, &node, seconds),
        Some(DemoCommand::Restart { node }) => ops::restart(&dir, &node),
        Some(DemoCommand::Stop) => ops::stop(&dir),
        Some(DemoCommand::Watch { once, count }) => {
            watch::run(&dir, if once { Some(1) } else { count })
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("keel demo: {e}");
            if matches!(e, DemoError::Usage(_)) {
                2
            } else {
                1
            }
        }
    }
}

/// The state of the demo in `dir`, or an error that says how to start one.
pub(crate) fn require_state(dir: &std::path::Path) -> Result<layout::State, DemoError> {
    layout::State::load(dir)?.ok_or_else(|| {
        DemoError::Refused(format!(
            "no demo in {}: start one with `keel demo`{}",
            dir.display(),
            if std::env::var_os("KEEL_DEMO_DIR").is_some() {
                ""
            } else {
                " (or pass the same --dir)"
            }
        ))
    })
}
