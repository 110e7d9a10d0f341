"""Differential test, scripting family: seeded random Lua scripts go to keel and to
a reference redis-server (EVAL / EVALSHA / EVAL_RO); every reply must match
(type and value, full error text), in RESP2 and RESP3, with keel at --shards 1
and --shards 4. After every batch both keyspaces are read back and compared.

The scripts come from a small grammar (ScriptGen below): sequences of
`local vN = redis.call(...)` / `redis.pcall(...)` over strings, hashes, lists,
sets, sorted sets and generic key commands, locals feeding later calls, `if` on
results, tostring / tonumber / string.format('%d'), cjson.encode / decode, and a
return value that mixes numbers, strings, booleans, nested tables, {ok=...},
{err=...}, redis.status_reply / redis.error_reply. Errors are made on purpose:
WRONGTYPE (a key of another type), wrong arity, unknown commands, writes in
EVAL_RO, both through redis.call (the script fails) and redis.pcall (an error
table the script looks at).

Every key a script touches is passed in KEYS. Half the keys share the hash tag
{s}, the others do not, so on keel with --shards 4 many scripts span shards.

Deliberately not generated (known, intended differences or nondeterminism):
non-integer Lua numbers as redis.call arguments (keel formats them like Redis
7.2, the reference is 7.0), redis.REDIS_VERSION, TIME / random commands / SCAN,
set and hash orders (SMEMBERS, HKEYS, HGETALL... are sorted in Lua before use),
Lua hash-table iteration order (cjson.encode only gets arrays and one-key
objects), TTL values of keys set by an earlier script (bucketed to 1).

KEEL_DIFF_SCALE=N multiplies the number of scripts, KEEL_DIFF_SEED_OFFSET=N
shifts the seeds, KEEL_DIFF_KEEP_GOING=1 records every distinct mismatch
(emptying both keyspaces after each) instead of stopping at the first.
"""

from __future__ import annotations

import hashlib
import os
import random

import pytest

from respclient import fmt
from test_differential import final_state, open_conn

SCALE = float(os.environ.get("KEEL_DIFF_SCALE", "1"))
SEED_OFFSET = int(os.environ.get("KEEL_DIFF_SEED_OFFSET", "0"))
KEEP_GOING = os.environ.get("KEEL_DIFF_KEEP_GOING", "") not in ("", "0")

# (seed, number of scripts)
SCRIPT_STREAMS = [(201, 250), (202, 250), (203, 250), (204, 250)]
BATCH = 25  # scripts per pipelined batch; the keyspaces are compared after each

# Keys by the type the generator mostly uses them as. {s} keys share a shard.
KEY_POOL = {
    "str": [b"{s}str1", b"str2"],
    "num": [b"{s}cnt", b"cnt2"],  # counters: INCR and friends
    "hash": [b"{s}h1", b"h2"],
    "list": [b"{s}l1", b"l2"],
    "set": [b"{s}s1", b"s2"],
    "zset": [b"{s}z1", b"z2"],
}
ALL_KEYS = [k for ks in KEY_POOL.values() for k in ks] + [b"{s}other", b"spare key"]

# Values: strings and integers only (no '.', so tonumber of any value or any
# concatenation of values is never a non-integer).
STR_VALUES = ["a", "b", "abc", "hello world", "", "OK", "x y", "1", "2", "-3", "10",
              "007", "42", "caf\xc3\xa9", "\x00\xff", "nil", "-ERR not an error", "9999"]
INT_VALUES = [0, 1, -1, 2, 3, 5, 10, 42, -17, 100, 1000, 123456789, -987654321]
FIELDS = ["f1", "f2", "f3", "n", "", "cnt"]
MEMBERS = ["a", "b", "c", "d", "1", "2", "10", "-1", "", "x y"]

