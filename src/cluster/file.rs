//! The cluster file: what a node must remember of the membership across a
//! restart — the term, its vote in it, who was primary, the history it
//! holds, the member list (which wins over the configuration's `[[nodes]]`
//! once the membership changed online) — and, for the operator, each
//! shard's replication history id (the shards' MANIFESTs are authoritative
//! for those). `cluster` in the data directory, a few `key value` lines.
//!
//! Written whole at every change (new file, fsync, rename, directory fsync),
//! so a crash leaves the old or the new one, never a mix. Once it exists it
//! wins over the configuration's `primary`, which only names the *first*
//! primary: a node that was primary and restarts does not open for writes
//! on the strength of a stale config or file — it boots as a follower and
//! the cluster tells it who leads now.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::members::MemberList;
use crate::control::Term;

/// The persistent part of a member's control state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterFile {
    pub term: Term,
    /// Name of the node this one voted for in `term`.
    pub voted_for: Option<String>,
    /// Name of the primary of `term`, if known.
    pub primary: Option<String>,
    /// The history (a term) this node's data follows.
    pub history: Term,
    /// The member list this node holds; None in a file written before
    /// lists were recorded (the configuration's `[[nodes]]` then).
    pub list: Option<MemberList>,
    /// Each shard's replication history id.
    pub histories: Vec<u64>,
    /// The digest of the configuration's `[[nodes]]` when this node last
    /// started: a different one at the next start is a change to apply.
    pub config_digest: u32,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join("cluster")
}

impl ClusterFile {
    /// The file in `dir`, None when there is none yet.
    pub fn load(dir: &Path) -> Result<Option<ClusterFile>, String> {
        let p = path(dir);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
        };
        Self::parse(&text)
            .map(Some)
            .map_err(|e| format!("bad cluster file {}: {e}", p.display()))
    }

    pub fn parse(text: &str) -> Result<ClusterFile, String> {
        let mut f = ClusterFile::default();
        let mut seen_term = false;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{k}: {v:?}"));
            match k {
                "term" => {
                    f.term = num(v)?;
                    seen_term = true;
                }
                "history" => f.history = num(v)?,
                "config-members" => {
                    f.config_digest =
                        u32::from_str_radix(v, 16).map_err(|_| format!("{k}: {v:?}"))?
                }
                "voted-for" => f.voted_for = Some(v.to_string()).filter(|s| !s.is_empty()),
                "primary" => f.primary = Some(v.to_string()).filter(|s| !s.is_empty()),
                // Older files listed the names only; the list now says more.
                "members" => {}
                "histories" => {
                    f.histories = v
                        .split_whitespace()
                        .map(|h| u64::from_str_radix(h, 16).map_err(|_| format!("{k}: {h:?}")))
                        .collect::<Result<_, _>>()?
                }
                _ => {
                    let list = f.list.get_or_insert_with(MemberList::default);
                    if !list.parse_line(k, v)? {
                        return Err(format!("unknown line {line:?}"));
                    }
                }
            }
        }
        if !seen_term {
            return Err("no term".into());
        }
        Ok(f)
    }

    pub fn render(&self) -> String {
        let histories: Vec<String> = self.histories.iter().map(|h| format!("{h:016x}")).collect();
        format!(
            "term {}\nvoted-for {}\nprimary {}\nhistory {}\nhistories {}\nconfig-members {:08x}\n{}",
            self.term,
            self.voted_for.as_deref().unwrap_or(""),
            self.primary.as_deref().unwrap_or(""),
            self.history,
            histories.join(" "),
            self.config_digest,
            self.list.as_ref().map(MemberList::render).unwrap_or_default()
        )
    }

    /// Replaces the file in `dir` atomically and durably.
    pub fn store(&self, dir: &Path) -> std::io::Result<()> {
        let p = path(dir);
        let tmp = dir.join("cluster.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.render().as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &p)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_loads_and_refuses_garbage() {
        let dir = std::env::temp_dir().join(format!("keel-cluster-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(ClusterFile::load(&dir).unwrap(), None);
        let f = ClusterFile {
            term: 4,
            voted_for: Some("b".into()),
            primary: None,
            history: 3,
            list: Some(MemberList {
                version: 2,
                term: 4,
                next_id: 3,
                members: vec![],
            }),
            histories: vec![0xfeed, 1],
            config_digest: 0xabc,
        };
        f.store(&dir).unwrap();
        assert_eq!(ClusterFile::load(&dir).unwrap(), Some(f));
        std::fs::write(path(&dir), "term x\n").unwrap();
        assert!(ClusterFile::load(&dir).is_err());
        std::fs::write(path(&dir), "primary a\n").unwrap();
        assert!(ClusterFile::load(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
