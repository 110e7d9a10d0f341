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

use mlua::{Lua, MultiValue, Table, Value};

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::{strings, Ctx};
use crate::exec::command::{self, flags, keys_of, Kind, Spec, Split};
use crate::exec::local::TxId;
use crate::exec::router::{apply, Mode};
use crate::resp::reply::Reply;
use crate::script::convert::{error_table, number_arg, to_lua};
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
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
    /// The running script reached past the shards it holds before writing
    /// anything: it is stopped and run again holding every shard.
    static ESCALATE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
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
    raw.set("version", crate::REDIS_VERSION)?;
    let num = crate::REDIS_VERSION
        .split('.')
        .fold(0i64, |n, part| n * 256 + part.parse::<i64>().unwrap_or(0));
    raw.set("version_num", num)?;
    Ok(raw)
}

/// Registry names of the Rust halves of `redis.call` and `redis.pcall`.
const CALL_KEY: &std::ffi::CStr = c"keel.call";
const PCALL_KEY: &std::ffi::CStr = c"keel.pcall";

/// `redis.call` and `redis.pcall` as Lua sees them: C functions (which Lua
/// never tail-calls, so an error's position is the script's own line) that
/// run the Rust half and raise its error table when it says so.
pub fn install_callers(lua: &Lua, redis: &Table) -> mlua::Result<()> {
    lua.set_named_registry_value(
        "keel.call",
        lua.create_function(|lua, args| command(lua, args, true))?,
    )?;
    lua.set_named_registry_value(
        "keel.pcall",
        lua.create_function(|lua, args| command(lua, args, false))?,
    )?;
    // SAFETY: both are plain C functions over the Lua stack (see below).
    let (call, pcall) = unsafe {
        (
            lua.create_c_function(redis_call)?,
            lua.create_c_function(redis_pcall)?,
        )
    };
    redis.raw_set("call", call)?;
    redis.raw_set("pcall", pcall)
}

unsafe extern "C-unwind" fn redis_call(state: *mut mlua::ffi::lua_State) -> std::ffi::c_int {
    forward(state, CALL_KEY)
}

unsafe extern "C-unwind" fn redis_pcall(state: *mut mlua::ffi::lua_State) -> std::ffi::c_int {
    forward(state, PCALL_KEY)
}

/// Calls the Rust half stored under `key` with this call's arguments; it
/// returns (value, raise). Holds no Rust value that needs dropping, so the
/// `lua_error` jump out of it skips nothing.
unsafe fn forward(state: *mut mlua::ffi::lua_State, key: &std::ffi::CStr) -> std::ffi::c_int {
    use mlua::ffi;
    let n = ffi::lua_gettop(state);
    ffi::lua_getfield(state, ffi::LUA_REGISTRYINDEX, key.as_ptr());
    ffi::lua_insert(state, 1);
    ffi::lua_call(state, n, 2);
    if ffi::lua_toboolean(state, -1) != 0 {
        ffi::lua_pop(state, 1);
        ffi::lua_error(state);
    }
    ffi::lua_pop(state, 1);
    1
}

/// `redis.call` (`raise`) or `redis.pcall`: returns the reply as a Lua
/// value, and whether the Lua side must raise it as an error.
fn command(lua: &Lua, args: MultiValue, raise: bool) -> mlua::Result<(Value, bool)> {
    let failed = |text: &str| -> mlua::Result<(Value, bool)> {
        Ok((error_table(lua, text.as_bytes())?, true))
    };
    if args.is_empty() {
        return failed("ERR Please specify at least one argument for this redis lib call");
    }
    let mut owned: Vec<Vec<u8>> = Vec::with_capacity(args.len());
    for v in args.iter() {
        match v {
            Value::String(s) => owned.push(s.as_bytes().to_vec()),
            Value::Number(n) => owned.push(number_arg(*n).into_bytes()),
            Value::Integer(i) => owned.push(i.to_string().into_bytes()),
            _ => return failed("ERR Lua redis lib command arguments must be strings or integers"),
        }
    }
    let argv: Vec<&[u8]> = owned.iter().map(|a| &a[..]).collect();
    let (result, resp3) = ACTIVE.with(|a| match a.borrow_mut().as_mut() {
        Some(active) => (dispatch(active, &argv), active.resp3),
        None => (
            Err(err("ERR redis.call used outside a running script")),
            false,
        ),
    });
    match result {
        Ok(Reply::Error(e)) => Ok((error_table(lua, e.as_bytes())?, raise)),
        Ok(Reply::ErrorBytes(e)) => Ok((error_table(lua, &e)?, raise)),
        Ok(r) => Ok((to_lua(lua, r, resp3)?, false)),
        Err(e) => Ok((error_table(lua, e.to_string().as_bytes())?, raise)),
    }
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
    let allowed = match spec.kind {
        Kind::Keyed(..) => true,
        Kind::Conn => SCRIPT_CONN_OK.contains(&spec.name),
    };
    if !allowed {
        return Err(err("ERR This Redis command is not allowed from script"));
    }
    if spec.has(flags::WRITE) {
        if active.read_only {
            return Err(err(
                "ERR Write commands are not allowed from read-only scripts.",
            ));
        }
        engine::note_write();
    }
    let ctx = Ctx {
        db: active.db,
        now_ms: active.now_ms,
        max_string: active.max_string,
    };
    let mut mode = Mode::of(spec);
    if active.allow_oom {
        mode.deny_oom = false;
    }
    match spec.kind {
        Kind::Keyed(f, split) => keyed(active, spec, f, split, mode, ctx, argv),
        Kind::Conn => conn_command(active, spec, argv),
    }
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
    let shards: Vec<usize> = keys_of(spec, argv)
        .iter()
        .map(|k| router.shard_of(k))
        .collect();
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
