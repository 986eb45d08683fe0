//! Allocation counts of the hot paths, measured with a counting global allocator.
//!
//! Every allocation and deallocation is counted in a thread-local counter of the thread that
//! makes it, so each test measures only its own thread (the test harness's other threads and
//! the queue's worker thread do not disturb the counts) and the tests can run in parallel.
//!
//! What is pinned down here (the README's "Performance" section cites them):
//!
//! | operation                                   | allocations                          |
//! |---------------------------------------------|--------------------------------------|
//! | `Promise::new()` / `with_setter(..)`        | exactly 1 (the shared block)         |
//! | `set_result`/`set_exception`, then `result`/`wait`/`try_result` | 0                |
//! | `clone`, dropping a clone                   | 0 (and 0 frees)                      |
//! | dropping the last handle                    | 0 allocations, exactly 1 free        |
//! | a blocking wait that parks (then times out) | exactly 1 (its waiter node)          |
//! | `then` on a pending promise                 | exactly 2 (the node and the boxed callback) |
//! | `Promise::channel()`, `Resolver::set_result`, `wait`, drop: the whole life | exactly 1 allocation, exactly 1 free |
//! | a channel: `clone`/drop of a clone, the resolver's set, reads, abandoning drop | 0 |
//! | a blocking wait on a channel that parks     | at most 1 (its waiter node; exactly 1 when it parks until a timeout) |
//! | an owned future (`IntoFuture`) that registers | at most 1 (its node; exactly 1 here), 0 on a re-poll |
//! | `ActionQueue::put` of a closure of at most three words, worker running | only 1 per 15 puts (a block of the queue's FIFO): the closure is kept in the slot |
//! | `ActionQueue::put` of a larger closure      | 1 (the box) + 1 per 15 puts            |
//! | `ActionQueue::put` of a zero-sized closure  | only the FIFO's blocks: 1 per 15 puts |
//! | `ActionQueue::submit` of a small closure    | 1 (the promise) + the blocks           |
// Not under shuttle either: `with_setter` takes the backend's `ThreadId`, shuttle's there.
#![cfg(not(any(loom, shuttle)))]

use orderslip::{ActionQueue, Promise, PromiseError};
use std::future::{Future, IntoFuture};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

mod util;

#[global_allocator]
static GLOBAL: util::alloc::Counting = util::alloc::Counting;
use util::alloc::counted;

/// Allocations this thread made while running `f`.
fn allocs(f: impl FnOnce()) -> u64 {
    counted(f).0
}

/// Makes the thread's lazily allocated state exist (its `Thread` handle, its cached id) so
/// that the first measured call is not charged for it.
fn warm_up_thread() {
    let p: Promise<u64, ()> = Promise::new();
    p.set_result(1).unwrap();
    let _ = black_box(p.wait());
    drop(black_box(std::thread::current()));
}

#[test]
fn the_counter_counts() {
    warm_up_thread();
    assert_eq!(allocs(|| drop(black_box(Box::new(1u64)))), 1);
    assert_eq!(allocs(|| drop(black_box(vec![1u8; 3]))), 1);
    assert_eq!(allocs(|| ()), 0);
}

#[test]
fn creating_a_promise_is_exactly_one_allocation() {
    warm_up_thread();
    let (a, _, p) = counted(Promise::<u64, String>::new);
    assert_eq!(a, 1, "Promise::new");
    let (a, _, q) = counted(|| Promise::<[u8; 256], String>::with_setter(None));
    assert_eq!(a, 1, "Promise::with_setter(None), large value");
    let id = std::thread::current().id();
    let (a, _, r) = counted(|| Promise::<(), ()>::with_setter(Some(id)));
    assert_eq!(a, 1, "Promise::with_setter(Some(id)), unit value");
    // Dropping an unset promise frees that one block and nothing else.
    let (a, f, ()) = counted(move || drop((p, q, r)));
    assert_eq!((a, f), (0, 3));
}

