//! One Lua state per core: built once with the sandbox, holding every
//! script this core has compiled, and running one script at a time.
//!
//! A script's function is compiled with the protected globals table as its
//! environment (`sandbox.lua`): it cannot create globals, reach files or
//! processes, or change the libraries the next script sees. KEYS and ARGV
//! are set before each run. A hook every few thousand instructions checks
//! the time limit (after which other clients get -BUSY) and SCRIPT KILL.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

use crate::cmd::error::CmdError;
use crate::exec::router::Router;
use crate::resp::reply::Reply;
use crate::script::cache::Script;
use crate::script::call::{self, Active};
use crate::script::convert::{one_line, reply_at, Probes, REPLY_STACK};
use crate::script::library::{flags_of, Catalog, FunctionInfo};
use crate::server::state::ServerState;

/// Instructions between two checks of the time limit and SCRIPT KILL.
const HOOK_EVERY: u32 = 10_000;

struct Engine {
    lua: Lua,
    run: Function,
    env: Table,
    compiled: HashMap<String, Function>,
    generation: u64,
    memory_limit: u64,
    /// `load_library(body)` and `run_function(f, keys, args)` of `sandbox.lua`.
    load_library: Function,
    run_function: Function,
    /// The registered functions of the libraries of registry generation
    /// `fn_generation`, by name.
    functions: HashMap<String, Function>,
    fn_generation: u64,
    /// Field names a returned table is probed for (`{err=}`, `{ok=}`...).
    probes: Probes,
}

/// What a run calls: an EVAL script or a library's function.
pub enum Target<'a> {
    Script(&'a Script),
    Function {
        name: &'a str,
        generation: u64,
        catalog: &'a Catalog,
    },
}

/// How long FUNCTION LOAD lets a library's code run, as Redis.
const LOAD_TIMEOUT_MS: u128 = 500;

/// This core's server-wide handles, set when the executor starts.
pub struct Core {
    pub router: Rc<Router>,
    pub state: Arc<ServerState>,
}

/// The running script's progress, read by the hook.
#[derive(Default)]
struct Progress {
    started: Cell<Option<Instant>>,
    busy: Cell<bool>,
    wrote: Cell<bool>,
    killed: Cell<bool>,
}

thread_local! {
    static CORE: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
    static PROGRESS: Progress = Progress::default();
    /// While a library's code runs for FUNCTION LOAD: when it started.
    static LOADING: Cell<Option<Instant>> = const { Cell::new(None) };
    static LOAD_TIMED_OUT: Cell<bool> = const { Cell::new(false) };
    static REBUILD: Cell<bool> = const { Cell::new(false) };
}

/// Makes this thread an executor that can run scripts.
pub fn install(router: Rc<Router>, state: Arc<ServerState>) {
    CORE.with(|c| *c.borrow_mut() = Some(Rc::new(Core { router, state })));
}

/// This core's handles (None outside an executor thread).
pub fn core() -> Option<Rc<Core>> {
    CORE.with(|c| c.borrow().clone())
}

/// The running script wrote: SCRIPT KILL may no longer stop it.
pub fn note_write() {
    PROGRESS.with(|p| p.wrote.set(true));
}

/// Whether the running script has run a write command.
pub fn wrote() -> bool {
    PROGRESS.with(|p| p.wrote.get())
}

fn lua_error(e: mlua::Error) -> CmdError {
    CmdError::other(format!("internal error in the script engine: {e}"))
}

impl Engine {
    fn new(core: &Core) -> mlua::Result<Engine> {
        // SAFETY: the debug library is loaded only for `sandbox.lua`, which
        // keeps `debug.getinfo` for its error handler and removes `debug`
        // from the globals before any script runs.
        let lua = unsafe {
            Lua::unsafe_new_with(
                StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::DEBUG,
                LuaOptions::default(),
            )
        };
        crate::script::libs::open(&lua)?;
        let raw = call::raw_table(&lua)?;
        let (run, env, load_library, run_function): (Function, Table, Function, Function) = lua
            .load(include_str!("sandbox.lua"))
            .set_name("=keel")
            .call(raw)?;
        let memory_limit = core.state.scripts.memory_limit.load(Ordering::Relaxed);
        lua.set_memory_limit(memory_limit as usize)?;
        install_hook(&lua, core.state.clone(), core.router.me, false)?;
        let probes = Probes::new(&lua)?;
        Ok(Engine {
            lua,
            run,
            env,
            compiled: HashMap::new(),
            generation: core.state.scripts.generation(),
            memory_limit,
            load_library,
            run_function,
            functions: HashMap::new(),
            fn_generation: u64::MAX,
            probes,
        })
    }

