//! The scripts a server knows, shared by every core: bodies by SHA1 (what
//! EVAL, SCRIPT LOAD and EVALSHA name), each body's shebang flags, and the
//! state of running scripts that other cores consult (BUSY, SCRIPT KILL).
//!
//! Each core compiles a body into its own Lua state on first use (see
//! `engine.rs`); this cache holds only source text, so any core can run any
//! script. SCRIPT FLUSH empties it and bumps a generation that tells every
//! core to drop its compiled functions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::cmd::error::CmdError;

/// What a script's shebang line (`#!lua flags=...`) declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// A shebang was present: the script declared its flags (Redis then
    /// applies them instead of the legacy rules).
    pub declared: bool,
    pub no_writes: bool,
    pub allow_oom: bool,
    pub allow_stale: bool,
    pub no_cluster: bool,
    pub allow_cross_slot_keys: bool,
    /// Upstash's flag for scripts that lock keys they did not declare.
    pub allow_key_locking: bool,
}

/// A script's source, as stored once for every core.
#[derive(Debug)]
pub struct Script {
    /// Lowercase hex SHA1 of the body, as the client sent it.
    pub sha: String,
    /// The body with a shebang line turned into a Lua comment, so line
    /// numbers in errors stay those of the text the client sent.
    pub source: String,
    pub flags: Flags,
}

/// SHA1 of `bytes` in lowercase hex (`redis.sha1hex`, script names).
pub fn sha1hex(bytes: &[u8]) -> String {
    sha1_smol::Sha1::from(bytes).digest().to_string()
}

/// Reads the shebang line, if any, of a script body.
pub fn parse_shebang(body: &str) -> Result<(Flags, String), CmdError> {
    let Some(rest) = body.strip_prefix("#!") else {
        return Ok((Flags::default(), body.to_string()));
    };
    let line = rest.split('\n').next().unwrap_or("");
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    let engine = words.next().unwrap_or("");
    if engine != "lua" {
        return Err(CmdError::other(format!(
            "Unexpected engine in script shebang: #!{engine}"
        )));
    }
    let mut flags = Flags {
        declared: true,
        ..Flags::default()
    };
    for word in words {
        let Some(list) = word.strip_prefix("flags=") else {
            return Err(CmdError::other(format!(
                "Unknown lua shebang option: {word}"
            )));
        };
        for flag in list.split(',').filter(|f| !f.is_empty()) {
            match flag {
                "no-writes" => flags.no_writes = true,
                "allow-oom" => flags.allow_oom = true,
                "allow-stale" => flags.allow_stale = true,
                "no-cluster" => flags.no_cluster = true,
                "allow-cross-slot-keys" => flags.allow_cross_slot_keys = true,
                "allow-key-locking" => flags.allow_key_locking = true,
                other => {
                    return Err(CmdError::other(format!(
                        "Unexpected flag in script shebang: {other}"
                    )))
                }
            }
        }
    }
    // "#!" becomes "--": a comment of the same line count.
    Ok((flags, format!("--{rest}")))
}

/// A running function: its name, the command that called it, its start.
type RunningFunction = (String, Vec<Vec<u8>>, Instant);

/// One core's running script, as other cores see it.
#[derive(Default)]
struct Slot {
    /// 0 idle, 1 running, 2 busy (past the threshold), 3 busy and wrote.
    state: AtomicU8,
    kill: AtomicBool,
    /// The function running there (FCALL): name, command, start.
    function: Mutex<Option<RunningFunction>>,
}

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const BUSY: u8 = 2;
const BUSY_WROTE: u8 = 3;

/// What SCRIPT KILL found.
#[derive(Debug, PartialEq, Eq)]
pub enum Kill {
    NotBusy,
    Unkillable,
    Killed,
}

pub struct Scripts {
    bodies: RwLock<HashMap<String, Arc<Script>>>,
    generation: AtomicU64,
    /// `busy-reply-threshold` (alias `lua-time-limit`), in milliseconds.
    pub busy_threshold_ms: AtomicU64,
    /// Bytes each core's Lua state may allocate (`lua-memory-limit`).
    pub memory_limit: AtomicU64,
    slots: Vec<Slot>,
    busy: AtomicUsize,
}

impl Scripts {
    pub fn new(executors: usize, busy_threshold_ms: u64, memory_limit: u64) -> Self {
        Scripts {
            bodies: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            busy_threshold_ms: AtomicU64::new(busy_threshold_ms),
            memory_limit: AtomicU64::new(memory_limit),
            slots: (0..executors).map(|_| Slot::default()).collect(),
            busy: AtomicUsize::new(0),
        }
    }

    pub fn get(&self, sha: &str) -> Option<Arc<Script>> {
        let bodies = self.bodies.read().unwrap_or_else(|p| p.into_inner());
        bodies.get(sha).cloned()
    }

