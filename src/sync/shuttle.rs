//! The shuttle backend of the shim (`RUSTFLAGS="--cfg shuttle"`):
//! [shuttle](https://docs.rs/shuttle)'s atomics, locks, threads and thread-locals, and
//! shuttle-visible stand-ins for what shuttle cannot see into. See the [parent module](super)
//! for the list of differences.
//!
//! Shuttle runs every thread of a test on one OS thread and switches between them only at
//! its own operations (an atomic access, a lock, a park, a yield, a spawn). A loop that
//! waits on state shuttle cannot see (a plain std atomic, as inside
//! `crossbeam_queue::SegQueue`, our `Fifo` or `atomic_waker::AtomicWaker`) is never
//! preempted, so it never sees the other side move and never ends. Hence the stand-ins
//! below: every wait in this backend waits on a shuttle primitive.

/// Shuttle models every atomic access as `SeqCst` (it does not explore weak-memory
/// behaviour: that is loom's job), so its `fence` is a no-op for `SeqCst`, which is correct
/// in that model: every access is already in one total order.
pub(crate) use shuttle::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering,
};
/// Shuttle's `Arc` is std's (its counts publish nothing shuttle needs to see).
pub(crate) use shuttle::sync::Arc;
pub(crate) use shuttle::sync::{Mutex, MutexGuard};

use std::collections::VecDeque;
use std::task::Waker;

/// `atomic_waker::AtomicWaker`'s stand-in: one waker behind a shuttle `Mutex`. (The real one
/// spins on a std atomic while a `wake` and a `register` overlap, which shuttle cannot
/// preempt.) Each call is one critical section, so a `wake` either takes the waker a
/// `register` stored, or comes before it; the waiter re-checks the promise's state after
/// registering, as with the real one.
pub(crate) struct AtomicWaker(Mutex<Option<Waker>>);

impl AtomicWaker {
    pub(crate) fn new() -> Self {
        AtomicWaker(Mutex::new(None))
    }

    /// Stores `waker` (a clone), unless the one stored would wake the same task.
    pub(crate) fn register(&self, waker: &Waker) {
        let replaced = {
            let mut slot = super::lock(&self.0);
            match &*slot {
                Some(stored) if stored.will_wake(waker) => None,
                _ => slot.replace(waker.clone()),
            }
        };
        // The old waker's drop is foreign code: outside the lock.
        drop(replaced);
    }

    /// Takes the stored waker out, if any.
    pub(crate) fn take(&self) -> Option<Waker> {
        super::lock(&self.0).take()
    }

    /// Wakes (and removes) the stored waker, if any; the wake runs outside the lock, since
    /// it is foreign code that may register again.
    pub(crate) fn wake(&self) {
        if let Some(waker) = self.take() {
            waker.wake();
        }
    }
}

/// Registers `waker` in `atomic` (the `AtomicWaker`s of the backends spell it differently).
#[inline]
pub(crate) fn register_waker(atomic: &AtomicWaker, waker: &Waker) {
    atomic.register(waker);
}

/// `std::cell::UnsafeCell` with loom's `with`/`with_mut` interface, as in the std backend
/// (shuttle does not check cell accesses for races).
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

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

/// Threads: handles, identity, parking and spawning. Shuttle's `Builder` takes a name and a
/// stack size (the size of the thread's coroutine stack) as std's does.
pub(crate) mod thread {
    pub(crate) use shuttle::thread::{current, park, Builder, Thread, ThreadId};

    /// The calling thread's id.
    pub(crate) fn current_id() -> ThreadId {
        current().id()
    }
}

