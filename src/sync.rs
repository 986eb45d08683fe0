//! The synchronisation shim: every atomic, cell, thread and queue the crate uses comes from
//! here, so the same code compiles against `std` or, with `RUSTFLAGS="--cfg loom"`, against
//! [loom](https://docs.rs/loom), which model-checks it.
//!
//! Differences under loom, and why:
//! - loom does not model time, so a timed park ([`park_until`]) yields once and then reports
//!   that its deadline passed. Every timed wait therefore explores its timeout path, while the
//!   untimed paths park for real.
//! - spinning ([`Spin`]) is skipped: a spin loop adds nothing to what loom explores but states.
//! - `crossbeam_queue::SegQueue` and `atomic_waker::AtomicWaker` use plain atomics that loom
//!   cannot see, so loom-visible stand-ins replace them (a loom `Mutex<VecDeque>` and
//!   `loom::future::AtomicWaker`).

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering,
};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;

#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, poison or not. The crate's critical sections are a few field updates that
/// leave their data consistent at every step and call no foreign code, so a poisoned lock
/// (which they cannot cause) would still guard consistent data.
#[inline]
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(not(loom))]
pub(crate) use atomic_waker::AtomicWaker;
#[cfg(loom)]
pub(crate) use loom::future::AtomicWaker;

/// Registers `waker` in `atomic` (the two `AtomicWaker`s spell it differently).
#[inline]
pub(crate) fn register_waker(atomic: &AtomicWaker, waker: &std::task::Waker) {
    #[cfg(not(loom))]
    atomic.register(waker);
    #[cfg(loom)]
    atomic.register_by_ref(waker);
}

/// `std::cell::UnsafeCell` with loom's `with`/`with_mut` interface, so loom can check every
/// access to the cell for data races.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(data: T) -> Self {
        Self(std::cell::UnsafeCell::new(data))
    }

    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// Threads: handles, identity, parking and spawning.
pub(crate) mod thread {
    #[cfg(not(loom))]
    pub(crate) use std::thread::{current, park, Builder, Thread, ThreadId};

    #[cfg(loom)]
    pub(crate) use loom::thread::{current, park, Builder, Thread, ThreadId};

    #[cfg(not(loom))]
    std::thread_local! {
        static CURRENT_ID: ThreadId = current().id();
    }

    /// The calling thread's id, cached per thread so the deadlock check costs a TLS read
    /// instead of a reference-count round trip on the thread handle.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn current_id() -> ThreadId {
        CURRENT_ID.with(|id| *id)
    }

    /// The calling thread's id.
    #[cfg(loom)]
    pub(crate) fn current_id() -> ThreadId {
        current().id()
    }
}

/// Parks the calling thread until it is unparked, or until `deadline` if there is one.
/// Returns `true` when the deadline has passed. Like `std::thread::park`, it may return
/// spuriously: callers re-check their condition.
#[cfg(not(loom))]
pub(crate) fn park_until(deadline: Option<std::time::Instant>) -> bool {
    match deadline {
        None => {
            thread::park();
            false
        }
        Some(deadline) => {
            let now = std::time::Instant::now();
            if now >= deadline {
                return true;
            }
            std::thread::park_timeout(deadline - now);
            std::time::Instant::now() >= deadline
        }
    }
}

/// Under loom a timed park yields once and reports a timeout (loom has no clock), so the
/// models explore the timeout path of every timed wait; an untimed park parks for real.
#[cfg(loom)]
pub(crate) fn park_until(deadline: Option<std::time::Instant>) -> bool {
    match deadline {
        None => {
            thread::park();
            false
        }
        Some(_) => {
            loom::thread::yield_now();
            true
        }
    }
}

/// Whether `deadline` has passed (by the real clock, also under loom: there, the timed park
/// itself reports the timeout).
pub(crate) fn deadline_passed(deadline: Option<std::time::Instant>) -> bool {
    match deadline {
        None => false,
        Some(d) => std::time::Instant::now() >= d,
    }
}

/// A bounded spin phase before parking: `crossbeam_utils::Backoff`, which spins in doubling
/// steps and then yields. Under loom it is empty (completed from the start).
pub(crate) struct Spin {
    #[cfg(not(loom))]
    backoff: crossbeam_utils::Backoff,
}

impl Spin {
    #[inline]
    pub(crate) fn new() -> Self {
        Spin {
            #[cfg(not(loom))]
            backoff: crossbeam_utils::Backoff::new(),
        }
    }

    /// Whether the spin phase is over and the caller should park.
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        #[cfg(not(loom))]
        {
            self.backoff.is_completed()
        }
        #[cfg(loom)]
        {
            true
        }
    }

    /// One step of the spin phase.
    #[inline]
    pub(crate) fn snooze(&self) {
        #[cfg(not(loom))]
        self.backoff.snooze();
    }
}

