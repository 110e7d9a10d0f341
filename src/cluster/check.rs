//! `keel --check-config FILE`: what an operator runs before starting (or
//! restarting) a node, to learn whether its configuration and topology make
//! sense — without binding a port, touching `dir` or talking to a peer.
//!
//! The file goes through the same loader a start uses ([`Config::load`]),
//! so anything a start would refuse is refused here too. The `[[nodes]]`
//! entries are then read one by one (an entry the loader would refuse does
//! not hide the others) and checked as a whole:
//!
//! - ids are unique and not empty; addresses are `host:port`;
//! - no two listeners share a port on one host: the client port, the
//!   replication ports `peer .. peer + shards - 1`, the bus port and the
//!   HTTP port, of every member on that host;
//! - every member has a zone and a region; the primary and the sync backup
//!   are data nodes (an arbiter votes but holds no data);
//! - `node-id`, when given, names a member (else a warning: such a node
//!   starts waiting to be added online, `KEEL NODE ADD`);
//! - losing any one zone leaves a majority of voters and a data node (else a
//!   warning: the database would not survive that zone's outage);
//! - `shards` suits this machine.
//!
//! A *problem* is something a start would refuse or that cannot work (a
//! port clash); a *warning* is a layout that works but
//! is fragile. Every problem is listed, not just the first; the exit code is
//! 0 when there is none.
//!
//! What a member's ports are is only partly in the topology: a node's own
//! `peer-port`, `bus-port` and `http-port` come from its own file. For the
//! other members the check assumes the same settings as this file (the
//! usual case: one file per node, differing only in `node-id` and `bind`),
//! unless their entry names a `peer` or `bus` address.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use crate::config::{parse_host_port, Config, Flags, NodeSpec};

/// What the check found: a summary to print, warnings and problems.
#[derive(Debug, Default)]
pub struct Report {
    pub summary: Vec<String>,
    pub warnings: Vec<String>,
    pub problems: Vec<String>,
}

impl Report {
    fn problem(&mut self, s: impl Into<String>) {
        self.problems.push(s.into());
    }

    fn warn(&mut self, s: impl Into<String>) {
        self.warnings.push(s.into());
    }

    fn say(&mut self, s: impl Into<String>) {
        self.summary.push(s.into());
    }

    /// The text to print, problems last so they stay on screen.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.summary {
            out.push_str(l);
            out.push('\n');
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        for p in &self.problems {
            out.push_str(&format!("problem: {p}\n"));
        }
        match (self.problems.len(), self.warnings.len()) {
            (0, 0) => out.push_str("configuration OK\n"),
            (0, w) => out.push_str(&format!("configuration OK, {w} warning(s)\n")),
            (p, _) => out.push_str(&format!(
                "{p} problem(s): keel would not run as configured\n"
            )),
        }
        out
    }
}

/// Checks `path` with the other `flags` applied (as a start would), prints
/// the report and returns the process's exit code.
pub fn run(flags: Flags, path: &Path) -> i32 {
    let report = check(flags, path, crate::runtime::allowed_cpus().len());
    print!("{}", report.render());
    if report.problems.is_empty() {
        0
    } else {
        1
    }
}

/// The settings the topology checks need, from the loaded configuration or,
/// when the loader refused the file, read leniently so the topology can
/// still be checked.
struct Settings {
    node_id: Option<String>,
    bind: String,
    port: u16,
    shards: Option<usize>,
    peer_port: u16,
    bus_port: u16,
    http_port: Option<u16>,
    primary: Option<String>,
    sync_backup: Option<String>,
    requirepass: bool,
    masterauth: bool,
    database: String,
}

impl Settings {
    fn from_config(c: &Config, node_id: Option<String>) -> Settings {
        Settings {
            node_id,
            bind: c.bind.clone(),
            port: c.port,
            shards: c.shards,
            peer_port: c.peer_port,
            bus_port: c.bus_port,
            http_port: c.http_port,
            primary: c.primary.clone(),
            sync_backup: c.sync_backup.clone(),
            requirepass: c.requirepass.is_some(),
            masterauth: c.masterauth.is_some(),
            database: c.database_name.clone(),
        }
    }

