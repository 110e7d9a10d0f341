//! Hashes, sets, sorted sets and lists through a real client (the `redis`
//! crate) against a running keel, with the exact replies and error lines
//! checked by hand against redis-server 7.0.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::Keel;
use redis::{Connection, RedisError, Value};

/// Runs one command given as words.
fn q<T: redis::FromRedisValue>(c: &mut Connection, words: &str) -> T {
    cmd(words)
        .query(c)
        .unwrap_or_else(|e| panic!("{words}: {e}"))
}

fn cmd(words: &str) -> redis::Cmd {
    let mut parts = words.split_whitespace();
    let mut cmd = redis::cmd(parts.next().unwrap_or("PING"));
    for p in parts {
        cmd.arg(p);
    }
    cmd
}

/// The error line (code and message) a command answers.
fn err(c: &mut Connection, words: &str) -> String {
    let e: RedisError = cmd(words)
        .query::<Value>(c)
        .expect_err(&format!("{words} should fail"));
    format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or(""))
}

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn hashes() {
    let keel = Keel::start(&["--shards", "2"]);
    let mut c = keel.client();
    assert_eq!(q::<i64>(&mut c, "HSET h a 1 b 2"), 2);
    assert_eq!(q::<i64>(&mut c, "HSET h a 10 c 3"), 1);
    assert_eq!(q::<String>(&mut c, "HGET h a"), "10");
    assert_eq!(
        q::<Vec<Option<String>>>(&mut c, "HMGET h a nope c"),
        vec![Some("10".into()), None, Some("3".into())]
    );
    assert_eq!(q::<i64>(&mut c, "HSETNX h a 99"), 0);
    assert_eq!(q::<i64>(&mut c, "HSETNX h d 4"), 1);
    assert_eq!(q::<i64>(&mut c, "HLEN h"), 4);
    assert_eq!(q::<i64>(&mut c, "HSTRLEN h a"), 2);
    assert_eq!(q::<i64>(&mut c, "HEXISTS h b"), 1);
    assert_eq!(q::<i64>(&mut c, "HINCRBY h a -15"), -5);
    assert_eq!(q::<String>(&mut c, "HINCRBYFLOAT h f 10.5"), "10.5");
    assert_eq!(q::<String>(&mut c, "HINCRBYFLOAT h f 0.1"), "10.6");
    let mut all: Vec<(String, String)> =
        q::<std::collections::HashMap<String, String>>(&mut c, "HGETALL h")
            .into_iter()
            .collect();
    all.sort();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0], ("a".into(), "-5".into()));
    assert_eq!(sorted(q(&mut c, "HKEYS h")), vec!["a", "b", "c", "d", "f"]);
    assert_eq!(q::<Vec<String>>(&mut c, "HVALS h").len(), 5);
    assert_eq!(q::<i64>(&mut c, "HDEL h a b nope"), 2);
    // Random fields: distinct for a positive count, repeats for a negative.
    let r: Vec<String> = q(&mut c, "HRANDFIELD h 2");
    assert_eq!(r.len(), 2);
    assert_ne!(r[0], r[1]);
    assert_eq!(q::<Vec<String>>(&mut c, "HRANDFIELD h -7").len(), 7);
    assert_eq!(
        q::<Vec<String>>(&mut c, "HRANDFIELD h 10 WITHVALUES").len(),
        6
    );
    assert_eq!(q::<Vec<String>>(&mut c, "HRANDFIELD nokey 3").len(), 0);
    // HSCAN visits every field once over a full iteration.
    for i in 0..300 {
        let _: i64 = q(&mut c, &format!("HSET big f{i} {i}"));
    }
    let mut cursor = 0u64;
    let mut seen = std::collections::HashSet::new();
    loop {
        let (next, items): (u64, Vec<String>) = q(&mut c, &format!("HSCAN big {cursor} COUNT 20"));
        for pair in items.chunks(2) {
            seen.insert(pair[0].clone());
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 300);
    // Errors, worded as Redis words them.
    assert_eq!(
        err(&mut c, "HINCRBY h c x"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&mut c, "HINCRBY h f 1"),
        "ERR hash value is not an integer"
    );
    let _: i64 = q(&mut c, "HSET h s abc");
    assert_eq!(
        err(&mut c, "HINCRBYFLOAT h s 1"),
        "ERR hash value is not a float"
    );
    let _: i64 = q(&mut c, "HSET h max 9223372036854775807");
    assert_eq!(
        err(&mut c, "HINCRBY h max 1"),
        "ERR increment or decrement would overflow"
    );
    assert_eq!(
        err(&mut c, "HSET h a"),
        "ERR wrong number of arguments for 'hset' command"
    );
    assert_eq!(
        err(&mut c, "HRANDFIELD h -9223372036854775808"),
        "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
    );
    let _: () = q(&mut c, "SET str x");
    assert_eq!(err(&mut c, "HGET str a"), WRONGTYPE);
    assert_eq!(err(&mut c, "HSET str a 1"), WRONGTYPE);
    assert_eq!(err(&mut c, "GET h"), WRONGTYPE);
    assert_eq!(q::<String>(&mut c, "TYPE h"), "hash");
    // Deleting the last field deletes the key.
    let _: i64 = q(&mut c, "HSET one f v");
    assert_eq!(q::<i64>(&mut c, "HDEL one f"), 1);
    assert_eq!(q::<i64>(&mut c, "EXISTS one"), 0);
}

