//! The database's members as the bus and the control plane see them.
//!
//! The control plane numbers members (`NodeId`); the configuration names
//! them. Numbers are positions in the ids sorted by name, so every node
//! numbers its peers alike whatever order its `[[nodes]]` list has — and
//! "the lowest node id" of the election's tiebreak is the first by name.

use crate::config::{parse_host_port, Config, NodeSpec};
use crate::control::{Cluster, Member, NodeId};

/// One member: its names and where to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub id: NodeId,
    pub name: String,
    pub zone: String,
    pub region: String,
    /// Client address ("host", port): what backups follow and clients use.
    pub client: (String, u16),
    /// Bus address.
    pub bus: (String, u16),
    pub arbiter: bool,
}

/// The membership, with this node's place in it.
#[derive(Clone, Debug)]
pub struct Topology {
    pub me: NodeId,
    pub peers: Vec<Peer>,
    pub cluster: Cluster,
    /// The configured first primary.
    pub first_primary: Option<NodeId>,
}

/// The bus port a node uses when its entry names none: the client port
/// + 20000 (replication takes + 10000, as Redis Cluster's bus does).
pub fn default_bus_port(client_port: u16) -> u16 {
    client_port.checked_add(20000).unwrap_or(0)
}

fn bus_addr(n: &NodeSpec, client: &(String, u16)) -> Result<(String, u16), String> {
    match &n.bus {
        Some(b) => {
            parse_host_port(b).ok_or_else(|| format!("node {}: bad bus address {b:?}", n.id))
        }
        None => Ok((client.0.clone(), default_bus_port(client.1))),
    }
}

impl Topology {
    /// The topology of `[[nodes]]`, or None for a node with no topology
    /// (a single node, or replication set up with `replicaof` alone: no bus).
    pub fn from_config(c: &Config, shards: usize) -> Result<Option<Topology>, String> {
        if c.nodes.is_empty() {
            return Ok(None);
        }
        let mut specs: Vec<&NodeSpec> = c.nodes.iter().collect();
        specs.sort_by(|a, b| a.id.cmp(&b.id));
        if specs.windows(2).any(|w| w[0].id == w[1].id) {
            return Err("two [[nodes]] share an id".into());
        }
        let mut zones: Vec<&str> = Vec::new();
        let mut peers = Vec::new();
        for (i, n) in specs.iter().enumerate() {
            let client = parse_host_port(&n.client)
                .ok_or_else(|| format!("node {}: bad client address {:?}", n.id, n.client))?;
            let bus = bus_addr(n, &client)?;
            if !zones.contains(&n.zone.as_str()) {
                zones.push(&n.zone);
            }
            peers.push(Peer {
                id: i as NodeId,
                name: n.id.clone(),
                zone: n.zone.clone(),
                region: n.region.clone(),
                client,
                bus,
                arbiter: n.arbiter,
            });
        }
        let me = peers
            .iter()
            .find(|p| p.name == c.node_id)
            .map(|p| p.id)
            .ok_or_else(|| {
                format!(
                    "node-id {:?} is not in [[nodes]] ({})",
                    c.node_id,
                    peers
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        let first_primary = match &c.primary {
            Some(name) => Some(
                peers
                    .iter()
                    .find(|p| &p.name == name)
                    .filter(|p| !p.arbiter)
                    .map(|p| p.id)
                    .ok_or_else(|| format!("primary {name:?} is not a data node in [[nodes]]"))?,
            ),
            None => None,
        };
        let cluster = Cluster {
            members: peers
                .iter()
                .map(|p| Member {
                    id: p.id,
                    zone: zones.iter().position(|z| *z == p.zone).unwrap_or(0) as u16,
                    voter: true,
                    holds_data: !p.arbiter,
                })
                .collect(),
            shards,
        };
        Ok(Some(Topology {
            me,
            peers,
            cluster,
            first_primary,
        }))
    }

    pub fn peer(&self, id: NodeId) -> Option<&Peer> {
        self.peers.get(id as usize)
    }

    pub fn name(&self, id: NodeId) -> &str {
        self.peer(id).map_or("?", |p| p.name.as_str())
    }

    pub fn by_name(&self, name: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// A digest of what every node must agree on about the members: their
    /// names (which number them in the control plane's messages) and which
    /// are arbiters (which hold data and how many vote). Zones, regions and
    /// addresses are left out: they steer placement and routing, not how a
    /// message reads, so a rolling restart may change them node by node.
    pub fn digest(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        for p in &self.peers {
            h.update(&(p.name.len() as u64).to_le_bytes());
            h.update(p.name.as_bytes());
            h.update(&[u8::from(p.arbiter)]);
        }
        h.finalize()
    }

    /// The members' names, as a log line shows them.
    pub fn member_list(&self) -> String {
        self.peers
            .iter()
            .map(|p| {
                format!(
                    "{}@{}{}",
                    p.name,
                    p.zone,
                    if p.arbiter { "(arbiter)" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn me(&self) -> &Peer {
        &self.peers[self.me as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(members: &[(&str, &str, bool)]) -> Topology {
        let c = Config::load(crate::config::Flags {
            node_id: Some(members[0].0.into()),
            ..Default::default()
        })
        .map(|mut c| {
            c.nodes = members
                .iter()
                .enumerate()
                .map(|(i, (id, zone, arbiter))| NodeSpec {
                    id: id.to_string(),
                    client: format!("10.0.0.{}:6379", i + 1),
                    peer: None,
                    zone: zone.to_string(),
                    region: "r".into(),
                    bus: None,
                    arbiter: *arbiter,
                })
                .collect();
            c
        })
        .expect("defaults load");
        Topology::from_config(&c, 1)
            .expect("a valid topology")
            .expect("nodes listed")
    }

    #[test]
    fn the_digest_covers_names_and_arbiters_not_zones() {
        let base = topo(&[("a", "z1", false), ("b", "z2", false), ("c", "z3", false)]);
        let moved = topo(&[("a", "z1", false), ("b", "z4", false), ("c", "z3", false)]);
        let reordered = topo(&[("c", "z3", false), ("a", "z1", false), ("b", "z2", false)]);
        let added = topo(&[
            ("a", "z1", false),
            ("b", "z2", false),
            ("c", "z3", false),
            ("d", "z1", false),
        ]);
        let arbiter = topo(&[("a", "z1", false), ("b", "z2", false), ("c", "z3", true)]);
        assert_eq!(base.digest(), moved.digest());
        assert_eq!(base.digest(), reordered.digest());
        assert_ne!(base.digest(), added.digest());
        assert_ne!(base.digest(), arbiter.digest());
    }
}
