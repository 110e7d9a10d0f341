//! Lua scripting: EVAL, EVALSHA, their read-only forms and SCRIPT.
//!
//! # Where a script runs
//! A script is one unit, like EXEC: no other client sees half of it.
//! - Declared keys all on **one shard**: the script runs on that shard's
//!   core, start to end, with no lock and no message beyond the one that
//!   carries it there (none when the shard is on the caller's core). This
//!   is the common case (rate limiters, locks, caches) and costs what a
//!   command costs.
//! - Keys on **several shards**, or **no declared keys**: the script runs
//!   on the caller's core as a transaction that first locks the shards of
//!   its keys (every shard when it declares none, as a script without KEYS
//!   may touch anything), in the global lock order.
//! - Inside **EXEC**, in the transaction EXEC holds.
//!
//! A script that reaches a shard it does not hold (an undeclared key, or
//! SCAN/KEYS/DBSIZE, which need every shard) before it has written is
//! stopped and run again holding every shard: its reads had no effect, so
//! nobody can tell. After a write it cannot restart, and the command is
//! refused with an error that says to declare the key: taking a lock
//! mid-script would break the lock order (deadlock). With one shard every
//! key is held.
//!
//! # What is recorded
//! The script's commands, one by one, as the effects they had (see
//! `call.rs`), grouped per shard into one unit: the log, the backups and
//! the merge see what the script did, never the script.
//!
//! # Limits
//! Past `busy-reply-threshold` ms other clients get -BUSY and SCRIPT KILL
//! may stop the script unless it wrote. Each core's Lua state is capped at
//! `lua-memory-limit` bytes. Clients whose connection lives on the busy
//! script's own core wait for it (a core runs one thing at a time).

pub mod cache;
pub mod call;
pub mod convert;
pub mod engine;
pub mod function;
pub mod library;
pub mod libs;

use std::sync::Arc;

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::is;
use crate::exec::local::LocalShards;
use crate::exec::router::serve_blocked;
use crate::resp::reply::Reply;
use crate::server::conn::Conn;
use cache::{Kill, Script};
use call::{Active, Home};
use engine::Target;
use library::Catalog;

const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

/// What a script run needs besides its home, owned so it can travel to
/// another core.
#[derive(Clone)]
struct Setting {
    /// The FCALL command line, for FUNCTION STATS (None for EVAL).
    command: Option<Arc<Vec<Vec<u8>>>>,
    db: usize,
    now_ms: u64,
    max_string: usize,
    read_only: bool,
    allow_oom: bool,
    /// The calling client, and whether its reads are remembered for
    /// client-side caching (as Redis remembers a script's reads for it).
    client: u64,
    track: bool,
    /// The caller's ACL user, when it may not run everything.
    acl: Option<crate::security::acl::paths::ScriptAcl>,
}

impl Setting {
    fn active(&self, home: Home) -> Active {
        Active {
            home,
            db: self.db,
            now_ms: self.now_ms,
            max_string: self.max_string,
            read_only: self.read_only,
            allow_oom: self.allow_oom,
            resp3: false,
            client: self.client,
            track: self.track,
            acl: self.acl.clone(),
        }
    }
}

/// The script an EVAL or EVALSHA names, compiled on this core.
fn script_of(conn: &Conn, evalsha: bool, body: &[u8]) -> Result<Arc<Script>, CmdError> {
    let scripts = &conn.state.scripts;
    if evalsha {
        let sha = String::from_utf8_lossy(body).to_ascii_lowercase();
        return scripts
            .get(&sha)
            .ok_or_else(|| CmdError::Raw(NOSCRIPT.into()));
    }
    let (script, stored) = scripts.prepare(body)?;
    if !stored {
        engine::compile(&script)?;
        scripts.insert(script.clone());
    }
    Ok(script)
}

/// What a run calls, owned so it can travel to another core.
#[derive(Clone)]
enum Callable {
    Script(Arc<Script>),
    Function {
        name: String,
        generation: u64,
        catalog: Arc<Catalog>,
    },
}

impl Callable {
    fn target(&self) -> Target<'_> {
        match self {
            Callable::Script(s) => Target::Script(s),
            Callable::Function {
                name,
                generation,
                catalog,
            } => Target::Function {
                name,
                generation: *generation,
                catalog,
            },
        }
    }
}

/// EVAL, EVALSHA, EVAL_RO, EVALSHA_RO.
pub async fn eval(conn: &mut Conn, name: &str, a: &[&[u8]], now: u64) -> CmdResult {
    let script = script_of(conn, name.starts_with("evalsha"), a[1])?;
    let flags = script.flags;
    invoke(
        conn,
        Callable::Script(script),
        flags,
        name.ends_with("_ro"),
        a,
        now,
    )
    .await
}

