//! The four C libraries Redis hands every script as globals (`cjson`,
//! `bit`, `struct`, `cmsgpack`), written anew in Rust for mlua and matched
//! against redis-server 7.0 by experiment: same results, same error texts.
//!
//! A script is client input, so nothing here may panic or grow without
//! bound: every failure is a Lua error, nesting is walked with an explicit
//! stack (never Rust recursion deeper than cmsgpack's 16 levels), and
//! outputs are capped at [`MAX_OUTPUT`].
//!
//! # Why the C trampoline
//! Redis's libraries raise errors the C way (`luaL_error`,
//! `luaL_argerror`): the error value is a plain string, prefixed with the
//! calling script line ("user_script:1: ...") and, for a bad argument,
//! naming the function as the call site spelled it ("bad argument #1 to
//! 'f'"). An mlua callback that returns `Err` raises a userdata instead,
//! which `pcall` hands the script as a non-string. So each library function
//! is an mlua callback that never fails for script mistakes: it returns a
//! status code first, and a tiny C function in front of it (the
//! trampoline) turns a failure code into a real `luaL_argerror` or
//! `luaL_where` + `lua_error`. The trampoline holds no Rust values, so the
//! `longjmp` of `lua_error` skips no destructor; that is the same contract
//! mlua's own callbacks rely on.

mod bit;
mod cjson;
mod cmsgpack;
mod structlib;

use std::ffi::c_int;

use mlua::{ffi, Function, Lua, LuaString, MultiValue, Table, Value};

/// The longest string any of the encoders will build (Redis's largest bulk
/// string). Sparse arrays and shared sub-tables can make an encoding far
/// larger than the data behind it; past this the encoder stops with an
/// error instead of exhausting memory.
/// (Unit tests use 8 MiB so that reaching it stays quick.)
const MAX_OUTPUT: usize = if cfg!(test) { 8 << 20 } else { 512 << 20 };

/// The most values one call can return: Lua 5.1's stack holds at most
/// LUAI_MAXCSTACK (8000) slots, so Redis fails past this point anyway.
const MAX_RESULTS: usize = 8000;

/// Installs `cjson`, `bit`, `struct` and `cmsgpack` as globals.
pub fn open(lua: &Lua) -> mlua::Result<()> {
    let kit = Kit::new(lua)?;
    let globals = lua.globals();
    globals.raw_set("cjson", cjson::create(lua, &kit)?)?;
    globals.raw_set("bit", bit::create(lua, &kit)?)?;
    globals.raw_set("struct", structlib::create(lua, &kit)?)?;
    globals.raw_set("cmsgpack", cmsgpack::create(lua, &kit)?)?;
    Ok(())
}

/// Why a library call failed, as the script will see it.
#[derive(Debug)]
enum Fail {
    /// `luaL_argerror(narg, msg)`: "bad argument #n to 'name' (msg)",
    /// prefixed with the caller's position.
    Arg(i32, Vec<u8>),
    /// `luaL_error(msg)`: the message prefixed with the caller's position.
    Msg(Vec<u8>),
    /// An error raised with no position, as the Lua core raises its own
    /// ("table index is nil" from inside a C function).
    Raw(Vec<u8>),
    /// mlua itself failed (out of memory, say): passed on untouched.
    Lua(mlua::Error),
}

// Messages are bytes: a Lua error string may quote any byte of the input.
impl Fail {
    fn arg(narg: i32, msg: impl Into<Vec<u8>>) -> Fail {
        Fail::Arg(narg, msg.into())
    }

    fn msg(msg: impl Into<Vec<u8>>) -> Fail {
        Fail::Msg(msg.into())
    }

    fn raw(msg: impl Into<Vec<u8>>) -> Fail {
        Fail::Raw(msg.into())
    }
}

impl From<mlua::Error> for Fail {
    fn from(e: mlua::Error) -> Self {
        Fail::Lua(e)
    }
}

type LibResult<T> = Result<T, Fail>;

/// What a library function returns.
enum Out {
    /// These values, as they are.
    Values(MultiValue),
    /// Elements `1..=n` of the table, pushed by the trampoline after
    /// `luaL_checkstack(n, msg)`: how a call returns thousands of values
    /// without holding thousands of mlua references at once.
    Spread(Table, usize, &'static str),
}

impl Out {
    fn one(v: Value) -> LibResult<Out> {
        Ok(Out::Values(MultiValue::from_iter([v])))
    }