    /// The script of a body (EVAL, SCRIPT LOAD): the stored one, or a new
    /// one after checking its shebang (stored by [`Scripts::insert`] once
    /// it compiles).
    pub fn prepare(&self, body: &[u8]) -> Result<(Arc<Script>, bool), CmdError> {
        let sha = sha1hex(body);
        if let Some(s) = self.get(&sha) {
            return Ok((s, true));
        }
        let text = String::from_utf8_lossy(body);
        let (flags, source) = parse_shebang(&text)?;
        Ok((Arc::new(Script { sha, source, flags }), false))
    }

    pub fn insert(&self, script: Arc<Script>) {
        let mut bodies = self.bodies.write().unwrap_or_else(|p| p.into_inner());
        bodies.entry(script.sha.clone()).or_insert(script);
    }

    pub fn exists(&self, sha: &[u8]) -> bool {
        let sha = String::from_utf8_lossy(sha).to_ascii_lowercase();
        self.get(&sha).is_some()
    }

    pub fn flush(&self) {
        self.bodies
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// A script starts on core `me`.
    pub fn started(&self, me: usize) {
        if let Some(s) = self.slots.get(me) {
            s.kill.store(false, Ordering::SeqCst);
            s.state.store(RUNNING, Ordering::SeqCst);
        }
    }

    /// The script on `me` ran past the threshold: other clients get BUSY.
    pub fn became_busy(&self, me: usize, wrote: bool) {
        if let Some(s) = self.slots.get(me) {
            let new = if wrote { BUSY_WROTE } else { BUSY };
            let old = s.state.swap(new, Ordering::SeqCst);
            if old < BUSY {
                self.busy.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// The run starting on `me` is the function `name` called by `command`.
    pub fn function_started(&self, me: usize, name: &str, command: &[Vec<u8>]) {
        if let Some(s) = self.slots.get(me) {
            *s.function.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((name.to_string(), command.to_vec(), Instant::now()));
        }
    }

    /// A busy function somewhere (FUNCTION STATS): its name, its command
    /// and how long it has run, in ms.
    pub fn running_function(&self) -> Option<(String, Vec<Vec<u8>>, u64)> {
        self.slots.iter().find_map(|s| {
            if s.state.load(Ordering::SeqCst) < BUSY {
                return None;
            }
            let f = s.function.lock().unwrap_or_else(|p| p.into_inner());
            f.as_ref()
                .map(|(n, c, t)| (n.clone(), c.clone(), t.elapsed().as_millis() as u64))
        })
    }

    /// The script on `me` ended.
    pub fn finished(&self, me: usize) {
        if let Some(s) = self.slots.get(me) {
            if let Ok(mut f) = s.function.lock() {
                f.take();
            }
            if s.state.swap(IDLE, Ordering::SeqCst) >= BUSY {
                self.busy.fetch_sub(1, Ordering::SeqCst);
            }
            s.kill.store(false, Ordering::SeqCst);
        }
    }

    /// Whether a script runs past the threshold somewhere.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed) > 0
    }

    pub fn kill_requested(&self, me: usize) -> bool {
        self.slots
            .get(me)
            .is_some_and(|s| s.kill.load(Ordering::Relaxed))
    }

    /// SCRIPT KILL: asks every busy script that has not written to stop.
    pub fn kill(&self) -> Kill {
        let mut found = Kill::NotBusy;
        for s in &self.slots {
            match s.state.load(Ordering::SeqCst) {
                BUSY => {
                    s.kill.store(true, Ordering::SeqCst);
                    found = Kill::Killed;
                }
                BUSY_WROTE if found == Kill::NotBusy => found = Kill::Unkillable,
                _ => {}
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_flags_and_errors() {
        let (f, src) = parse_shebang("#!lua flags=no-writes,allow-oom\nreturn 1").unwrap();
        assert!(f.declared && f.no_writes && f.allow_oom && !f.allow_stale);
        assert_eq!(src, "--lua flags=no-writes,allow-oom\nreturn 1");
        let (f, _) = parse_shebang("return 1").unwrap();
        assert!(!f.declared);
        let e = parse_shebang("#!js\nreturn 1").unwrap_err().to_string();
        assert_eq!(e, "ERR Unexpected engine in script shebang: #!js");
        let e = parse_shebang("#!lua flags=foo\n").unwrap_err().to_string();
        assert_eq!(e, "ERR Unexpected flag in script shebang: foo");
        let e = parse_shebang("#!lua name=x\n").unwrap_err().to_string();
        assert_eq!(e, "ERR Unknown lua shebang option: name=x");
    }

    #[test]
    fn kill_spares_scripts_that_wrote() {
        let s = Scripts::new(2, 5000, 0);
        assert_eq!(s.kill(), Kill::NotBusy);
        s.started(0);
        s.became_busy(0, true);
        assert!(s.busy());
        assert_eq!(s.kill(), Kill::Unkillable);
        s.started(1);
        s.became_busy(1, false);
        assert_eq!(s.kill(), Kill::Killed);
        assert!(s.kill_requested(1) && !s.kill_requested(0));
        s.finished(0);
        s.finished(1);
        assert!(!s.busy());
        assert_eq!(sha1hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }
}
