//! Membership changes on the network (see [`members`](crate::cluster::members)
//! for the rules): which list a frame speaks of, adopting a newer list,
//! sending ours to a peer behind, and — as the open primary — the steps of
//! a change, one committed step at a time.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{control_config, seed, Driver};
use crate::cluster::bus::{Bus, Inbound};
use crate::cluster::file::ClusterFile;
use crate::cluster::members::{Entry, Ident, MemberList};
use crate::cluster::topology::Topology;
use crate::cluster::wire::Carried;
use crate::cluster::MemberCommand;
use crate::control::{Message, Node, NodeId};
use crate::server::state::ServerState;

/// How often a peer on an older list is sent ours (ms).
const PUSH_EVERY_MS: u64 = 300;
/// How long a removed member keeps being told it was removed unasked (ms).
const FAREWELL_MS: u64 = 10_000;
/// Removed members remembered, to answer one that calls on an old list.
const MAX_DEPARTED: usize = 64;

/// A change the configuration asks for.
#[derive(Clone, Debug)]
pub enum Wanted {
    Add(Entry),
    Remove(String),
}

/// The list a node starts with, and the changes its configuration asks for.
///
/// Once a node has a cluster file its list there is the database's, not the
/// configuration's `[[nodes]]`: the configuration differing from it is a
/// request to change the membership (applied when this node is the open
/// primary) — if the configuration changed since this node last started,
/// so that an old file left in place never undoes a change made online.
/// A version-0 list (never changed online) takes the configuration's zones
/// and addresses when the members are the same, so a rolling restart may
/// still move them.
pub fn boot_list(configured: &MemberList, file: Option<&ClusterFile>) -> (MemberList, Vec<Wanted>) {
    let Some((f, recorded)) = file.and_then(|f| f.list.as_ref().map(|l| (f, l))) else {
        return (configured.clone(), Vec::new());
    };
    if recorded.version == 0 && recorded.digest() == configured.digest() {
        return (configured.clone(), Vec::new());
    }
    let mut wanted = Vec::new();
    if f.config_digest != configured.digest() {
        for e in &configured.members {
            if recorded.by_name(&e.name).is_none() {
                wanted.push(Wanted::Add(e.clone()));
            }
        }
        for e in &recorded.members {
            if configured.by_name(&e.name).is_none() {
                wanted.push(Wanted::Remove(e.name.clone()));
            }
        }
        if !wanted.is_empty() {
            tracing::info!(
                "cluster: the configuration's [[nodes]] changed since the last start: {} change(s) to the member list wait until this node is primary",
                wanted.len()
            );
        }
    }
    (recorded.clone(), wanted)
}

/// A node not in the list (`role`: "joining", or "removed") waits here
/// for a list that adds it. Returns its topology and control state then,
/// or None at shutdown.
pub fn wait_to_join(
    state: &ServerState,
    role: &'static str,
    me: &str,
    clock: Instant,
    dir: &Path,
    mut file: ClusterFile,
    bus: Bus,
) -> Option<((Topology, Node), ClusterFile, Bus)> {
    let mut bus = bus;
    let mut known = file.list.clone().unwrap_or_default();
    publish_waiting(state, role, &known);
    while !state.shutdown.load(Ordering::Relaxed) {
        let Ok(m) = bus
            .inbox
            .recv_timeout(std::time::Duration::from_millis(100))
        else {
            continue;
        };
        let Carried::Members(list) = m.carried else {
            continue;
        };
        if !list.ident().newer_than(&known.ident()) {
            continue;
        }
        known = list;
        let Some(topo) = Topology::new(&known, me, state.shards) else {
            publish_waiting(state, role, &known);
            continue;
        };
        tracing::info!(
            "cluster: added to the database by {} (list version {}): {}; copying the data before it votes",
            m.from,
            known.version,
            topo.member_list()
        );
        file.list = Some(known.clone());
        file.primary = None;
        file.voted_for = None;
        if let Err(e) = file.store(dir) {
            tracing::warn!("cluster: cannot write the cluster file: {e}");
        }
        bus.set_peers(&topo);
        let config = state.config();
        let now = clock.elapsed().as_millis() as u64;
        let node = Node::new(
            topo.me,
            topo.cluster.clone(),
            control_config(&config),
            seed(),
            now,
            file.term,
            None,
        );
        return Some(((topo, node), file, bus));
    }
    None
}

