"""The REST API through Upstash's Python SDK (`upstash-redis`, unchanged):
strings with expiry, hashes, sorted sets, pipelines, transactions, a
read-only token, and errors raised as the SDK raises them."""

from __future__ import annotations

import pytest

from conftest import TARGET, free_port

from upstash_redis import Redis  # tests/requirements.txt, installed by tests/install-deps.sh
from upstash_redis.errors import UpstashError

pytestmark = pytest.mark.skipif(TARGET != "keel", reason="REST is served by keel only")

TOKEN = "py-token"
RO = "py-read-only"


@pytest.fixture
def rest(server_factory):
    http = free_port()
    server_factory("keel", shards=2, extra=["--requirepass", TOKEN, "--http-readonly-token", RO,
                                           "--http-port", str(http)])
    url = f"http://127.0.0.1:{http}"
    return lambda token=TOKEN: Redis(url=url, token=token, allow_telemetry=False)


def test_commands_pipelines_and_transactions(rest):
    r = rest()
    assert r.set("greeting", "héllo ✓", ex=60) is True
    assert r.get("greeting") == "héllo ✓"
    assert 0 < r.ttl("greeting") <= 60
    assert r.incrby("n", 5) == 5
    assert r.hset("h", values={"a": "1", "b": "2"}) == 2
    assert r.hgetall("h") == {"a": "1", "b": "2"}
    assert r.zadd("z", {"x": 1.5, "y": 0.5}) == 2
    assert r.zrange("z", 0, -1, withscores=True) == [("y", 0.5), ("x", 1.5)]

    p = r.pipeline()
    p.set("p", "1")
    p.incr("p")
    p.get("p")
    assert p.exec() == [True, 2, "2"]

    tx = r.multi()
    tx.set("t", "a")
    tx.append("t", "b")
    tx.get("t")
    assert tx.exec() == [True, 2, "ab"]

    with pytest.raises(UpstashError, match="not an integer"):
        r.incr("greeting")


def test_read_only_and_wrong_tokens(rest):
    rest().set("k", "v")
    ro = rest(RO)
    assert ro.get("k") == "v"
    with pytest.raises(UpstashError, match="NOPERM"):
        ro.set("k", "w")
    with pytest.raises(UpstashError, match="Unauthorized"):
        rest("nope").get("k")
    assert rest().get("k") == "v"