/// FCALL, FCALL_RO.
pub async fn fcall(conn: &mut Conn, name: &str, a: &[&[u8]], now: u64) -> CmdResult {
    let (generation, catalog) = function::catalog(conn).await?;
    let fname = String::from_utf8_lossy(a[1]).into_owned();
    let Some((lib, i)) = catalog.function(&fname) else {
        return Err(CmdError::other("Function not found"));
    };
    let flags = lib.functions[i].flags;
    if crate::cmd::numbers::int_arg(a[2]).is_err() {
        return Err(CmdError::other("Bad number of keys provided"));
    }
    let callable = Callable::Function {
        name: fname,
        generation,
        catalog,
    };
    invoke(conn, callable, flags, name.ends_with("_ro"), a, now).await
}

/// Runs a script or a function (`a` is the command: name, target,
/// numkeys, keys..., args...) where its keys live.
async fn invoke(
    conn: &mut Conn,
    callable: Callable,
    flags: cache::Flags,
    ro_command: bool,
    a: &[&[u8]],
    now: u64,
) -> CmdResult {
    if ro_command && flags.declared && !flags.no_writes {
        return Err(CmdError::other(
            "Can not execute a script with write flag using *_ro command.",
        ));
    }
    let script = callable;
    let numkeys = crate::cmd::numbers::int_arg(a[2])?;
    if numkeys < 0 {
        return Err(CmdError::other("Number of keys can't be negative"));
    }
    if numkeys as usize > a.len() - 3 {
        return Err(CmdError::other(
            "Number of keys can't be greater than number of args",
        ));
    }
    let split = 3 + numkeys as usize;
    let keys: Vec<Vec<u8>> = a[3..split].iter().map(|k| k.to_vec()).collect();
    let args: Vec<Vec<u8>> = a[split..].iter().map(|k| k.to_vec()).collect();
    let setting = Setting {
        command: matches!(script, Callable::Function { .. })
            .then(|| Arc::new(a.iter().map(|x| x.to_vec()).collect())),
        db: conn.db,
        now_ms: now,
        max_string: conn.max_string,
        read_only: ro_command || flags.no_writes,
        allow_oom: flags.allow_oom,
        client: conn.id(),
        track: conn.ctx(now).track,
        acl: crate::security::acl::paths::ScriptAcl::of(conn),
    };
    let router = conn.router.clone();

    if let Some(tx) = conn.tx {
        // Inside EXEC, which holds every shard for a script.
        let all: Vec<usize> = (0..router.shards).collect();
        let reply = run_in_tx(conn, tx, all, true, &script, &keys, &args, &setting);
        remember_keys(conn, tx, &keys, &setting).await?;
        return Ok(reply);
    }

    let mut shards: Vec<usize> = keys.iter().map(|k| router.shard_of(k)).collect();
    shards.sort_unstable();
    shards.dedup();
    if let [s] = shards[..] {
        let done = if router.executor_of(s) == router.me {
            router.local.wait_free(&[s]).await;
            run_on_shard(&router.local, s, &script, &keys, &args, &setting)
        } else {
            let (script, keys, args, setting) =
                (script.clone(), keys.clone(), args.clone(), setting.clone());
            router
                .on_local(s, None, move |ls| {
                    run_on_shard(ls, s, &script, &keys, &args, &setting)
                })
                .await?
        };
        if let Some(reply) = done {
            return Ok(reply);
        }
        // It reached past its shard before writing: run it holding all.
        shards.clear();
    }
    if !shards.is_empty() {
        if let Some(reply) =
            locked_run(conn, shards, false, &script, &keys, &args, &setting).await?
        {
            return Ok(reply);
        }
    }
    let all: Vec<usize> = (0..router.shards).collect();
    let reply = locked_run(conn, all, true, &script, &keys, &args, &setting).await?;
    Ok(reply
        .unwrap_or_else(|| Reply::Error("ERR script could not hold the shards it needs".into())))
}

/// Runs a script as a transaction holding `shards`; None when it must run
/// again holding every shard.
async fn locked_run(
    conn: &mut Conn,
    shards: Vec<usize>,
    all: bool,
    script: &Callable,
    keys: &[Vec<u8>],
    args: &[Vec<u8>],
    setting: &Setting,
) -> Result<Option<Reply>, CmdError> {
    let router = conn.router.clone();
    let tx = router.new_tx();
    router.begin(tx, &shards).await?;
    conn.tx = Some(tx);
    let reply = run_in_tx(conn, tx, shards.clone(), all, script, keys, args, setting);
    let escalate = call::take_escalation();
    if !escalate {
        remember_keys(conn, tx, keys, setting).await?;
    }
    conn.tx = None;
    router.end(tx, &shards);
    router.local.run_deferred();
    Ok((!escalate).then_some(reply))
}

/// Runs a script whole on shard `s` of this core: its writes form one
/// unit of records, numbered like a transaction's. None when it must run
/// again holding every shard.
fn run_on_shard(
    ls: &LocalShards,
    s: usize,
    script: &Callable,
    keys: &[Vec<u8>],
    args: &[Vec<u8>],
    setting: &Setting,
) -> Option<Reply> {
    ls.shard(s).unit_begin();
    note_function(script, setting);
    let reply = engine::run(script.target(), keys, args, setting.active(Home::Shard(s)));
    let escalate = call::take_escalation();
    if call::take_tracked_read() && !escalate {
        let mut shard = ls.shard(s);
        for k in keys {
            shard.tracking.remember(k, setting.client);
        }
    }
    let wrote = ls.shard(s).unit_wrote();
    let commit = match (wrote, engine::core()) {
        (true, Some(core)) => core.router.next_commit(),
        _ => 0,
    };
    ls.shard(s).unit_end(commit, &[s as u64]);
    serve_blocked(ls, s);
    (!escalate).then_some(reply)
}

