//! Setting a `Promise` and waiting for it: `set_result` and `set_exception` and what the
//! readers (`result`, `wait`, `try_result`) get, a second set refused with the value handed
//! back, a waiter timing out while another thread is the setter, every waiting thread and
//! task woken by the set, clones sharing one slot, values dropped exactly once, timeouts at
//! the extremes (zero, huge, `Duration::MAX` and its neighbours: no overflow, and the errors
//! still come at once), the error types' messages, and `Send`/`Sync`/`Debug`. The first
//! section is the seed's `quickrpc.promise` behaviours.
//!
//! The other ways a wait ends are in their own files: `Deadlock` in
//! `tests/promise_deadlock.rs`, `Abandoned` in `tests/promise_abandon.rs`; async waits are in
//! `tests/promise_async.rs`, and that a zero-timeout poll allocates nothing is measured in
//! `tests/memory.rs`.
// Not under shuttle either: `with_setter` takes the backend's `ThreadId`, shuttle's there.
#![cfg(not(any(loom, shuttle)))]

mod util;

use orderslip::{ActionQueue, Promise, PromiseDoneError, PromiseError};
use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};
use util::{block_on, owned, wait_until, DropCounter};

// ---- the seed's behaviours ----

#[test]
fn set_then_get() {
    let p: Promise<i32, String> = Promise::new();
    p.set_result(5).unwrap();
    assert_eq!(p.result(Promise::<i32, String>::DEFAULT_TIMEOUT), Ok(&5));
    assert!(p.is_done());
}

#[test]
fn exception_is_reported_as_failed() {
    let p: Promise<i32, String> = Promise::new();
    p.set_exception("broken pipe".into()).unwrap();
    assert_eq!(
        p.result(Duration::from_secs(1)),
        Err(PromiseError::Failed(&"broken pipe".to_string()))
    );
    assert_eq!(p.try_result(), Some(Err(&"broken pipe".to_string())));
}

#[test]
fn times_out_while_another_thread_is_the_setter() {
    let (tx, rx) = mpsc::channel::<()>();
    let setter = thread::spawn(move || rx.recv().ok());
    let p: Promise<i32, ()> = Promise::with_setter(Some(setter.thread().id()));
    let start = Instant::now();
    assert_eq!(
        p.result(Duration::from_millis(50)),
        Err(PromiseError::Timeout)
    );
    assert!(
        start.elapsed() >= Duration::from_millis(50),
        "waited the timeout"
    );
    drop(tx);
    setter.join().unwrap();
}

#[test]
fn second_set_is_an_error_that_hands_the_value_back() {
    let p: Promise<String, String> = Promise::new();
    p.set_result("first".into()).unwrap();
    let refused: PromiseDoneError<String> = p.set_result("second".into()).unwrap_err();
    assert_eq!(refused.0, "second");
    let refused = p.set_exception("late error".into()).unwrap_err();
    assert_eq!(refused.into_inner(), "late error");
    let refused = p.set_result("third".into()).unwrap_err();
    assert!(refused.is_already_set());
    let as_error: &dyn Error = &refused;
    assert!(as_error.to_string().contains("already set"));
    assert_eq!(p.result(Duration::ZERO), Ok(&"first".to_string()));
}

// ---- beyond the seed: the slot and its readers ----

#[test]
fn many_threads_and_tasks_are_all_woken() {
    let p = Arc::new(Promise::<String, ()>::with_setter(None));
    let started = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..12)
        .map(|i| {
            let (p, started) = (p.clone(), started.clone());
            thread::spawn(move || {
                started.fetch_add(1, Ordering::SeqCst);
                let r = if i % 2 == 0 {
                    p.wait().cloned()
                } else {
                    block_on(p.wait_async()).cloned()
                };
                r.map_err(|e| e.cloned())
            })
        })
        .collect();
    assert!(wait_until(|| started.load(Ordering::SeqCst) == 12));
    p.set_result("ready".into()).unwrap();
    for w in waiters {
        assert_eq!(w.join().unwrap(), Ok("ready".to_string()));
    }
}

#[test]
fn clones_share_one_slot() {
    let a: Promise<i32, ()> = Promise::new();
    let b = a.clone();
    let c = b.clone();
    assert!(!c.is_done());
    b.set_result(10).unwrap();
    assert!(a.is_done() && c.is_done());
    assert_eq!(c.try_result(), Some(Ok(&10)));
    assert!(a.set_result(11).is_err(), "the slot is shared");
}

