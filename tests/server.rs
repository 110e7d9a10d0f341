//! keel driven by a real client (the Rust `redis` crate) and by raw RESP
//! bytes, on 1 and on several shards.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{read_until_closed, Keel};
use redis::{Commands, RedisResult, Value};

#[test]
fn strings_and_keys_on_one_and_many_shards() {
    for shards in ["1", "4"] {
        let keel = Keel::start(&["--shards", shards]);
        let mut c = keel.client();
        let _: () = c.set("greeting", "hello").unwrap();
        assert_eq!(c.get::<_, String>("greeting").unwrap(), "hello");
        assert_eq!(c.append::<_, _, i64>("greeting", " world").unwrap(), 11);
        assert_eq!(c.incr::<_, _, i64>("counter", 5).unwrap(), 5);
        assert_eq!(c.decr::<_, _, i64>("counter", 7).unwrap(), -2);
        let f: String = redis::cmd("INCRBYFLOAT")
            .arg("f")
            .arg("10.5")
            .query(&mut c)
            .unwrap();
        assert_eq!(f, "10.5");
        let keys: Vec<String> = (0..50).map(|i| format!("key:{i}")).collect();
        let pairs: Vec<(String, i32)> = keys.iter().cloned().zip(0..).collect();
        let _: () = c.mset(&pairs).unwrap();
        let got: Vec<Option<i32>> = c.mget(&keys).unwrap();
        assert_eq!(got, (0..50).map(Some).collect::<Vec<_>>());
        assert_eq!(c.exists::<_, i64>(&keys).unwrap(), 50);
        assert_eq!(c.del::<_, i64>(&keys[..10]).unwrap(), 10);
        let _: () = redis::cmd("SET")
            .arg("ttl")
            .arg("v")
            .arg("EX")
            .arg(100)
            .query(&mut c)
            .unwrap();
        let ttl: i64 = c.ttl("ttl").unwrap();
        assert!((99..=100).contains(&ttl), "ttl {ttl}");
        let _: () = c.rename("ttl", "moved").unwrap();
        assert!(c.ttl::<_, i64>("moved").unwrap() > 0);
        let err: RedisResult<()> = c.rename("missing", "x");
        assert!(err.unwrap_err().to_string().contains("no such key"));
        let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(n, 44);
        let mut scanned: Vec<String> = c.scan_match("key:*").unwrap().collect();
        scanned.sort();
        let mut expected: Vec<String> = keys[10..].to_vec();
        expected.sort();
        assert_eq!(scanned, expected, "SCAN on {shards} shards");
        let wrong: RedisResult<i64> = c.incr("greeting", 1);
        assert!(wrong.unwrap_err().to_string().contains("not an integer"));
    }
}

#[test]
fn pipelines_answer_in_order() {
    let keel = Keel::start(&["--shards", "3"]);
    let mut c = keel.client();
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("SET").arg(format!("p{i}")).arg(i).ignore();
        pipe.cmd("GET").arg(format!("p{i}"));
    }
    let got: Vec<i64> = pipe.query(&mut c).unwrap();
    assert_eq!(got, (0..5000).collect::<Vec<i64>>());
}

