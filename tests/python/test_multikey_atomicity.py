"""Multi-key commands are atomic across shards: a concurrent reader never sees a
multi-key write half done. The keys below live on different shards with
--shards 4 (slot % 4 = 2, 1, 0, 3), so keel must coordinate shards.
"""

from __future__ import annotations

import threading
import time

KEYS = ["k1", "k2", "k3", "flt"]  # crc16 slots 12706, 449, 4576, 6559
ROUNDS = 1500
DEADLINE = 60.0


def run_concurrently(writer, reader):
    """Run writer() in a thread and reader(stop) in this one; both bounded."""
    errors = []
    stop = threading.Event()

    def wrap():
        try:
            writer()
        except BaseException as e:  # surfaced below
            errors.append(e)
        finally:
            stop.set()

    t = threading.Thread(target=wrap, daemon=True)
    t.start()
    checks = reader(stop)
    t.join(DEADLINE)
    assert not t.is_alive(), "writer did not finish in time"
    if errors:
        raise errors[0]
    return checks


def test_mset_is_seen_all_or_nothing_by_mget(keel):
    with keel.raw() as w:
        assert w.call("MSET", *[x for k in KEYS for x in (k, "0")]) == ("simple", b"OK")

    def writer():
        with keel.raw() as w:
            for i in range(1, ROUNDS + 1):
                assert w.call("MSET", *[x for k in KEYS for x in (k, str(i))]) == ("simple", b"OK")

    def reader(stop):
        n = 0
        deadline = time.monotonic() + DEADLINE
        with keel.raw() as r:
            while not stop.is_set() and time.monotonic() < deadline:
                reply = r.call("MGET", *KEYS)
                values = {v[1] for v in reply[1]}
                assert len(values) == 1, f"MGET saw a half-applied MSET: {reply}"
                n += 1
            final = r.call("MGET", *KEYS)
        assert final == ("array", [("bulk", str(ROUNDS).encode())] * len(KEYS))
        return n

    assert run_concurrently(writer, reader) > 0


def test_rename_across_shards_never_shows_both_or_neither(keel):
    with keel.raw() as w:
        w.call("SET", "k1", "payload")

    def writer():
        with keel.raw() as w:
            for i in range(ROUNDS):
                src, dst = ("k1", "k2") if i % 2 == 0 else ("k2", "k1")
                assert w.call("RENAME", src, dst) == ("simple", b"OK")

    def reader(stop):
        n = 0
        deadline = time.monotonic() + DEADLINE
        with keel.raw() as r:
            while not stop.is_set() and time.monotonic() < deadline:
                reply = r.call("EXISTS", "k1", "k2")
                assert reply == ("int", 1), f"EXISTS k1 k2 during RENAME answered {reply}"
                n += 1
        return n

    assert run_concurrently(writer, reader) > 0


def test_del_of_keys_on_all_shards_is_atomic(keel):
    def writer():
        with keel.raw() as w:
            for _ in range(ROUNDS // 2):
                assert w.call("MSET", *[x for k in KEYS for x in (k, "v")]) == ("simple", b"OK")
                assert w.call("DEL", *KEYS) == ("int", len(KEYS))

    def reader(stop):
        n = 0
        deadline = time.monotonic() + DEADLINE
        with keel.raw() as r:
            while not stop.is_set() and time.monotonic() < deadline:
                reply = r.call("EXISTS", *KEYS)
                assert reply in (("int", 0), ("int", len(KEYS))), f"EXISTS saw a half-done DEL/MSET: {reply}"
                n += 1
        return n

    assert run_concurrently(writer, reader) > 0


def test_msetnx_race_has_one_winner(keel):
    """Two clients race MSETNX over the same cross-shard keys: exactly one wins
    and the keys hold only the winner's values."""
    for round_ in range(100):
        with keel.raw() as c:
            c.call("DEL", *KEYS)
        results = {}
        barrier = threading.Barrier(2, timeout=10)

        def racer(name):
            with keel.raw() as c:
                barrier.wait()
                results[name] = c.call("MSETNX", *[x for k in KEYS for x in (k, name)])

        threads = [threading.Thread(target=racer, args=(n,), daemon=True) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sorted(results.values()) == [("int", 0), ("int", 1)], (round_, results)
        winner = next(n for n, r in results.items() if r == ("int", 1))
        with keel.raw() as c:
            assert c.call("MGET", *KEYS) == ("array", [("bulk", winner.encode())] * len(KEYS)), round_
