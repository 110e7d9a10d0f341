//! `redis.call` and `redis.pcall`: a script's commands, run where the
//! script's keys live.
//!
//! A script runs in one of two homes (chosen by `mod.rs`):
//! - **one shard**, on that shard's core, synchronously: its commands apply
//!   to the shard directly, with no lock and no message. Every key a
//!   command names must live on that shard;
//! - **a transaction** holding the shards of its declared keys (or every
//!   shard): commands on this core's shards apply directly, the others go
//!   to their cores as the transaction's parts, waited for with
//!   `LocalShards::block_on`. Keys must live on the locked shards.
//!
//! A key on a shard the script does not hold is refused (it would need a
//! lock taken in the middle of the script, out of the global lock order).
//! Commands are recorded one by one, as their effects, in the unit the
//! script's writes form on each shard: a backup applies what the script
//! did and never runs the script.

use std::cell::RefCell;

use std::ffi::c_int;

use mlua::{ffi, Lua, Table, Value};

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::{strings, Ctx};
use crate::exec::command::{self, flags, Kind, Spec, Split};
use crate::exec::local::TxId;
use crate::exec::router::{apply, Mode};
use crate::resp::encode::{double_text, DOUBLE_MAX};
use crate::resp::reply::Reply;
use crate::script::convert::number_arg;
use crate::script::engine::{self, core};
use crate::server::conn::Conn;

/// Where the running script's commands go.
pub enum Home {
    /// One shard of this core, touched directly.
    Shard(usize),
    /// The shards a transaction holds. `conn` is the calling connection
    /// (the script runs in its task), for keyspace-wide commands when
    /// `all` shards are held.
    Tx {
        tx: TxId,
        shards: Vec<usize>,
        all: bool,
        conn: *mut Conn,
    },
}

