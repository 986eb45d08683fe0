//! Memory: what `Promise` and `ActionQueue` free, drop exactly once, or keep, measured with
//! a counting global allocator. Covered: a zero-timeout wait registers (allocates) no waiter;
//! a value whose `Drop` panics panics where the last handle is dropped and the block is freed
//! anyway; every unrun callback of a promise and every unrun action of a queue is dropped
//! even if one of them panics, with nothing leaked; a callback dropping the other handles of
//! its promise frees everything, one owning a handle of its own promise is a cycle (a leak,
//! as with `Arc`) until the promise is set; polling `wait_idle` on a busy queue does not grow
//! the queue.
//!
//! The allocator keeps a per-thread balance of live bytes (allocations minus frees made *by
//! this thread*), so tests running in parallel do not disturb each other; a test that wants
//! to show "nothing leaked" does all the allocating and freeing on one thread. Every test of
//! the behaviour files that measures memory this way lives here, so that only this binary
//! installs the allocator (`tests/alloc_count.rs` counts allocations per operation with the
//! same allocator; `tests/stress.rs` has its own).
//!
//! Intentional panics carry the word `intentional`; a panic hook keeps them off stderr.
#![cfg(not(loom))]

mod util;

use orderslip::{ActionQueue, Promise, PromiseError};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use util::{counter, load, quiet_intentional_panics, Bomb, DropCounter, DEADLINE};

#[global_allocator]
static ALLOC: util::alloc::Counting = util::alloc::Counting;
use util::alloc::live_bytes;

// ---- a zero timeout allocates nothing ----

#[test]
fn zero_timeout_polls_and_never_registers_a_waiter() {
    let p: Promise<u32, ()> = Promise::with_setter(None);
    let before = live_bytes();
    assert_eq!(p.result(Duration::ZERO), Err(PromiseError::Timeout));
    assert_eq!(live_bytes(), before, "no waiter node was allocated");
    // Designated setter: Deadlock wins over the zero timeout (it is the more useful answer).
    let mine: Promise<u32, ()> = Promise::new();
    assert_eq!(mine.result(Duration::ZERO), Err(PromiseError::Deadlock));
    // Abandoned wins too.
    let orphan: Promise<u32, ()> = Promise::with_setter(None);
    drop(orphan.clone());
    assert_eq!(orphan.result(Duration::ZERO), Err(PromiseError::Abandoned));
    // Set: the value, from any thread.
    p.set_result(3).unwrap();
    mine.set_result(4).unwrap();
    assert_eq!(p.result(Duration::ZERO), Ok(&3));
    assert_eq!(mine.result(Duration::ZERO), Ok(&4));
    // Queue: an idle queue is idle at once; a busy one is not.
    let queue = ActionQueue::new();
    assert!(queue.wait_idle(Duration::ZERO));
    let (release, gate) = mpsc::channel::<()>();
    queue.put(move || gate.recv().unwrap());
    assert!(!queue.wait_idle(Duration::ZERO));
    release.send(()).unwrap();
    assert!(queue.wait_idle(DEADLINE));
}

// ---- values and captured state whose Drop panics ----

