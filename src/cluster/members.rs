//! The member list: who belongs to the database, versioned so it can change
//! while the database runs.
//!
//! # Ids that never move
//! The control plane names members by number ([`NodeId`]). A list born from
//! the configuration (version 0) numbers its members by their place in the
//! sorted names, so every node that reads the same `[[nodes]]` numbers them
//! alike. A member added later takes `next_id`, a number no member ever had;
//! numbers are never reused. So a number means the same member in every
//! version of the list, and a message from a node one change behind still
//! reads right.
//!
//! # One change at a time, driven by the primary
//! The open primary is the coordinator. A change is a new version of the
//! list: add a *learner* (holds data, does not vote), promote a learner to
//! voter, remove a member. Every step changes at most one voter, so any
//! majority of the old voters and any majority of the new ones share a
//! member; a step is *committed* once a majority of the new list's voters
//! hold it, and the primary takes the next step only then. Learners become
//! voters only once their pings say they serve reads (every shard copied
//! and caught up). What is still to do lives in the list itself — a learner
//! waiting to be promoted, a member another one `replaces` — so a primary
//! elected in the middle of a change finishes it.
//!
//! # Which list wins
//! Lists are ordered by (version, term of the primary that made them): a
//! primary elected after a step that never committed makes its own next
//! version in a higher term, which wins over the lost one. Every frame on
//! the bus carries its sender's [`Ident`]; a node interprets only frames of
//! its own list (so it votes and counts only within one membership) and
//! sends its list to a peer it hears on an older one.

use crate::config::{parse_host_port, Config};
use crate::control::{NodeId, Term};

/// Most members a list may have (a peer's list is input).
pub const MAX_MEMBERS: usize = 256;

/// One member as the list records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: NodeId,
    pub name: String,
    pub zone: String,
    pub region: String,
    /// Client address: what backups follow and clients use.
    pub client: (String, u16),
    /// Cluster bus address.
    pub bus: (String, u16),
    /// Votes but holds no data.
    pub arbiter: bool,
    /// Votes in elections and failure verdicts (a learner does not yet).
    pub voter: bool,
    /// Once this member is a voter, the member of that name is removed.
    pub replaces: Option<String>,
}

/// Which list a node holds: the order decides which of two lists wins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ident {
    pub version: u64,
    pub term: Term,
    /// Tells apart two lists of one version and term: only two version-0
    /// lists from different `[[nodes]]` can differ so.
    pub digest: u32,
}

impl Ident {
    /// Whether `self` is a later list than `other`.
    pub fn newer_than(&self, other: &Ident) -> bool {
        (self.version, self.term) > (other.version, other.term)
    }
}

/// The database's members at one version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberList {
    pub version: u64,
    /// The term of the primary that made this version (0: the configuration).
    pub term: Term,
    /// The number the next added member takes.
    pub next_id: NodeId,
    /// Sorted by id.
    pub members: Vec<Entry>,
}

/// Why a change cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    #[error("a member with id {0} already exists")]
    Exists(String),
    #[error("no member with id {0}")]
    Unknown(String),
    #[error("the database already has {MAX_MEMBERS} members")]
    Full,
    #[error("{0} is an arbiter: it holds no data to replace it with")]
    Arbiter(String),
    #[error("removing {0} would leave no voter")]
    LastVoter(String),
}

/// The bus port a node uses when its entry names none: the client port
/// + 20000 (replication takes + 10000, as Redis Cluster's bus does).
pub fn default_bus_port(client_port: u16) -> u16 {
    client_port.checked_add(20000).unwrap_or(0)
}

impl MemberList {
    /// Version 0: the configuration's `[[nodes]]`, numbered by sorted name.
    pub fn from_config(c: &Config) -> Result<MemberList, String> {
        let mut specs: Vec<_> = c.nodes.iter().collect();
        specs.sort_by(|a, b| a.id.cmp(&b.id));
        if specs.windows(2).any(|w| w[0].id == w[1].id) {
            return Err("two [[nodes]] share an id".into());
        }
        let mut members = Vec::new();
        for (i, n) in specs.iter().enumerate() {
            let client = parse_host_port(&n.client)
                .ok_or_else(|| format!("node {}: bad client address {:?}", n.id, n.client))?;
            let bus = match &n.bus {
                Some(b) => parse_host_port(b)
                    .ok_or_else(|| format!("node {}: bad bus address {b:?}", n.id))?,
                None => (client.0.clone(), default_bus_port(client.1)),
            };
            let e = Entry {
                id: i as NodeId,
                name: n.id.clone(),
                zone: n.zone.clone(),
                region: n.region.clone(),
                client,
                bus,
                arbiter: n.arbiter,
                voter: true,
                replaces: None,
            };
            e.check().map_err(|what| {
                format!(
                    "node {:?}: bad {what} (printable words, no spaces, ',' or '=')",
                    n.id
                )
            })?;
            members.push(e);
        }
        Ok(MemberList {
            version: 0,
            term: 0,
            next_id: members.len() as NodeId,
            members,
        })
    }