/// The running script's context.
pub struct Active {
    pub home: Home,
    pub db: usize,
    /// The time the script started: it stays fixed for the whole script,
    /// so a key cannot expire halfway through it.
    pub now_ms: u64,
    pub max_string: usize,
    /// EVAL_RO, or `flags=no-writes`.
    pub read_only: bool,
    /// `flags=allow-oom`: writes are not refused for memory.
    pub allow_oom: bool,
    /// `redis.setresp(3)` was called.
    pub resp3: bool,
    /// The calling client (for NOLOOP) and whether its reads are
    /// remembered for client-side caching.
    pub client: u64,
    pub track: bool,
    /// The caller's ACL user (None: it may run everything): a script's
    /// commands run with its caller's permissions.
    pub acl: Option<crate::security::acl::paths::ScriptAcl>,
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
    /// The running script reached past the shards it holds before writing
    /// anything: it is stopped and run again holding every shard.
    static ESCALATE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The running script called a read-only command for a tracking client.
    static TRACKED_READ: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the script that just ran read anything for a tracking client:
/// then its caller is told of changes to every key the script declared,
/// as Redis remembers a script's KEYS, not the keys its commands named.
pub fn take_tracked_read() -> bool {
    TRACKED_READ.with(|t| t.replace(false))
}

/// Whether the script that just ran must run again holding every shard.
pub fn take_escalation() -> bool {
    ESCALATE.with(|e| e.replace(false))
}

/// A command reaches a shard the script does not hold. Before any write
/// the script stops and runs again holding every shard (its reads had no
/// effect); after a write it cannot, and the command is refused.
fn beyond_held(what: &str) -> CmdError {
    if engine::wrote() {
        return CmdError::Raw(format!(
            "ERR Script attempted to access {what} outside the shards it holds after it wrote: declare every key the script uses in KEYS (or call it with numkeys 0 to hold every shard)"
        ));
    }
    ESCALATE.with(|e| e.set(true));
    CmdError::Raw("ERR keel: the script is restarted holding every shard".into())
}

/// Installs the context of the script about to run.
pub(super) fn enter(active: Active) -> bool {
    let resp3 = active.resp3;
    ACTIVE.with(|a| *a.borrow_mut() = Some(active));
    resp3
}

/// Whether the running script is in RESP3 mode (`redis.setresp(3)`).
pub(super) fn resp3() -> bool {
    ACTIVE.with(|a| a.borrow().as_ref().is_some_and(|a| a.resp3))
}

/// Removes it; whether the script ended in RESP3 mode.
pub(super) fn leave() -> Option<bool> {
    ACTIVE.with(|a| a.borrow_mut().take().map(|a| a.resp3))
}

/// Connection-kind commands a script may call. The keyspace-wide ones need
/// every shard held; PING, ECHO, TIME and SELECT run anywhere.
const SCRIPT_CONN_OK: &[&str] = &[
    "ping",
    "echo",
    "time",
    "select",
    "dbsize",
    "keys",
    "scan",
    "randomkey",
    "flushdb",
    "flushall",
    "publish",
    "spublish",
];

fn err(text: &str) -> CmdError {
    CmdError::Raw(text.into())
}

/// The Rust side of the `redis` library, as `sandbox.lua` expects it.
pub fn raw_table(lua: &Lua) -> mlua::Result<Table> {
    let raw = lua.create_table()?;
    raw.set(
        "install",
        lua.create_function(|lua, redis: Table| install_callers(lua, &redis))?,
    )?;
    raw.set(
        "sha1hex",
        lua.create_function(|_, s: mlua::LuaString| {
            Ok(crate::script::cache::sha1hex(&s.as_bytes()))
        })?,
    )?;
    raw.set(
        "log",
        lua.create_function(|_, (level, text): (i64, String)| {
            match level {
                0 | 1 => tracing::debug!(target: "script", "{text}"),
                2 => tracing::info!(target: "script", "{text}"),
                _ => tracing::warn!(target: "script", "{text}"),
            }
            Ok(())
        })?,
    )?;
    raw.set(
        "setresp",
        lua.create_function(|_, v: i64| {
            ACTIVE.with(|a| {
                if let Some(a) = a.borrow_mut().as_mut() {
                    a.resp3 = v == 3;
                }
            });
            Ok(())
        })?,
    )?;
    raw.set(
        "command_exists",
        lua.create_function(|_, name: Value| {
            Ok(match name {
                Value::String(s) => command::lookup(&s.as_bytes()).is_some(),
                _ => false,
            })
        })?,
    )?;
    raw.set(
        "acl_check",
        lua.create_function(|_, args: mlua::Variadic<Value>| {
            // redis.acl_check_cmd: whether the caller's user may run it.
            let owned: Vec<Vec<u8>> = args
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.as_bytes().to_vec(),
                    Value::Integer(i) => i.to_string().into_bytes(),
                    Value::Number(n) => number_arg(*n).into_bytes(),
                    _ => Vec::new(),
                })
                .collect();
            let argv: Vec<&[u8]> = owned.iter().map(|a| a.as_slice()).collect();
            let Some(spec) = argv.first().and_then(|n| command::lookup(n)) else {
                return Ok(None);
            };
            Ok(Some(ACTIVE.with(|a| match a.borrow().as_ref() {
                Some(Active { acl: Some(acl), .. }) => acl.user.check(spec, &argv).is_ok(),
                _ => true,
            })))
        })?,
    )?;
    raw.set("version", crate::REDIS_VERSION)?;
    let num = crate::REDIS_VERSION
        .split('.')
        .fold(0i64, |n, part| n * 256 + part.parse::<i64>().unwrap_or(0));
    raw.set("version_num", num)?;
    Ok(raw)
}

/// `redis.call` and `redis.pcall` as Lua sees them: plain C functions over
/// the Lua stack. Lua never tail-calls a C function, so an error's
/// position is the script's own line; and they read arguments and push the
/// reply with Lua's C API directly, with no protected call per value.
pub fn install_callers(lua: &Lua, redis: &Table) -> mlua::Result<()> {
    // SAFETY: both are C functions following the Lua C API (see `call_c`).
    let (call, pcall) = unsafe {
        (
            lua.create_c_function(redis_call)?,
            lua.create_c_function(redis_pcall)?,
        )
    };
    redis.raw_set("call", call)?;
    redis.raw_set("pcall", pcall)
}

