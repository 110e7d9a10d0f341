//! TCP on the executor's ring: completion-based, not readiness-based.
//!
//! A stream keeps one multishot receive armed; arrivals are appended to
//! its input without a syscall. Writes are buffered: `poll_write` copies
//! the bytes and queues a send, which reaches the kernel with every other
//! connection's at the executor's next enter — one syscall for a whole
//! turn's replies. One send per stream is in flight at a time (its bytes
//! owned by the stream's slot); what is written meanwhile waits behind it
//! up to [`SEND_LIMIT`], past which writers wait.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use io_uring::{opcode, types};

use super::executor::with;
use super::ring::{Ring, SlotKind, TAG_ACCEPT, TAG_SEND};

/// Bytes a stream buffers for sending before writers wait.
const SEND_LIMIT: usize = 1 << 20;
/// How long a dropped stream may take to send what was written to it.
const LINGER: std::time::Duration = std::time::Duration::from_secs(10);
/// Received bytes not yet read past which receiving pauses.
const RECV_LIMIT: usize = 4 << 20;

pub(super) struct StreamState {
    fd: RawFd,
    input: Vec<u8>,
    read_at: usize,
    eof: bool,
    recv_error: Option<i32>,
    recv_armed: bool,
    /// Receiving stopped (cancelled) because `input` is full.
    recv_paused: bool,
    reader: Option<Waker>,
    queued: Vec<u8>,
    flight: Vec<u8>,
    flight_done: usize,
    sending: bool,
    send_error: Option<i32>,
    writer: Option<Waker>,
    /// Operations in flight (a completion without MORE ends one).
    outstanding: u32,
    dropped: bool,
    closed: bool,
}

impl StreamState {
    /// Shuts the socket down and closes it (once). A dropped stream does
    /// so only after what was written to it has gone out.
    fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = super::executor::try_with(|e| e.ring.submit_queued());
            // SAFETY: our fd, closed once; in-flight operations hold the
            // file itself until they complete.
            unsafe {
                libc::shutdown(self.fd, libc::SHUT_RDWR);
                libc::close(self.fd);
            }
        }
    }

    fn unread(&self) -> usize {
        self.input.len() - self.read_at
    }

    fn arm(&mut self, ring: &Ring, slot: u32) {
        if self.recv_armed || self.dropped || self.eof || self.recv_error.is_some() {
            return;
        }
        self.recv_armed = true;
        self.recv_paused = false;
        self.outstanding += 1;
        ring.push(Ring::recv_entry(self.fd, slot));
    }

    /// A receive completion; true when the slot can be freed.
    pub(super) fn on_recv(
        &mut self,
        ring: &Ring,
        slot: u32,
        res: i32,
        data: Option<&[u8]>,
        more: bool,
    ) -> bool {
        if let Some(bytes) = data {
            if !self.dropped {
                if self.read_at > 0 && self.read_at == self.input.len() {
                    self.input.clear();
                    self.read_at = 0;
                }
                self.input.extend_from_slice(bytes);
            }
        } else if res == 0 {
            self.eof = true;
        } else if res < 0 && res != -libc::ENOBUFS && res != -libc::ECANCELED {
            self.recv_error = Some(-res);
        }
        if !more {
            self.recv_armed = false;
            self.outstanding -= 1;
            if self.unread() >= RECV_LIMIT {
                self.recv_paused = true;
            } else {
                // Out of provided buffers (or cancelled for a full input
                // that has drained since): receive again.
                self.arm(ring, slot);
            }
        } else if self.unread() >= RECV_LIMIT && !self.dropped {
            self.recv_paused = true;
            ring.cancel(Ring::user_data(slot, super::ring::TAG_RECV));
        }
        if let Some(w) = self.reader.take() {
            w.wake();
        }
        self.dropped && self.outstanding == 0
    }

    fn start_send(&mut self, ring: &Ring, slot: u32) {
        if self.sending || self.queued.is_empty() || self.send_error.is_some() {
            return;
        }
        std::mem::swap(&mut self.queued, &mut self.flight);
        self.flight_done = 0;
        self.sending = true;
        self.push_send(ring, slot);
    }

    fn push_send(&mut self, ring: &Ring, slot: u32) {
        let rest = &self.flight[self.flight_done..];
        let e = opcode::Send::new(types::Fd(self.fd), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(Ring::user_data(slot, TAG_SEND));
        self.outstanding += 1;
        ring.push(e);
    }

    /// A send completion; true when the slot can be freed.
    pub(super) fn on_send(&mut self, ring: &Ring, slot: u32, res: i32) -> bool {
        self.outstanding -= 1;
        if res < 0 {
            self.send_error = Some(-res);
            self.sending = false;
            self.flight.clear();
            self.flight_done = 0;
        } else {
            self.flight_done += res as usize;
            if self.flight_done < self.flight.len() {
                self.push_send(ring, slot);
            } else {
                self.sending = false;
                self.flight.clear();
                self.flight_done = 0;
                self.start_send(ring, slot);
            }
        }
        if self.dropped && !self.sending {
            self.close();
        }
        if let Some(w) = self.writer.take() {
            w.wake();
        }
        self.dropped && self.outstanding == 0
    }
}

