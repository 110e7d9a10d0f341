//! FUNCTION LOAD | DELETE | FLUSH | LIST | DUMP | RESTORE | STATS | KILL |
//! HELP, and the catalog FCALL reads.
//!
//! Every change runs on the core of the shard that owns `META_KEY`, in
//! one step: the catalog is brought up to date from the stored hash, the
//! change is checked against it (names, collisions, REPLACE), written to
//! the hash as one unit of records, and the new catalog installed. Two
//! FUNCTION LOADs from different cores are thus ordered like two writes
//! to one key. Reads (FCALL, LIST) use the shared catalog while
//! `META_EPOCH` says it is current, and rebuild it on that core otherwise
//! (after a backup applied a replicated change, a restart, a merge).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use keel_shards::META_EPOCH;

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::is;
use crate::exec::local::LocalShards;
use crate::resp::reply::Reply;
use crate::script::engine;
use crate::script::library::{self, Catalog, Library, META_KEY};
use crate::server::conn::Conn;
use crate::server::state::ServerState;

/// The current catalog and its generation.
pub async fn catalog(conn: &Conn) -> Result<(u64, Arc<Catalog>), CmdError> {
    if let Some(c) = conn
        .state
        .functions
        .fresh(META_EPOCH.load(Ordering::Acquire))
    {
        return Ok(c);
    }
    let router = conn.router.clone();
    let s = router.shard_of(META_KEY);
    let state = conn.state.clone();
    router
        .on_local(s, None, move |ls| refresh(&state, ls, s))
        .await?
}

/// Rebuilds the catalog from the stored hash if `META_DB` changed since
/// it was read. Runs on the core of shard `s`, which owns the hash.
fn refresh(
    state: &ServerState,
    ls: &LocalShards,
    s: usize,
) -> Result<(u64, Arc<Catalog>), CmdError> {
    let epoch = META_EPOCH.load(Ordering::Acquire);
    if let Some(c) = state.functions.fresh(epoch) {
        return Ok(c);
    }
    let mut catalog = Catalog::default();
    for code in stored(ls, s)? {
        match build(&code) {
            Ok(lib) => catalog.insert(lib),
            Err(e) => tracing::warn!("a stored function library does not load: {e}"),
        }
    }
    Ok(state.functions.set(epoch, catalog))
}

/// The library sources in the stored hash.
fn stored(ls: &LocalShards, s: usize) -> Result<Vec<String>, CmdError> {
    let reply = crate::exec::meta::command(ls, s, &[b"hvals", META_KEY])?;
    let Reply::Array(items) = reply else {
        return Ok(Vec::new());
    };
    Ok(items
        .into_iter()
        .filter_map(|r| match r {
            Reply::Bulk(b) => String::from_utf8(b).ok(),
            _ => None,
        })
        .collect())
}

/// Parses and runs a library's code: the library, or Redis's error.
fn build(code: &str) -> Result<Arc<Library>, CmdError> {
    let (name, body) = library::parse_metadata(code)?;
    let functions = engine::check_library(&body)?;
    if functions.is_empty() {
        return Err(CmdError::other("No functions registered"));
    }
    Ok(Arc::new(Library {
        name,
        code: code.to_string(),
        body,
        functions,
    }))
}