unsafe extern "C-unwind" fn redis_call(state: *mut ffi::lua_State) -> c_int {
    call_c(state, true)
}

unsafe extern "C-unwind" fn redis_pcall(state: *mut ffi::lua_State) -> c_int {
    call_c(state, false)
}

thread_local! {
    /// The reply of the command being handed to Lua, and whether it is
    /// raised: kept here, not in `call_c`'s frame, so that a Lua error
    /// (out of memory while pushing it) jumping out of the frame skips no
    /// destructor.
    static REPLY: RefCell<Option<(Reply, bool, bool)>> = const { RefCell::new(None) };
}

/// Runs the command, then pushes its reply; raises it when it is an error
/// of `redis.call` (or an argument error of either).
unsafe fn call_c(state: *mut ffi::lua_State, raise: bool) -> c_int {
    run_command(state, raise);
    // The arguments are spent: dropping them leaves the reply room on the
    // stack even after `redis.call(cmd, unpack(t))` filled it.
    ffi::lua_settop(state, 0);
    let stored = REPLY.with(|r| r.as_ptr());
    // SAFETY: nothing else touches REPLY until this call returns.
    let (failed, pushed) = match &*stored {
        Some((reply, resp3, failed)) => (*failed, push_reply(state, reply, *resp3, 0)),
        None => (false, false),
    };
    if !pushed {
        ffi::lua_pushnil(state);
    }
    REPLY.with(|r| r.borrow_mut().take());
    if failed {
        ffi::lua_error(state);
    }
    1
}

/// Reads the arguments off the stack, runs the command and stores its
/// reply. Touches no Lua function that can raise an error.
unsafe fn run_command(state: *mut ffi::lua_State, raise: bool) {
    let store = |reply: Reply, failed: bool| {
        let resp3 = resp3();
        REPLY.with(|r| *r.borrow_mut() = Some((reply, resp3, failed)));
    };
    let n = ffi::lua_gettop(state);
    if n <= 0 {
        return store(
            Reply::Error("ERR Please specify at least one argument for this redis lib call".into()),
            true,
        );
    }
    // Numbers become text first (owned), then every argument is borrowed.
    let mut numbers: Vec<Option<String>> = Vec::with_capacity(n as usize);
    for i in 1..=n {
        match ffi::lua_type(state, i) {
            ffi::LUA_TSTRING => numbers.push(None),
            ffi::LUA_TNUMBER => numbers.push(Some(number_arg(ffi::lua_tonumber(state, i)))),
            _ => {
                return store(
                    Reply::Error(
                        "ERR Lua redis lib command arguments must be strings or integers".into(),
                    ),
                    true,
                )
            }
        }
    }
    let mut argv: Vec<&[u8]> = Vec::with_capacity(n as usize);
    for (i, number) in numbers.iter().enumerate() {
        match number {
            Some(text) => argv.push(text.as_bytes()),
            None => {
                let mut len = 0usize;
                // A string value: no conversion, no allocation, no error.
                let p = ffi::lua_tolstring(state, i as c_int + 1, &mut len);
                // SAFETY: the string stays on the stack (anchored) for the
                // whole call.
                argv.push(if p.is_null() {
                    &[]
                } else {
                    std::slice::from_raw_parts(p.cast::<u8>(), len)
                });
            }
        }
    }
    let result = ACTIVE.with(|a| match a.borrow_mut().as_mut() {
        Some(active) => dispatch(active, &argv),
        None => Err(err("ERR redis.call used outside a running script")),
    });
    match result {
        Ok(r @ (Reply::Error(_) | Reply::ErrorBytes(_))) => store(r, raise),
        Ok(r) => store(r, false),
        Err(e) => store(Reply::Error(e.to_string().into()), raise),
    }
}

