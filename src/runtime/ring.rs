//! One io_uring ring per executor, and the operations on it.
//!
//! Operations are queued into the submission ring as tasks ask for them
//! and reach the kernel together at the executor's next `io_uring_enter`.
//! Every operation has a slot here that owns what the kernel may still
//! touch (a send's bytes, a connect's address, a socket's state), so a
//! future dropped mid-operation never frees memory the kernel writes to:
//! the slot lives until the completion arrives.
//!
//! Sockets receive with multishot `recv` into a ring of provided buffers:
//! one armed request per connection delivers every arrival without a
//! syscall; the bytes are copied out at once and the buffer handed back.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::task::Waker;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::net::{ListenState, StreamState};

/// Provided receive buffers per executor, and their size.
const BUFFERS: u16 = 256;
const BUFFER_SIZE: usize = 16 * 1024;
const BUFFER_GROUP: u16 = 0;

/// What a completion's `user_data` names: a slot and what it was for.
const TAG_BITS: u64 = 8;
pub(super) const TAG_ONESHOT: u64 = 1;
pub(super) const TAG_RECV: u64 = 2;
pub(super) const TAG_SEND: u64 = 3;
pub(super) const TAG_ACCEPT: u64 = 4;
const TAG_EVENTFD: u64 = 5;
const TAG_IGNORE: u64 = 6;

pub(super) enum SlotKind {
    Free,
    Oneshot {
        result: Option<(i32, u32)>,
        waker: Option<Waker>,
        /// Memory the kernel reads or writes until completion.
        _keep: Option<Box<dyn Any>>,
        abandoned: bool,
    },
    Stream(Rc<RefCell<StreamState>>),
    Listener(Rc<RefCell<ListenState>>),
}

/// The provided-buffer ring shared with the kernel.
struct Buffers {
    entries: *mut types::BufRingEntry,
    memory: Vec<u8>,
    tail: Cell<u16>,
}

impl Buffers {
    fn give_back(&self, bid: u16) {
        let tail = self.tail.get();
        // SAFETY: `entries` maps BUFFERS entries; the index is masked into
        // range, and `bid` names a buffer inside `memory`.
        unsafe {
            let e = &mut *self.entries.add((tail & (BUFFERS - 1)) as usize);
            e.set_addr(self.memory.as_ptr().add(bid as usize * BUFFER_SIZE) as u64);
            e.set_len(BUFFER_SIZE as u32);
            e.set_bid(bid);
        }
        self.tail.set(tail.wrapping_add(1));
    }

    /// Makes the buffers handed back visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field lives in the mapped ring; the kernel reads
        // it with acquire semantics.
        unsafe {
            let tail =
                types::BufRingEntry::tail(self.entries) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.tail.get(), std::sync::atomic::Ordering::Release);
        }
    }

    fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * BUFFER_SIZE;
        &self.memory[start..start + len.min(BUFFER_SIZE)]
    }
}

pub(super) struct Ring {
    uring: RefCell<IoUring>,
    slots: RefCell<Vec<SlotKind>>,
    free: RefCell<Vec<u32>>,
    buffers: Buffers,
    eventfd: i32,
    eventfd_buf: Box<u64>,
    completions: RefCell<Vec<cqueue::Entry>>,
}