/// The action queue's FIFO: `crossbeam_queue::SegQueue` (lock-free, unbounded), or under
/// loom a loom-visible `Mutex<VecDeque>` with the same interface.
#[cfg(not(loom))]
pub(crate) use crossbeam_queue::SegQueue;

#[cfg(loom)]
pub(crate) struct SegQueue<T>(loom::sync::Mutex<std::collections::VecDeque<T>>);

#[cfg(loom)]
impl<T> SegQueue<T> {
    pub(crate) fn new() -> Self {
        SegQueue(loom::sync::Mutex::new(std::collections::VecDeque::new()))
    }

    pub(crate) fn push(&self, value: T) {
        self.0.lock().unwrap().push_back(value);
    }

    pub(crate) fn pop(&self) -> Option<T> {
        self.0.lock().unwrap().pop_front()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.lock().unwrap().is_empty()
    }
}

/// A parking spot that outlives any one thread: the action queue's worker incarnations park
/// on it in turn, and producers unpark whichever is there, without knowing its `Thread`.
/// `crossbeam_utils::sync::Parker`, or under loom a `Mutex<bool>` + `Condvar` stand-in whose
/// timed park yields once and reports a timeout.
#[cfg(not(loom))]
pub(crate) use crossbeam_utils::sync::{Parker, Unparker};

#[cfg(loom)]
type ParkSpot = Arc<(loom::sync::Mutex<bool>, loom::sync::Condvar)>;

#[cfg(loom)]
pub(crate) struct Parker(ParkSpot);

#[cfg(loom)]
#[derive(Clone)]
pub(crate) struct Unparker(ParkSpot);

#[cfg(loom)]
impl Parker {
    pub(crate) fn new() -> Self {
        Parker(Arc::new((
            loom::sync::Mutex::new(false),
            loom::sync::Condvar::new(),
        )))
    }

    pub(crate) fn unparker(&self) -> Unparker {
        Unparker(self.0.clone())
    }

    pub(crate) fn park(&self) {
        let mut token = self.0 .0.lock().unwrap();
        while !*token {
            token = self.0 .1.wait(token).unwrap();
        }
        *token = false;
    }

    pub(crate) fn park_deadline(&self, _deadline: std::time::Instant) {
        let mut token = self.0 .0.lock().unwrap();
        if *token {
            *token = false;
            return;
        }
        drop(token);
        loom::thread::yield_now();
        *self.0 .0.lock().unwrap() = false;
    }
}

#[cfg(loom)]
impl Unparker {
    pub(crate) fn unpark(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_one();
    }
}

/// Parks on `parker` until unparked or until `deadline`; returns `true` when the deadline has
/// passed. Under loom it yields once and reports a timeout unless a token was already there.
#[cfg(not(loom))]
pub(crate) fn park_on(parker: &Parker, deadline: std::time::Instant) -> bool {
    if std::time::Instant::now() >= deadline {
        return true;
    }
    parker.park_deadline(deadline);
    std::time::Instant::now() >= deadline
}

/// Under loom: yields once and reports a timeout (loom has no clock).
#[cfg(loom)]
pub(crate) fn park_on(parker: &Parker, deadline: std::time::Instant) -> bool {
    parker.park_deadline(deadline);
    true
}

/// A [`Parker`] that successive worker threads use in turn, and its [`Unparker`] for
/// producers.
pub(crate) struct UnparkerCell {
    parker: std::cell::UnsafeCell<Parker>,
    unparker: Unparker,
}

// SAFETY: the `Unparker` is `Send + Sync`. The `Parker` (only `Send`) is used by one thread
// at a time: `parker`'s contract gives it to the single worker incarnation that owns the
// queue's RUNNING/PARKED state, and ownership passes between incarnations through the
// state's Release/Acquire read-modify-writes.
unsafe impl Sync for UnparkerCell {}
// SAFETY: both halves are `Send`.
unsafe impl Send for UnparkerCell {}

impl UnparkerCell {
    pub(crate) fn new() -> Self {
        let parker = Parker::new();
        let unparker = parker.unparker().clone();
        UnparkerCell {
            parker: std::cell::UnsafeCell::new(parker),
            unparker,
        }
    }

    /// The parker.
    ///
    /// # Safety
    ///
    /// Only one thread at a time may hold the returned reference: the caller must be the
    /// queue's current worker incarnation, and drop it before its retiring CAS.
    pub(crate) unsafe fn parker(&self) -> &Parker {
        // SAFETY: exclusive use is the caller's obligation (above); the cell lives as long as
        // `self`.
        unsafe { &*self.parker.get() }
    }

    /// Wakes the parked worker, or leaves a token that makes its next park return at once.
    pub(crate) fn unpark(&self) {
        self.unparker.unpark();
    }
}