    fn many(vals: Vec<Value>) -> LibResult<Out> {
        Ok(Out::Values(MultiValue::from_iter(vals)))
    }
}

// Status codes an inner function puts before its results.
const CODE_OK: f64 = 0.0;
const CODE_SPREAD: f64 = 1.0;
const CODE_ARG: f64 = 2.0;
const CODE_MSG: f64 = 3.0;
const CODE_RAW: f64 = 4.0;

/// The C closure scripts actually call; upvalue 1 is the mlua callback.
///
/// The callback's first result is a status code (see the `CODE_*`
/// constants). Every Lua API call here may raise a Lua error (a `longjmp`),
/// which is sound because this frame owns nothing that needs dropping.
unsafe extern "C-unwind" fn trampoline(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: `state` is the running thread, as Lua passes it to a C
    // function; the indexes used below exist by construction: the callback
    // is upvalue 1, and each status code comes with the values it promises
    // (checked through `nres` before use).
    unsafe {
        let nargs = ffi::lua_gettop(state);
        // A C function always has LUA_MINSTACK free slots: room for one more.
        ffi::lua_pushvalue(state, ffi::lua_upvalueindex(1));
        ffi::lua_insert(state, 1);
        ffi::lua_call(state, nargs, ffi::LUA_MULTRET);
        let nres = ffi::lua_gettop(state);
        let code = if nres > 0 {
            ffi::lua_tonumber(state, 1)
        } else {
            -1.0
        };
        if code == CODE_OK {
            ffi::lua_remove(state, 1);
            nres - 1
        } else if code == CODE_SPREAD && nres == 4 {
            // [code, table, n, msg] -> [table, msg, t[1], ..., t[n]]
            let n = ffi::lua_tonumber(state, 3) as c_int;
            ffi::lua_remove(state, 1);
            ffi::lua_remove(state, 2);
            ffi::luaL_checkstack_(state, n, ffi::lua_tolstring(state, 2, std::ptr::null_mut()));
            for i in 1..=n {
                ffi::lua_rawgeti_(state, 1, i);
            }
            n
        } else if code == CODE_ARG && nres == 3 {
            let narg = ffi::lua_tonumber(state, 2) as c_int;
            ffi::luaL_argerror(
                state,
                narg,
                ffi::lua_tolstring(state, 3, std::ptr::null_mut()),
            )
        } else if code == CODE_MSG && nres == 2 {
            ffi::luaL_where(state, 1);
            ffi::lua_pushvalue(state, 2);
            ffi::lua_concat(state, 2);
            ffi::lua_error(state)
        } else {
            // CODE_RAW, or a shape no inner function produces.
            ffi::lua_settop(state, 2);
            ffi::lua_error(state)
        }
    }
}

/// `bind(f)` returns the trampoline closed over `f`. Called through mlua so
/// an allocation failure surfaces as an `Err`, not a `longjmp`.
unsafe extern "C-unwind" fn bind(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: plain stack operations on the running thread.
    unsafe {
        ffi::lua_settop(state, 1);
        ffi::lua_pushcclosure(state, trampoline, 1);
    }
    1
}

/// `raw_next(t, k)` is `next` without metamethods and without depending on
/// the script's globals: the resumable table walk the encoders need.
unsafe extern "C-unwind" fn raw_next(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: `lua_next` is only reached with a table at index 1; a key not
    // in the table raises a Lua error, which mlua's protected call catches.
    unsafe {
        ffi::lua_settop(state, 2);
        if ffi::lua_type(state, 1) != ffi::LUA_TTABLE {
            return 0;
        }
        if ffi::lua_next(state, 1) != 0 {
            2
        } else {
            0
        }
    }
}

/// What every library needs to build its functions.
#[derive(Clone)]
struct Kit {
    bind: Function,
    next: Function,
}

impl Kit {
    fn new(lua: &Lua) -> mlua::Result<Kit> {
        // SAFETY: both functions follow the Lua C API contract: they touch
        // only their own stack frame and return how many results they left.
        let bind = unsafe { lua.create_c_function(bind)? };
        let next = unsafe { lua.create_c_function(raw_next)? };
        Ok(Kit { bind, next })
    }