    fn lenient(f: &Flags, t: &toml::Table, node_id: Option<String>) -> Settings {
        let text = |k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let int = |k: &str| t.get(k).and_then(|v| v.as_integer());
        let port = |k: &str| int(k).and_then(|p| u16::try_from(p).ok());
        Settings {
            node_id,
            bind: f
                .bind
                .clone()
                .or(text("bind"))
                .unwrap_or_else(|| "127.0.0.1".into()),
            port: f.port.or(port("port")).unwrap_or(6379),
            shards: f
                .shards
                .or(int("shards").and_then(|n| usize::try_from(n).ok())),
            peer_port: f.peer_port.or(port("peer-port")).unwrap_or(0),
            bus_port: f.bus_port.or(port("bus-port")).unwrap_or(0),
            http_port: f.http_port.or(port("http-port")),
            primary: text("primary"),
            sync_backup: f.sync_backup.clone().or(text("sync-backup")),
            requirepass: f.requirepass.is_some() || text("requirepass").is_some(),
            masterauth: f.masterauth.is_some() || text("masterauth").is_some(),
            database: text("database-name").unwrap_or_else(|| "keel".into()),
        }
    }
}

/// Checks the configuration file at `path` (with `flags` on top) for a
/// machine where keel may use `cpus` CPUs.
pub fn check(mut flags: Flags, path: &Path, cpus: usize) -> Report {
    let mut r = Report::default();
    r.say(format!("checking {}", path.display()));
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            r.problem(format!("cannot read {}: {e}", path.display()));
            return r;
        }
    };
    let table: toml::Table = match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            r.problem(format!("not valid TOML: {}", e.to_string().trim_end()));
            return r;
        }
    };
    let node_id = flags
        .node_id
        .clone()
        .or_else(|| {
            table
                .get("node-id")
                .and_then(|v| v.as_str())
                .map(String::from)
        })
        .filter(|s| !s.is_empty());
    flags.config = Some(path.to_path_buf());
    flags.config_file = None;
    let lenient = Settings::lenient(&flags, &table, node_id.clone());
    let loaded = Config::load(flags);
    let nodes = read_nodes(&table, &mut r);
    let settings = match loaded {
        Ok(c) => {
            // TLS files load as they would at start (certificate, key, CA).
            if c.tls.wanted() {
                if let Err(e) = crate::security::tls::Tls::new(&c.tls) {
                    r.problem(format!("TLS: {e}"));
                }
            }
            Settings::from_config(&c, node_id)
        }
        Err(e) => {
            // A bad [[nodes]] entry is already reported, in its own words.
            let e = e.to_string();
            let e = e.trim_end();
            if !r
                .problems
                .iter()
                .any(|p| p.ends_with(e.lines().last().unwrap_or(e)))
            {
                r.problem(e.to_string());
            }
            lenient
        }
    };
    let shards = settings.shards.unwrap_or(cpus).max(1);
    check_shards(&settings, nodes.is_empty(), shards, cpus, &mut r);
    if nodes.is_empty() {
        single_node(&settings, shards, &mut r);
    } else {
        topology(&nodes, &settings, shards, &mut r);
    }
    r
}

/// The `[[nodes]]` entries, each read alone so one bad entry is reported
/// without hiding the rest.
fn read_nodes(table: &toml::Table, r: &mut Report) -> Vec<NodeSpec> {
    let Some(v) = table.get("nodes") else {
        return Vec::new();
    };
    let Some(list) = v.as_array() else {
        r.problem("nodes must be a list of [[nodes]] tables");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        match entry.clone().try_into::<NodeSpec>() {
            Ok(n) => out.push(n),
            Err(e) => r.problem(format!(
                "[[nodes]] entry {}: {}",
                i + 1,
                e.to_string().trim_end()
            )),
        }
    }
    out
}

