"""Geospatial commands through redis-py, beside a reference redis-server: the
same GEOADDs give the same scores (ZRANGE WITHSCORES), and GEOPOS, GEODIST,
GEOHASH, GEOSEARCH, GEOSEARCHSTORE and the GEORADIUS family answer the same
over a few hundred random points, Redis's Sicily examples and the edges
(poles, the antimeridian, huge and zero radii), errors included.

Replies are compared exactly, order included: keel visits the same geohash
cells in the same order, so even an unsorted search lists the members as
Redis does. The points are random with six decimals, so no two distances tie
and sorting is deterministic on both servers.

GEOPOS and WITHCOORD coordinates are RESP3 doubles with Redis's long-double
text (test_coordinates_resp3_text), bulk strings in RESP2.
"""

from __future__ import annotations

import random

import pytest
import redis

from conftest import _checked_stop, start_keel

SICILY = [(13.361389, 38.115556, "Palermo"), (15.087269, 37.502669, "Catania"),
          (12.758489, 38.788135, "edge1"), (17.241510, 38.788135, "edge2")]
UNITS = ["m", "km", "ft", "mi"]


@pytest.fixture
def keel(tmp_path):
    s = start_keel(tmp_path, shards=4)
    yield s
    _checked_stop(s)


def outcome(fn):
    try:
        return ("ok", fn())
    except redis.ResponseError as e:
        return ("err", str(e))


def same(k, r, fn):
    a, b = outcome(lambda: fn(k)), outcome(lambda: fn(r))
    assert a == b
    return a


def random_points(rng: random.Random, n: int):
    pts = []
    for i in range(n):
        if i % 3 == 0:  # a cluster around Sicily, so searches find many
            lon, lat = 14 + rng.uniform(-3, 3), 38 + rng.uniform(-2, 2)
        else:
            lon, lat = rng.uniform(-180, 180), rng.uniform(-85.05, 85.05)
        pts.append((round(lon, 6), round(lat, 6), f"p{i}"))
    return pts


def load(c, key, pts):
    flat = [x for p in pts for x in p]
    return c.geoadd(key, flat)


def test_sicily_examples(keel, ref_redis):
    k, r = keel.client(), ref_redis.client()
    r.flushall()
    assert same(k, r, lambda c: load(c, "Sicily", SICILY[:2])) == ("ok", 2)
    same(k, r, lambda c: c.zrange("Sicily", 0, -1, withscores=True))
    assert same(k, r, lambda c: c.geodist("Sicily", "Palermo", "Catania"))[1] == 166274.1516
    for u in UNITS:
        same(k, r, lambda c: c.geodist("Sicily", "Palermo", "Catania", u))
    same(k, r, lambda c: c.geodist("Sicily", "Palermo", "nope"))
    same(k, r, lambda c: c.geodist("nokey", "Palermo", "Catania"))
    assert same(k, r, lambda c: c.geohash("Sicily", "Palermo", "Catania", "nope"))[1] == [
        "sqc8b49rny0", "sqdtr74hyu0", None]
    same(k, r, lambda c: c.geopos("Sicily", "Palermo", "nope", "Catania"))
    same(k, r, lambda c: c.geopos("nokey", "a", "b"))
    same(k, r, lambda c: c.georadius("Sicily", 15, 37, 200, "km", withdist=True, withcoord=True,
                                     withhash=True, sort="ASC"))
    same(k, r, lambda c: c.georadius("Sicily", 15, 37, 100, "km"))
    same(k, r, lambda c: c.georadiusbymember("Sicily", "Palermo", 200, "km", withdist=True))
    same(k, r, lambda c: load(c, "Sicily", SICILY[2:]))
    same(k, r, lambda c: c.geosearch("Sicily", longitude=15, latitude=37, radius=200, unit="km",
                                     sort="ASC", withdist=True, withcoord=True))
    same(k, r, lambda c: c.geosearch("Sicily", longitude=15, latitude=37, width=400, height=400,
                                     unit="km", sort="ASC", withcoord=True, withdist=True, withhash=True))
    assert same(k, r, lambda c: c.geosearchstore("dst", "Sicily", longitude=15, latitude=37,
                                                  width=400, height=400, unit="km", storedist=True)) == ("ok", 4)
    same(k, r, lambda c: c.zrange("dst", 0, -1, withscores=True))


