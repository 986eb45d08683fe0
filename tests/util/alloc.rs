//! A counting global allocator: `System`, with each thread's allocations, frees and live
//! bytes counted in thread-locals of the thread that makes them, so a test measures only its
//! own thread and tests can run in parallel. A test binary that uses it declares
//! `#[global_allocator] static ALLOC: util::alloc::Counting = util::alloc::Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// `System`, counting per thread (see the module docs).
pub struct Counting;

std::thread_local! {
    // `const` initialisers without destructors: reading them never allocates, so the
    // allocator may use them.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static FREES: Cell<u64> = const { Cell::new(0) };
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

/// Records one event of this thread. `try_with`: during thread teardown the slots may be
/// gone; such calls are not a test's.
fn account(allocs: u64, frees: u64, bytes: isize) {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + allocs));
    let _ = FREES.try_with(|c| c.set(c.get() + frees));
    let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + bytes));
}

// SAFETY: every method forwards to `System` with the caller's arguments; the accounting
// touches only const-initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            account(1, 0, layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            account(1, 0, layout.size() as isize);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            account(1, 1, new_size as isize - layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(0, 1, -(layout.size() as isize));
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations and frees this thread made while running `f`, and its result.
pub fn counted<R>(f: impl FnOnce() -> R) -> (u64, u64, R) {
    let (a0, f0) = (ALLOCS.with(Cell::get), FREES.with(Cell::get));
    let r = f();
    let (a1, f1) = (ALLOCS.with(Cell::get), FREES.with(Cell::get));
    (a1 - a0, f1 - f0, r)
}

/// Bytes this thread allocated and did not free (frees of other threads' blocks count
/// negative here).
pub fn live_bytes() -> isize {
    LIVE_BYTES.with(Cell::get)
}