#[test]
fn values_are_dropped_exactly_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    // Set, read, dropped with the last handle.
    let p: Promise<DropCounter, DropCounter> = Promise::new();
    let q = p.clone();
    q.set_result(DropCounter(drops.clone())).unwrap();
    assert!(p.result(Duration::ZERO).is_ok());
    drop(p);
    assert_eq!(drops.load(Ordering::SeqCst), 0, "alive while a handle is");
    drop(q);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    // Set but never read.
    let p: Promise<DropCounter, DropCounter> = Promise::new();
    p.set_exception(DropCounter(drops.clone())).unwrap();
    drop(p);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    // A refused second set hands the value back; the caller drops it.
    let p: Promise<DropCounter, DropCounter> = Promise::new();
    p.set_result(DropCounter(drops.clone())).unwrap();
    let refused = p.set_result(DropCounter(drops.clone())).unwrap_err();
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    drop(refused);
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    drop(p);
    assert_eq!(drops.load(Ordering::SeqCst), 4);
    // Never set: nothing to drop, and the unrun callback (owning a counter) is dropped.
    let p: Promise<DropCounter, DropCounter> = Promise::new();
    let owned = DropCounter(drops.clone());
    p.then(move |_| drop(owned));
    drop(p);
    assert_eq!(drops.load(Ordering::SeqCst), 5);
}

// ---- extreme timeouts ----

#[test]
fn zero_timeout_polls_and_huge_timeouts_do_not_overflow() {
    let p: Promise<i32, ()> = Promise::with_setter(None);
    assert_eq!(p.result(Duration::ZERO), Err(PromiseError::Timeout));
    let q = p.clone();
    let t = thread::spawn(move || owned(q.result(Duration::MAX)));
    let r = p.clone();
    let u = thread::spawn(move || owned(r.result(Duration::new(u64::MAX, 999_999_999))));
    p.set_result(6).unwrap();
    assert_eq!(t.join().unwrap(), Ok(6));
    assert_eq!(u.join().unwrap(), Ok(6));
    let mine: Promise<i32, ()> = Promise::new();
    assert_eq!(mine.result(Duration::MAX), Err(PromiseError::Deadlock));
}

#[test]
fn duration_max_waits_without_limit_and_still_reports_errors_at_once() {
    for timeout in [
        Duration::MAX,
        Duration::new(u64::MAX, 999_999_999),
        Duration::from_secs(u64::MAX),
        // Fits in an `Instant` on Linux (i64 seconds), so this one is a real, distant deadline.
        Duration::from_secs(1 << 62),
        Duration::from_secs(u64::MAX / 2),
    ] {
        let p: Promise<u32, ()> = Promise::with_setter(None);
        let q = p.clone();
        let waiter = thread::spawn(move || owned(q.result(timeout)));
        p.set_result(9).unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(9), "{timeout:?}");

        let orphan: Promise<u32, ()> = Promise::with_setter(None);
        let producer = orphan.clone();
        let waiter = thread::spawn(move || owned(orphan.result(timeout)));
        drop(producer);
        assert_eq!(
            waiter.join().unwrap(),
            Err(PromiseError::Abandoned),
            "{timeout:?}"
        );

        let mine: Promise<u32, ()> = Promise::new();
        assert_eq!(mine.result(timeout), Err(PromiseError::Deadlock));

        let queue = ActionQueue::new();
        let done = queue.submit(|| 1);
        assert!(queue.wait_idle(timeout), "{timeout:?}");
        assert_eq!(done.result(timeout), Ok(&1));
    }
}

#[test]
fn timed_out_waits_leave_nothing_registered() {
    // Each timed-out wait unregisters itself; a later set then wakes nobody stale, and the
    // values still reach a later waiter. (The allocation-level proof is in tests/stress.rs.)
    let p: Promise<i32, ()> = Promise::with_setter(None);
    for _ in 0..if cfg!(miri) { 10 } else { 1000 } {
        assert_eq!(
            p.result(Duration::from_micros(1)),
            Err(PromiseError::Timeout)
        );
    }
    p.set_result(1).unwrap();
    assert_eq!(p.wait(), Ok(&1));
}

// ---- errors and traits ----

#[test]
fn errors_explain_themselves() {
    #[derive(Debug, Clone, PartialEq)]
    struct Refused;
    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection refused")
        }
    }
    impl Error for Refused {}

    let failed: PromiseError<Refused> = PromiseError::Failed(Refused);
    assert!(failed.to_string().contains("connection refused"));
    // The inner error is printed by Display, so it is not a source too (issue 13).
    assert!(failed.source().is_none());
    for e in [
        PromiseError::<Refused>::Timeout,
        PromiseError::Deadlock,
        PromiseError::Abandoned,
    ] {
        assert!(e.source().is_none());
        assert!(e.to_string().len() > 20, "a sentence: {e}");
    }
    let borrowed: PromiseError<&Refused> = PromiseError::Failed(&Refused);
    assert_eq!(borrowed.cloned(), PromiseError::Failed(Refused));
    let boxed: Box<dyn Error> = Box::new(PromiseError::<Refused>::Timeout);
    assert!(boxed.to_string().contains("timed out"));
}

#[test]
fn promise_is_send_sync_and_debug() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Promise<String, std::io::Error>>();
    assert_send_sync::<PromiseError<String>>();
    fn assert_send<T: Send>(_: &T) {}
    let p: Promise<i32, ()> = Promise::new();
    assert_send(&p.wait_async());
    assert_eq!(
        format!("{p:?}"),
        format!(
            "Promise {{ state: \"pending\", setter: Thread({:?}) }}",
            thread::current().id()
        )
    );
    p.set_result(1).unwrap();
    assert!(format!("{p:?}").contains("fulfilled"));
}