PRELUDE = """\
local function S(v)
  local t = type(v)
  if t == 'table' then
    if v.err then return 'E:' .. v.err end
    if v.ok then return 'OK:' .. v.ok end
    return 'T' .. #v
  end
  return tostring(v)
end
local function N(x)
  local n = tonumber(x)
  if n == nil or n ~= n or n > 1e12 or n < -1e12 or n ~= math.floor(n) then return 0 end
  return n
end
"""


def lua_str(s) -> str:
    """A Lua string literal for s (str of code points < 256, or bytes)."""
    if isinstance(s, str):
        s = s.encode("latin-1")
    out = []
    for b in s:
        c = chr(b)
        if c == "\\" or c == "'":
            out.append("\\" + c)
        elif 32 <= b < 127:
            out.append(c)
        else:
            out.append("\\%d" % b)
    return "'" + "".join(out) + "'"


class Var:
    def __init__(self, name: str, kind: str):
        self.name = name
        self.kind = kind  # int, bulk (string or false), status, array, any


class ScriptGen:
    """Seeded generator of (script text, KEYS, ARGV, how it is sent)."""

    def __init__(self, seed: int):
        self.r = random.Random(seed)

    # -- one script ----------------------------------------------------------
    def script(self):
        r = self.r
        self.keys: list[bytes] = []
        self.vars: list[Var] = []
        self.argv = [str(r.choice(INT_VALUES)) if r.random() < 0.5 else r.choice(STR_VALUES)
                     for _ in range(r.randint(0, 3))]
        self.nvar = 0
        self.ro = r.random() < 0.05  # EVAL_RO: only reads, or a write on purpose
        lines = []
        for _ in range(r.randint(1, 7)):
            lines += self.statement(depth=0)
        lines.append("return " + self.ret(depth=0))
        body = "\n".join(lines)
        if "S(" in body or "N(" in body:
            body = PRELUDE + body
        if r.random() < 0.1:
            body = "#!lua\n" + body
        return body, list(self.keys), list(self.argv), self.ro

    # -- keys, values --------------------------------------------------------
    def key(self, kind: str | None) -> str:
        r = self.r
        if kind and r.random() < 0.95:
            k = r.choice(KEY_POOL[kind])
        else:
            k = r.choice(ALL_KEYS)
        if k not in self.keys:
            self.keys.append(k)
        return f"KEYS[{self.keys.index(k) + 1}]"

    def int_expr(self) -> str:
        r = self.r
        x = r.random()
        ints = [v for v in self.vars if v.kind == "int"]
        if x < 0.15 and ints:
            v = r.choice(ints)
            return r.choice([v.name, f"({v.name} + {r.randint(-3, 3)})", f"-{v.name}"])
        if x < 0.25:
            bulks = [v for v in self.vars if v.kind in ("bulk", "any")]
            if bulks:
                return f"N({r.choice(bulks).name})"
        if x < 0.32 and self.argv:
            return f"N(ARGV[{r.randint(1, len(self.argv))}])"
        if x < 0.37:
            return f"tonumber({lua_str(str(r.choice(INT_VALUES)))})"
        return str(r.choice(INT_VALUES))

    def value(self) -> str:
        """A Lua expression giving a string or an integer, for a command argument."""
        r = self.r
        x = r.random()
        if x < 0.35:
            return lua_str(r.choice(STR_VALUES))
        if x < 0.55:
            return self.int_expr()
        if x < 0.65 and self.argv:
            return f"ARGV[{r.randint(1, len(self.argv))}]"
        if x < 0.8 and self.vars:
            v = r.choice(self.vars)
            if v.kind == "int":
                return r.choice([v.name, f"tostring({v.name})", f"string.format('%d', {v.name})",
                                 f"'n' .. {v.name}"])
            if v.kind == "bulk":
                return r.choice([f"({v.name} or 'none')", f"S({v.name})",
                                 f"string.format('%s!', S({v.name}))"])
            if v.kind == "array":
                return r.choice([f"#{v.name}", f"({v.name}[1] or 'e')", f"S({v.name}[#{v.name}])"])
            return f"S({v.name})"
        if x < 0.85:
            return f"string.format('%d-%s', {self.int_expr()}, {lua_str(r.choice(STR_VALUES))})"
        if x < 0.9:
            return f"cjson.encode({{{self.int_expr()}, {lua_str(r.choice(MEMBERS))}}})"
        return lua_str(r.choice(MEMBERS))

    def pick(self, pool) -> str:
        return lua_str(self.r.choice(pool))

    # -- commands: (command name, [arg exprs], reply kind, needs sorting) -----
    def command(self):
        r = self.r
        fam = r.choice(["str", "str", "hash", "list", "set", "zset", "keys", "keys", "err"])
        return getattr(self, "cmd_" + fam)()

    def cmd_str(self):
        r = self.r
        k = self.key(r.choice(["str", "str", "num"]))
        c = r.randrange(13)
        if c == 0:
            opts = r.choice([[], [], ["'NX'"], ["'XX'"], ["'GET'"], ["'EX'", str(r.choice([1000, 5000, 100000]))]])
            kind = "bulk" if opts == ["'GET'"] else ("any" if opts and opts[0] in ("'NX'", "'XX'") else "status")
            return "SET", [k, self.value()] + opts, kind
        if c == 1:
            return "GET", [k], "bulk"
        if c == 2:
            return "INCR", [self.key("num")], "int"
        if c == 3:
            return "INCRBY", [self.key("num"), self.int_expr()], "int"
        if c == 4:
            return "DECRBY", [self.key("num"), self.int_expr()], "int"
        if c == 5:
            return "APPEND", [k, self.value()], "int"
        if c == 6:
            return "STRLEN", [k], "int"
        if c == 7:
            return "GETRANGE", [k, str(r.randint(-5, 3)), str(r.randint(-3, 10))], "bulk"
        if c == 8:
            return "MGET", [k, self.key("str"), self.key(None)], "array"
        if c == 9:
            return "SETNX", [k, self.value()], "int"
        if c == 10:
            return "GETDEL", [k], "bulk"
        if c == 11:
            return "MSET", [k, self.value(), self.key("str"), self.value()], "status"
        return "SETRANGE", [k, str(r.randint(0, 6)), self.value()], "int"

    def cmd_hash(self):
        r = self.r
        k = self.key("hash")
        c = r.randrange(10)
        if c == 0:
            args = [k]
            for _ in range(r.randint(1, 3)):
                args += [self.pick(FIELDS), self.value()]
            return "HSET", args, "int"
        if c == 1:
            return "HGET", [k, self.pick(FIELDS)], "bulk"
        if c == 2:
            return "HINCRBY", [k, self.pick(FIELDS), self.int_expr()], "int"
        if c == 3:
            return "HDEL", [k, self.pick(FIELDS), self.pick(FIELDS)], "int"
        if c == 4:
            return "HLEN", [k], "int"
        if c == 5:
            return "HEXISTS", [k, self.pick(FIELDS)], "int"
        if c == 6:
            return "HGETALL", [k], "sorted"
        if c == 7:
            return r.choice(["HKEYS", "HVALS"]), [k], "sorted"
        if c == 8:
            return "HMGET", [k, self.pick(FIELDS), self.pick(FIELDS)], "array"
        return "HSETNX", [k, self.pick(FIELDS), self.value()], "int"

    def cmd_list(self):
        r = self.r
        k = self.key("list")
        c = r.randrange(10)
        if c == 0:
            return r.choice(["LPUSH", "RPUSH"]), [k] + [self.value() for _ in range(r.randint(1, 3))], "int"
        if c == 1:
            return r.choice(["LPOP", "RPOP"]), [k], "bulk"
        if c == 2:
            return "LRANGE", [k, str(r.randint(-3, 1)), str(r.choice([-1, 2, 5]))], "array"
        if c == 3:
            return "LLEN", [k], "int"
        if c == 4:
            return "LINDEX", [k, str(r.randint(-3, 3))], "bulk"
        if c == 5:
            return "LSET", [k, str(r.randint(-2, 2)), self.value()], "status"
        if c == 6:
            return "LREM", [k, str(r.randint(-2, 2)), self.value()], "int"
        if c == 7:
            return "LTRIM", [k, str(r.randint(0, 2)), str(r.randint(-1, 8))], "status"
        if c == 8:
            return "LPOP", [k, str(r.randint(0, 3))], "any"
        return "RPUSHX", [k, self.value()], "int"

    def cmd_set(self):
        r = self.r
        k = self.key("set")
        c = r.randrange(8)
        if c == 0:
            return "SADD", [k] + [self.pick(MEMBERS) for _ in range(r.randint(1, 4))], "int"
        if c == 1:
            return "SREM", [k, self.pick(MEMBERS), self.value()], "int"
        if c == 2:
            return "SISMEMBER", [k, self.pick(MEMBERS)], "int"
        if c == 3:
            return "SCARD", [k], "int"
        if c == 4:
            return "SMEMBERS", [k], "sorted"
        if c == 5:
            return r.choice(["SINTER", "SUNION", "SDIFF"]), [k, self.key("set")], "sorted"
        if c == 6:
            return "SMISMEMBER", [k, self.pick(MEMBERS), self.pick(MEMBERS)], "array"
        return "SADD", [k, self.value()], "int"

    def cmd_zset(self):
        r = self.r
        k = self.key("zset")
        c = r.randrange(10)
        if c == 0:
            args = [k] + r.choice([[], [], ["'NX'"], ["'XX'"], ["'GT'"], ["'CH'"]])
            for _ in range(r.randint(1, 3)):
                args += [self.int_expr(), self.pick(MEMBERS)]
            return "ZADD", args, "int"
        if c == 1:
            return "ZINCRBY", [k, self.int_expr(), self.pick(MEMBERS)], "bulk"
        if c == 2:
            return "ZSCORE", [k, self.pick(MEMBERS)], "bulk"
        if c == 3:
            return "ZRANGE", [k, "0", "-1", "'WITHSCORES'"], "array"
        if c == 4:
            return "ZRANGE", [k, str(r.randint(0, 2)), str(r.choice([-1, 1, 3]))], "array"
        if c == 5:
            return r.choice(["ZRANK", "ZREVRANK"]), [k, self.pick(MEMBERS)], "any"
        if c == 6:
            return "ZREM", [k, self.pick(MEMBERS), self.pick(MEMBERS)], "int"
        if c == 7:
            return "ZCARD", [k], "int"
        if c == 8:
            return "ZRANGEBYSCORE", [k, "'-inf'", str(r.choice([0, 5, 100, 10**9])), "'WITHSCORES'"], "array"
        return "ZCOUNT", [k, str(r.choice([-100, 0, 3])), "'+inf'"], "int"

    def cmd_keys(self):
        r = self.r
        c = r.randrange(9)
        if c == 0:
            return "DEL", [self.key(None) for _ in range(r.randint(1, 2))], "int"
        if c == 1:
            return "EXISTS", [self.key(None) for _ in range(r.randint(1, 3))], "int"
        if c == 2:
            return "TYPE", [self.key(None)], "status"
        if c == 3:
            return "EXPIRE", [self.key(None), str(r.choice([1000, 5000, 100000]))] + \
                r.choice([[], [], ["'NX'"], ["'XX'"], ["'GT'"], ["'LT'"]]), "int"
        if c == 4:
            return "TTL", [self.key(None)], "ttl"
        if c == 5:
            return "PERSIST", [self.key(None)], "int"
        if c == 6:
            return "EXPIRE", [self.key(None), r.choice(["0", "-5"])], "int"
        kind = r.choice(list(KEY_POOL)) if r.random() < 0.8 else None  # mostly within a type
        if c == 7:
            return "RENAME", [self.key(kind), self.key(kind)], "status"
        return "COPY", [self.key(kind), self.key(kind)], "int"

    def cmd_err(self):
        """Calls that fail whatever the data: arity, unknown command, bad arguments."""
        r = self.r
        c = r.randrange(7)
        if c == 0:
            return "GET", [], "any"
        if c == 1:
            return "INCR", [self.key("str"), self.value()], "any"
        if c == 2:
            return "NOSUCHCMD", [self.key(None)], "any"
        if c == 3:
            return "HSET", [self.key("hash"), self.pick(FIELDS)], "any"
        if c == 4:
            return "INCRBY", [self.key("str"), "'notanumber'"], "any"
        if c == 5:
            return "ZADD", [self.key("zset"), "'nan'", "'m'"], "any"
        return "EXPIRE", [self.key(None), "'soon'"], "any"

    # -- statements ------------------------------------------------------------
    def new_var(self, kind) -> Var:
        self.nvar += 1
        v = Var(f"v{self.nvar}", kind)
        return v

    def call_statement(self) -> list[str]:
        r = self.r
        name, args, kind = self.command()
        if kind == "any" and name in ("GET", "NOSUCHCMD", "HSET", "ZADD", "EXPIRE", "INCR", "INCRBY") \
                and r.random() < 0.9:
            fn = "redis.pcall"  # deliberate errors: usually caught, sometimes fatal
        else:
            fn = "redis.pcall" if r.random() < 0.3 else "redis.call"
        cmd = lua_str(name if r.random() < 0.85 else name.lower())
        call = f"{fn}({', '.join([cmd] + args)})"
        if fn == "redis.pcall":
            kind = "any" if kind != "sorted" else "sorted_any"
        v = self.new_var(kind)
        out = [f"local {v.name} = {call}"]
        if kind in ("sorted", "sorted_any"):
            out.append(f"table.sort({v.name})")  # set / hash order differs between servers
            v.kind = "array" if kind == "sorted" else "any"
        elif kind == "ttl" or (kind == "any" and name == "TTL"):
            # seconds tick independently on the two servers
            out.append(f"if type({v.name}) == 'number' and {v.name} > 0 then {v.name} = 1 end")
            v.kind = "int" if kind == "ttl" else "any"
        if r.random() < 0.12 and v.kind in ("any", "status"):
            # look at a pcall'd error / status table
            out.append(f"if type({v.name}) == 'table' and {v.name}.err then "
                       f"{v.name} = 'caught ' .. {v.name}.err end")
            v.kind = "any"
        self.vars.append(v)
        return out

    def cond(self) -> str:
        r = self.r
        if not self.vars:
            return r.choice(["true", "false", "#ARGV > 1", "#KEYS == 1"])
        v = r.choice(self.vars)
        if v.kind == "int":
            return r.choice([f"{v.name} > {r.randint(-1, 3)}", f"{v.name} == 0", f"{v.name} % 2 == 1"])
        if v.kind == "bulk":
            return r.choice([f"{v.name}", f"not {v.name}", f"{v.name} == {lua_str(r.choice(STR_VALUES))}",
                             f"N({v.name}) > 5"])
        if v.kind == "array":
            return r.choice([f"#{v.name} > {r.randint(0, 3)}", f"{v.name}[1] == 'a'"])
        return r.choice([f"type({v.name}) == 'table' and {v.name}.err ~= nil",
                         f"type({v.name}) == 'number'", f"S({v.name}) == 'OK:OK'", f"not {v.name}"])

    def statement(self, depth: int) -> list[str]:
        r = self.r
        x = r.random()
        if x < 0.15 and depth < 2:
            out = [f"if {self.cond()} then"]
            saved = list(self.vars)  # locals of a branch die with it
            for _ in range(r.randint(1, 2)):
                out += ["  " + s for s in self.statement(depth + 1)]
            self.vars = list(saved)
            if r.random() < 0.5:
                out.append("else")
                for _ in range(r.randint(1, 2)):
                    out += ["  " + s for s in self.statement(depth + 1)]
                self.vars = saved
            if r.random() < 0.15:
                out.append("  return " + self.ret(depth + 1))
            out.append("end")
            return out
        if x < 0.2:
            v = self.new_var("bulk")
            doc = r.choice(['{"a":[1,2,3],"b":"x"}', '[10,"s",[1]]', '{"n":-5}', '"str"'])
            path = {'{"a":[1,2,3],"b":"x"}': r.choice([".b", ".a[2]", ".a[3] .. ''"]),
                    '[10,"s",[1]]': r.choice(["[2]", "[1] .. ''", "[3][1] .. ''"]),
                    '{"n":-5}': ".n .. ''", '"str"': ""}[doc]
            self.vars.append(v)
            return [f"local {v.name} = cjson.decode({lua_str(doc)}){path}"]
        return self.call_statement()

    # -- return values ---------------------------------------------------------
    def ret(self, depth: int) -> str:
        r = self.r
        x = r.random()
        if x < 0.25 and self.vars:
            return r.choice(self.vars).name
        if x < 0.55 and depth < 2:
            items = [self.ret_item(depth + 1) for _ in range(r.randint(0, 5))]
            return "{" + ", ".join(items) + "}"
        if x < 0.62:
            return f"{{ok={lua_str(r.choice(['DONE', 'OK', 'PONG', 'fine']))}}}"
        if x < 0.68:
            return f"{{err={lua_str(r.choice(['CUSTOM failure', 'ERR mine', 'WRONGTYPE fake', 'x']))}}}"
        if x < 0.73:
            return f"redis.status_reply({self.str_expr()})"
        if x < 0.78:
            return f"redis.error_reply({self.str_expr()})"
        if x < 0.83:
            return r.choice(["true", "false", "nil"])
        if x < 0.9:
            return self.str_expr()
        return self.int_expr()

    def str_expr(self) -> str:
        r = self.r
        x = r.random()
        if x < 0.3 and self.vars:
            return f"S({r.choice(self.vars).name})"
        if x < 0.5:
            return f"string.format('%d', {self.int_expr()})"
        if x < 0.65:
            n = r.randint(0, 3)
            items = ", ".join(self.int_expr() if r.random() < 0.5 else lua_str(r.choice(MEMBERS))
                              for _ in range(n))
            return f"cjson.encode({{{items}}})"
        if x < 0.72:
            return f"cjson.encode({{k={self.int_expr()}}})"
        return lua_str(r.choice(STR_VALUES + ["DONE", "my message"]))

    def ret_item(self, depth: int) -> str:
        r = self.r
        x = r.random()
        if x < 0.3 and self.vars:
            v = r.choice(self.vars)
            if v.kind in ("int", "bulk", "array"):
                return v.name
            return f"S({v.name})"
        if x < 0.45:
            return self.int_expr()
        if x < 0.6:
            return self.str_expr()
        if x < 0.7:
            return r.choice(["true", "false"])
        if x < 0.8 and depth < 3:
            return self.ret(depth)
        if x < 0.85:
            return f"{{ok={lua_str('OK')}}}"
        if x < 0.9:
            return f"{{err={lua_str('inner error')}}}"
        return lua_str(r.choice(STR_VALUES))

    # -- the stream ------------------------------------------------------------
    def commands(self, n: int):
        """n scripts, each as a list of commands to send (EVAL, EVAL_RO or
        SCRIPT LOAD + EVALSHA) with its script text."""
        out = []
        for _ in range(n):
            body, keys, argv, ro = self.script()
            tail = [str(len(keys))] + keys + argv
            x = self.r.random()
            if ro:
                cmds = [("EVAL_RO", body, *tail)]
            elif x < 0.15:
                sha = hashlib.sha1(body.encode("latin-1")).hexdigest()
                cmds = [("SCRIPT", "LOAD", body), ("EVALSHA", sha, *tail)]
            else:
                cmds = [("EVAL", body, *tail)]
            out.append((body, cmds))
        return out


