"""GET /metrics on the HTTP port: keel's figures in Prometheus's text format
(OpenMetrics), per shard and by command family, summed from every core at
scrape time. Scraped with urllib and read with a parser for the exposition
format, as a Prometheus server would."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest
import redis

from conftest import TARGET, _checked_stop, free_port, start_keel

pytestmark = pytest.mark.skipif(TARGET != "keel", reason="keel's HTTP port")

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$')


def scrape(port):
    """{(name, frozenset(labels)): value}, and the response's content type."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        kind = r.headers["content-type"]
        text = r.read().decode()
    assert text.endswith("# EOF\n"), text[-200:]
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out, kind


def total(samples, name, **labels):
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    http = free_port()
    s = start_keel(tmp_path_factory.mktemp("keel-metrics"), shards=2,
                   extra_args=["--http-port", str(http), "--appendonly", "yes"])
    s.http_port = http
    yield s
    _checked_stop(s)


def test_metrics_count_what_the_shards_hold_and_ran(node):
    c = redis.Redis(host="127.0.0.1", port=node.port)
    c.flushall()
    before, kind = scrape(node.http_port)
    assert kind.startswith("application/openmetrics-text")
    for i in range(200):
        c.set(f"key:{i}", "v" * 10)
    c.hset("h", mapping={"a": "1", "b": "2"})
    c.get("missing")
    with pytest.raises(redis.ResponseError):
        c.incr("h")
    after, _ = scrape(node.http_port)

    # Keys: per shard, both shards hold some, and they add up.
    per_shard = {dict(ls)["shard"]: v for (n, ls), v in after.items() if n == "keel_shard_keys"}
    assert sorted(per_shard) == ["0", "1"] and all(v > 0 for v in per_shard.values())
    assert sum(per_shard.values()) == 201 == c.dbsize()
    assert total(after, "keel_shard_used_memory_bytes") > 0
    # Every write moved some shard's sequence; the miss is counted.
    assert total(after, "keel_shard_write_seq_total") - total(before, "keel_shard_write_seq_total") >= 201
    assert total(after, "keel_shard_keyspace_misses_total") > total(before, "keel_shard_keyspace_misses_total")
    # Commands by family, errors among them.
    ran = lambda fam: total(after, "keel_commands_total", family=fam) - total(before, "keel_commands_total", family=fam)
    assert ran("string") >= 202  # 200 SET, GET, INCR
    assert ran("hash") >= 1
    assert total(after, "keel_command_errors_total", family="string") >= 1
    assert total(after, "keel_connected_clients") >= 1
    c.close()


def test_metrics_sees_expiry_and_other_cores_clients(node):
    c = redis.Redis(host="127.0.0.1", port=node.port)
    c.flushall()
    before, _ = scrape(node.http_port)
    clients = [redis.Redis(host="127.0.0.1", port=node.port) for _ in range(6)]
    for i, x in enumerate(clients):
        x.set(f"short:{i}", "v", px=1)
    time.sleep(0.05)
    for i in range(6):
        assert c.get(f"short:{i}") is None
    after, _ = scrape(node.http_port)
    assert total(after, "keel_shard_expired_keys_total") - total(before, "keel_shard_expired_keys_total") == 6
    assert total(after, "keel_connections_received_total") - total(before, "keel_connections_received_total") >= 6
    for x in clients:
        x.close()
    c.close()


def test_metrics_wants_get(node):
    req = urllib.request.Request(f"http://127.0.0.1:{node.http_port}/metrics", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405


def test_metrics_show_the_logs_and_snapshots(node):
    c = redis.Redis(host="127.0.0.1", port=node.port)
    for i in range(50):
        c.set(f"logged:{i}", "x" * 100)
    assert c.save() is True
    after, _ = scrape(node.http_port)
    assert total(after, "keel_log_bytes") > 50 * 100
    assert total(after, "keel_log_write_ok") == 1
    assert total(after, "keel_last_snapshot_ok") == 1
    assert abs(total(after, "keel_last_snapshot_time_seconds") - c.lastsave().timestamp()) <= 1
    # A node with no primary: every shard reports itself caught up.
    lags = {dict(ls)["shard"]: v for (n, ls), v in after.items() if n == "keel_repl_lag_ms"}
    assert sorted(lags) == ["0", "1"] and set(lags.values()) == {0}
    c.close()


def buckets(samples, name, **labels):
    """[(le, cumulative count)] of one histogram, in order of `le`."""
    want = set(labels.items())
    out = []
    for (n, ls), v in samples.items():
        if n == name + "_bucket" and want <= set(ls):
            le = dict(ls)["le"]
            out.append((float("inf") if le == "+Inf" else float(le), v))
    return sorted(out)


def test_metrics_time_commands_and_fsyncs_in_histograms(tmp_path):
    http = free_port()
    s = start_keel(tmp_path, shards=2, extra_args=["--http-port", str(http), "--appendonly", "yes",
                                                   "--appendfsync", "always"])
    try:
        c = redis.Redis(host="127.0.0.1", port=s.port)
        before, _ = scrape(http)
        for i in range(40):
            c.set(f"t:{i}", i)
        c.client_list()  # a container command: timed per subcommand, counted in its family
        after, _ = scrape(http)
        name = "keel_command_duration_seconds"
        runs = total(after, name + "_count", family="string") - total(before, name + "_count", family="string")
        assert runs == 40
        assert total(after, name + "_count", family="connection") >= 1
        b = buckets(after, name, family="string")
        les = [le for le, _ in b]
        # Power-of-two microsecond bounds, ending with +Inf; counts cumulative.
        assert les[-1] == float("inf") and all(abs(le * 1e6 - 2 ** k) < 1e-3 for k, le in enumerate(les[:-1]))
        assert all(x <= y for (_, x), (_, y) in zip(b, b[1:]))
        assert b[-1][1] == total(after, name + "_count", family="string")
        assert total(after, name + "_sum", family="string") > 0
        # Every acknowledged write under `always` waited for an fsync.
        syncs = total(after, "keel_fsync_duration_seconds_count") - total(before, "keel_fsync_duration_seconds_count")
        assert 1 <= syncs <= 40
        assert buckets(after, "keel_fsync_duration_seconds")[-1][1] == total(after, "keel_fsync_duration_seconds_count")
        c.close()
    finally:
        _checked_stop(s)
