//! The faults a newcomer causes from a second terminal — `kill`, `pause`,
//! `restart` — and `stop`. Each finds the nodes through the state file the
//! supervisor wrote, and waits for what the fault leads to (a new primary,
//! a node back in service) so its output tells the story.

use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::layout::{NodeState, State};
use super::{probe, require_state, supervise, DemoError};

/// How long `kill` waits for an election and `restart` for a node to serve.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to stop after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

fn signal(node: &NodeState, sig: libc::c_int) -> Result<(), DemoError> {
    // SAFETY: kill(2) with a pid the state file recorded for this node and
    // checked to be it just before.
    if unsafe { libc::kill(node.pid as libc::pid_t, sig) } != 0 {
        return Err(DemoError::Failed(format!(
            "cannot signal node {} (pid {}): {}",
            node.id,
            node.pid,
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

fn running_node<'a>(state: &'a State, id: &str) -> Result<&'a NodeState, DemoError> {
    let node = state.node(id)?;
    if !node.running() {
        return Err(DemoError::Refused(format!(
            "node {id} is not running; start it with `keel demo restart {id}`"
        )));
    }
    Ok(node)
}

/// Waits until `pid` has exited (or `timeout` passed); true when it has.
fn wait_gone(node: &NodeState, timeout: Duration) -> bool {
    let start = Instant::now();
    while node.running() {
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The primary as the given nodes see it: one that calls itself primary and
/// whose term no other answering node is beyond.
fn primary_among(nodes: &[&NodeState]) -> Option<(String, u64)> {
    let views: Vec<(&str, probe::NodeView)> = nodes
        .iter()
        .filter_map(|n| probe::view(n.port).map(|v| (n.id.as_str(), v)))
        .collect();
    let top = views.iter().map(|(_, v)| v.term).max()?;
    views
        .iter()
        .find(|(_, v)| v.role == "primary" && v.term == top)
        .map(|(id, v)| (id.to_string(), v.term))
}

/// `keel demo kill <node>`.
pub fn kill(dir: &Path, id: &str) -> Result<(), DemoError> {
    let state = require_state(dir)?;
    let node = running_node(&state, id)?;
    let was_primary = probe::view(node.port).is_some_and(|v| v.role == "primary");
    signal(node, libc::SIGKILL)?;
    let killed = Instant::now();
    wait_gone(node, STOP_TIMEOUT);
    println!("node {id} killed (SIGKILL)");
    let others: Vec<&NodeState> = state
        .nodes
        .iter()
        .filter(|n| n.id != id && n.running())
        .collect();
    if !was_primary {
        if let Some((p, _)) = primary_among(&others) {
            println!("{p} is still the primary");
        }
        return Ok(());
    }
    if others.len() * 2 <= state.nodes.len() {
        println!("no majority is left to elect a primary: writes stop until a node returns");
        return Ok(());
    }
    while killed.elapsed() < SETTLE_TIMEOUT {
        if let Some((p, term)) = primary_among(&others) {
            println!(
                "{p} is the primary now (term {term}), elected {:.1} s after the kill",
                killed.elapsed().as_secs_f64()
            );
            let backups: Vec<&NodeState> = others.iter().copied().filter(|n| n.id != p).collect();
            return follow(&backups, &p, term, killed);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(DemoError::Failed(format!(
        "no new primary within {} s; see the logs under {}",
        SETTLE_TIMEOUT.as_secs(),
        dir.display()
    )))
}

/// Waits until each of `backups` is a ready backup of `primary` in `term`
/// and says how it resynced: the end of the failover.
fn follow(
    backups: &[&NodeState],
    primary: &str,
    term: u64,
    since: Instant,
) -> Result<(), DemoError> {
    for n in backups {
        loop {
            match probe::view(n.port) {
                Some(v)
                    if v.ready && v.role == "backup" && v.primary == primary && v.term >= term =>
                {
                    println!(
                        "{} follows it, ready {:.1} s after the kill; it resynced: {}",
                        n.id,
                        since.elapsed().as_secs_f64(),
                        if v.last_sync.is_empty() {
                            "-"
                        } else {
                            &v.last_sync
                        }
                    );
                    break;
                }
                _ if since.elapsed() > SETTLE_TIMEOUT => {
                    return Err(DemoError::Failed(format!(
                        "{} is not a ready backup of {primary} after {} s; see {}",
                        n.id,
                        SETTLE_TIMEOUT.as_secs(),
                        n.log.display()
                    )))
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    Ok(())
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// `keel demo pause <node> <seconds>`: SIGSTOP, wait, SIGCONT. Ctrl-C
/// ends the pause early; the node is resumed either way.
pub fn pause(dir: &Path, id: &str, seconds: u64) -> Result<(), DemoError> {
    let state = require_state(dir)?;
    let node = running_node(&state, id)?;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::signal(sig, on_interrupt as *const () as libc::sighandler_t);
        }
    }
    signal(node, libc::SIGSTOP)?;
    println!("node {id} paused (SIGSTOP) for {seconds} s");
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until && !INTERRUPTED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(node, libc::SIGCONT)?;
    println!("node {id} resumed (SIGCONT)");
    Ok(())
}

/// `keel demo restart <node>`: starts it again as the supervisor did (a
/// running node is stopped first), then waits until it serves.
pub fn restart(dir: &Path, id: &str) -> Result<(), DemoError> {
    let mut state = require_state(dir)?;
    let k = state.index(id)?;
    let node = state.nodes[k].clone();
    if node.running() {
        signal(&node, libc::SIGTERM)?;
        // A paused node must run to handle SIGTERM.
        signal(&node, libc::SIGCONT)?;
        if !wait_gone(&node, STOP_TIMEOUT) {
            return Err(DemoError::Failed(format!(
                "node {id} (pid {}) did not stop within {} s",
                node.pid,
                STOP_TIMEOUT.as_secs()
            )));
        }
    }
    let child = supervise::spawn(&node, supervise::cpus_for(k, state.shards))?;
    state.nodes[k].pid = child.id();
    // The node outlives this command: do not wait for it (init collects it).
    drop(child);
    let dir_abs = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    state.save(&dir_abs)?;
    println!("node {id} started (pid {})", state.nodes[k].pid);
    let node = &state.nodes[k];
    let start = Instant::now();
    while start.elapsed() < SETTLE_TIMEOUT {
        if !node.running() {
            return Err(DemoError::Failed(format!(
                "node {id} exited while starting; the end of its log:\n{}",
                supervise::log_tail(node, 15)
            )));
        }
        if let Some(v) = probe::view(node.port) {
            if v.role == "primary" {
                println!("{id} is the primary (term {})", v.term);
                return Ok(());
            }
            if v.role == "backup" && v.ready && !v.primary.is_empty() {
                println!(
                    "{id} is a ready backup of {} (term {}); it resynced: {}",
                    v.primary,
                    v.term,
                    if v.last_sync.is_empty() {
                        "-"
                    } else {
                        &v.last_sync
                    }
                );
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(DemoError::Failed(format!(
        "node {id} started but is not serving after {} s; see {}",
        SETTLE_TIMEOUT.as_secs(),
        node.log.display()
    )))
}

/// `keel demo stop`.
pub fn stop(dir: &Path) -> Result<(), DemoError> {
    let state = require_state(dir)?;
    let stopped = stop_nodes(&state, &mut Vec::new());
    if stopped.is_empty() {
        println!("no node of the demo was running");
    } else {
        println!("stopped {}", stopped.join(", "));
    }
    Ok(())
}

/// Stops every running node of `state` with SIGTERM (SIGKILL for one that
/// outlasts [`STOP_TIMEOUT`]), collecting the supervisor's own `children`.
/// The backups go first, then the primary: a primary that stopped first
/// would leave the backups time to hold an election while they stop.
/// (At the next start they elect anyway: a returning primary waits to hear
/// who leads rather than assume it still does.) Returns the ids stopped.
pub fn stop_nodes(state: &State, children: &mut Vec<(String, Child)>) -> Vec<String> {
    let running: Vec<&NodeState> = state.nodes.iter().filter(|n| n.running()).collect();
    let (primaries, backups): (Vec<&NodeState>, Vec<&NodeState>) = running
        .iter()
        .partition(|n| probe::view(n.port).is_some_and(|v| v.role == "primary"));
    stop_group(&backups, children);
    stop_group(&primaries, children);
    for (_, c) in children.iter_mut() {
        let _ = c.wait();
    }
    children.clear();
    running.iter().map(|n| n.id.clone()).collect()
}

/// SIGTERM to every node of `group` at once, then waits for each.
fn stop_group(group: &[&NodeState], children: &mut [(String, Child)]) {
    for n in group {
        let _ = signal(n, libc::SIGTERM);
        // A paused node must run to handle SIGTERM.
        let _ = signal(n, libc::SIGCONT);
    }
    for n in group {
        let start = Instant::now();
        loop {
            // Collect it if it is our child: a zombie does not count as running.
            if let Some((_, c)) = children.iter_mut().find(|(id, _)| *id == n.id) {
                let _ = c.try_wait();
            }
            if !n.running() {
                break;
            }
            if start.elapsed() > STOP_TIMEOUT {
                eprintln!(
                    "keel demo: node {} ignored SIGTERM for {} s: SIGKILL",
                    n.id,
                    STOP_TIMEOUT.as_secs()
                );
                let _ = signal(n, libc::SIGKILL);
                wait_gone(n, Duration::from_secs(5));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