    /// Wraps `f` so that scripts call it like one of Redis's C functions.
    fn function<F>(&self, lua: &Lua, f: F) -> mlua::Result<Function>
    where
        F: Fn(&Lua, Args) -> LibResult<Out> + 'static,
    {
        let inner = lua.create_function(move |lua, args: MultiValue| {
            let mut out = MultiValue::new();
            match f(lua, Args(args)) {
                Ok(Out::Values(mut vals)) => {
                    vals.push_front(Value::Number(CODE_OK));
                    return Ok(vals);
                }
                Ok(Out::Spread(table, n, msg)) => {
                    out.push_back(Value::Number(CODE_SPREAD));
                    out.push_back(Value::Table(table));
                    out.push_back(Value::Number(n as f64));
                    out.push_back(Value::String(lua.create_string(msg)?));
                }
                Err(Fail::Arg(narg, msg)) => {
                    out.push_back(Value::Number(CODE_ARG));
                    out.push_back(Value::Number(f64::from(narg)));
                    out.push_back(Value::String(lua.create_string(msg)?));
                }
                Err(Fail::Msg(msg)) => {
                    out.push_back(Value::Number(CODE_MSG));
                    out.push_back(Value::String(lua.create_string(msg)?));
                }
                Err(Fail::Raw(msg)) => {
                    out.push_back(Value::Number(CODE_RAW));
                    out.push_back(Value::String(lua.create_string(msg)?));
                }
                Err(Fail::Lua(e)) => return Err(e),
            }
            Ok(out)
        })?;
        self.bind.call(inner)
    }

    /// The entry after `key` in `t` (raw `next`); `None` at the end.
    fn next(&self, t: &Table, key: Value) -> mlua::Result<Option<(Value, Value)>> {
        let mut r = self.next.call::<MultiValue>((t, key))?;
        match (r.pop_front(), r.pop_front()) {
            (Some(k), Some(v)) if !k.is_nil() => Ok(Some((k, v))),
            _ => Ok(None),
        }
    }
}

/// A call's arguments, read the way `luaL_check*` reads them. Indexes are
/// 1-based, as in the error messages.
struct Args(MultiValue);

impl Args {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn get(&self, i: usize) -> Option<&Value> {
        i.checked_sub(1).and_then(|i| self.0.get(i))
    }

    /// Appends a nil, as a C function does with `lua_pushnil` before
    /// reading its arguments: errors then say "got nil" past the end.
    fn push_nil(&mut self) {
        self.0.push_back(Value::Nil);
    }

    /// `lua_isnoneornil`.
    fn is_none_or_nil(&self, i: usize) -> bool {
        matches!(self.get(i), None | Some(Value::Nil))
    }

    /// `luaL_checknumber`: a number, or a string Lua can read as one.
    fn number(&self, lua: &Lua, i: usize) -> LibResult<f64> {
        let v = self.get(i);
        match v {
            Some(Value::Number(n)) => return Ok(*n),
            Some(Value::Integer(n)) => return Ok(*n as f64),
            Some(s @ Value::String(_)) => {
                if let Some(n) = lua.coerce_number(s.clone())? {
                    return Ok(n);
                }
            }
            _ => {}
        }
        Err(type_error(i, "number", v))
    }

    /// `luaL_checkinteger`: the number cast to C's `ptrdiff_t`.
    fn integer(&self, lua: &Lua, i: usize) -> LibResult<i64> {
        self.number(lua, i).map(c_i64)
    }

    /// `luaL_optinteger`: `def` when the argument is absent or nil.
    fn opt_integer(&self, lua: &Lua, i: usize, def: i64) -> LibResult<i64> {
        if self.is_none_or_nil(i) {
            Ok(def)
        } else {
            self.integer(lua, i)
        }
    }

