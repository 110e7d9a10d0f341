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

    # -- families ------------------------------------------------------------------
    FAMILIES = {
        "strings": {
            "g_set": 10, "g_get": 8, "g_setnx": 2, "g_setex": 2, "g_mget": 4, "g_mset": 4,
            "g_incr": 10, "g_set_number": 6, "g_append": 4, "g_strlen": 3, "g_getrange": 4,
            "g_setrange": 3, "g_getdel": 2, "g_getex": 3, "g_getset": 2, "g_del": 2,
            "g_exists": 2, "g_type": 1, "g_othertype": 1, "g_flushdb": 0.3,
        },
        "keys": {
            "g_set": 8, "g_mset": 3, "g_get": 3, "g_del": 5, "g_exists": 5, "g_type": 4,
            "g_rename": 5, "g_copy": 5, "g_keys": 4, "g_scan": 3, "g_randomkey": 2,
            "g_dbsize": 3, "g_othertype": 3, "g_expire": 3, "g_ttl": 3, "g_persist": 1,
            "g_flushdb": 0.5,
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

    def stream(self, family: str, n: int) -> list:
        weights = self.FAMILIES[family]
        names = list(weights)
        w = [weights[k] for k in names]
        self.xshard = family == "xshard"
        out = []
        while len(out) < n:
            step = getattr(self, self.r.choices(names, w)[0])()
            if isinstance(step, list):  # a whole MULTI/EXEC or WATCH sequence
                out.extend(step)
            else:
                out.append(step)
        return out
