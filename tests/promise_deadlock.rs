//! The deadlock guard: a thread designated as a promise's setter that waits for that promise
//! would wait for ever, so it is told `PromiseError::Deadlock` at once, whatever the timeout.
//! Covered: the setter thread (another thread may still wait, and once the promise is set the
//! setter reads it too), a designated thread that is another one or none (an ordinary
//! timeout), and a callback running on the setter (its own, done promise gives the value; a
//! promise its thread must set gives `Deadlock`), and a callback waiting for a later callback
//! of the promise it runs for (a `map`/`and_then` made from it: callbacks start in
//! registration order, so that one is set only after the waiting callback returns; before
//! that check, such a wait hung).
//!
//! The queue's form of the guard (an action waiting for work queued behind it) is in
//! `tests/queue_submit.rs`.
// Not under shuttle either: `with_setter` takes the backend's `ThreadId`, shuttle's there.
#![cfg(not(any(loom, shuttle)))]

mod util;

use orderslip::{Promise, PromiseError};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use util::{owned, LONG};

#[test]
fn deadlock_is_reported_at_once_on_the_setter_thread() {
    let p: Promise<i32, ()> = Promise::new();
    let start = Instant::now();
    assert_eq!(p.result(LONG), Err(PromiseError::Deadlock));
    assert_eq!(p.wait(), Err(PromiseError::Deadlock));
    assert!(
        start.elapsed() < LONG / 10,
        "returned far inside the timeout"
    );
    // Another thread may wait, and once set the setter thread may read it too.
    let q = p.clone();
    let waiter = thread::spawn(move || owned(q.result(LONG)));
    p.set_result(3).unwrap();
    assert_eq!(waiter.join().unwrap(), Ok(3));
    assert_eq!(p.result(LONG), Ok(&3));
}

#[test]
fn deadlock_check_follows_the_designated_thread() {
    let designated = thread::spawn(|| ());
    let id = designated.thread().id();
    designated.join().unwrap();
    let p: Promise<i32, ()> = Promise::with_setter(Some(id));
    assert_eq!(p.result(Duration::ZERO), Err(PromiseError::Timeout));
    let none: Promise<i32, ()> = Promise::with_setter(None);
    assert_eq!(none.result(Duration::ZERO), Err(PromiseError::Timeout));
}

#[test]
fn a_callback_may_wait_for_its_own_promise_and_gets_deadlock_for_one_it_must_set() {
    let p: Promise<u32, ()> = Promise::with_setter(None);
    let q = p.clone();
    let (tx, rx) = mpsc::channel();
    p.then(move |_| {
        // Runs on the setter after DONE: its own promise is done.
        let own = owned(q.result(Duration::from_secs(60)));
        // A promise this thread is designated to set: waiting for it would never end.
        let mine: Promise<u32, ()> = Promise::new();
        tx.send((own, owned(mine.result(Duration::from_secs(60)))))
            .unwrap();
    });
    p.set_result(5).unwrap();
    assert_eq!(rx.try_recv().unwrap(), (Ok(5), Err(PromiseError::Deadlock)));
}

// ---- a callback waiting for a later callback of its own promise ----

type P = Promise<u32, String>;

#[test]
fn a_callback_waiting_for_a_map_of_its_own_promise_gets_deadlock_at_once() {
    let p = P::with_setter(None);
    let q = p.clone();
    let (tx, rx) = mpsc::channel();
    p.then(move |_| {
        let doubled = q.map(|v| v * 2);
        // Without a limit: only the deadlock check can end it.
        tx.send(doubled.wait().copied().map_err(|e| e.cloned()))
            .unwrap();
        // After this callback returns, the map's own callback runs and sets it.
        drop(doubled);
    });
    p.set_result(21).unwrap();
    assert_eq!(rx.recv().unwrap(), Err(PromiseError::Deadlock));
}

#[test]
fn the_check_covers_chains_and_nested_drains() {
    let p = P::with_setter(None);
    let q = p.clone();
    let (tx, rx) = mpsc::channel();
    let other = P::with_setter(None);
    let other_setter = other.clone();
    p.then(move |_| {
        // A chain made from the draining promise: still set only after this returns.
        let chained = q.map(|v| v + 1).and_then(|v| Ok(v * 10));
        // Inside a nested drain (this callback sets another promise whose callback waits).
        let inner_tx = tx.clone();
        other_setter.then(move |_| {
            inner_tx
                .send(
                    chained
                        .result(Duration::from_secs(60))
                        .copied()
                        .map_err(|e| e.cloned()),
                )
                .unwrap();
        });
        other_setter.set_result(0).unwrap();
    });
    p.set_result(1).unwrap();
    assert_eq!(rx.recv().unwrap(), Err(PromiseError::Deadlock));
    drop(other);
}

#[test]
fn a_map_of_a_promise_that_is_not_draining_here_is_waited_for_normally() {
    // The same wait outside the drain gets the value: the check is not a blanket refusal.
    let p = P::with_setter(None);
    let doubled = p.map(|v| v * 2);
    let setter = p.clone();
    std::thread::spawn(move || setter.set_result(21).unwrap());
    assert_eq!(doubled.wait(), Ok(&42));
    // And inside a callback of another promise, a map of an already-set promise is done.
    let other = P::with_setter(None);
    let (tx, rx) = mpsc::channel();
    let d = doubled.clone();
    other.then(move |_| tx.send(*d.wait().unwrap()).unwrap());
    other.set_result(0).unwrap();
    assert_eq!(rx.recv().unwrap(), 42);
}
