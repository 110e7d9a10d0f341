"""Scripts on a primary reach its backups as their effects, not as scripts.

A script that reads the clock, draws random numbers or pops random members
would give other results if a backup ran it again; keel records what the
script did (each command's deterministic effect, one unit per shard), so a
backup in another zone ends with the same data and never needs the script:
its script cache stays empty.
"""

from __future__ import annotations

import hashlib
import threading

from harness import Cluster, RespError
from test_replication import DELAY_MS, PORTS, start_primary_and_backups, wait_converged

# Writes that a second run could not repeat: the clock, Lua's random
# numbers, a random member popped, a key chosen from the data.
NONDETERMINISTIC = """
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'at', t[1] .. '.' .. t[2], 'draw', math.random(1000000))
redis.call('SADD', KEYS[2], ARGV[1], ARGV[1] .. 'b', ARGV[1] .. 'c')
local popped = redis.call('SPOP', KEYS[2])
redis.call('RPUSH', KEYS[3], popped or 'none')
redis.call('INCRBYFLOAT', KEYS[4], math.random())
return popped
"""

# Keys on every shard (no KEYS declared: the script holds every shard).
SPREAD = """
for i = 1, 8 do
  redis.call('INCR', 'spread:' .. i)
end
redis.call('SET', 'spread:last', redis.call('TIME')[2])
return redis.call('GET', 'spread:1')
"""

# Fails after a write: what it wrote stays, as in Redis.
HALF = """
redis.call('INCR', KEYS[1])
return redis.call('INCR', KEYS[2])
"""


def sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def test_backups_apply_what_scripts_did_never_the_scripts():
    with Cluster({"h1": "z1", "h2": "z2"}, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_primary_and_backups(c, "h1", ["h2"])
        c.call("h1", "h1", "SET", "half:b", "not a number")
        errors: list[BaseException] = []

        def client(n: int) -> None:
            try:
                with c.connect("h1", "h1", timeout=20) as conn:
                    for i in range(60):
                        keys = [f"{{u{n}}}:h", f"{{u{n}}}:s", f"{{u{n}}}:l", f"{{u{n}}}:f"]
                        conn.call("EVAL", NONDETERMINISTIC, 4, *keys, f"m{i}")
                        if i % 10 == 0:
                            conn.call("EVAL", SPREAD, 0)
                        try:
                            conn.call("EVAL", HALF, 2, "half:a", "half:b")
                            raise AssertionError("HALF must fail on its second INCR")
                        except RespError as e:
                            assert "not an integer" in str(e)
            except BaseException as e:  # noqa: BLE001 — reported below
                errors.append(e)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "clients still running"
        assert not errors, errors

        digest = wait_converged(c, ["h1", "h2"])
        assert digest != "0" * 40
        # Every script ran whole on the primary...
        assert c.call("h1", "h1", "GET", "spread:1") == "24"
        assert c.call("h2", "h2", "GET", "spread:8") == "24"
        assert c.call("h2", "h2", "GET", "half:a") == "240"
        assert c.call("h2", "h2", "LLEN", "{u3}:l") == 60
        # ...and the backup never saw a script.
        exists = c.call("h2", "h2", "SCRIPT", "EXISTS", sha(NONDETERMINISTIC), sha(SPREAD), sha(HALF))
        assert exists == [0, 0, 0], exists
        exists = c.call("h1", "h1", "SCRIPT", "EXISTS", sha(NONDETERMINISTIC), sha(SPREAD), sha(HALF))
        assert exists == [1, 1, 1], exists


# A library whose functions write where their keys live and read back.
LIBRARY = """#!lua name=counters
redis.register_function('bump', function(keys, args)
  return redis.call('INCRBY', keys[1], args[1])
end)
redis.register_function{function_name='peek', callback=function(keys)
  return redis.call('GET', keys[1])
end, flags={'no-writes'}}
"""


def test_function_libraries_reach_backups_and_outlive_a_restart():
    with Cluster({"h1": "z1", "h2": "z2"}, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_primary_and_backups(c, "h1", ["h2"])
        assert c.call("h1", "h1", "FUNCTION", "LOAD", LIBRARY) == "counters"
        for i in range(20):
            assert c.call("h1", "h1", "FCALL", "bump", 1, f"c{i % 4}", 5) == 5 * (i // 4 + 1)
        wait_converged(c, ["h1", "h2"])
        # The backup knows the library from the replication stream alone
        # and runs its read-only function on its own data.
        listed = c.call("h2", "h2", "FUNCTION", "LIST")
        assert [row[1] for row in listed] == ["counters"], listed
        assert c.call("h2", "h2", "FCALL_RO", "peek", 1, "c3") == "25"
        # A library is the database's: it is changed on the primary only.
        try:
            c.call("h2", "h2", "FUNCTION", "DELETE", "counters")
            raise AssertionError("a backup must refuse FUNCTION DELETE")
        except RespError as e:
            assert "READONLY" in str(e)
        # A writing FCALL is refused by this backup like any write (one
        # that forwards, a front door, runs it on the primary).
        try:
            c.call("h2", "h2", "FCALL", "bump", 1, "c0", 1)
            raise AssertionError("a backup must refuse a writing FCALL here")
        except RespError as e:
            assert "READONLY" in str(e)
        assert c.call("h1", "h1", "FCALL", "bump", 1, "c0", 1) == 26
        # FLUSHALL keeps libraries (as Redis); a restarted backup still has them.
        c.call("h1", "h1", "FLUSHALL")
        c.restart("h2")
        wait_converged(c, ["h1", "h2"])
        assert c.call("h2", "h2", "FCALL_RO", "peek", 1, "c0") is None
        assert c.call("h2", "h2", "FUNCTION", "LIST", "LIBRARYNAME", "count*")[0][1] == "counters"
        c.call("h1", "h1", "FUNCTION", "DELETE", "counters")
        wait_converged(c, ["h1", "h2"])
        assert c.call("h2", "h2", "FUNCTION", "LIST") == []
