//! Helpers shared by the loom models.
#![allow(dead_code)] // each model file uses a subset

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// An exhaustive model (unless `LOOM_MAX_PREEMPTIONS` is set in the environment).
pub fn model(f: impl Fn() + Sync + Send + 'static) {
    check(loom::model::Builder::new(), f);
}

/// A model bounded to `preemptions` preemptions (or fewer, if `LOOM_MAX_PREEMPTIONS` asks
/// for fewer), for races whose exhaustive run does not fit CI; each such test says why and
/// what it measured. It prints the bound it ran with, so that the CI log shows it.
/// `LOOM_FORCE_BOUND=n` runs it at exactly `n` instead, to measure another bound.
pub fn bounded(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    let bound = match std::env::var("LOOM_FORCE_BOUND") {
        Ok(n) => n
            .parse()
            .expect("LOOM_FORCE_BOUND: a number of preemptions"),
        Err(_) => builder
            .preemption_bound
            .unwrap_or(preemptions)
            .min(preemptions),
    };
    builder.preemption_bound = Some(bound);
    eprintln!("loom: bounded to {bound} preemptions");
    check(builder, f);
}

/// Runs the model and prints how many executions loom explored (a measure of the model's
/// size that, unlike its run time, does not depend on the machine's load).
fn check(builder: loom::model::Builder, f: impl Fn() + Sync + Send + 'static) {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    builder.check(move || {
        // ORDERING: Relaxed: a std counter outside the model, read after `check` returns.
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    // ORDERING: Relaxed: `check` has returned; the model's threads are done.
    eprintln!("loom: {} executions", runs.load(Ordering::Relaxed));
}

/// The distinct outcomes a model's executions reached (a std set outside the model).
///
/// Loom's exploration is not complete (tokio-rs/loom#166, #392): its DPOR keeps only the
/// last access to each atomic, and a load only conflicts with stores, so a thread whose
/// first operation is a load, or whose read-modify-write follows its own load of the same
/// word (as in the promise's `release_promise` and `resolve`), may never be scheduled
/// before an earlier load of the other thread. The channel model `set_vs_last_handle_drop`
/// without its [`StartLine`] shows it: loom never ran the handle's drop before the
/// resolver's `is_closed`. So a model whose outcomes can be told apart asserts, after loom
/// returns, that it reached every outcome the race allows: a blind spot of the exploration
/// fails the test instead of passing silently.
#[derive(Clone, Default)]
pub struct Reached(Arc<Mutex<BTreeSet<String>>>);

impl Reached {
    /// Records one execution's outcome.
    pub fn record(&self, outcome: String) {
        self.0.lock().unwrap().insert(outcome);
    }

    /// Prints the outcomes reached and asserts that each of `expected` is among them (the
    /// model's own asserts judge whether an outcome is allowed).
    pub fn assert_includes(&self, expected: &[&str]) {
        let reached = self.0.lock().unwrap();
        // No commas: .ci/run joins the `loom:` lines with them.
        let list: Vec<&str> = reached.iter().map(String::as_str).collect();
        eprintln!("loom: outcomes [{}]", list.join("; "));
        for outcome in expected {
            assert!(
                reached.contains(*outcome),
                "loom never reached `{outcome}` (a blind spot of its exploration?)"
            );
        }
    }
}

/// A start line for spawned threads: their first loom operation is a store (see
/// [`StartLine::spawn`]), and the main thread calls [`StartLine::race`] (a load) just before
/// its own racing operations. The store and the load conflict, so loom also runs each
/// spawned thread before the main thread's racing part, an order it may miss otherwise (see
/// [`Reached`]). The line is an atomic of its own: it orders nothing in the library. It
/// costs executions (the channel models `set_vs_last_handle_drop`: 60 instead of 11,
/// `set_vs_owned_future_poll_and_drop`: 1 090 instead of 426).
#[derive(Clone)]
pub struct StartLine(loom::sync::Arc<loom::sync::atomic::AtomicUsize>);

impl StartLine {
    /// A line no thread has crossed.
    pub fn new() -> Self {
        StartLine(loom::sync::Arc::new(loom::sync::atomic::AtomicUsize::new(
            0,
        )))
    }

