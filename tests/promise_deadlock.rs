//! The deadlock guard: a thread designated as a promise's setter that waits for that promise
//! would wait for ever, so it is told `PromiseError::Deadlock` at once, whatever the timeout.
//! Covered: the setter thread (another thread may still wait, and once the promise is set the
//! setter reads it too), a designated thread that is another one or none (an ordinary
//! timeout), and a callback running on the setter (its own, done promise gives the value; a
//! promise its thread must set gives `Deadlock`).
//!
//! The queue's form of the guard (an action waiting for work queued behind it) is in
//! `tests/queue_submit.rs`.
#![cfg(not(loom))]

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
