"""Seeded random command streams for the differential test (Redis 7 semantics).

A stream is a list of Step(args, mode). `mode` says how the two servers' replies
are compared:
  exact        identical reply (type and value)
  ttl          integers >= 0 may differ by 1 (seconds), anything else exact
  pttl         integers >= 0 may differ by 1000 (milliseconds), anything else exact
  sorted       arrays compared after sorting their elements (KEYS)
  scan         not sent as is: SCAN is iterated to cursor 0 on each server and the
               sets of keys are compared (errors are compared exactly)
  randomkey    nil-ness must agree; a returned key must exist on that server
  unordered    arrays/sets compared as multisets (SMEMBERS, SINTER, HKEYS, HVALS...:
               their order depends on each server's encoding)
  map          HGETALL: compared as a set of (field, value) pairs (a flat array in
               RESP2, a map in RESP3)
  rand         SRANDMEMBER / HRANDFIELD / ZRANDMEMBER: errors and nil must agree;
               otherwise same reply shape and length, every element (and value or
               score) present in that server's own key, distinct for count >= 0
  spop         SPOP: like rand, then each server's popped members must have been
               in its set; the reference is then made to pop what keel popped so
               the keyspaces stay equal
  kscan        SSCAN / HSCAN / ZSCAN iterated to cursor 0; the sets of elements (or
               pairs) are compared

Data-type families (hashes, sets, zsets, lists, multi) draw their multi-key
commands' keys from one hash tag ({t}), so that they run on one shard of a
keel with several; the xshard family sends multi-key data-type commands over keys
of every shard. MULTI/EXEC bodies only hold commands compared exactly.

Relative expiries are drawn from huge ranges so that no key expires during the
test and no GT/LT comparison is close enough for the few milliseconds between
the two servers to flip it. Absolute expiries in the past are only used where
Redis deletes the key at once (EXPIREAT family, GETEX), never in SET.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

KEYS = [
    b"k1", b"k2", b"k3", b"num", b"flt", b"str",
    b"{user1}.a", b"{user1}.b", b"{user1}.c", b"{u2}x", b"{u2}y",
    b"bin\x00\xff key", b"",
]

INTS = [b"0", b"1", b"-1", b"2", b"42", b"-17", b"100", b"1000000",
        b"9223372036854775807", b"-9223372036854775808", b"9223372036854775806",
        b"-9223372036854775807", b"4611686018427387904"]
OVERFLOW = [b"9223372036854775808", b"-9223372036854775809", b"18446744073709551616",
            b"99999999999999999999999"]
FLOATS = [b"3.14", b"-0.5", b"1e3", b"1.5e-3", b"0.1", b"0.2", b"5.0e3", b"1e308",
          b"-1e308", b"2.5", b"10.5", b"1.7976931348623157e308", b"4.9e-324", b"-0",
          b"0.0", b"123456789.123456789"]
NOT_FLOATS = [b"inf", b"-inf", b"nan", b"+inf", b"1e309", b"1.2.3", b"0x10", b"1,5"]
BAD_NUMS = [b" 1", b"1 ", b"01", b"+1", b"0x10", b"1.", b".5", b"--1", b"", b"abc",
            b"1e3", b"3.0", b"1\x00"]
WORDS = [b"", b"a", b"abc", b"hello world", b"OK", b"nil", b"-ERR not an error",
         b"+PONG", b"\r\n", b"*1\r\n$1\r\nx\r\n", b"\xff\xfe\x00\x01", b"caf\xc3\xa9"]
KEY_PATTERNS = [b"*", b"k*", b"{user1}*", b"\\{user1\\}*", b"?1", b"k[12]", b"k[^1]",
                b"*a*", b"{u2}?", b"nomatch*", b"bin*", b"*\\**", b"[a-k]*", b""]
TYPES = [b"string", b"hash", b"list", b"set", b"zset", b"stream", b"nosuchtype"]

# Data-type keys. TYPED_KEYS share the hash tag {t} (one shard, so multi-key
# commands work on a keel with several shards); UNTAGGED_KEYS spread over shards.
TYPED_KEYS = {
    "h": [b"{t}h1", b"{t}h2", b"{t}h3"],
    "s": [b"{t}s1", b"{t}s2", b"{t}s3", b"{t}s4"],
    "z": [b"{t}z1", b"{t}z2", b"{t}z3", b"{t}z4"],
    "l": [b"{t}l1", b"{t}l2", b"{t}l3"],
}
UNTAGGED_KEYS = {
    "h": [b"h:a", b"h:b", b"h:c"],
    "s": [b"s:a", b"s:b", b"s:c"],
    "z": [b"z:a", b"z:b", b"z:c"],
    "l": [b"l:a", b"l:b", b"l:c"],
}
ALL_TYPED_KEYS = [k for kind in "hszl" for k in TYPED_KEYS[kind] + UNTAGGED_KEYS[kind]]
TAGGED_ALL = [k for kind in "hszl" for k in TYPED_KEYS[kind]] + [b"{t}str", b"{t}none"]
FIELDS = [b"f1", b"f2", b"f3", b"f4", b"f5", b"", b"n", b"\xff\x00f"]
MEMBERS = [b"a", b"b", b"c", b"d", b"1", b"2", b"3", b"-1", b"10", b"", b"x y", b"\x00\xff"]
ZMEMBERS = [b"a", b"b", b"c", b"d", b"e", b"aa", b"ab", b"", b"B", b"\xff", b"1"]


@dataclass
class Step:
    args: tuple
    mode: str = "exact"


class Gen:
    def __init__(self, seed: int):
        self.r = random.Random(seed)
        self.now = int(time.time())
        self.xshard = False

    # -- value pools -------------------------------------------------------------
    def key(self) -> bytes:
        return self.r.choice(KEYS)

    def keys(self, lo=1, hi=4) -> list:
        return [self.key() for _ in range(self.r.randint(lo, hi))]

    def value(self) -> bytes:
        r = self.r
        x = r.random()
        if x < 0.25:
            return r.choice(INTS)
        if x < 0.30:
            return r.choice(OVERFLOW)
        if x < 0.45:
            return r.choice(FLOATS)
        if x < 0.50:
            return r.choice(NOT_FLOATS + BAD_NUMS)
        if x < 0.65:
            return r.choice(WORDS)
        if x < 0.80:
            return str(r.randint(-10**6, 10**6)).encode()
        if x < 0.88:
            return bytes(r.randrange(256) for _ in range(r.randint(0, 20)))
        if x < 0.96:
            return "".join(r.choice("abcdefxyz0123456789 ") for _ in range(r.randint(1, 30))).encode()
        return r.choice([b"x", b"ab", b"0123456789"]) * r.randint(10, 60)

    def incr_arg(self) -> bytes:
        r = self.r
        x = r.random()
        if x < 0.6:
            return str(r.randint(-1000, 1000)).encode()
        if x < 0.8:
            return r.choice(INTS)
        if x < 0.9:
            return r.choice(OVERFLOW)
        return r.choice(BAD_NUMS + FLOATS[:3])

    def float_arg(self) -> bytes:
        r = self.r
        x = r.random()
        if x < 0.5:
            return r.choice(FLOATS)
        if x < 0.7:
            return str(r.randint(-1000, 1000)).encode()
        if x < 0.85:
            return ("%.*f" % (r.randint(0, 6), r.uniform(-1000, 1000))).encode()
        return r.choice(NOT_FLOATS + BAD_NUMS + OVERFLOW)

    def rel_seconds(self) -> bytes:
        """A relative expiry in seconds: huge (never expires in a test) or invalid."""
        r = self.r
        x = r.random()
        if x < 0.85:
            return str(r.randint(10**5, 10**8)).encode()
        return r.choice([b"0", b"-1", b"-100", b"abc", b"1.5", b"9223372036854775807",
                         b"9223372036854775", b"", b"99999999999999999999"])

    def rel_millis(self) -> bytes:
        r = self.r
        x = r.random()
        if x < 0.85:
            return str(r.randint(10**8, 10**11)).encode()
        return r.choice([b"0", b"-1", b"abc", b"1.5", b"9223372036854775807",
                         b"9223372036854775806", b""])

    def abs_seconds(self, allow_past: bool) -> bytes:
        r = self.r
        x = r.random()
        if x < 0.8 or not allow_past:
            return str(self.now + r.randint(10**5, 10**8)).encode()
        if x < 0.93:
            return str(r.choice([1, 100, self.now - 10**5])).encode()
        return r.choice([b"0", b"-1", b"abc", b"9223372036854775807"])

    def abs_millis(self, allow_past: bool) -> bytes:
        r = self.r
        x = r.random()
        if x < 0.8 or not allow_past:
            return str(self.now * 1000 + r.randint(10**8, 10**11)).encode()
        if x < 0.93:
            return str(r.choice([1, 1000, (self.now - 10**5) * 1000])).encode()
        return r.choice([b"0", b"-1", b"abc", b"9223372036854775807"])

    def maybe_case(self, name: str) -> bytes:
        r = self.r.random()
        if r < 0.85:
            return name.encode()
        if r < 0.95:
            return name.lower().encode()
        return "".join(c.lower() if self.r.random() < 0.5 else c for c in name).encode()

    # -- string commands --------------------------------------------------------
    def set_options(self, for_set: bool) -> list:
        r = self.r
        opts = []
        n = r.choice([0, 0, 1, 1, 1, 2, 2, 3])
        for _ in range(n):
            c = r.random()
            if c < 0.18:
                opts += [b"EX", self.rel_seconds()]
            elif c < 0.3:
                opts += [b"PX", self.rel_millis()]
            elif c < 0.4:
                opts += [b"EXAT", self.abs_seconds(allow_past=not for_set)]
            elif c < 0.48:
                opts += [b"PXAT", self.abs_millis(allow_past=not for_set)]
            elif c < 0.6:
                opts += [b"NX"] if for_set else [b"PERSIST"]
            elif c < 0.72:
                opts += [b"XX"] if for_set else [b"EX", self.rel_seconds()]
            elif c < 0.82:
                opts += [b"KEEPTTL"] if for_set else [b"PERSIST"]
            elif c < 0.92:
                opts += [b"GET"] if for_set else [b"PX", self.rel_millis()]
            elif c < 0.96:
                opts += [r.choice([b"ex", b"nx", b"xx", b"get", b"keepttl", b"px"])]
            else:
                opts += [r.choice([b"BOGUS", b"EX"])]
        return opts

    def g_set(self):
        return Step((self.maybe_case("SET"), self.key(), self.value(), *self.set_options(True)))

    def g_get(self):
        return Step((self.maybe_case("GET"), self.key()))

    def g_setnx(self):
        return Step((b"SETNX", self.key(), self.value()))

    def g_setex(self):
        r = self.r
        if r.random() < 0.5:
            return Step((b"SETEX", self.key(), self.rel_seconds(), self.value()))
        return Step((b"PSETEX", self.key(), self.rel_millis(), self.value()))

    def g_mget(self):
        return Step((b"MGET", *self.keys(1, 6)))

    def g_mset(self):
        pairs = []
        for k in self.keys(1, 4):
            pairs += [k, self.value()]
        if self.r.random() < 0.05:
            pairs.append(self.key())  # odd number of arguments
        return Step((self.r.choice([b"MSET", b"MSETNX"]), *pairs))

    def g_incr(self):
        r = self.r
        c = r.random()
        if c < 0.3:
            return Step((r.choice([b"INCR", b"DECR"]), self.key()))
        if c < 0.65:
            return Step((r.choice([b"INCRBY", b"DECRBY"]), self.key(), self.incr_arg()))
        return Step((b"INCRBYFLOAT", self.key(), self.float_arg()))

    def g_set_number(self):
        """Put a number in a key, so that INCR-family commands hit numbers often."""
        r = self.r
        v = r.choice([r.choice(INTS), r.choice(FLOATS), str(r.randint(-100, 100)).encode(),
                      r.choice(OVERFLOW)])
        return Step((b"SET", r.choice([b"num", b"flt", b"k1", b"{user1}.a"]), v))

    def g_append(self):
        return Step((b"APPEND", self.key(), self.value()))

    def g_strlen(self):
        return Step((b"STRLEN", self.key()))

    def g_getrange(self):
        r = self.r
        ints = [0, 1, 2, 5, -1, -2, -5, 100, -100, 9223372036854775807, -9223372036854775808]
        a, b = r.choice(ints), r.choice(ints)
        args = [b"GETRANGE", self.key(), str(a).encode(), str(b).encode()]
        if r.random() < 0.05:
            args[2] = b"x"
        return Step(tuple(args))

    def g_setrange(self):
        r = self.r
        off = r.choice([0, 1, 3, 10, 50, 200, -1, 536870911, 536870912])
        val = self.value()
        if off > 10000:
            # never allocate 512MB: only an empty value (no write) or one that is too long
            val = r.choice([b"", b"xx"]) if off == 536870911 else r.choice([b"", b"x"])
        return Step((b"SETRANGE", self.key(), str(off).encode(), val))

    def g_lcs(self):
        r = self.r
        opts = r.choice([[], [b"LEN"], [b"IDX"], [b"IDX", b"WITHMATCHLEN"],
                         [b"IDX", b"MINMATCHLEN", r.choice([b"0", b"2", b"4", b"-1", b"x"])],
                         [b"IDX", b"MINMATCHLEN", b"2", b"WITHMATCHLEN"], [b"LEN", b"IDX"], [b"BAD"]])
        a, b = self.key(), self.key()
        if self.xshard or r.random() < 0.7:
            a, b = r.choice([(b"{user1}.a", b"{user1}.b"), (b"{user1}.b", b"{user1}.c"), (b"k1", b"k1")])
        return Step((b"LCS", a, b, *opts))

    def g_getdel(self):
        return Step((b"GETDEL", self.key()))

    def g_getex(self):
        return Step((b"GETEX", self.key(), *self.set_options(False)))

    def g_getset(self):
        return Step((b"GETSET", self.key(), self.value()))

    # -- key commands -------------------------------------------------------------
    def g_del(self):
        return Step((self.r.choice([b"DEL", b"UNLINK"]), *self.keys(1, 4)))

    def g_exists(self):
        return Step((self.r.choice([b"EXISTS", b"TOUCH"]), *self.keys(1, 4)))

    def expire_flags(self) -> list:
        r = self.r
        c = r.random()
        if c < 0.5:
            return []
        if c < 0.9:
            return [r.choice([b"NX", b"XX", b"GT", b"LT", b"nx", b"gt"])]
        return r.sample([b"NX", b"XX", b"GT", b"LT", b"BOGUS"], 2)

    def g_expire(self):
        r = self.r
        cmd = r.choice([b"EXPIRE", b"PEXPIRE", b"EXPIREAT", b"PEXPIREAT"])
        t = {b"EXPIRE": self.rel_seconds, b"PEXPIRE": self.rel_millis,
             b"EXPIREAT": lambda: self.abs_seconds(True),
             b"PEXPIREAT": lambda: self.abs_millis(True)}[cmd]()
        return Step((cmd, self.key(), t, *self.expire_flags()))

    def g_ttl(self):
        r = self.r
        c = r.choice([b"TTL", b"PTTL", b"EXPIRETIME", b"PEXPIRETIME"])
        mode = "pttl" if c.startswith(b"P") else "ttl"
        return Step((c, self.key()), mode)

    def g_persist(self):
        return Step((b"PERSIST", self.key()))

    def g_type(self):
        return Step((b"TYPE", self.key()))

    def g_rename(self):
        return Step((self.r.choice([b"RENAME", b"RENAMENX"]), self.key(), self.key()))

    def g_copy(self):
        r = self.r
        args = [b"COPY", self.key(), self.key()]
        if r.random() < 0.2:
            args += [b"DB", r.choice([b"0", b"0", b"abc", b"-1", b"99999"])]
        if r.random() < 0.4:
            args.append(b"REPLACE")
        if r.random() < 0.03:
            args.append(b"BOGUS")
        return Step(tuple(args))

    def g_move(self):
        return Step((b"MOVE", self.key(), self.r.choice([b"1", b"1", b"15", b"0", b"16", b"-1", b"x", b"4294967296"])))

    def g_keys(self):
        return Step((b"KEYS", self.r.choice(KEY_PATTERNS)), "sorted")

    def g_scan(self):
        r = self.r
        args = [b"SCAN", b"0"]
        if r.random() < 0.4:
            args += [b"MATCH", r.choice(KEY_PATTERNS)]
        if r.random() < 0.4:
            args += [b"COUNT", r.choice([b"1", b"2", b"10", b"1000", b"0", b"-1", b"abc"])]
        if r.random() < 0.3:
            args += [b"TYPE", r.choice(TYPES)]
        if r.random() < 0.03:
            args[1] = r.choice([b"abc", b"1x", b"18446744073709551616"])  # invalid cursors
            return Step(tuple(args), "exact")
        if r.random() < 0.02:
            args.append(b"BOGUS")
        return Step(tuple(args), "scan")

    def g_randomkey(self):
        return Step((b"RANDOMKEY",), "randomkey")

    def g_dbsize(self):
        return Step((b"DBSIZE",))

    def g_flushdb(self):
        if self.r.random() < 0.25:  # rare: keeps the keyspace interesting
            return Step((b"FLUSHDB", *self.r.choice([[], [b"SYNC"], [b"ASYNC"]])))
        return Step((b"DBSIZE",))

    # -- other types, only to create wrong-type keys ---------------------------------
    def g_othertype(self):
        r = self.r
        k = self.key()
        c = r.random()
        if c < 0.34:
            return Step((b"HSET", k, b"f", self.value(), *([b"g", b"1"] if r.random() < 0.3 else [])))
        if c < 0.67:
            return Step((b"LPUSH", k, self.value(), *([b"x"] if r.random() < 0.3 else [])))
        return Step((b"SADD", k, self.value(), *([b"m"] if r.random() < 0.3 else [])))

    # -- connection and error paths ------------------------------------------------
    def g_connection(self):
        r = self.r
        return Step(r.choice([
            (b"PING",), (b"PING", self.value()), (b"ping",), (b"ECHO", self.value()),
            (b"SELECT", b"0"), (b"SELECT", b"16"), (b"SELECT", b"-1"), (b"SELECT", b"abc"),
            (b"SELECT", b"99999999999999999999"), (b"PING", b"a", b"b"), (b"ECHO",),
            (b"ECHO", b"a", b"b"), (b"SELECT",),
        ]))

    def g_bad_arity(self):
        r = self.r
        k = self.key()
        return Step(r.choice([
            (b"GET",), (b"GET", k, k), (b"SET", k), (b"SET",), (b"SETNX", k),
            (b"SETEX", k, b"10"), (b"PSETEX", k), (b"MGET",), (b"MSET",), (b"MSET", k),
            (b"MSETNX", k), (b"INCR",), (b"INCR", k, k), (b"INCRBY", k), (b"DECRBY", k),
            (b"INCRBYFLOAT", k), (b"APPEND", k), (b"STRLEN",), (b"GETRANGE", k, b"0"),
            (b"SETRANGE", k, b"0"), (b"GETDEL",), (b"GETEX",), (b"GETSET", k),
            (b"DEL",), (b"UNLINK",), (b"EXISTS",), (b"EXPIRE", k), (b"PEXPIRE", k),
            (b"EXPIREAT", k), (b"PEXPIREAT", k), (b"TTL",), (b"PTTL", k, k),
            (b"EXPIRETIME",), (b"PEXPIRETIME",), (b"PERSIST",), (b"TYPE",),
            (b"RENAME", k), (b"RENAMENX", k), (b"COPY", k), (b"KEYS",), (b"KEYS", b"*", b"x"),
            (b"SCAN",), (b"RANDOMKEY", k), (b"TOUCH",), (b"DBSIZE", k), (b"FLUSHDB", b"BOGUS"),
            (b"DECR",), (b"DECR", k, k), (b"GETEX", k, b"EX"), (b"HSET", k, b"f"),
            (b"LPUSH", k), (b"SADD", k),
        ]))

    def g_unknown(self):
        r = self.r
        return Step(r.choice([
            # no NUL bytes here: redis prints these names and arguments as C strings
            (b"FOO",), (b"FOO", b"a", b"b"), (b"GETX", r.choice(KEYS[:-2])), (b"",), (b"", b"x"),
            (b"SET\xff", b"a", b"b"), (b"notacommand", b"x" * 200),
            (b"CONFIG", b"NOSUCHSUB"),
        ]))

    # == data types ====================================================================
    # Single-key commands use any key of the right kind (tagged or not, so every
    # shard gets work); multi-key commands take theirs from one hash tag unless
    # the family is xshard.

    def tkey(self, kind: str) -> bytes:
        """A key for a single-key command of `kind` (h s z l); sometimes another type's."""
        r = self.r
        if r.random() < 0.8:
            return r.choice(TYPED_KEYS[kind] + UNTAGGED_KEYS[kind])
        return r.choice(ALL_TYPED_KEYS + [b"k1", b"num"])

    def gkey(self, kind: str) -> bytes:
        """A key for a multi-key command: one hash tag, unless xshard."""
        r = self.r
        if self.xshard:
            return r.choice(UNTAGGED_KEYS[kind] + UNTAGGED_KEYS[kind] + TYPED_KEYS[kind] + [b"k1", b"k2"])
        if r.random() < 0.85:
            return r.choice(TYPED_KEYS[kind])
        return r.choice(TAGGED_ALL)

    def gkeys(self, kind: str, lo=1, hi=4) -> list:
        return [self.gkey(kind) for _ in range(self.r.randint(lo, hi))]

    def numkeys(self, keys: list) -> bytes:
        """numkeys for SINTERCARD, ZUNION..., LMPOP: mostly right. Too many keys
        (the next argument read as a key) only in xshard: on one slot the extra
        "key" is on another shard, where keel answers CROSSSLOT like Redis Cluster."""
        r = self.r
        if r.random() < 0.9:
            return str(len(keys)).encode()
        bad = [0, -1, len(keys) + 1] if self.xshard else [0, -1]
        return str(r.choice(bad)).encode()

    def field(self) -> bytes:
        return self.r.choice(FIELDS)

    def member(self) -> bytes:
        return self.r.choice(MEMBERS)

    def zmember(self) -> bytes:
        return self.r.choice(ZMEMBERS)

    def hvalue(self) -> bytes:
        r = self.r
        x = r.random()
        if x < 0.35:
            return str(r.randint(-100, 100)).encode()
        if x < 0.5:
            return r.choice(FLOATS)
        return self.value()

    def count_arg(self, lo=-6, hi=8) -> bytes:
        r = self.r
        x = r.random()
        if x < 0.85:
            return str(r.randint(lo, hi)).encode()
        return r.choice([b"abc", b"1.5", b"", b"-9223372036854775808", b"99999999999999999999"])

    def index(self) -> bytes:
        r = self.r
        x = r.random()
        if x < 0.85:
            return str(r.randint(-7, 7)).encode()
        return r.choice([b"100", b"-100", b"9223372036854775807", b"-9223372036854775808", b"x", b"1.5", b""])

    def score(self) -> bytes:
        r = self.r
        x = r.random()
        if x < 0.45:
            return str(r.randint(-5, 20)).encode()
        if x < 0.75:
            return r.choice([b"0.1", b"0.2", b"0.3", b"1.5", b"-2.5", b"3.0", b"1e3", b"1e-5",
                             b"123456789.123456789", b"0.1e1", b"-0", b"1.7976931348623157e308"])
        if x < 0.87:
            return r.choice([b"inf", b"-inf", b"+inf", b"INF", b"-Infinity", b"1e308", b"-1e308"])
        return r.choice([b"nan", b"abc", b"", b"1.2.3", b"0x10", b"1e400", b" 1", b"(1"])

    def score_bound(self) -> bytes:
        r = self.r
        x = r.random()
        if x < 0.5:
            v = str(r.randint(-5, 20)).encode()
            return (b"(" + v) if r.random() < 0.3 else v
        if x < 0.8:
            return r.choice([b"-inf", b"+inf", b"inf", b"(-inf", b"(+inf", b"1.5", b"(0.3", b"0.1"])
        return r.choice([b"abc", b"(", b"", b"(abc", b"nan", b"[1"])

    def lex_bound(self) -> bytes:
        r = self.r
        x = r.random()
        if x < 0.85:
            return r.choice([b"-", b"+", b"[a", b"(a", b"[b", b"(b", b"[c", b"(aa", b"[aa", b"[",
                             b"(", b"[B", b"[\xff", b"(e"])
        return r.choice([b"a", b"", b"b", b"-a", b"+b"])

    # -- hashes ---------------------------------------------------------------------------
    def h_set(self):
        r = self.r
        args = [r.choice([b"HSET", b"HSET", b"HMSET"]), self.tkey("h")]
        for _ in range(r.randint(1, 4)):
            args += [self.field(), self.hvalue()]
        if r.random() < 0.04:
            args.pop()
        return Step(tuple(args))

    def h_setnx(self):
        return Step((b"HSETNX", self.tkey("h"), self.field(), self.hvalue()))

    def h_get(self):
        r = self.r
        c = r.random()
        if c < 0.4:
            return Step((b"HGET", self.tkey("h"), self.field()))
        if c < 0.6:
            return Step((b"HMGET", self.tkey("h"), *[self.field() for _ in range(r.randint(1, 4))]))
        if c < 0.75:
            return Step((b"HEXISTS", self.tkey("h"), self.field()))
        if c < 0.88:
            return Step((b"HSTRLEN", self.tkey("h"), self.field()))
        return Step((b"HLEN", self.tkey("h")))

    def h_getall(self):
        r = self.r
        c = r.random()
        if c < 0.5:
            return Step((b"HGETALL", self.tkey("h")), "map")
        return Step((r.choice([b"HKEYS", b"HVALS"]), self.tkey("h")), "unordered")

    def h_del(self):
        return Step((b"HDEL", self.tkey("h"), *[self.field() for _ in range(self.r.randint(1, 3))]))

    def h_incr(self):
        r = self.r
        if r.random() < 0.55:
            return Step((b"HINCRBY", self.tkey("h"), self.field(), self.incr_arg()))
        return Step((b"HINCRBYFLOAT", self.tkey("h"), self.field(), self.float_arg()))

    def h_rand(self):
        r = self.r
        args = [b"HRANDFIELD", self.tkey("h")]
        if r.random() < 0.75:
            args.append(self.count_arg())
            if r.random() < 0.5:
                args.append(r.choice([b"WITHVALUES", b"withvalues", b"WITHVALUES", b"BOGUS"]))
        return Step(tuple(args), "rand")

    def h_scan(self):
        return self._kscan(b"HSCAN", self.tkey("h"), [b"f*", b"f[12]", b"*", b"n", b""])

    def _kscan(self, cmd, key, patterns):
        r = self.r
        args = [cmd, key, b"0"]
        if r.random() < 0.4:
            args += [b"MATCH", r.choice(patterns)]
        if r.random() < 0.4:
            args += [b"COUNT", r.choice([b"1", b"2", b"10", b"1000"])]
        if r.random() < 0.05:
            return Step(tuple(args[:2] + [r.choice([b"abc", b"-1"])] + args[3:]), "exact")
        if r.random() < 0.05:
            args += [b"COUNT", r.choice([b"0", b"-1", b"abc"])]
            return Step(tuple(args), "exact")
        return Step(tuple(args), "kscan")

    # -- sets -------------------------------------------------------------------------------
    def s_add(self):
        r = self.r
        return Step((r.choice([b"SADD", b"SADD", b"SREM"]), self.tkey("s"),
                     *[self.member() for _ in range(r.randint(1, 5))]))

    def s_query(self):
        r = self.r
        c = r.random()
        if c < 0.3:
            return Step((b"SISMEMBER", self.tkey("s"), self.member()))
        if c < 0.5:
            return Step((b"SMISMEMBER", self.tkey("s"), *[self.member() for _ in range(r.randint(1, 4))]))
        if c < 0.7:
            return Step((b"SCARD", self.tkey("s")))
        return Step((b"SMEMBERS", self.tkey("s")), "unordered")

    def s_rand(self):
        r = self.r
        if r.random() < 0.45:
            args = [b"SPOP", self.tkey("s")]
            if r.random() < 0.6:
                args.append(self.count_arg(-1, 5))
            return Step(tuple(args), "spop")
        args = [b"SRANDMEMBER", self.tkey("s")]
        if r.random() < 0.75:
            args.append(self.count_arg())
        return Step(tuple(args), "rand")

    def s_algebra(self):
        r = self.r
        c = r.random()
        if c < 0.45:
            return Step((r.choice([b"SINTER", b"SUNION", b"SDIFF"]), *self.gkeys("s", 1, 4)), "unordered")
        if c < 0.75:
            return Step((r.choice([b"SINTERSTORE", b"SUNIONSTORE", b"SDIFFSTORE"]), self.gkey("s"),
                         *self.gkeys("s", 1, 3)))
        keys = self.gkeys("s", 1, 3)
        args = [b"SINTERCARD", self.numkeys(keys), *keys]
        if r.random() < 0.4:
            args += [b"LIMIT", self.count_arg(-1, 4)]
        return Step(tuple(args))

    def s_move(self):
        return Step((b"SMOVE", self.gkey("s"), self.gkey("s"), self.member()))

    def s_scan(self):
        return self._kscan(b"SSCAN", self.tkey("s"), [b"a*", b"[ab]", b"*", b"1*", b"?"])

    # -- sorted sets --------------------------------------------------------------------------
    def z_add(self):
        r = self.r
        args = [b"ZADD", self.tkey("z")]
        flags = [b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR", b"nx", b"ch"]
        for _ in range(r.choice([0, 0, 0, 1, 1, 2])):
            args.append(r.choice(flags))
        for _ in range(r.choice([1, 1, 1, 2, 3]) if b"INCR" not in args else 1):
            args += [self.score(), self.zmember()]
        if r.random() < 0.04:
            args.pop()
        return Step(tuple(args))

    def z_incr(self):
        return Step((b"ZINCRBY", self.tkey("z"), self.score(), self.zmember()))

    def z_rem(self):
        return Step((b"ZREM", self.tkey("z"), *[self.zmember() for _ in range(self.r.randint(1, 3))]))

    def z_query(self):
        r = self.r
        k = self.tkey("z")
        return Step(r.choice([
            (b"ZSCORE", k, self.zmember()),
            (b"ZMSCORE", k, *[self.zmember() for _ in range(r.randint(1, 3))]),
            (b"ZCARD", k),
            (b"ZCOUNT", k, self.score_bound(), self.score_bound()),
            (b"ZLEXCOUNT", k, self.lex_bound(), self.lex_bound()),
            (b"ZRANK", k, self.zmember()),
            (b"ZREVRANK", k, self.zmember()),
        ]))

    def _limit(self):
        r = self.r
        if r.random() < 0.3:
            return [b"LIMIT", str(r.randint(-1, 4)).encode(), str(r.randint(-1, 5)).encode()]
        return []

    def z_range(self):
        r = self.r
        k = self.tkey("z")
        c = r.random()
        ws = [b"WITHSCORES"] if r.random() < 0.4 else []
        if c < 0.35:
            by = r.choice([None, None, b"BYSCORE", b"BYLEX"])
            if by == b"BYSCORE":
                lo, hi = self.score_bound(), self.score_bound()
            elif by == b"BYLEX":
                lo, hi = self.lex_bound(), self.lex_bound()
            else:
                lo, hi = self.index(), self.index()
            args = [b"ZRANGE", k, lo, hi]
            if by:
                args.append(by)
            if r.random() < 0.35:
                args.append(b"REV")
            if by or r.random() < 0.1:
                args += self._limit()
            if by != b"BYLEX" or r.random() < 0.1:
                args += ws
            return Step(tuple(args))
        if c < 0.5:
            return Step((r.choice([b"ZREVRANGE", b"ZRANGE"]), k, self.index(), self.index(), *ws))
        if c < 0.75:
            cmd = r.choice([b"ZRANGEBYSCORE", b"ZREVRANGEBYSCORE"])
            return Step((cmd, k, self.score_bound(), self.score_bound(), *ws, *self._limit()))
        cmd = r.choice([b"ZRANGEBYLEX", b"ZREVRANGEBYLEX"])
        return Step((cmd, k, self.lex_bound(), self.lex_bound(), *self._limit()))

    def z_rangestore(self):
        r = self.r
        args = [b"ZRANGESTORE", self.gkey("z"), self.gkey("z")]
        by = r.choice([None, b"BYSCORE", b"BYLEX"])
        if by == b"BYSCORE":
            args += [self.score_bound(), self.score_bound(), by]
        elif by == b"BYLEX":
            args += [self.lex_bound(), self.lex_bound(), by]
        else:
            args += [self.index(), self.index()]
        if r.random() < 0.3:
            args.append(b"REV")
        if by:
            args += self._limit()
        return Step(tuple(args))

    def z_remrange(self):
        r = self.r
        k = self.tkey("z")
        return Step(r.choice([
            (b"ZREMRANGEBYSCORE", k, self.score_bound(), self.score_bound()),
            (b"ZREMRANGEBYRANK", k, self.index(), self.index()),
            (b"ZREMRANGEBYLEX", k, self.lex_bound(), self.lex_bound()),
        ]))

    def z_pop(self):
        r = self.r
        args = [r.choice([b"ZPOPMIN", b"ZPOPMAX"]), self.tkey("z")]
        if r.random() < 0.5:
            args.append(self.count_arg(-1, 4))
        return Step(tuple(args))

    def z_mpop(self):
        r = self.r
        keys = self.gkeys("z", 1, 3)
        if r.random() < 0.1:
            keys[0] = self.gkey("l")
        n = str(len(keys)).encode() if r.random() < 0.9 else r.choice([b"0", b"-1", b"9", b"x"])
        args = [b"ZMPOP", n, *keys, r.choice([b"MIN", b"MAX", b"min", b"LEFT"])]
        if r.random() < 0.5:
            args += [b"COUNT", self.count_arg(0, 3)]
        return Step(tuple(args))

    def z_rand(self):
        r = self.r
        args = [b"ZRANDMEMBER", self.tkey("z")]
        if r.random() < 0.75:
            args.append(self.count_arg())
            if r.random() < 0.5:
                args.append(r.choice([b"WITHSCORES", b"withscores", b"BOGUS"]))
        return Step(tuple(args), "rand")

    def _weights_aggregate(self, n):
        r = self.r
        out = []
        if r.random() < 0.35:
            out.append(b"WEIGHTS")
            out += [r.choice([b"1", b"2", b"0", b"-1", b"0.5", b"inf", b"abc"]) for _ in range(n)]
        if r.random() < 0.35:
            out += [b"AGGREGATE", r.choice([b"SUM", b"MIN", b"MAX", b"max", b"AVG"])]
        return out

    def z_setops(self):
        r = self.r
        keys = self.gkeys("z", 1, 3)
        if r.random() < 0.2:
            keys[0] = self.gkey("s")  # sets take part in ZUNION/ZINTER with score 1
        numk = self.numkeys(keys)
        c = r.random()
        if c < 0.45:
            cmd = r.choice([b"ZUNIONSTORE", b"ZINTERSTORE", b"ZDIFFSTORE"])
            extra = self._weights_aggregate(len(keys)) if cmd != b"ZDIFFSTORE" else []
            return Step((cmd, self.gkey("z"), numk, *keys, *extra))
        cmd = r.choice([b"ZUNION", b"ZINTER", b"ZDIFF"])
        extra = self._weights_aggregate(len(keys)) if cmd != b"ZDIFF" else []
        if r.random() < 0.5:
            extra.append(b"WITHSCORES")
        return Step((cmd, numk, *keys, *extra))

    def z_intercard(self):
        r = self.r
        keys = self.gkeys("z", 1, 3)
        if r.random() < 0.2:
            keys[0] = self.gkey("s")
        extra = []
        if r.random() < 0.5:
            extra = [b"LIMIT", r.choice([b"0", b"1", b"2", b"5", b"-1", b"x"])]
        if r.random() < 0.05:
            extra = [r.choice([b"WEIGHTS", b"LIMIT", b"WITHSCORES"])]
        return Step((b"ZINTERCARD", self.numkeys(keys), *keys, *extra))

    def z_scan(self):
        return self._kscan(b"ZSCAN", self.tkey("z"), [b"a*", b"*", b"[ab]*", b"?"])

    # -- lists ---------------------------------------------------------------------------------
    def l_push(self):
        r = self.r
        cmd = r.choice([b"LPUSH", b"RPUSH", b"LPUSH", b"RPUSH", b"LPUSHX", b"RPUSHX"])
        return Step((cmd, self.tkey("l"), *[self.member() for _ in range(r.randint(1, 5))]))

    def l_pop(self):
        r = self.r
        args = [r.choice([b"LPOP", b"RPOP"]), self.tkey("l")]
        if r.random() < 0.45:
            args.append(self.count_arg(-1, 4))
        return Step(tuple(args))

    def l_read(self):
        r = self.r
        k = self.tkey("l")
        c = r.random()
        if c < 0.45:
            return Step((b"LRANGE", k, self.index(), self.index()))
        if c < 0.65:
            return Step((b"LINDEX", k, self.index()))
        if c < 0.8:
            return Step((b"LLEN", k))
        args = [b"LPOS", k, self.member()]
        for _ in range(r.choice([0, 1, 1, 2])):
            opt = r.choice([b"RANK", b"COUNT", b"MAXLEN"])
            val = {b"RANK": [b"1", b"-1", b"2", b"-2", b"0", b"-9223372036854775808"],
                   b"COUNT": [b"0", b"1", b"2", b"-1"],
                   b"MAXLEN": [b"0", b"1", b"3", b"-1"]}[opt]
            args += [opt, r.choice(val)]
        return Step(tuple(args))

    def l_edit(self):
        r = self.r
        k = self.tkey("l")
        c = r.random()
        if c < 0.25:
            return Step((b"LSET", k, self.index(), self.member()))
        if c < 0.5:
            return Step((b"LREM", k, str(r.randint(-3, 3)).encode(), self.member()))
        if c < 0.7:
            return Step((b"LTRIM", k, self.index(), self.index()))
        return Step((b"LINSERT", k, r.choice([b"BEFORE", b"AFTER", b"before", b"MIDDLE"]),
                     self.member(), self.member()))

    def l_move(self):
        r = self.r
        side = lambda: r.choice([b"LEFT", b"RIGHT", b"left", b"UP"]) if r.random() < 0.05 \
            else r.choice([b"LEFT", b"RIGHT"])
        c = r.random()
        if c < 0.45:
            return Step((b"LMOVE", self.gkey("l"), self.gkey("l"), side(), side()))
        if c < 0.6:
            return Step((b"RPOPLPUSH", self.gkey("l"), self.gkey("l")))
        keys = self.gkeys("l", 1, 3)
        args = [b"LMPOP", self.numkeys(keys), *keys, r.choice([b"LEFT", b"RIGHT", b"right"])]
        if r.random() < 0.5:
            args += [b"COUNT", self.count_arg(0, 4)]
        return Step(tuple(args))

    # -- keyspace commands on data-type keys ------------------------------------------------------
    def t_keyops(self):
        r = self.r
        kind = r.choice("hszl")
        c = r.random()
        if c < 0.3:
            return Step((b"TYPE", self.tkey(kind)))
        if c < 0.45:
            return Step((r.choice([b"EXISTS", b"DEL"]), *[self.gkey(kind) for _ in range(r.randint(1, 3))]))
        if c < 0.65:
            return Step((r.choice([b"RENAME", b"RENAMENX"]), self.gkey(kind), self.gkey(kind)))
        if c < 0.85:
            args = [b"COPY", self.gkey(kind), self.gkey(kind)]
            if r.random() < 0.5:
                args.append(b"REPLACE")
            return Step(tuple(args))
        if c < 0.93:
            if r.random() < 0.6:
                return Step((b"EXPIRE", self.tkey(kind), self.rel_seconds()))
            return Step((b"PERSIST", self.tkey(kind)))
        return Step((b"TTL", self.tkey(kind)), "ttl")

    def t_bad_arity(self):
        r = self.r
        k = self.tkey(r.choice("hszl"))
        return Step(r.choice([
            (b"HSET", k), (b"HGET", k), (b"HMGET", k), (b"HDEL", k), (b"HINCRBY", k, b"f"),
            (b"HGETALL",), (b"HRANDFIELD",), (b"HSCAN", k), (b"SADD", k), (b"SREM", k),
            (b"SISMEMBER", k), (b"SMISMEMBER", k), (b"SINTER",), (b"SINTERCARD", b"1"),
            (b"SMOVE", k, k), (b"SPOP",), (b"SPOP", k, b"1", b"2"), (b"ZADD", k), (b"ZADD", k, b"1"),
            (b"ZSCORE", k), (b"ZRANGE", k, b"0"), (b"ZUNIONSTORE", k), (b"ZINCRBY", k, b"1"),
            (b"ZPOPMIN",), (b"LPUSH", k), (b"LRANGE", k, b"0"), (b"LSET", k, b"0"),
            (b"LINSERT", k, b"BEFORE", b"a"), (b"LMOVE", k, k, b"LEFT"), (b"LMPOP", b"1", k),
            (b"LPOS", k), (b"LREM", k, b"0"), (b"ZRANGEBYLEX", k, b"-"), (b"ZDIFF", b"1"),
            (b"HSTRLEN", k), (b"LPOP", k, b"1", b"2"),
        ]))

    # -- blocking commands on their non-blocking path (data present or a tiny timeout) -------------
    def b_blocking(self):
        r = self.r
        t = r.choice([b"0.01", b"0.01", b"0.02", b"-1", b"abc"])
        c = r.random()
        if c < 0.3:
            return Step((r.choice([b"BLPOP", b"BRPOP"]), *self.gkeys("l", 1, 3), t))
        if c < 0.5:
            return Step((b"BLMOVE", self.gkey("l"), self.gkey("l"), r.choice([b"LEFT", b"RIGHT"]),
                         r.choice([b"LEFT", b"RIGHT"]), t))
        if c < 0.6:
            return Step((b"BRPOPLPUSH", self.gkey("l"), self.gkey("l"), t))
        if c < 0.7:
            return Step((r.choice([b"BZPOPMIN", b"BZPOPMAX"]), *self.gkeys("z", 1, 3), t))
        if c < 0.8:
            keys = self.gkeys("z", 1, 2)
            args = [b"BZMPOP", t, str(len(keys)).encode(), *keys, r.choice([b"MIN", b"MAX"])]
            if r.random() < 0.5:
                args += [b"COUNT", self.count_arg(0, 3)]
            return Step(tuple(args))
        keys = self.gkeys("l", 1, 2)
        args = [b"BLMPOP", t, str(len(keys)).encode(), *keys, r.choice([b"LEFT", b"RIGHT"])]
        if r.random() < 0.5:
            args += [b"COUNT", self.count_arg(0, 3)]
        return Step(tuple(args))

    # -- transactions ----------------------------------------------------------------------------
    TX_BODY = {
        "h_set": 3, "h_setnx": 1, "h_get": 3, "h_del": 2, "h_incr": 3, "s_add": 3, "s_query": 2,
        "s_algebra": 2, "s_move": 1, "z_add": 3, "z_incr": 2, "z_rem": 1, "z_query": 2, "z_range": 2,
        "z_pop": 1, "z_setops": 1, "l_push": 3, "l_pop": 2, "l_read": 2, "l_edit": 2, "l_move": 1,
        "g_set": 3, "g_get": 2, "g_incr": 3, "g_mset": 1, "g_mget": 1, "g_del": 1, "t_keyops": 1,
    }

    def _tx_command(self) -> Step:
        names = list(self.TX_BODY)
        w = [self.TX_BODY[k] for k in names]
        for _ in range(50):
            step = getattr(self, self.r.choices(names, w)[0])()
            if step.mode == "exact":
                return step
        return Step((b"PING",))

    def _queue_error(self) -> Step:
        r = self.r
        return Step(r.choice([(b"NOSUCHCMD", b"x"), (b"HSET", self.tkey("h")), (b"ZADD",),
                              (b"LPUSH", b"{t}l1"), (b"GET",), (b"SADD", b"{t}s1")]))

    def m_multi(self):
        r = self.r
        out = []
        c = r.random()
        watch = []
        if c < 0.3:
            watch = [r.choice(ALL_TYPED_KEYS + KEYS[:6]) for _ in range(r.randint(1, 3))]
            out.append(Step((b"WATCH", *watch)))
            for _ in range(r.choice([0, 1, 1, 2])):  # maybe touch a watched key ourselves
                out.append(self._tx_command())
            if r.random() < 0.15:
                out.append(Step((b"UNWATCH",)))
        out.append(Step((b"MULTI",)))
        for _ in range(r.randint(0, 6)):
            x = r.random()
            if x < 0.05:
                out.append(self._queue_error())
            elif x < 0.07:
                out.append(Step(r.choice([(b"MULTI",), (b"WATCH", b"k1"), (b"SELECT", b"0")])))
            else:
                out.append(self._tx_command())
        out.append(Step((b"DISCARD",) if r.random() < 0.1 else (b"EXEC",)))
        return out

    def b_tx(self):
        """Blocking commands inside MULTI never block."""
        return [Step((b"MULTI",)), self.b_blocking(), self.l_push(), self.b_blocking(), Step((b"EXEC",))]

    def m_misuse(self):
        r = self.r
        return Step(r.choice([(b"EXEC",), (b"DISCARD",), (b"UNWATCH",), (b"WATCH",), (b"MULTI", b"x"),
                              (b"EXEC", b"x"), (b"WATCH", b"{t}h1", b"k1")]))

    # -- bitmaps --------------------------------------------------------------------
    BIT_KEYS = [b"{b}1", b"{b}2", b"{b}3", b"{b}4"]

    def bit_key(self) -> bytes:
        r = self.r
        if r.random() < 0.05:
            return r.choice([b"{b}none", b"{t}h1", b"{t}l1"])
        if self.xshard:
            return r.choice([b"b:a", b"b:b", b"b:c", b"b:d"])
        return r.choice(self.BIT_KEYS)

    def bit_offset(self, write=True) -> bytes:
        r = self.r
        x = r.random()
        if x < 0.6:
            return str(r.randint(0, 80)).encode()
        if x < 0.85:
            return str(r.randint(0, 4000)).encode()
        # 4294967295 is the last bit of a 512MB string: only read there.
        huge = [] if write else [b"4294967295"]
        return r.choice([b"-1", b"x", b"4294967296", b"1.5", b"99999999999"] + huge)

    def bit_range(self) -> list:
        r = self.r
        if r.random() < 0.3:
            return []
        n = lambda: str(r.choice([0, 1, 2, 3, -1, -2, -3, 5, 10, 17, 100, -100, 7, 8, 9])).encode()
        out = [n(), n()]
        if r.random() < 0.5:
            out.append(r.choice([b"BYTE", b"BIT", b"bit", b"byte", b"bits"]))
        if r.random() < 0.03:
            out = out[:1]
        return out

    def bm_setbit(self):
        r = self.r
        bit = r.choice([b"0", b"1", b"1", b"2", b"-1", b"x"]) if r.random() < 0.1 else r.choice([b"0", b"1"])
        return Step((b"SETBIT", self.bit_key(), self.bit_offset(), bit))

    def bm_getbit(self):
        return Step((b"GETBIT", self.bit_key(), self.bit_offset(write=False)))

    def bm_bitcount(self):
        return Step((b"BITCOUNT", self.bit_key(), *self.bit_range()))

    def bm_bitpos(self):
        r = self.r
        bit = r.choice([b"0", b"1", b"0", b"1", b"2"])
        rng = self.bit_range()
        if rng and r.random() < 0.3:
            rng = rng[:1]
        return Step((b"BITPOS", self.bit_key(), bit, *rng))

    def bm_bitop(self):
        r = self.r
        op = r.choice([b"AND", b"OR", b"XOR", b"NOT", b"and", b"nand"])
        n = 1 if op in (b"NOT",) and r.random() < 0.8 else r.randint(1, 3)
        return Step((b"BITOP", op, self.bit_key(), *[self.bit_key() for _ in range(n)]))

    def bm_field_type(self) -> bytes:
        r = self.r
        if r.random() < 0.05:
            return r.choice([b"u64", b"i65", b"i0", b"x8", b"u", b"I8"])
        return r.choice([b"i", b"u"]) + str(r.choice([1, 2, 3, 4, 5, 7, 8, 12, 16, 31, 32, 33, 63])).encode() \
            if r.random() < 0.9 else r.choice([b"i64", b"u63", b"i63"])

    def bm_field_value(self) -> bytes:
        r = self.r
        return r.choice([b"0", b"1", b"-1", b"100", b"-100", b"127", b"128", b"255", b"256", b"-129",
                         b"9223372036854775807", b"-9223372036854775808", b"x", b"4611686018427387904"])

    def bm_bitfield(self, ro=False):
        r = self.r
        args = []
        for _ in range(r.randint(1, 4)):
            x = r.random()
            off = r.choice([b"0", b"3", b"8", b"13", b"#1", b"#2", b"100", b"-1", b"#x"]) \
                if r.random() < 0.8 else self.bit_offset()
            if x < 0.35 or ro:
                args += [b"GET", self.bm_field_type(), off]
            elif x < 0.6:
                args += [b"SET", self.bm_field_type(), off, self.bm_field_value()]
            elif x < 0.85:
                args += [b"INCRBY", self.bm_field_type(), off, self.bm_field_value()]
            else:
                args += [b"OVERFLOW", r.choice([b"WRAP", b"SAT", b"FAIL", b"fail", b"bad"])]
            if ro and r.random() < 0.1:
                args += [b"SET", b"i8", b"0", b"1"]
        if r.random() < 0.03:
            args = args[:-1]
        return Step((b"BITFIELD_RO" if ro else b"BITFIELD", self.bit_key(), *args))

    def bm_bitfield_ro(self):
        return self.bm_bitfield(ro=True)

    def bm_strings(self):
        """String commands on bitmaps (the in-place, out-of-line strings)."""
        r = self.r
        k = self.bit_key()
        c = r.choice(["get", "strlen", "append", "setrange", "set", "getrange", "incr"])
        if c == "append":
            return Step((b"APPEND", k, r.choice([b"a", b"\x00\xff", b"xyz" * 5])))
        if c == "setrange":
            return Step((b"SETRANGE", k, str(r.choice([0, 1, 5, 20, 300])).encode(), r.choice([b"ab", b"\xff", b""])))
        if c == "set":
            return Step((b"SET", k, r.choice([b"", b"\xff\x00", b"abc", b"12"])))
        if c == "getrange":
            return Step((b"GETRANGE", k, b"0", b"-1"))
        return Step((c.upper().encode(), k))

    # -- hyperloglog -----------------------------------------------------------------
    # PFCOUNT changes Redis's bytes (it caches the count in the value) and not
    # keel's, so this family never reads an HLL's bytes back with GET; the
    # byte-for-byte check is in test_hyperloglog.py.
    HLL_KEYS = [b"{p}1", b"{p}2", b"{p}3"]

    def hll_key(self) -> bytes:
        r = self.r
        if r.random() < 0.05:
            return r.choice([b"{p}none", b"{p}str", b"{t}h1"])
        if self.xshard:
            return r.choice([b"p:a", b"p:b", b"p:c"])
        return r.choice(self.HLL_KEYS)

    def hll_elements(self) -> list:
        r = self.r
        n = r.choice([0, 1, 1, 2, 5, 20, 200])
        base = r.randint(0, 3000)
        return [b"e%d" % (base + i) for i in range(n)]

    def pf_add(self):
        return Step((b"PFADD", self.hll_key(), *self.hll_elements()))

    def pf_count(self):
        r = self.r
        return Step((b"PFCOUNT", *[self.hll_key() for _ in range(r.choice([1, 1, 2, 3]))]))

    def pf_merge(self):
        r = self.r
        return Step((b"PFMERGE", self.hll_key(), *[self.hll_key() for _ in range(r.randint(0, 3))]))

    def pf_other(self):
        r = self.r
        c = r.choice(["set", "str", "type", "strlen", "del", "magic"])
        if c == "set":
            return Step((b"SET", b"{p}str", r.choice([b"hello", b"HYLL", b"HYLL\x01\x00\x00\x00" + b"\x00" * 8 + b"\xff"])))
        if c == "str":
            return Step((b"PFADD", b"{p}str", b"x"))
        if c == "magic":
            return Step((b"GETRANGE", self.hll_key(), b"0", b"4"))
        if c == "del":
            return Step((b"DEL", self.hll_key()))
        return Step((c.upper().encode(), self.hll_key()))

    # -- geo -------------------------------------------------------------------------
    # Points are fresh random coordinates around a few centres (six decimals),
    # so no two members share a position and no distances tie: every sort is
    # deterministic on both servers.
    GEO_KEYS = [b"{t}g1", b"{t}g2", b"{t}g3"]
    GEO_XKEYS = [b"g:a", b"g:b", b"g:c"]
    GEO_MEMBERS = [b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h", b"i", b"j", b"", b"x y", b"\xff", b"1"]
    GEO_CENTRES = [(13.5, 38.0), (-0.1, 51.5), (179.9, 0.0), (-179.9, 84.9), (2.35, -85.0)]
    GEO_UNITS = [b"m", b"km", b"ft", b"mi", b"KM", b"Mi"]

    def geo_key(self) -> bytes:
        r = self.r
        if r.random() < 0.07:
            return r.choice([b"{t}none", b"{t}str", b"{t}h1", b"{t}z1"])
        if self.xshard and r.random() < 0.6:
            return r.choice(self.GEO_XKEYS)
        return r.choice(self.GEO_KEYS)

    def geo_dist_key(self) -> bytes:
        """A STOREDIST destination: never searched, since points decoded from
        distances all fall in one cell and tie."""
        return b"g:d" if self.xshard and self.r.random() < 0.6 else b"{t}gd"

    def geo_member(self) -> bytes:
        r = self.r
        return r.choice(self.GEO_MEMBERS) if r.random() < 0.95 else b"missing"

    def geo_lonlat(self) -> list:
        r = self.r
        x = r.random()
        if x < 0.04:
            return r.choice([[b"180.0001", b"0"], [b"0", b"85.06"], [b"x", b"1"], [b"1", b""], [b"nan", b"1"],
                             [b"-inf", b"0"], [b"1e400", b"0"]])
        if x < 0.08:  # on an edge, the other coordinate random (no two points coincide)
            lon, lat = b"%.6f" % r.uniform(-180, 180), b"%.6f" % r.uniform(-85, 85)
            return r.choice([[b"180", lat], [b"-180", lat], [lon, b"85.05112878"], [lon, b"-85.05112878"],
                             [b"-0", lat]])
        lon, lat = r.choice(self.GEO_CENTRES)
        spread = r.choice([0.01, 0.5, 3])
        lon = max(-180.0, min(180.0, lon + r.uniform(-spread, spread)))
        lat = max(-85.05, min(85.05, lat + r.uniform(-spread, spread)))
        return [b"%.6f" % lon, b"%.6f" % lat]

    def geo_unit(self) -> bytes:
        r = self.r
        return r.choice(self.GEO_UNITS) if r.random() < 0.95 else r.choice([b"yd", b"", b"meters"])

    def geo_radius(self) -> bytes:
        r = self.r
        x = r.random()
        if x < 0.05:
            return r.choice([b"-1", b"x", b"", b"inf", b"1e308", b"0"])
        return b"%.3f" % r.choice([0.5, 20, 300, 5000, 80_000, 600_000, 3_000_000, 12_000_000])

    def geo_add(self):
        r = self.r
        flags = r.choice([[], [], [], [b"NX"], [b"XX"], [b"CH"], [b"NX", b"CH"], [b"CH", b"XX"], [b"NX", b"XX"],
                          [b"GT"]])
        args = [b"GEOADD", self.geo_key(), *flags]
        for _ in range(r.choice([1, 1, 2, 3, 5])):
            args += [*self.geo_lonlat(), self.geo_member()]
        if r.random() < 0.03:
            args.pop()
        return Step(tuple(args))

    def geo_read(self):
        r = self.r
        c = r.random()
        k = self.geo_key()
        if c < 0.35:
            args = [b"GEODIST", k, self.geo_member(), self.geo_member()]
            if r.random() < 0.6:
                args.append(self.geo_unit())
            if r.random() < 0.03:
                args.append(b"extra")
            return Step(tuple(args))
        if c < 0.6:
            return Step((b"GEOHASH", k, *[self.geo_member() for _ in range(r.randint(0, 4))]))
        if c < 0.7:
            return Step((b"GEOPOS", k, *[r.choice([b"nope", self.geo_member()]) for _ in range(r.randint(0, 3))]))
        if c < 0.9:
            k = k if r.random() < 0.7 else self.geo_dist_key()
            return Step((b"ZRANGE", k, b"0", b"-1", b"WITHSCORES"))
        return Step((r.choice([b"ZCARD", b"TYPE", b"EXISTS"]), k))

    def geo_options(self, store: bool) -> list:
        r = self.r
        opts = []
        if r.random() < 0.6:
            opts.append(r.choice([b"ASC", b"DESC", b"asc"]))
        if r.random() < 0.5:
            opts += [b"COUNT", r.choice([b"1", b"3", b"10", b"3", b"0", b"-1", b"x"])
                     if r.random() < 0.05 else r.choice([b"1", b"2", b"3", b"5", b"20"])]
            if r.random() < 0.3:
                opts.append(b"ANY")
        elif r.random() < 0.02:
            opts.append(b"ANY")
        if not store or r.random() < 0.03:
            for w in (b"WITHDIST", b"WITHHASH", b"WITHCOORD"):
                if r.random() < 0.4:
                    opts.append(w)
        r.shuffle(opts)
        return opts

    def geo_from_by(self) -> list:
        r = self.r
        parts = []
        if r.random() < 0.5:
            parts.append([b"FROMMEMBER", self.geo_member()])
        else:
            parts.append([b"FROMLONLAT", *self.geo_lonlat()])
        if r.random() < 0.5:
            parts.append([b"BYRADIUS", self.geo_radius(), self.geo_unit()])
        else:
            parts.append([b"BYBOX", self.geo_radius(), self.geo_radius(), self.geo_unit()])
        x = r.random()
        if x < 0.03:
            parts.pop(r.randrange(2))
        elif x < 0.06:
            parts.append(r.choice([[b"FROMMEMBER", b"a"], [b"BYRADIUS", b"1", b"km"], [b"FROMLONLAT", b"1", b"1"]]))
        r.shuffle(parts)
        return [a for p in parts for a in p]

    def geo_search(self):
        r = self.r
        args = [b"GEOSEARCH", self.geo_key(), *self.geo_from_by()] + self.geo_options(False)
        if r.random() < 0.02:
            args.append(r.choice([b"STOREDIST", b"WITHCOORDS", b"STORE"]))
        return Step(tuple(args))

    def geo_searchstore(self):
        r = self.r
        args = [b"GEOSEARCHSTORE", self.geo_key(), self.geo_key(), *self.geo_from_by()] + self.geo_options(True)
        if r.random() < 0.4:
            args.insert(r.randint(4, len(args)), b"STOREDIST")
            args[1] = self.geo_dist_key()
        return Step(tuple(args))

    def geo_georadius(self):
        r = self.r
        name = r.choice([b"GEORADIUS", b"GEORADIUS_RO", b"GEORADIUSBYMEMBER", b"GEORADIUSBYMEMBER_RO"])
        args = [name, self.geo_key()]
        args += self.geo_lonlat() if b"MEMBER" not in name else [self.geo_member()]
        args += [self.geo_radius(), self.geo_unit()]
        store = not name.endswith(b"_RO") and r.random() < 0.5
        if name.endswith(b"_RO") and r.random() < 0.03:
            store = True
        args += self.geo_options(store)
        if store:
            if r.random() < 0.5:
                args += [b"STORE", self.geo_key()]
            else:
                args += [b"STOREDIST", self.geo_dist_key()]
        return Step(tuple(args))

    def geo_other(self):
        r = self.r
        c = r.choice(["set", "z", "h", "del"])
        if c == "set":
            return Step((b"SET", b"{t}str", b"x"))
        if c == "z":
            score = r.choice([b"-1", b"1e300", b"4503599627370496", b"%d" % r.randrange(2 ** 52)])
            return Step((b"ZADD", b"{t}z1", score, self.geo_member()))
        if c == "h":
            return Step((b"HSET", b"{t}h1", b"f", b"v"))
        return Step((b"DEL", self.geo_key()))


    # -- streams ---------------------------------------------------------------------
    # Ids are explicit (a counter that mostly grows, some stale ids for the
    # errors, `ms-*`), never `*`, so both servers hold the same ids. Nothing
    # that reports an idle or delivery time is sent (XPENDING's extended form,
    # XINFO CONSUMERS, XINFO STREAM FULL); claims use a min-idle-time of 0.
    # Fields and values stay short, so blocks close after 100 entries on both
    # servers and approximate trims remove the same entries.
    STREAM_KEYS = [b"{x}s1", b"{x}s2", b"{x}s3"]
    STREAM_XKEYS = [b"x:a", b"x:b", b"x:c"]
    STREAM_FIELDS = [b"f", b"g", b"name", b""]
    STREAM_GROUPS = [b"g1", b"g2", b"g1", b"g1", b"nogroup"]
    STREAM_CONSUMERS = [b"alice", b"bob", b"carol"]

    def x_key(self) -> bytes:
        r = self.r
        if r.random() < 0.04:
            return r.choice([b"{x}none", b"{x}str"])
        if self.xshard and r.random() < 0.6:
            return r.choice(self.STREAM_XKEYS)
        return r.choice(self.STREAM_KEYS)

    def x_id(self) -> bytes:
        """An id near the ones added so far (or a malformed one, rarely)."""
        r = self.r
        top = getattr(self, "xms", 1)
        c = r.random()
        if c < 0.02:
            return r.choice([b"abc", b"1-x", b"-1", b"18446744073709551616-0", b""])
        low = r.choice([0, max(0, top - 40), max(0, top - 10)])
        if c < 0.4:
            return b"%d" % r.randint(low, top + 1)
        return b"%d-%d" % (r.randint(low, top + 1), r.randint(0, 3))

    def x_bound(self, low: bool) -> bytes:
        r = self.r
        c = r.random()
        if c < 0.25:
            return b"-" if low else b"+"
        if c < 0.4:
            return b"(" + self.x_id()
        return self.x_id()

    def x_fields(self) -> list:
        r = self.r
        out = []
        for _ in range(r.choice([1, 1, 1, 2, 3])):
            out += [r.choice(self.STREAM_FIELDS), b"%d" % r.randint(0, 999)]
        return out

    def x_add(self):
        r = self.r
        self.xms = getattr(self, "xms", 1) + r.choice([0, 1, 1, 2])
        args = [b"XADD", self.x_key()]
        if r.random() < 0.05:
            args.append(b"NOMKSTREAM")
        if r.random() < 0.25:
            if r.random() < 0.6:
                args += [b"MAXLEN", r.choice([b"~", b"=", b"~"]), b"%d" % r.choice([5, 50, 100, 150, 250])]
            else:
                args += [b"MINID", r.choice([b"~", b"="]), b"%d" % r.randint(max(0, self.xms - 300), self.xms)]
            if args[-2] == b"~" and r.random() < 0.3:
                args += [b"LIMIT", b"%d" % r.choice([0, 10, 100, 200])]
        c = r.random()
        if c < 0.75:
            args.append(b"%d-%d" % (self.xms, r.randint(0, 2)))
        elif c < 0.9:
            args.append(b"%d-*" % r.choice([self.xms, self.xms + 1, 0]))
        else:
            args.append(self.x_id())
        return Step((*args, *self.x_fields()))

    def x_burst(self):
        """Many entries into one key, so streams pass a block (100 entries)
        and approximate trims have whole blocks to drop."""
        r = self.r
        k = r.choice(self.STREAM_XKEYS if self.xshard else self.STREAM_KEYS)
        out = []
        for _ in range(r.randint(30, 130)):
            self.xms = getattr(self, "xms", 1) + 1
            out.append(Step((b"XADD", k, b"%d-0" % self.xms, b"f", b"%d" % r.randint(0, 99))))
        return out

    def x_range(self):
        r = self.r
        if r.random() < 0.5:
            args = [b"XRANGE", self.x_key(), self.x_bound(True), self.x_bound(False)]
        else:
            args = [b"XREVRANGE", self.x_key(), self.x_bound(False), self.x_bound(True)]
        if r.random() < 0.5:
            args += [b"COUNT", b"%d" % r.choice([0, 1, 3, 10, -1])]
        return Step(tuple(args))

    def x_misc(self):
        r = self.r
        c = r.choice(["len", "del", "del", "trim", "setid", "type", "str"])
        if r.random() < 0.03:
            c = "del_key"
        k = self.x_key()
        if c == "len":
            return Step((b"XLEN", k))
        if c == "del":
            return Step((b"XDEL", k, *[self.x_id() for _ in range(r.randint(1, 3))]))
        if c == "trim":
            strat = r.choice([b"MAXLEN", b"MINID"])
            val = b"%d" % r.choice([0, 20, 120, 150]) if strat == b"MAXLEN" else self.x_id()
            args = [b"XTRIM", k, strat, r.choice([b"=", b"~", b""]), val]
            if args[3] == b"~" and r.random() < 0.3:
                args += [b"LIMIT", b"%d" % r.choice([0, 100])]
            return Step(tuple(a for a in args if a != b""))
        if c == "setid":
            args = [b"XSETID", k, self.x_id()]
            if r.random() < 0.3:
                args += [b"ENTRIESADDED", b"%d" % r.randint(0, 300)]
            if r.random() < 0.3:
                args += [b"MAXDELETEDID", self.x_id()]
            return Step(tuple(args))
        if c == "type":
            return Step((b"TYPE", k))
        if c == "str":
            return Step((b"SET", b"{x}str", b"v"))
        return Step((b"DEL", k))

    def x_read(self):
        r = self.r
        keys = [self.x_key() for _ in range(r.choice([1, 1, 2, 3]))]
        ids = [r.choice([self.x_id(), b"0", b"$"]) for _ in keys]
        args = [b"XREAD"]
        if r.random() < 0.6:
            args += [b"COUNT", b"%d" % r.choice([1, 2, 5, 0])]
        return Step((*args, b"STREAMS", *keys, *ids))

    def x_group(self):
        r = self.r
        k, g = self.x_key(), r.choice(self.STREAM_GROUPS)
        c = r.choice(["create", "create", "setid", "cc", "dc", "info", "info"])
        if r.random() < 0.05:
            c = "destroy"
        if c == "create":
            args = [b"XGROUP", b"CREATE", k, g, r.choice([b"0", b"$", self.x_id()])]
            if r.random() < 0.3:
                args.append(b"MKSTREAM")
            if r.random() < 0.2:
                args += [b"ENTRIESREAD", b"%d" % r.choice([-1, 0, 3, 1000])]
            return Step(tuple(args))
        if c == "setid":
            args = [b"XGROUP", b"SETID", k, g, r.choice([b"0", b"$", self.x_id()])]
            if r.random() < 0.3:
                args += [b"ENTRIESREAD", b"%d" % r.choice([-1, 2])]
            return Step(tuple(args))
        if c == "destroy":
            return Step((b"XGROUP", b"DESTROY", k, g))
        if c == "info":
            return Step((b"XINFO", b"GROUPS", k))
        sub = b"CREATECONSUMER" if c == "cc" else b"DELCONSUMER"
        return Step((b"XGROUP", sub, k, g, r.choice(self.STREAM_CONSUMERS)))

    def x_readgroup(self):
        r = self.r
        keys = [self.x_key() for _ in range(r.choice([1, 1, 1, 2]))]
        args = [b"XREADGROUP", b"GROUP", r.choice(self.STREAM_GROUPS), r.choice(self.STREAM_CONSUMERS)]
        if r.random() < 0.6:
            args += [b"COUNT", b"%d" % r.choice([1, 2, 5])]
        if r.random() < 0.1:
            args.append(b"NOACK")
        ids = [r.choice([b">", b">", b">", b"0", self.x_id()]) for _ in keys]
        return Step((*args, b"STREAMS", *keys, *ids))

    def x_ack(self):
        r = self.r
        return Step((b"XACK", self.x_key(), r.choice(self.STREAM_GROUPS),
                     *[self.x_id() for _ in range(r.randint(1, 4))]))

    def x_pending(self):
        return Step((b"XPENDING", self.x_key(), self.r.choice(self.STREAM_GROUPS)))

    def x_claim(self):
        r = self.r
        k, g, c = self.x_key(), r.choice(self.STREAM_GROUPS), r.choice(self.STREAM_CONSUMERS)
        if r.random() < 0.5:
            args = [b"XCLAIM", k, g, c, b"0", *[self.x_id() for _ in range(r.randint(1, 3))]]
            for opt in [b"JUSTID", b"FORCE"]:
                if r.random() < 0.3:
                    args.append(opt)
            if r.random() < 0.2:
                args += [b"RETRYCOUNT", b"%d" % r.randint(0, 5)]
            if r.random() < 0.1:
                args += [b"LASTID", self.x_id()]
            return Step(tuple(args))
        args = [b"XAUTOCLAIM", k, g, c, b"0", r.choice([b"0", b"-", self.x_id()])]
        if r.random() < 0.5:
            args += [b"COUNT", b"%d" % r.choice([1, 2, 10])]
        if r.random() < 0.3:
            args.append(b"JUSTID")
        return Step(tuple(args))

    # -- families ------------------------------------------------------------------
    FAMILIES = {
        "strings": {
            "g_set": 10, "g_get": 8, "g_setnx": 2, "g_setex": 2, "g_mget": 4, "g_mset": 4,
            "g_incr": 10, "g_set_number": 6, "g_append": 4, "g_strlen": 3, "g_getrange": 4,
            "g_setrange": 3, "g_getdel": 2, "g_getex": 3, "g_getset": 2, "g_del": 2,
            "g_exists": 2, "g_type": 1, "g_othertype": 1, "g_flushdb": 0.3, "g_lcs": 2,
        },
        "keys": {
            "g_set": 8, "g_mset": 3, "g_get": 3, "g_del": 5, "g_exists": 5, "g_type": 4,
            "g_rename": 5, "g_copy": 5, "g_keys": 4, "g_scan": 3, "g_randomkey": 2,
            "g_dbsize": 3, "g_othertype": 3, "g_expire": 3, "g_ttl": 3, "g_persist": 1,
            "g_flushdb": 0.5, "g_move": 2,
        },
        "expiry": {
            "g_set": 10, "g_setex": 4, "g_getex": 6, "g_expire": 12, "g_ttl": 12,
            "g_persist": 4, "g_get": 3, "g_exists": 3, "g_del": 2, "g_rename": 2,
            "g_copy": 2, "g_incr": 2, "g_append": 1, "g_dbsize": 2, "g_othertype": 1,
            "g_flushdb": 0.3,
        },
        "errors": {
            "g_connection": 10, "g_bad_arity": 12, "g_unknown": 6, "g_set": 4, "g_incr": 6,
            "g_othertype": 3, "g_get": 3, "g_getrange": 2, "g_setrange": 2, "g_expire": 3,
            "g_scan": 1, "g_copy": 2, "g_mset": 1,
        },
    }
    FAMILIES["mixed"] = {k: v for fam in FAMILIES.values() for k, v in fam.items()}
    # Data-type families (added after "mixed": the older streams stay as they were).
    _TYPE_COMMON = {"t_keyops": 2, "t_bad_arity": 1, "g_set_number": 0.5, "g_flushdb": 0.2}
    FAMILIES["hashes"] = {
        "h_set": 8, "h_setnx": 2, "h_get": 8, "h_getall": 4, "h_del": 4, "h_incr": 7, "h_rand": 2,
        "h_scan": 1, **_TYPE_COMMON,
    }
    FAMILIES["sets"] = {
        "s_add": 10, "s_query": 8, "s_rand": 4, "s_algebra": 7, "s_move": 2, "s_scan": 1,
        **_TYPE_COMMON,
    }
    FAMILIES["zsets"] = {
        "z_add": 10, "z_incr": 5, "z_rem": 3, "z_query": 8, "z_range": 10, "z_rangestore": 2,
        "z_remrange": 3, "z_pop": 3, "z_rand": 2, "z_setops": 4, "z_scan": 1, "s_add": 2,
        "z_intercard": 2, "z_mpop": 2,
        **_TYPE_COMMON,
    }
    FAMILIES["lists"] = {
        "l_push": 10, "l_pop": 5, "l_read": 8, "l_edit": 6, "l_move": 4, **_TYPE_COMMON,
    }
    FAMILIES["multi"] = {
        "m_multi": 10, "m_misuse": 1, "h_set": 1, "z_add": 1, "l_push": 1, "s_add": 1, "g_set": 1,
    }
    # multi-key data-type commands (and transactions) over keys of every shard
    FAMILIES["xshard"] = {
        "s_algebra": 6, "s_move": 2, "z_rangestore": 2, "z_setops": 5, "z_pop": 2, "l_move": 4,
        "z_intercard": 2, "z_mpop": 2,
        "t_keyops": 3, "s_add": 6, "z_add": 6, "l_push": 5, "h_set": 2, "m_multi": 2,
    }
    FAMILIES["blocking"] = {"b_blocking": 6, "b_tx": 1, "l_push": 6, "z_add": 4, "l_pop": 1}
    FAMILIES["hyperloglog"] = {
        "pf_add": 10, "pf_count": 8, "pf_merge": 4, "pf_other": 2, "g_flushdb": 0.1,
    }
    FAMILIES["bitmaps"] = {
        "bm_setbit": 10, "bm_getbit": 4, "bm_bitcount": 6, "bm_bitpos": 6, "bm_bitop": 4,
        "bm_bitfield": 8, "bm_bitfield_ro": 3, "bm_strings": 4, "l_push": 0.3, "h_set": 0.3,
        "g_flushdb": 0.1,
    }
    FAMILIES["geo"] = {
        "geo_add": 10, "geo_read": 8, "geo_search": 10, "geo_searchstore": 5, "geo_georadius": 8,
        "geo_other": 0.5, "g_flushdb": 0.1,
    }

    FAMILIES["streams"] = {
        "x_add": 12, "x_range": 6, "x_misc": 4, "x_read": 4, "x_group": 6, "x_readgroup": 6,
        "x_ack": 3, "x_pending": 2, "x_claim": 3, "x_burst": 0.3, "g_flushdb": 0.05,
    }

    def stream(self, family: str, n: int) -> list:
        weights = self.FAMILIES[family.removesuffix("_xshard") if family != "xshard" else family]
        names = list(weights)
        w = [weights[k] for k in names]
        self.xshard = family in ("xshard", "bitmaps_xshard", "hyperloglog_xshard", "geo_xshard",
                               "streams_xshard")
        out = []
        while len(out) < n:
            step = getattr(self, self.r.choices(names, w)[0])()
            if isinstance(step, list):  # a whole MULTI/EXEC or WATCH sequence
                out.extend(step)
            else:
                out.append(step)
        return out


# -- sort (SORT, SORT_RO) ---------------------------------------------------------------
# Untagged keys, so with --shards 4 the sorted keys, the BY/GET pattern keys and the
# STORE destinations live on different shards. Ties that Redis leaves to qsort are
# avoided: numeric sorts break ties by the element; ALPHA BY reads so:wa_* keys, set at
# the start of the stream to distinct values and only ever rewritten whole (so:wa_ keys
# for every element exist). A set's own order means nothing: BY <constant> on a set is
# compared unordered, without LIMIT.
SORT_LISTS = [b"so:l1", b"so:l2"]
SORT_SETS = [b"so:s1", b"so:s2"]
SORT_ZSETS = [b"so:z1", b"so:z2"]
SORT_DESTS = [b"so:d1", b"so:d2", b"so:l2"]
SORT_NUMS = [b"1", b"2", b"10", b"-3", b"2.5", b"07", b"1e2", b"0", b"3", b" 4", b"inf", b"-inf",
             b"0x1A", b"1.0", b"100"]
SORT_WORDS = [b"a", b"b", b"c", b"ab", b"B", b"x y", b"z-"]
# (no out-of-range number: Redis 7.0 tests a stale errno after strtod, so once one
# was read, later SORTs may fail there depending on what the server did meanwhile)
SORT_BAD = [b"1x", b"nan", b"abc"]
SORT_ELEMS = SORT_NUMS + SORT_WORDS


def _sort_gen_methods():
    def so_elem(self, numeric: bool) -> bytes:
        r = self.r
        if numeric:
            return r.choice(SORT_NUMS) if r.random() < 0.97 else r.choice(SORT_BAD)
        return r.choice(SORT_ELEMS)

    def so_init(self) -> list:
        """The ALPHA BY weights: a distinct value for every element."""
        values = [b"w%02d" % i for i in range(len(SORT_ELEMS + SORT_BAD))]
        self.r.shuffle(values)
        args = [b"MSET"]
        for e, v in zip(SORT_ELEMS + SORT_BAD, values):
            args += [b"so:wa_" + e, v]
        return [Step(tuple(args))]

    def so_step(self, step):
        if not getattr(self, "_so_ready", False):
            self._so_ready = True
            return self.so_init() + [step]
        return step

    def so_fill(self):
        r = self.r
        numeric = r.random() < 0.7
        c = r.random()
        if c < 0.4:
            k = r.choice(SORT_LISTS)
            args = [r.choice([b"RPUSH", b"LPUSH"]), k] + [self.so_elem(numeric) for _ in range(r.randint(1, 5))]
        elif c < 0.7:
            args = [b"SADD", r.choice(SORT_SETS)] + [self.so_elem(numeric) for _ in range(r.randint(1, 5))]
        elif c < 0.95:
            args = [b"ZADD", r.choice(SORT_ZSETS)]
            for _ in range(r.randint(1, 4)):
                args += [r.choice([b"0", b"1", b"2", b"-1.5", b"7"]), self.so_elem(numeric)]
        else:
            args = [b"DEL", r.choice(SORT_LISTS + SORT_SETS + SORT_ZSETS)]
        return self.so_step(Step(tuple(args)))

    def so_weights(self):
        r = self.r
        e = r.choice(SORT_ELEMS + SORT_BAD)
        c = r.random()
        if c < 0.45:
            v = r.choice(SORT_NUMS) if r.random() < 0.95 else r.choice(SORT_BAD)
            return self.so_step(Step((b"SET", b"so:w_" + e, v)))
        if c < 0.8:
            v = r.choice(SORT_NUMS + SORT_WORDS)
            return self.so_step(Step((b"HSET", b"so:h_" + e, r.choice([b"f", b"g"]), v)))
        if c < 0.9:
            return self.so_step(Step((b"DEL", r.choice([b"so:w_", b"so:h_"]) + e)))
        if c < 0.95:
            return self.so_step(Step((b"LPUSH", b"so:w_" + e, b"1")))  # a weight of the wrong type
        return self.so_step(self.so_init()[0])

    def so_sort(self):
        r = self.r
        name = b"SORT_RO" if r.random() < 0.25 else b"SORT"
        kind = r.choice("lllszz") if r.random() < 0.95 else "x"
        key = {"l": lambda: r.choice(SORT_LISTS), "s": lambda: r.choice(SORT_SETS),
               "z": lambda: r.choice(SORT_ZSETS), "x": lambda: r.choice([b"so:w_1", b"so:h_a", b"so:none"])}[kind]()
        opts = []
        by = None
        x = r.random()
        if x < 0.3:
            by = r.choice([b"so:w_*", b"so:h_*->f", b"so:h_*->g", b"so:w_*x"])
        elif x < 0.45:
            by = b"so:wa_*"
        elif x < 0.55:
            by = r.choice([b"nosort", b"so:constant"])
        # ALPHA BY only over so:wa_* (numeric BY patterns may name missing keys, which tie)
        alpha = by == b"so:wa_*" or ((by is None or b"*" not in by) and r.random() < 0.35)
        if by is not None:
            opts.append([b"BY", by])
        if alpha:
            opts.append([r.choice([b"ALPHA", b"alpha"])])
        if r.random() < 0.5:
            opts.append([r.choice([b"ASC", b"DESC", b"desc"])])
        dont_sort = by is not None and b"*" not in by
        store = name == b"SORT" and r.random() < 0.35
        unordered = kind == "s" and dont_sort and not store
        if not unordered and r.random() < 0.35:
            if r.random() < 0.9:
                off, cnt = r.choice([b"0", b"1", b"2", b"-1", b"5", b"100"]), r.choice([b"1", b"2", b"3", b"0", b"-1", b"10"])
            else:
                off, cnt = r.choice([b"x", b"1", b"9223372036854775807"]), r.choice([b"1", b"", b"-9223372036854775808"])
            opts.append([b"LIMIT", off, cnt])
        for _ in range(r.choice([0, 0, 1, 1, 2, 3])):
            opts.append([b"GET", r.choice([b"#", b"so:w_*", b"so:h_*->f", b"so:h_*->", b"so:nostar",
                                           b"so:wa_*", b"so:h_*->nofield"])])
        if store:
            opts.append([b"STORE", r.choice(SORT_DESTS)])
        elif name == b"SORT_RO" and r.random() < 0.05:
            opts.append([b"STORE", b"so:d1"])
        r.shuffle(opts)
        args = [name, key] + [a for o in opts for a in o]
        y = r.random()
        if y < 0.02:
            args.append(r.choice([b"LIMIT", b"BY", b"GET", b"STORE", b"bogus"]))
        return self.so_step(Step(tuple(args), "unordered" if unordered else "exact"))

    def so_read(self):
        r = self.r
        k = r.choice(SORT_DESTS + SORT_LISTS)
        if r.random() < 0.8:
            return self.so_step(Step((b"LRANGE", k, b"0", b"-1")))
        return self.so_step(Step((r.choice([b"TYPE", b"EXISTS", b"TTL"]), k)))

    def so_multi(self):
        """SORT with patterns inside MULTI/EXEC (EXEC then holds every shard)."""
        inner = [self.so_sort() for _ in range(self.r.randint(1, 3))]
        steps = []
        for s in inner:
            steps.extend(s if isinstance(s, list) else [s])
        body = [s for s in steps if s.mode == "exact"]
        return [Step((b"MULTI",))] + [Step(s.args) for s in body] + [Step((b"EXEC",))]

    for f in (so_elem, so_init, so_step, so_fill, so_weights, so_sort, so_read, so_multi):
        setattr(Gen, f.__name__, f)
    Gen.FAMILIES["sort"] = {"so_fill": 10, "so_weights": 8, "so_sort": 14, "so_read": 3, "so_multi": 1.5}


_sort_gen_methods()