    /// `luaL_checklstring`: a string, or a number in Lua's own `%.14g`.
    fn string(&self, lua: &Lua, i: usize) -> LibResult<LuaString> {
        let v = self.get(i);
        match v {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(n @ (Value::Number(_) | Value::Integer(_))) => lua
                .coerce_string(n.clone())?
                .ok_or_else(|| type_error(i, "string", v)),
            _ => Err(type_error(i, "string", v)),
        }
    }
}

/// `luaL_typerror`'s message.
fn type_error(i: usize, expected: &str, got: Option<&Value>) -> Fail {
    let got = got.map_or("no value", type_name);
    Fail::arg(arg_index(i), format!("{expected} expected, got {got}"))
}

/// An argument position as the error messages print it.
fn arg_index(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

/// `lua_typename(lua_type(v))`.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        _ => "userdata",
    }
}

/// A Lua number as `f64`, for values already known to be numbers.
fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => Some(*n),
        Value::Integer(n) => Some(*n as f64),
        _ => None,
    }
}

/// C's `(int64_t)d` as x86-64 computes it (`cvttsd2si`): truncation, and
/// `i64::MIN` for NaN and anything out of range. Rust's `as` saturates
/// instead, which would differ from Redis on hostile input.
fn c_i64(d: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if d.is_nan() || !(-LIMIT..LIMIT).contains(&d) {
        i64::MIN
    } else {
        d as i64
    }
}

/// C's `(uint64_t)d` as gcc compiles it for x86-64: values from 2^63 up are
/// shifted down by 2^63 before the signed conversion and the top bit put
/// back, so 2^64 and beyond wrap to 0 and NaN gives 2^63.
fn c_u64(d: f64) -> u64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if d >= LIMIT {
        (c_i64(d - LIMIT) as u64) ^ (1 << 63)
    } else {
        c_i64(d) as u64
    }
}

/// Makes room for `extra` more bytes of output, or fails with `what` once
/// the output would pass [`MAX_OUTPUT`] (or memory runs out).
fn reserve(out: &mut Vec<u8>, extra: usize, what: &str) -> LibResult<()> {
    if out.len().saturating_add(extra) > MAX_OUTPUT || out.try_reserve(extra).is_err() {
        return Err(too_large(what));
    }
    Ok(())
}

/// The error for an output past [`MAX_OUTPUT`].
fn too_large(what: &str) -> Fail {
    Fail::msg(format!("{what}: result larger than {MAX_OUTPUT} bytes"))
}

/// A stack of Lua values for walking nested tables without recursion. The
/// first few levels stay in Rust; deeper ones go to a Lua table, because
/// every Lua value Rust holds takes a slot on mlua's reference stack, which
/// Lua 5.1 caps at 8000 for the whole state.
struct Spill {
    near: Vec<Value>,
    far: Option<Table>,
    far_len: i64,
}

impl Spill {
    const NEAR: usize = 32;

    fn new() -> Spill {
        Spill {
            near: Vec::new(),
            far: None,
            far_len: 0,
        }
    }

    fn push(&mut self, lua: &Lua, v: Value) -> mlua::Result<()> {
        if self.near.len() < Self::NEAR {
            self.near.push(v);
            return Ok(());
        }
        let far = match &self.far {
            Some(t) => t,
            None => self.far.insert(lua.create_table()?),
        };
        self.far_len += 1;
        far.raw_set(self.far_len, v)
    }

    fn pop(&mut self) -> mlua::Result<Value> {
        if self.far_len > 0 {
            if let Some(far) = &self.far {
                let v = far.raw_get(self.far_len)?;
                far.raw_set(self.far_len, Value::Nil)?;
                self.far_len -= 1;
                return Ok(v);
            }
        }
        Ok(self.near.pop().unwrap_or(Value::Nil))
    }
}

/// Shared by the unit tests of every library.
#[cfg(test)]
mod testing {
    use mlua::{FromLuaMulti, Lua};

    /// A fresh state with the four libraries installed.
    pub(super) fn lua() -> Lua {
        let lua = Lua::new();
        super::open(&lua).expect("open libs");
        lua
    }

    /// Runs `code` (a chunk ending in `return ...`).
    pub(super) fn eval<R: FromLuaMulti>(lua: &Lua, code: &str) -> R {
        match lua.load(code).set_name("=user_script").eval() {
            Ok(r) => r,
            Err(e) => panic!("{code}: {e}"),
        }
    }