    fn function(&mut self, script: &Script) -> Result<Function, CmdError> {
        if let Some(f) = self.compiled.get(&script.sha) {
            return Ok(f.clone());
        }
        let f = self
            .lua
            .load(script.source.as_bytes())
            .set_name("@user_script")
            .set_environment(self.env.clone())
            .into_function()
            .map_err(|e| {
                let text = match &e {
                    mlua::Error::SyntaxError { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                CmdError::other(format!(
                    "Error compiling script (new function): {}",
                    one_line(text.as_bytes())
                ))
            })?;
        self.compiled.insert(script.sha.clone(), f.clone());
        Ok(f)
    }
}

/// Installs the hook every `HOOK_EVERY` instructions, and on every line
/// too once a script is killed: the kill error is then raised again on the
/// next line, so a `pcall` loop cannot swallow it.
fn install_hook(
    lua: &Lua,
    state: Arc<ServerState>,
    me: usize,
    every_line: bool,
) -> mlua::Result<()> {
    let mut triggers = HookTriggers::new().every_nth_instruction(HOOK_EVERY);
    if every_line {
        triggers = triggers.every_line();
    }
    lua.set_global_hook(triggers, move |lua, _| check_limits(lua, &state, me))
}

/// The hook: marks the script busy past the threshold, stops it on
/// SCRIPT KILL.
fn check_limits(lua: &Lua, state: &Arc<ServerState>, me: usize) -> mlua::Result<VmState> {
    if let Some(t0) = LOADING.with(|l| l.get()) {
        if t0.elapsed().as_millis() > LOAD_TIMEOUT_MS {
            LOAD_TIMED_OUT.with(|t| t.set(true));
            return Err(mlua::Error::runtime("FUNCTION LOAD timeout"));
        }
        return Ok(VmState::Continue);
    }
    PROGRESS.with(|p| {
        let Some(t0) = p.started.get() else {
            return Ok(VmState::Continue);
        };
        let threshold = state.scripts.busy_threshold_ms.load(Ordering::Relaxed);
        if !p.busy.get() && t0.elapsed().as_millis() as u64 >= threshold {
            p.busy.set(true);
            tracing::warn!(
                "a script has run for {threshold} ms and is still running: other clients get -BUSY; SCRIPT KILL stops it unless it wrote"
            );
        }
        if p.busy.get() {
            state.scripts.became_busy(me, p.wrote.get());
            if p.killed.get() || (state.scripts.kill_requested(me) && !p.wrote.get()) {
                if !p.killed.replace(true) {
                    install_hook(lua, state.clone(), me, true)?;
                }
                return Err(mlua::Error::runtime("Script killed by user with SCRIPT KILL..."));
            }
        }
        Ok(VmState::Continue)
    })
}

/// Compiles `script` on this core if need be (EVAL and SCRIPT LOAD check
/// the body compiles before anything runs).
pub fn compile(script: &Script) -> Result<(), CmdError> {
    with_engine(|e| e.function(script).map(|_| ()))
}

fn with_engine<T>(f: impl FnOnce(&mut Engine) -> Result<T, CmdError>) -> Result<T, CmdError> {
    let core = core().ok_or_else(|| CmdError::other("scripts run only on executor threads"))?;
    ENGINE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let generation = core.state.scripts.generation();
        if REBUILD.with(|r| r.replace(false)) {
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some(Engine::new(&core).map_err(lua_error)?);
        }
        let Some(engine) = slot.as_mut() else {
            return Err(CmdError::other("script engine unavailable"));
        };
        if engine.generation != generation {
            engine.compiled.clear();
            engine.generation = generation;
        }
        let limit = core.state.scripts.memory_limit.load(Ordering::Relaxed);
        if limit != engine.memory_limit {
            engine
                .lua
                .set_memory_limit(limit as usize)
                .map_err(lua_error)?;
            engine.memory_limit = limit;
        }
        f(engine)
    })
}

