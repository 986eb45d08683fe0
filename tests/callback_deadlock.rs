//! A callback that waits for a later callback of its own promise (review of issue 10's
//! ordering fix): callbacks start in registration order, so a `map`/`and_then` made from
//! the promise whose callbacks are running is set only after the running callback returns.
//! Waiting for it inside that callback could never end; it is refused at once with
//! `Deadlock`, like a wait on a designated setter thread. (Before the fix of this check, the
//! first test hung in `wait()`; before the ordering fix, `map` ran nested and returned 42.)

use orderslip::{Promise, PromiseError};
use std::sync::mpsc;
use std::time::Duration;

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