/// INFO's view of a node that is not a member (waiting, or removed).
fn publish_waiting(state: &ServerState, role: &'static str, list: &MemberList) {
    if let Ok(mut v) = state.cluster.view.lock() {
        v.role = role;
        v.failover_state = "no-failover";
        v.members_version = list.version;
        v.membership = match role {
            "removed" => "removed from the database".into(),
            _ => "waiting to be added (KEEL NODE ADD on the primary)".into(),
        };
    }
    state
        .cluster
        .primary_reachable
        .store(false, Ordering::Relaxed);
}

/// What the driver keeps about membership.
pub struct Coordinator {
    /// The list each peer last spoke from (by name).
    holds: BTreeMap<String, Ident>,
    /// When each node was last sent our list (driver clock).
    pushed: BTreeMap<String, u64>,
    /// Removed members: (name, bus address, farewell deadline). Each is
    /// sent the list unasked until the deadline, and whenever it is heard
    /// on an older list after it (a removed primary that was away must
    /// learn it left, or it would stay open on its old list).
    departed: Vec<(String, (String, u16), u64)>,
    /// Changes the configuration asks for, applied as primary.
    wanted: Vec<Wanted>,
    /// This node was removed: the driver stops.
    pub removed: bool,
    /// Said once: the primary cannot remove itself.
    said_self: bool,
    /// An operator's change waiting for this primary's re-stamp to commit.
    queued: Option<MemberCommand>,
}

impl Coordinator {
    pub fn new(wanted: Vec<Wanted>) -> Coordinator {
        Coordinator {
            holds: BTreeMap::new(),
            pushed: BTreeMap::new(),
            departed: Vec::new(),
            wanted,
            removed: false,
            said_self: false,
            queued: None,
        }
    }
}

impl Driver {
    /// A frame from the bus: a list is adopted if newer; a control message
    /// is handed on only when its sender speaks of our list.
    pub(super) fn inbound(&mut self, m: Inbound) -> Option<(NodeId, Message)> {
        self.members.holds.insert(m.from.clone(), m.ident);
        let mine = self.topo.list.ident();
        match m.carried {
            Carried::Members(list) => {
                if list.ident().newer_than(&mine) {
                    tracing::info!(
                        term = self.node.term(),
                        "cluster: member list version {} from {}",
                        list.version,
                        m.from
                    );
                    self.adopt(list);
                }
                None
            }
            Carried::Control(msg) => {
                if m.ident != mine {
                    if mine.newer_than(&m.ident) {
                        self.push_to(&m.from, false);
                    }
                    return None;
                }
                self.topo.by_name(&m.from).map(|p| (p.id, msg))
            }
        }
    }

    /// Sends our list to `name` (rate-limited unless `now`).
    fn push_to(&mut self, name: &str, at_once: bool) {
        let t = self.now();
        let due = self
            .members
            .pushed
            .get(name)
            .is_none_or(|last| t >= last + PUSH_EVERY_MS);
        if !(due || at_once) || name == self.topo.me().name {
            return;
        }
        let addr = match self.topo.by_name(name) {
            Some(p) => p.bus.clone(),
            None => match self.members.departed.iter().find(|d| d.0 == name) {
                Some(d) => d.1.clone(),
                None => return,
            },
        };
        self.members.pushed.insert(name.to_string(), t);
        self.bus
            .push(name, &addr, self.topo.list.ident(), &self.topo.list);
    }