def test_random_points_and_searches(keel, ref_redis):
    k, r = keel.client(), ref_redis.client()
    r.flushall()
    rng = random.Random(4)
    pts = random_points(rng, 400)
    for i in range(0, len(pts), 50):
        same(k, r, lambda c: load(c, "{g}pts", pts[i:i + 50]))
    assert same(k, r, lambda c: c.zrange("{g}pts", 0, -1, withscores=True))[1]
    names = [p[2] for p in pts]
    for _ in range(30):
        ms = rng.sample(names, 5) + ["missing"]
        same(k, r, lambda c: c.geopos("{g}pts", *ms))
        same(k, r, lambda c: c.geohash("{g}pts", *ms))
        u = rng.choice(UNITS)
        same(k, r, lambda c: c.geodist("{g}pts", ms[0], ms[1], u))
    for n in range(250):
        unit = rng.choice(UNITS)
        scale = {"m": 1, "km": 1000, "ft": 0.3048, "mi": 1609.34}[unit]
        meters = rng.choice([0, 1000, 50_000, 300_000, 2_000_000, 8_000_000, 30_000_000])
        radius = round(meters * rng.uniform(0.5, 1.5) / scale, 3)
        sort = rng.choice([None, "ASC", "DESC"])
        count = rng.choice([None, None, 1, 5, 50])
        any_ = count is not None and rng.random() < 0.3
        opts = dict(sort=sort, count=count, any=any_, withdist=rng.random() < 0.5,
                    withcoord=rng.random() < 0.3, withhash=rng.random() < 0.3)
        if rng.random() < 0.5:
            center = dict(member=rng.choice(names))
        else:
            lon, lat = rng.uniform(-180, 180), rng.uniform(-85, 85)
            if n % 4 == 0:
                lon, lat = 14 + rng.uniform(-2, 2), 38 + rng.uniform(-2, 2)
            center = dict(longitude=round(lon, 5), latitude=round(lat, 5))
        if rng.random() < 0.5:
            shape = dict(radius=radius)
        else:
            shape = dict(width=radius * rng.uniform(0.5, 2), height=radius * rng.uniform(0.5, 2))
        same(k, r, lambda c: c.geosearch("{g}pts", **center, **shape, unit=unit, **opts))
        store_opts = {key: opts[key] for key in ("sort", "count", "any")}
        dist = rng.random() < 0.5
        same(k, r, lambda c: c.geosearchstore("{g}dst", "{g}pts", **center, **shape, unit=unit,
                                              storedist=dist, **store_opts))
        same(k, r, lambda c: c.zrange("{g}dst", 0, -1, withscores=True))
        if "radius" in shape:
            if "member" in center:
                same(k, r, lambda c: c.georadiusbymember("{g}pts", center["member"], radius, unit, **opts))
                same(k, r, lambda c: c.georadiusbymember("{g}pts", center["member"], radius, unit,
                                                         store="{g}d2", **store_opts))
            else:
                same(k, r, lambda c: c.georadius("{g}pts", center["longitude"], center["latitude"],
                                                 radius, unit, **opts))
                same(k, r, lambda c: c.georadius("{g}pts", center["longitude"], center["latitude"],
                                                 radius, unit, store_dist="{g}d2", **store_opts))
            same(k, r, lambda c: c.zrange("{g}d2", 0, -1, withscores=True))