fn check_shards(s: &Settings, single: bool, shards: usize, cpus: usize, r: &mut Report) {
    match s.shards {
        None if !single => r.warn(format!(
            "shards is not set: each node runs one shard per CPU it may use ({cpus} here), \
             and every node of a database must run the same count; set shards"
        )),
        Some(n) if n > cpus => r.warn(format!(
            "shards = {n} but keel may use {cpus} CPU(s) here: several shards share a core"
        )),
        _ => {}
    }
    if shards > 1024 {
        r.problem(format!("shards = {shards}: at most 1024"));
    }
}

/// Where one member listens, as far as this file tells.
struct Ports {
    /// Its place in `[[nodes]]` (ids may repeat in a bad file).
    index: usize,
    host: String,
    client: u16,
    /// First replication port (shard i on peer + i); 0: free ports picked
    /// at start (the default one would pass 65535).
    peer: u16,
    bus: Option<u16>,
    /// None: HTTP off; Some(0): a free port picked at start.
    http: Option<u16>,
}

impl Ports {
    fn describe(&self, shards: usize) -> String {
        let mut s = format!("client {}, peer {}", self.client, range(self.peer, shards));
        if let Some(b) = self.bus {
            s.push_str(&format!(", bus {b}"));
        }
        match self.http {
            Some(0) => s.push_str(", http on a free port"),
            Some(h) => s.push_str(&format!(", http {h}")),
            None => s.push_str(", http off"),
        }
        s
    }
}

fn range(first: u16, shards: usize) -> String {
    if first == 0 {
        "free ports".to_string()
    } else if shards <= 1 {
        first.to_string()
    } else {
        format!("{first}-{}", first as usize + shards - 1)
    }
}

/// The HTTP port a node with client port `client` listens on.
fn http_port(s: &Settings, client: u16) -> Option<u16> {
    match s.http_port {
        Some(0) => None,
        Some(p) => Some(p),
        // Past 65535 the runtime picks a free port.
        None => Some(client.checked_add(1000).unwrap_or(0)),
    }
}

/// Records every listener in `ports` and reports ports two listeners share
/// on one host, or ranges that run past 65535.
fn clashes(members: &[(String, Ports)], shards: usize, r: &mut Report) {
    // (host, port) -> who listens there; u32 so a range past 65535 is kept
    // apart from the ports it would wrap onto.
    let mut owners: BTreeMap<(String, u32), Vec<String>> = BTreeMap::new();
    for (name, p) in members {
        let mut add = |port: u32, what: String| {
            owners
                .entry((p.host.clone(), port))
                .or_default()
                .push(format!("{name}'s {what}"));
        };
        add(p.client as u32, "client port".into());
        if p.peer != 0 {
            for i in 0..shards {
                add(p.peer as u32 + i as u32, format!("shard {i} peer port"));
            }
        }
        if let Some(b) = p.bus.filter(|b| *b != 0) {
            add(b as u32, "bus port".into());
        }
        if let Some(h) = p.http.filter(|h| *h != 0) {
            add(h as u32, "HTTP port".into());
        }
        let last = p.peer as usize + shards.saturating_sub(1);
        if p.peer != 0 && last > u16::MAX as usize {
            r.problem(format!(
                "{name}: replication ports {} .. {last} run past 65535 ({shards} shards)",
                p.peer
            ));
        }
    }
    for ((host, port), who) in owners {
        if who.len() > 1 && port <= u16::MAX as u32 {
            r.problem(format!(
                "{host}:{port} is claimed twice: {}",
                who.join(" and ")
            ));
        }
    }
}

fn single_node(s: &Settings, shards: usize, r: &mut Report) {
    let peer = match s.peer_port {
        0 => s.port.checked_add(10000).unwrap_or(0),
        p => p,
    };
    let ports = Ports {
        index: 0,
        host: s.bind.clone(),
        client: s.port,
        peer,
        bus: None,
        http: http_port(s, s.port),
    };
    r.say(format!(
        "single node (no [[nodes]] topology, no failover), {shards} shard(s)"
    ));
    r.say(format!("  {}: {}", s.bind, ports.describe(shards)));
    if s.bind.parse::<IpAddr>().is_err() {
        r.problem(format!("bind {:?} is not an IP address", s.bind));
    }
    if s.port != 0 {
        clashes(&[("this node".to_string(), ports)], shards, r);
    }
}

