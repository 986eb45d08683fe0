//! The `std` backend of the shim (no `--cfg loom`): the real atomics, threads and parking,
//! with adapters that give them the interface of their loom counterparts where the two differ
//! (`UnsafeCell::with`/`with_mut`). See the [parent module](super) for the list of
//! differences.

pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering};
pub(crate) use std::sync::Arc;
pub(crate) use std::sync::{Mutex, MutexGuard};

pub(crate) use atomic_waker::AtomicWaker;

/// Registers `waker` in `atomic` (the two `AtomicWaker`s spell it differently).
#[inline]
pub(crate) fn register_waker(atomic: &AtomicWaker, waker: &std::task::Waker) {
    atomic.register(waker);
}

/// `std::cell::UnsafeCell` with loom's `with`/`with_mut` interface, so loom can check every
/// access to the cell for data races.
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

/// Threads: handles, identity, parking and spawning.
pub(crate) mod thread {
    pub(crate) use std::thread::{current, park, Builder, Thread, ThreadId};

    std::thread_local! {
        static CURRENT_ID: ThreadId = current().id();
    }

    /// The calling thread's id, cached per thread so the deadlock check costs a TLS read
    /// instead of a reference-count round trip on the thread handle.
    #[inline]
    pub(crate) fn current_id() -> ThreadId {
        CURRENT_ID.with(|id| *id)
    }
}

/// One thread-local for [`thread_locals!`](super::thread_locals): `std::thread_local!`.
macro_rules! thread_local_one {
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = const { $init:expr }) => {
        std::thread_local! { $(#[$attr])* $vis static $name: $t = const { $init }; }
    };
}
pub(crate) use thread_local_one;

/// Parks the calling thread until it is unparked, or until `deadline` if there is one.
/// Returns `true` when the deadline has passed. Like `std::thread::park`, it may return
/// spuriously: callers re-check their condition.
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

/// A bounded spin phase before parking: `crossbeam_utils::Backoff`, which spins in doubling
/// steps and then yields.
pub(crate) struct Spin {
    backoff: crossbeam_utils::Backoff,
}

impl Spin {
    #[inline]
    pub(crate) fn new() -> Self {
        Spin {
            backoff: crossbeam_utils::Backoff::new(),
        }
    }

    /// Whether the spin phase is over and the caller should park.
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        self.backoff.is_completed()
    }

    /// One step of the spin phase.
    #[inline]
    pub(crate) fn snooze(&self) {
        self.backoff.snooze();
    }
}

/// The action queue's FIFO: `crossbeam_queue::SegQueue` (lock-free, unbounded).
pub(crate) use crossbeam_queue::SegQueue;

/// A parking spot that outlives any one thread: the action queue's worker incarnations park
/// on it in turn, and producers unpark whichever is there, without knowing its `Thread`.
pub(crate) use crossbeam_utils::sync::{Parker, Unparker};

/// Parks on `parker` until unparked or until `deadline`; returns `true` when the deadline has
/// passed.
pub(crate) fn park_on(parker: &Parker, deadline: std::time::Instant) -> bool {
    if std::time::Instant::now() >= deadline {
        return true;
    }
    parker.park_deadline(deadline);
    std::time::Instant::now() >= deadline
}

/// Heap blocks handed around as raw pointers (a promise's shared block, its callback nodes):
/// plain `Box::into_raw`/`Box::from_raw` here; under loom, allocations loom tracks, so that
/// its leak check covers them.
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

    /// Drops the value of a block made by [`into_raw`] in place and frees the block (no
    /// move out, unlike [`take`]).
    ///
    /// # Safety
    ///
    /// As for [`take`].
    #[inline]
    pub(crate) unsafe fn free<T>(ptr: *mut T) {
        // SAFETY: as in `take`.
        drop(unsafe { Box::from_raw(ptr) });
    }
}