    pub fn ident(&self) -> Ident {
        Ident {
            version: self.version,
            term: self.term,
            digest: self.digest(),
        }
    }

    /// Names and numbers, arbiters, voters and pending replacements: what
    /// members must agree on to read each other's messages and count votes
    /// alike. Zones and addresses are left out: a rolling restart of a
    /// version-0 database may still move a node's zone.
    pub fn digest(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        for e in &self.members {
            h.update(&e.id.to_le_bytes());
            h.update(&(e.name.len() as u64).to_le_bytes());
            h.update(e.name.as_bytes());
            h.update(&[u8::from(e.arbiter), u8::from(e.voter)]);
            if let Some(r) = &e.replaces {
                h.update(r.as_bytes());
            }
        }
        h.finalize()
    }

    pub fn by_name(&self, name: &str) -> Option<&Entry> {
        self.members.iter().find(|e| e.name == name)
    }

    pub fn voters(&self) -> impl Iterator<Item = &Entry> {
        self.members.iter().filter(|e| e.voter)
    }

    /// How many of the voters make a majority.
    pub fn majority(&self) -> usize {
        self.voters().count() / 2 + 1
    }

    fn next(&self, term: Term) -> MemberList {
        MemberList {
            version: self.version + 1,
            term,
            ..self.clone()
        }
    }

    /// The next version with `e` added as a learner (an arbiter, which has
    /// nothing to copy, too: it is promoted once it is heard).
    pub fn with_learner(&self, term: Term, mut e: Entry) -> Result<MemberList, ChangeError> {
        if self.by_name(&e.name).is_some() {
            return Err(ChangeError::Exists(e.name));
        }
        if self.members.len() >= MAX_MEMBERS {
            return Err(ChangeError::Full);
        }
        if let Some(old) = &e.replaces {
            match self.by_name(old) {
                None => return Err(ChangeError::Unknown(old.clone())),
                Some(o) if o.arbiter != e.arbiter => {
                    return Err(ChangeError::Arbiter(o.name.clone()))
                }
                Some(_) => {}
            }
        }
        let mut l = self.next(term);
        e.id = self.next_id;
        e.voter = false;
        l.next_id = self.next_id + 1;
        l.members.push(e);
        Ok(l)
    }

    /// The next version with learner `name` a voter.
    pub fn with_voter(&self, term: Term, name: &str) -> Result<MemberList, ChangeError> {
        let mut l = self.next(term);
        let e = l
            .members
            .iter_mut()
            .find(|e| e.name == name)
            .ok_or_else(|| ChangeError::Unknown(name.to_string()))?;
        e.voter = true;
        Ok(l)
    }

    /// The next version without `name` (and without any pending
    /// replacement of it: a learner meant to replace it simply stays).
    pub fn without(&self, term: Term, name: &str) -> Result<MemberList, ChangeError> {
        let gone = self
            .by_name(name)
            .ok_or_else(|| ChangeError::Unknown(name.to_string()))?;
        if gone.voter && self.voters().count() == 1 {
            return Err(ChangeError::LastVoter(name.to_string()));
        }
        let mut l = self.next(term);
        l.members.retain(|e| e.name != name);
        for e in &mut l.members {
            if e.replaces.as_deref() == Some(name) {
                e.replaces = None;
            }
        }
        Ok(l)
    }

    /// The cluster file's lines for this list.
    pub fn render(&self) -> String {
        let mut s = format!(
            "members-version {}\nmembers-term {}\nnext-id {}\n",
            self.version, self.term, self.next_id
        );
        for e in &self.members {
            let role = match (e.arbiter, e.voter) {
                (false, true) => "voter",
                (false, false) => "learner",
                (true, true) => "arbiter",
                (true, false) => "arbiter-learner",
            };
            s.push_str(&format!(
                "member {} {} {} {} {}:{} {}:{} {}{}\n",
                e.id,
                e.name,
                text_or_dash(&e.zone),
                text_or_dash(&e.region),
                e.client.0,
                e.client.1,
                e.bus.0,
                e.bus.1,
                role,
                e.replaces
                    .as_ref()
                    .map(|r| format!(" replaces={r}"))
                    .unwrap_or_default()
            ));
        }
        s
    }

