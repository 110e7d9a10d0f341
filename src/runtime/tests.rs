//! The executor, its sockets and files, on this machine's kernel.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt};

use super::{executor, file::File, sleep, spawn, timeout, TcpListener, TcpStream};

fn local_listener() -> TcpListener {
    TcpListener::bind_exclusive("127.0.0.1:0".parse().unwrap()).unwrap()
}

#[test]
fn timers_fire_in_deadline_order_and_tasks_all_run() {
    let order = Rc::new(RefCell::new(Vec::new()));
    let seen = order.clone();
    executor::block_on(async move {
        let mut handles = Vec::new();
        for (name, ms) in [("c", 30u64), ("a", 5), ("b", 15)] {
            let o = seen.clone();
            handles.push(spawn(async move {
                sleep(Duration::from_millis(ms)).await;
                o.borrow_mut().push(name);
            }));
        }
        for h in handles {
            assert_eq!(h.await, Some(()));
        }
        // A timeout that expires, and one that does not.
        assert_eq!(
            timeout(Duration::from_millis(5), futures::future::pending::<()>()).await,
            None
        );
        assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Some(7));
    })
    .unwrap();
    assert_eq!(*order.borrow(), vec!["a", "b", "c"]);
}

#[test]
fn a_task_is_woken_from_another_thread() {
    let got = Rc::new(RefCell::new(None));
    let out = got.clone();
    let started = Instant::now();
    executor::block_on(async move {
        let (tx, rx) = futures::channel::oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            let _ = tx.send(42u32);
        });
        // Nothing else is ready: the executor sleeps in the ring until the
        // other thread's wake ends its wait.
        *out.borrow_mut() = rx.await.ok();
    })
    .unwrap();
    assert_eq!(*got.borrow(), Some(42));
    assert!(started.elapsed() >= Duration::from_millis(30));
}

#[test]
fn a_stream_carries_more_than_its_buffers_both_ways() {
    // 3 MiB: more than the provided receive buffers and the send limit.
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let expect = data.clone();
    executor::block_on(async move {
        let l = local_listener();
        let addr = l.local_addr().unwrap();
        // An echo peer on a plain thread.
        let peer = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0;
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).unwrap();
                total += n;
            }
            total
        });
        let s = l.accept().await.unwrap();
        let (mut rd, mut wr) = s.split();
        let writer = spawn(async move {
            wr.write_all(&data).await.unwrap();
            wr.close().await.unwrap();
        });
        let mut back = Vec::new();
        rd.read_to_end(&mut back).await.unwrap();
        writer.await;
        assert_eq!(back.len(), expect.len());
        assert!(back == expect, "echoed bytes differ");
        assert_eq!(peer.join().unwrap(), expect.len());
    })
    .unwrap();
}

#[test]
fn what_is_written_before_a_drop_still_arrives() {
    executor::block_on(async {
        let l = local_listener();
        let addr = l.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            all
        });
        let mut s = l.accept().await.unwrap();
        s.write_all(b"+last words\r\n").await.unwrap();
        drop(s);
        // The send was only queued; the executor submits it afterwards.
        sleep(Duration::from_millis(20)).await;
        let got = peer.join().unwrap();
        assert_eq!(got, b"+last words\r\n");
    })
    .unwrap();
}

#[test]
fn connect_and_abandoned_operations() {
    executor::block_on(async {
        let l = local_listener();
        let addr = l.local_addr().unwrap();
        // An accept abandoned by a timeout is cancelled; the listener keeps
        // working.
        assert!(timeout(Duration::from_millis(10), l.accept())
            .await
            .is_none());
        let (client, server) = futures::join!(
            TcpStream::connect_timeout(addr, Duration::from_secs(2)),
            l.accept()
        );
        let (mut c, mut s) = (client.unwrap(), server.unwrap());
        assert_eq!(c.peer_addr().unwrap(), addr);
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        drop(c);
        assert_eq!(
            s.read(&mut buf).await.unwrap(),
            0,
            "eof after the peer left"
        );
        // Nobody listens on a closed port: refused, not hung.
        drop(l);
        let r = TcpStream::connect_timeout(addr, Duration::from_secs(2)).await;
        assert!(r.is_err());
    })
    .unwrap();
}

#[test]
fn files_write_at_positions_and_sync() {
    let dir = std::env::temp_dir().join(format!("keel-rt-file-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("log");
    let p = path.clone();
    executor::block_on(async move {
        let f = File::create_new(&p, false).unwrap();
        f.write_all_at(b"hello ", 0).await.unwrap();
        f.write_all_at(b"world", 6).await.unwrap();
        f.sync_data().await.unwrap();
        f.set_len(11).unwrap();
        assert!(File::create_new(&p, false).is_err(), "never reuses a file");
    })
    .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
    let _ = std::fs::remove_dir_all(&dir);
}