def test_store_across_shards(keel, ref_redis):
    """Destination and source on different shards (no hash tag)."""
    k, r = keel.client(), ref_redis.client()
    r.flushall()
    rng = random.Random(9)
    pts = random_points(rng, 200)
    same(k, r, lambda c: load(c, "src", pts))
    for i, dst in enumerate(["d1", "d2", "d3", "d4", "d5"]):
        same(k, r, lambda c: c.geosearchstore(dst, "src", longitude=14, latitude=38, radius=100 + 50 * i,
                                              unit="km", storedist=i % 2 == 1))
        same(k, r, lambda c: c.georadius("src", 14, 38, 150 + 30 * i, "km", store=dst + "r"))
        same(k, r, lambda c: c.georadiusbymember("src", "p0", 300, "km", count=7, store_dist=dst + "m"))
    for key in ["d1", "d2", "d3", "d4", "d5", "d1r", "d3r", "d2m"]:
        same(k, r, lambda c: c.zrange(key, 0, -1, withscores=True))
    # an empty result deletes the destination; a missing source too
    same(k, r, lambda c: c.set("d1", "x"))
    assert same(k, r, lambda c: c.geosearchstore("d1", "src", longitude=-100, latitude=-80,
                                                  radius=1, unit="m")) == ("ok", 0)
    assert same(k, r, lambda c: c.exists("d1")) == ("ok", 0)
    assert same(k, r, lambda c: c.georadius("nosrc", 1, 1, 1, "m", store="d2")) == ("ok", 0)
    assert same(k, r, lambda c: c.exists("d2")) == ("ok", 0)


def test_edges(keel, ref_redis):
    k, r = keel.client(), ref_redis.client()
    r.flushall()
    edge = [(-180, -85.05112878, "sw"), (180, 85.05112878, "ne"), (180, 0, "am"), (-180, 0, "am2"),
            (0, 0, "origin"), (-0.0, 85, "north"), (179.999999, -85, "south"), (0.000001, 0.000001, "tiny")]
    same(k, r, lambda c: load(c, "e", edge))
    same(k, r, lambda c: c.zrange("e", 0, -1, withscores=True))
    same(k, r, lambda c: c.geopos("e", *[p[2] for p in edge]))
    same(k, r, lambda c: c.geohash("e", *[p[2] for p in edge]))
    for m in [p[2] for p in edge]:
        for radius in [0, 1, 5000, 20_000, 1e6, 1e30]:
            same(k, r, lambda c: c.georadiusbymember("e", m, radius, "km", withdist=True, withhash=True))
            same(k, r, lambda c: c.geosearch("e", member=m, width=radius, height=radius / 3, unit="mi",
                                             withdist=True, sort="DESC"))
    # a score no GEOADD makes still decodes as in Redis
    same(k, r, lambda c: c.zadd("e", {"neg": -1, "huge": 1e300, "big": 2 ** 53 + 1}))
    same(k, r, lambda c: c.geopos("e", "neg", "huge", "big"))
    same(k, r, lambda c: c.geohash("e", "neg", "huge", "big"))
    same(k, r, lambda c: c.geodist("e", "neg", "huge"))
    # NX / XX / CH
    same(k, r, lambda c: c.geoadd("e", [1, 1, "origin", 2, 2, "new"], nx=True))
    same(k, r, lambda c: c.geoadd("e", [1, 1, "origin", 2, 2, "new2"], xx=True, ch=True))
    same(k, r, lambda c: c.geoadd("e", [3, 3, "origin", 4, 4, "new3"], ch=True))
    same(k, r, lambda c: c.geoadd("xx-missing", [3, 3, "a"], xx=True))
    same(k, r, lambda c: c.exists("xx-missing"))
    same(k, r, lambda c: c.zrange("e", 0, -1, withscores=True))