#[test]
fn setting_and_reading_allocate_nothing() {
    warm_up_thread();
    let p: Promise<u64, String> = Promise::new();
    let q: Promise<u64, String> = Promise::with_setter(None);
    let error = "no".to_owned();
    let (a, f, ()) = counted(|| {
        p.set_result(42).unwrap();
        q.set_exception(error).unwrap();
    });
    assert_eq!((a, f), (0, 0), "set_result, set_exception");
    let (a, f, ()) = counted(|| {
        for _ in 0..1000 {
            assert_eq!(black_box(&p).try_result(), Some(Ok(&42)));
            assert_eq!(black_box(&p).result(Duration::from_secs(1)), Ok(&42));
            assert_eq!(black_box(&p).wait(), Ok(&42));
            assert!(black_box(&q).result(Duration::ZERO).is_err());
            assert!(black_box(&p).is_done());
        }
    });
    assert_eq!((a, f), (0, 0), "reading a done promise");
    // A second set fails without allocating (the value comes back).
    let (a, f, ()) = counted(|| assert!(p.set_result(7).is_err()));
    assert_eq!((a, f), (0, 0));
}

#[test]
fn set_with_a_preallocated_value_allocates_nothing() {
    warm_up_thread();
    let p: Promise<Vec<u8>, ()> = Promise::with_setter(None);
    let value = vec![1, 2, 3];
    let (a, f, ()) = counted(|| p.set_result(value).unwrap());
    assert_eq!((a, f), (0, 0));
    let (a, f, ()) = counted(|| assert_eq!(p.wait().unwrap().len(), 3));
    assert_eq!((a, f), (0, 0));
}

#[test]
fn cloning_and_dropping_clones_allocate_nothing() {
    warm_up_thread();
    let p: Promise<u64, ()> = Promise::with_setter(None);
    let (a, f, clones) = counted(|| (0..100).map(|_| p.clone()).collect::<Vec<_>>());
    // The Vec itself is one allocation; the clones none.
    assert_eq!((a, f), (1, 0));
    let (a, f, ()) = counted(|| {
        for c in clones.iter() {
            drop(black_box(c.clone()));
        }
    });
    assert_eq!((a, f), (0, 0), "clone + drop of a clone");
    clones[17].set_result(5).unwrap();
    assert_eq!(p.try_result(), Some(Ok(&5)));
    let (a, f, ()) = counted(|| drop(clones));
    assert_eq!((a, f), (0, 1), "dropping the clones frees only the Vec");
    let (a, f, ()) = counted(|| drop(p));
    assert_eq!((a, f), (0, 1), "the last handle frees the block");
}

#[test]
fn a_wait_that_parks_allocates_its_waiter_node() {
    warm_up_thread();
    let p: Promise<u64, ()> = Promise::with_setter(None);
    // Nobody sets it: the wait spins, pushes its node, parks, times out and prunes the node.
    let (a, f, r) = counted(|| p.result(Duration::from_millis(1)).copied());
    assert_eq!(r, Err(orderslip::PromiseError::Timeout));
    assert_eq!(a, 1, "one waiter node");
    assert_eq!(f, 1, "pruned when the waiter gave up");
    // A zero timeout only polls.
    let (a, f, _) = counted(|| p.result(Duration::ZERO).is_err());
    assert_eq!((a, f), (0, 0));
}

#[test]
fn then_allocates_two_on_a_pending_promise_and_one_on_a_done_one() {
    warm_up_thread();
    let p: Promise<u64, ()> = Promise::with_setter(None);
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let s = seen.clone();
    let (a, _, ()) = counted(|| {
        p.then(move |r| {
            s.store(*r.unwrap(), std::sync::atomic::Ordering::SeqCst);
        })
    });
    assert_eq!(a, 2, "callback node + boxed callback");
    let (a, f, ()) = counted(|| p.set_result(9).unwrap());
    assert_eq!((a, f), (0, 2), "the setter runs and frees them");
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 9);
    // On a done promise whose callbacks have all run, the callback runs at once, unboxed.
    let s = seen.clone();
    let (a, _, ()) = counted(|| {
        p.then(move |r| {
            s.store(*r.unwrap() + 1, std::sync::atomic::Ordering::SeqCst);
        })
    });
    assert_eq!(a, 0, "then on a done promise allocates nothing");
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 10);
}

