//! Where the demo's nodes live: their ports, directories and the state file
//! that lets every `keel demo ...` invocation find the running nodes.
//!
//! Ports, for a base port P (6379 by default), node k = 0, 1, 2 (a, b, c):
//! client P + k, HTTP P + 1000 + k, cluster bus P + 20000 + k, replication
//! P + 10000 + 10k (shard i on + i). Each node gets a range of ten
//! replication ports of its own, so no two nodes' shards collide.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::DemoError;

/// The three nodes, one per zone: (id, zone).
pub const NODES: [(&str, &str); 3] = [("a", "a"), ("b", "b"), ("c", "c")];
/// The one region all three zones are in.
pub const REGION: &str = "local";
/// The first primary of a fresh demo.
pub const FIRST_PRIMARY: &str = "a";
/// Replication ports reserved per node; bounds the shards per node.
pub const PEER_SPAN: u16 = 10;
/// The highest shard count the demo picks on its own.
pub const MAX_SHARDS: usize = 4;

/// One node as the state file records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeState {
    pub id: String,
    pub zone: String,
    pub port: u16,
    pub http_port: u16,
    pub bus_port: u16,
    pub peer_port: u16,
    pub dir: PathBuf,
    pub log: PathBuf,
    /// The process last started for this node (it may have exited since).
    pub pid: u32,
    /// How it was started, so `restart` starts it the same way.
    pub argv: Vec<String>,
}

/// `demo.toml` in the demo directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub base_port: u16,
    /// Fixed by the first run: a node's data holds this many shards.
    pub shards: usize,
    pub nodes: Vec<NodeState>,
}

/// The directory used when neither `--dir` nor `KEEL_DEMO_DIR` names one:
/// per user and kept across runs, so a second run finds the first's data.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("keel-demo");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/state/keel-demo"),
        None => PathBuf::from("/tmp/keel-demo"),
    }
}

pub fn state_path(dir: &Path) -> PathBuf {
    dir.join("demo.toml")
}

/// Refuses a base port whose block of ports does not fit (below 1024 would
/// need privileges; the bus ports end at base + 20002).
pub fn check_base_port(base_port: u16) -> Result<(), DemoError> {
    let top = base_port as u32 + 20000 + NODES.len() as u32 - 1;
    if base_port < 1024 || top > 65535 {
        return Err(DemoError::Usage(format!(
            "--port {base_port}: the demo uses ports up to port + 20002; pick 1024..={}",
            65535 - 20000 - (NODES.len() as u32 - 1)
        )));
    }
    Ok(())
}

/// Shards per node: a third of the cores this process may use (three
/// nodes share them), at least one, at most [`MAX_SHARDS`].
pub fn pick_shards() -> usize {
    (crate::runtime::allowed_cpus().len() / NODES.len()).clamp(1, MAX_SHARDS)
}

impl State {
    /// A fresh layout of the three nodes under `dir` from `base_port` on.
    pub fn plan(dir: &Path, base_port: u16, shards: usize) -> Result<State, DemoError> {
        if shards == 0 || shards > PEER_SPAN as usize {
            return Err(DemoError::Usage(format!(
                "--shards must be between 1 and {PEER_SPAN}"
            )));
        }
        check_base_port(base_port)?;
        let nodes = NODES
            .iter()
            .enumerate()
            .map(|(k, (id, zone))| {
                let k = k as u16;
                let node_dir = dir.join(id);
                NodeState {
                    id: id.to_string(),
                    zone: zone.to_string(),
                    port: base_port + k,
                    // keel's defaults for a client port: the nodes get no flag.
                    http_port: base_port + 1000 + k,
                    bus_port: base_port + 20000 + k,
                    peer_port: base_port + 10000 + PEER_SPAN * k,
                    log: node_dir.join("keel.log"),
                    dir: node_dir,
                    pid: 0,
                    argv: Vec::new(),
                }
            })
            .collect();
        Ok(State {
            base_port,
            shards,
            nodes,
        })
    }