ERRORS = [
    ("GEOADD", "g", "200", "10", "m"), ("GEOADD", "g", "10", "86", "m"), ("GEOADD", "g", "x", "10", "m"),
    ("GEOADD", "g", "1", "1", "m", "2"), ("GEOADD", "g", "NX", "XX", "1", "1", "m"),
    ("GEOADD", "g", "GT", "1", "1", "m"), ("GEOADD", "g", "CH", "CH", "CH"),
    ("GEOADD", "g", "-inf", "1", "m"), ("GEOADD", "g", "1", "nan", "m"),
    ("GEODIST", "g", "a", "b", "parsecs"), ("GEODIST", "g", "a", "b", "km", "x"),
    ("GEOSEARCH", "g", "FROMMEMBER", "nope", "BYRADIUS", "1", "km"),
    ("GEOSEARCH", "g", "FROMLONLAT", "1", "2", "FROMMEMBER", "a", "BYRADIUS", "1", "km"),
    ("GEOSEARCH", "g", "FROMMEMBER", "a", "FROMLONLAT", "1", "2", "BYRADIUS", "1", "km"),
    ("GEOSEARCH", "g", "FROMMEMBER", "a", "BYRADIUS", "1", "km", "BYBOX", "1", "1", "km"),
    ("GEOSEARCH", "g", "BYRADIUS", "1", "km", "ASC", "COUNT", "3"),
    ("geosearch", "g", "FROMMEMBER", "a", "ASC", "COUNT", "3"),
    ("GEOSEARCH", "g", "FROMMEMBER", "a", "BYRADIUS", "-1", "km"),
    ("GEOSEARCH", "g", "FROMMEMBER", "a", "BYRADIUS", "x", "km"),
    ("GEOSEARCH", "g", "FROMMEMBER", "a", "BYRADIUS", "1", "yd"),
    ("GEOSEARCH", "g", "FROMMEMBER", "a", "BYBOX", "-1", "1", "km"),
    ("GEOSEARCH", "g", "FROMMEMBER", "a", "BYBOX", "x", "1", "km"),
    ("GEOSEARCH", "g", "FROMMEMBER", "a", "BYBOX", "1", "y", "km"),
    ("GEOSEARCH", "g", "FROMMEMBER", "a", "BYBOX", "1", "1", "au"),
    ("GEOSEARCH", "g", "FROMMEMBER", "a", "BYRADIUS", "1", "km", "COUNT", "0"),
    ("GEOSEARCH", "g", "FROMMEMBER", "a", "BYRADIUS", "1", "km", "COUNT", "-2"),
    ("GEOSEARCH", "g", "FROMMEMBER", "a", "BYRADIUS", "1", "km", "COUNT", "x"),
    ("GEOSEARCH", "g", "FROMMEMBER", "a", "BYRADIUS", "1", "km", "ANY"),
    ("GEOSEARCH", "g", "FROMMEMBER", "a", "BYRADIUS", "1", "km", "COUNT"),
    ("GEOSEARCH", "g", "FROMMEMBER", "a", "BYRADIUS", "1", "km", "STOREDIST"),
    ("GEOSEARCH", "g", "FROMMEMBER", "a", "BYRADIUS", "1", "km", "STORE", "x"),
    ("GEOSEARCH", "g", "FROMLONLAT", "181", "0", "BYRADIUS", "1", "km"),
    ("GEOSEARCHSTORE", "d", "g", "FROMMEMBER", "a", "BYRADIUS", "1", "km", "WITHDIST"),
    ("GEOSEARCHSTORE", "d", "g", "FROMMEMBER", "a", "BYRADIUS", "1", "km", "WITHCOORD", "STOREDIST"),
    ("GEORADIUS", "g", "1", "2", "1", "km", "STORE", "d", "WITHHASH"),
    ("GEORADIUS", "g", "1", "2", "1", "km", "FROMMEMBER", "a"),
    ("GEORADIUS", "g", "1", "2", "1", "km", "STORE"),
    ("GEORADIUS", "g", "1", "91", "1", "km"),
    ("GEORADIUS", "g", "1", "2", "-1", "km"),
    ("GEORADIUS_RO", "g", "1", "2", "1", "km", "STORE", "d"),
    ("GEORADIUSBYMEMBER", "g", "nope", "1", "km"),
    ("GEORADIUSBYMEMBER", "g", "a", "1", "km", "STOREDIST", "d", "WITHDIST"),
    ("GEORADIUSBYMEMBER_RO", "g", "a", "1", "km", "STOREDIST", "d"),
    ("GEORADIUSBYMEMBER", "nokey", "a", "x", "y"),
    ("GEORADIUSBYMEMBER", "nokey", "a", "x", "y", "ANY"),
    ("GEOSEARCH", "nokey", "FROMMEMBER", "a", "BYRADIUS", "1", "km"),
    ("GEOSEARCH", "nokey", "FROMMEMBER", "a", "BYBOX", "1", "1", "km", "WITHDIST", "COUNT", "2", "ANY"),
    ("GEOPOS", "str", "a"), ("GEOHASH", "str", "a"), ("GEODIST", "str", "a", "b"),
    ("GEOSEARCH", "str", "FROMMEMBER", "nope", "BYRADIUS", "x", "y"),
    ("GEOADD", "str", "1", "1", "m"), ("GEORADIUS", "str", "1", "200", "1", "m"),
    ("GEOSEARCHSTORE", "g", "str", "FROMLONLAT", "1", "1", "BYRADIUS", "1", "m"),
    ("GEOSEARCHSTORE", "str", "g", "FROMLONLAT", "1", "1", "BYRADIUS", "1000", "km"),
    ("GEORADIUS", "g", "1", "1", "1000", "km", "STORE", "str"),
    ("TYPE", "str"),
    ("GEOSEARCH", "g", "FROMLONLAT", "1", "1", "BYRADIUS", "inf", "km", "ASC"),
    ("GEOSEARCH", "g", "FROMLONLAT", "1", "1", "BYBOX", "inf", "1e308", "km", "ASC"),
    ("GEORADIUS", "g", "1", "1", "1e308", "mi", "COUNT", "9223372036854775807", "DESC"),
    ("GEORADIUS", "g", "1", "1", "0", "m", "WITHDIST", "WITHCOORD", "WITHHASH"),
    ("GEOADD", "g"), ("GEOPOS",), ("GEOSEARCH", "g", "FROMMEMBER", "a", "BYRADIUS", "1"),
]