    /// Reads one `key value` line of the cluster file into this list;
    /// false when the key is not a member-list key.
    pub fn parse_line(&mut self, k: &str, v: &str) -> Result<bool, String> {
        let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{k}: {v:?}"));
        match k {
            "members-version" => self.version = num(v)?,
            "members-term" => self.term = num(v)?,
            "next-id" => {
                self.next_id = NodeId::try_from(num(v)?).map_err(|_| format!("{k}: {v:?}"))?
            }
            "member" => {
                let e = parse_entry(v).ok_or_else(|| format!("bad member line {v:?}"))?;
                if self.members.len() >= MAX_MEMBERS || self.by_name(&e.name).is_some() {
                    return Err(format!("member line {v:?}: duplicate or too many"));
                }
                self.members.push(e);
                self.members.sort_by_key(|e| e.id);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn text_or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

fn dash_or_text(s: &str) -> String {
    if s == "-" {
        String::new()
    } else {
        s.to_string()
    }
}

fn parse_entry(v: &str) -> Option<Entry> {
    let f: Vec<&str> = v.split_whitespace().collect();
    if !(7..=8).contains(&f.len()) {
        return None;
    }
    let (arbiter, voter) = match f[6] {
        "voter" => (false, true),
        "learner" => (false, false),
        "arbiter" => (true, true),
        "arbiter-learner" => (true, false),
        _ => return None,
    };
    let replaces = match f.get(7) {
        Some(r) => Some(r.strip_prefix("replaces=")?.to_string()),
        None => None,
    };
    Some(Entry {
        id: f[0].parse().ok()?,
        name: f[1].to_string(),
        zone: dash_or_text(f[2]),
        region: dash_or_text(f[3]),
        client: parse_host_port(f[4])?,
        bus: parse_host_port(f[5])?,
        arbiter,
        voter,
        replaces,
    })
}

impl Entry {
    /// What a member entry from a peer or an operator must be: words that
    /// fit on one line of the cluster file and of INFO.
    pub fn check(&self) -> Result<(), &'static str> {
        let word = |s: &str| s.is_empty() || valid_name(s);
        let host =
            |h: &str| !h.is_empty() && h.len() <= 255 && h.chars().all(|c| c.is_ascii_graphic());
        if !valid_name(&self.name) {
            return Err("member name");
        }
        if !word(&self.zone)
            || !word(&self.region)
            || self.replaces.as_deref().is_some_and(|r| !valid_name(r))
        {
            return Err("zone, region or replaced name");
        }
        if !host(&self.client.0) || !host(&self.bus.0) {
            return Err("host");
        }
        Ok(())
    }
}

/// Whether `name` may name a member: what fits on one line of the cluster
/// file and in INFO (no spaces, commas or `=`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, ',' | '='))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, zone: &str) -> Entry {
        Entry {
            id: 0,
            name: name.into(),
            zone: zone.into(),
            region: "r1".into(),
            client: ("10.0.0.9".into(), 6379),
            bus: ("10.0.0.9".into(), 26379),
            arbiter: false,
            voter: true,
            replaces: None,
        }
    }

    fn three() -> MemberList {
        let mut l = MemberList::default();
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            let mut e = entry(n, &format!("z{i}"));
            e.id = i as NodeId;
            l.members.push(e);
        }
        l.next_id = 3;
        l
    }

    #[test]
    fn steps_change_one_voter_and_never_reuse_an_id() {
        let l0 = three();
        let l1 = l0.with_learner(2, entry("d", "z2")).unwrap();
        assert_eq!((l1.version, l1.term, l1.next_id), (1, 2, 4));
        let d = l1.by_name("d").unwrap();
        assert_eq!((d.id, d.voter), (3, false));
        assert_eq!(l1.majority(), 2);
        let l2 = l1.with_voter(2, "d").unwrap();
        assert_eq!(l2.majority(), 3);
        let l3 = l2.without(2, "a").unwrap();
        assert_eq!(l3.majority(), 2);
        let l4 = l3.with_learner(3, entry("a", "z0")).unwrap();
        assert_eq!(
            l4.by_name("a").unwrap().id,
            4,
            "a returning member gets a new id"
        );
        assert!(l4.ident().newer_than(&l3.ident()));
        assert_ne!(l3.digest(), l4.digest());
        assert_eq!(
            l4.with_learner(3, entry("b", "z1")),
            Err(ChangeError::Exists("b".into()))
        );
        assert_eq!(l4.without(3, "x"), Err(ChangeError::Unknown("x".into())));
    }

    #[test]
    fn a_newer_term_wins_at_one_version() {
        let l0 = three();
        let lost = l0.with_learner(2, entry("d", "z1")).unwrap();
        let won = l0.with_learner(3, entry("e", "z1")).unwrap();
        assert!(won.ident().newer_than(&lost.ident()));
        assert!(!lost.ident().newer_than(&won.ident()));
    }

    #[test]
    fn the_file_lines_round_trip() {
        let mut l = three()
            .with_learner(5, {
                let mut e = entry("d", "");
                e.replaces = Some("c".into());
                e
            })
            .unwrap();
        l.members[0].arbiter = true;
        let text = l.render();
        let mut back = MemberList::default();
        for line in text.lines() {
            let (k, v) = line.split_once(' ').unwrap();
            assert!(back.parse_line(k, v).unwrap());
        }
        assert_eq!(back, l);
        assert!(MemberList::default()
            .parse_line("member", "1 x z r nohost x:1 voter")
            .is_err());
        assert!(!MemberList::default().parse_line("term", "1").unwrap());
    }
}
