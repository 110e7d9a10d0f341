//! The per-core executor: a run queue of local tasks (futures that are not
//! `Send`), timers, and one io_uring ring ([`super::ring`]) it sleeps in.
//!
//! One loop turn runs the tasks that are ready, fires due timers, then
//! enters the kernel once: that single `io_uring_enter` submits every
//! operation the tasks queued (the replies of all connections served this
//! turn) and collects what completed. It waits only when nothing is ready.
//!
//! Wakers are `Send` (a reply from another core completes a oneshot there):
//! a wake on the owning thread queues the task directly; one from another
//! thread goes through a locked list and, only if the executor sleeps, an
//! eventfd write that ends its wait. Futures stay in this thread's slab and
//! are dropped here, whichever thread holds their wakers.

use std::cell::{Cell, RefCell};
use std::collections::{BinaryHeap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::ring::Ring;

type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

struct Slot {
    generation: u32,
    future: Option<BoxFuture>,
    waker: Option<Waker>,
    queued: bool,
    live: bool,
}

/// What other threads share with an executor: wakes for its tasks.
pub(super) struct Remote {
    owner: usize,
    pending: Mutex<Vec<(u32, u32)>>,
    sleeping: AtomicBool,
    eventfd: i32,
}

impl Remote {
    fn wake(&self, slot: u32, generation: u32) {
        if let Ok(mut p) = self.pending.lock() {
            p.push((slot, generation));
        }
        if self.sleeping.load(Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a local to an eventfd we own
            // (closed only when the process exits).
            unsafe { libc::write(self.eventfd, &one as *const u64 as *const _, 8) };
        }
    }
}

struct TaskWaker {
    remote: Arc<Remote>,
    slot: u32,
    generation: u32,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let here = CURRENT_ID.with(|c| c.get());
        if here == self.remote.owner {
            with(|e| e.schedule(self.slot, self.generation));
        } else {
            self.remote.wake(self.slot, self.generation);
        }
    }
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static CURRENT: RefCell<Option<Rc<Executor>>> = const { RefCell::new(None) };
    static CURRENT_ID: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` with this thread's executor. Panics outside one: every caller
/// is code that runs on a core (a task), never a plain thread.
pub(super) fn with<R>(f: impl FnOnce(&Executor) -> R) -> R {
    CURRENT.with(|c| {
        let e = c
            .borrow()
            .clone()
            .expect("keel runtime call outside an executor");
        f(&e)
    })
}

pub(super) struct Executor {
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    ready: RefCell<VecDeque<u32>>,
    remote: Arc<Remote>,
    /// Never dropped: the kernel may still write into buffers of
    /// operations being cancelled when the executor ends (or unwinds), so
    /// the ring and all it owns are left to the process's exit.
    pub(super) ring: std::mem::ManuallyDrop<Ring>,
    pub(super) timers: Timers,
    turn_started: Cell<Instant>,
}

impl Executor {
    fn schedule(&self, slot: u32, generation: u32) {
        let mut slots = self.slots.borrow_mut();
        if let Some(s) = slots.get_mut(slot as usize) {
            if s.live && s.generation == generation && !s.queued {
                s.queued = true;
                self.ready.borrow_mut().push_back(slot);
            }
        }
    }

    pub(super) fn spawn(&self, future: BoxFuture) {
        let mut slots = self.slots.borrow_mut();
        let index = match self.free.borrow_mut().pop() {
            Some(i) => i,
            None => {
                slots.push(Slot {
                    generation: 0,
                    future: None,
                    waker: None,
                    queued: false,
                    live: false,
                });
                (slots.len() - 1) as u32
            }
        };
        let s = &mut slots[index as usize];
        s.generation = s.generation.wrapping_add(1);
        s.live = true;
        s.queued = true;
        s.future = Some(future);
        s.waker = Some(Waker::from(Arc::new(TaskWaker {
            remote: self.remote.clone(),
            slot: index,
            generation: s.generation,
        })));
        self.ready.borrow_mut().push_back(index);
    }

    /// Polls one ready task; false when none is ready.
    fn run_one(&self) -> bool {
        let Some(index) = self.ready.borrow_mut().pop_front() else {
            return false;
        };
        let (future, waker) = {
            let mut slots = self.slots.borrow_mut();
            let s = &mut slots[index as usize];
            s.queued = false;
            match (s.future.take(), s.waker.take()) {
                (Some(f), Some(w)) => (f, w),
                _ => return true,
            }
        };
        let mut future = future;
        let done = future
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready();
        let mut slots = self.slots.borrow_mut();
        let s = &mut slots[index as usize];
        if done {
            s.live = false;
            s.queued = false;
            drop(slots);
            self.free.borrow_mut().push(index);
            // Dropped after the slab is released: its drop may spawn or wake.
            drop(future);
            drop(waker);
        } else {
            s.future = Some(future);
            s.waker = Some(waker);
        }
        true
    }

    fn take_remote(&self) {
        let woken = match self.remote.pending.lock() {
            Ok(mut p) if !p.is_empty() => std::mem::take(&mut *p),
            _ => return,
        };
        for (slot, generation) in woken {
            self.schedule(slot, generation);
        }
    }

    fn remote_pending(&self) -> bool {
        self.remote.pending.lock().is_ok_and(|p| !p.is_empty())
    }

    /// Time the current turn has run tasks.
    pub(super) fn turn_elapsed(&self) -> Duration {
        self.turn_started.get().elapsed()
    }
}

/// Runs `main` on a new executor on this thread until it completes (other
/// tasks still pending are dropped with the executor).
pub fn block_on<F: Future<Output = ()> + 'static>(main: F) -> std::io::Result<()> {
    // SAFETY: eventfd(2) with valid flags; the result is checked.
    let eventfd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if eventfd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let ring = Ring::new(eventfd)?;
    let exec = Rc::new(Executor {
        slots: RefCell::new(Vec::new()),
        free: RefCell::new(Vec::new()),
        ready: RefCell::new(VecDeque::new()),
        remote: Arc::new(Remote {
            owner: id,
            pending: Mutex::new(Vec::new()),
            sleeping: AtomicBool::new(false),
            eventfd,
        }),
        ring: std::mem::ManuallyDrop::new(ring),
        timers: Timers::default(),
        turn_started: Cell::new(Instant::now()),
    });
    CURRENT.with(|c| *c.borrow_mut() = Some(exec.clone()));
    CURRENT_ID.with(|c| c.set(id));
    let done = Rc::new(Cell::new(false));
    let flag = done.clone();
    exec.spawn(Box::pin(async move {
        main.await;
        flag.set(true);
    }));
    let teardown = Teardown(exec.clone());
    let result = run(&exec, &done);
    // What the last turn queued (replies, closes) still reaches the kernel.
    let _ = exec.ring.submit_and_reap(None);
    drop(teardown);
    result
}

/// Ends an executor, on return or unwind: its tasks are dropped while it is
/// still current (their drops cancel operations on the ring), then it stops
/// being current.
struct Teardown(Rc<Executor>);

impl Drop for Teardown {
    fn drop(&mut self) {
        let tasks: Vec<BoxFuture> = match self.0.slots.try_borrow_mut() {
            Ok(mut slots) => slots.iter_mut().filter_map(|s| s.future.take()).collect(),
            Err(_) => Vec::new(),
        };
        drop(tasks);
        let _ = CURRENT.try_with(|c| c.borrow_mut().take());
        let _ = CURRENT_ID.try_with(|c| c.set(0));
    }
}

fn run(exec: &Executor, done: &Cell<bool>) -> std::io::Result<()> {
    loop {
        exec.turn_started.set(Instant::now());
        // Run what is ready now; tasks woken meanwhile wait for the next
        // turn, so I/O is collected between rounds.
        let n = exec.ready.borrow().len();
        for _ in 0..n {
            if !exec.run_one() {
                break;
            }
        }
        if done.get() {
            return Ok(());
        }
        exec.timers.fire(Instant::now());
        exec.take_remote();
        if !exec.ready.borrow().is_empty() {
            exec.ring.submit_and_reap(None)?;
        } else {
            exec.remote.sleeping.store(true, Ordering::SeqCst);
            if exec.remote_pending() {
                exec.remote.sleeping.store(false, Ordering::SeqCst);
                continue;
            }
            let wait = exec
                .timers
                .next()
                .map(|at| at.saturating_duration_since(Instant::now()));
            let r = exec.ring.submit_and_reap(Some(wait));
            exec.remote.sleeping.store(false, Ordering::SeqCst);
            r?;
        }
        exec.take_remote();
    }
}

/// Spawns a task on the current executor.
pub(super) fn spawn_boxed(future: BoxFuture) {
    with(|e| e.spawn(future));
}

/// Runs `f` with this thread's executor, if it has one.
pub(super) fn try_with<R>(f: impl FnOnce(&Executor) -> R) -> Option<R> {
    CURRENT
        .try_with(|c| c.borrow().clone())
        .ok()
        .flatten()
        .map(|e| f(&e))
}

/// The timers of one executor: a heap of deadlines and a slab of wakers.
#[derive(Default)]
pub(super) struct Timers {
    heap: RefCell<BinaryHeap<std::cmp::Reverse<(Instant, u32, u32)>>>,
    slots: RefCell<Vec<TimerSlot>>,
    free: RefCell<Vec<u32>>,
}

#[derive(Default)]
struct TimerSlot {
    generation: u32,
    live: bool,
    waker: Option<Waker>,
}

impl Timers {
    fn add(&self, at: Instant, waker: Waker) -> (u32, u32) {
        let mut slots = self.slots.borrow_mut();
        let index = match self.free.borrow_mut().pop() {
            Some(i) => i,
            None => {
                slots.push(TimerSlot::default());
                (slots.len() - 1) as u32
            }
        };
        let s = &mut slots[index as usize];
        s.generation = s.generation.wrapping_add(1);
        s.live = true;
        s.waker = Some(waker);
        self.heap
            .borrow_mut()
            .push(std::cmp::Reverse((at, index, s.generation)));
        (index, s.generation)
    }

    fn update(&self, (index, generation): (u32, u32), waker: &Waker) {
        if let Some(s) = self.slots.borrow_mut().get_mut(index as usize) {
            if s.live && s.generation == generation {
                match &s.waker {
                    Some(w) if w.will_wake(waker) => {}
                    _ => s.waker = Some(waker.clone()),
                }
            }
        }
    }

    fn remove(&self, (index, generation): (u32, u32)) {
        let mut slots = self.slots.borrow_mut();
        if let Some(s) = slots.get_mut(index as usize) {
            if s.live && s.generation == generation {
                s.live = false;
                s.waker = None;
                self.free.borrow_mut().push(index);
            }
        }
    }

    /// Wakes every timer due at `now`.
    fn fire(&self, now: Instant) {
        loop {
            let due = {
                let mut heap = self.heap.borrow_mut();
                match heap.peek() {
                    Some(std::cmp::Reverse((at, _, _))) if *at <= now => heap.pop(),
                    _ => None,
                }
            };
            let Some(std::cmp::Reverse((_, index, generation))) = due else {
                return;
            };
            let waker = {
                let mut slots = self.slots.borrow_mut();
                match slots.get_mut(index as usize) {
                    Some(s) if s.live && s.generation == generation => s.waker.take(),
                    _ => None,
                }
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    /// The earliest deadline of a live timer.
    fn next(&self) -> Option<Instant> {
        let mut heap = self.heap.borrow_mut();
        let slots = self.slots.borrow();
        while let Some(std::cmp::Reverse((at, index, generation))) = heap.peek().copied() {
            match slots.get(index as usize) {
                Some(s) if s.live && s.generation == generation => return Some(at),
                _ => {
                    heap.pop();
                }
            }
        }
        None
    }
}

/// A future that completes at a deadline.
pub struct Sleep {
    at: Instant,
    timer: Option<(u32, u32)>,
}

impl Sleep {
    pub fn until(at: Instant) -> Sleep {
        Sleep { at, timer: None }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            if let Some(t) = self.timer.take() {
                with(|e| e.timers.remove(t));
            }
            return Poll::Ready(());
        }
        let at = self.at;
        match self.timer {
            Some(t) => with(|e| e.timers.update(t, cx.waker())),
            None => self.timer = Some(with(|e| e.timers.add(at, cx.waker().clone()))),
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            // A Sleep dropped while its thread's executor is being torn down
            // has nothing left to remove.
            let _ = CURRENT.try_with(|c| {
                if let Some(e) = c.borrow().as_ref() {
                    e.timers.remove(t);
                }
            });
        }
    }
}

/// Gives other ready tasks a turn before continuing.
#[derive(Default)]
pub struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
