//! `keel demo` in the foreground: start three nodes, wait until they form a
//! database, print how to use it, and stop them all on Ctrl-C.
//!
//! The nodes are child processes of this same binary, each in its own
//! process group (Ctrl-C in the terminal reaches only the supervisor, which
//! then stops them in order with SIGTERM, so each closes its files as on any
//! clean shutdown) and with its output in a log file under its directory.
//! The supervisor never restarts a node: a node that `keel demo kill`
//! killed stays down until `keel demo restart`.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::layout::{self, NodeState, State};
use super::{ops, probe, DemoError};

/// How long the three nodes may take to elect a primary and sync backups.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_stop_handlers() {
    // SAFETY: the handler only stores to an atomic, which is signal-safe.
    unsafe {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::signal(sig, on_stop_signal as *const () as libc::sighandler_t);
        }
    }
}

/// `keel demo`: runs until Ctrl-C.
pub fn run(dir: &Path, base_port: u16, shards: Option<usize>) -> Result<(), DemoError> {
    layout::check_base_port(base_port)?;
    std::fs::create_dir_all(dir).map_err(|e| DemoError::Io(dir.to_path_buf(), e))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| DemoError::Io(dir.to_path_buf(), e))?;
    let previous = State::load(&dir)?;
    if let Some(prev) = &previous {
        if let Some(n) = prev.nodes.iter().find(|n| n.running()) {
            return Err(DemoError::Refused(format!(
                "a demo is already running in {} (node {} is pid {}): use it, or stop it with Ctrl-C in its terminal or `keel demo stop`",
                dir.display(),
                n.id,
                n.pid
            )));
        }
    }
    // A node's data holds a fixed number of shards: a reused directory keeps
    // the count it was created with.
    let shards = match (&previous, shards) {
        (Some(prev), Some(s)) if s != prev.shards => {
            return Err(DemoError::Usage(format!(
            "{} holds data of {} shard(s) per node; start with --shards {} or use another --dir",
            dir.display(),
            prev.shards,
            prev.shards
        )))
        }
        (Some(prev), _) => prev.shards,
        (None, Some(s)) => s,
        (None, None) => layout::pick_shards(),
    };
    let mut state = State::plan(&dir, base_port, shards)?;
    check_ports(&state)?;
    let topology = dir.join("topology.toml");
    std::fs::write(&topology, state.topology()).map_err(|e| DemoError::Io(topology.clone(), e))?;

    install_stop_handlers();
    let exe = std::env::current_exe()
        .map_err(|e| DemoError::Failed(format!("cannot find this program's path: {e}")))?;
    let mut children: Vec<(String, Child)> = Vec::new();
    for k in 0..state.nodes.len() {
        let node = &mut state.nodes[k];
        node.argv = node_argv(&exe.to_string_lossy(), &topology, node, shards);
        match spawn(node, cpus_for(k, shards)) {
            Ok(child) => {
                node.pid = child.id();
                children.push((node.id.clone(), child));
            }
            Err(e) => {
                ops::stop_nodes(&state, &mut children);
                return Err(e);
            }
        }
    }
    state.save(&dir)?;

    if let Err(e) = wait_ready(&state, &mut children) {
        ops::stop_nodes(&state, &mut children);
        return Err(e);
    }
    if STOP.load(Ordering::SeqCst) {
        ops::stop_nodes(&state, &mut children);
        return Ok(());
    }
    print_screen(&dir, &state);

    let mut all_down_since: Option<Instant> = None;
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        // Every node gone (`keel demo stop`, or all killed): nothing is left
        // to supervise. A short grace covers a `restart` between stop and start.
        let now = State::load(&dir).ok().flatten();
        if now.is_some_and(|s| s.nodes.iter().all(|n| !n.running())) {
            let since = *all_down_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(2) {
                println!("no node of the demo runs any more: the demo ends");
                return Ok(());
            }
        } else {
            all_down_since = None;
        }
        // Collect nodes that exited (killed by `keel demo kill`, say) so
        // they leave no zombie; report it, restart nothing.
        children.retain_mut(|(id, child)| match child.try_wait() {
            Ok(Some(status)) => {
                println!("node {id} exited ({status})");
                false
            }
            _ => true,
        });
    }
    println!("\nstopping the demo...");
    // `restart` may have replaced nodes since: stop what the file lists now.
    let now = State::load(&dir)?.unwrap_or(state);
    let stopped = ops::stop_nodes(&now, &mut children);
    println!(
        "stopped {}; the data stays in {} for the next `keel demo`",
        if stopped.is_empty() {
            "nothing (no node was running)".to_string()
        } else {
            stopped.join(", ")
        },
        dir.display()
    );
    Ok(())
}