impl Ring {
    pub(super) fn new(eventfd: i32) -> io::Result<Ring> {
        let uring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_defer_taskrun()
            .setup_cqsize(16 * 1024)
            .build(4096)?;
        let bytes = BUFFERS as usize * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping, checked below; page aligned
        // as the kernel requires of a buffer ring.
        let entries = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        if entries == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let buffers = Buffers {
            entries: entries as *mut types::BufRingEntry,
            memory: vec![0u8; BUFFERS as usize * BUFFER_SIZE],
            tail: Cell::new(0),
        };
        // SAFETY: the mapping holds BUFFERS entries and outlives the ring
        // (the ring is leaked at exit, the mapping never unmapped).
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                entries as u64,
                BUFFERS,
                BUFFER_GROUP,
                0,
            )?;
        }
        for bid in 0..BUFFERS {
            buffers.give_back(bid);
        }
        buffers.publish();
        let ring = Ring {
            uring: RefCell::new(uring),
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            buffers,
            eventfd,
            eventfd_buf: Box::new(0),
            completions: RefCell::new(Vec::with_capacity(1024)),
        };
        ring.arm_eventfd();
        Ok(ring)
    }

    fn arm_eventfd(&self) {
        let e = opcode::Read::new(
            types::Fd(self.eventfd),
            &*self.eventfd_buf as *const u64 as *mut u8,
            8,
        )
        .build()
        .user_data(TAG_EVENTFD);
        self.push(e);
    }

    /// Queues `entry`; it reaches the kernel at the next enter (or now, if
    /// the submission ring is full).
    pub(super) fn push(&self, entry: squeue::Entry) {
        let mut uring = self.uring.borrow_mut();
        loop {
            // SAFETY: every entry's pointers are owned by a slot (or the
            // ring itself) until its completion arrives.
            if unsafe { uring.submission().push(&entry) }.is_ok() {
                return;
            }
            if let Err(e) = uring.submit() {
                tracing::warn!("io_uring submit failed: {e}");
            }
        }
    }

    /// Hands what is queued to the kernel now, without waiting. Called
    /// before an fd is closed: a queued operation names the fd by number,
    /// and once closed the number may be another file's.
    pub(super) fn submit_queued(&self) {
        if let Err(e) = self.uring.borrow().submit() {
            tracing::warn!("io_uring submit failed: {e}");
        }
    }

    pub(super) fn add_slot(&self, kind: SlotKind) -> u32 {
        let mut slots = self.slots.borrow_mut();
        match self.free.borrow_mut().pop() {
            Some(i) => {
                slots[i as usize] = kind;
                i
            }
            None => {
                slots.push(kind);
                (slots.len() - 1) as u32
            }
        }
    }

    pub(super) fn free_slot(&self, index: u32) {
        let old = std::mem::replace(&mut self.slots.borrow_mut()[index as usize], SlotKind::Free);
        self.free.borrow_mut().push(index);
        drop(old);
    }

    pub(super) fn user_data(slot: u32, tag: u64) -> u64 {
        ((slot as u64) << TAG_BITS) | tag
    }

    /// Asks the kernel to cancel the operation with `user_data`.
    pub(super) fn cancel(&self, user_data: u64) {
        self.push(
            opcode::AsyncCancel::new(user_data)
                .build()
                .user_data(TAG_IGNORE),
        );
    }

    /// Starts a one-shot operation; `keep` must own whatever `entry`
    /// points into.
    pub(super) fn start(&self, entry: squeue::Entry, keep: Option<Box<dyn Any>>) -> u32 {
        let slot = self.add_slot(SlotKind::Oneshot {
            result: None,
            waker: None,
            _keep: keep,
            abandoned: false,
        });
        self.push(entry.user_data(Self::user_data(slot, TAG_ONESHOT)));
        slot
    }

    /// The result of one-shot `slot` if it completed (then the slot is
    /// freed), else remembers `waker`.
    pub(super) fn poll_oneshot(&self, slot: u32, waker: &Waker) -> Option<(i32, u32)> {
        let done = {
            let mut slots = self.slots.borrow_mut();
            match &mut slots[slot as usize] {
                SlotKind::Oneshot {
                    result: Some(r), ..
                } => Some(*r),
                SlotKind::Oneshot { waker: w, .. } => {
                    *w = Some(waker.clone());
                    None
                }
                _ => Some((-libc::ECANCELED, 0)),
            }
        };
        if done.is_some() {
            self.free_slot(slot);
        }
        done
    }

    /// A one-shot future was dropped before its completion: cancel it; the
    /// slot is freed when the completion arrives.
    pub(super) fn abandon(&self, slot: u32) {
        let finished = {
            let mut slots = self.slots.borrow_mut();
            match &mut slots[slot as usize] {
                SlotKind::Oneshot {
                    result: Some(_), ..
                } => true,
                SlotKind::Oneshot {
                    abandoned, waker, ..
                } => {
                    *abandoned = true;
                    *waker = None;
                    false
                }
                _ => false,
            }
        };
        if finished {
            self.free_slot(slot);
        } else {
            self.cancel(Self::user_data(slot, TAG_ONESHOT));
        }
    }

    pub(super) fn slot(&self, index: u32) -> std::cell::RefMut<'_, SlotKind> {
        std::cell::RefMut::map(self.slots.borrow_mut(), |s| &mut s[index as usize])
    }

    /// Submits what was queued and handles what completed; with
    /// `Some(wait)`, first waits for at least one completion (at most
    /// `wait`, when given).
    pub(super) fn submit_and_reap(&self, wait: Option<Option<Duration>>) -> io::Result<()> {
        {
            let mut uring = self.uring.borrow_mut();
            let n = uring.submission().len();
            let submitter = uring.submitter();
            let r = match wait {
                None => {
                    // SAFETY: a plain enter; GETEVENTS runs the deferred
                    // completions without waiting for any.
                    unsafe {
                        submitter.enter::<libc::sigset_t>(
                            n as u32,
                            0,
                            io_uring::EnterFlags::GETEVENTS.bits(),
                            None,
                        )
                    }
                }
                Some(None) => submitter.submit_and_wait(1),
                Some(Some(d)) => {
                    let ts = types::Timespec::from(d);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    submitter.submit_with_args(1, &args)
                }
            };
            if let Err(e) = r {
                match e.raw_os_error() {
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                    | Some(libc::EAGAIN) => {}
                    _ => return Err(e),
                }
            }
        }
        let mut batch = std::mem::take(&mut *self.completions.borrow_mut());
        batch.clear();
        batch.extend(self.uring.borrow_mut().completion());
        for c in &batch {
            self.complete(c.user_data(), c.result(), c.flags());
        }
        self.buffers.publish();
        *self.completions.borrow_mut() = batch;
        Ok(())
    }

    fn complete(&self, user_data: u64, res: i32, flags: u32) {
        let tag = user_data & ((1 << TAG_BITS) - 1);
        let slot = (user_data >> TAG_BITS) as u32;
        match tag {
            TAG_EVENTFD => self.arm_eventfd(),
            TAG_ONESHOT => {
                let free = {
                    let mut slots = self.slots.borrow_mut();
                    match &mut slots[slot as usize] {
                        SlotKind::Oneshot {
                            result,
                            waker,
                            abandoned,
                            ..
                        } => {
                            *result = Some((res, flags));
                            if let Some(w) = waker.take() {
                                w.wake();
                            }
                            *abandoned
                        }
                        _ => false,
                    }
                };
                if free {
                    self.free_slot(slot);
                }
            }
            TAG_RECV | TAG_SEND => {
                let state = match &*self.slot(slot) {
                    SlotKind::Stream(s) => s.clone(),
                    _ => {
                        if let Some(bid) = cqueue::buffer_select(flags) {
                            self.buffers.give_back(bid);
                        }
                        return;
                    }
                };
                let bid = cqueue::buffer_select(flags);
                let finished = if tag == TAG_RECV {
                    let data = bid
                        .filter(|_| res > 0)
                        .map(|b| self.buffers.bytes(b, res as usize));
                    let more = cqueue::more(flags);
                    state.borrow_mut().on_recv(self, slot, res, data, more)
                } else {
                    state.borrow_mut().on_send(self, slot, res)
                };
                // Copied out (or empty): the buffer goes back at once.
                if let Some(b) = bid {
                    self.buffers.give_back(b);
                }
                if finished {
                    self.free_slot(slot);
                }
            }
            TAG_ACCEPT => {
                let state = match &*self.slot(slot) {
                    SlotKind::Listener(s) => s.clone(),
                    _ => return,
                };
                let finished = state.borrow_mut().on_accept(res, cqueue::more(flags));
                if finished {
                    self.free_slot(slot);
                }
            }
            _ => {}
        }
    }

    pub(super) fn recv_entry(fd: i32, slot: u32) -> squeue::Entry {
        opcode::RecvMulti::new(types::Fd(fd), BUFFER_GROUP)
            .build()
            .user_data(Self::user_data(slot, TAG_RECV))
    }
}