    pub fn load(dir: &Path) -> Result<Option<State>, DemoError> {
        let path = state_path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DemoError::Io(path, e)),
        };
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| DemoError::State(path, e.to_string()))
    }

    /// Writes the state file whole (a temporary file renamed over it), so a
    /// concurrent reader never sees half of it.
    pub fn save(&self, dir: &Path) -> Result<(), DemoError> {
        let path = state_path(dir);
        let text =
            toml::to_string(self).map_err(|e| DemoError::State(path.clone(), e.to_string()))?;
        let tmp = dir.join("demo.toml.tmp");
        std::fs::write(&tmp, text).map_err(|e| DemoError::Io(tmp.clone(), e))?;
        std::fs::rename(&tmp, &path).map_err(|e| DemoError::Io(path, e))
    }

    /// The node called `id`, or a usage error that lists the valid ids.
    pub fn node(&self, id: &str) -> Result<&NodeState, DemoError> {
        Ok(&self.nodes[self.index(id)?])
    }

    /// The position of node `id` in [`State::nodes`].
    pub fn index(&self, id: &str) -> Result<usize, DemoError> {
        self.nodes.iter().position(|n| n.id == id).ok_or_else(|| {
            let ids: Vec<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
            DemoError::Usage(format!("no node {id:?}: the nodes are {}", ids.join(", ")))
        })
    }

    /// The topology file every node starts from.
    pub fn topology(&self) -> String {
        let mut t = format!(
            "# Written by `keel demo` at every start; do not edit.\nprimary = \"{FIRST_PRIMARY}\"\ndatabase-name = \"keel\"\n"
        );
        for n in &self.nodes {
            t.push_str(&format!(
                "\n[[nodes]]\nid = \"{}\"\nclient = \"127.0.0.1:{}\"\npeer = \"127.0.0.1:{}\"\nbus = \"127.0.0.1:{}\"\nzone = \"{}\"\nregion = \"{REGION}\"\n",
                n.id, n.port, n.peer_port, n.bus_port, n.zone
            ));
        }
        t
    }

    /// Every port the demo binds, with what it is for (the refusal names it).
    pub fn ports(&self) -> Vec<(u16, String)> {
        let mut out = Vec::new();
        for n in &self.nodes {
            out.push((n.port, format!("node {}'s client port", n.id)));
            out.push((n.http_port, format!("node {}'s HTTP port", n.id)));
            out.push((n.bus_port, format!("node {}'s cluster bus port", n.id)));
            for i in 0..self.shards as u16 {
                out.push((
                    n.peer_port + i,
                    format!("node {}'s replication port for shard {i}", n.id),
                ));
            }
        }
        out
    }
}

/// Whether process `pid` runs (a zombie does not: it has exited and only
/// waits for its parent to collect it).
pub fn alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => match stat.rsplit_once(')') {
            Some((_, rest)) => !matches!(rest.trim_start().chars().next(), Some('Z' | 'X')),
            None => false,
        },
        Err(_) => false,
    }
}

impl NodeState {
    /// Whether this node's recorded process still runs and is this node
    /// (its command line names the node's directory: a pid the system
    /// reused for something else does not count).
    pub fn running(&self) -> bool {
        if !alive(self.pid) {
            return false;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", self.pid)) else {
            return false;
        };
        let dir = self.dir.to_string_lossy();
        cmdline.split(|&b| b == 0).any(|arg| arg == dir.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn no_two_listeners_share_a_port_at_any_shard_count() {
        for shards in 1..=PEER_SPAN as usize {
            let s = State::plan(Path::new("/d"), 6379, shards).unwrap();
            let mut ports: Vec<u16> = s.ports().into_iter().map(|(p, _)| p).collect();
            let n = ports.len();
            assert_eq!(n, 3 * (3 + shards));
            ports.sort_unstable();
            ports.dedup();
            assert_eq!(ports.len(), n, "shards {shards}: a port is used twice");
        }
    }

    #[test]
    fn ports_out_of_range_and_shards_beyond_the_span_are_refused() {
        // The last bus port, base + 20002, is 65535 at most.
        assert!(State::plan(Path::new("/d"), 45533, 1).is_ok());
        assert!(matches!(
            State::plan(Path::new("/d"), 45534, 1),
            Err(DemoError::Usage(_))
        ));
        assert!(matches!(
            State::plan(Path::new("/d"), 80, 1),
            Err(DemoError::Usage(_))
        ));
        assert!(matches!(
            State::plan(Path::new("/d"), 6379, 0),
            Err(DemoError::Usage(_))
        ));
        assert!(matches!(
            State::plan(Path::new("/d"), 6379, PEER_SPAN as usize + 1),
            Err(DemoError::Usage(_))
        ));
    }

    /// keel's own `--check-config` accepts each node's topology and flags:
    /// three zones, one region, no listener twice.
    #[test]
    fn every_node_passes_check_config() {
        let dir = std::env::temp_dir().join(format!("keel-demo-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shards = 2;
        let state = State::plan(&dir, 6379, shards).unwrap();
        let topology = dir.join("topology.toml");
        std::fs::write(&topology, state.topology()).unwrap();
        for n in &state.nodes {
            let argv = crate::demo::supervise::node_argv("keel", &topology, n, shards);
            let flags = crate::config::Flags::try_parse_from(&argv).unwrap();
            let report = crate::cluster::check::check(flags, &topology, 6);
            assert!(report.problems.is_empty(), "{}", report.render());
            assert!(report.warnings.is_empty(), "{}", report.render());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn state_survives_a_save_and_load() {
        let dir = std::env::temp_dir().join(format!("keel-demo-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = State::plan(&dir, 7000, 3).unwrap();
        s.nodes[1].pid = 4242;
        s.nodes[1].argv = vec!["keel".into(), "--port".into(), "7001".into()];
        s.save(&dir).unwrap();
        assert_eq!(State::load(&dir).unwrap(), Some(s));
        std::fs::write(state_path(&dir), "base_port = \"x\"").unwrap();
        assert!(matches!(State::load(&dir), Err(DemoError::State(..))));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(State::load(&dir).unwrap(), None);
    }
}