#[test]
fn sets() {
    let keel = Keel::start(&["--shards", "4"]);
    let mut c = keel.client();
    assert_eq!(q::<i64>(&mut c, "SADD {s}a 1 2 3 4"), 4);
    assert_eq!(q::<i64>(&mut c, "SADD {s}a 4 5"), 1);
    assert_eq!(q::<i64>(&mut c, "SADD {s}b 3 4 5 6"), 4);
    assert_eq!(q::<i64>(&mut c, "SCARD {s}a"), 5);
    assert_eq!(q::<i64>(&mut c, "SISMEMBER {s}a 1"), 1);
    assert_eq!(q::<Vec<i64>>(&mut c, "SMISMEMBER {s}a 1 9"), vec![1, 0]);
    assert_eq!(sorted(q(&mut c, "SINTER {s}a {s}b")), vec!["3", "4", "5"]);
    assert_eq!(sorted(q(&mut c, "SDIFF {s}a {s}b")), vec!["1", "2"]);
    assert_eq!(q::<Vec<String>>(&mut c, "SUNION {s}a {s}b").len(), 6);
    assert_eq!(q::<Vec<String>>(&mut c, "SINTER {s}a {s}nokey").len(), 0);
    assert_eq!(q::<i64>(&mut c, "SINTERCARD 2 {s}a {s}b"), 3);
    assert_eq!(q::<i64>(&mut c, "SINTERCARD 2 {s}a {s}b LIMIT 2"), 2);
    assert_eq!(q::<i64>(&mut c, "SINTERSTORE {s}i {s}a {s}b"), 3);
    assert_eq!(q::<i64>(&mut c, "SUNIONSTORE {s}u {s}a {s}b"), 6);
    assert_eq!(q::<i64>(&mut c, "SDIFFSTORE {s}d {s}a {s}b"), 2);
    assert_eq!(q::<i64>(&mut c, "SDIFFSTORE {s}d {s}a {s}a"), 0);
    assert_eq!(q::<i64>(&mut c, "EXISTS {s}d"), 0);
    assert_eq!(q::<i64>(&mut c, "SMOVE {s}a {s}b 1"), 1);
    assert_eq!(q::<i64>(&mut c, "SMOVE {s}a {s}b 1"), 0);
    assert_eq!(q::<i64>(&mut c, "SREM {s}a 2 99"), 1);
    assert_eq!(sorted(q(&mut c, "SMEMBERS {s}a")), vec!["3", "4", "5"]);
    assert_eq!(q::<Vec<String>>(&mut c, "SRANDMEMBER {s}b 100").len(), 5);
    assert_eq!(q::<Vec<String>>(&mut c, "SRANDMEMBER {s}b -100").len(), 100);
    let popped: Vec<String> = q(&mut c, "SPOP {s}a 2");
    assert_eq!(popped.len(), 2);
    assert_eq!(q::<i64>(&mut c, "SCARD {s}a"), 1);
    let _: Option<String> = q(&mut c, "SPOP {s}a");
    assert_eq!(q::<i64>(&mut c, "EXISTS {s}a"), 0);
    assert_eq!(q::<Option<String>>(&mut c, "SPOP {s}a"), None);
    let (next, members): (u64, Vec<String>) = q(&mut c, "SSCAN {s}u 0 MATCH 1* COUNT 100");
    assert_eq!((next, members), (0, vec!["1".to_string()]));
    // Errors.
    let _: () = q(&mut c, "SET {s}str x");
    assert_eq!(err(&mut c, "SADD {s}str a"), WRONGTYPE);
    assert_eq!(err(&mut c, "SINTER {s}nokey {s}str"), WRONGTYPE);
    assert_eq!(
        err(&mut c, "SPOP {s}b -1"),
        "ERR value is out of range, must be positive"
    );
    assert_eq!(
        err(&mut c, "SINTERCARD 0 {s}b"),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(
        err(&mut c, "SINTERCARD 3 {s}b"),
        "ERR Number of keys can't be greater than number of args"
    );
    assert_eq!(
        err(&mut c, "SINTERCARD 1 {s}b LIMIT -1"),
        "ERR LIMIT can't be negative"
    );
    assert_eq!(err(&mut c, "SSCAN {s}b x"), "ERR invalid cursor");
    // Keys on different shards work as one atomic command.
    let _: i64 = q(&mut c, "SADD a 1 2");
    let _: i64 = q(&mut c, "SADD b 2 3");
    assert_eq!(q::<Vec<String>>(&mut c, "SINTER a b"), vec!["2"]);
    assert_eq!(q::<i64>(&mut c, "SUNIONSTORE dest a b"), 3);
    assert_eq!(q::<i64>(&mut c, "SCARD dest"), 3);
    assert_eq!(q::<i64>(&mut c, "SMOVE a b 1"), 1);
    assert_eq!(q::<i64>(&mut c, "SCARD b"), 3);
    assert_eq!(q::<String>(&mut c, "TYPE {s}b"), "set");
}

#[test]
fn sorted_sets() {
    let keel = Keel::start(&["--shards", "2"]);
    let mut c = keel.client();
    assert_eq!(q::<i64>(&mut c, "ZADD {z}a 1 a 2 b 3 c"), 3);
    assert_eq!(q::<i64>(&mut c, "ZADD {z}a CH 5 c 4 d"), 2);
    assert_eq!(q::<i64>(&mut c, "ZADD {z}a GT CH 1 c"), 0);
    assert_eq!(q::<i64>(&mut c, "ZADD {z}a LT CH 1 c"), 1);
    assert_eq!(q::<i64>(&mut c, "ZADD {z}a NX 9 a 9 e"), 1);
    assert_eq!(q::<i64>(&mut c, "ZADD {z}a XX 9 f"), 0);
    assert_eq!(q::<String>(&mut c, "ZADD {z}a INCR 1.5 a"), "2.5");
    assert_eq!(q::<Option<String>>(&mut c, "ZADD {z}a NX INCR 1 a"), None);
    assert_eq!(
        q::<String>(&mut c, "ZINCRBY {z}a 1.1 b"),
        "3.1000000000000001"
    );
    assert_eq!(q::<String>(&mut c, "ZSCORE {z}a b"), "3.1000000000000001");
    assert_eq!(
        q::<Vec<Option<String>>>(&mut c, "ZMSCORE {z}a a zz"),
        vec![Some("2.5".into()), None]
    );
    // c=1 a=2.5 b=3.1 d=4 e=9
    assert_eq!(q::<i64>(&mut c, "ZCARD {z}a"), 5);
    assert_eq!(q::<i64>(&mut c, "ZCOUNT {z}a (1 4"), 3);
    assert_eq!(q::<i64>(&mut c, "ZCOUNT {z}a -inf +inf"), 5);
    assert_eq!(q::<i64>(&mut c, "ZRANK {z}a b"), 2);
    assert_eq!(q::<i64>(&mut c, "ZREVRANK {z}a b"), 2);
    assert_eq!(q::<Option<i64>>(&mut c, "ZRANK {z}a zz"), None);
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZRANGE {z}a 0 -1"),
        vec!["c", "a", "b", "d", "e"]
    );
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZRANGE {z}a -2 -1 REV"),
        vec!["a", "c"]
    );
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZRANGE {z}a 0 1 WITHSCORES"),
        vec!["c", "1", "a", "2.5"]
    );
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZRANGE {z}a (1 4 BYSCORE LIMIT 1 5"),
        vec!["b", "d"]
    );
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZRANGE {z}a +inf 3 BYSCORE REV"),
        vec!["e", "d", "b"]
    );
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZREVRANGE {z}a 0 1"),
        vec!["e", "d"]
    );
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZRANGEBYSCORE {z}a 2 4 LIMIT 0 2"),
        vec!["a", "b"]
    );
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZREVRANGEBYSCORE {z}a 4 2"),
        vec!["d", "b", "a"]
    );
    assert_eq!(q::<i64>(&mut c, "ZRANGESTORE {z}dst {z}a 1 3 BYSCORE"), 2);
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZRANGE {z}dst 0 -1"),
        vec!["c", "a"]
    );
    // Lex ranges over equal scores.
    assert_eq!(q::<i64>(&mut c, "ZADD {z}l 0 a 0 b 0 c 0 d"), 4);
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZRANGEBYLEX {z}l [b (d"),
        vec!["b", "c"]
    );
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZRANGE {z}l (d - BYLEX REV"),
        vec!["c", "b", "a"]
    );
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZREVRANGEBYLEX {z}l + - LIMIT 1 2"),
        vec!["c", "b"]
    );
    assert_eq!(q::<i64>(&mut c, "ZLEXCOUNT {z}l - +"), 4);
    assert_eq!(q::<i64>(&mut c, "ZREMRANGEBYLEX {z}l (a [b"), 1);
    assert_eq!(q::<i64>(&mut c, "ZREMRANGEBYRANK {z}l -1 -1"), 1);
    assert_eq!(q::<i64>(&mut c, "ZREMRANGEBYSCORE {z}l -inf +inf"), 2);
    assert_eq!(q::<i64>(&mut c, "EXISTS {z}l"), 0);
    // Pops.
    assert_eq!(q::<Vec<String>>(&mut c, "ZPOPMIN {z}a"), vec!["c", "1"]);
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZPOPMAX {z}a 2"),
        vec!["e", "9", "d", "4"]
    );
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZPOPMIN {z}nokey"),
        Vec::<String>::new()
    );
    assert_eq!(q::<Vec<String>>(&mut c, "ZRANDMEMBER {z}a -5").len(), 5);
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZRANDMEMBER {z}a 5 WITHSCORES").len(),
        4
    );
    // Union, intersection, difference (sets count as score 1).
    let _: i64 = q(&mut c, "ZADD {z}x 1 a 2 b");
    let _: i64 = q(&mut c, "ZADD {z}y 10 b 20 c");
    let _: i64 = q(&mut c, "SADD {z}s a c");
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZUNION 2 {z}x {z}y WITHSCORES"),
        vec!["a", "1", "b", "12", "c", "20"]
    );
    assert_eq!(
        q::<Vec<String>>(
            &mut c,
            "ZINTER 2 {z}x {z}y WEIGHTS 2 1 AGGREGATE MAX WITHSCORES"
        ),
        vec!["b", "10"]
    );
    assert_eq!(q::<Vec<String>>(&mut c, "ZDIFF 2 {z}x {z}y"), vec!["a"]);
    assert_eq!(
        q::<i64>(&mut c, "ZUNIONSTORE {z}o 2 {z}x {z}s AGGREGATE MIN"),
        3
    );
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZRANGE {z}o 0 -1 WITHSCORES"),
        vec!["a", "1", "c", "1", "b", "2"]
    );
    assert_eq!(q::<i64>(&mut c, "ZINTERSTORE {z}o 2 {z}x {z}nokey"), 0);
    assert_eq!(q::<i64>(&mut c, "EXISTS {z}o"), 0);
    assert_eq!(q::<i64>(&mut c, "ZDIFFSTORE {z}o 1 {z}y"), 2);
    let (next, items): (u64, Vec<String>) = q(&mut c, "ZSCAN {z}o 0");
    assert_eq!(next, 0);
    assert_eq!(items.len(), 4);
    // Errors.
    let _: () = q(&mut c, "SET {z}str x");
    assert_eq!(err(&mut c, "ZADD {z}str 1 a"), WRONGTYPE);
    assert_eq!(err(&mut c, "ZUNION 2 {z}x {z}str"), WRONGTYPE);
    assert_eq!(
        err(&mut c, "ZADD {z}a NX XX 1 a"),
        "ERR XX and NX options at the same time are not compatible"
    );
    assert_eq!(
        err(&mut c, "ZADD {z}a GT LT 1 a"),
        "ERR GT, LT, and/or NX options at the same time are not compatible"
    );
    assert_eq!(
        err(&mut c, "ZADD {z}a INCR 1 a 2 b"),
        "ERR INCR option supports a single increment-element pair"
    );
    assert_eq!(
        err(&mut c, "ZADD {z}a nan a"),
        "ERR value is not a valid float"
    );
    let _: i64 = q(&mut c, "ZADD {z}inf inf a");
    assert_eq!(
        err(&mut c, "ZADD {z}inf INCR -inf a"),
        "ERR resulting score is not a number (NaN)"
    );
    assert_eq!(
        err(&mut c, "ZRANGEBYSCORE {z}a x 1"),
        "ERR min or max is not a float"
    );
    assert_eq!(
        err(&mut c, "ZRANGEBYLEX {z}a a b"),
        "ERR min or max not valid string range item"
    );
    assert_eq!(
        err(&mut c, "ZRANGE {z}a 0 1 LIMIT 0 1"),
        "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
    );
    assert_eq!(
        err(&mut c, "ZRANGE {z}a - + BYLEX WITHSCORES"),
        "ERR syntax error, WITHSCORES not supported in combination with BYLEX"
    );
    assert_eq!(
        err(&mut c, "ZUNIONSTORE {z}o 0 {z}x"),
        "ERR at least 1 input key is needed for 'zunionstore' command"
    );
    assert_eq!(
        err(&mut c, "ZUNIONSTORE {z}o 1 {z}x WEIGHTS x"),
        "ERR weight value is not a float"
    );
    assert_eq!(err(&mut c, "ZUNIONSTORE {z}o 3 {z}x"), "ERR syntax error");
    assert_eq!(
        err(&mut c, "ZPOPMIN {z}x -1"),
        "ERR value is out of range, must be positive"
    );
    // Keys on different shards work as one atomic command.
    let _: i64 = q(&mut c, "ZADD b 1 x 2 y");
    let _: i64 = q(&mut c, "ZADD c 10 y");
    assert_eq!(q::<i64>(&mut c, "ZUNIONSTORE a 2 b c"), 2);
    assert_eq!(
        q::<Vec<String>>(&mut c, "ZRANGE a 0 -1 WITHSCORES"),
        vec!["x", "1", "y", "12"]
    );
    assert_eq!(q::<String>(&mut c, "TYPE {z}x"), "zset");
}

