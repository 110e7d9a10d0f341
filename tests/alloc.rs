//! The data path's steady state allocates nothing per GET, and nothing per
//! SET that overwrites a value of the same size (the key's node is rewritten
//! in place; a new size takes one new node): a counting allocator around a keel running in this
//! process, and a pipeline of requests whose own buffers are made before
//! counting starts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

const KEYS: usize = 1000;

fn pipeline(cmd: &str, value: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..KEYS {
        let key = format!("key:{i:06}");
        match value {
            Some(v) => out.extend_from_slice(
                format!(
                    "*3\r\n${}\r\n{cmd}\r\n${}\r\n{key}\r\n${}\r\n{v}\r\n",
                    cmd.len(),
                    key.len(),
                    v.len()
                )
                .as_bytes(),
            ),
            None => out.extend_from_slice(
                format!(
                    "*2\r\n${}\r\n{cmd}\r\n${}\r\n{key}\r\n",
                    cmd.len(),
                    key.len()
                )
                .as_bytes(),
            ),
        }
    }
    out
}

/// Sends `req` and reads until `expect` reply bytes came back.
fn round(s: &mut TcpStream, req: &[u8], buf: &mut [u8], expect: usize) {
    s.write_all(req).unwrap();
    let mut got = 0;
    while got < expect {
        let n = s.read(&mut buf[got..]).unwrap();
        assert!(n > 0, "server closed the connection");
        got += n;
    }
    assert_eq!(got, expect);
}

/// Allocations during `rounds` rounds, per request.
fn per_request(s: &mut TcpStream, req: &[u8], buf: &mut [u8], expect: usize, rounds: usize) -> f64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..rounds {
        round(s, req, buf, expect);
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    (after - before) as f64 / (rounds * KEYS) as f64
}

#[test]
fn get_and_set_allocate_nothing_per_request_once_warm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("keel-alloc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let flags = <keel::config::Flags as clap::Parser>::parse_from([
        "keel",
        "--port",
        &port.to_string(),
        "--shards",
        "1",
        "--dir",
        dir.to_str().unwrap(),
        "--appendonly",
        "yes",
        "--http-port",
        "0",
    ]);
    let config = keel::config::Config::load(flags).unwrap();
    std::thread::spawn(move || keel::runtime::run(config));
    let mut s = (0..200)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .expect("keel did not start");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();

    let value = "v".repeat(32);
    let set = pipeline("SET", Some(&value));
    let get = pipeline("GET", None);
    let set_reply = KEYS * b"+OK\r\n".len();
    let get_reply = KEYS * format!("$32\r\n{value}\r\n").len();
    let mut buf = vec![0u8; get_reply.max(set_reply) + 1];
    // Warm up: the keys exist, the buffers have grown.
    for _ in 0..3 {
        round(&mut s, &set, &mut buf, set_reply);
        round(&mut s, &get, &mut buf, get_reply);
    }
    assert_eq!(&buf[..5], b"$32\r\n");

    let gets = per_request(&mut s, &get, &mut buf, get_reply, 20);
    let sets = per_request(&mut s, &set, &mut buf, set_reply, 20);
    println!("allocations per request: GET {gets:.3}, SET {sets:.3}");
    // Background ticks (expiry, ten a second) allocate a little; a request
    // itself must not.
    assert!(gets < 0.05, "GET allocates {gets:.3} times per request");
    // SET of a same-sized value over an existing key rewrites its node.
    assert!(sets < 0.1, "SET allocates {sets:.3} times per request");
}
