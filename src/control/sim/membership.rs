//! The member list as the simulator models it: the rules of
//! `cluster::members` (a versioned list, one step at a time, ordered by
//! version then the term of the primary that made it) without names and
//! addresses. A member is named by its [`NodeId`], which is also its index in
//! the world: ids are never reused, as in keel.
//!
//! The world moves lists between nodes and runs the coordinator
//! (`world/coordinator.rs`); this module only says what a list is and what
//! one step from it may be.

use std::collections::BTreeMap;

use super::super::{Cluster, Member, NodeId, Term};

/// Which list a node holds: (version, term of the primary that made it).
/// The tuple order is the order of lists: a newer version wins, and at one
/// version the list made in the higher term wins.
pub type Ident = (u64, Term);

/// The database's members at one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberList {
    pub version: u64,
    /// The term of the primary that made this version (0: the configuration).
    pub term: Term,
    /// Sorted by id.
    pub members: Vec<Member>,
    /// Pending replacements: new member → the member it replaces once it votes.
    pub replaces: BTreeMap<NodeId, NodeId>,
}

/// A change an operator asks of the open primary (KEEL NODE ADD / REMOVE /
/// REPLACE). Who is removed or replaced is picked when the primary accepts
/// it, from the list of that moment, so the seed names the request, not a
/// node that may be gone by then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Add the next joiner as a learner.
    AddJoiner,
    /// Remove a voter other than the primary (`pick` chooses which).
    RemoveVoter { pick: u64 },
    /// Add the next joiner as a learner that replaces a voter (`pick`
    /// chooses which; it may be the primary, which then waits for the next
    /// primary to complete the change, as keel does).
    Replace { pick: u64 },
}

impl MemberList {
    /// Version 0: the configuration.
    pub fn initial(members: Vec<Member>) -> MemberList {
        let mut members = members;
        members.sort_by_key(|m| m.id);
        MemberList {
            version: 0,
            term: 0,
            members,
            replaces: BTreeMap::new(),
        }
    }

    pub fn ident(&self) -> Ident {
        (self.version, self.term)
    }

    /// What the control plane is told (`Node::set_cluster`).
    pub fn cluster(&self, shards: usize) -> Cluster {
        Cluster {
            members: self.members.clone(),
            shards,
        }
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.members.iter().any(|m| m.id == id)
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.members.iter().any(|m| m.id == id && m.voter)
    }

    pub fn voters(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.id)
            .collect()
    }

    pub fn majority(&self) -> usize {
        self.voters().len() / 2 + 1
    }

    /// Learners: members that hold data and do not vote yet.
    pub fn learners(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|m| !m.voter)
            .map(|m| m.id)
            .collect()
    }

    /// How many voters are in one list and not in the other.
    pub fn voters_differ(&self, other: &MemberList) -> usize {
        let (a, b) = (self.voters(), other.voters());
        a.iter().filter(|v| !b.contains(v)).count() + b.iter().filter(|v| !a.contains(v)).count()
    }

    fn next(&self, term: Term) -> MemberList {
        MemberList {
            version: self.version + 1,
            term,
            ..self.clone()
        }
    }

    /// The next version with the same members, in `term`: a new primary's
    /// first step (see [`MembershipRules::restamp`]).
    ///
    /// [`MembershipRules::restamp`]: super::MembershipRules::restamp
    pub fn restamped(&self, term: Term) -> MemberList {
        self.next(term)
    }

    /// The next version with `m` added as a learner.
    pub fn with_learner(&self, term: Term, m: Member, replaces: Option<NodeId>) -> MemberList {
        let mut l = self.next(term);
        l.members.push(Member { voter: false, ..m });
        l.members.sort_by_key(|m| m.id);
        if let Some(old) = replaces {
            l.replaces.insert(m.id, old);
        }
        l
    }

    /// The next version with learner `id` a voter.
    pub fn with_voter(&self, term: Term, id: NodeId) -> MemberList {
        let mut l = self.next(term);
        for m in &mut l.members {
            if m.id == id {
                m.voter = true;
            }
        }
        l
    }

    /// The next version without `id`, and without any pending replacement
    /// of it (the replacing member simply stays).
    pub fn without(&self, term: Term, id: NodeId) -> MemberList {
        let mut l = self.next(term);
        l.members.retain(|m| m.id != id);
        l.replaces.retain(|new, old| *new != id && *old != id);
        l
    }
}