/// Refuses, naming the port and its use, when anything already listens on
/// one of the demo's ports.
fn check_ports(state: &State) -> Result<(), DemoError> {
    for (port, what) in state.ports() {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            return Err(DemoError::Refused(format!(
                "port {port} ({what}) is taken on 127.0.0.1: is a redis-server or another keel running? Stop it, or run the demo on other ports: keel demo --port {}",
                if state.base_port == 6379 { 7000 } else { 6379 }
            )));
        }
    }
    Ok(())
}

/// The command line of one node (the state file keeps it for `restart`).
/// The bus port is in the topology; the HTTP port is keel's default (the
/// client port + 1000), which the plan follows, so `--check-config` sees
/// each node's own.
pub fn node_argv(exe: &str, topology: &Path, n: &NodeState, shards: usize) -> Vec<String> {
    let mut argv = vec![exe.to_string(), topology.to_string_lossy().into_owned()];
    for (flag, value) in [
        ("--node-id", n.id.clone()),
        ("--bind", "127.0.0.1".to_string()),
        ("--port", n.port.to_string()),
        ("--peer-port", n.peer_port.to_string()),
        ("--shards", shards.to_string()),
        ("--zone", n.zone.clone()),
        ("--region", layout::REGION.to_string()),
        ("--dir", n.dir.to_string_lossy().into_owned()),
        ("--appendonly", "yes".to_string()),
    ] {
        argv.push(flag.to_string());
        argv.push(value);
    }
    argv
}

/// The CPUs node `k` may run on: its shards spread over the cores so three
/// nodes do not all pin their first shard to the same one.
pub fn cpus_for(k: usize, shards: usize) -> Vec<usize> {
    let cpus = crate::runtime::allowed_cpus();
    let mut mine: Vec<usize> = (0..shards)
        .map(|j| cpus[(k * shards + j) % cpus.len()])
        .collect();
    mine.sort_unstable();
    mine.dedup();
    mine
}

/// Starts one node from its recorded argv, detached from the terminal:
/// its own process group, output appended to its log.
pub fn spawn(node: &NodeState, cpus: Vec<usize>) -> Result<Child, DemoError> {
    std::fs::create_dir_all(&node.dir).map_err(|e| DemoError::Io(node.dir.clone(), e))?;
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| DemoError::Io(node.log.clone(), e))
    };
    let mut log = open_log()?;
    use std::io::Write;
    let _ = writeln!(
        log,
        "\n=== keel demo starts node {}: {}",
        node.id,
        node.argv.join(" ")
    );
    let Some((exe, args)) = node.argv.split_first() else {
        return Err(DemoError::Failed(format!(
            "node {}: empty command line",
            node.id
        )));
    };
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .current_dir(&node.dir)
        .stdin(Stdio::null())
        .stdout(open_log()?)
        .stderr(log)
        .process_group(0);
    // SAFETY: between fork and exec the closure only builds a cpu_set_t on
    // the stack and calls sched_setaffinity(2), a plain system call.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &c in &cpus {
                libc::CPU_SET(c, &mut set);
            }
            // Failing to narrow the CPUs only costs placement: ignore it.
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| DemoError::Failed(format!("cannot start node {}: {e}", node.id)))
}