def test_errors_and_edge_arguments(keel, ref_redis):
    with keel.raw() as kc, ref_redis.raw() as rc:
        rc.call("FLUSHALL")
        for c in (kc, rc):
            c.call("GEOADD", "g", "1", "1", "a", "1.001", "1.001", "b")
            c.call("SET", "str", "x")
        for args in ERRORS:
            assert kc.call(*args) == rc.call(*args), args
        for key in ("g", "d", "str"):
            assert kc.call("ZRANGE", key, "0", "-1", "WITHSCORES") == rc.call("ZRANGE", key, "0", "-1", "WITHSCORES")


def test_coordinates_resp2_bytes(keel, ref_redis):
    """GEOPOS and WITHCOORD text byte for byte (redis-py turns it into floats)."""
    with keel.raw() as kc, ref_redis.raw() as rc:
        rc.call("FLUSHALL")
        rng = random.Random(11)
        args = ["GEOADD", "g"]
        for lon, lat, m in random_points(rng, 100):
            args += [str(lon), str(lat), m]
        for c in (kc, rc):
            c.call(*args)
        members = [f"p{i}" for i in range(100)]
        assert kc.call("GEOPOS", "g", *members) == rc.call("GEOPOS", "g", *members)
        q = ("GEOSEARCH", "g", "FROMLONLAT", "14", "38", "BYRADIUS", "500", "km", "WITHCOORD", "WITHDIST", "WITHHASH")
        assert kc.call(*q) == rc.call(*q)


def test_coordinates_resp3_text(keel, ref_redis):
    with keel.raw() as kc, ref_redis.raw() as rc:
        rc.call("FLUSHALL")
        for c in (kc, rc):
            c.call("HELLO", "3")
            c.call("GEOADD", "g", "13.361389", "38.115556", "Palermo")
        a, b = kc.call("GEOPOS", "g", "Palermo", "x"), rc.call("GEOPOS", "g", "Palermo", "x")
        assert [x[1] for x in a[1][0][1]] == [x[1] for x in b[1][0][1]] == [b"13.36138933897018433",
                                                                            b"38.11555639549629859"]
        assert b[1][0][1][0][0] == "double"
        assert a == b
        assert a[1][1] == b[1][1] == ("null",)
        d = ("GEODIST", "g", "Palermo", "Palermo")
        assert kc.call(*d) == rc.call(*d) == ("bulk", b"0.0000")