/// A change to the libraries.
enum Change {
    Load {
        code: String,
        replace: bool,
    },
    Delete(String),
    Flush,
    Restore {
        sources: Vec<String>,
        policy: Policy,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Policy {
    Flush,
    Append,
    Replace,
}

/// Applies `change` on the core of shard `s`: checked against the
/// current catalog, written to the hash as one unit, then installed.
fn change(state: &ServerState, ls: &LocalShards, s: usize, change: Change) -> CmdResult {
    let (_, current) = refresh(state, ls, s)?;
    let mut next = (*current).clone();
    let mut writes: Vec<Vec<Vec<u8>>> = Vec::new();
    let hset = |lib: &Library| {
        vec![
            b"hset".to_vec(),
            META_KEY.to_vec(),
            lib.name.as_bytes().to_vec(),
            lib.code.as_bytes().to_vec(),
        ]
    };
    let del = || vec![b"del".to_vec(), META_KEY.to_vec()];
    let reply = match change {
        Change::Load { code, replace } => {
            let lib = build(&code)?;
            next.add(lib.clone(), replace)?;
            writes.push(hset(&lib));
            Reply::bulk(lib.name.as_bytes())
        }
        Change::Delete(name) => {
            if next.remove(&name).is_none() {
                return Err(CmdError::other("Library not found"));
            }
            writes.push(vec![b"hdel".to_vec(), META_KEY.to_vec(), name.into_bytes()]);
            Reply::Ok
        }
        Change::Flush => {
            next = Catalog::default();
            writes.push(del());
            Reply::Ok
        }
        Change::Restore { sources, policy } => {
            if policy == Policy::Flush {
                next = Catalog::default();
            }
            let mut restored = Catalog::default();
            for code in &sources {
                let lib = build(code).map_err(|e| {
                    CmdError::other(e.to_string().trim_start_matches("ERR ").to_string())
                })?;
                // Libraries inside one payload must not collide either.
                restored.add(lib.clone(), false)?;
                next.add(lib, policy == Policy::Replace)?;
            }
            if policy == Policy::Flush {
                writes.push(del());
            }
            for lib in restored.libraries.values() {
                writes.push(hset(lib));
            }
            Reply::Ok
        }
    };
    let written = crate::exec::meta::write_unit(ls, s, &writes, || {
        engine::core().map_or(0, |core| core.router.next_commit())
    });
    // On failure the catalog is rebuilt from what was written.
    written?;
    state
        .functions
        .set(META_EPOCH.load(Ordering::Acquire), next);
    Ok(reply)
}

async fn run_change(conn: &Conn, c: Change) -> CmdResult {
    // Under `appendfsync always` (or strong mode) the reply waits for the
    // records like any write's.
    conn.note_write_everywhere();
    if conn.state.repl.is_backup() {
        return Err(CmdError::Raw(
            "READONLY You can't write against a read only replica.".into(),
        ));
    }
    let router = conn.router.clone();
    let s = router.shard_of(META_KEY);
    let state = conn.state.clone();
    router
        .on_local(s, None, move |ls| change(&state, ls, s, c))
        .await?
}

/// FUNCTION and its subcommands.
pub async fn function(conn: &mut Conn, a: &[&[u8]]) -> CmdResult {
    let sub = String::from_utf8_lossy(a[1]).to_lowercase();
    let arity = || CmdError::Arity(format!("function|{sub}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match sub.as_str() {
        "load" => {
            let mut replace = false;
            let mut i = 2;
            while i + 1 < a.len() {
                if is(a[i], "replace") {
                    replace = true;
                    i += 1;
                    continue;
                }
                return Err(CmdError::other(format!(
                    "Unknown option given: {}",
                    text(a[i])
                )));
            }
            if i >= a.len() {
                return Err(CmdError::other("Function code is missing"));
            }
            let code = String::from_utf8(a[i].to_vec())
                .map_err(|_| CmdError::other("Error compiling function: the code is not UTF-8"))?;
            run_change(conn, Change::Load { code, replace }).await
        }
        "delete" => {
            if a.len() != 3 {
                return Err(arity());
            }
            run_change(conn, Change::Delete(text(a[2]))).await
        }
        "flush" => {
            crate::script::flush_mode(a, "FUNCTION FLUSH only supports SYNC|ASYNC option", arity)?;
            run_change(conn, Change::Flush).await
        }
        "restore" => {
            if a.len() < 3 || a.len() > 4 {
                return Err(arity());
            }
            let policy = match a.get(3) {
                None => Policy::Append,
                Some(p) if is(p, "flush") => Policy::Flush,
                Some(p) if is(p, "append") => Policy::Append,
                Some(p) if is(p, "replace") => Policy::Replace,
                Some(_) => return Err(CmdError::other(
                    "Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
                )),
            };
            let Some(sources) = library::undump(a[2]) else {
                return Err(CmdError::other(
                    "DUMP payload version or checksum are wrong",
                ));
            };
            run_change(conn, Change::Restore { sources, policy }).await
        }
        "dump" => {
            if a.len() != 2 {
                return Err(arity());
            }
            let (_, catalog) = catalog(conn).await?;
            Ok(Reply::Bulk(library::dump(&catalog)))
        }
        "list" => list(conn, a).await,
        "stats" => {
            if a.len() != 2 {
                return Err(arity());
            }
            let running = conn.state.scripts.running_function();
            if running.is_none() && conn.state.scripts.busy() {
                // A busy EVAL script: as any other command.
                return Err(CmdError::Raw(crate::script::BUSY.into()));
            }
            let (_, catalog) = catalog(conn).await?;
            let running = match running {
                Some((name, argv, ms)) => Reply::Map(vec![
                    (Reply::bulk(b"name"), Reply::Bulk(name.into_bytes())),
                    (
                        Reply::bulk(b"command"),
                        Reply::Array(argv.into_iter().map(Reply::Bulk).collect()),
                    ),
                    (Reply::bulk(b"duration_ms"), Reply::Int(ms as i64)),
                ]),
                None => Reply::Nil,
            };
            Ok(Reply::Map(vec![
                (Reply::bulk(b"running_script"), running),
                (
                    Reply::bulk(b"engines"),
                    Reply::Map(vec![(
                        Reply::bulk(b"LUA"),
                        Reply::Map(vec![
                            (
                                Reply::bulk(b"libraries_count"),
                                Reply::Int(catalog.libraries.len() as i64),
                            ),
                            (
                                Reply::bulk(b"functions_count"),
                                Reply::Int(catalog.functions.len() as i64),
                            ),
                        ]),
                    )]),
                ),
            ]))
        }
        "kill" => {
            if a.len() != 2 {
                return Err(arity());
            }
            crate::script::kill(conn)
        }
        "help" => Ok(Reply::Array(
            HELP.iter().map(|l| Reply::status(l)).collect(),
        )),
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "FUNCTION".into(),
            sub: text(a[1]),
        }),
    }
}

/// FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE].
async fn list(conn: &Conn, a: &[&[u8]]) -> CmdResult {
    let mut with_code = false;
    let mut pattern: Option<&[u8]> = None;
    let mut i = 2;
    while i < a.len() {
        if !with_code && is(a[i], "withcode") {
            with_code = true;
        } else if pattern.is_none() && is(a[i], "libraryname") {
            if i + 1 >= a.len() {
                return Err(CmdError::other("library name argument was not given"));
            }
            i += 1;
            pattern = Some(a[i]);
        } else {
            return Err(CmdError::other(format!(
                "Unknown argument {}",
                String::from_utf8_lossy(a[i])
            )));
        }
        i += 1;
    }
    let (_, catalog) = catalog(conn).await?;
    let mut out = Vec::new();
    for lib in catalog.libraries.values() {
        if let Some(p) = pattern {
            // Library names are matched ignoring case, as Redis does.
            if !keel_shards::glob::matches(
                &p.to_ascii_lowercase(),
                lib.name.to_ascii_lowercase().as_bytes(),
            ) {
                continue;
            }
        }
        let functions = lib
            .functions
            .iter()
            .map(|f| {
                Reply::Map(vec![
                    (Reply::bulk(b"name"), Reply::bulk(f.name.as_bytes())),
                    (
                        Reply::bulk(b"description"),
                        match &f.description {
                            Some(d) => Reply::bulk(d.as_bytes()),
                            None => Reply::Nil,
                        },
                    ),
                    (
                        Reply::bulk(b"flags"),
                        Reply::Set(
                            library::flag_names(&f.flags)
                                .into_iter()
                                .map(Reply::status)
                                .collect(),
                        ),
                    ),
                ])
            })
            .collect();
        let mut fields = vec![
            (
                Reply::bulk(b"library_name"),
                Reply::bulk(lib.name.as_bytes()),
            ),
            (Reply::bulk(b"engine"), Reply::bulk(b"LUA")),
            (Reply::bulk(b"functions"), Reply::Array(functions)),
        ];
        if with_code {
            fields.push((
                Reply::bulk(b"library_code"),
                Reply::bulk(lib.code.as_bytes()),
            ));
        }
        out.push(Reply::Map(fields));
    }
    Ok(Reply::Array(out))
}

const HELP: &[&str] = &[
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Load a library (its first line names it: #!lua name=<library>).",
    "DELETE <LIBRARY NAME>",
    "    Remove a library and its functions.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Show the libraries, their engine and functions, and with WITHCODE their code.",
    "STATS",
    "    Show the running function, if any, and the libraries and functions per engine.",
    "KILL",
    "    Stop the running function if it has not written.",
    "FLUSH [ASYNC|SYNC]",
    "    Remove every library.",
    "DUMP",
    "    A payload of every library, for FUNCTION RESTORE.",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Load the libraries of a payload: FLUSH removes the others first, APPEND (the default)",
    "    refuses a name already loaded, REPLACE replaces such libraries.",
    "HELP",
    "    Print this help.",
];