#[test]
fn a_value_whose_drop_panics_panics_in_the_thread_that_drops_the_last_handle() {
    // Reasonable outcome: like `Arc<T>`, the panic surfaces where the last handle is dropped,
    // the value's destructor ran exactly once and the shared block is freed anyway.
    quiet_intentional_panics();
    let drops = counter();
    // A first panic on this thread may set up per-thread state; do it before measuring.
    assert!(panic::catch_unwind(|| panic!("intentional: warm-up")).is_err());
    let before = live_bytes();
    let p: Promise<Bomb, ()> = Promise::with_setter(None);
    let q = p.clone();
    q.set_result(Bomb(drops.clone())).unwrap();
    assert!(p.result(Duration::ZERO).is_ok());
    drop(q); // not the last handle: nothing happens
    assert_eq!(load(&drops), 0);
    let dropped = panic::catch_unwind(AssertUnwindSafe(move || drop(p))).is_err();
    assert!(dropped, "the value's panic reached the dropper");
    assert_eq!(load(&drops), 1, "dropped exactly once");
    assert_eq!(live_bytes(), before, "the promise's block was freed anyway");
    // As an error value, and refused on a second set (handed back to the caller).
    let p: Promise<(), Bomb> = Promise::new();
    p.set_exception(Bomb(drops.clone())).unwrap();
    let refused = p.set_exception(Bomb(drops.clone())).unwrap_err();
    assert!(panic::catch_unwind(AssertUnwindSafe(move || drop(refused))).is_err());
    assert!(panic::catch_unwind(AssertUnwindSafe(move || drop(p))).is_err());
    assert_eq!(load(&drops), 3);
    assert_eq!(live_bytes(), before);
}

/// Drops a promise that was never set and holds two unrun callbacks: the newest captures a
/// `Bomb`, the older a `DropCounter`. Returns (bombs dropped, counters dropped, whether the
/// drop panicked, bytes this thread leaked).
fn drop_unset_promise_with_a_bomb_callback() -> (usize, usize, bool, isize) {
    quiet_intentional_panics();
    let (bombs, others) = (counter(), counter());
    assert!(panic::catch_unwind(|| panic!("intentional: warm-up")).is_err());
    let before = live_bytes();
    let p: Promise<u32, ()> = Promise::with_setter(None);
    let o = DropCounter(others.clone());
    p.then(move |_| drop(o)); // registered first: last in the newest-first list
    let b = Bomb(bombs.clone());
    p.then(move |_| drop(b));
    let panicked = panic::catch_unwind(AssertUnwindSafe(move || drop(p))).is_err();
    (load(&bombs), load(&others), panicked, live_bytes() - before)
}

/// Regression: `Drop for Inner` used to stop at the first unrun callback whose drop panics,
/// leaking the rest of the list. Now it drops every callback and re-raises the first panic
/// in the thread that dropped the last handle, as std's containers do.
#[test]
fn every_unrun_callback_is_dropped_even_if_one_panics() {
    let (bombs, others, panicked, leaked) = drop_unset_promise_with_a_bomb_callback();
    assert!(panicked, "the captured value's panic reached the dropper");
    assert_eq!((bombs, others), (1, 1), "every captured value dropped once");
    assert_eq!(leaked, 0, "nothing leaked");
}

/// Drops a queue whose worker could never start, with four unrun actions queued: the
/// second captures a `Bomb`, the others a `DropCounter`. Returns (bombs dropped, counters
/// dropped, whether the drop panicked, bytes this thread leaked).
fn drop_unstarted_queue_with_a_bomb_action() -> (usize, usize, bool, isize) {
    quiet_intentional_panics();
    let (bombs, others) = (counter(), counter());
    assert!(panic::catch_unwind(|| panic!("intentional: warm-up")).is_err());
    // A first failed spawn may set up per-process state; do it before measuring.
    ActionQueue::builder()
        .stack_size(1 << 60)
        .build()
        .put(|| ());
    let before = live_bytes();
    let queue = ActionQueue::builder().stack_size(1 << 60).build();
    let o = DropCounter(others.clone());
    queue.put(move || drop(o));
    let b = Bomb(bombs.clone());
    queue.put(move || drop(b));
    for _ in 0..2 {
        let o = DropCounter(others.clone());
        queue.put(move || drop(o));
    }
    assert!(!queue.is_running(), "no worker could start");
    let panicked = panic::catch_unwind(AssertUnwindSafe(move || drop(queue))).is_err();
    (load(&bombs), load(&others), panicked, live_bytes() - before)
}