/// After a script that read for a tracking client, under the transaction
/// `tx` that still holds its shards: its caller now tracks every declared
/// key.
async fn remember_keys(
    conn: &Conn,
    tx: u64,
    keys: &[Vec<u8>],
    setting: &Setting,
) -> Result<(), CmdError> {
    if !call::take_tracked_read() {
        return Ok(());
    }
    let client = setting.client;
    for k in keys {
        let key = k.clone();
        conn.router
            .on_shard(conn.router.shard_of(k), Some(tx), move |s| {
                s.tracking.remember(&key, client)
            })
            .await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_in_tx(
    conn: &mut Conn,
    tx: u64,
    shards: Vec<usize>,
    all: bool,
    script: &Callable,
    keys: &[Vec<u8>],
    args: &[Vec<u8>],
    setting: &Setting,
) -> Reply {
    let home = Home::Tx {
        tx,
        shards,
        all,
        conn: conn as *mut Conn,
    };
    note_function(script, setting);
    engine::run(script.target(), keys, args, setting.active(home))
}

/// Tells FUNCTION STATS which function runs on this core.
fn note_function(callable: &Callable, setting: &Setting) {
    if let (Callable::Function { name, .. }, Some(command), Some(core)) =
        (callable, &setting.command, engine::core())
    {
        core.state
            .scripts
            .function_started(core.router.me, name, command);
    }
}

/// SCRIPT LOAD | EXISTS | FLUSH | KILL | HELP.
pub fn script(conn: &Conn, a: &[&[u8]]) -> CmdResult {
    let scripts = &conn.state.scripts;
    let sub = String::from_utf8_lossy(a[1]).to_lowercase();
    let arity = || CmdError::Arity(format!("script|{sub}"));
    match sub.as_str() {
        "load" => {
            if a.len() != 3 {
                return Err(arity());
            }
            let script = script_of(conn, false, a[2])?;
            Ok(Reply::bulk(script.sha.as_bytes()))
        }
        "exists" => {
            if a.len() < 3 {
                return Err(arity());
            }
            Ok(Reply::Array(
                a[2..]
                    .iter()
                    .map(|sha| Reply::Int(scripts.exists(sha) as i64))
                    .collect(),
            ))
        }
        "flush" => {
            flush_mode(a, "SCRIPT FLUSH only support SYNC|ASYNC option", arity)?;
            scripts.flush();
            Ok(Reply::Ok)
        }
        "kill" => {
            if a.len() != 2 {
                return Err(arity());
            }
            kill(conn)
        }
        "help" => Ok(Reply::Array(
            [
                "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "EXISTS <sha1> [<sha1> ...]",
                "    Return information about the existence of the scripts in the script cache.",
                "FLUSH [ASYNC|SYNC]",
                "    Flush the Lua scripts cache.",
                "KILL",
                "    Kill the currently executing Lua script.",
                "LOAD <script>",
                "    Load a script into the scripts cache without executing it.",
                "HELP",
                "    Print this help.",
            ]
            .iter()
            .map(|l| Reply::status(l))
            .collect(),
        )),
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "SCRIPT".into(),
            sub: String::from_utf8_lossy(a[1]).into_owned(),
        }),
    }
}

/// The optional SYNC|ASYNC of SCRIPT FLUSH and FUNCTION FLUSH (both flush
/// at once: there is nothing large to free in the background).
pub(crate) fn flush_mode(
    a: &[&[u8]],
    bad_mode: &'static str,
    arity: impl Fn() -> CmdError,
) -> Result<(), CmdError> {
    match a.len() {
        2 => Ok(()),
        3 if is(a[2], "sync") || is(a[2], "async") => Ok(()),
        3 => Err(CmdError::other(bad_mode)),
        _ => Err(arity()),
    }
}

/// SCRIPT KILL and FUNCTION KILL: stops the busy script unless it wrote.
pub(crate) fn kill(conn: &Conn) -> CmdResult {
    match conn.state.scripts.kill() {
        Kill::NotBusy => Err(CmdError::Raw(
            "NOTBUSY No scripts in execution right now.".into(),
        )),
        Kill::Unkillable => Err(CmdError::Raw("UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.".into())),
        Kill::Killed => Ok(Reply::Ok),
    }
}

/// Whether a command may run while a script is busy (everything else gets
/// -BUSY).
pub fn allowed_while_busy(name: &str, a: &[&[u8]]) -> bool {
    match name {
        "auth" | "hello" | "quit" | "reset" | "shutdown" => true,
        "script" => a.get(1).is_some_and(|s| is(s, "kill")),
        "function" => a.get(1).is_some_and(|s| is(s, "kill") || is(s, "stats")),
        _ => false,
    }
}

pub const BUSY: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