/// A connected TCP socket served by this executor's ring.
pub struct TcpStream {
    fd: RawFd,
    slot: u32,
    state: Rc<RefCell<StreamState>>,
}

impl TcpStream {
    /// Takes over a connected socket and starts receiving on it. Left
    /// blocking: io_uring answers EAGAIN rather than waiting on O_NONBLOCK
    /// files, and never blocks the thread itself.
    pub fn from_fd(fd: RawFd) -> TcpStream {
        let state = Rc::new(RefCell::new(StreamState {
            fd,
            input: Vec::new(),
            read_at: 0,
            eof: false,
            recv_error: None,
            recv_armed: false,
            recv_paused: false,
            reader: None,
            queued: Vec::new(),
            flight: Vec::new(),
            flight_done: 0,
            sending: false,
            send_error: None,
            writer: None,
            outstanding: 0,
            dropped: false,
            closed: false,
        }));
        let slot = with(|e| {
            let slot = e.ring.add_slot(SlotKind::Stream(state.clone()));
            state.borrow_mut().arm(&e.ring, slot);
            slot
        });
        TcpStream { fd, slot, state }
    }

    /// Connects to `addr`, giving up after `timeout`.
    pub async fn connect_timeout(
        addr: SocketAddr,
        timeout: std::time::Duration,
    ) -> io::Result<TcpStream> {
        match super::timeout(timeout, Self::connect(addr)).await {
            Some(r) => r,
            None => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
    }

    pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        use socket2::{Domain, SockAddr, Socket, Type};
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        s.set_cloexec(true)?;
        let sa = Box::new(SockAddr::from(addr));
        let e = opcode::Connect::new(types::Fd(s.as_raw_fd()), sa.as_ptr(), sa.len()).build();
        // Dropped mid-connect (a timeout), the socket closes only after the
        // queued connect has reached the kernel.
        let mut guard = SubmitBeforeClose(Some(s));
        let res = Op::start(e, Some(sa)).await.0;
        let Some(s) = guard.0.take() else {
            return Err(io::Error::other("connect lost its socket"));
        };
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        Ok(TcpStream::from_fd(s.into_raw_fd()))
    }

    fn std(&self) -> std::mem::ManuallyDrop<std::net::TcpStream> {
        // SAFETY: a borrowed view of our fd, never closed through it.
        std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(self.fd) })
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.std().set_nodelay(on)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.std().peer_addr()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std().local_addr()
    }

    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.std().shutdown(how)
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let (free, recv_armed) = {
            let mut s = self.state.borrow_mut();
            s.dropped = true;
            s.reader = None;
            s.writer = None;
            // What was written still goes out (a reply written just before
            // the stream is dropped); the socket closes after it — or after
            // LINGER, if the peer stops reading.
            if !s.sending {
                s.close();
            }
            (s.outstanding == 0, s.recv_armed)
        };
        if !free && !self.state.borrow().closed {
            let state = self.state.clone();
            let _ = super::executor::try_with(|_| {
                super::spawn(async move {
                    super::sleep(LINGER).await;
                    let s = state.borrow();
                    if !s.closed {
                        // SAFETY: our fd, still open: the pending send
                        // fails, and its completion closes the socket.
                        unsafe { libc::shutdown(s.fd, libc::SHUT_RDWR) };
                    }
                });
            });
        }
        let _ = super::executor::try_with(|e| {
            if free {
                e.ring.free_slot(self.slot);
            } else if recv_armed {
                e.ring
                    .cancel(Ring::user_data(self.slot, super::ring::TAG_RECV));
            }
        });
    }
}

impl futures::AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut s = this.state.borrow_mut();
        let unread = s.unread();
        if unread > 0 {
            let n = unread.min(buf.len());
            let at = s.read_at;
            buf[..n].copy_from_slice(&s.input[at..at + n]);
            s.read_at += n;
            if s.read_at == s.input.len() {
                s.input.clear();
                s.read_at = 0;
                if s.input.capacity() > 1 << 20 {
                    s.input = Vec::new();
                }
            } else if s.read_at >= 64 * 1024 {
                // A reader that never catches up must not keep every byte
                // it has read.
                let at = s.read_at;
                s.input.drain(..at);
                s.read_at = 0;
            }
            if s.recv_paused && !s.recv_armed && s.unread() < RECV_LIMIT {
                with(|e| s.arm(&e.ring, this.slot));
            }
            return Poll::Ready(Ok(n));
        }
        if let Some(e) = s.recv_error {
            return Poll::Ready(Err(io::Error::from_raw_os_error(e)));
        }
        if s.eof {
            return Poll::Ready(Ok(0));
        }
        if !s.recv_armed {
            with(|e| s.arm(&e.ring, this.slot));
        }
        s.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl futures::AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut s = this.state.borrow_mut();
        if let Some(e) = s.send_error {
            return Poll::Ready(Err(io::Error::from_raw_os_error(e)));
        }
        let buffered = s.queued.len() + (s.flight.len() - s.flight_done);
        if buffered >= SEND_LIMIT {
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(SEND_LIMIT - buffered);
        s.queued.extend_from_slice(&buf[..n]);
        with(|e| s.start_send(&e.ring, this.slot));
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.state.borrow_mut();
        if let Some(e) = s.send_error {
            return Poll::Ready(Err(io::Error::from_raw_os_error(e)));
        }
        if s.sending || !s.queued.is_empty() {
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut *this).poll_flush(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => {
                let _ = this.shutdown(std::net::Shutdown::Write);
                Poll::Ready(Ok(()))
            }
        }
    }
}

