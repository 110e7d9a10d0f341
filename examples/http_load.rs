//! A load generator for keel's REST API that outruns one server core: one
//! thread, non-blocking sockets and `poll(2)`, every request built once up
//! front. bench/rest.sh drives it; Node's http module (bench/rest_load.js)
//! tops out near 10k requests/s, so with it keel mostly measured its own
//! sleeping and waking.
//!
//! ```text
//! cargo run --release --example http_load -- PORT MODE N CONCURRENCY [TOKEN]
//! ```
//! MODE: `get` | `set` | `pipeline` (10 commands per request, half SET half
//! GET) | `churn` (GET on a new connection per request, `Connection: close`).
//! Prints one JSON line: mode, requests, secs, rps, cmds_per_s. Exits non-zero
//! on any reply that is not `200`.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Instant;

const KEYS: usize = 100_000;

fn body(mode: &str, i: usize) -> String {
    let value = "x".repeat(32);
    match mode {
        "set" => format!(r#"["SET","key:{}","{value}"]"#, i % KEYS),
        "pipeline" => {
            let cmds: Vec<String> = (0..10)
                .map(|j| {
                    let k = (i + j) % KEYS;
                    if j % 2 == 1 {
                        format!(r#"["GET","key:{k}"]"#)
                    } else {
                        format!(r#"["SET","key:{k}","{value}"]"#)
                    }
                })
                .collect();
            format!("[{}]", cmds.join(","))
        }
        _ => format!(r#"["GET","key:{}"]"#, i % KEYS),
    }
}

fn request(mode: &str, i: usize, token: Option<&str>) -> Vec<u8> {
    let b = body(mode, i);
    let path = if mode == "pipeline" { "/pipeline" } else { "/" };
    let conn = if mode == "churn" {
        "close"
    } else {
        "keep-alive"
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}Connection: {conn}\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    )
    .into_bytes()
}

/// Length of the first complete response in `buf`, with its status code.
fn complete(buf: &[u8]) -> Result<Option<(usize, u16)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|e| e.to_string())?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let len = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .ok_or_else(|| format!("no content-length: {head:?}"))?;
    let total = end + 4 + len;
    Ok((buf.len() >= total).then_some((total, status)))
}

struct Conn {
    sock: TcpStream,
    req: usize,
    sent: usize,
    buf: Vec<u8>,
}

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn main() -> Result<(), String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.len() < 4 {
        return Err("usage: http_load PORT get|set|pipeline|churn N CONCURRENCY [TOKEN]".into());
    }
    let port: u16 = argv[0].parse().map_err(|_| "bad port")?;
    let mode = argv[1].as_str();
    let n: usize = argv[2].parse().map_err(|_| "bad N")?;
    let conc: usize = argv[3].parse().map_err(|_| "bad concurrency")?;
    let token = argv.get(4).map(String::as_str);
    let churn = mode == "churn";
    // Requests cycle through 1,000 prebuilt ones so building them costs nothing
    // during the run.
    let reqs: Vec<Vec<u8>> = (0..1000).map(|i| request(mode, i * 97, token)).collect();

    let t0 = Instant::now();
    let mut issued = 0usize;
    let mut done = 0usize;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    for _ in 0..conc.min(n) {
        let sock = connect(port).map_err(|e| e.to_string())?;
        conns.push(Some(Conn {
            sock,
            req: issued % reqs.len(),
            sent: 0,
            buf: Vec::new(),
        }));
        issued += 1;
    }
    let mut chunk = vec![0u8; 64 * 1024];
    while done < n {
        let mut fds: Vec<libc::pollfd> = conns
            .iter()
            .flatten()
            .map(|c| libc::pollfd {
                fd: c.sock.as_raw_fd(),
                events: if c.sent < reqs[c.req].len() {
                    libc::POLLOUT
                } else {
                    libc::POLLIN
                },
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid, exclusively borrowed array of its length.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 5000) };
        if r == 0 {
            return Err(format!("no reply for 5 s ({done} of {n} done)"));
        }
        if r < 0 {
            continue; // EINTR
        }
        let mut fi = 0;
        for slot in conns.iter_mut() {
            let Some(c) = slot.as_mut() else { continue };
            let rev = fds[fi].revents;
            fi += 1;
            if rev == 0 {
                continue;
            }
            let req = &reqs[c.req];
            if c.sent < req.len() {
                match c.sock.write(&req[c.sent..]) {
                    Ok(k) => c.sent += k,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(format!("write: {e}")),
                }
                continue;
            }
            match c.sock.read(&mut chunk) {
                Ok(0) => return Err("server closed the connection early".into()),
                Ok(k) => c.buf.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => return Err(format!("read: {e}")),
            }
            let Some((len, status)) = complete(&c.buf)? else {
                continue;
            };
            if status != 200 {
                return Err(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&c.buf[..len])
                ));
            }
            c.buf.drain(..len);
            done += 1;
            if issued >= n {
                *slot = None;
                continue;
            }
            if churn {
                c.sock = connect(port).map_err(|e| e.to_string())?;
                c.buf.clear();
            }
            c.req = issued % reqs.len();
            c.sent = 0;
            issued += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let per = if mode == "pipeline" { 10 } else { 1 };
    println!(
        r#"{{"mode":"{mode}","requests":{n},"secs":{secs:.3},"rps":{:.0},"cmds_per_s":{:.0}}}"#,
        n as f64 / secs,
        (n * per) as f64 / secs
    );
    Ok(())
}
