"""Self-test of the raw RESP client the other tests rely on: every RESP3 type,
as a real redis-server sends it (DEBUG PROTOCOL), parses to the expected value,
and push messages are filed apart from replies."""

from __future__ import annotations

import pytest

from respclient import RespConnection, encode_command

EXPECTED = {
    "string": ("bulk", b"Hello World"),
    "integer": ("int", 12345),
    "double": ("double", b"3.141"),
    "bignum": ("bignum", 1234567999999999999999999999999999999),
    "null": ("null",),
    "array": ("array", [("int", 0), ("int", 1), ("int", 2)]),
    "set": ("set", [("int", 0), ("int", 1), ("int", 2)]),
    "map": ("map", [(("int", 0), ("bool", False)), (("int", 1), ("bool", True)), (("int", 2), ("bool", False))]),
    "attrib": ("attr", [(("bulk", b"key-popularity"), ("array", [("bulk", b"key:123"), ("int", 90)]))],
               ("bulk", b"Some real reply following the attribute")),
    "verbatim": ("verbatim", b"txt", b"This is a verbatim\nstring"),
    "true": ("bool", True),
    "false": ("bool", False),
}


@pytest.fixture(scope="module")
def debug_redis(tmp_path_factory):
    from conftest import start_redis

    s = start_redis(tmp_path_factory.mktemp("debug-redis"), ["--enable-debug-command", "yes"])
    yield s
    s.stop()


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_resp3_types_parse(debug_redis, kind):
    with RespConnection(debug_redis.host, debug_redis.port) as c:
        assert c.call("HELLO", "3")[0] == "map"
        assert c.call("DEBUG", "PROTOCOL", kind) == EXPECTED[kind]
        assert c.call("PING") == ("simple", b"PONG")  # nothing left over in the stream
        assert c.pushes == []


def test_push_messages_are_kept_apart_from_replies(debug_redis):
    with RespConnection(debug_redis.host, debug_redis.port) as c, \
            RespConnection(debug_redis.host, debug_redis.port) as other:
        c.call("HELLO", "3")
        assert c.call("DEBUG", "PROTOCOL", "push") == ("bulk", b"Some real reply following the push reply")
        assert c.pushes == [("push", [("bulk", b"server-cpu-usage"), ("int", 42)])]
        assert c.call("CLIENT", "TRACKING", "on") == ("simple", b"OK")
        c.call("GET", "tracked")
        other.call("SET", "tracked", "1")
        assert c.call("PING") == ("simple", b"PONG")
        assert c.pushes[-1] == ("push", [("bulk", b"invalidate"), ("array", [("bulk", b"tracked")])])


def test_resp2_nils_and_encoding(debug_redis):
    with RespConnection(debug_redis.host, debug_redis.port) as c:
        assert c.call("GET", "nope") == ("nilbulk",)
        assert c.call("DEBUG", "PROTOCOL", "null") == ("nilbulk",)
        assert c.call("DEBUG", "PROTOCOL", "map")[0] == "array"
        c.send_raw(encode_command("SET", b"bin\r\n\x00", b"\r\n") + encode_command("GET", b"bin\r\n\x00"))
        assert [c.read_reply(), c.read_reply()] == [("simple", b"OK"), ("bulk", b"\r\n")]
