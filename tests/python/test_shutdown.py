"""SHUTDOWN through redis-py and a raw connection: a clean stop (exit code 0,
connection dropped with no reply, every acknowledged write there after a
restart), SAVE taking a snapshot first, and the argument errors in Redis's
words. KEEL_TEST_TARGET=redis runs the same checks against redis-server.
"""

from __future__ import annotations

import pytest

from conftest import TARGET, start_keel


@pytest.fixture
def server(tmp_path):
    extra = ["--appendonly", "yes", "--appendfsync", "always"] if TARGET == "keel" else ["--appendonly", "yes"]
    s = start_keel(tmp_path, shards=2, extra_args=extra)
    yield s
    s.stop()


def test_bad_arguments_are_refused_and_the_server_stays_up(server):
    with server.raw() as c:
        assert c.call("SHUTDOWN", "sometimes") == ("error", b"ERR syntax error")
        assert c.call("SHUTDOWN", "SAVE", "NOSAVE") == ("error", b"ERR syntax error")
        assert c.call("SHUTDOWN", "ABORT", "NOW") == ("error", b"ERR syntax error")
        assert c.call("SHUTDOWN", "ABORT") == ("error", b"ERR No shutdown in progress.")
        assert c.call("PING") == ("simple", b"PONG")
    assert server.alive()


@pytest.mark.parametrize("how", [("NOSAVE",), ("SAVE",), ("NOW", "FORCE")])
def test_shutdown_stops_cleanly_and_keeps_every_write(server, how):
    c = server.client()
    for i in range(500):
        c.set(f"k{i}", i)
    c.hset("h", mapping={"a": 1, "b": 2})
    # redis-py reads the dropped connection as success (and raises if the
    # server answered instead).
    assert c.shutdown(nosave="NOSAVE" in how, save="SAVE" in how, now="NOW" in how,
                      force="FORCE" in how) is None
    assert server.proc.wait(15) == 0
    server.start()
    c = server.client()
    assert c.dbsize() == 501
    assert c.get("k499") == b"499" and c.hgetall("h") == {b"a": b"1", b"b": b"2"}
