//! The ACL set is the database's, not one node's.
//!
//! Every user but `default` is kept as a field of one hash in the hidden
//! database ([`crate::exec::meta`]): its value is the user's `user <name>
//! <rules>` line (the ACL file's form, passwords as SHA-256 hashes). The
//! primary writes the whole set there after each ACL SETUSER, DELUSER and
//! LOAD, as one unit of records, so it is logged, replicated and merged
//! with the data: it survives restarts, reaches every backup and survives
//! a failover with no machinery of its own. A backup refuses those
//! commands as it refuses writes.
//!
//! Every node watches the hidden database's epoch and, when the stored set
//! differs from its table, loads it (closing the connections of users no
//! longer there). `default` is left out: it follows each node's
//! `requirepass`, which its peers use to reach it.
//!
//! Until a set was ever published (no hash), a node keeps the users of its
//! own `aclfile`; once one was, the database's set wins over the file at
//! start (ACL LOAD on the primary publishes the file's users).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use keel_shards::META_EPOCH;

use crate::cmd::error::CmdError;
use crate::exec::meta;
use crate::exec::router::Router;
use crate::resp::reply::Reply;
use crate::server::conn::Conn;
use crate::server::state::ServerState;

/// The hash in the hidden database that holds the set.
pub const ACL_KEY: &[u8] = b"keel:acl";
/// A field present once a set was published (even an empty one).
const MARK: &[u8] = b"\x00published";

/// The ACL commands that change users refuse to run on a backup.
pub fn refuse_on_backup(conn: &Conn) -> Result<(), CmdError> {
    if conn.state.repl.is_backup() {
        return Err(CmdError::Raw(
            "READONLY You can't write against a read only replica.".into(),
        ));
    }
    Ok(())
}

/// Writes this node's users (all but `default`) as the database's set.
pub async fn publish(conn: &Conn) -> Result<(), CmdError> {
    // Under `appendfsync always` (or strong mode) the reply waits for the
    // records like any write's.
    conn.note_write_everywhere();
    let mut hset = vec![
        b"hset".to_vec(),
        ACL_KEY.to_vec(),
        MARK.to_vec(),
        b"1".to_vec(),
    ];
    for (name, u) in conn.state.acl.store.snapshot().iter() {
        if name != "default" {
            hset.push(name.as_bytes().to_vec());
            hset.push(u.line());
        }
    }
    let writes = vec![vec![b"del".to_vec(), ACL_KEY.to_vec()], hset];
    let router = conn.router.clone();
    let s = router.shard_of(ACL_KEY);
    router
        .on_local(s, None, move |ls| {
            meta::write_unit(ls, s, &writes, || {
                crate::script::engine::core().map_or(0, |c| c.router.next_commit())
            })
        })
        .await?
}

/// The stored set's lines by user name, or None if none was published.
fn stored(reply: Reply) -> Option<BTreeMap<String, Vec<u8>>> {
    let pairs: Vec<(Reply, Reply)> = match reply {
        Reply::Map(m) => m,
        Reply::Array(items) => {
            let mut it = items.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            out
        }
        _ => return None,
    };
    let mut published = false;
    let mut lines = BTreeMap::new();
    for (k, v) in pairs {
        let (Reply::Bulk(k), Reply::Bulk(v)) = (k, v) else {
            continue;
        };
        if k == MARK {
            published = true;
        } else if k != b"default" {
            lines.insert(String::from_utf8_lossy(&k).into_owned(), v);
        }
    }
    published.then_some(lines)
}

/// Loads the stored set into the user table when it differs; the names of
/// the users it removed.
fn adopt(state: &ServerState, lines: BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let store = &state.acl.store;
    let current: BTreeMap<String, Vec<u8>> = store
        .snapshot()
        .iter()
        .filter(|(n, _)| *n != "default")
        .map(|(n, u)| (n.clone(), u.line()))
        .collect();
    if current == lines {
        return Vec::new();
    }
    let text = lines.values().cloned().collect::<Vec<_>>().join(&b'\n');
    let users = match super::file::parse(&text, "the database's ACL set") {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!("the database's ACL set does not load, users unchanged: {e}");
            return Vec::new();
        }
    };
    let removed: Vec<String> = current
        .keys()
        .filter(|n| !lines.contains_key(*n))
        .cloned()
        .collect();
    let mut all = users;
    if let Some(d) = store.get("default") {
        all.push((*d).clone());
    }
    store.load_all(all);
    tracing::info!(users = lines.len(), "ACL: loaded the database's users");
    removed
}

/// Watches the hidden database and loads the stored set whenever it
/// changes. Runs on the executor that owns [`ACL_KEY`], until keel stops.
pub async fn watch(router: Rc<Router>, state: Arc<ServerState>) {
    let s = router.shard_of(ACL_KEY);
    let mut seen = u64::MAX;
    while !state.shutdown.load(Ordering::Relaxed) {
        crate::runtime::sleep(Duration::from_millis(100)).await;
        let epoch = META_EPOCH.load(Ordering::Acquire);
        if epoch == seen {
            continue;
        }
        seen = epoch;
        let read = router
            .on_local(s, None, move |ls| {
                meta::command(ls, s, &[b"hgetall", ACL_KEY])
            })
            .await;
        let Ok(Ok(reply)) = read else {
            continue;
        };
        let Some(lines) = stored(reply) else {
            continue;
        };
        let removed = adopt(&state, lines);
        if let Err(e) = super::gate::disconnect_users(&router, removed).await {
            tracing::warn!("ACL: closing removed users' connections: {e}");
        }
    }
}
