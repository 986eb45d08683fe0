//! Helpers shared by the loom models.
#![allow(dead_code)] // each model file uses a subset

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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