/// Runs `script` with `keys` and `args` in the context `active` (where its
/// commands go) and returns its reply.
pub fn run(target: Target<'_>, keys: &[Vec<u8>], args: &[Vec<u8>], active: Active) -> Reply {
    match run_inner(target, keys, args, active) {
        Ok(r) => r,
        Err(e) => Reply::Error(e.to_string().into()),
    }
}

fn run_inner(
    target: Target<'_>,
    keys: &[Vec<u8>],
    args: &[Vec<u8>],
    active: Active,
) -> Result<Reply, CmdError> {
    let (lua, run, f, label, is_function, probes) = with_engine(|e| match &target {
        Target::Script(script) => {
            let f = e.function(script)?;
            Ok((
                e.lua.clone(),
                e.run.clone(),
                f,
                script.sha.clone(),
                false,
                e.probes,
            ))
        }
        Target::Function {
            name,
            generation,
            catalog,
        } => {
            e.load_functions(*generation, catalog)?;
            let f = e
                .functions
                .get(*name)
                .cloned()
                .ok_or_else(|| CmdError::other("Function not found"))?;
            Ok((
                e.lua.clone(),
                e.run_function.clone(),
                f,
                name.to_string(),
                true,
                e.probes,
            ))
        }
    })?;
    let core = core().ok_or_else(|| CmdError::other("scripts run only on executor threads"))?;
    let me = core.router.me;
    let scripts = &core.state.scripts;
    scripts.started(me);
    PROGRESS.with(|p| {
        p.started.set(Some(Instant::now()));
        p.busy.set(false);
        p.wrote.set(false);
        p.killed.set(false);
    });
    call::enter(active);
    let mut reply = None;
    // SAFETY: one protected call sets KEYS and ARGV, runs the script
    // (`run(f)`, an xpcall) and reads a successful script's value straight
    // off the stack, instead of a protected call per table, string and
    // field. Until `reply_at` the closure holds only borrowed slices, and
    // `reply_at` calls nothing that can raise: a Lua error (out of memory)
    // that jumps out of the closure skips no destructor.
    let result: mlua::Result<MultiValue> = unsafe {
        lua.exec_raw((run, f), |state| {
            push_list(state, keys);
            if is_function {
                // run_function(f, keys, args)
                push_list(state, args);
                mlua::ffi::lua_call(state, 3, 2);
            } else {
                mlua::ffi::lua_setfield(state, mlua::ffi::LUA_GLOBALSINDEX, c"KEYS".as_ptr());
                push_list(state, args);
                mlua::ffi::lua_setfield(state, mlua::ffi::LUA_GLOBALSINDEX, c"ARGV".as_ptr());
                mlua::ffi::lua_call(state, 1, 2);
            }
            // [ok, value]: an error value goes back through mlua for its text.
            if mlua::ffi::lua_toboolean(state, -2) != 0
                && mlua::ffi::lua_checkstack(state, REPLY_STACK) != 0
            {
                let top = mlua::ffi::lua_gettop(state);
                reply = Some(reply_at(state, top, &probes, call::resp3(), 0));
                mlua::ffi::lua_settop(state, 0);
            }
        })
    };
    call::leave();
    let killed = PROGRESS.with(|p| {
        p.started.set(None);
        p.killed.get()
    });
    if killed {
        install_hook(&lua, core.state.clone(), me, false).map_err(lua_error)?;
    }
    scripts.finished(me);

    let values = match result {
        Ok(v) => v,
        // Killed: the error may surface outside the script's own handler
        // (the hook raises it again on every line until the script ends).
        Err(_) if killed => {
            return Ok(Reply::Error(
                format!("ERR Script killed by user with SCRIPT KILL... script: {label}").into(),
            ))
        }
        Err(e) => return Err(lua_error(e)),
    };
    if let Some(reply) = reply {
        return Ok(reply);
    }
    let mut values = values.into_iter();
    if matches!(values.next(), Some(Value::Boolean(true))) {
        // Succeeded, yet no room on the stack to read its value.
        return Ok(Reply::Error("ERR reached lua stack limit".into()));
    }
    let value = values.next().unwrap_or(Value::Nil);
    Ok(Reply::Error(error_text(&label, &value, killed).into()))
}

