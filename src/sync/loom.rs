//! The loom backend of the shim (`RUSTFLAGS="--cfg loom"`): loom's atomics, cells, threads
//! and thread-locals, and loom-visible stand-ins for what loom cannot see into. See the
//! [parent module](super) for the list of differences.

pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering,
};
pub(crate) use loom::sync::Arc;
pub(crate) use loom::sync::{Mutex, MutexGuard};

pub(crate) use loom::future::AtomicWaker;

/// Registers `waker` in `atomic` (the two `AtomicWaker`s spell it differently).
#[inline]
pub(crate) fn register_waker(atomic: &AtomicWaker, waker: &std::task::Waker) {
    atomic.register_by_ref(waker);
}

pub(crate) use loom::cell::UnsafeCell;

/// Threads: handles, identity, parking and spawning.
pub(crate) mod thread {
    pub(crate) use loom::thread::{current, park, Builder, Thread, ThreadId};

    /// The calling thread's id.
    pub(crate) fn current_id() -> ThreadId {
        current().id()
    }
}

/// One thread-local for [`thread_locals!`](super::thread_locals): `loom::thread_local!`,
/// whose thread-locals belong to loom's threads. Loom has no `const` initialiser form, so
/// it gets the expression inside.
macro_rules! thread_local_one {
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = const { $init:expr }) => {
        loom::thread_local! { $(#[$attr])* $vis static $name: $t = $init; }
    };
}
pub(crate) use thread_local_one;

/// A pool-backed queue's batch limit under loom: 2 actions instead of 128, so that a model
/// reaches the limit (and the batch's yield to the queues behind it) with three actions
/// rather than 129, which no model could explore. Two, not one, so that a batch still runs
/// its loop more than once and a model with at most two actions per queue runs them in one
/// batch, as with 128. (The frozen clock means `BATCH_TIME` never ends a batch under loom.)
pub(crate) const BATCH_ACTIONS: usize = 2;

/// A frozen clock: the same instant in every execution, so that a model's path never depends
/// on how long an execution took in real time (a real clock made a model with a 1 s timeout
/// take another branch when one execution ran over a second on a loaded machine, which loom
/// reports as "unexpected exploration state"). Timeouts are explored by the timed parks,
/// which report a timeout at once.
pub(crate) fn now() -> std::time::Instant {
    static FROZEN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *FROZEN.get_or_init(std::time::Instant::now)
}

/// Under loom a timed park yields once and reports a timeout (loom has no clock), so the
/// models explore the timeout path of every timed wait; an untimed park parks for real.
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

/// Under loom the spin phase is empty (completed from the start): a spin loop adds nothing
/// to what loom explores but states.
pub(crate) struct Spin;

impl Spin {
    #[inline]
    pub(crate) fn new() -> Self {
        Spin
    }

    /// Whether the spin phase is over and the caller should park: at once.
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        true
    }

    /// One step of the spin phase (never taken).
    #[inline]
    pub(crate) fn snooze(&self) {}
}

/// Under loom the adaptive spin phase is empty too, and learns nothing.
pub(crate) struct AdaptiveSpin;

impl AdaptiveSpin {
    #[inline]
    pub(crate) fn new() -> Self {
        AdaptiveSpin
    }

    /// At once.
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        true
    }

    /// Never taken.
    #[inline]
    pub(crate) fn snooze(&self) {}

    /// Nothing to learn.
    #[inline]
    pub(crate) fn won(&self) {}

    /// Nothing to learn.
    #[inline]
    pub(crate) fn missed(&self) {}
}

/// The pool's run queue (and, wrapped in [`Fifo`], the action queue's FIFO): a loom-visible
/// `Mutex<VecDeque>` with `SegQueue`'s interface (loom cannot see the plain atomics inside
/// `crossbeam_queue::SegQueue`, nor those of our `Fifo`).
///
/// Each push, pop and `is_empty` is one loom scheduling point (loom 0.7 branches on an
/// uncontended `lock`, not on the unlock, and no thread can be preempted while holding the
/// lock, since nothing inside it is a scheduling point), as cheap as one atomic operation,
/// and at least as strong as what the worker's ORDERING comments cite: the loom mutex is
/// SeqCst, so a pop is a release operation and `is_empty` reads the queue as the last push
/// or pop left it. A lock-free stand-in (one atomic word with head, tail and ready bits)
/// was tried (commit 23b66c6): a push and a pop cost two scheduling points each and its
/// loads may read stale values, so the models grew (`put_vs_retire` by 35-45%,
/// `two_wait_idles_vs_drain_end` sixfold).
pub(crate) struct SegQueue<T>(loom::sync::Mutex<std::collections::VecDeque<T>>);

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

    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// The action queue's FIFO under loom: the [`SegQueue`] stand-in, with the std `Fifo`'s
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