    /// Makes `list` this node's: recorded first, then links, control plane
    /// and replication follow it.
    pub(super) fn adopt(&mut self, list: MemberList) {
        let me = self.topo.me().name.clone();
        let t = self.now();
        for p in &self.topo.peers {
            if list.by_name(&p.name).is_none() && p.name != me {
                self.members.departed.retain(|d| d.0 != p.name);
                self.members
                    .departed
                    .push((p.name.clone(), p.bus.clone(), t + FAREWELL_MS));
            }
        }
        // A member back in the list is no longer departed; the oldest
        // departures are forgotten past a bound.
        self.members
            .departed
            .retain(|d| list.by_name(&d.0).is_none());
        let excess = self.members.departed.len().saturating_sub(MAX_DEPARTED);
        self.members.departed.drain(..excess);
        self.bus
            .set_departed(self.members.departed.iter().map(|d| d.0.clone()).collect());
        let Some(topo) = Topology::new(&list, &me, self.state.shards) else {
            tracing::warn!(
                "cluster: this node was removed from the database (list version {}); it serves no data and takes no part — shut it down (it rejoins only if a newer list names it again)",
                list.version
            );
            self.file.list = Some(list.clone());
            self.file.primary = None;
            if let Err(e) = self.file.store(&self.dir) {
                tracing::warn!("cluster: cannot write the cluster file: {e}");
            }
            // Its copy is no longer kept: the primary's links to it close.
            let repl = &self.state.repl;
            repl.set_hold(true);
            repl.set_master(None);
            self.state.cluster.lease_ok.store(false, Ordering::Relaxed);
            self.members.removed = true;
            self.state.cluster.outside.store(true, Ordering::SeqCst);
            publish_waiting(&self.state, "removed", &list);
            return;
        };
        tracing::info!(
            term = self.node.term(),
            "cluster: members (list version {}): {}",
            list.version,
            topo.member_list()
        );
        let moved = topo
            .peers
            .iter()
            .any(|p| self.topo.by_name(&p.name).is_some_and(|o| o.id != p.id));
        let old = std::mem::replace(&mut self.topo, topo);
        if moved {
            // Only a node that started from another `[[nodes]]` than the
            // database's numbers members otherwise: start its control
            // state afresh, keeping the term and its vote.
            tracing::info!("cluster: members are numbered otherwise in the database's list; control state rebuilt");
            let by_name = |id: Option<NodeId>| {
                id.and_then(|i| old.peer(i))
                    .and_then(|p| self.topo.by_name(&p.name))
                    .map(|p| p.id)
            };
            // Who leads is learned again from the next ping (a Follow).
            let vote = by_name(self.node.voted_for());
            let mut node = Node::new(
                self.topo.me,
                self.topo.cluster.clone(),
                control_config(&self.state.config()),
                seed(),
                self.now(),
                self.node.term(),
                None,
            );
            node.restore_vote(vote);
            self.node = node;
            self.following = None;
            self.heard.clear();
        } else {
            self.node.set_cluster(self.topo.cluster.clone());
        }
        self.persist();
        self.bus.set_peers(&self.topo);
        self.members_changed();
    }

    /// A node that joined serves data once its shards follow the primary
    /// (before that its empty copy would look ready); called every tick.
    pub(super) fn settle_join(&mut self) {
        let outside = &self.state.cluster.outside;
        if !outside.load(Ordering::Relaxed) || self.members.removed {
            return;
        }
        let following = self
            .state
            .repl
            .published
            .iter()
            .all(|f| f.follower.load(Ordering::Relaxed));
        if following || self.node.open_term().is_some() {
            outside.store(false, Ordering::SeqCst);
        }
    }

    /// What follows a new list outside the control plane: who may be the
    /// sync backup (voters that hold data), and the view.
    pub(super) fn members_changed(&mut self) {
        let eligible: HashSet<String> = self
            .topo
            .peers
            .iter()
            .filter(|p| p.voter && !p.arbiter && p.id != self.topo.me)
            .map(|p| p.name.clone())
            .collect();
        self.state.repl.set_sync_eligible(eligible);
    }

    /// Whether a majority of the list's voters hold it (this node included).
    fn committed(&self) -> bool {
        let mine = self.topo.list.ident();
        let me = &self.topo.me().name;
        let holding = self
            .topo
            .list
            .voters()
            .filter(|e| &e.name == me || self.members.holds.get(&e.name) == Some(&mine))
            .count();
        holding >= self.topo.list.majority()
    }

    /// A step is being committed (or waits for this primary's re-stamp).
    pub(super) fn membership_busy(&self) -> bool {
        !self.committed() || self.members.queued.is_some()
    }

    /// The step in progress, as INFO says it; None when idle.
    pub(super) fn change_in_progress(&self) -> Option<String> {
        if !self.committed() {
            return Some(format!(
                "committing list version {}",
                self.topo.list.version
            ));
        }
        if let Some(c) = &self.members.queued {
            return Some(format!("{c:?} waits for this primary's list"));
        }
        if let Some(l) = self.topo.peers.iter().find(|p| !p.voter) {
            return Some(format!("{} copying as a learner", l.name));
        }
        if let Some(p) = self.topo.peers.iter().find(|p| p.replaces.is_some()) {
            return Some(format!(
                "{} replaces {}",
                p.name,
                p.replaces.as_deref().unwrap_or("")
            ));
        }
        None
    }