/// One thread-local for [`thread_locals!`](super::thread_locals): `shuttle::thread_local!`,
/// whose thread-locals belong to shuttle's threads. It takes the `const { … }` initialiser
/// form as std's does (the value is made lazily all the same).
macro_rules! thread_local_one {
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = const { $init:expr }) => {
        shuttle::thread_local! { $(#[$attr])* $vis static $name: $t = const { $init }; }
    };
}
pub(crate) use thread_local_one;

/// A frozen clock, as under loom: shuttle does not model time, and a schedule must not depend
/// on how long an execution took in real time (else a seed would not replay). Timeouts are
/// explored by the timed parks, which report a timeout at once.
pub(crate) fn now() -> std::time::Instant {
    static FROZEN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *FROZEN.get_or_init(std::time::Instant::now)
}

/// Under shuttle a timed park yields once and reports a timeout (shuttle has no clock, and
/// treats a thread in `park_timeout` as blocked for good), so the tests explore the timeout
/// path of every timed wait; an untimed park parks for real, and shuttle reports a deadlock
/// if nothing ever unparks it.
pub(crate) fn park_until(deadline: Option<std::time::Instant>) -> bool {
    match deadline {
        None => {
            thread::park();
            false
        }
        Some(_) => {
            shuttle::thread::yield_now();
            true
        }
    }
}

/// How many yields a spin phase makes under shuttle: enough to explore "the work came while
/// spinning" (each yield lets the scheduler run another thread), few enough to add little.
const SPIN_YIELDS: u32 = 2;

/// Under shuttle a spin phase is a couple of yields to the scheduler (a real spin would be
/// one long step that no other thread can interrupt).
pub(crate) struct Spin {
    step: std::cell::Cell<u32>,
}

impl Spin {
    #[inline]
    pub(crate) fn new() -> Self {
        Spin {
            step: std::cell::Cell::new(0),
        }
    }

    /// Whether the spin phase is over and the caller should park.
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        self.step.get() >= SPIN_YIELDS
    }

    /// One step of the spin phase: a yield.
    #[inline]
    pub(crate) fn snooze(&self) {
        self.step.set(self.step.get() + 1);
        shuttle::thread::yield_now();
    }
}

/// Under shuttle the adaptive spin phase is the same couple of yields, and learns nothing
/// (there is no oversubscription to detect in a model).
pub(crate) struct AdaptiveSpin(Spin);

impl AdaptiveSpin {
    #[inline]
    pub(crate) fn new() -> Self {
        AdaptiveSpin(Spin::new())
    }

    /// Whether the spin phase is over and the caller should park.
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        self.0.is_completed()
    }

    /// One step of the spin phase: a yield.
    #[inline]
    pub(crate) fn snooze(&self) {
        self.0.snooze();
    }

    /// Nothing to learn.
    #[inline]
    pub(crate) fn won(&self) {}

    /// Nothing to learn.
    #[inline]
    pub(crate) fn missed(&self) {}
}

/// The pool's run queue (and, wrapped in [`Fifo`], the action queue's FIFO): a
/// shuttle-visible `Mutex<VecDeque>` with `SegQueue`'s interface. `crossbeam_queue::SegQueue`
/// and our `Fifo` wait on plain std atomics (a pop spins while a push is half done), which
/// shuttle can neither see nor preempt: under shuttle such a spin never ends. Each push, pop
/// and `is_empty` is one critical section, so at least as strong as what the worker's
/// ORDERING comments cite.
pub(crate) struct SegQueue<T>(Mutex<VecDeque<T>>);

impl<T> SegQueue<T> {
    pub(crate) fn new() -> Self {
        SegQueue(Mutex::new(VecDeque::new()))
    }

    pub(crate) fn push(&self, value: T) {
        super::lock(&self.0).push_back(value);
    }

    pub(crate) fn pop(&self) -> Option<T> {
        super::lock(&self.0).pop_front()
    }

    pub(crate) fn is_empty(&self) -> bool {
        super::lock(&self.0).is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        super::lock(&self.0).len()
    }
}

/// The action queue's FIFO under shuttle: the [`SegQueue`] stand-in, with the std `Fifo`'s
/// interface (its `pop` is `unsafe`: one consumer at a time, which the stand-in does not
/// need but the callers promise all the same).
pub(crate) struct Fifo<T>(SegQueue<T>);

impl<T> Fifo<T> {
    pub(crate) fn new() -> Self {
        Fifo(SegQueue::new())
    }

