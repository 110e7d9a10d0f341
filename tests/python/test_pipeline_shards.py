"""Pipelines across shards (issue 13, item 2): a pipeline whose keys span the
shards of several cores goes to each other core as one message per batch, not
one per command, and the client cannot tell: every reply comes back in request
order, identical to redis-server's for the same pipeline (writes then reads of
one key, errors, connection commands, multi-key commands in between)."""

from __future__ import annotations

import random

from respclient import RespConnection


def mixed_pipeline(seed: int, n: int) -> list[tuple]:
    rnd = random.Random(seed)
    cmds: list[tuple] = []
    for i in range(n):
        k = f"p:{rnd.randrange(40)}"
        r = rnd.random()
        if r < 0.25:
            cmds.append(("INCR", f"{k}:n"))
            cmds.append(("GET", f"{k}:n"))
        elif r < 0.40:
            cmds.append(("RPUSH", f"{k}:l", str(i)))
            cmds.append(("LRANGE", f"{k}:l", "-2", "-1"))
        elif r < 0.55:
            cmds.append(("HSET", f"{k}:h", "f", str(i)))
            cmds.append(("HGET", f"{k}:h", "f"))
        elif r < 0.65:
            cmds.append(("SET", k, str(i)))
            cmds.append(("APPEND", k, "x"))
        elif r < 0.70:
            cmds.append(("LPUSH", k, "v"))  # wrong type or not: an error in place
        elif r < 0.75:
            cmds.append(("MGET", k, f"{k}:n", "p:1:n"))
        elif r < 0.80:
            cmds.append(("DEL", f"{k}:l"))
        elif r < 0.83:
            cmds.append(("PING",))
        elif r < 0.86:
            cmds.append(("SELECT", "1"))
            cmds.append(("INCR", f"{k}:n"))
            cmds.append(("SELECT", "0"))
        elif r < 0.88:
            cmds.append(("NOSUCHCOMMAND", k))
        else:
            cmds.append(("EXISTS", k, f"{k}:h"))
    return cmds


def run_pipeline(server, cmds: list[tuple]) -> list:
    with RespConnection(server.host, server.port) as c:
        c.call("FLUSHALL")
        return c.pipeline(cmds)


def test_a_mixed_pipeline_answers_as_redis_does_in_order(keel, ref):
    for seed in range(3):
        cmds = mixed_pipeline(seed, 2000)
        got, want = run_pipeline(keel, cmds), run_pipeline(ref, cmds)
        assert len(got) == len(want) == len(cmds)
        diff = [(i, cmds[i], g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w]
        assert not diff, f"{keel.name}: {len(diff)} replies differ, first {diff[:3]}"


def test_a_pipeline_over_other_cores_travels_in_batches(keel):
    def stats():
        with RespConnection(keel.host, keel.port) as c:
            text = c.call("INFO", "stats")[1].decode()
        v = dict(l.split(":", 1) for l in text.splitlines() if ":" in l)
        return int(v["pipeline_batches"]), int(v["pipeline_batched_commands"])

    b0, c0 = stats()
    with RespConnection(keel.host, keel.port) as c:
        replies = c.pipeline([("SET", f"b:{i}", str(i)) for i in range(2000)])
        assert all(r == ("simple", b"OK") for r in replies)
        replies = c.pipeline([("GET", f"b:{i}") for i in range(2000)])
        assert replies == [("bulk", str(i).encode()) for i in range(2000)]
    b1, c1 = stats()
    if keel.shards == 1:
        assert (b1, c1) == (b0, c0), "one shard: nothing should cross cores"
    else:
        # Commands for another core's shards travel many to a message.
        assert c1 - c0 >= 1000, f"only {c1 - c0} of 4000 commands were batched"
        assert (c1 - c0) >= 8 * (b1 - b0), f"{c1 - c0} commands in {b1 - b0} batches"