/// A host name or address as `host:port` may carry: an IP, or a DNS name.
fn valid_host(h: &str) -> bool {
    h.parse::<IpAddr>().is_ok()
        || (!h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
}

fn address(what: &str, node: &str, text: &str, r: &mut Report) -> Option<(String, u16)> {
    match parse_host_port(text) {
        Some((h, p)) if valid_host(&h) => Some((h, p)),
        _ => {
            r.problem(format!(
                "node {node:?}: {what} address {text:?} is not HOST:PORT"
            ));
            None
        }
    }
}

fn topology(nodes: &[NodeSpec], s: &Settings, shards: usize, r: &mut Report) {
    // Names.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for n in nodes {
        *seen.entry(n.id.as_str()).or_default() += 1;
    }
    for (id, count) in &seen {
        if id.is_empty() {
            r.problem("a [[nodes]] entry has an empty id");
        } else if *count > 1 {
            r.problem(format!("{count} [[nodes]] entries share the id {id:?}"));
        }
    }
    let me = s.node_id.as_deref();
    match me {
        // A node started outside the list waits to be added online: a
        // typo looks the same, so it is said, not refused.
        Some(id) if !seen.contains_key(id) => r.warn(format!(
            "node-id {id:?} is not in [[nodes]] ({}): it will start waiting to be added by the primary (KEEL NODE ADD {id} ...); if that is not meant, fix the id",
            names(nodes.iter())
        )),
        Some(_) => {}
        None => r.warn(
            "no node-id in the file: start each node with --node-id <its id> \
             (give --node-id to check one node's view)",
        ),
    }
    let member = |id: &str| nodes.iter().find(|n| n.id == id);
    if let Some(p) = &s.primary {
        match member(p) {
            None => r.problem(format!("primary {p:?} is not in [[nodes]]")),
            Some(n) if n.arbiter => r.problem(format!(
                "primary {p:?} is an arbiter: arbiters vote but hold no data"
            )),
            Some(_) => {}
        }
    }
    if let Some(b) = &s.sync_backup {
        match member(b) {
            None => r.problem(format!("sync-backup {b:?} is not in [[nodes]]")),
            Some(n) if n.arbiter => r.problem(format!(
                "sync-backup {b:?} is an arbiter: arbiters hold no data"
            )),
            Some(_) => {}
        }
    }

    // Addresses and ports.
    let mut members = Vec::new();
    for (index, n) in nodes.iter().enumerate() {
        if n.zone.is_empty() {
            r.problem(format!("node {:?} has no zone", n.id));
        }
        if n.region.is_empty() {
            r.problem(format!("node {:?} has no region", n.id));
        }
        let Some((host, client)) = address("client", &n.id, &n.client, r) else {
            continue;
        };
        let mine = me == Some(n.id.as_str());
        let peer_spec = n.peer.as_ref().and_then(|p| address("peer", &n.id, p, r));
        let bus_spec = n.bus.as_ref().and_then(|b| address("bus", &n.id, b, r));
        let default_peer = match s.peer_port {
            0 => client.checked_add(10000).unwrap_or(0),
            p => p,
        };
        // A node listens where its own settings say; the others are taken
        // at their entry's word.
        let peer = match (&peer_spec, mine) {
            (Some((_, p)), false) => *p,
            _ => default_peer,
        };
        let topo_bus = bus_spec
            .as_ref()
            .map(|b| b.1)
            .unwrap_or_else(|| super::topology::default_bus_port(client));
        if topo_bus == 0 {
            r.problem(format!(
                "node {:?}: its bus port (client port + 20000) passes 65535: \
                 give its entry a bus = \"host:port\"",
                n.id
            ));
        }
        let bus = if mine && s.bus_port != 0 {
            s.bus_port
        } else {
            topo_bus
        };
        if mine {
            this_node(n, s, &host, client, (peer_spec, peer), (topo_bus, bus), r);
        }
        members.push((
            n.id.clone(),
            Ports {
                index,
                host,
                client,
                peer,
                bus: Some(bus),
                http: http_port(s, client),
            },
        ));
    }
    clashes(&members, shards, r);

    summary(nodes, s, shards, &members, r);
    zone_loss(nodes, r);
    if s.requirepass && !s.masterauth {
        r.warn(
            "requirepass is set but masterauth is not: backups and the bus present \
             masterauth to the other members (set it to their requirepass)",
        );
    }
}