/// Deepest reply pushed into Lua (deeper parts become nil).
const MAX_PUSH_DEPTH: usize = 128;

/// Pushes `r` as the Lua value `redis.call` returns (see `convert.rs` for
/// the rules); false if the stack could not grow. Holds only borrows.
unsafe fn push_reply(state: *mut ffi::lua_State, r: &Reply, resp3: bool, depth: usize) -> bool {
    if depth > MAX_PUSH_DEPTH || ffi::lua_checkstack(state, 4) == 0 {
        return false;
    }
    let push_bytes = |b: &[u8]| {
        ffi::lua_pushlstring(state, b.as_ptr().cast(), b.len());
    };
    let field = |name: &std::ffi::CStr, b: &[u8]| {
        ffi::lua_createtable(state, 0, 1);
        ffi::lua_pushlstring(state, b.as_ptr().cast(), b.len());
        ffi::lua_setfield(state, -2, name.as_ptr());
    };
    let array = |items: &mut dyn Iterator<Item = &Reply>, n: usize| {
        ffi::lua_createtable(state, n.min(i32::MAX as usize) as c_int, 0);
        for (i, item) in items.enumerate() {
            if !push_reply(state, item, resp3, depth + 1) {
                ffi::lua_pushnil(state);
            }
            ffi::lua_rawseti(state, -2, (i + 1) as ffi::lua_Integer);
        }
    };
    match r {
        Reply::KeyedArrays(pairs) => {
            // XREAD's shape: a map in RESP3, pairs of [key, value] in RESP2.
            let shaped = if resp3 {
                Reply::Map(pairs.clone())
            } else {
                Reply::Array(
                    pairs
                        .iter()
                        .map(|(k, v)| Reply::Array(vec![k.clone(), v.clone()]))
                        .collect(),
                )
            };
            return push_reply(state, &shaped, resp3, depth);
        }
        Reply::Ok => field(c"ok", b"OK"),
        Reply::Status(s) => field(c"ok", s.as_bytes()),
        Reply::StatusBytes(s) => field(c"ok", s),
        Reply::Error(e) => field(c"err", e.as_bytes()),
        Reply::ErrorBytes(e) => field(c"err", e),
        Reply::Int(i) => ffi::lua_pushnumber(state, *i as f64),
        Reply::Bulk(b) => push_bytes(b),
        Reply::Nil | Reply::NilArray if resp3 => ffi::lua_pushnil(state),
        Reply::Nil | Reply::NilArray => ffi::lua_pushboolean(state, 0),
        Reply::Array(items) | Reply::Push(items) => array(&mut items.iter(), items.len()),
        Reply::Set(items) if !resp3 => array(&mut items.iter(), items.len()),
        Reply::Set(items) => {
            ffi::lua_createtable(state, 0, 1);
            ffi::lua_createtable(state, 0, items.len().min(i32::MAX as usize) as c_int);
            for item in items {
                if push_reply(state, item, resp3, depth + 1) {
                    ffi::lua_pushboolean(state, 1);
                    ffi::lua_rawset(state, -3);
                }
            }
            ffi::lua_setfield(state, -2, c"set".as_ptr());
        }
        Reply::Map(pairs) | Reply::Pairs(pairs) if !resp3 => {
            array(&mut pairs.iter().flat_map(|(k, v)| [k, v]), pairs.len() * 2)
        }
        Reply::Map(pairs) => {
            ffi::lua_createtable(state, 0, 1);
            ffi::lua_createtable(state, 0, pairs.len().min(i32::MAX as usize) as c_int);
            for (k, v) in pairs {
                if push_reply(state, k, resp3, depth + 1) {
                    if !push_reply(state, v, resp3, depth + 1) {
                        ffi::lua_pushnil(state);
                    }
                    ffi::lua_rawset(state, -3);
                }
            }
            ffi::lua_setfield(state, -2, c"map".as_ptr());
        }
        Reply::Pairs(pairs) => {
            ffi::lua_createtable(state, pairs.len().min(i32::MAX as usize) as c_int, 0);
            for (i, (k, v)) in pairs.iter().enumerate() {
                ffi::lua_createtable(state, 2, 0);
                for (j, x) in [k, v].into_iter().enumerate() {
                    if !push_reply(state, x, resp3, depth + 2) {
                        ffi::lua_pushnil(state);
                    }
                    ffi::lua_rawseti(state, -2, (j + 1) as ffi::lua_Integer);
                }
                ffi::lua_rawseti(state, -2, (i + 1) as ffi::lua_Integer);
            }
        }
        Reply::Double(d) if resp3 => {
            ffi::lua_createtable(state, 0, 1);
            ffi::lua_pushnumber(state, *d);
            ffi::lua_setfield(state, -2, c"double".as_ptr());
        }
        Reply::Double(d) => {
            let mut buf = [0u8; DOUBLE_MAX];
            push_bytes(double_text(*d, &mut buf));
        }
        Reply::DoubleText(t) if resp3 => {
            let d = std::str::from_utf8(t)
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .unwrap_or(0.0);
            ffi::lua_createtable(state, 0, 1);
            ffi::lua_pushnumber(state, d);
            ffi::lua_setfield(state, -2, c"double".as_ptr());
        }
        Reply::DoubleText(t) => push_bytes(t),
        Reply::Bool(b) if resp3 => ffi::lua_pushboolean(state, *b as c_int),
        Reply::Bool(b) => ffi::lua_pushnumber(state, *b as i64 as f64),
        Reply::Verbatim(s) if resp3 => {
            ffi::lua_createtable(state, 0, 1);
            field(c"string", s.as_bytes());
            ffi::lua_pushlstring(state, b"txt".as_ptr().cast(), 3);
            ffi::lua_setfield(state, -2, c"format".as_ptr());
            ffi::lua_setfield(state, -2, c"verbatim_string".as_ptr());
        }
        Reply::Verbatim(s) => push_bytes(s.as_bytes()),
    }
    true
}