/// Regression (issue 10, defect 6): dropping a queue whose unrun actions include one whose
/// captured state panics on drop used to stop at that action (the panic unwound out of the
/// queue's storage), leaking every action queued after it. Now every action is dropped and
/// the first panic is re-raised in the thread that dropped the last handle, as a promise does
/// for its unrun callbacks. Fails on ed2d89b: 1 of the 3 counters dropped, and bytes leaked.
#[test]
#[cfg_attr(
    miri,
    ignore = "Miri ignores the requested stack size, so the spawn succeeds"
)]
fn every_unrun_action_is_dropped_even_if_one_panics() {
    let (bombs, others, panicked, leaked) = drop_unstarted_queue_with_a_bomb_action();
    assert!(panicked, "the captured value's panic reached the dropper");
    assert_eq!((bombs, others), (1, 3), "every captured value dropped once");
    assert_eq!(leaked, 0, "nothing leaked");
}

// ---- callbacks holding handles of their own promise ----

#[test]
fn a_callback_that_drops_every_other_handle_of_its_promise() {
    let drops = counter();
    let before = live_bytes();
    let p: Promise<DropCounter, ()> = Promise::with_setter(None);
    let others = Arc::new(Mutex::new(vec![p.clone(), p.clone(), p.clone()]));
    let o = others.clone();
    p.then(move |r| {
        assert!(r.is_ok());
        o.lock().unwrap().clear();
    });
    p.set_result(DropCounter(drops.clone())).unwrap();
    assert!(others.lock().unwrap().is_empty());
    assert_eq!(load(&drops), 0, "the setter's handle still holds the value");
    drop(p);
    drop(others);
    assert_eq!(load(&drops), 1);
    assert_eq!(live_bytes(), before, "everything freed");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "leaks on purpose (pinned behaviour); Miri's leak check rejects that"
)]
fn a_callback_owning_a_handle_of_its_own_promise_is_a_cycle_until_the_promise_is_set() {
    // Like an `Arc` cycle: a pending promise whose callback holds one of its handles keeps
    // itself alive. Setting it breaks the cycle (the callback runs and drops the handle);
    // dropping every outside handle unset does not, so the block and the callback leak, and
    // a waiter is told Timeout, not Abandoned (the callback's handle counts as live).
    let before = live_bytes();
    let p: Promise<u32, ()> = Promise::with_setter(None);
    let inside = p.clone();
    p.then(move |_| drop(inside));
    p.set_result(1).unwrap();
    drop(p);
    assert_eq!(
        live_bytes(),
        before,
        "set: the cycle is broken and all is freed"
    );

    let p: Promise<u32, ()> = Promise::with_setter(None);
    let inside = p.clone();
    p.then(move |_| drop(inside));
    assert_eq!(
        p.result(Duration::from_millis(1)),
        Err(PromiseError::Timeout),
        "the callback's handle counts as a live producer"
    );
    drop(p);
    assert!(
        live_bytes() > before,
        "unset: the promise keeps itself alive through its callback (a leak, as with Arc)"
    );
}

// ---- polling wait_idle on a busy queue ----

/// Polls `wait_idle(timeout)` `polls` times while the worker is blocked in an action, and
/// returns how many bytes this thread's polling left allocated until the worker got going
/// again, and how many polls said "idle".
fn poll_wait_idle_while_busy(polls: usize, timeout: Duration) -> (isize, usize) {
    let queue = ActionQueue::new();
    let (release, gate) = mpsc::channel::<()>();
    queue.put(move || gate.recv().unwrap());
    let before = live_bytes();
    let idle = (0..polls).filter(|_| queue.wait_idle(timeout)).count();
    let retained = live_bytes() - before;
    release.send(()).unwrap();
    assert!(queue.wait_idle(DEADLINE));
    (retained, idle)
}