/// The checked node's own listeners against what the others will dial.
fn this_node(
    n: &NodeSpec,
    s: &Settings,
    host: &str,
    client: u16,
    (peer_spec, peer): (Option<(String, u16)>, u16),
    (topo_bus, bus): (u16, u16),
    r: &mut Report,
) {
    match s.bind.parse::<IpAddr>() {
        Err(_) => r.problem(format!("bind {:?} is not an IP address", s.bind)),
        Ok(ip) if !ip.is_unspecified() && s.bind != host => r.warn(format!(
            "node {:?} binds {} but the topology gives its client address as {host}: \
             other members and clients dial {host} (fine only behind a proxy or NAT)",
            n.id, s.bind
        )),
        Ok(_) => {}
    }
    if s.port != client {
        r.warn(format!(
            "node {:?} listens on port {} but its client address says {client}",
            n.id, s.port
        ));
    }
    if let Some((_, p)) = peer_spec {
        if p != peer {
            r.warn(format!(
                "node {:?}: its entry says peer port {p} but it will listen on {peer} \
                 (peer-port setting)",
                n.id
            ));
        }
    }
    if topo_bus != bus {
        r.problem(format!(
            "node {:?} listens for the bus on {bus} (bus-port) but the others dial {topo_bus} \
             (its [[nodes]] entry)",
            n.id
        ));
    }
}