#[test]
fn a_channel_is_exactly_one_allocation_for_its_whole_life() {
    warm_up_thread();
    let (a, f, v) = counted(|| {
        let (resolver, p) = Promise::<u64, String>::channel();
        resolver.set_result(black_box(42)).unwrap();
        let v = *p.wait().unwrap();
        drop(p);
        v
    });
    assert_eq!(v, 42);
    assert_eq!((a, f), (1, 1), "channel + set + wait + drop");
    // The same with the ends dropped in the other order and the read non-blocking, and with
    // a large value.
    let (a, f, ()) = counted(|| {
        let (resolver, p) = Promise::<[u8; 256], ()>::channel();
        assert!(resolver.set_result([7; 256]).is_ok());
        assert_eq!(p.try_result().map(|r| r.map(|v| v[255])), Some(Ok(7)));
        drop(p);
    });
    assert_eq!((a, f), (1, 1), "large value, try_result");
}

#[test]
fn a_channel_allocates_nothing_per_clone_set_or_read() {
    warm_up_thread();
    let (a, f, (resolver, p)) = counted(Promise::<u64, String>::channel);
    assert_eq!((a, f), (1, 0), "Promise::channel");
    let mut clones = Vec::with_capacity(100);
    let (a, f, ()) = counted(|| clones.extend((0..100).map(|_| p.clone())));
    assert_eq!((a, f), (0, 0), "100 clones");
    let (a, f, ()) = counted(|| {
        for c in clones.iter() {
            drop(black_box(c.clone()));
        }
    });
    assert_eq!((a, f), (0, 0), "clone + drop of a clone");
    let (a, f, ()) = counted(|| resolver.set_result(black_box(5)).unwrap());
    assert_eq!((a, f), (0, 0), "Resolver::set_result");
    let (a, f, ()) = counted(|| {
        for c in clones.iter() {
            assert_eq!(black_box(c).wait(), Ok(&5));
            assert_eq!(black_box(c).try_result(), Some(Ok(&5)));
            assert_eq!(black_box(c).result(Duration::from_secs(1)), Ok(&5));
        }
    });
    assert_eq!((a, f), (0, 0), "reading a done channel");
    // A set on the promise end is refused and hands the value back, without allocating.
    let (a, f, ()) = counted(|| assert!(p.set_result(6).is_err()));
    assert_eq!((a, f), (0, 0), "refused set on the promise end");
    let (a, f, ()) = counted(|| clones.clear());
    assert_eq!((a, f), (0, 0), "dropping the clones (not the last handle)");
    drop(clones);
    let (a, f, ()) = counted(|| drop(p));
    assert_eq!((a, f), (0, 1), "the last handle frees the block");

    // The resolver's other ends: an abandoning drop, and a set nobody can read (the value
    // comes back and the resolver frees the block).
    let (resolver, p) = Promise::<u64, String>::channel();
    let (a, f, ()) = counted(|| drop(resolver));
    assert_eq!((a, f), (0, 0), "dropping the resolver unset");
    assert_eq!(p.wait(), Err(PromiseError::Abandoned));
    let (a, f, ()) = counted(|| drop(p));
    assert_eq!((a, f), (0, 1));
    let (resolver, p) = Promise::<u64, String>::channel();
    drop(p);
    let (a, f, ()) = counted(|| assert_eq!(resolver.set_result(3), Err(3)));
    assert_eq!((a, f), (0, 1), "a closed channel's set frees the block");
}