/// Checks and runs one command of the script.
fn dispatch(active: &mut Active, argv: &[&[u8]]) -> CmdResult {
    if ESCALATE.with(|e| e.get()) {
        // Restarting: nothing more may run, even after a pcall caught the
        // first refusal (the run is thrown away).
        return Err(CmdError::Raw(
            "ERR keel: the script is restarted holding every shard".into(),
        ));
    }
    let Some(spec) = command::lookup(argv[0]) else {
        return Err(err("ERR Unknown Redis command called from script"));
    };
    if !spec.arity_ok(argv.len()) {
        return Err(err(
            "ERR Wrong number of args calling Redis command from script",
        ));
    }
    if let Some(acl) = &active.acl {
        acl.check(spec, argv)?;
    }
    let allowed = match spec.kind {
        Kind::Keyed(..) => true,
        Kind::Conn => SCRIPT_CONN_OK.contains(&spec.name),
    };
    if !allowed {
        return Err(err("ERR This Redis command is not allowed from script"));
    }
    let writes = spec.has(flags::WRITE);
    if writes && active.read_only {
        return Err(err(
            "ERR Write commands are not allowed from read-only scripts.",
        ));
    }
    // Monitors see a script's commands after the script, as from "lua".
    if crate::server::introspect::monitor::active() && !spec.has(flags::ADMIN) {
        crate::server::introspect::monitor::feed(active.db, "lua", argv);
    }
    let ctx = Ctx {
        db: active.db,
        now_ms: active.now_ms,
        max_string: active.max_string,
        no_touch: false,
        client: active.client,
        // (the script's declared keys are remembered instead, see
        // `take_tracked_read`)
        track: false,
    };
    if active.track && spec.has(flags::READONLY) {
        TRACKED_READ.with(|t| t.set(true));
    }
    let mut mode = Mode::of(spec);
    if active.allow_oom {
        mode.deny_oom = false;
    }
    // streams: a script cannot block (Redis refuses rather than ignore it).
    if crate::exec::blocking::is_stream_block(spec.name, argv) {
        return Err(CmdError::other(format!(
            "{} command is not allowed with BLOCK option from scripts",
            String::from_utf8_lossy(argv[0])
        )));
    }
    let started = std::time::Instant::now();
    let r = match spec.kind {
        Kind::Keyed(f, split) => keyed(active, spec, f, split, mode, ctx, argv),
        Kind::Conn => conn_command(active, spec, argv),
    };
    // Noted after the command: one refused for reaching past the held
    // shards wrote nothing, and the script may still restart holding
    // every shard (a SORT whose patterns need them, say).
    if writes {
        engine::note_write();
    }
    // A script's commands count in INFO commandstats and errorstats, as
    // Redis counts them.
    if let Some(core) = core() {
        let mut stats = core.router.local.stats.borrow_mut();
        stats.total_commands += 1;
        let c = &mut stats.by_command[command::index_of(spec)];
        c.calls += 1;
        c.usec += started.elapsed().as_micros() as u64;
        if let Err(e) = &r {
            c.failed += 1;
            stats.note_error(format!("-{e}").as_bytes());
        }
    }
    r
}