fn names<'a>(nodes: impl Iterator<Item = &'a NodeSpec>) -> String {
    let v: Vec<&str> = nodes.map(|n| n.id.as_str()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Zones in the order the topology first names them.
fn zones(nodes: &[NodeSpec]) -> Vec<&str> {
    let mut z: Vec<&str> = Vec::new();
    for n in nodes {
        if !z.contains(&n.zone.as_str()) {
            z.push(&n.zone);
        }
    }
    z
}

fn summary(
    nodes: &[NodeSpec],
    s: &Settings,
    shards: usize,
    members: &[(String, Ports)],
    r: &mut Report,
) {
    let data = nodes.iter().filter(|n| !n.arbiter).count();
    let mut regions: Vec<&str> = nodes
        .iter()
        .map(|n| n.region.as_str())
        .filter(|r| !r.is_empty())
        .collect();
    regions.sort_unstable();
    regions.dedup();
    r.say(format!(
        "database {:?}: {} member(s) ({data} data, {} arbiter), {} zone(s), {} region(s), \
         {shards} shard(s) per node",
        s.database,
        nodes.len(),
        nodes.len() - data,
        zones(nodes).len(),
        regions.len()
    ));
    r.say(format!(
        "this node: {}; first primary: {}",
        s.node_id
            .as_deref()
            .unwrap_or("(not named: give --node-id)"),
        s.primary
            .as_deref()
            .unwrap_or("(none named: elected at start)")
    ));
    for z in zones(nodes) {
        r.say(format!("zone {}:", if z.is_empty() { "(none)" } else { z }));
        for (i, n) in nodes.iter().enumerate().filter(|(_, n)| n.zone == z) {
            let ports = members
                .iter()
                .find(|(_, p)| p.index == i)
                .map(|(_, p)| format!("{} ({})", p.host, p.describe(shards)))
                .unwrap_or_else(|| "(bad address)".into());
            let mut tags = Vec::new();
            if n.arbiter {
                tags.push("arbiter");
            }
            if s.primary.as_deref() == Some(&n.id) {
                tags.push("first primary");
            }
            if s.node_id.as_deref() == Some(&n.id) {
                tags.push("this node");
            }
            let tags = if tags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", tags.join(", "))
            };
            r.say(format!("  {} {ports}{tags}", n.id));
        }
    }
}

/// What the loss of each zone leaves: a failover needs a majority of the
/// voters (every member votes) and a data node among them.
fn zone_loss(nodes: &[NodeSpec], r: &mut Report) {
    let voters = nodes.len();
    let majority = voters / 2 + 1;
    let data = nodes.iter().filter(|n| !n.arbiter).count();
    r.say(format!("voters: {voters}, a majority is {majority}"));
    if data == 0 {
        r.problem("no data node: every member is an arbiter");
        return;
    }
    if data == 1 {
        r.warn("one data node: there is nothing to fail over to");
    }
    let all = zones(nodes);
    let single_zone = all.len() == 1;
    if single_zone {
        r.warn(format!(
            "every member is in zone {:?}: a zone outage takes the whole database down",
            all[0]
        ));
    }
    r.say("if a zone is lost:");
    for z in all {
        let left: Vec<&NodeSpec> = nodes.iter().filter(|n| n.zone != z).collect();
        let data_left: Vec<&NodeSpec> = left.iter().copied().filter(|n| !n.arbiter).collect();
        let verdict = if left.len() < majority {
            if !single_zone {
                r.warn(format!(
                    "losing zone {z:?} leaves {} of {voters} voters, not a majority: \
                 the database cannot survive that zone's outage (no failover, writes stop)",
                    left.len()
                ));
            }
            "no majority: no failover, writes stop".to_string()
        } else if data_left.is_empty() {
            r.warn(format!(
                "losing zone {z:?} leaves no data node: the database cannot survive that \
                 zone's outage"
            ));
            "a majority but no data node: writes stop".to_string()
        } else {
            format!(
                "a majority; a primary lost there fails over to one of {}",
                names(data_left.iter().copied())
            )
        };
        r.say(format!(
            "  {z}: {} of {voters} voters remain ({}) - {verdict}",
            left.len(),
            names(left.iter().copied())
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, client: &str, zone: &str, arbiter: bool) -> NodeSpec {
        NodeSpec {
            id: id.into(),
            client: client.into(),
            peer: None,
            zone: zone.into(),
            region: "r".into(),
            bus: None,
            arbiter,
        }
    }

    #[test]
    fn two_zones_of_three_voters_cannot_lose_the_bigger_one() {
        let nodes = [
            node("a", "10.0.0.1:6379", "z1", false),
            node("b", "10.0.0.2:6379", "z1", false),
            node("c", "10.0.0.3:6379", "z2", false),
        ];
        let mut r = Report::default();
        zone_loss(&nodes, &mut r);
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(r.warnings[0].contains("\"z1\""));
        assert!(r.problems.is_empty());
    }

    #[test]
    fn an_arbiter_in_a_third_zone_makes_two_zones_safe() {
        let nodes = [
            node("a", "10.0.0.1:6379", "z1", false),
            node("b", "10.0.0.2:6379", "z2", false),
            node("x", "10.0.0.3:6379", "z3", true),
        ];
        let mut r = Report::default();
        zone_loss(&nodes, &mut r);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn ports_of_members_on_one_host_clash() {
        let p = |client, peer, bus| Ports {
            index: 0,
            host: "127.0.0.1".into(),
            client,
            peer,
            bus: Some(bus),
            http: None,
        };
        let mut r = Report::default();
        // b's peer range 7001..7002 covers a's bus port 7002.
        clashes(
            &[
                ("a".into(), p(7000, 7100, 7002)),
                ("b".into(), p(6999, 7001, 7200)),
            ],
            2,
            &mut r,
        );
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].contains("127.0.0.1:7002"));
    }

    #[test]
    fn host_names_are_checked_for_shape_only() {
        assert!(valid_host("10.0.0.1"));
        assert!(valid_host("keel-a.eu-west-1.internal"));
        assert!(!valid_host("bad host"));
        assert!(!valid_host("a..b"));
    }
}