/// The last lines of a node's log, for an error that needs them.
pub fn log_tail(node: &NodeState, lines: usize) -> String {
    let text = std::fs::read_to_string(&node.log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until one node is primary and the others are its ready backups.
fn wait_ready(state: &State, children: &mut [(String, Child)]) -> Result<(), DemoError> {
    let start = Instant::now();
    loop {
        for (id, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = state.node(id).map(|n| log_tail(n, 15)).unwrap_or_default();
                return Err(DemoError::Failed(format!(
                    "node {id} exited while starting ({status}); the end of its log:\n{tail}"
                )));
            }
        }
        if formed(state).is_some() || STOP.load(Ordering::SeqCst) {
            return Ok(());
        }
        if start.elapsed() > READY_TIMEOUT {
            return Err(DemoError::Failed(format!(
                "the nodes did not form a database within {} s; see their logs: {}",
                READY_TIMEOUT.as_secs(),
                state
                    .nodes
                    .iter()
                    .map(|n| n.log.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The primary's id when every node answers, exactly one is primary and
/// every other is a ready backup of it in the same term.
pub fn formed(state: &State) -> Option<String> {
    let views: Vec<(String, probe::NodeView)> = state
        .nodes
        .iter()
        .map(|n| probe::view(n.port).map(|v| (n.id.clone(), v)))
        .collect::<Option<_>>()?;
    let primaries: Vec<&(String, probe::NodeView)> =
        views.iter().filter(|(_, v)| v.role == "primary").collect();
    let [(primary, pv)] = primaries.as_slice() else {
        return None;
    };
    views
        .iter()
        .filter(|(id, _)| id != primary)
        .all(|(_, v)| v.role == "backup" && v.ready && v.term == pv.term && &v.primary == primary)
        .then(|| primary.clone())
}

fn print_screen(dir: &Path, state: &State) {
    let primary = formed(state).unwrap_or_default();
    let mut s = String::new();
    s.push_str(&format!(
        "keel demo: three nodes on 127.0.0.1, one per zone, {} shard{} each\n",
        state.shards,
        if state.shards == 1 { "" } else { "s" }
    ));
    s.push_str(&format!("data and logs: {}\n\n", dir.display()));
    s.push_str("  node  zone  role     client port  health\n");
    for n in &state.nodes {
        s.push_str(&format!(
            "  {:<4}  {:<4}  {:<7}  {:<11}  http://127.0.0.1:{}/health\n",
            n.id,
            n.zone,
            if n.id == primary { "primary" } else { "backup" },
            n.port,
            n.http_port
        ));
    }
    let connect: Vec<String> = state
        .nodes
        .iter()
        .map(|n| format!("redis-cli -p {}", n.port))
        .collect();
    s.push_str(&format!(
        "\nConnect to any node (a backup forwards writes to the primary):\n  {}\n\n",
        connect.join("    ")
    ));
    s.push_str("From another terminal:\n");
    for (cmd, what) in [
        (
            "keel demo watch".to_string(),
            "role, term, lag, ready, ops/s of each node, every second",
        ),
        (
            format!("keel demo kill {primary}"),
            "kill a node (SIGKILL): the others elect a new primary",
        ),
        (
            format!("keel demo pause {primary} 5"),
            "freeze a node for 5 seconds (SIGSTOP, SIGCONT)",
        ),
        (
            format!("keel demo restart {primary}"),
            "start a killed node again: it rejoins as a backup",
        ),
    ] {
        s.push_str(&format!("  {cmd:<24}  {what}\n"));
    }
    s.push_str(&format!(
        "\nLogs: {}/<node>/keel.log. Ctrl-C here stops all three.\n",
        dir.display()
    ));
    print!("{s}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
}