fn keyed(
    active: &Active,
    spec: &'static Spec,
    f: command::KeyedFn,
    split: Split,
    mode: Mode,
    ctx: Ctx,
    argv: &[&[u8]],
) -> CmdResult {
    let core = core().ok_or_else(|| err("ERR no script engine on this thread"))?;
    let router = &core.router;
    // (the router's view: SORT's patterns may need every shard)
    let shards: Vec<usize> = router.shards_of(spec, argv);
    match &active.home {
        Home::Shard(s) => {
            if shards.iter().any(|x| x != s) {
                return Err(beyond_held("a key"));
            }
            if split == Split::AllOk || split == Split::MsetNx {
                strings::check_pairs(argv)?;
            }
            let mut shard = router.local.shard(*s);
            apply(f, mode, &mut shard, &ctx, argv)
        }
        Home::Tx {
            tx,
            shards: held,
            all,
            ..
        } => {
            if !*all && shards.iter().any(|x| !held.contains(x)) {
                return Err(beyond_held("a key"));
            }
            router
                .local
                .block_on(router.run(spec, f, split, ctx, argv, Some(*tx)))
        }
    }
}

fn conn_command(active: &mut Active, spec: &'static Spec, argv: &[&[u8]]) -> CmdResult {
    match spec.name {
        "ping" if argv.len() == 1 => return Ok(Reply::status("PONG")),
        "ping" if argv.len() == 2 => return Ok(Reply::bulk(argv[1])),
        "ping" => return Err(CmdError::Arity("ping".into())),
        "echo" => return Ok(Reply::bulk(argv[1])),
        "time" => {
            let us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0);
            return Ok(Reply::bulks([
                (us / 1_000_000).to_string(),
                (us % 1_000_000).to_string(),
            ]));
        }
        "select" => {
            let n = crate::cmd::numbers::int_arg(argv[1])?;
            if !(0..keel_shards::DATABASES as i64).contains(&n) {
                return Err(CmdError::DbIndex);
            }
            active.db = n as usize;
            return Ok(Reply::Ok);
        }
        _ => {}
    }
    let Home::Tx {
        all: true, conn, ..
    } = &active.home
    else {
        return Err(beyond_held(&format!("'{}' (every shard)", spec.name)));
    };
    let core = core().ok_or_else(|| err("ERR no script engine on this thread"))?;
    // SAFETY: `conn` is the connection whose task runs this script (see
    // `mod.rs`): it outlives the script, and that task does not touch it
    // until the script returns.
    let conn = unsafe { &mut **conn };
    let saved_db = conn.db;
    conn.db = active.db;
    let now = active.now_ms;
    let r = core
        .router
        .local
        .block_on(Box::pin(crate::server::commands::run(
            conn, spec, argv, now,
        )));
    conn.db = saved_db;
    r.0
}