    /// Spawns a thread whose first operation is to cross the line.
    pub fn spawn<T: 'static>(
        &self,
        f: impl FnOnce() -> T + 'static,
    ) -> loom::thread::JoinHandle<T> {
        let line = self.clone();
        loom::thread::spawn(move || {
            // ORDERING: Relaxed: the line orders nothing, it only gives loom a conflict.
            line.0.store(1, Ordering::Relaxed);
            f()
        })
    }

    /// The main thread's operation just before its racing part.
    pub fn race(&self) {
        // ORDERING: Relaxed: as in `spawn`.
        self.0.load(Ordering::Relaxed);
    }
}

/// The global allocator of the loom test binaries: the system's, except that blocks aligned
/// to 32 or more (the promise's waiter nodes are aligned to 64, so that their addresses
/// leave six tag bits free) are recycled through free lists of our own, last freed first
/// used, keyed by size.
///
/// Why: loom replays a model's executions and requires each to make the same choices. The
/// waiter stack's CAS compares node addresses, and whether an address is reused (a benign
/// ABA, see `src/promise/waiters.rs`) decides whether a CAS succeeds. The system allocator
/// serves over-aligned blocks by carving larger chunks, so the address a node gets depends
/// on loom's own allocations too, which differ between executions: a model then failed with
/// loom's "unexpected exploration state". With these lists, the address a node gets depends
/// only on the model's own allocations and frees, which replay identically.
struct ReplayableAllocator;

/// Free lists for sizes up to `BUCKETS * BUCKET` bytes, in steps of `BUCKET`.
const BUCKET: usize = 64;
const BUCKETS: usize = 16;

/// Heads of the intrusive free lists (a freed block holds the address of the next one), and
/// a spin lock over them (loom runs a model's threads on one OS thread; the lock is for the
/// test harness's own threads).
struct FreeLists {
    lock: std::sync::atomic::AtomicBool,
    heads: std::cell::UnsafeCell<[*mut u8; BUCKETS]>,
}

// SAFETY: `heads` is only touched while `lock` is held.
unsafe impl Sync for FreeLists {}

static FREE: FreeLists = FreeLists {
    lock: std::sync::atomic::AtomicBool::new(false),
    heads: std::cell::UnsafeCell::new([std::ptr::null_mut(); BUCKETS]),
};

impl FreeLists {
    fn with<R>(&self, f: impl FnOnce(&mut [*mut u8; BUCKETS]) -> R) -> R {
        // ORDERING: Acquire/Release: a plain spin lock over `heads`.
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: the lock is held: nobody else touches `heads`.
        let r = f(unsafe { &mut *self.heads.get() });
        // ORDERING: Release: hands `heads` to the next holder.
        self.lock.store(false, Ordering::Release);
        r
    }
}

/// The free list a layout is served from, if any.
fn bucket(layout: std::alloc::Layout) -> Option<usize> {
    (layout.align() >= 32 && layout.align() <= BUCKET && layout.size() <= BUCKETS * BUCKET)
        .then(|| layout.size().max(1).div_ceil(BUCKET) - 1)
}

// SAFETY: every block comes from `System` with a layout at least as large and as aligned as
// the one asked for (a bucket's blocks all have the bucket's size and 64-byte alignment),
// and a block goes back to the list of the bucket it was served from, which `dealloc`'s
// layout (the same as `alloc`'s) selects again.
unsafe impl std::alloc::GlobalAlloc for ReplayableAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let Some(b) = bucket(layout) else {
            // SAFETY: forwarded as is.
            return unsafe { std::alloc::System.alloc(layout) };
        };
        let recycled = FREE.with(|heads| {
            let block = heads[b];
            if !block.is_null() {
                // SAFETY: a block on the list holds the next block's address.
                heads[b] = unsafe { block.cast::<*mut u8>().read() };
            }
            block
        });
        if !recycled.is_null() {
            return recycled;
        }
        // SAFETY: a non-zero size and a valid power-of-two alignment.
        unsafe {
            std::alloc::System.alloc(std::alloc::Layout::from_size_align_unchecked(
                (b + 1) * BUCKET,
                BUCKET,
            ))
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        let Some(b) = bucket(layout) else {
            // SAFETY: forwarded as is.
            return unsafe { std::alloc::System.dealloc(ptr, layout) };
        };
        FREE.with(|heads| {
            // SAFETY: the block is ours again, at least 64 bytes and aligned for a pointer.
            unsafe { ptr.cast::<*mut u8>().write(heads[b]) };
            heads[b] = ptr;
        });
    }
}

#[global_allocator]
static ALLOCATOR: ReplayableAllocator = ReplayableAllocator;
