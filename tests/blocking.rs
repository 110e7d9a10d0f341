//! Blocking commands: served in the order clients blocked, woken by pushes
//! from any core, timeouts, and clients that leave while blocked.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::Keel;
use redis::{Commands, Value};

fn blocked_clients(c: &mut redis::Connection) -> i64 {
    let info: String = redis::cmd("INFO").arg("clients").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

fn wait_blocked(c: &mut redis::Connection, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while blocked_clients(c) != n {
        assert!(
            Instant::now() < deadline,
            "blocked_clients never reached {n}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn clients_are_served_in_the_order_they_blocked() {
    let keel = Keel::start(&["--shards", "4"]);
    let mut admin = keel.client();
    let mut handles = Vec::new();
    for i in 0..3 {
        let url = keel.url();
        handles.push(thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let got: (String, String) = redis::cmd("BLPOP")
                .arg("fifo")
                .arg(10)
                .query(&mut c)
                .unwrap();
            got.1
        }));
        wait_blocked(&mut admin, i + 1);
    }
    let _: () = admin.rpush("fifo", &["first", "second", "third"]).unwrap();
    let got: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(got, vec!["first", "second", "third"]);
    assert_eq!(blocked_clients(&mut admin), 0);
}

#[test]
fn pushes_from_any_core_wake_a_client_blocked_on_several_shards() {
    let keel = Keel::start(&["--shards", "4"]);
    let mut admin = keel.client();
    // Two keys on different shards.
    let k1 = "alpha";
    let k2 = ["bravo", "charlie", "delta", "echo", "foxtrot"]
        .into_iter()
        .find(|k| {
            keel_shards::slot::shard_of(k.as_bytes(), 4)
                != keel_shards::slot::shard_of(k1.as_bytes(), 4)
        })
        .unwrap();
    let url = keel.url();
    let waiter = thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let got: (String, String) = redis::cmd("BRPOP")
            .arg(k1)
            .arg(k2)
            .arg(10)
            .query(&mut c)
            .unwrap();
        got
    });
    wait_blocked(&mut admin, 1);
    let _: () = admin.lpush(k2, "v2").unwrap();
    assert_eq!(waiter.join().unwrap(), (k2.to_string(), "v2".to_string()));
    // Its registration on the other key is gone: a later push stays put.
    let _: () = admin.lpush(k1, "v1").unwrap();
    thread::sleep(Duration::from_millis(100));
    assert_eq!(admin.llen::<_, i64>(k1).unwrap(), 1);
    assert_eq!(blocked_clients(&mut admin), 0);
}

#[test]
fn timeouts_and_immediate_answers() {
    let keel = Keel::start(&["--shards", "2"]);
    let mut c = keel.client();
    let started = Instant::now();
    let v: Value = redis::cmd("BLPOP")
        .arg("empty")
        .arg("0.2")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, Value::Nil);
    assert!(started.elapsed() >= Duration::from_millis(150));
    let _: () = c.rpush("ready", "x").unwrap();
    let got: (String, String) = redis::cmd("BLPOP")
        .arg("empty")
        .arg("ready")
        .arg(5)
        .query(&mut c)
        .unwrap();
    assert_eq!(got, ("ready".into(), "x".into()));
    let e = redis::cmd("BLPOP")
        .arg("k")
        .arg("-1")
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("timeout is negative"), "{e}");
    let e = redis::cmd("BLPOP")
        .arg("k")
        .arg("soon")
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("timeout is not a float"), "{e}");
    // Inside MULTI nothing blocks.
    let r: Vec<Value> = redis::pipe()
        .atomic()
        .cmd("BLPOP")
        .arg("empty")
        .arg(0)
        .query(&mut c)
        .unwrap();
    assert_eq!(r, vec![Value::Nil]);
    let _: () = c.zadd("scores", "m", 5).unwrap();
    let z: (String, String, f64) = redis::cmd("BZPOPMIN")
        .arg("scores")
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert_eq!(z, ("scores".into(), "m".into(), 5.0));
}

#[test]
fn a_client_that_leaves_while_blocked_leaves_nothing_behind() {
    let keel = Keel::start(&["--shards", "2"]);
    let mut admin = keel.client();
    {
        let mut s = keel.raw();
        std::io::Write::write_all(&mut s, b"BLPOP gone 0\r\n").unwrap();
        wait_blocked(&mut admin, 1);
    } // connection closed here
    wait_blocked(&mut admin, 0);
    let _: () = admin.rpush("gone", "kept").unwrap();
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        admin.lrange::<_, Vec<String>>("gone", 0, -1).unwrap(),
        vec!["kept"]
    );
}

#[test]
fn blmove_job_queue() {
    let keel = Keel::start(&["--shards", "4"]);
    let mut producer = keel.client();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let url = keel.url();
            thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                let mut done = 0;
                loop {
                    let job: Option<String> = redis::cmd("BLMOVE")
                        .arg("{jobs}:queue")
                        .arg("{jobs}:processing")
                        .arg("RIGHT")
                        .arg("LEFT")
                        .arg("0.5")
                        .query(&mut c)
                        .unwrap();
                    let Some(job) = job else { return done };
                    let _: i64 = c.lrem("{jobs}:processing", 1, &job).unwrap();
                    let _: i64 = c.incr("{jobs}:done", 1).unwrap();
                    done += 1;
                }
            })
        })
        .collect();
    for i in 0..200 {
        let _: () = producer.lpush("{jobs}:queue", format!("job-{i}")).unwrap();
    }
    let total: i64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(total, 200);
    assert_eq!(producer.get::<_, i64>("{jobs}:done").unwrap(), 200);
    assert_eq!(producer.llen::<_, i64>("{jobs}:processing").unwrap(), 0);
    let e = redis::cmd("BLMOVE")
        .arg("a")
        .arg("b")
        .arg("LEFT")
        .arg("UP")
        .arg(1)
        .query::<Value>(&mut producer)
        .unwrap_err();
    assert!(e.to_string().contains("syntax error"), "{e}");
}
