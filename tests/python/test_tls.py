"""TLS on the client port (`--tls-port`), with Redis's option names, through
redis-py (`ssl=True`), redis-cli `--tls` and Python's ssl module; the same
scenarios against Debian's redis-server on its own `--tls-port`, so keel's
answers are checked against Redis's.

The certificates come from `examples/test_certs.rs` (rcgen): a test CA, a
server and a client certificate it signed, a second server certificate for
the reload test, and a client certificate from another CA, which must be
refused.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from conftest import HOST, KEEL_BIN, TARGET, _checked_stop, free_port, start_keel, start_redis


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    tool = Path(KEEL_BIN).parent / "examples" / "test_certs"
    if not tool.exists():
        pytest.fail(f"{tool} missing: cargo build --examples", pytrace=False)
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([str(tool), str(d)], check=True, timeout=60)
    return d


def tls_args(c: Path, port: int, *extra: str) -> list[str]:
    return ["--tls-port", str(port), "--tls-cert-file", str(c / "server.crt"),
            "--tls-key-file", str(c / "server.key"), "--tls-ca-cert-file", str(c / "ca.crt"), *extra]


def start(kind: str, tmp: Path, c: Path, *extra: str):
    port = free_port()
    args = tls_args(c, port, *extra)
    s = start_keel(tmp, shards=2, extra_args=args) if kind == "keel" else start_redis(tmp, extra_args=args)
    s.tls_port = port
    return s


KINDS = ["keel", "redis"] if TARGET == "keel" else ["redis"]


@pytest.fixture(scope="module", params=KINDS)
def server(request, tmp_path_factory, certs):
    s = start(request.param, tmp_path_factory.mktemp(f"tls-{request.param}"), certs)
    s.kind_name = request.param
    yield s
    _checked_stop(s)


def client(s, c: Path, cert: str | None = "client", **kw) -> redis.Redis:
    extra = {}
    if cert:
        extra = {"ssl_certfile": str(c / f"{cert}.crt"), "ssl_keyfile": str(c / f"{cert}.key")}
    return redis.Redis(host=HOST, port=s.tls_port, ssl=True, ssl_ca_certs=str(c / "ca.crt"),
                       socket_timeout=10, **extra, **kw)


def test_redis_py_talks_over_tls(server, certs):
    r = client(server, certs)
    r.flushall()
    assert r.set("greeting", "hello over tls") is True
    assert r.get("greeting") == b"hello over tls"
    # A pipeline of many replies, and a value larger than one TLS record
    # (16 KB) and than one socket read: both come back whole.
    p = r.pipeline(transaction=False)
    for i in range(2000):
        p.incr(f"n:{i % 50}")
    assert sum(1 for x in p.execute() if x >= 1) == 2000
    big = os.urandom(3 << 20)
    r.set("big", big)
    assert r.get("big") == big
    assert r.strlen("big") == 3 << 20
    # MULTI/EXEC and a RESP3 connection.
    with r.pipeline() as t:
        t.set("a", 1).incr("a").get("a")
        assert t.execute() == [True, 2, b"2"]
    r3 = client(server, certs, protocol=3)
    assert r3.hset("h", mapping={"f": "v"}) == 1
    assert r3.hgetall("h") == {b"f": b"v"}
    r3.close()
    r.close()


def test_pushes_and_blocking_replies_arrive_over_tls(server, certs):
    """Replies written when no request is being read (a published message,
    a blocked pop woken by another client) must be flushed out too."""
    sub = client(server, certs).pubsub()
    sub.subscribe("news")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    pub = client(server, certs)
    assert pub.publish("news", "tls works") == 1
    m = sub.get_message(timeout=5)
    assert m and m["data"] == b"tls works"
    sub.close()

    waiter = client(server, certs)
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("v", waiter.blpop("jobs", timeout=10)))
    t.start()
    time.sleep(0.3)
    pub.rpush("jobs", "job-1")
    t.join(15)
    assert got.get("v") == (b"jobs", b"job-1")
    pub.close()
    waiter.close()


def test_clients_without_the_right_certificate_are_refused(server, certs):
    # tls-auth-clients yes (the default): no certificate, or one from another CA.
    for cert in (None, "rogue"):
        with pytest.raises(redis.ConnectionError):
            client(server, certs, cert=cert).ping()
    # A client that does not trust the server's CA refuses it.
    bad = redis.Redis(host=HOST, port=server.tls_port, ssl=True, ssl_ca_certs=str(certs / "rogue-ca.crt"),
                      ssl_certfile=str(certs / "client.crt"), ssl_keyfile=str(certs / "client.key"),
                      socket_timeout=5)
    with pytest.raises(redis.ConnectionError):
        bad.ping()
    # Plain text on the TLS port gets no RESP answer.
    with socket.create_connection((HOST, server.tls_port), timeout=5) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        try:
            data = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            data = b""
        assert b"PONG" not in data
    # And the server goes on serving.
    assert client(server, certs).ping() is True
    if server.kind_name == "keel":
        log = server.log_tail(400)
        assert " ERROR " not in log and "panicked" not in log, log
        assert "TLS handshake with" in log


def test_redis_cli_tls(server, certs):
    base = ["redis-cli", "-h", HOST, "-p", str(server.tls_port), "--tls", "--cacert", str(certs / "ca.crt"),
            "--cert", str(certs / "client.crt"), "--key", str(certs / "client.key")]
    run = lambda *a, **kw: subprocess.run(base + list(a), capture_output=True, text=True, timeout=30, **kw)
    assert run("SET", "cli", "v1").stdout.strip() == "OK"
    assert run("GET", "cli").stdout.strip() == "v1"
    piped = run("--pipe", input="".join(f"SET p:{i} {i}\r\n" for i in range(500)))
    assert "errors: 0, replies: 500" in piped.stdout, piped.stdout + piped.stderr
    assert run("DBSIZE").stdout.strip().isdigit()
    assert int(run("EXISTS", "p:0", "p:499").stdout.strip()) == 2


def test_plain_port_still_serves_beside_tls(server, certs):
    plain = redis.Redis(host=HOST, port=server.port, socket_timeout=5)
    plain.set("both", "ways")
    assert client(server, certs).get("both") == b"ways"
    plain.close()


def peer_cn(port: int, c: Path) -> str:
    ctx = ssl.create_default_context(cafile=str(c / "ca.crt"))
    ctx.load_cert_chain(str(c / "client.crt"), str(c / "client.key"))
    with socket.create_connection((HOST, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            cert = s.getpeercert()
    return dict(x[0] for x in cert["subject"])["commonName"]


@pytest.mark.skipif(TARGET != "keel", reason="keel's own start-up checks and reload")
def test_certificates_reload_on_config_set(tmp_path, certs):
    s = start("keel", tmp_path, certs)
    try:
        admin = redis.Redis(host=HOST, port=s.port, socket_timeout=5)
        kept = client(s, certs)
        kept.set("k", "before")
        assert peer_cn(s.tls_port, certs) == "keel server"
        # A file that does not load is refused, and the old one stays.
        with pytest.raises(redis.ResponseError, match="tls-cert-file.*Unable to update TLS"):
            admin.config_set("tls-cert-file", str(tmp_path / "missing.crt"))
        assert admin.config_get("tls-cert-file")["tls-cert-file"] == str(certs / "server.crt")
        assert peer_cn(s.tls_port, certs) == "keel server"
        # A key that does not match the certificate is refused too.
        with pytest.raises(redis.ResponseError, match="Unable to update TLS"):
            admin.config_set("tls-key-file", str(certs / "client.key"))
        # Both at once: new connections get the new certificate...
        assert admin.config_set("tls-cert-file", str(certs / "server2.crt"),
                                "tls-key-file", str(certs / "server2.key")) is True
        assert peer_cn(s.tls_port, certs) == "keel server2"
        assert admin.config_get("tls-cert-file")["tls-cert-file"] == str(certs / "server2.crt")
        # ...and the connection made before keeps working.
        assert kept.get("k") == b"before"
        # tls-auth-clients is live too: with `optional` a client without
        # a certificate is let in; a rogue one still is not.
        assert admin.config_set("tls-auth-clients", "optional") is True
        assert client(s, certs, cert=None).ping() is True
        with pytest.raises(redis.ConnectionError):
            client(s, certs, cert="rogue").ping()
        assert admin.config_set("tls-auth-clients", "no") is True
        assert client(s, certs, cert="rogue").ping() is True
        # The port is fixed once keel runs.
        with pytest.raises(redis.ResponseError, match="immutable"):
            admin.config_set("tls-port", str(free_port()))
        kept.close()
        admin.close()
    finally:
        _checked_stop(s)


@pytest.mark.skipif(TARGET != "keel", reason="keel's start-up checks")
def test_bad_tls_settings_stop_keel_at_start(tmp_path, certs):
    cases = [
        (["--tls-cert-file", str(tmp_path / "none.crt")], "tls-cert-file"),
        (["--tls-protocols", "TLSv1.1"], "TLSv1.1"),
        (["--tls-ciphersuites", "NOT_A_SUITE"], "NOT_A_SUITE"),
        (["--tls-auth-clients", "maybe"], "tls-auth-clients"),
    ]
    for extra, words in cases:
        args = tls_args(certs, free_port(), *extra)
        p = subprocess.run([KEEL_BIN, "--port", str(free_port()), "--dir", str(tmp_path), *args],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode != 0 and words in p.stderr, (extra, p.stderr)
    # No CA and client certificates required: refused with the reason.
    p = subprocess.run([KEEL_BIN, "--port", str(free_port()), "--dir", str(tmp_path), "--tls-port",
                        str(free_port()), "--tls-cert-file", str(certs / "server.crt"),
                        "--tls-key-file", str(certs / "server.key")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "tls-ca-cert-file" in p.stderr, p.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_protocols_and_ciphersuites_are_enforced(tmp_path, certs, kind):
    s = start(kind, tmp_path, certs, "--tls-protocols", "TLSv1.3",
              "--tls-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256")
    try:
        ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        ctx.load_cert_chain(str(certs / "client.crt"), str(certs / "client.key"))
        with socket.create_connection((HOST, s.tls_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                assert t.version() == "TLSv1.3"
                assert t.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256"
                t.sendall(b"PING\r\n")
                assert t.recv(100) == b"+PONG\r\n"
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection((HOST, s.tls_port), timeout=5) as raw:
            with pytest.raises((ssl.SSLError, ConnectionResetError)):
                ctx.wrap_socket(raw, server_hostname="localhost")
    finally:
        _checked_stop(s)


@pytest.mark.skipif(TARGET != "keel", reason="keel's HTTP port")
def test_https_on_the_http_port(tmp_path, certs):
    http = free_port()
    s = start("keel", tmp_path, certs, "--http-port", str(http), "--http-tls", "yes",
              "--http-token", "secret")
    try:
        ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        with urllib.request.urlopen(f"https://localhost:{http}/health", context=ctx, timeout=10) as r:
            assert r.status == 200 and b'"status":"ok"' in r.read()
        req = urllib.request.Request(f"https://localhost:{http}/set/rest-key/over-https",
                                     headers={"Authorization": "Bearer secret"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            assert r.read() == b'{"result":"OK"}'
        assert client(s, certs).get("rest-key") == b"over-https"
        # Plain HTTP on the HTTPS port gets nothing it could take for an answer.
        with pytest.raises(Exception):
            urllib.request.urlopen(f"http://localhost:{http}/health", timeout=5).read()
        assert "panicked" not in s.log_tail(200)
    finally:
        _checked_stop(s)


@pytest.mark.skipif(TARGET != "keel", reason="keel --check-config")
def test_check_config_loads_the_tls_files(tmp_path, certs):
    good = tmp_path / "good.toml"
    good.write_text(f'tls-port = 6390\ntls-cert-file = "{certs / "server.crt"}"\n'
                    f'tls-key-file = "{certs / "server.key"}"\ntls-ca-cert-file = "{certs / "ca.crt"}"\n')
    p = subprocess.run([KEEL_BIN, "--check-config", str(good)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(f'tls-port = 6390\ntls-cert-file = "{certs / "server.crt"}"\n'
                   f'tls-key-file = "{certs / "client.key"}"\ntls-ca-cert-file = "{certs / "ca.crt"}"\n')
    p = subprocess.run([KEEL_BIN, "--check-config", str(bad)], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "TLS" in p.stdout + p.stderr, p.stdout + p.stderr


def resumed(port: int, c: Path) -> bool:
    """Connects twice with one client context: was the second handshake a
    resumption of the first one's session?"""
    ctx = ssl.create_default_context(cafile=str(c / "ca.crt"))
    ctx.load_cert_chain(str(c / "client.crt"), str(c / "client.key"))
    with socket.create_connection((HOST, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as t:
            t.sendall(b"PING\r\n")
            assert t.recv(100) == b"+PONG\r\n"  # TLS 1.3 tickets come after the handshake
            session = t.session
    with socket.create_connection((HOST, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as t:
            t.sendall(b"PING\r\n")
            assert t.recv(100) == b"+PONG\r\n"
            return t.session_reused


# keel only: redis-server 7.0.15 answers a resumed handshake with an
# internal-error alert when it asks for client certificates (OpenSSL's
# session id context is not set), so there is nothing to compare with.
@pytest.mark.skipif(TARGET != "keel", reason="keel's session cache")
def test_sessions_resume_unless_caching_is_off(tmp_path, certs):
    kind = "keel"
    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    s = start(kind, tmp_path / "on", certs)
    try:
        assert resumed(s.tls_port, certs) is True
        admin = redis.Redis(host=HOST, port=s.port, socket_timeout=5)
        assert admin.config_get("tls-session-caching")["tls-session-caching"] == "yes"
        if kind == "keel":
            # Live: the next handshakes find no cache.
            assert admin.config_set("tls-session-caching", "no") is True
            assert resumed(s.tls_port, certs) is False
        admin.close()
    finally:
        _checked_stop(s)
    s = start(kind, tmp_path / "off", certs, "--tls-session-caching", "no")
    try:
        assert resumed(s.tls_port, certs) is False
    finally:
        _checked_stop(s)