#[test]
fn resp3_through_hello() {
    let keel = Keel::start(&[]);
    let mut s = keel.raw();
    s.write_all(b"HELLO 3\r\nGET nokey\r\nCONFIG GET port\r\n")
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !got.ends_with(format!("{}\r\n", keel.port).as_bytes()) {
        let n = std::io::Read::read(&mut s, &mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("%7\r\n"), "{text}");
    assert!(text.contains("$5\r\nproto\r\n:3\r\n"), "{text}");
    assert!(text.contains("_\r\n%1\r\n$4\r\nport\r\n"), "{text}");
}

#[test]
fn protocol_errors_close_the_connection_like_redis() {
    let keel = Keel::start(&[]);
    let cases: [(&[u8], &str); 3] = [
        (
            b"*1\r\n$600000000\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*3000000000\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n!garbage\r\n",
            "-ERR Protocol error: expected '$', got '!'\r\n",
        ),
    ];
    for (input, expected) in cases {
        let mut s = keel.raw();
        s.write_all(input).unwrap();
        let (out, closed) = read_until_closed(&mut s);
        assert_eq!(String::from_utf8_lossy(&out), expected);
        assert!(closed, "connection stayed open after {expected}");
    }
    // Half a command, then gone: the server stays healthy.
    let mut s = keel.raw();
    s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk").unwrap();
    drop(s);
    let mut c = keel.client();
    assert_eq!(redis::cmd("PING").query::<String>(&mut c).unwrap(), "PONG");
    // Inline commands work, quotes included.
    let mut s = keel.raw();
    s.write_all(b"SET inline \"a b\"\r\nGET inline\r\nQUIT\r\n")
        .unwrap();
    let (out, closed) = read_until_closed(&mut s);
    assert_eq!(String::from_utf8_lossy(&out), "+OK\r\n$3\r\na b\r\n+OK\r\n");
    assert!(closed);
}

#[test]
fn unknown_commands_and_arity_errors() {
    let keel = Keel::start(&[]);
    let mut c = keel.client();
    let e = redis::cmd("NOPE")
        .arg("a")
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("unknown command 'NOPE', with args beginning with: 'a'"),
        "{e}"
    );
    let e = redis::cmd("GET").query::<Value>(&mut c).unwrap_err();
    assert!(
        e.to_string()
            .contains("wrong number of arguments for 'get' command"),
        "{e}"
    );
    let e = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .arg("EX")
        .arg(0)
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("invalid expire time in 'set' command"),
        "{e}"
    );
}

#[test]
fn requirepass_is_enforced() {
    let keel = Keel::start(&["--requirepass", "s3cret"]);
    let mut c = keel.client();
    let e = redis::cmd("GET")
        .arg("k")
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("NOAUTH"), "{e}");
    let e = redis::cmd("AUTH")
        .arg("wrong")
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("WRONGPASS"), "{e}");
    let _: () = redis::cmd("AUTH").arg("s3cret").query(&mut c).unwrap();
    let _: () = c.set("k", "v").unwrap();
    let url = format!("redis://:s3cret@127.0.0.1:{}/", keel.port);
    let mut c2 = redis::Client::open(url).unwrap().get_connection().unwrap();
    assert_eq!(c2.get::<_, String>("k").unwrap(), "v");
}

#[test]
fn digest_is_equal_for_equal_data_whatever_the_shard_count() {
    let one = Keel::start(&["--shards", "1"]);
    let four = Keel::start(&["--shards", "4"]);
    let digest = |k: &Keel| -> String {
        redis::cmd("DEBUG")
            .arg("DIGEST")
            .query(&mut k.client())
            .unwrap()
    };
    assert_eq!(digest(&one), "0".repeat(40));
    for k in [&four, &one] {
        let mut c = k.client();
        for i in (0..200).rev() {
            let _: () = c.set(format!("d{i}"), i * 3).unwrap();
        }
        let _: () = redis::cmd("SELECT").arg(2).query(&mut c).unwrap();
        let _: () = c.set("in-db-2", "x").unwrap();
    }
    assert_eq!(digest(&one), digest(&four));
    let _: () = one.client().set("d7", "changed").unwrap();
    assert_ne!(digest(&one), digest(&four));
}

#[test]
fn active_expiry_removes_untouched_keys() {
    let keel = Keel::start(&["--shards", "2"]);
    let mut c = keel.client();
    for i in 0..500 {
        let _: () = redis::cmd("SET")
            .arg(format!("e{i}"))
            .arg(i)
            .arg("PX")
            .arg(100)
            .query(&mut c)
            .unwrap();
    }
    let _: () = c.set("stays", 1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{n} keys left after expiry");
        std::thread::sleep(Duration::from_millis(100));
    }
    let info: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    assert!(info.contains("expired_keys:500"), "{info}");
}

