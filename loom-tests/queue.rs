//! Loom models of the action queue's worker-alive protocol: one model per race.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_queue`.
//! Worker threads are loom threads, and loom allows at most 5 threads per model (counting
//! every worker incarnation), so each model puts at most two batches of work. Under loom a
//! keep-alive park yields once and then times out, so the linger-then-retire path is
//! explored without a clock.
//!
//! The queue models are bounded (a preemption bound set per test, printed by `bounded`): each
//! has the main thread plus one to three worker incarnations, and the state space grows
//! about threefold per extra preemption (`put_vs_retire`: 23 000 executions at 4, 84 000
//! at 5, 248 000 at 6, 641 000 at 7), so the unbounded runs do not finish in 10 minutes.
//!
//! Under loom, `SegQueue` is a loom `Mutex<VecDeque>` (`src/sync/loom.rs`). That costs one
//! scheduling point per push, pop or emptiness check, not two: loom 0.7 branches on an
//! uncontended `lock` but not on the unlock, and nothing inside the lock is a scheduling
//! point, so the lock is as cheap as one atomic operation. A lock-free stand-in built from
//! loom atomics (commit 23b66c6: one word with head, tail and per-slot ready bits) made the
//! models bigger, not smaller: a push and a pop cost two scheduling points each, and its
//! loads may read stale values (`put_vs_retire` at 5: 120 000 executions instead of 84 000;
//! `two_wait_idles_vs_drain_end` at 2: 898 000 instead of 143 000). What shrank the
//! keep-alive models is the parker stand-in: a timed park is one yield, without taking the
//! token under the lock before and after it (`keep_alive_timeout_vs_put` at 4: 119 000
//! executions instead of 195 000). The bounds below keep the loom step of CI within about
//! 20 minutes on a 2-core machine (the whole `.ci/run` about 27); each test gives its time.
#![cfg(loom)]

mod util;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use orderslip::{ActionQueue, PromiseError};
use std::time::Duration;
use util::bounded;

fn zero_keep_alive() -> ActionQueue {
    ActionQueue::builder().keep_alive(Duration::ZERO).build()
}

/// put ∥ retire (the lost wake-up): the worker runs the first action and retires while the
/// second is put; the second must run, after the first. Skipping the worker's re-check
/// after `swap(PARKED)`, or making its retiring CAS a plain store, fails this model (a
/// deadlock: the second action is stranded) from 2 preemptions up.
///
/// Bounded to 7 preemptions: 33 s, 641 000 executions (6: 13 s; before the parker change,
/// 5: 4-8 s).
#[test]
fn put_vs_retire() {
    bounded(7, || {
        let queue = zero_keep_alive();
        let log = Arc::new(AtomicUsize::new(0));
        let first = log.clone();
        queue.put(move || {
            assert_eq!(first.swap(1, Ordering::Relaxed), 0);
        });
        let second = log.clone();
        let done = queue.submit(move || second.swap(2, Ordering::Relaxed));
        assert_eq!(done.wait(), Ok(&1), "the second action ran after the first");
        assert_eq!(log.load(Ordering::Relaxed), 2);
    });
}

/// Two producers' puts ∥ a retiring worker: every action runs exactly once.
///
/// Bounded to 5 preemptions: two producers plus up to two worker incarnations; 805 s,
/// 12 215 000 executions on an otherwise idle 2-core machine (4: 176 s, 2 792 000; 3: 29 s,
/// 451 000). The longest model of the suite: it is most of CI's loom step, and 6 (about
/// fivefold again) would not fit CI's 45 minutes.
#[test]
fn two_puts_vs_retire() {
    bounded(5, || {
        let queue = Arc::new(zero_keep_alive());
        let runs = Arc::new(AtomicUsize::new(0));
        let (q, r) = (queue.clone(), runs.clone());
        let producer = thread::spawn(move || {
            let r2 = r.clone();
            q.submit(move || r2.fetch_add(1, Ordering::Relaxed))
        });
        let r = runs.clone();
        let mine = queue.submit(move || r.fetch_add(1, Ordering::Relaxed));
        let theirs = producer.join().unwrap();
        let a = *mine.wait().unwrap();
        let b = *theirs.wait().unwrap();
        assert_eq!(a + b, 1, "one ran first (saw 0), the other second (saw 1)");
        assert_eq!(runs.load(Ordering::Relaxed), 2);
    });
}

/// A keep-alive park timing out ∥ a put: the put either unparks the lingering worker (the
/// retiring CAS fails) or finds it retired and spawns a new one; the action runs either way.
///
/// Bounded to 6 preemptions: 110 s, 2 257 000 executions on an otherwise idle 2-core
/// machine (5: 27 s, 573 000; 4: 11 s).
#[test]
fn keep_alive_timeout_vs_put() {
    bounded(6, || {
        let queue = ActionQueue::builder()
            .keep_alive(Duration::from_secs(1))
            .build();
        let first = queue.submit(|| 1);
        assert_eq!(first.wait(), Ok(&1));
        let second = queue.submit(|| 2);
        assert_eq!(second.wait(), Ok(&2));
    });
}