/// Regression: every `wait_idle(Duration::ZERO)` on a busy queue used to queue a marker
/// action (about 88 bytes a poll, drained only when the worker got to them). A poll now
/// answers without queueing anything.
#[test]
fn polling_wait_idle_on_a_busy_queue_does_not_grow_it() {
    const POLLS: usize = if cfg!(miri) { 20 } else { 10_000 };
    let (retained, idle) = poll_wait_idle_while_busy(POLLS, Duration::ZERO);
    assert_eq!(idle, 0, "busy: never idle");
    assert!(
        retained < 1024,
        "{POLLS} polls of wait_idle(ZERO) retained {retained} bytes"
    );
}

/// Regression (issue 10, defect 8b): a `wait_idle` with a short non-zero timeout that
/// expired while the queue was busy left its marker action queued (about 86 bytes each,
/// drained only when the worker got to them), so a loop polling
/// `wait_idle(Duration::from_micros(1))` grew the queue. Now concurrent and successive
/// callers share one pending marker. Fails on ed2d89b: about 175 000 bytes retained.
#[test]
fn polling_wait_idle_with_a_short_timeout_does_not_grow_a_busy_queue() {
    const POLLS: usize = if cfg!(miri) { 20 } else { 2_000 };
    for timeout in [Duration::from_micros(1), Duration::from_micros(20)] {
        let (retained, idle) = poll_wait_idle_while_busy(POLLS, timeout);
        assert_eq!(idle, 0, "busy: never idle");
        println!(
            "{POLLS} polls of wait_idle({timeout:?}) on a busy queue retained {retained} bytes"
        );
        // One shared marker and its promise, plus at most a queue block: not one per poll.
        assert!(
            retained < 4 * 1024,
            "{POLLS} polls of wait_idle({timeout:?}) retained {retained} bytes"
        );
    }
}

// ---- the heap cost of an idle pool-backed queue ----

/// What an idle pool-backed queue that has run work keeps on the heap: its shared block
/// (state, the action FIFO's head and tail, the handles' count, the idle waiters' lock...),
/// its name, and the FIFO's current block of 15 slots, which stays after the queue has
/// drained. Measured on one thread: the queue is built here and every put is made here; the
/// pool thread only pops (it frees a block when it moves past a full one, so fewer than one
/// block's worth of actions is put, and nothing is freed on another thread).
///
/// Measured: 832 bytes (the shared block of about 200 bytes, its name, and the FIFO's 608-byte
/// block); the issue asks for at most 1,536 (1.5 KB), and 512 as a stretch (not reached: the
/// block alone is 608). Before the queue had its own FIFO (`src/sync/fifo.rs`),
/// `crossbeam_queue::SegQueue` made it 1,904 bytes: 256 of cache-padded head and tail (which
/// made the shared block 640), and a block of 31 slots (1,248).
#[test]
fn an_idle_pool_backed_queue_that_has_run_work_keeps_under_1_5_kilobytes() {
    // A long keep-alive: the pool thread stays up, so no measured `put` spawns one (a spawn
    // allocates on the spawning thread, and those blocks are freed elsewhere).
    let pool = orderslip::WorkerPool::builder()
        .max_threads(1)
        .keep_alive(Duration::from_secs(600))
        .build();
    let warm = ActionQueue::builder().pool(&pool).build();
    assert!(warm.submit(|| ()).wait().is_ok()); // the pool thread is up; lazy statics too
    let before = live_bytes();
    let queue = ActionQueue::builder().pool(&pool).build();
    for _ in 0..10 {
        queue.put(|| ());
    }
    // Polled with zero timeouts, which allocate nothing (a waiting `wait_idle` makes a
    // signal promise, which the pool thread may be the last to drop, and free).
    assert!(util::wait_until(|| queue.wait_idle(Duration::ZERO)));
    let kept = live_bytes() - before;
    println!("an idle pool-backed queue keeps {kept} bytes");
    assert!(kept <= 1536, "an idle pool-backed queue keeps {kept} bytes");
    assert!(
        kept <= 900,
        "{kept} bytes: more than the 832 measured when this was written"
    );
}
