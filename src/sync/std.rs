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

/// The spin phase of a promise wait, adapted to how this thread's recent waits ended: a
/// wait whose spin ran out (the result came later, so it parked) makes the thread's next
/// waits skip the spin, 1, 3, 7, ... up to 63 of them after consecutive misses; one spin
/// that wins (the result came while spinning) resets that. So a thread that waits for
/// results that come quickly (a ping-pong on idle cores) keeps spinning and never parks,
/// and one whose waits outlast the spin (slow replies, or a loaded machine where the other
/// side is not running) parks at once and leaves the cores to the threads that work,
/// trying the spin again now and then.
pub(crate) struct AdaptiveSpin {
    /// `None` when this wait skips the spin.
    spin: Option<Spin>,
}

/// Consecutive spins that ran out before the result came, at most this many.
const MAX_MISSES: u8 = 6;

std::thread_local! {
    /// This thread's (consecutive misses, waits still to skip).
    static SPIN_HISTORY: std::cell::Cell<(u8, u8)> = const { std::cell::Cell::new((0, 0)) };
}

impl AdaptiveSpin {
    #[inline]
    pub(crate) fn new() -> Self {
        // `try_with`: a wait inside a thread-local destructor spins, as it always did.
        let skip = SPIN_HISTORY
            .try_with(|history| {
                let (misses, skip) = history.get();
                if skip > 0 {
                    history.set((misses, skip - 1));
                }
                skip > 0
            })
            .unwrap_or(false);
        AdaptiveSpin {
            spin: (!skip).then(Spin::new),
        }
    }

    /// Whether the spin phase is over (or skipped) and the caller should park.
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        self.spin.as_ref().map_or(true, Spin::is_completed)
    }

    /// One step of the spin phase.
    #[inline]
    pub(crate) fn snooze(&self) {
        if let Some(spin) = &self.spin {
            spin.snooze();
        }
    }

    /// The result came while spinning: keep spinning on the next waits.
    #[inline]
    pub(crate) fn won(&self) {
        if self.spin.is_some() {
            let _ = SPIN_HISTORY.try_with(|history| history.set((0, 0)));
        }
    }

    /// The spin ran out before the result came: skip it on the next waits.
    #[inline]
    pub(crate) fn missed(&self) {
        if self.spin.is_some() {
            let _ = SPIN_HISTORY.try_with(|history| {
                let misses = (history.get().0 + 1).min(MAX_MISSES);
                history.set((misses, (1u8 << misses) - 1));
            });
        }
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

#[cfg(test)]
mod tests {
    use super::AdaptiveSpin;

    /// How many of the next `n` waits on this thread spin.
    fn spinning_of_next(n: usize) -> usize {
        (0..n)
            .filter(|_| {
                let spin = AdaptiveSpin::new();
                let spins = !spin.is_completed();
                // A spin that is taken wins, so that the history only moves where we say.
                spin.won();
                spins
            })
            .count()
    }

    /// The policy of `AdaptiveSpin`: each consecutive miss doubles the number of waits that
    /// skip the spin (1, 3, 7, ... 63), and one win resets it. Thread-local, so this runs on
    /// a thread of its own, whatever the harness runs beside it.
    #[test]
    fn missed_spins_skip_a_growing_number_of_waits_and_a_win_resets() {
        std::thread::spawn(|| {
            assert_eq!(spinning_of_next(5), 5, "a fresh thread spins");
            for expected_skips in [1usize, 3, 7, 15, 31, 63, 63] {
                let spin = AdaptiveSpin::new();
                assert!(
                    !spin.is_completed(),
                    "the wait after the skipped ones spins"
                );
                spin.missed();
                for _ in 0..expected_skips {
                    assert!(AdaptiveSpin::new().is_completed(), "skipped");
                }
            }
            // The next wait spins and wins: back to spinning on every wait.
            let spin = AdaptiveSpin::new();
            assert!(!spin.is_completed());
            spin.won();
            assert_eq!(spinning_of_next(10), 10);
        })
        .join()
        .unwrap();
    }
}
