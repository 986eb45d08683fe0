//! Waiting asynchronously: `wait_async` futures and the wakers they register. Covered: a
//! dropped future unregisters its waker and is never woken, a future polled again with a new
//! waker wakes the new one, and hostile wakers — one whose `wake` panics (during a set or an
//! orphaning drop) or whose `Drop` panics — reach neither the setter, the dropping thread,
//! the other waiters nor the callbacks, and the promise is still freed.
//!
//! The panicking-waker tests (issue 10, defect 2) failed on the code before the fix (commit
//! ed2d89b). Async waiters woken by a set or by abandonment, alongside threads, are in
//! `tests/promise_set_and_wait.rs` and `tests/promise_abandon.rs`.
//!
//! Intentional panics carry the word `intentional`; a panic hook keeps them off stderr.
#![cfg(not(loom))]

mod util;

use orderslip::{Promise, PromiseError};
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::thread;
use std::time::Duration;
use util::{counting_waker, poll_once, quiet_intentional_panics, DropCounter, PanickingWake};

type P = Promise<u32, String>;

#[test]
fn a_dropped_future_leaves_nothing_behind() {
    let p: Promise<i32, ()> = Promise::with_setter(None);
    let (waker, wakes) = util::counting_waker();
    {
        let mut fut = Box::pin(p.wait_async());
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            Arc::strong_count(&wakes),
            3,
            "ours, our waker, and the registration"
        );
    }
    assert_eq!(
        Arc::strong_count(&wakes),
        2,
        "dropping the future released it"
    );
    p.set_result(1).unwrap();
    assert_eq!(
        wakes.count.load(Ordering::SeqCst),
        0,
        "a dropped future is not woken"
    );
}

#[test]
fn a_future_polled_with_a_new_waker_wakes_the_new_one() {
    let p: Promise<i32, ()> = Promise::with_setter(None);
    let (first, first_wakes) = util::counting_waker();
    let (second, second_wakes) = util::counting_waker();
    let mut fut = Box::pin(p.wait_async());
    assert!(fut
        .as_mut()
        .poll(&mut std::task::Context::from_waker(&first))
        .is_pending());
    assert!(fut
        .as_mut()
        .poll(&mut std::task::Context::from_waker(&second))
        .is_pending());
    p.set_result(2).unwrap();
    assert_eq!(first_wakes.count.load(Ordering::SeqCst), 0);
    assert_eq!(second_wakes.count.load(Ordering::SeqCst), 1);
    assert_eq!(
        fut.as_mut()
            .poll(&mut std::task::Context::from_waker(&second)),
        std::task::Poll::Ready(Ok(&2))
    );
}

// ---- defect 2: a panicking Waker ----

/// A waker that panics in `wake` while the promise is being set: before the fix the panic
/// unwound into `set_result`, the waiters after it were never woken (their nodes leaked) and
/// no callback ran.
#[test]
fn a_panicking_waker_reaches_neither_the_setter_nor_the_other_waiters_nor_the_callbacks() {
    quiet_intentional_panics();
    let p = P::with_setter(None);
    let setter = p.clone();
    let ran = Arc::new(AtomicUsize::new(0));
    let (r1, r2) = (ran.clone(), ran.clone());
    p.then(move |v| {
        assert_eq!(v, Ok(&5));
        r1.fetch_add(1, Ordering::SeqCst);
    });
    // Registered first, so woken after the bomb (the stack is newest first).
    let (waker, woken) = counting_waker();
    let mut quiet = Box::pin(p.wait_async());
    assert!(poll_once(quiet.as_mut(), &waker).is_pending());
    let bomb = Waker::from(Arc::new(PanickingWake));
    let mut loud = Box::pin(p.wait_async());
    assert!(poll_once(loud.as_mut(), &bomb).is_pending());
    p.then(move |_| {
        r2.fetch_add(1, Ordering::SeqCst);
    });

    let outcome = panic::catch_unwind(AssertUnwindSafe(|| setter.set_result(5)));
    assert!(
        matches!(outcome, Ok(Ok(()))),
        "the waker's panic reached the setter"
    );
    assert_eq!(
        woken.count.load(Ordering::SeqCst),
        1,
        "the other waiter was woken"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 2, "every callback ran");
    assert_eq!(poll_once(quiet.as_mut(), &waker), Poll::Ready(Ok(&5)));
    assert_eq!(poll_once(loud.as_mut(), &waker), Poll::Ready(Ok(&5)));
}

/// A waker that panics while an orphaning drop wakes it: before the fix the panic skipped
/// the drop's final decrement, so the block (and whatever it owned) was never freed.
#[test]
fn a_panicking_waker_during_an_orphaning_drop_still_frees_the_promise() {
    quiet_intentional_panics();
    let drops = Arc::new(AtomicUsize::new(0));
    let p = P::with_setter(None);
    let owned = DropCounter(drops.clone());
    // An unrun callback is dropped with the block: it tells us the block was freed.
    p.then(move |_| drop(owned));
    let other = p.clone();
    let bomb = Waker::from(Arc::new(PanickingWake));
    let mut fut = Box::pin(p.wait_async());
    assert!(poll_once(fut.as_mut(), &bomb).is_pending());

    let outcome = panic::catch_unwind(AssertUnwindSafe(move || drop(other)));
    assert!(
        outcome.is_ok(),
        "the waker's panic reached the dropping thread"
    );
    assert_eq!(
        poll_once(fut.as_mut(), &bomb),
        Poll::Ready(Err(PromiseError::Abandoned))
    );
    drop(fut);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "still alive: p is a handle"
    );
    drop(p);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the block was freed");
}

/// A waker whose `Drop` panics, dropped when a cancelled waiter's node is pruned or when the
/// promise is freed: contained, and the protocol goes on.
#[test]
fn a_waker_whose_drop_panics_is_contained() {
    quiet_intentional_panics();
    struct BombWake;
    impl std::task::Wake for BombWake {
        fn wake(self: Arc<Self>) {}
    }
    impl Drop for BombWake {
        fn drop(&mut self) {
            if !thread::panicking() {
                panic!("intentional: a Waker whose drop panics");
            }
        }
    }
    let p = P::with_setter(None);
    let setter = p.clone();
    let mut fut = Box::pin(p.wait_async());
    assert!(poll_once(fut.as_mut(), &Waker::from(Arc::new(BombWake))).is_pending());
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| setter.set_result(1)));
    assert!(matches!(outcome, Ok(Ok(()))));
    assert_eq!(p.result(Duration::ZERO), Ok(&1));
}
