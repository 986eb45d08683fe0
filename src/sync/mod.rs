//! The synchronisation shim: every atomic, cell, thread, thread-local, heap block and queue
//! the crate uses comes from here, so the same code compiles against `std`; with
//! `RUSTFLAGS="--cfg loom"`, against [loom](https://docs.rs/loom), which model-checks it;
//! or with `RUSTFLAGS="--cfg shuttle"`, against [shuttle](https://docs.rs/shuttle), which
//! runs it under randomized schedules (PCT) at sizes loom cannot explore. One `cfg` below
//! picks the backend file, [`std.rs`](backend), `loom.rs` or `shuttle.rs` (the two checkers'
//! cfgs exclude each other); nothing else in the crate mentions loom or shuttle.
//!
//! Differences under loom and shuttle, and why:
//! - neither models time, so the clock ([`now`]) is frozen and a timed park ([`park_until`],
//!   [`park_on`]) yields once and then reports that its deadline passed. Every timed wait
//!   therefore explores its timeout path, while the untimed paths park for real (and a
//!   park nothing ever ends is reported: by loom and by shuttle, as a deadlock).
//! - spinning ([`Spin`], [`AdaptiveSpin`]) is skipped under loom: a spin loop adds nothing
//!   to what loom explores but states. Under shuttle it is a couple of yields, so that the
//!   path on which work arrives during the spin is taken too.
//! - `crossbeam_queue::SegQueue` (the pool's run queue), the action queue's own [`Fifo`]
//!   (`fifo.rs`) and `atomic_waker::AtomicWaker` use plain atomics that neither checker can
//!   see, so visible stand-ins replace them (a loom or shuttle `Mutex<VecDeque>` for both
//!   queues; `loom::future::AtomicWaker`, or a shuttle `Mutex<Option<Waker>>`);
//!   `crossbeam_utils::sync::Parker` likewise becomes a `Mutex<bool>` + `Condvar` of the
//!   checker's. Under shuttle this is not only about coverage: shuttle runs all threads on
//!   one OS thread and switches only at its own operations, so a loop that spins on a plain
//!   std atomic (as a `SegQueue` pop does while a push is half done) is never preempted and
//!   never ends. Every loop that waits must wait on state the checker sees.
//! - a pool-backed queue's batch ends after 2 actions under loom, not 128
//!   ([`BATCH_ACTIONS`]), so that a model reaches the batch limit with three actions.
//! - thread-locals ([`thread_locals!`](thread_locals)) are the checker's, which belong to its
//!   threads.
//! - heap blocks passed around as raw pointers ([`boxed`]) are allocated through
//!   `loom::alloc` under loom, so loom's leak check covers them (plain `Box` under shuttle).
//! - `UnsafeCell` is loom's under loom, which checks every access for data races; the std
//!   and shuttle backends give `std::cell::UnsafeCell` the same `with`/`with_mut` interface.
//! - shuttle runs every atomic access as `SeqCst` (its `fence` is then a no-op): it finds
//!   interleaving bugs in large cases, loom finds weak-memory ones in small cases.
//!
//! The unit tests in `src/` (`#[cfg(test)]`) exercise the std backend: the loom models are
//! the integration tests in `loom-tests/`, and the shuttle tests `tests/shuttle_pool.rs`,
//! which build the library without `cfg(test)`. So run `cargo test --lib` without `--cfg
//! loom` or `--cfg shuttle` (with either, the unit tests would use the checker's types
//! outside a model, which both refuse), and under `--cfg shuttle` build only the shuttle test
//! target (`cargo test --test shuttle_pool`, see `.ci/shuttle.sh`).
//!
//! Common to all backends, and defined here: the poison-free [`lock`], [`deadline_passed`],
//! the worker's [`UnparkerCell`], [`spawn_worker`] (with the tests' spawn-fault hook), and
//! the two std types that the checkers need not see ([`StdAtomicUsize`], [`StdOnce`]).

#[cfg(all(loom, shuttle))]
compile_error!("`--cfg loom` and `--cfg shuttle` exclude each other: pick one checker");

#[cfg(not(any(loom, shuttle)))]
#[path = "std.rs"]
mod backend;
#[cfg(loom)]
#[path = "loom.rs"]
mod backend;
#[cfg(all(shuttle, not(loom)))]
#[path = "shuttle.rs"]
mod backend;

pub(crate) use backend::*;

#[cfg(not(any(loom, shuttle)))]
mod fifo;