/// A panicking action ∥ a put: the panic is caught, the worker's bookkeeping survives, and
/// the next action runs.
#[test]
fn panicking_action_vs_put() {
    bounded(4, || {
        let queue = zero_keep_alive();
        let failed = queue.submit(|| -> u8 { panic!("boom") });
        let next = queue.submit(|| 7u8);
        assert_eq!(next.wait(), Ok(&7));
        match failed.wait() {
            Err(PromiseError::Failed(e)) => assert_eq!(e.message(), Some("boom")),
            other => panic!("unexpected {other:?}"),
        }
    });
}

/// Drop of the queue ∥ a running worker: the queued actions still run, and the worker exits
/// (loom fails a model whose threads never finish).
#[test]
fn drop_vs_running_worker() {
    bounded(4, || {
        let queue = ActionQueue::builder()
            .keep_alive(Duration::from_secs(1))
            .build();
        let first = queue.submit(|| 1);
        let second = queue.submit(|| 2);
        drop(queue);
        assert_eq!(first.wait(), Ok(&1));
        assert_eq!(second.wait(), Ok(&2));
    });
}

/// An action that drops the last handle to its own queue: the worker finishes and exits.
#[test]
fn action_drops_its_own_queue() {
    bounded(4, || {
        let queue = Arc::new(zero_keep_alive());
        let handle = std::sync::Mutex::new(Some(queue.clone()));
        let done = queue.submit(move || {
            drop(handle.lock().unwrap().take());
            3
        });
        drop(queue);
        assert_eq!(done.wait(), Ok(&3));
    });
}

/// wait_idle ∥ a lingering worker (issue 10, defect 8a): right after `wait_idle` said the
/// queue is idle, the worker may still be finishing its drain, spinning or about to park with
/// its state RUNNING; a zero-timeout `wait_idle` must still say idle, since the queue is
/// empty and no action runs. Fails on ed2d89b (whose check read the worker state).
///
/// Bounded to 5 preemptions: 5-10 s on 2 shared cores (3: 0.2 s).
#[test]
fn wait_idle_vs_lingering_worker() {
    bounded(5, || {
        let queue = ActionQueue::builder()
            .keep_alive(Duration::from_secs(1))
            .build();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        queue.put(move || {
            r.store(1, Ordering::Relaxed);
        });
        assert!(queue.wait_idle(Duration::MAX));
        assert_eq!(ran.load(Ordering::Relaxed), 1, "idle means the action ran");
        assert!(
            queue.wait_idle(Duration::ZERO),
            "a drained queue whose worker lingers is idle"
        );
    });
}

/// Two `wait_idle` callers ∥ the end of the drain: they share one marker and one signal,
/// whichever registers first, and the worker's end of drain wakes both (neither is left
/// waiting: loom fails a model whose threads never finish).
///
/// The keep-alive is too large for the clock, so the worker parks without a deadline and
/// retires only when the queue is dropped: one worker incarnation, which keeps the model
/// within loom's five threads (with retirements, each marker could need a new worker).
///
/// Bounded to 2 preemptions: 10-12 s on 2 shared cores, 143 000 executions (3: 456 s).
#[test]
fn two_wait_idles_vs_drain_end() {
    bounded(2, || {
        let queue = Arc::new(ActionQueue::builder().keep_alive(Duration::MAX).build());
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        queue.put(move || {
            r.store(1, Ordering::Relaxed);
        });
        let (q, r) = (queue.clone(), ran.clone());
        let other = thread::spawn(move || {
            assert!(q.wait_idle(Duration::MAX));
            r.load(Ordering::Relaxed)
        });
        assert!(queue.wait_idle(Duration::MAX));
        assert_eq!(ran.load(Ordering::Relaxed), 1);
        assert_eq!(other.join().unwrap(), 1);
    });
}

/// `join` on one handle ∥ the drop of a clone on another thread, either of which may turn out
/// to be the last handle (issue 13): when `join` returns `true`, the action queued before it
/// has run; whichever handle goes last closes the queue, and every thread finishes (the
/// worker lets go; `join` on the last handle also waits for the queue to be freed).
///
/// Bounded to 3 preemptions: 5.5 s, 92 000 executions (4: 53 s, 852 000, on 2 shared cores,
/// too much beside the rest of the suite); `join` adds two promises and a lock to the
/// worker's protocol, and the model has three threads and the worker.
#[test]
fn join_vs_drop_of_a_clone() {
    bounded(3, || {
        let queue = ActionQueue::builder()
            .keep_alive(Duration::from_secs(1))
            .build();
        let clone = queue.clone();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        queue.put(move || {
            r.fetch_add(1, Ordering::Relaxed);
        });
        let t = thread::spawn(move || drop(clone));
        assert!(queue.join(Duration::MAX));
        assert_eq!(ran.load(Ordering::Relaxed), 1);
        t.join().unwrap();
    });
}