    /// As the open primary: a new version, recorded here, then sent to
    /// every member (and to those it removes).
    fn propose(&mut self, list: MemberList, what: &str) {
        tracing::info!(
            term = self.node.term(),
            "cluster: membership: {what} (list version {})",
            list.version
        );
        let names: Vec<String> = self
            .topo
            .peers
            .iter()
            .map(|p| p.name.clone())
            .chain(list.members.iter().map(|e| e.name.clone()))
            .collect();
        self.adopt(list);
        for n in names {
            self.push_to(&n, true);
        }
    }

    /// The coordinator's turn, every tick: keep stragglers told, and as the
    /// open primary take the next step once the last one committed.
    pub(super) fn coordinate(&mut self) {
        let t = self.now();
        let mine = self.topo.list.ident();
        let me = self.topo.me().name.clone();
        // Members on an older list, and members never heard from (a joiner
        // that missed the push that added it sends nothing until it has the
        // list), are sent ours; removed ones during their farewell.
        let behind: Vec<String> = self
            .topo
            .peers
            .iter()
            .filter(|p| p.name != me)
            .filter(|p| {
                self.members
                    .holds
                    .get(&p.name)
                    .is_none_or(|i| mine.newer_than(i))
            })
            .map(|p| p.name.clone())
            .chain(
                self.members
                    .departed
                    .iter()
                    .filter(|d| d.2 > t)
                    .map(|d| d.0.clone()),
            )
            .collect();
        for n in behind {
            self.push_to(&n, false);
        }
        let open = self.node.open_term().is_some()
            && self.opening.is_none()
            && !self.boot_gate
            && self.switchover.is_none();
        if !open || !self.committed() {
            return;
        }
        let term = self.node.term();
        if let Some(c) = self.members.queued.take() {
            self.member_command(c);
            return;
        }
        // A learner that serves reads (every shard copied and caught up,
        // on our list) votes from now on; an arbiter once it is heard.
        let ready = self.topo.peers.iter().find(|p| {
            !p.voter
                && self.members.holds.get(&p.name) == Some(&mine)
                && !self.node.suspects(p.id)
                && (p.arbiter || self.node.peer_serving(p.id))
        });
        if let Some(p) = ready {
            let name = p.name.clone();
            if self.restamp(term) {
                return;
            }
            if let Ok(l) = self.topo.list.with_voter(term, &name) {
                self.propose(l, &format!("{name} copied every shard: it votes"));
            }
            return;
        }
        // A voter that replaces another: the other leaves.
        let replaced = self
            .topo
            .peers
            .iter()
            .filter(|p| p.voter)
            .find_map(|p| p.replaces.clone().map(|old| (p.name.clone(), old)));
        if let Some((new, old)) = replaced {
            if old == me {
                if !self.members.said_self {
                    self.members.said_self = true;
                    tracing::warn!(
                        "cluster: membership: {new} is to replace this node, the primary: move the primary first (FAILOVER TO {new}); the new primary completes the change"
                    );
                }
                return;
            }
            if self.restamp(term) {
                return;
            }
            if let Ok(l) = self.topo.list.without(term, &old) {
                self.propose(l, &format!("{old} leaves, replaced by {new}"));
            }
            return;
        }
        if self.topo.peers.iter().any(|p| !p.voter) {
            return;
        }
        // What the configuration asks for, one step at a time.
        if !self.members.wanted.is_empty() && self.restamp(term) {
            return;
        }
        while let Some(w) = self.members.wanted.first().cloned() {
            self.members.wanted.remove(0);
            let r = match &w {
                Wanted::Add(e) => self
                    .topo
                    .list
                    .with_learner(term, e.clone())
                    .map(|l| (l, format!("{} joins (configuration)", e.name))),
                Wanted::Remove(n) if *n == me => continue,
                Wanted::Remove(n) => self
                    .topo
                    .list
                    .without(term, n)
                    .map(|l| (l, format!("{n} leaves (configuration)"))),
            };
            match r {
                Ok((l, what)) => {
                    self.propose(l, &what);
                    return;
                }
                Err(e) => {
                    tracing::info!("cluster: membership: {w:?} from the configuration skipped: {e}")
                }
            }
        }
    }

    /// Before this primary's first step: its inherited list, re-stamped in
    /// its term, must commit first (see `members`' module doc). True when
    /// the re-stamp was proposed now (the step waits for it).
    fn restamp(&mut self, term: crate::control::Term) -> bool {
        if self.topo.list.term >= term {
            return false;
        }
        let l = self.topo.list.restamped(term);
        self.propose(
            l,
            &format!("list re-stamped in term {term} before a change"),
        );
        true
    }

