//! The whole request path of a live server: commands from its own COMMAND
//! table with arguments drawn from the values commands treat specially
//! (extreme and malformed numbers, option names, ranges, stream ids, raw
//! bytes), on real connections. Every request gets exactly one well-formed
//! reply, an error is a Redis-style one, and the server keeps answering.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use keel::http::rest::{read_reply, Resp};
use keel::resp::frame::reply_len;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use crate::common::Keel;
use crate::{config, multibulk};

/// Commands left out: they stop or reconfigure the server, open
/// connections elsewhere, change the connection's mode (silenced or pushed
/// replies, subscriptions), or wait.
const LEFT_OUT: &[&str] = &[
    "shutdown",
    "debug",
    "config",
    "save",
    "bgsave",
    "bgrewriteaof",
    "replicaof",
    "slaveof",
    "failover",
    "keel",
    "cluster",
    "sentinel",
    "migrate",
    "module",
    "client",
    "monitor",
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
    "quit",
    "reset",
    "hello",
    "sync",
    "psync",
    "replconf",
    "wait",
    "waitaof",
];

/// Arguments commands give meaning to.
const WORDS: &[&str] = &[
    "k1",
    "k2",
    "{k}3",
    "{k}4",
    "0",
    "1",
    "-1",
    "2",
    "3",
    "10",
    "-100",
    "100",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551615",
    "4294967296",
    "1.5",
    "-0",
    "0.0",
    "1e308",
    "-1e308",
    "inf",
    "-inf",
    "+inf",
    "nan",
    "0x10",
    "",
    " ",
    "(1",
    "(-inf",
    "[a",
    "[",
    "(",
    "-",
    "+",
    "*",
    "a*",
    "?",
    "[a-z]",
    "\\",
    "0-1",
    "1-1",
    "0-0",
    "*-*",
    "$",
    ">",
    "~",
    "=",
    "ex",
    "px",
    "exat",
    "pxat",
    "nx",
    "xx",
    "gt",
    "lt",
    "ch",
    "incr",
    "keepttl",
    "get",
    "withscores",
    "limit",
    "count",
    "match",
    "type",
    "by",
    "rev",
    "byscore",
    "bylex",
    "store",
    "left",
    "right",
    "before",
    "after",
    "maxlen",
    "minid",
    "id",
    "nomkstream",
    "group",
    "consumer",
    "streams",
    "aggregate",
    "sum",
    "min",
    "max",
    "weights",
    "asc",
    "desc",
    "alpha",
    "idle",
    "retrycount",
    "justid",
    "force",
    "rank",
    "len",
    "withmatchlen",
    "minmatchlen",
    "idx",
    "fields",
    "string",
    "list",
    "set",
    "zset",
    "hash",
    "stream",
    "u8",
    "i64",
    "#1",
    "overflow",
    "wrap",
    "sat",
    "fail",
    "bit",
    "byte",
    "and",
    "or",
    "xor",
    "not",
    "create",
    "setid",
    "destroy",
    "delconsumer",
    "createconsumer",
    "mkstream",
    "entriesread",
    "help",
    "return 1",
    "return redis.call('get', KEYS[1])",
    "return {1,2,{3}}",
    "flush",
    "load",
];

fn arg() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::sample::select(WORDS).prop_map(|w| w.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..8),
        1 => (0usize..300).prop_map(|n| vec![b'x'; n]),
    ]
}

/// A client that reads exactly one reply per request.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn new(keel: &Keel) -> Client {
        let s = keel.raw();
        // (a hung command is the failure this bounds, not a timing)
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        Client { s, buf: Vec::new() }
    }

    /// Sends `args`; the reply, or why there is none.
    fn call(&mut self, args: &[Vec<u8>]) -> Result<Vec<u8>, String> {
        self.s
            .write_all(&multibulk(args))
            .map_err(|e| format!("write: {e}"))?;
        let mut chunk = [0u8; 16 << 10];
        loop {
            match reply_len(&self.buf) {
                Ok(Some(n)) => return Ok(self.buf.drain(..n).collect()),
                Ok(None) => {}
                Err(e) => return Err(format!("malformed reply ({e}): {:?}", self.buf)),
            }
            match self.s.read(&mut chunk) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }
}

/// The server's commands (minus [`LEFT_OUT`] and blocking ones), from
/// COMMAND itself.
fn commands(keel: &Keel) -> Vec<(String, i64)> {
    let mut c = Client::new(keel);
    let reply = c.call(&[b"COMMAND".to_vec()]).expect("COMMAND");
    let Some(Resp::Array(Some(entries))) = read_reply(&reply, &mut 0) else {
        panic!("COMMAND is not an array");
    };
    let mut out = Vec::new();
    for e in entries {
        let Resp::Array(Some(fields)) = e else {
            continue;
        };
        let (Some(Resp::Bulk(Some(name))), Some(Resp::Int(arity)), Some(Resp::Array(Some(flags)))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let blocking = flags
            .iter()
            .any(|f| matches!(f, Resp::Status(s) if s == b"blocking"));
        if !blocking && !LEFT_OUT.contains(&name.as_str()) {
            out.push((name, *arity));
        }
    }
    out
}

/// Whether an error line reads as Redis's do: a code in capitals first.
fn redis_style(reply: &[u8]) -> bool {
    let code: Vec<u8> = reply[1..]
        .iter()
        .copied()
        .take_while(|c| !c.is_ascii_whitespace())
        .collect();
    !code.is_empty()
        && code
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

#[test]
fn random_commands_get_one_well_formed_reply_each() {
    let dir = std::env::temp_dir().join(format!("keel-fuzz-commands-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let keel = Keel::start(&["--shards", "2", "--dir", dir.to_str().unwrap_or(".")]);
    let cmds = commands(&keel);
    assert!(cmds.len() > 100, "only {} commands", cmds.len());
    // A command with as many arguments as its arity asks, give or take.
    let call = (
        prop::sample::select(cmds),
        0usize..4,
        prop::collection::vec(arg(), 6),
    )
        .prop_map(|((name, arity), extra, pool)| {
            let want = if arity > 0 {
                arity as usize
            } else {
                arity.unsigned_abs() as usize + extra
            };
            let mut args = vec![name.into_bytes()];
            args.extend(pool.into_iter().cycle().take(want.saturating_sub(1)));
            args
        });
    let mut runner = TestRunner::new(config("proptest-regressions/fuzz/commands.txt"));
    let result = runner.run(&prop::collection::vec(call, 1..16), |batch| {
        let mut c = Client::new(&keel);
        for args in &batch {
            let reply = c.call(args).map_err(|e| {
                TestCaseError::fail(format!("{e} after {:?}", String::from_utf8_lossy(&args[0])))
            })?;
            if reply[0] == b'-' {
                prop_assert!(redis_style(&reply), "{:?}", String::from_utf8_lossy(&reply));
            }
        }
        // Whatever those did, a new connection is served.
        let mut fresh = Client::new(&keel);
        prop_assert_eq!(fresh.call(&[b"PING".to_vec()]), Ok(b"+PONG\r\n".to_vec()));
        Ok(())
    });
    drop(keel);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = result {
        panic!("{e}");
    }
}