#[test]
fn lists() {
    let keel = Keel::start(&["--shards", "2"]);
    let mut c = keel.client();
    assert_eq!(q::<i64>(&mut c, "RPUSH {l}a a b c"), 3);
    assert_eq!(q::<i64>(&mut c, "LPUSH {l}a z"), 4);
    assert_eq!(q::<i64>(&mut c, "LPUSHX {l}nokey a"), 0);
    assert_eq!(q::<i64>(&mut c, "RPUSHX {l}a d"), 5);
    assert_eq!(
        q::<Vec<String>>(&mut c, "LRANGE {l}a 0 -1"),
        vec!["z", "a", "b", "c", "d"]
    );
    assert_eq!(
        q::<Vec<String>>(&mut c, "LRANGE {l}a -100 1"),
        vec!["z", "a"]
    );
    assert_eq!(
        q::<Vec<String>>(&mut c, "LRANGE {l}a 3 1"),
        Vec::<String>::new()
    );
    assert_eq!(q::<String>(&mut c, "LINDEX {l}a -1"), "d");
    assert_eq!(q::<Option<String>>(&mut c, "LINDEX {l}a 99"), None);
    assert_eq!(q::<i64>(&mut c, "LLEN {l}a"), 5);
    let _: () = q(&mut c, "LSET {l}a 0 y");
    assert_eq!(q::<i64>(&mut c, "LINSERT {l}a BEFORE b x"), 6);
    assert_eq!(q::<i64>(&mut c, "LINSERT {l}a AFTER nope x"), -1);
    assert_eq!(q::<Vec<String>>(&mut c, "LPOP {l}a 2"), vec!["y", "a"]);
    assert_eq!(q::<String>(&mut c, "RPOP {l}a"), "d");
    assert_eq!(
        q::<Vec<String>>(&mut c, "LRANGE {l}a 0 -1"),
        vec!["x", "b", "c"]
    );
    // LREM from the head, the tail, and all.
    assert_eq!(q::<i64>(&mut c, "RPUSH {l}r a b a c a b a"), 7);
    assert_eq!(q::<i64>(&mut c, "LREM {l}r -2 a"), 2);
    assert_eq!(
        q::<Vec<String>>(&mut c, "LRANGE {l}r 0 -1"),
        vec!["a", "b", "a", "c", "b"]
    );
    assert_eq!(q::<i64>(&mut c, "LREM {l}r 1 a"), 1);
    assert_eq!(q::<i64>(&mut c, "LREM {l}r 0 b"), 2);
    assert_eq!(q::<Vec<String>>(&mut c, "LRANGE {l}r 0 -1"), vec!["a", "c"]);
    // LPOS with RANK, COUNT, MAXLEN.
    assert_eq!(q::<i64>(&mut c, "RPUSH {l}p a b c a b c"), 6);
    assert_eq!(q::<i64>(&mut c, "LPOS {l}p b"), 1);
    assert_eq!(q::<i64>(&mut c, "LPOS {l}p b RANK -1"), 4);
    assert_eq!(q::<Vec<i64>>(&mut c, "LPOS {l}p a COUNT 0"), vec![0, 3]);
    assert_eq!(
        q::<Vec<i64>>(&mut c, "LPOS {l}p c RANK -1 COUNT 0 MAXLEN 2"),
        vec![5]
    );
    assert_eq!(q::<Option<i64>>(&mut c, "LPOS {l}p z"), None);
    // LTRIM, LMOVE, RPOPLPUSH, LMPOP.
    let _: () = q(&mut c, "LTRIM {l}p 1 -2");
    assert_eq!(
        q::<Vec<String>>(&mut c, "LRANGE {l}p 0 -1"),
        vec!["b", "c", "a", "b"]
    );
    assert_eq!(q::<String>(&mut c, "LMOVE {l}p {l}q LEFT RIGHT"), "b");
    assert_eq!(q::<String>(&mut c, "RPOPLPUSH {l}p {l}q"), "b");
    assert_eq!(q::<Vec<String>>(&mut c, "LRANGE {l}q 0 -1"), vec!["b", "b"]);
    assert_eq!(q::<Option<String>>(&mut c, "RPOPLPUSH {l}nokey {l}q"), None);
    let (key, items): (String, Vec<String>) = q(&mut c, "LMPOP 2 {l}nokey {l}p RIGHT COUNT 5");
    assert_eq!(
        (key.as_str(), items),
        ("{l}p", vec!["a".to_string(), "c".to_string()])
    );
    assert_eq!(q::<i64>(&mut c, "EXISTS {l}p"), 0);
    assert_eq!(q::<Value>(&mut c, "LMPOP 1 {l}p LEFT"), Value::Nil);
    assert_eq!(q::<Value>(&mut c, "LPOP {l}p 2"), Value::Nil);
    let _: () = q(&mut c, "LTRIM {l}q 1 0");
    assert_eq!(q::<i64>(&mut c, "EXISTS {l}q"), 0);
    // Errors.
    let _: () = q(&mut c, "SET {l}str x");
    assert_eq!(err(&mut c, "LPUSH {l}str a"), WRONGTYPE);
    assert_eq!(err(&mut c, "LMOVE {l}a {l}str LEFT LEFT"), WRONGTYPE);
    assert_eq!(err(&mut c, "LSET {l}nokey 0 x"), "ERR no such key");
    assert_eq!(err(&mut c, "LSET {l}a 99 x"), "ERR index out of range");
    assert_eq!(
        err(&mut c, "LPOP {l}a -1"),
        "ERR value is out of range, must be positive"
    );
    assert_eq!(
        err(&mut c, "LPOS {l}a x RANK 0"),
        "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list"
    );
    assert_eq!(
        err(&mut c, "LPOS {l}a x COUNT -1"),
        "ERR COUNT can't be negative"
    );
    assert_eq!(
        err(&mut c, "LPOS {l}a x MAXLEN -1"),
        "ERR MAXLEN can't be negative"
    );
    assert_eq!(err(&mut c, "LINSERT {l}a MIDDLE x y"), "ERR syntax error");
    assert_eq!(
        err(&mut c, "LMPOP 1 {l}a LEFT COUNT 0"),
        "ERR count should be greater than 0"
    );
    // Keys on different shards work as one atomic command.
    let _: i64 = q(&mut c, "RPUSH a 1 2");
    assert_eq!(q::<String>(&mut c, "LMOVE a b LEFT LEFT"), "1");
    assert_eq!(q::<Vec<String>>(&mut c, "LRANGE b 0 -1"), vec!["1"]);
    assert_eq!(q::<Vec<String>>(&mut c, "LRANGE a 0 -1"), vec!["2"]);
    assert_eq!(q::<String>(&mut c, "TYPE {l}a"), "list");
}

