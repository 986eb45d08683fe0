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

/// The most actions a pool-backed queue's batch runs before the queue yields its thread
/// (`queue::batch::BATCH_ACTIONS`, whose module docs say why 128).
pub(crate) const BATCH_ACTIONS: usize = 128;

/// The clock that deadlines are computed from and checked against.
#[inline]
pub(crate) fn now() -> std::time::Instant {
    std::time::Instant::now()
}

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

/// The spin phase of a promise wait, which a thread gives up while the machine is
/// oversubscribed.
///
/// It spins in doubling runs of `pause` (1, 2, ... 64), then yields a few times, then the
/// caller parks. Spinning pays when the other side has a core of its own: the result lands
/// during the spin and nobody sleeps. It costs when the other side needs the spinner's
/// core: then every spin delays the result it waits for. The sign of the latter is a yield
/// that takes long (over 50 µs: another thread ran on this core meanwhile), so a spin phase
/// that sees one ends at once and makes the thread's next waits park without spinning: 1,
/// 3, 7, ... up to 255 of them after consecutive such phases. A spin phase without a slow
/// yield (it won, or ran out with only quick yields) resets that.
///
/// Whether the spin *won* is deliberately not the signal: in a ping-pong, a side that parks
/// makes its partner's next wait long too (the futex wake-up), so "my spin ran out" would
/// make both sides stop spinning for good on an idle machine.
pub(crate) struct AdaptiveSpin {
    /// The next step (`None` when this wait skips the spin).
    step: Option<std::cell::Cell<u32>>,
}

/// Steps that spin (doubling runs of `pause`); the steps after it, up to `YIELD_STEPS`,
/// yield.
const SPIN_STEPS: u32 = 6;
/// The last step.
const YIELD_STEPS: u32 = 10;
/// A yield that took longer than this gave the core to another thread.
const SLOW_YIELD: std::time::Duration = std::time::Duration::from_micros(50);
/// Consecutive contended spin phases counted, at most: skips go up to 2^8 - 1.
const MAX_LEVEL: u8 = 8;

std::thread_local! {
    /// This thread's (consecutive contended spin phases, waits still to skip).
    static SPIN_HISTORY: std::cell::Cell<(u8, u8)> = const { std::cell::Cell::new((0, 0)) };
}

impl AdaptiveSpin {
    #[inline]
    pub(crate) fn new() -> Self {
        // `try_with`: a wait inside a thread-local destructor spins, as it always did.
        let skip = SPIN_HISTORY
            .try_with(|history| {
                let (level, skip) = history.get();
                if skip > 0 {
                    history.set((level, skip - 1));
                }
                skip > 0
            })
            .unwrap_or(false);
        AdaptiveSpin {
            step: (!skip).then(|| std::cell::Cell::new(0)),
        }
    }

    /// Whether the spin phase is over (or skipped) and the caller should park.
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        self.step
            .as_ref()
            .map_or(true, |step| step.get() > YIELD_STEPS)
    }

    /// One step of the spin phase.
    #[inline]
    pub(crate) fn snooze(&self) {
        let Some(step) = &self.step else { return };
        let n = step.get();
        if n <= SPIN_STEPS {
            for _ in 0..1u32 << n {
                std::hint::spin_loop();
            }
            step.set(n + 1);
        } else {
            let start = std::time::Instant::now();
            std::thread::yield_now();
            if start.elapsed() > SLOW_YIELD {
                // Another thread had this core: end the spin here and skip the next ones.
                step.set(YIELD_STEPS + 1);
                contended();
            } else {
                step.set(n + 1);
            }
        }
    }

    /// The result came while spinning.
    #[inline]
    pub(crate) fn won(&self) {
        if self.step.is_some() {
            calm();
        }
    }

    /// The spin phase ran out before the result came.
    #[inline]
    pub(crate) fn missed(&self) {
        // A phase that ended on a slow yield already counted as contended.
        if let Some(step) = &self.step {
            if step.get() == YIELD_STEPS + 1 && !ended_contended() {
                calm();
            }
        }
    }
}

/// Whether the last spin phase of this thread ended on a slow yield (it set a skip count).
fn ended_contended() -> bool {
    SPIN_HISTORY
        .try_with(|history| history.get().1 > 0)
        .unwrap_or(false)
}

/// A spin phase saw the core taken: skip the next 2^level - 1 spins.
fn contended() {
    let _ = SPIN_HISTORY.try_with(|history| {
        let level = (history.get().0 + 1).min(MAX_LEVEL);
        history.set((level, ((1u16 << level) - 1) as u8));
    });
}

/// A spin phase saw no sign of contention: spin on every wait again.
fn calm() {
    let _ = SPIN_HISTORY.try_with(|history| history.set((0, 0)));
}

/// The pool's run queue: `crossbeam_queue::SegQueue` (lock-free, unbounded).
pub(crate) use crossbeam_queue::SegQueue;

/// The action queue's FIFO: many producers, one consumer (see [`super::fifo`]).
pub(crate) use super::fifo::Fifo;

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

    /// Frees a block made by [`into_raw`] without dropping its value (the caller dropped
    /// what needed it, or nothing does).
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

#[cfg(test)]
mod tests {
    use super::{calm, contended, AdaptiveSpin};

    /// Whether the next wait on this thread spins (and leaves the history as it was, but
    /// for the skip it uses up).
    fn next_wait_spins() -> bool {
        !AdaptiveSpin::new().is_completed()
    }

    /// The policy of `AdaptiveSpin`: each consecutive contended spin phase (one that saw a
    /// slow yield; `contended` is what `snooze` calls then) doubles the number of waits that
    /// skip the spin (1, 3, 7, ... 255), and a calm phase resets it. Thread-local, so this
    /// runs on a thread of its own, whatever the harness runs beside it.
    #[test]
    fn contended_spins_skip_a_growing_number_of_waits_and_a_calm_one_resets() {
        std::thread::spawn(|| {
            assert!((0..5).all(|_| next_wait_spins()), "a fresh thread spins");
            for expected_skips in [1usize, 3, 7, 15, 31, 63, 127, 255, 255] {
                contended();
                for _ in 0..expected_skips {
                    assert!(!next_wait_spins(), "skipped");
                }
                assert!(next_wait_spins(), "the wait after the skipped ones spins");
            }
            calm();
            assert!((0..10).all(|_| next_wait_spins()));
            // A spin phase that runs out with only quick yields is calm: no skip.
            contended();
            assert!(!next_wait_spins());
            let spin = AdaptiveSpin::new();
            while !spin.is_completed() {
                spin.snooze();
            }
            spin.missed();
            // Unless one of its yields was slow (a loaded machine), the next wait spins.
            let slow_yield = super::ended_contended();
            assert!(slow_yield || next_wait_spins());
        })
        .join()
        .unwrap();
    }
}