def _enc(cmd):
    return tuple(a.encode("latin-1") if isinstance(a, str) else a for a in cmd)


def keyspace(conn):
    """Every key with its type and content (sorted where the order is the server's)
    and whether it has a TTL; from test_differential.final_state."""
    out = []
    for k, t, v in final_state(conn):
        ttl = conn.call("TTL", k)
        out.append((k, t, v, ttl[0] == "int" and ttl[1] > 0))
    return out


class ScriptRunner:
    def __init__(self, kc, rc, label):
        self.k, self.r, self.label = kc, rc, label
        self.history: list = []  # (index, script, keel reply, redis reply)
        self.mismatches: dict = {}

    def report(self, why, i, body, cmd, a, b) -> str:
        lines = [f"{why} [{self.label}] at script #{i}",
                 f"  command: {fmt(cmd[:1] + cmd[2:] if cmd[0] != b'SCRIPT' else cmd, 400)}",
                 "  script:", *("    | " + ln for ln in body.splitlines()),
                 f"  keel:    {fmt(a, 1000)}",
                 f"  redis:   {fmt(b, 1000)}",
                 "  previous scripts (index, script, keel reply, redis reply):"]
        for j, bj, ka, rb in self.history[-10:]:
            lines.append(f"    #{j} {bj!r} -> {fmt(ka, 200)} | {fmt(rb, 200)}")
        return "\n".join(lines)

    def mismatch(self, sig, report):
        if not KEEP_GOING:
            pytest.fail(report, pytrace=False)
        count, first = self.mismatches.get(sig, (0, report))
        self.mismatches[sig] = (count + 1, first)
        for c in (self.k, self.r):
            c.call("FLUSHDB")

    def run(self, scripts):
        for start in range(0, len(scripts), BATCH):
            batch = list(enumerate(scripts[start:start + BATCH], start))
            cmds = [_enc(c) for _, (_, cs) in batch for c in cs]
            ka = self.k.pipeline(cmds)
            ra = self.r.pipeline(cmds)
            pos, bad = 0, False
            for i, (body, cs) in batch:
                for c in cs:
                    a, b = ka[pos], ra[pos]
                    pos += 1
                    if a != b and not bad:
                        shape = lambda x: (x[0], x[1][:50]) if x[0] == "error" else x[0]
                        self.mismatch((body.splitlines()[-1][:60], shape(a), shape(b)),
                                      self.report("replies differ", i, body, _enc(c), a, b))
                        bad = True
                self.history.append((i, body, a, b))
                if len(self.history) > 40:
                    del self.history[:20]
            if bad:
                continue
            sa, sb = keyspace(self.k), keyspace(self.r)
            if sa != sb:
                only_a = [x for x in sa if x not in sb][:10]
                only_b = [x for x in sb if x not in sa][:10]
                i, (body, cs) = batch[-1]
                self.mismatch(("keyspace", self.label),
                              self.report(f"keyspaces differ after the batch ending at script #{i}",
                                          i, body, _enc(cs[-1]), ("keel only", only_a), ("redis only", only_b)))


@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
@pytest.mark.parametrize("seed,n", SCRIPT_STREAMS, ids=[f"script-seed{s}" for s, _ in SCRIPT_STREAMS])
def test_random_scripts_match_redis(keel, ref, protocol, seed, n):
    seed += SEED_OFFSET
    scripts = ScriptGen(seed).commands(max(1, int(n * SCALE)))
    label = f"family=script seed={seed} protocol=RESP{protocol} {keel.name}"
    with open_conn(keel, protocol) as kc, open_conn(ref, protocol) as rc:
        runner = ScriptRunner(kc, rc, label)
        runner.run(scripts)
        if runner.mismatches:
            out = [f"{len(runner.mismatches)} distinct mismatches [{label}]:"]
            for sig, (count, first) in sorted(runner.mismatches.items(), key=lambda x: -x[1][0]):
                out.append(f"--- {count}x {sig}\n{first}")
            pytest.fail("\n".join(out), pytrace=False)
        assert kc.pushes == rc.pushes == [], f"unexpected push messages: keel {kc.pushes[:3]} redis {rc.pushes[:3]}"
    assert keel.alive()
