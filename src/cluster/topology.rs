//! The database's members as the bus and the control plane see them: a
//! [`MemberList`] with this node's place in it.
//!
//! The control plane numbers members (`NodeId`); the list names them and
//! keeps each number for good (see [`members`](super::members)). A list
//! born from the configuration numbers members by their place in the ids
//! sorted by name, so "the lowest node id" of the election's tiebreak is
//! the first by name among the founding members, and later members rank
//! after them in the order they joined.

use super::members::{Entry, MemberList};
use crate::control::{Cluster, Member, NodeId};

pub use super::members::default_bus_port;

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
    /// Votes (a learner does not yet).
    pub voter: bool,
    /// Once a voter, the member of this name is removed.
    pub replaces: Option<String>,
}

/// The membership, with this node's place in it.
#[derive(Clone, Debug)]
pub struct Topology {
    pub me: NodeId,
    pub peers: Vec<Peer>,
    pub cluster: Cluster,
    /// The list this topology is, as the bus and the cluster file hold it.
    pub list: MemberList,
}

impl Topology {
    /// `list` seen from member `me`; None when `me` is not a member (a
    /// node waiting to be added, or one that was removed).
    pub fn new(list: &MemberList, me: &str, shards: usize) -> Option<Topology> {
        let me = list.by_name(me)?.id;
        let mut zones: Vec<&str> = Vec::new();
        for e in &list.members {
            if !zones.contains(&e.zone.as_str()) {
                zones.push(&e.zone);
            }
        }
        let peer = |e: &Entry| Peer {
            id: e.id,
            name: e.name.clone(),
            zone: e.zone.clone(),
            region: e.region.clone(),
            client: e.client.clone(),
            bus: e.bus.clone(),
            arbiter: e.arbiter,
            voter: e.voter,
            replaces: e.replaces.clone(),
        };
        let cluster = Cluster {
            members: list
                .members
                .iter()
                .map(|e| Member {
                    id: e.id,
                    zone: zones.iter().position(|z| *z == e.zone).unwrap_or(0) as u16,
                    voter: e.voter,
                    holds_data: !e.arbiter,
                })
                .collect(),
            shards,
        };
        Some(Topology {
            me,
            peers: list.members.iter().map(peer).collect(),
            cluster,
            list: list.clone(),
        })
    }

    pub fn peer(&self, id: NodeId) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id == id)
    }

    pub fn name(&self, id: NodeId) -> &str {
        self.peer(id).map_or("?", |p| p.name.as_str())
    }

    pub fn by_name(&self, name: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// The members' names, as a log line shows them.
    pub fn member_list(&self) -> String {
        self.peers
            .iter()
            .map(|p| {
                format!(
                    "{}@{}{}{}",
                    p.name,
                    p.zone,
                    if p.arbiter { "(arbiter)" } else { "" },
                    if p.voter { "" } else { "(learner)" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn me(&self) -> &Peer {
        self.peer(self.me)
            .expect("a topology is only built with its own member in it")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, NodeSpec};

    fn list(members: &[(&str, &str, bool)]) -> MemberList {
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
        MemberList::from_config(&c).expect("a valid list")
    }

    #[test]
    fn the_digest_covers_names_and_arbiters_not_zones() {
        let base = list(&[("a", "z1", false), ("b", "z2", false), ("c", "z3", false)]);
        let moved = list(&[("a", "z1", false), ("b", "z4", false), ("c", "z3", false)]);
        let reordered = list(&[("c", "z3", false), ("a", "z1", false), ("b", "z2", false)]);
        let added = list(&[
            ("a", "z1", false),
            ("b", "z2", false),
            ("c", "z3", false),
            ("d", "z1", false),
        ]);
        let arbiter = list(&[("a", "z1", false), ("b", "z2", false), ("c", "z3", true)]);
        assert_eq!(base.digest(), moved.digest());
        assert_eq!(base.digest(), reordered.digest());
        assert_ne!(base.digest(), added.digest());
        assert_ne!(base.digest(), arbiter.digest());
    }

    #[test]
    fn ids_are_sorted_names_and_a_non_member_has_no_topology() {
        let l = list(&[("c", "z3", false), ("a", "z1", false), ("b", "z2", true)]);
        let t = Topology::new(&l, "b", 2).expect("b is a member");
        assert_eq!(t.me, 1);
        assert_eq!(t.by_name("c").map(|p| p.id), Some(2));
        assert!(!t.cluster.holds_data(1));
        assert!(Topology::new(&l, "d", 2).is_none());
    }
}
