"""tuning/grafana-keel.json, the Grafana dashboard over keel's /metrics.

Checked: the file is a well-formed dashboard (a Prometheus data source as a
variable, an `instance` variable every query filters on, unique panel ids);
every `keel_` metric it names exists in a real scrape of a running cluster
(three nodes, so that the cluster-only and primary-only series — members,
links to backups — are there); and every query runs: a real Prometheus
(Debian's `prometheus` package, see tests/install-deps.sh) scrapes the three
nodes while a client writes, and each panel's query, with the variables
filled in as Grafana would, must parse and return series."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import redis

from backup_cluster import start_backup_cluster
from conftest import REPO, TARGET, _die_with_parent, free_port

pytestmark = pytest.mark.skipif(TARGET != "keel", reason="keel's /metrics")

DASHBOARD = REPO / "tuning" / "grafana-keel.json"
PROMETHEUS = shutil.which("prometheus")
METRIC = re.compile(r"\bkeel_[a-z0-9_]+")
SCRAPE_S = 1  # Prometheus's scrape interval in this test
RATE_WINDOW = "5s"  # what $__rate_interval becomes: a few scrapes
PROM_TIMEOUT = 30.0  # s for Prometheus to start and have data for every query


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def queries(d: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and annotation."""
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            out.append((f"{p['title']} [{t['refId']}]", t["expr"]))
    for a in d["annotations"]["list"]:
        if "expr" in a:
            out.append((f"annotation {a['name']}", a["expr"]))
    return out


def as_grafana_sends(expr: str) -> str:
    """The query with the variables filled in: every node, a short rate window."""
    return expr.replace("$instance", ".+").replace("$__rate_interval", RATE_WINDOW)


def test_dashboard_is_well_formed():
    d = dashboard()
    assert d["title"] == "keel" and d["uid"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    inst = variables["instance"]
    assert inst["type"] == "query" and inst["multi"] and inst["includeAll"]
    assert "label_values(keel_" in inst["definition"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for p in d["panels"]:
        assert {"h", "w", "x", "y"} <= p["gridPos"].keys() and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            # Every selector of a keel metric is narrowed to the chosen nodes.
            for sel in re.findall(r"\bkeel_[a-z0-9_]+(\{[^}]*\})?", t["expr"]):
                assert 'instance=~"$instance"' in sel, f"{p['title']}: {t['expr']}"
    # The failover story is there at a glance.
    titles = {p["title"] for p in d["panels"]}
    for want in ("Role per node", "Term", "Writes paused", "Member states as each node sees them",
                 "Elections and failovers", "Election duration", "Operations / s by command family",
                 "p99 latency by command family", "Lag in records", "Lag in bytes", "Lag in ms",
                 "Replication bytes / s: raw vs on the wire", "fsync latency", "Keys per shard",
                 "Memory per shard"):
        assert want in titles, want


def scrape_names(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {m.group(0) for line in text.splitlines() if not line.startswith("#")
            for m in [METRIC.match(line)] if m}


def prom_query(port: int, expr: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        if e.code == 503:  # still starting
            raise ConnectionError("Prometheus is not ready") from None
        # 400: the query does not parse; 422: it cannot be evaluated
        raise AssertionError(f"Prometheus refused {expr!r}: {e.read().decode()}") from None
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_backup_cluster(tmp_path_factory.mktemp("keel-grafana"), shards=2, http=True)
    yield c
    died = c.stop()
    assert not died, f"nodes died during the test: {died}\n{c.log_tail()}"


def test_every_metric_the_dashboard_queries_exists_in_a_real_scrape(cluster):
    # A write through the front door: the primary streams it to both backups,
    # so every family of series (links, lag, syncs, members) is populated.
    redis.Redis(host="127.0.0.1", port=cluster.port).set("grafana", "1")
    scraped = set()
    for n in cluster.nodes.values():
        scraped |= scrape_names(n.http_port)
    wanted = set()
    for _, expr in queries(dashboard()):
        wanted |= set(METRIC.findall(expr))
    wanted |= set(METRIC.findall(json.dumps(dashboard()["templating"])))
    assert len(wanted) >= 30, sorted(wanted)
    missing = sorted(wanted - scraped)
    assert not missing, f"the dashboard queries metrics no node exposes: {missing}"


def test_every_query_runs_on_prometheus_and_returns_series(cluster, tmp_path):
    assert PROMETHEUS, ("the `prometheus` binary is missing: apt-get install prometheus "
                        "(tests/install-deps.sh does)")
    port = free_port()
    targets = [f"127.0.0.1:{n.http_port}" for n in cluster.nodes.values()]
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        f"global:\n  scrape_interval: {SCRAPE_S}s\n  evaluation_interval: {SCRAPE_S}s\n"
        "scrape_configs:\n- job_name: keel\n  static_configs:\n"
        f"  - targets: {json.dumps(targets)}\n")
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    client = redis.Redis(host="127.0.0.1", port=cluster.port)
    try:
        deadline = time.monotonic() + PROM_TIMEOUT
        # Panels must show series; an annotation only marks events (a term
        # change) and is empty without one: it must parse.
        todo = {w: e for w, e in queries(dashboard()) if not w.startswith("annotation")}
        annotations = {w: e for w, e in queries(dashboard()) if w.startswith("annotation")}
        assert annotations
        results: dict[str, int] = {}
        i = 0
        while todo and time.monotonic() < deadline:
            assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            # Keep traffic going: writes (through a backup, so forwarded),
            # reads, a miss; the rate windows need a few scrapes of it.
            pipe = client.pipeline(transaction=False)
            for _ in range(50):
                i += 1
                pipe.set(f"g:{i % 500}", i).get(f"g:{i % 700}").hset("gh", f"f{i % 50}", i)
            pipe.execute()
            try:
                for where, expr in list(todo.items()):
                    series = prom_query(port, as_grafana_sends(expr))
                    if series:
                        results[where] = len(series)
                        del todo[where]
            except (urllib.error.URLError, ConnectionError):
                pass  # Prometheus not listening yet
            time.sleep(0.5)
        assert not todo, (f"queries with no series after {PROM_TIMEOUT}s: {todo}\n"
                          f"(answered: {results})")
        for expr in annotations.values():
            prom_query(port, as_grafana_sends(expr))
        # Once every node was scraped: one role and one term per node, each
        # node's view of each member, the primary's links to two backups.
        want = {"Role per node [A]": 3, "Term [A]": 3, "Member states as each node sees them [A]": 9,
                "Replication bytes / s: raw vs on the wire [A]": 2}
        every = dict(queries(dashboard()))
        got = {}
        while time.monotonic() < deadline + 10:
            got = {w: len(prom_query(port, as_grafana_sends(every[w]))) for w in want}
            if got == want:
                break
            time.sleep(0.5)
        assert got == want
    finally:
        prom.terminate()
        try:
            prom.wait(10)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        log.close()