/// Declares thread-locals through the backend: std's `thread_local!`, or loom's or
/// shuttle's, whose thread-locals belong to the checker's threads. Write each initialiser as
/// `const { … }`.
macro_rules! thread_locals {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = const { $init:expr }; $($rest:tt)*) => {
        $crate::sync::thread_local_one!($(#[$attr])* $vis static $name: $t = const { $init });
        $crate::sync::thread_locals!($($rest)*);
    };
}
pub(crate) use thread_locals;

/// A std atomic counter even under loom and shuttle, for process-wide counters that only hand
/// out distinct numbers (queue ids) and publish nothing: the checker need not see them, and
/// its atomic could not live in a `static` that outlives the model.
pub(crate) use std::sync::atomic::AtomicUsize as StdAtomicUsize;

/// A std `Once` even under loom and shuttle: it guards a log line (the setter warning, debug builds
/// only), not a protocol.
#[cfg(debug_assertions)]
pub(crate) use std::sync::Once as StdOnce;

/// Locks `mutex`, poison or not. The crate's critical sections are a few field updates that
/// leave their data consistent at every step and call no foreign code, so a poisoned lock
/// (which they cannot cause) would still guard consistent data.
#[inline]
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `deadline` (computed from [`now`]) has passed. Under loom and shuttle the clock is
/// frozen, so only a zero timeout has passed, in every execution alike (the timed park
/// itself reports the timeout there).
pub(crate) fn deadline_passed(deadline: Option<std::time::Instant>) -> bool {
    match deadline {
        None => false,
        Some(d) => now() >= d,
    }
}

/// Spawns a detached thread from `builder` that runs `f` (the action queue's worker). Under
/// `cfg(test)`, a test can make the next spawns on its thread fail or panic first (see
/// [`spawn_faults`]).
pub(crate) fn spawn_worker(
    builder: thread::Builder,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    #[cfg(test)]
    match spawn_faults::take() {
        Some(spawn_faults::SpawnFault::Fail) => {
            return Err(std::io::Error::other("spawn failure injected by a test"))
        }
        Some(spawn_faults::SpawnFault::Panic) => panic!("spawn panic injected by a test"),
        None => {}
    }
    builder.spawn(f).map(drop)
}

/// A [`Parker`] that successive worker threads use in turn, and its [`Unparker`] for
/// producers. The parker sits in the shim's [`UnsafeCell`], so under loom every park is a
/// checked access: loom fails a model in which two worker incarnations' parks are not
/// ordered by the hand-over (the retiring CAS or exit guard's swap that the next spawner
/// reads).
pub(crate) struct UnparkerCell {
    parker: UnsafeCell<Parker>,
    unparker: Unparker,
}

// SAFETY: the `Unparker` is `Send + Sync`. The `Parker` (only `Send`) is used by one thread
// at a time: `park`'s contract gives it to the single worker incarnation that owns the
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
            parker: UnsafeCell::new(parker),
            unparker,
        }
    }

    /// Parks on the parker until unparked, or until `deadline` if there is one; returns
    /// `true` when the deadline has passed. Under loom and shuttle a timed park yields once
    /// and always reports a timeout (a token left behind is then seen by the worker as a
    /// spurious wake-up: it re-checks the state).
    ///
    /// # Safety
    ///
    /// Only one thread at a time may use the parker: the caller must be the queue's current
    /// worker incarnation (the one that owns RUNNING/PARKED), and stop parking before its
    /// retiring CAS or its exit guard's swap(IDLE).
    pub(crate) unsafe fn park(&self, deadline: Option<std::time::Instant>) -> bool {
        self.parker.with_mut(|parker| {
            // SAFETY: exclusive use is the caller's obligation (above); the cell lives as
            // long as `self`. Parking needs only a shared reference.
            let parker = unsafe { &*parker };
            match deadline {
                Some(deadline) => park_on(parker, deadline),
                None => {
                    parker.park();
                    false
                }
            }
        })
    }

    /// Wakes the parked worker, or leaves a token that makes its next park return at once.
    pub(crate) fn unpark(&self) {
        self.unparker.unpark();
    }
}

/// Test hook: faults injected into [`spawn_worker`] by the tests of the calling thread.
#[cfg(test)]
pub(crate) mod spawn_faults {
    use std::cell::Cell;

    /// A fault injected into a spawn by a test.
    pub(crate) enum SpawnFault {
        /// `spawn` returns an error (as when the OS is out of threads).
        Fail,
        /// `spawn` panics (as `std::thread::Builder::spawn` does on a name it cannot take).
        Panic,
    }

    // Std thread-locals even under loom and shuttle: the counters belong to the test's real
    // thread and guard no protocol.
    std::thread_local! {
        static FAIL_SPAWNS: Cell<usize> = const { Cell::new(0) };
        static PANIC_SPAWNS: Cell<usize> = const { Cell::new(0) };
    }

    /// Makes the next `n` spawns on this thread fail.
    pub(crate) fn fail_next(n: usize) {
        FAIL_SPAWNS.with(|left| left.set(n));
    }

    /// Makes the next `n` spawns on this thread panic.
    pub(crate) fn panic_next(n: usize) {
        PANIC_SPAWNS.with(|left| left.set(n));
    }

    /// Counts one injected fault down; whether there was one left.
    fn take_one(left: &Cell<usize>) -> bool {
        let n = left.get();
        left.set(n.saturating_sub(1));
        n > 0
    }

    /// The fault a test injected into the next spawn on this thread, if any.
    pub(super) fn take() -> Option<SpawnFault> {
        if FAIL_SPAWNS.with(take_one) {
            Some(SpawnFault::Fail)
        } else if PANIC_SPAWNS.with(take_one) {
            Some(SpawnFault::Panic)
        } else {
            None
        }
    }
}