#[test]
fn maxmemory_noeviction_refuses_and_lru_evicts() {
    let keel = Keel::start(&["--shards", "2", "--maxmemory", "2mb"]);
    let mut c = keel.client();
    let big = "x".repeat(10_000);
    let mut refused = None;
    for i in 0..1000 {
        if let Err(e) = c.set::<_, _, ()>(format!("big{i}"), &big) {
            refused = Some(e.to_string());
            break;
        }
    }
    let refused = refused.expect("writes past maxmemory were accepted");
    assert!(
        refused.contains("OOM") && refused.contains("command not allowed when used memory"),
        "{refused}"
    );
    // Reads and deletes still work.
    assert_eq!(c.get::<_, String>("big0").unwrap(), big);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query(&mut c)
        .unwrap();
    for i in 1000..1500 {
        let _: () = c.set(format!("big{i}"), &big).unwrap();
    }
    let info: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    let evicted: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(evicted > 0, "{info}");
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut keel = Keel::start(&["--shards", "2"]);
    let _c = keel.client();
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(keel.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = keel.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "keel did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn pubsub_across_cores_in_resp2_and_resp3() {
    let keel = Keel::start(&["--shards", "4"]);
    let client = redis::Client::open(keel.url()).unwrap();
    // Several subscribers, likely on different cores (SO_REUSEPORT spreads
    // connections), each must get every message.
    let mut subs: Vec<redis::Connection> =
        (0..4).map(|_| client.get_connection().unwrap()).collect();
    for s in subs.iter_mut() {
        let _: () = redis::cmd("SUBSCRIBE").arg("news").query(s).unwrap_or(());
    }
    let mut pattern_sub = client.get_connection().unwrap();
    let mut ps = pattern_sub.as_pubsub();
    ps.psubscribe("n*").unwrap();
    let mut publisher = keel.client();
    let n: i64 = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("news")
        .query(&mut publisher)
        .map(|v: Vec<redis::Value>| match &v[1] {
            redis::Value::Int(n) => *n,
            _ => -1,
        })
        .unwrap();
    assert_eq!(n, 4);
    let received: i64 = redis::cmd("PUBLISH")
        .arg("news")
        .arg("hello")
        .query(&mut publisher)
        .unwrap();
    assert_eq!(
        received, 5,
        "4 channel subscribers and 1 pattern subscriber"
    );
    ps.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let msg = ps.get_message().unwrap();
    assert_eq!(msg.get_channel_name(), "news");
    assert_eq!(msg.get_pattern::<String>().unwrap(), "n*");
    assert_eq!(msg.get_payload::<String>().unwrap(), "hello");
    // RESP3: the subscription acknowledgement and messages are pushes.
    let mut raw = keel.raw();
    raw.write_all(b"HELLO 3\r\nSUBSCRIBE chat\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&got).contains(">3\r\n$9\r\nsubscribe\r\n$4\r\nchat\r\n:1\r\n") {
        assert!(
            Instant::now() < deadline,
            "no RESP3 subscribe push: {:?}",
            String::from_utf8_lossy(&got)
        );
        let n = std::io::Read::read(&mut raw, &mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    let _: i64 = redis::cmd("PUBLISH")
        .arg("chat")
        .arg("hi")
        .query(&mut publisher)
        .unwrap();
    got.clear();
    while !String::from_utf8_lossy(&got)
        .contains(">3\r\n$7\r\nmessage\r\n$4\r\nchat\r\n$2\r\nhi\r\n")
    {
        assert!(
            Instant::now() < deadline,
            "no RESP3 message push: {:?}",
            String::from_utf8_lossy(&got)
        );
        let n = std::io::Read::read(&mut raw, &mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    // A RESP3 subscriber may still run ordinary commands.
    raw.write_all(b"PING\r\n").unwrap();
    got.clear();
    while !got.ends_with(b"+PONG\r\n") {
        assert!(
            Instant::now() < deadline,
            "PING in RESP3 subscribed mode failed"
        );
        let n = std::io::Read::read(&mut raw, &mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
}
