//! Panics on the queue's worker: a panicking action (string or other payload) goes to the
//! panic handler, or is logged without one, and the queue goes on; a panic handler that
//! panics, and panic payloads whose `Drop` panics, are contained too; a submitted action that
//! panics fails its promise with `ActionPanicked`; a submitted value whose `Drop` panics on
//! the worker is reported like an action's panic (and, dropped by the caller, panics there).
//!
//! Intentional panics carry the word `intentional`; a panic hook keeps them off stderr.
#![cfg(not(loom))]

mod util;

use orderslip::{ActionPanicked, ActionQueue, PromiseError};
use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use util::{counter, load, quiet_intentional_panics, Bomb, PayloadBomb, DEADLINE};

#[test]
fn a_panicking_action_does_not_stop_the_queue() {
    let panics = Arc::new(AtomicUsize::new(0));
    let seen = panics.clone();
    let queue = ActionQueue::builder()
        .name("panicky")
        .keep_alive(Duration::ZERO)
        .panic_handler(move |payload| {
            assert_eq!(payload.downcast_ref::<&str>(), Some(&"action bug"));
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .build();
    queue.put(|| panic!("action bug"));
    let after = queue.submit(|| "still running");
    assert_eq!(after.result(DEADLINE), Ok(&"still running"));
    assert_eq!(panics.load(Ordering::SeqCst), 1);
}

#[test]
fn a_panic_without_a_handler_is_logged_and_the_queue_goes_on() {
    let queue = ActionQueue::new();
    queue.put(|| panic!("logged, not fatal"));
    queue.put(|| std::panic::panic_any(17u32)); // a non-string payload
    assert_eq!(queue.submit(|| 1).result(DEADLINE), Ok(&1));
}

#[test]
fn panicking_actions_handlers_and_payloads_never_stop_the_queue() {
    quiet_intentional_panics();
    let handled = counter();
    let h = handled.clone();
    let queue = ActionQueue::builder()
        .keep_alive(Duration::ZERO)
        .panic_handler(move |payload: &(dyn Any + Send)| {
            h.fetch_add(1, Ordering::SeqCst);
            if payload.downcast_ref::<&str>() == Some(&"intentional: handler too") {
                panic!("intentional: the panic handler panics");
            }
        })
        .build();
    let payload_drops = counter();
    let d = payload_drops.clone();
    queue.put(|| panic!("intentional: action"));
    queue.put(|| panic::panic_any(7u64));
    queue.put(move || panic::panic_any(PayloadBomb(d)));
    queue.put(|| panic!("intentional: handler too"));
    let d = payload_drops.clone();
    let submitted = queue.submit(move || -> u32 { panic::panic_any(PayloadBomb(d)) });
    let after = queue.submit(|| "still going");
    assert_eq!(after.result(DEADLINE), Ok(&"still going"));
    assert_eq!(load(&handled), 4, "the handler saw every put's panic");
    assert_eq!(load(&payload_drops), 2, "each bomb payload dropped once");
    match submitted.result(DEADLINE) {
        Err(PromiseError::Failed(e)) => assert_eq!(e.message(), None),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_submitted_action_killed_by_a_panic_fails_its_promise() {
    quiet_intentional_panics();
    let queue = ActionQueue::new();
    let reply = queue.submit(|| -> u32 { panic!("intentional: worker action dies") });
    match reply.wait() {
        Err(PromiseError::Failed(e)) => {
            assert_eq!(e.message(), Some("intentional: worker action dies"));
            let _: &ActionPanicked = e;
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_submitted_value_whose_drop_panics_on_the_worker_is_reported_as_an_action_panic() {
    // The caller drops its promise first, so the worker drops the last handle (and the
    // value) inside the action: the queue contains the panic and goes on.
    quiet_intentional_panics();
    let drops = counter();
    let handled = counter();
    let h = handled.clone();
    let queue = ActionQueue::builder()
        .panic_handler(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        })
        .build();
    let (release, gate) = mpsc::channel::<()>();
    queue.put(move || gate.recv().unwrap());
    let d = drops.clone();
    drop(queue.submit(move || Bomb(d)));
    release.send(()).unwrap();
    assert_eq!(queue.submit(|| 2).result(DEADLINE), Ok(&2));
    assert_eq!(load(&drops), 1);
    assert_eq!(load(&handled), 1, "reported like an action's panic");
    // And the other way round: the worker lets go first, the caller drops the last handle.
    let kept = queue.submit({
        let d = drops.clone();
        move || Bomb(d)
    });
    assert!(kept.result(DEADLINE).is_ok());
    assert!(queue.wait_idle(DEADLINE));
    assert!(panic::catch_unwind(AssertUnwindSafe(move || drop(kept))).is_err());
    assert_eq!(load(&drops), 2);
}