impl Engine {
    /// Loads every library of the registry's `generation` into this state
    /// (once per generation).
    fn load_functions(&mut self, generation: u64, catalog: &Catalog) -> Result<(), CmdError> {
        if self.fn_generation == generation {
            return Ok(());
        }
        let mut functions = HashMap::new();
        for lib in catalog.libraries.values() {
            match self.run_library(&lib.body) {
                Ok(list) => functions.extend(list.into_iter().map(|(info, f)| (info.name, f))),
                Err(e) => {
                    tracing::warn!(library = %lib.name, "a stored function library does not load on this core: {e}")
                }
            }
        }
        self.functions = functions;
        self.fn_generation = generation;
        Ok(())
    }

    /// Runs a library's code; its functions, or Redis's error text.
    fn run_library(&self, body: &str) -> Result<Vec<(FunctionInfo, Function)>, String> {
        LOADING.with(|l| l.set(Some(Instant::now())));
        LOAD_TIMED_OUT.with(|t| t.set(false));
        let result: mlua::Result<(bool, Value)> = self.load_library.call(body);
        LOADING.with(|l| l.set(None));
        if LOAD_TIMED_OUT.with(|t| t.get()) {
            // A Lua state whose load was stopped by the hook no longer
            // stops later scripts reliably: the next use builds a new one
            // (scripts and libraries are compiled again on demand).
            REBUILD.with(|r| r.set(true));
        }
        let (ok, value) = result.map_err(|e| match e {
            mlua::Error::CallbackError { cause, .. } => cause.to_string(),
            other => other.to_string(),
        })?;
        let list = match (ok, value) {
            (true, Value::Table(t)) => t,
            (_, Value::String(s)) => return Err(one_line(&s.as_bytes())),
            _ => return Err("Error registering functions: unknown error".into()),
        };
        let mut out = Vec::new();
        for entry in list.sequence_values::<Table>() {
            let entry = entry.map_err(|e| e.to_string())?;
            let name: String = entry.get("name").map_err(|e| e.to_string())?;
            let description: Option<String> =
                entry.get("description").map_err(|e| e.to_string())?;
            let flags: Vec<String> = entry.get("flags").map_err(|e| e.to_string())?;
            let callback: Function = entry.get("callback").map_err(|e| e.to_string())?;
            out.push((
                FunctionInfo {
                    name,
                    description,
                    flags: flags_of(&flags),
                },
                callback,
            ));
        }
        Ok(out)
    }
}

/// Runs a library's body on this core for FUNCTION LOAD: the functions it
/// registers, or the error to reply.
pub fn check_library(body: &str) -> Result<Vec<FunctionInfo>, CmdError> {
    with_engine(|e| {
        e.run_library(body)
            .map(|list| list.into_iter().map(|(info, _)| info).collect())
            .map_err(|text| {
                if text.contains("FUNCTION LOAD timeout") {
                    CmdError::other("Error registering functions: FUNCTION LOAD timeout")
                } else {
                    CmdError::other(text)
                }
            })
    })
}

/// Pushes a Lua array of `items` as strings.
unsafe fn push_list(state: *mut mlua::ffi::lua_State, items: &[Vec<u8>]) {
    use mlua::ffi;
    ffi::lua_createtable(state, items.len().min(i32::MAX as usize) as i32, 0);
    for (i, item) in items.iter().enumerate() {
        ffi::lua_pushlstring(state, item.as_ptr().cast(), item.len());
        ffi::lua_rawseti(state, -2, (i + 1) as mlua::ffi::lua_Integer);
    }
}

/// A failed script's error reply: its message, then which script and line.
fn error_text(sha: &str, e: &Value, killed: bool) -> String {
    let t = match e {
        Value::Table(t) => t,
        // Out of memory: Lua gives the handler no chance to run.
        Value::String(s) => return format!("ERR {}", one_line(&s.as_bytes())),
        _ => return "ERR unknown error in script".into(),
    };
    let mut text = match t.raw_get::<Value>("err") {
        Ok(Value::String(s)) => one_line(&s.as_bytes()),
        _ => "ERR unknown error".into(),
    };
    if killed {
        text = "ERR Script killed by user with SCRIPT KILL...".into();
    }
    let source: Option<String> = t.raw_get("source").ok();
    let line: Option<i64> = t.raw_get("line").ok();
    if let (Some(source), Some(line)) = (source, line) {
        text.push_str(&format!(" script: {sha}, on {source}:{line}."));
    }
    text
}
