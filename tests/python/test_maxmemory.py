"""--maxmemory with noeviction and allkeys-lru behave as in Redis (coarsely:
memory accounting differs between servers, so limits are checked loosely)."""

from __future__ import annotations

import pytest

MAXMEMORY = 4 * 1024 * 1024
VALUE = b"v" * 1024
BATCH = 200
MAX_KEYS = 16_000  # 16 MB of values: four times the limit


def fill(server, stop_at_error: bool):
    """Write 1 KB values in pipelined batches; returns (keys written OK, first error)."""
    written = 0
    with server.raw(timeout=30) as c:
        for start in range(0, MAX_KEYS, BATCH):
            replies = c.pipeline([("SET", f"fill:{i}", VALUE) for i in range(start, start + BATCH)])
            for rep in replies:
                if rep == ("simple", b"OK"):
                    written += 1
                elif stop_at_error:
                    return written, rep
                else:
                    raise AssertionError(f"{server.name}: SET answered {rep!r}")
    return written, None


@pytest.mark.parametrize("kind", ["redis", "keel"])
def test_noeviction_refuses_writes_with_oom_but_serves_reads(server_factory, kind):
    s = server_factory(kind, shards=2, extra=["--maxmemory", str(MAXMEMORY), "--maxmemory-policy", "noeviction"])
    written, err = fill(s, stop_at_error=True)
    assert err is not None, f"{s.name}: {written} KB written under a {MAXMEMORY >> 20} MB noeviction limit, no error"
    assert err == ("error", b"OOM command not allowed when used memory > 'maxmemory'."), err
    assert 0 < written < MAXMEMORY // 1024 * 2, written
    with s.raw() as c:
        assert c.call("GET", "fill:0") == ("bulk", VALUE)  # reads still work
        assert c.call("DBSIZE") == ("int", written)
        assert c.call("DEL", "fill:0", "fill:1") == ("int", 2)  # deletes are allowed at the limit
        assert c.call("INCR", "counter")[0] in ("int", "error")


@pytest.mark.parametrize("kind", ["redis", "keel"])
def test_allkeys_lru_evicts_instead_of_refusing(server_factory, kind):
    s = server_factory(kind, shards=2, extra=["--maxmemory", str(MAXMEMORY), "--maxmemory-policy", "allkeys-lru"])
    written, _ = fill(s, stop_at_error=False)
    assert written == MAX_KEYS
    with s.raw() as c:
        size = c.call("DBSIZE")
        assert size[0] == "int" and 0 < size[1] < MAXMEMORY // 1024 * 2, size
        # (Redis's LRU clock ticks once a second, so which keys survive a fast
        # fill is close to random: only check that survivors are intact.)
        keys = c.call("KEYS", "fill:*")
        assert keys[0] == "array" and 0 < len(keys[1]) <= size[1], (len(keys[1]), size)  # eviction goes on
        some = [k[1] for k in keys[1][:50]]
        got = c.pipeline([("GET", k) for k in some])
        # eviction may go on while we read (replies use memory too): nil or intact
        assert all(g in (("bulk", VALUE), ("nilbulk",)) for g in got), got
        assert ("bulk", VALUE) in got
