//! Abandonment: when every handle that could set a pending promise is gone, its waiters get
//! `PromiseError::Abandoned` promptly instead of waiting out their timeout. Covered: prompt
//! report (also to later waiters), every waiting thread and task woken, a set promise never
//! abandoned, a promise shared by reference (never cloned) not abandoned, a setter thread
//! killed by a panic (the waiter parked before or arriving after), a dead producer while
//! another can still set, and overlapping orphaning drops.
//!
//! The overlapping-drop races (issue 10, defect 1) are reproduced deterministically: a `Waker`
//! that blocks inside `wake` (`util::GateWake`) freezes a dropping handle at a known point of
//! its protocol, and the test acts while it is frozen. They failed on the code before the fix
//! (commit ed2d89b). A chained promise abandoned with its source is in
//! `tests/promise_callbacks.rs`; a panicking waker during an orphaning drop in
//! `tests/promise_async.rs`.
#![cfg(not(loom))]

mod util;

use orderslip::{Promise, PromiseError};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Barrier};
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};
use util::{
    block_on, counting_waker, owned, poll_once, quiet_intentional_panics, wait_until, GateWake,
    LONG,
};

type P = Promise<u32, String>;

#[test]
fn abandonment_is_reported_promptly() {
    let p: Promise<i32, ()> = Promise::with_setter(None);
    let producer = p.clone();
    let barrier = Arc::new(Barrier::new(2));
    let b = barrier.clone();
    let t = thread::spawn(move || {
        b.wait();
        drop(producer); // never sets it
    });
    barrier.wait();
    let start = Instant::now();
    assert_eq!(p.result(LONG), Err(PromiseError::Abandoned));
    assert!(start.elapsed() < LONG / 10, "told long before the timeout");
    t.join().unwrap();
    // Also for a waiter that arrives afterwards, and for wait().
    assert_eq!(p.wait(), Err(PromiseError::Abandoned));
}

#[test]
fn abandonment_wakes_every_waiter_thread_and_task() {
    let p = Arc::new(Promise::<i32, ()>::with_setter(None));
    let producer = Promise::clone(&p);
    let waiters: Vec<_> = (0..4)
        .map(|i| {
            let p = p.clone();
            thread::spawn(move || {
                if i % 2 == 0 {
                    owned(p.wait())
                } else {
                    owned(block_on(p.wait_async()))
                }
            })
        })
        .collect();
    drop(producer);
    for w in waiters {
        assert_eq!(w.join().unwrap(), Err(PromiseError::Abandoned));
    }
}

#[test]
fn a_set_promise_is_never_abandoned() {
    let p: Promise<i32, ()> = Promise::with_setter(None);
    let producer = p.clone();
    thread::spawn(move || producer.set_result(8).unwrap())
        .join()
        .unwrap();
    assert_eq!(p.wait(), Ok(&8));
}

#[test]
fn a_promise_shared_by_reference_is_not_abandoned() {
    // Never cloned: a scoped thread sets it through the same handle.
    let p: Promise<i32, ()> = Promise::with_setter(None);
    thread::scope(|s| {
        s.spawn(|| p.set_result(2).unwrap());
        assert_eq!(p.result(LONG), Ok(&2));
    });
}

// ---- a setter thread that dies ----

#[test]
fn a_setter_thread_killed_by_a_panic_abandons_the_promise() {
    // The setter held the only other handle; its unwinding drops it. The waiter gets
    // Abandoned whether it was already parked (woken by the drop) or arrives afterwards.
    quiet_intentional_panics();
    for waiter_parks_first in [true, false] {
        let p: Promise<u32, ()> = Promise::with_setter(None);
        let q = p.clone();
        let (die_tx, die) = mpsc::channel::<()>();
        let setter = thread::spawn(move || {
            die.recv().unwrap();
            let _handle = q;
            panic!("intentional: the setter dies before setting");
        });
        let waiter = if waiter_parks_first {
            let w = thread::spawn(move || (owned(p.wait()), owned(block_on(p.wait_async()))));
            die_tx.send(()).unwrap();
            w
        } else {
            die_tx.send(()).unwrap();
            assert!(setter_finished(&setter));
            thread::spawn(move || (owned(p.wait()), owned(block_on(p.wait_async()))))
        };
        assert_eq!(
            waiter.join().unwrap(),
            (Err(PromiseError::Abandoned), Err(PromiseError::Abandoned))
        );
        assert!(setter.join().is_err(), "the setter panicked");
    }
}