    /// KEEL NODE ADD / REMOVE / REPLACE, checked again here (the command
    /// checked what the view showed a moment ago).
    pub(super) fn member_command(&mut self, c: MemberCommand) {
        let refuse = |why: String| tracing::warn!("cluster: membership: {c:?} refused: {why}");
        if self.node.open_term().is_none() {
            return refuse("this node is not the open primary".into());
        }
        if self.opening.is_some() || self.boot_gate || self.switchover.is_some() {
            // Not yet (or no longer quite) taking writes: `coordinate` takes
            // it once this primary is open, as it takes every step.
            self.members.queued = Some(c);
            return;
        }
        // A learner that never catches up (or a replacement that stalls)
        // must not block its own removal, which cancels the change: only a
        // step being committed does.
        let cancels = |n: &str| {
            self.topo
                .by_name(n)
                .is_some_and(|p| !p.voter || p.replaces.is_some())
        };
        let busy = match &c {
            MemberCommand::Remove(n) if cancels(n) && !self.membership_busy() => None,
            _ => self.change_in_progress(),
        };
        if let Some(busy) = busy {
            return refuse(format!("a change is in progress ({busy})"));
        }
        let term = self.node.term();
        if self.restamp(term) {
            // Taken again by `coordinate` once the re-stamp committed.
            self.members.queued = Some(c);
            return;
        }
        let me = self.topo.me().name.clone();
        let r = match &c {
            MemberCommand::Add(e) => self
                .topo
                .list
                .with_learner(term, e.clone())
                .map(|l| (l, format!("{} joins as a learner", e.name))),
            MemberCommand::Remove(n) if *n == me => {
                return refuse("the primary cannot remove itself".into())
            }
            MemberCommand::Remove(n) => self
                .topo
                .list
                .without(term, n)
                .map(|l| (l, format!("{n} leaves"))),
        };
        match r {
            Ok((l, what)) => self.propose(l, &what),
            Err(e) => refuse(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(version: u64, names: &[&str], zone: &str) -> MemberList {
        MemberList {
            version,
            term: version,
            next_id: names.len() as NodeId,
            members: names
                .iter()
                .enumerate()
                .map(|(i, n)| Entry {
                    id: i as NodeId,
                    name: n.to_string(),
                    zone: zone.into(),
                    region: "r".into(),
                    client: ("10.0.0.1".into(), 6379 + i as u16),
                    bus: ("10.0.0.1".into(), 26379 + i as u16),
                    arbiter: false,
                    voter: true,
                    replaces: None,
                })
                .collect(),
        }
    }

    fn file(recorded: MemberList, config_digest: u32) -> ClusterFile {
        ClusterFile {
            term: 3,
            list: Some(recorded),
            config_digest,
            ..ClusterFile::default()
        }
    }

    fn names(w: &[Wanted]) -> Vec<String> {
        w.iter()
            .map(|w| match w {
                Wanted::Add(e) => format!("+{}", e.name),
                Wanted::Remove(n) => format!("-{n}"),
            })
            .collect()
    }

    #[test]
    fn the_recorded_list_wins_and_only_a_changed_configuration_asks_for_changes() {
        let abc = list(0, &["a", "b", "c"], "z1");
        // No file: the configuration.
        assert_eq!(boot_list(&abc, None).0, abc);
        // A version-0 file of the same members: the configuration's zones.
        let moved = list(0, &["a", "b", "c"], "z9");
        let (l, w) = boot_list(&moved, Some(&file(abc.clone(), abc.digest())));
        assert_eq!((l, w.len()), (moved.clone(), 0));
        // Members changed online (version 2): an unchanged configuration
        // asks for nothing, whatever it lists.
        let online = list(2, &["a", "b", "d"], "z1");
        let (l, w) = boot_list(&abc, Some(&file(online.clone(), abc.digest())));
        assert_eq!((l, w.len()), (online.clone(), 0));
        // An edited configuration asks for its difference with the list.
        let abce = list(0, &["a", "b", "c", "e"], "z1");
        let (l, w) = boot_list(&abce, Some(&file(online.clone(), abc.digest())));
        assert_eq!(l, online);
        assert_eq!(names(&w), ["+c", "+e", "-d"]);
        // A version-0 file the configuration no longer matches: the file.
        let (l, w) = boot_list(&abce, Some(&file(abc.clone(), abc.digest())));
        assert_eq!((l, names(&w)), (abc, vec!["+e".to_string()]));
    }
}