#[test]
fn a_wait_on_a_channel_that_parks_allocates_at_most_its_waiter_node() {
    warm_up_thread();
    // With the resolver alive and unset, the wait spins, pushes its node, parks, times out
    // and prunes the node: exactly one, as for a shared promise.
    let (resolver, p) = Promise::<u64, ()>::channel();
    let (a, f, r) = counted(|| p.result(Duration::from_millis(1)).copied());
    assert_eq!(r, Err(PromiseError::Timeout));
    assert_eq!(
        (a, f),
        (1, 1),
        "one waiter node, pruned when the waiter gave up"
    );
    let (a, f, _) = counted(|| p.result(Duration::ZERO).is_err());
    assert_eq!((a, f), (0, 0), "a zero timeout only polls");

    // A blocking `wait` that another thread ends, by a set and by an abandoning drop. The
    // wait may park (one node) or see the result while it spins (none): either way it
    // allocates at most one node. Whichever thread lets go of the node last frees it, so
    // this thread frees at most it. (The parked case alone is counted exactly above.)
    let setter = std::thread::spawn(move || {
        resolver.set_result(8).unwrap();
    });
    let (a, f, r) = counted(|| p.wait().copied());
    setter.join().unwrap();
    assert_eq!(r, Ok(8));
    assert!(
        a <= 1 && f <= a,
        "set while parked: {a} allocations, {f} frees"
    );

    let (resolver, p) = Promise::<u64, ()>::channel();
    let q = p.clone();
    let dropper = std::thread::spawn(move || {
        drop(resolver);
    });
    let (a, f, r) = counted(|| q.wait().copied());
    dropper.join().unwrap();
    assert_eq!(r, Err(PromiseError::Abandoned));
    assert!(
        a <= 1 && f <= a,
        "abandoned while parked: {a} allocations, {f} frees"
    );
    drop(p);
}