/// Reads raw RESP until `want` bytes arrived or 5 s passed.
fn raw_exchange(keel: &Keel, input: &[u8], want: usize) -> String {
    let mut s = keel.raw();
    s.write_all(input).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < want && Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn resp3_shapes_like_redis() {
    let keel = Keel::start(&[]);
    let mut c = keel.client();
    let _: i64 = q(&mut c, "ZADD z 1 a 2.5 b");
    let _: i64 = q(&mut c, "HSET h f v");
    let _: i64 = q(&mut c, "SADD s m");
    let input = b"HELLO 3\r\nZRANGE z 0 -1 WITHSCORES\r\nZSCORE z b\r\nZPOPMIN z\r\nHGETALL h\r\nSMEMBERS s\r\nPING\r\n";
    let expected = "*2\r\n*2\r\n$1\r\na\r\n,1\r\n*2\r\n$1\r\nb\r\n,2.5\r\n,2.5\r\n*2\r\n$1\r\na\r\n,1\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n~1\r\n$1\r\nm\r\n+PONG\r\n";
    let got = raw_exchange(&keel, input, usize::MAX);
    let tail = got
        .split_once("ZRANGE")
        .map_or(got.as_str(), |_| got.as_str());
    assert!(tail.ends_with(expected), "{got:?}");
}

#[test]
fn collections_copy_rename_digest_and_memory() {
    let keel = Keel::start(&["--shards", "4"]);
    let mut c = keel.client();
    let _: i64 = q(&mut c, "HSET h a 1 b 2");
    let _: i64 = q(&mut c, "ZADD z 1 a");
    let _: i64 = q(&mut c, "RPUSH l a b");
    let _: i64 = q(&mut c, "SADD s a b");
    let before: String = q(&mut c, "DEBUG DIGEST");
    assert_eq!(q::<i64>(&mut c, "COPY h h2"), 1);
    assert_eq!(q::<String>(&mut c, "HGET h2 b"), "2");
    let _: () = q(&mut c, "RENAME z z2");
    assert_eq!(q::<String>(&mut c, "ZSCORE z2 a"), "1");
    let _: () = q(&mut c, "RENAME z2 z");
    assert_eq!(q::<i64>(&mut c, "DEL h2"), 1);
    assert_eq!(q::<String>(&mut c, "DEBUG DIGEST"), before);
    // Field order does not change the digest; contents do.
    let _: i64 = q(&mut c, "HDEL h a");
    let _: i64 = q(&mut c, "HSET h a 1");
    assert_eq!(q::<String>(&mut c, "DEBUG DIGEST"), before);
    let _: i64 = q(&mut c, "SADD s c");
    assert_ne!(q::<String>(&mut c, "DEBUG DIGEST"), before);
    let keys: (u64, Vec<String>) = q(&mut c, "SCAN 0 TYPE list COUNT 100");
    assert_eq!(keys.1, vec!["l"]);
    // Memory grows with a collection and returns when it goes.
    let used = |c: &mut Connection| -> i64 {
        let info: String = q(c, "INFO memory");
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let base = used(&mut c);
    for i in 0..200 {
        let _: i64 = q(
            &mut c,
            &format!("HSET {{m}}big field{i} {}", "x".repeat(100)),
        );
        let _: i64 = q(&mut c, &format!("ZADD {{m}}zbig {i} member{i}"));
    }
    let grown = used(&mut c);
    assert!(grown > base + 200 * 100, "{base} -> {grown}");
    let _: i64 = q(&mut c, "DEL {m}big {m}zbig");
    assert!(used(&mut c) < base + 4096, "{base} -> {}", used(&mut c));
}
