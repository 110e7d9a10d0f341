//! Fuzz targets for everything keel decodes from a client, a peer or the
//! disk, written as property tests so they run on the stable toolchain and
//! in the ordinary `cargo test`.
//!
//! # Layout
//! One module per decoder, each checking invariants, not only "no panic":
//! - [`resp`]: the RESP request parser and the reply framer (what a node
//!   relays from another node), against the reply encoder.
//! - [`records`]: write-record frames (logs, snapshots, backlog).
//! - [`repl_frames`]: replication link frames (crc, lz4) and the messages
//!   inside them.
//! - [`acl`]: the ACL rule language (SETUSER, the ACL file, the stored set).
//! - [`bus`]: cluster bus frames and control-plane messages.
//! - [`dump`]: DUMP payloads, as RESTORE reads them.
//! - [`rest_json`]: the REST API's JSON command bodies, and its reader of
//!   the replies it turns into JSON.
//! - [`commands`]: a live server fed commands from its own COMMAND table
//!   with arguments commands treat specially: one well-formed reply each,
//!   Redis-style errors, and the server still serving.
//!
//! Every target checks, where they apply: arbitrary bytes give a value,
//! "need more" or a typed error, inside the input; encode then decode gives
//! the value back and consumes exactly its bytes; a stream cut anywhere and
//! fed in pieces decodes as the whole does; damaged input is refused (or,
//! without a checksum, decodes to something that re-encodes to itself), and
//! no length prefix makes a decoder wait for or allocate more than its
//! limit.
//!
//! # Running
//! `KEEL_FUZZ_CASES` sets the cases per property (default 256: about ten
//! seconds for all of them in a debug build on two cores);
//! `PROPTEST_RNG_SEED` fixes the seed. `tests/fuzz.sh [seconds-per-target]`
//! runs each target for a bounded time with fresh seeds. A failure prints
//! the smallest input proptest found and is saved under
//! `proptest-regressions/fuzz/`, to be replayed first by every later run.
//!
//! One test binary holds every target: linking the server into one binary
//! rather than seven keeps the ordinary build fast.

mod acl;
mod bus;
mod commands;
#[path = "../common/mod.rs"]
mod common;
mod dump;
mod records;
mod repl_frames;
mod resp;
mod rest_json;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

/// The system allocator, noting the largest single allocation each thread
/// makes: how "no length prefix makes a decoder allocate more than its
/// input or its limit backs" is checked, without allocating it for real
/// first when the limit is what broke.
struct Watch;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every call goes to the system allocator with the same arguments;
// the only addition is a thread-local counter, which allocates nothing.
unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static WATCH: Watch = Watch;

/// Runs `f`; its result and the largest single allocation it made.
pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let r = f();
    (r, LARGEST.with(Cell::get))
}

/// Cases per property unless `KEEL_FUZZ_CASES` says otherwise.
const DEFAULT_CASES: u32 = 256;

/// The configuration of every property of one target: its case count, and
/// its regressions file (relative to the package root, where `cargo test`
/// runs).
pub fn config(regressions: &'static str) -> Config {
    let cases = std::env::var("KEEL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        // Shrinking stops early rather than running for minutes.
        max_shrink_iters: 4096,
        ..Config::default()
    }
}

/// A request in RESP's multibulk form.
pub fn multibulk(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Short byte strings, now and then empty.
pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

/// Damage done to valid input: flip a bit, insert a byte, delete one.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
}

pub fn mutations(max: usize) -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Delete),
    ];
    prop::collection::vec(one, 1..=max)
}

/// Applies `muts` to `buf` in order; returns the lowest position touched.
pub fn mutate(buf: &mut Vec<u8>, muts: &[Mutation]) -> usize {
    let mut lowest = buf.len();
    for m in muts {
        match m {
            Mutation::Flip(i, bit) if !buf.is_empty() => {
                let at = i.index(buf.len());
                buf[at] ^= 1 << bit;
                lowest = lowest.min(at);
            }
            Mutation::Insert(i, b) => {
                let at = i.index(buf.len() + 1);
                buf.insert(at, *b);
                lowest = lowest.min(at);
            }
            Mutation::Delete(i) if !buf.is_empty() => {
                let at = i.index(buf.len());
                buf.remove(at);
                lowest = lowest.min(at);
            }
            _ => {}
        }
    }
    lowest
}

/// Cut points that split `len` bytes into pieces, as reads would.
pub fn cuts(len: usize, raw: &[prop::sample::Index]) -> Vec<usize> {
    let mut c: Vec<usize> = raw.iter().map(|i| i.index(len + 1)).collect();
    c.push(len);
    c.sort_unstable();
    c.dedup();
    c
}
