"""GET /metrics on real replicas and through a failover, over the cluster
harness: what a Prometheus server scraping every node would see.

Three hosts in three zones (5 ms one way between zones), as test_failover.
The primary's scrape shows each backup's link (records and bytes sent, raw
and compressed, lag back to 0 once acknowledged); a backup's shows how it
synced. After the primary is killed, the survivors' scrapes show the dead
node failed, the election counted and timed, and the new role.
"""

from __future__ import annotations

import re

from harness import Cluster
from test_failover import (DELAY_MS, FAILOVER_BOUND, HTTP_PORT, PORTS, SHARDS, ZONES, check,
                           start_cluster, until, wait_one_primary)

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$')


def scrape(c: Cluster, host: str) -> dict[tuple[str, frozenset], float]:
    """The host's /metrics, from inside its namespace, parsed into
    {(name, labels): value}; every line must be a sample or a comment."""
    s = c.socket(host)
    s.settimeout(5)
    try:
        s.connect(c.addr(host, HTTP_PORT))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: keel\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    text = body.decode()
    assert text.endswith("# EOF\n"), text[-200:]
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def total(samples, name, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def test_metrics_follow_replication_and_a_failover():
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c)
        # Compressible values, so the cross-zone links' lz4 shows.
        with c.connect("h1", "h1") as r:
            for i in range(0, 2000, 100):
                r.send("MSET", *[x for k in range(i, i + 100) for x in (f"k:{k}", "v" * 200)])
            for _ in range(0, 2000, 100):
                assert r.read() == "OK"

        def caught_up():
            m = scrape(c, "h1")
            lag = [v for (n, ls), v in m.items() if n == "keel_repl_link_lag_records"]
            return m if len(lag) == 2 * SHARDS and not any(lag) else None
        m = until(c, caught_up, 10, "both backups acknowledged every record")
        for b in ("h2", "h3"):
            pay = total(m, "keel_repl_link_payload_bytes_total", backup=b)
            wire = total(m, "keel_repl_link_wire_bytes_total", backup=b)
            check(c, pay >= 2000 * 200, f"{b}: {pay} payload bytes for 400 kB of values")
            check(c, 0 < wire < pay, f"{b}: cross-zone link sent {wire} bytes for {pay} (lz4)")
            check(c, total(m, "keel_repl_link_lag_bytes", backup=b) == 0, f"{b}: bytes unacknowledged")
            check(c, total(m, "keel_repl_link_payload_bytes_total", backup=b, zone=c.zone(b)) == pay,
                  f"{b}: links labelled with the backup's zone")
        check(c, total(m, "keel_cluster_role", role="primary") == 1, "h1 reports itself primary")
        check(c, total(m, "keel_cluster_member_state", member="h1", state="myself") == 1, "h1 is myself")
        for b in ("h2", "h3"):
            check(c, total(m, "keel_cluster_member_state", member=b, state="ok") == 1, f"{b} ok on h1")
            check(c, total(m, "keel_cluster_member_state", member=b, state="failed") == 0, f"{b} not failed")
        b = scrape(c, "h2")
        check(c, total(b, "keel_repl_syncs_total", kind="full") + total(b, "keel_repl_syncs_total", kind="partial")
              >= SHARDS, "h2 synced every shard")
        check(c, total(b, "keel_shard_keys") == 2000, "h2 holds every key")
        check(c, total(b, "keel_cluster_role", role="backup") == 1, "h2 reports itself a backup")
        before = {h: scrape(c, h) for h in ("h2", "h3")}

        c.kill("h1")
        new, term = wait_one_primary(c, ["h2", "h3"], 3 * FAILOVER_BOUND, "a new primary", not_="h1")
        other = "h3" if new == "h2" else "h2"

        def dead_seen(h):
            m = scrape(c, h)
            return m if total(m, "keel_cluster_member_state", member="h1", state="failed") == 1 else None
        for h in (new, other):
            m = until(c, lambda h=h: dead_seen(h), FAILOVER_BOUND, f"{h} sees h1 failed")
            was = before[h]
            check(c, total(m, "keel_cluster_term") == term, f"{h}: term {term}")
            check(c, total(m, "keel_cluster_elections_total") > total(was, "keel_cluster_elections_total")
                  or h == other, f"{h}: the election it ran is counted")
            check(c, total(m, "keel_cluster_failovers_seen_total") >= 1, f"{h}: saw its primary fail")
            done = total(m, "keel_cluster_election_duration_seconds_count")
            check(c, done > total(was, "keel_cluster_election_duration_seconds_count"),
                  f"{h}: the election's duration is recorded")
            # The duration is bounded by the test's own failover bound.
            secs = total(m, "keel_cluster_election_duration_seconds_sum")
            check(c, 0 <= secs <= 3 * FAILOVER_BOUND, f"{h}: election took {secs}s")
        m = scrape(c, new)
        check(c, total(m, "keel_cluster_elections_won_total") == 1, f"{new} won once")
        check(c, total(m, "keel_cluster_role", role="primary") == 1, f"{new} reports itself primary")
        check(c, total(m, "keel_cluster_writes_paused") == 0, f"{new} takes writes")
        o = scrape(c, other)
        check(c, total(o, "keel_cluster_elections_won_total") == 0, f"{other} won nothing")
        # The new primary streams to the survivor: its link shows up.
        until(c, lambda: total(scrape(c, new), "keel_repl_link_payload_bytes_total", backup=other) >= 0
              and any(n == "keel_repl_link_lag_records" and dict(ls).get("backup") == other
                      for (n, ls) in scrape(c, new)), 15, f"{new} streams to {other}")