/// A parking spot that outlives any one thread, as `crossbeam_utils::sync::Parker`: a loom
/// `Mutex<bool>` (the token) + `Condvar` stand-in whose timed park yields once and reports a
/// timeout. The `Arc` is std's: it only shares the loom objects between the parker and its
/// unparkers and publishes nothing, so loom need not branch on its counts.
type ParkSpot = std::sync::Arc<(loom::sync::Mutex<bool>, loom::sync::Condvar)>;

pub(crate) struct Parker(ParkSpot);

#[derive(Clone)]
pub(crate) struct Unparker(ParkSpot);

impl Parker {
    pub(crate) fn new() -> Self {
        Parker(std::sync::Arc::new((
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

    /// Under loom: yields once and returns, without the lock (one scheduling point, where
    /// taking the token before and after the yield cost three). A token stays for the next
    /// untimed park, as when a real timed park returns just before an unpark lands; the
    /// worker treats a spare token as a spurious wake-up (it re-checks the state).
    pub(crate) fn park_deadline(&self, _deadline: std::time::Instant) {
        loom::thread::yield_now();
    }
}

impl Unparker {
    pub(crate) fn unpark(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_one();
    }
}

/// Under loom: yields once and reports a timeout (loom has no clock).
pub(crate) fn park_on(parker: &Parker, deadline: std::time::Instant) -> bool {
    parker.park_deadline(deadline);
    true
}

/// Heap blocks handed around as raw pointers, allocated through `loom::alloc` so that loom's
/// leak check sees them: a model that ends with a promise block or a callback node still
/// allocated fails.
pub(crate) mod boxed {
    use std::alloc::Layout;

    /// Moves `value` to a loom-tracked heap block and gives up ownership of it as a raw
    /// pointer.
    pub(crate) fn into_raw<T>(value: T) -> *mut T {
        let layout = Layout::new::<T>();
        assert!(layout.size() != 0, "no zero-sized blocks: none is needed");
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { loom::alloc::alloc(layout) }.cast::<T>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: `ptr` is a fresh allocation with `T`'s layout, so valid and aligned for a
        // write of a `T`.
        unsafe { ptr.write(value) };
        ptr
    }

    /// Moves the value out of a block made by [`into_raw`] and frees the block.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`into_raw`] and the caller owns it: nobody else uses it, and it is
    /// never used again after this call.
    pub(crate) unsafe fn take<T>(ptr: *mut T) -> T {
        // SAFETY: `ptr` came from `into_raw`, so it holds an initialised `T`, and the caller
        // owns it (above), so this read moves it out exactly once.
        let value = unsafe { ptr.read() };
        // SAFETY: `ptr` was allocated by `loom::alloc::alloc` with this very layout and is
        // freed once, here.
        unsafe { loom::alloc::dealloc(ptr.cast::<u8>(), Layout::new::<T>()) };
        value
    }

    /// Drops the value of a block made by [`into_raw`] and frees the block.
    ///
    /// # Safety
    ///
    /// As for [`take`].
    pub(crate) unsafe fn free<T>(ptr: *mut T) {
        // SAFETY: the caller's obligation is `take`'s.
        drop(unsafe { take(ptr) });
    }

    /// Frees a block made by [`into_raw`] without dropping its value (the caller dropped
    /// what needed it, or nothing does).
    ///
    /// # Safety
    ///
    /// As for [`take`].
    pub(crate) unsafe fn dealloc<T>(ptr: *mut T) {
        // SAFETY: the caller's obligation is `take`'s; the value is forgotten, not dropped.
        std::mem::forget(unsafe { take(ptr) });
    }
}
