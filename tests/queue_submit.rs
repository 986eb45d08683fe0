//! `ActionQueue::submit` and promises made by the queue: a submit's promise carries the
//! action's result or its panic (`ActionPanicked`, with the message when there is one), and
//! an action that waits for work queued behind it — a submit's promise or a
//! `queue.promise()` — is told `PromiseError::Deadlock` at once instead of hanging the queue;
//! outside the queue the same waits are ordinary.
//!
//! More on panicking submitted actions in `tests/queue_panics.rs`.
#![cfg(not(loom))]

mod util;

use orderslip::{ActionQueue, PromiseError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::{owned, DEADLINE};

#[test]
fn submit_returns_the_result_or_the_panic() {
    let queue = ActionQueue::new();
    let ok = queue.submit(|| vec![1, 2, 3]);
    assert_eq!(ok.result(DEADLINE), Ok(&vec![1, 2, 3]));
    let failed = queue.submit(|| -> u8 { panic!("disk {} full", 3) });
    match failed.result(DEADLINE) {
        Err(PromiseError::Failed(e)) => {
            assert_eq!(e.message(), Some("disk 3 full"));
            assert_eq!(e.to_string(), "the action panicked: disk 3 full");
        }
        other => panic!("unexpected {other:?}"),
    }
    let opaque = queue.submit(|| -> u8 { std::panic::panic_any(5u8) });
    match opaque.result(DEADLINE) {
        Err(PromiseError::Failed(e)) => assert_eq!(e.message(), None),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn waiting_inside_the_queue_for_its_own_work_is_a_deadlock() {
    let queue = Arc::new(ActionQueue::new());
    let q = queue.clone();
    let outer = queue.submit(move || {
        let inner = q.submit(|| 5);
        let start = Instant::now();
        let r = inner
            .result(Duration::from_secs(60))
            .copied()
            .map_err(|e| e.cloned());
        (r, start.elapsed())
    });
    let (inner_result, took) = outer.result(DEADLINE).unwrap().clone();
    assert_eq!(inner_result, Err(PromiseError::Deadlock));
    assert!(
        took < Duration::from_secs(30),
        "at once, not after the timeout"
    );
    // Outside the queue the same kind of promise is fine.
    assert_eq!(queue.submit(|| 6).result(DEADLINE), Ok(&6));
}

#[test]
fn a_queue_made_promise_guards_against_waiting_inside_the_queue() {
    let queue = Arc::new(ActionQueue::new());
    let reply: orderslip::Promise<u8, ()> = queue.promise();
    let (waiting, setter) = (reply.clone(), reply.clone());
    let inside = queue.submit(move || owned(waiting.result(Duration::from_secs(60))));
    assert_eq!(inside.result(DEADLINE), Ok(&Err(PromiseError::Deadlock)));
    queue.put(move || setter.set_result(1).unwrap());
    assert_eq!(
        reply.result(DEADLINE),
        Ok(&1),
        "outside the queue it is an ordinary wait"
    );
}