    pub(crate) fn push(&self, value: T) {
        self.0.push(value);
    }

    /// # Safety
    ///
    /// One consumer at a time, as for the std `Fifo`.
    pub(crate) unsafe fn pop(&self) -> Option<T> {
        self.0.pop()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// A parking spot that outlives any one thread, as `crossbeam_utils::sync::Parker` (which
/// parks on a std mutex and condvar that shuttle cannot see): a shuttle `Mutex<bool>` (the
/// token) + `Condvar`, whose timed park yields once and reports a timeout. The `Arc` is
/// std's (shuttle's is too): it only shares the shuttle objects.
type ParkSpot = std::sync::Arc<(Mutex<bool>, shuttle::sync::Condvar)>;

pub(crate) struct Parker(ParkSpot);

#[derive(Clone)]
pub(crate) struct Unparker(ParkSpot);

impl Parker {
    pub(crate) fn new() -> Self {
        Parker(std::sync::Arc::new((
            Mutex::new(false),
            shuttle::sync::Condvar::new(),
        )))
    }

    pub(crate) fn unparker(&self) -> Unparker {
        Unparker(self.0.clone())
    }

    pub(crate) fn park(&self) {
        let mut token = super::lock(&self.0 .0);
        while !*token {
            token = self
                .0
                 .1
                .wait(token)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *token = false;
    }

    /// Under shuttle: yields once and returns, leaving any token for the next untimed park,
    /// as when a real timed park returns just before an unpark lands; the worker treats a
    /// spare token as a spurious wake-up (it re-checks the state).
    pub(crate) fn park_deadline(&self, _deadline: std::time::Instant) {
        shuttle::thread::yield_now();
    }
}

impl Unparker {
    pub(crate) fn unpark(&self) {
        *super::lock(&self.0 .0) = true;
        self.0 .1.notify_one();
    }
}

/// Under shuttle: yields once and reports a timeout (shuttle has no clock).
pub(crate) fn park_on(parker: &Parker, deadline: std::time::Instant) -> bool {
    parker.park_deadline(deadline);
    true
}

/// Heap blocks handed around as raw pointers: plain `Box::into_raw`/`Box::from_raw`, as in
/// the std backend (shuttle has no leak check to feed).
pub(crate) mod boxed {
    /// Moves `value` to the heap and gives up ownership of it as a raw pointer.
    #[inline]
    pub(crate) fn into_raw<T>(value: T) -> *mut T {
        Box::into_raw(Box::new(value))
    }

    /// Moves the value out of a block made by [`into_raw`] and frees the block.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`into_raw`] and the caller owns it: nobody else uses it, and it is
    /// never used again after this call.
    #[inline]
    pub(crate) unsafe fn take<T>(ptr: *mut T) -> T {
        // SAFETY: `ptr` came from `Box::into_raw` in `into_raw`, and the caller owns it
        // (above), so rebuilding the box takes ownership exactly once.
        *unsafe { Box::from_raw(ptr) }
    }

    /// Drops the value of a block made by [`into_raw`] in place and frees the block.
    ///
    /// # Safety
    ///
    /// As for [`take`].
    #[inline]
    pub(crate) unsafe fn free<T>(ptr: *mut T) {
        // SAFETY: as in `take`.
        drop(unsafe { Box::from_raw(ptr) });
    }

    /// Frees a block made by [`into_raw`] without dropping its value.
    ///
    /// # Safety
    ///
    /// As for [`take`].
    #[inline]
    pub(crate) unsafe fn dealloc<T>(ptr: *mut T) {
        // SAFETY: as in `take`; `ManuallyDrop` drops nothing.
        drop(unsafe { Box::from_raw(ptr.cast::<std::mem::ManuallyDrop<T>>()) });
    }
}

/// The most actions a pool-backed queue's batch runs before the queue yields its thread: 128,
/// as with std (shuttle explores long runs, and the PCT tests cross the limit).
pub(crate) const BATCH_ACTIONS: usize = 128;