pub(super) struct ListenState {
    accepted: std::collections::VecDeque<Result<RawFd, i32>>,
    armed: bool,
    dropped: bool,
    waker: Option<Waker>,
}

impl ListenState {
    /// An accept completion; true when the slot can be freed.
    pub(super) fn on_accept(&mut self, res: i32, more: bool) -> bool {
        if self.dropped {
            if res >= 0 {
                // SAFETY: a connection accepted for a listener now gone.
                unsafe { libc::close(res) };
            }
        } else if res >= 0 {
            self.accepted.push_back(Ok(res));
        } else if res != -libc::ECANCELED {
            self.accepted.push_back(Err(-res));
        }
        if !more {
            self.armed = false;
        }
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        self.dropped && !self.armed
    }
}

/// A listening socket whose connections arrive by multishot accept.
pub struct TcpListener {
    fd: RawFd,
    slot: u32,
    state: Rc<RefCell<ListenState>>,
}

impl TcpListener {
    /// Takes over a bound, listening socket.
    pub fn from_fd(fd: RawFd) -> TcpListener {
        let state = Rc::new(RefCell::new(ListenState {
            accepted: Default::default(),
            armed: false,
            dropped: false,
            waker: None,
        }));
        let slot = with(|e| e.ring.add_slot(SlotKind::Listener(state.clone())));
        TcpListener { fd, slot, state }
    }

    /// Binds `addr` exclusively (no SO_REUSEPORT).
    pub fn bind_exclusive(addr: SocketAddr) -> io::Result<TcpListener> {
        let l = std::net::TcpListener::bind(addr)?;
        Ok(TcpListener::from_fd(l.into_raw_fd()))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        // SAFETY: a borrowed view of our fd, never closed through it.
        let l = std::mem::ManuallyDrop::new(unsafe { std::net::TcpListener::from_raw_fd(self.fd) });
        l.local_addr()
    }

    pub async fn accept(&self) -> io::Result<TcpStream> {
        let fd = std::future::poll_fn(|cx| {
            let mut s = self.state.borrow_mut();
            if let Some(r) = s.accepted.pop_front() {
                return Poll::Ready(r);
            }
            if !s.armed {
                s.armed = true;
                let e = opcode::AcceptMulti::new(types::Fd(self.fd))
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
                    .user_data(Ring::user_data(self.slot, TAG_ACCEPT));
                with(|x| x.ring.push(e));
            }
            s.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
        .map_err(io::Error::from_raw_os_error)?;
        Ok(TcpStream::from_fd(fd))
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let armed = {
            let mut s = self.state.borrow_mut();
            s.dropped = true;
            s.waker = None;
            for fd in s.accepted.drain(..).flatten() {
                // SAFETY: accepted connections nobody will serve.
                unsafe { libc::close(fd) };
            }
            s.armed
        };
        let _ = super::executor::try_with(|e| {
            if armed {
                e.ring.cancel(Ring::user_data(self.slot, TAG_ACCEPT));
            } else {
                e.ring.free_slot(self.slot);
            }
            e.ring.submit_queued();
        });
        // SAFETY: our listening socket; nothing queued names it any more.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
            libc::close(self.fd);
        }
    }
}

/// Owns a socket that a queued operation names: on drop, what is queued
/// reaches the kernel before the socket is closed.
struct SubmitBeforeClose(Option<socket2::Socket>);

impl Drop for SubmitBeforeClose {
    fn drop(&mut self) {
        if self.0.is_some() {
            let _ = super::executor::try_with(|e| e.ring.submit_queued());
        }
    }
}

/// A one-shot operation on the ring: resolves to (result, flags).
pub(super) struct Op {
    slot: Option<u32>,
}

impl Op {
    pub(super) fn start(
        entry: io_uring::squeue::Entry,
        keep: Option<Box<dyn std::any::Any>>,
    ) -> Op {
        Op {
            slot: Some(with(|e| e.ring.start(entry, keep))),
        }
    }
}

impl std::future::Future for Op {
    type Output = (i32, u32);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(i32, u32)> {
        let Some(slot) = self.slot else {
            return Poll::Ready((-libc::ECANCELED, 0));
        };
        match with(|e| e.ring.poll_oneshot(slot, cx.waker())) {
            Some(r) => {
                self.slot = None;
                Poll::Ready(r)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let _ = super::executor::try_with(|e| e.ring.abandon(slot));
        }
    }
}