    /// The error string a script's `pcall` sees for `expr`, or
    /// "no error" when it succeeds.
    pub(super) fn err(lua: &Lua, expr: &str) -> String {
        let code = format!(
            "local ok, e = pcall(function() return {expr} end)\n\
             if ok then return 'no error' end\n\
             if type(e) ~= 'string' then return 'non-string error: ' .. tostring(e) end\n\
             return e"
        );
        eval(lua, &code)
    }

    /// `bytes` as lowercase hex.
    pub(super) fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Hex back to bytes.
    pub(super) fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{err, eval, lua};
    use super::*;

    #[test]
    fn globals_are_installed() {
        let lua = lua();
        let t: String = eval(
            &lua,
            "return type(cjson) .. type(bit) .. type(struct) .. type(cmsgpack)",
        );
        assert_eq!(t, "tabletabletabletable");
    }

    #[test]
    fn errors_are_strings_with_the_callers_position() {
        let lua = lua();
        // redis: pcall(function() return cjson.encode_max_depth(0) end)
        assert_eq!(
            err(&lua, "cjson.encode_max_depth(0)"),
            "user_script:1: bad argument #1 to 'encode_max_depth' \
             (expected integer between 1 and 2147483647)"
        );
        // Called straight from pcall there is no Lua caller and no name.
        let e: String = eval(
            &lua,
            "local ok, e = pcall(cjson.encode_max_depth, 0) return e",
        );
        assert_eq!(
            e,
            "bad argument #1 to '?' (expected integer between 1 and 2147483647)"
        );
        // A local alias is named as the call site names it.
        let e: String = eval(
            &lua,
            "local f = cjson.encode_max_depth\n\
             local ok, e = pcall(function() local x = f(0) return x end) return e",
        );
        assert_eq!(
            e,
            "user_script:2: bad argument #1 to 'f' (expected integer between 1 and 2147483647)"
        );
        // A tail call keeps the caller's line, as a C function does.
        let e: String = eval(
            &lua,
            "local ok, e = pcall(function() return cjson.decode('{') end) return e",
        );
        assert_eq!(
            e,
            "user_script:1: Expected object key string but found T_END at character 2"
        );
    }

    #[test]
    fn running_out_of_memory_is_an_error_not_a_crash() {
        let lua = lua();
        let attempt: mlua::Function = eval(
            &lua,
            "local doc = '[' .. string.rep('[1,2,3,\"abc\"],', 20000) .. '1]' \
             local deep = string.rep('\\145', 3000) .. '\\1' \
             return function() \
               local a = pcall(cjson.decode, doc) \
               local b = pcall(cmsgpack.unpack, deep) \
               local c = pcall(cjson.encode, {doc, doc, doc}) \
               return a and b and c \
             end",
        );
        lua.set_memory_limit(lua.used_memory() + (64 << 10))
            .expect("limit");
        // Either a call fails inside its pcall, or the state cannot even
        // report: both are errors, neither may panic or abort.
        match attempt.call::<bool>(()) {
            Ok(all_ok) => assert!(!all_ok),
            Err(e) => assert!(e.to_string().contains("memory"), "{e}"),
        }
        lua.set_memory_limit(0).expect("unlimit");
        assert!(attempt.call::<bool>(()).expect("unlimited"));
    }

    #[test]
    fn c_casts_match_x86_64() {
        assert_eq!(c_i64(1.9), 1);
        assert_eq!(c_i64(-1.9), -1);
        assert_eq!(c_i64(f64::NAN), i64::MIN);
        assert_eq!(c_i64(1e100), i64::MIN);
        assert_eq!(c_u64(-1.0), u64::MAX);
        assert_eq!(c_u64(18446744073709549568.0), 0xffff_ffff_ffff_f800);
        assert_eq!(c_u64(18446744073709551616.0), 0);
        assert_eq!(c_u64(f64::INFINITY), 0);
        assert_eq!(c_u64(f64::NAN), 1 << 63);
    }

    #[test]
    fn spill_keeps_order_past_the_near_part() {
        let lua = Lua::new();
        let mut s = Spill::new();
        for i in 0..100 {
            s.push(&lua, Value::Number(f64::from(i))).expect("push");
        }
        for i in (0..100).rev() {
            assert_eq!(as_number(&s.pop().expect("pop")), Some(f64::from(i)));
        }
        assert!(s.pop().expect("pop").is_nil());
    }
}