fn setter_finished<T>(handle: &thread::JoinHandle<T>) -> bool {
    wait_until(|| handle.is_finished())
}

#[test]
fn a_dead_setter_does_not_abandon_a_promise_someone_else_can_still_set() {
    quiet_intentional_panics();
    let p: Promise<u32, ()> = Promise::with_setter(None);
    let doomed = p.clone();
    let backup = p.clone();
    let died = thread::spawn(move || {
        let _keep = doomed;
        panic!("intentional: one producer dies");
    })
    .join();
    assert!(died.is_err());
    assert_eq!(
        p.result(Duration::from_millis(1)),
        Err(PromiseError::Timeout)
    );
    let t = thread::spawn(move || backup.set_result(2).unwrap());
    assert_eq!(p.wait(), Ok(&2));
    t.join().unwrap();
}

// ---- defect 1: a clone during an orphaning drop, then dropped, hid the abandonment ----

/// Handle A's drop leaves one live handle, so it wakes the waiters; it is frozen inside that
/// wake. Meanwhile W is cloned (W2), a second waiter registers on W (it sees two live
/// handles, rightly), and W2 is dropped. W2's drop makes W the last handle: it must wake the
/// second waiter. Before the fix, orphaning was decided from the raw count "exactly 2 and
/// LEAVING clear", so W2's drop (raw count 3) woke nobody and the waiter slept for ever
/// (`wait()` hung, `result(t)` timed out instead of reporting `Abandoned`).
#[test]
fn a_clone_made_and_dropped_during_an_orphaning_drop_still_wakes_the_last_waiter() {
    let w = P::with_setter(None);
    let a = w.clone();
    let (gate_waker, gate) = GateWake::new();
    let mut first = Box::pin(w.wait_async());
    assert!(poll_once(first.as_mut(), &gate_waker).is_pending());

    let dropper = thread::spawn(move || drop(a));
    assert!(gate.wait_entered(), "A's drop wakes the first waiter");

    let w2 = w.clone();
    let (waker, woken) = counting_waker();
    let mut second = Box::pin(w.wait_async());
    assert!(
        poll_once(second.as_mut(), &waker).is_pending(),
        "W and W2 are live: not abandoned yet"
    );
    drop(w2);
    gate.release();
    dropper.join().unwrap();

    assert_eq!(
        woken.count.load(Ordering::SeqCst),
        1,
        "dropping W2 left W alone: its waiter must be woken"
    );
    assert_eq!(
        poll_once(second.as_mut(), &waker),
        Poll::Ready(Err(PromiseError::Abandoned))
    );
    assert_eq!(
        poll_once(first.as_mut(), &gate_waker),
        Poll::Ready(Err(PromiseError::Abandoned))
    );
    drop((first, second));
    assert_eq!(
        w.result(Duration::from_secs(60)),
        Err(PromiseError::Abandoned)
    );
}

/// The same with a blocked thread as the second waiter: it must get `Abandoned`, not hang.
/// (On the old code this one failed only when the waiter thread registered before W2 was
/// dropped; the test above is the deterministic reproduction.)
#[test]
fn a_thread_waiting_through_an_overlapping_orphaning_drop_gets_abandoned() {
    let w = P::with_setter(None);
    let a = w.clone();
    let (gate_waker, gate) = GateWake::new();
    let mut first = Box::pin(w.wait_async());
    assert!(poll_once(first.as_mut(), &gate_waker).is_pending());
    let dropper = thread::spawn(move || drop(a));
    assert!(gate.wait_entered());

    let w2 = w.clone();
    thread::scope(|s| {
        let waiter = s.spawn(|| w.result(util::DEADLINE).map_err(|e| e.cloned()).copied());
        drop(w2);
        gate.release();
        assert_eq!(waiter.join().unwrap(), Err(PromiseError::Abandoned));
    });
    dropper.join().unwrap();
    drop(first);
}