#[test]
fn an_owned_future_that_registers_allocates_at_most_one_node() {
    warm_up_thread();
    // A waker made outside the measured regions (its clones are reference counts).
    let (waker, woken) = util::counting_waker();
    let mut cx = Context::from_waker(&waker);
    let (resolver, p) = Promise::<u64, ()>::channel();
    let (a, f, fut) = counted(|| IntoFuture::into_future(p));
    assert_eq!((a, f), (0, 0), "into_future");
    let mut fut = pin!(fut);
    let (a, f, r) = counted(|| fut.as_mut().poll(&mut cx));
    assert_eq!(r, Poll::Pending);
    // At most one node; here exactly one, since the first poll of a pending promise
    // always registers.
    assert_eq!((a, f), (1, 0), "the registering poll: its node");
    let (a, f, r) = counted(|| fut.as_mut().poll(&mut cx));
    assert_eq!(r, Poll::Pending);
    assert_eq!((a, f), (0, 0), "a re-poll with the same waker");
    let (a, f, ()) = counted(|| resolver.set_result(11).unwrap());
    assert_eq!(a, 0, "the set that wakes the task");
    assert_eq!(f, 0, "the future still holds its node");
    assert_eq!(woken.count.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The last handle: the value is moved out, the node and the block are freed.
    let (a, f, r) = counted(|| fut.as_mut().poll(&mut cx));
    assert_eq!(r, Poll::Ready(Ok(11)));
    assert_eq!(
        (a, f),
        (0, 2),
        "the ready poll frees the node and the block"
    );

    // A future dropped while registered unregisters and frees its node; with the resolver
    // still alive, the block is left to the resolver, whose set then hands the value back.
    let (resolver, p) = Promise::<u64, ()>::channel();
    let mut fut = Box::pin(IntoFuture::into_future(p));
    let (a, f, r) = counted(|| fut.as_mut().poll(&mut cx));
    assert_eq!(r, Poll::Pending);
    assert_eq!((a, f), (1, 0), "the registering poll: its node");
    let (a, f, ()) = counted(|| drop(fut));
    assert_eq!((a, f), (0, 2), "dropping it frees its node and its box");
    assert!(resolver.is_closed());
    let (a, f, ()) = counted(|| assert_eq!(resolver.set_result(1), Err(1)));
    assert_eq!((a, f), (0, 1), "the resolver frees the block");
}

/// Slots per block of the queue's FIFO (`src/sync/fifo.rs`).
const BLOCK: u64 = 15;
/// How many puts the allocation tests make (many FIFO blocks).
const PUTS: u64 = BLOCK * 80;

/// A queue whose worker is up and stays up (long keep-alive), so that no measured `put`
/// spawns a thread.
fn warm_queue() -> ActionQueue {
    let queue = ActionQueue::builder()
        .keep_alive(Duration::from_secs(600))
        .build();
    queue.put(|| ());
    assert!(queue.wait_idle(Duration::from_secs(30)));
    assert!(queue.is_running());
    queue
}

#[test]
fn put_of_a_small_closure_allocates_only_blocks() {
    warm_up_thread();
    let queue = warm_queue();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let handles: Vec<_> = (0..PUTS).map(|_| ran.clone()).collect();
    let (a, _, ()) = counted(|| {
        for r in handles {
            // An 8-byte closure: stored in the queue's slot, not boxed.
            queue.put(move || {
                r.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
        }
    });
    assert!(queue.wait_idle(Duration::from_secs(30)));
    assert_eq!(ran.load(std::sync::atomic::Ordering::Relaxed), PUTS);
    assert!(queue.is_running(), "the worker stayed up: no put spawned");
    // Only the FIFO's blocks: the pusher allocates a block of 15 slots whenever it
    // fills one (the first may or may not be there already).
    assert!(
        (PUTS / BLOCK - 1..=PUTS / BLOCK + 1).contains(&a),
        "{a} allocations for {PUTS} puts (expected about {})",
        PUTS / BLOCK
    );
}

#[test]
fn put_of_a_large_closure_allocates_a_box_plus_blocks() {
    warm_up_thread();
    let queue = warm_queue();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let handles: Vec<_> = (0..PUTS).map(|_| ran.clone()).collect();
    let (a, _, ()) = counted(|| {
        for r in handles {
            // 8 + 32 bytes: more than the three words kept in place, so it is boxed.
            let payload = [1u64; 4];
            queue.put(move || {
                r.fetch_add(payload[3], std::sync::atomic::Ordering::Relaxed);
            });
        }
    });
    assert!(queue.wait_idle(Duration::from_secs(30)));
    assert_eq!(ran.load(std::sync::atomic::Ordering::Relaxed), PUTS);
    let blocks = a - PUTS;
    assert!(a >= PUTS, "{a} allocations for {PUTS} puts");
    assert!(
        (PUTS / BLOCK - 1..=PUTS / BLOCK + 1).contains(&blocks),
        "{blocks} block allocations for {PUTS} puts (expected about {})",
        PUTS / BLOCK
    );
}

#[test]
fn put_of_a_zero_sized_closure_allocates_only_blocks() {
    warm_up_thread();
    let queue = warm_queue();
    let (a, _, ()) = counted(|| {
        for _ in 0..PUTS {
            queue.put(|| ());
        }
    });
    assert!(queue.wait_idle(Duration::from_secs(30)));
    assert!(queue.is_running(), "the worker stayed up: no put spawned");
    assert!(
        (PUTS / BLOCK - 1..=PUTS / BLOCK + 1).contains(&a),
        "{a} allocations for {PUTS} zero-sized puts (expected about {})",
        PUTS / BLOCK
    );
}

#[test]
fn submit_allocates_the_promise_plus_blocks() {
    warm_up_thread();
    let queue = warm_queue();
    let (a, _, promises) = counted(|| {
        (0..PUTS)
            .map(|i| queue.submit(move || i))
            .collect::<Vec<_>>()
    });
    // Minus the Vec's own allocations (it knows its length up front: one).
    let a = a - 1;
    for (i, p) in promises.iter().enumerate() {
        assert_eq!(p.result(Duration::from_secs(30)), Ok(&(i as u64)));
    }
    // One allocation for the promise; the action (the closure plus the promise's handle) is
    // small enough to be kept in the queue's slot.
    let blocks = a - PUTS;
    assert!(a >= PUTS, "{a} allocations for {PUTS} submits");
    assert!(
        (PUTS / BLOCK - 1..=PUTS / BLOCK + 1).contains(&blocks),
        "{blocks} block allocations for {PUTS} submits"
    );
}
