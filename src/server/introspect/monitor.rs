//! MONITOR: connections that see every command any core runs.
//!
//! # Cost when nobody monitors
//! One relaxed load of `WATCHERS` per command. Only while it is non-zero
//! does a command format its line and take the registry's lock to hand the
//! line to every monitoring connection (an unbounded channel each, read by
//! the monitor's own connection loop on its core).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};

/// How many connections are in MONITOR mode.
static WATCHERS: AtomicUsize = AtomicUsize::new(0);
/// Their client ids and channels.
static REGISTRY: Mutex<Vec<(u64, UnboundedSender<Vec<u8>>)>> = Mutex::new(Vec::new());

#[inline]
pub fn active() -> bool {
    WATCHERS.load(Ordering::Relaxed) > 0
}

fn registry() -> std::sync::MutexGuard<'static, Vec<(u64, UnboundedSender<Vec<u8>>)>> {
    match REGISTRY.lock() {
        Ok(r) => r,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Puts client `id` in MONITOR mode: the lines of commands run from now on
/// arrive on the returned channel.
pub fn start(id: u64) -> UnboundedReceiver<Vec<u8>> {
    let (tx, rx) = unbounded();
    let mut r = registry();
    r.push((id, tx));
    WATCHERS.store(r.len(), Ordering::Relaxed);
    rx
}

/// Takes client `id` out of MONITOR mode.
pub fn stop(id: u64) {
    let mut r = registry();
    r.retain(|(c, _)| *c != id);
    WATCHERS.store(r.len(), Ordering::Relaxed);
}

/// Sends a command's line to every monitor: `+<unix.micros> [<db> <addr>]
/// "arg" ...`, arguments quoted and escaped as Redis quotes them.
pub fn feed(db: usize, addr: &str, argv: &[&[u8]]) {
    let us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let mut line = format!("+{}.{:06} [{db} {addr}]", us / 1_000_000, us % 1_000_000).into_bytes();
    // Secrets are not shown: AUTH's arguments, HELLO's AUTH pair.
    let is = |i: usize, w: &[u8]| argv.get(i).is_some_and(|a| a.eq_ignore_ascii_case(w));
    let redacted = |i: usize| {
        (is(0, b"auth") && i >= 1)
            || (is(0, b"hello") && i >= 3 && (is(i - 1, b"auth") || is(i - 2, b"auth")))
    };
    for (i, a) in argv.iter().enumerate() {
        line.push(b' ');
        if redacted(i) {
            quote(b"(redacted)", &mut line);
        } else {
            quote(a, &mut line);
        }
    }
    line.extend_from_slice(b"\r\n");
    let mut r = registry();
    // A monitor whose connection ended is dropped here too.
    r.retain(|(_, tx)| tx.unbounded_send(line.clone()).is_ok());
    WATCHERS.store(r.len(), Ordering::Relaxed);
}

/// `"bytes"` with `\`, `"`, control and non-printable bytes escaped.
fn quote(a: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &c in a {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            7 => out.extend_from_slice(b"\\a"),
            8 => out.extend_from_slice(b"\\b"),
            0x20..=0x7e => out.push(c),
            _ => out.extend_from_slice(format!("\\x{c:02x}").as_bytes()),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn arguments_are_quoted_as_redis_quotes_them() {
        let mut out = Vec::new();
        quote(b"a\"b\\c\n\x01\xff", &mut out);
        assert_eq!(out, b"\"a\\\"b\\\\c\\n\\x01\\xff\"".to_vec());
    }
}
