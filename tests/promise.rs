//! Behaviour of `Promise`: every behaviour of the seed's `quickrpc.promise`, then what
//! orderslip adds (abandonment, several callbacks, async, timeouts at the extremes).
#![cfg(not(loom))]

mod util;

use orderslip::{Promise, PromiseDoneError, PromiseError};
use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use util::{block_on, owned, wait_until, DropCounter};

const LONG: Duration = Duration::from_secs(60);

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
    let as_error: &dyn Error = &PromiseDoneError(());
    assert!(as_error.to_string().contains("already set"));
    assert_eq!(p.result(Duration::ZERO), Ok(&"first".to_string()));
}

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
fn callback_registered_before_set_runs_on_the_setter() {
    let p: Promise<i32, ()> = Promise::with_setter(None);
    let (tx, rx) = mpsc::channel();
    p.then(move |r| {
        tx.send((r.copied().map_err(|_| ()), thread::current().id()))
            .unwrap()
    });
    assert!(rx.try_recv().is_err(), "not run before the set");
    let q = p.clone();
    let setter = thread::spawn(move || {
        q.set_result(4).unwrap();
        thread::current().id()
    });
    let setter_id = setter.join().unwrap();
    assert_eq!(rx.recv().unwrap(), (Ok(4), setter_id));
}

#[test]
fn callback_registered_after_set_runs_at_once_on_the_caller() {
    let p: Promise<i32, &str> = Promise::new();
    p.set_exception("nope").unwrap();
    let (tx, rx) = mpsc::channel();
    p.then(move |r| {
        tx.send((r.copied().map_err(|e| *e), thread::current().id()))
            .unwrap()
    });
    assert_eq!(
        rx.try_recv().unwrap(),
        (Err("nope"), thread::current().id())
    );
}

#[test]
fn a_panicking_callback_is_swallowed() {
    let p: Promise<i32, ()> = Promise::new();
    p.then(|_| panic!("callback bug"));
    assert_eq!(
        p.set_result(1),
        Ok(()),
        "the panic never reaches the setter"
    );
    p.then(|_| panic!("callback bug, registered late"));
    assert_eq!(p.result(Duration::ZERO), Ok(&1));
}

#[test]
fn two_callback_form_picks_the_branch() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let ok: Promise<i32, String> = Promise::new();
    let err: Promise<i32, String> = Promise::new();
    for p in [&ok, &err] {
        let (a, b) = (seen.clone(), seen.clone());
        p.then_else(
            move |v| a.lock().unwrap().push(format!("value {v}")),
            move |e| b.lock().unwrap().push(format!("error {e}")),
        );
    }
    ok.set_result(1).unwrap();
    err.set_exception("bad".into()).unwrap();
    assert_eq!(*seen.lock().unwrap(), ["value 1", "error bad"]);
}

// ---- beyond the seed ----

#[test]
fn several_callbacks_run_in_order_and_survive_a_panic() {
    let p: Promise<i32, ()> = Promise::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    for i in 0..5 {
        let log = log.clone();
        p.then(move |_| {
            log.lock().unwrap().push(i);
            if i == 2 {
                panic!("third callback fails");
            }
        });
    }
    p.set_result(0).unwrap();
    assert_eq!(*log.lock().unwrap(), [0, 1, 2, 3, 4]);
}

#[test]
fn a_callback_may_register_another_callback() {
    let p: Promise<i32, ()> = Promise::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let (q, r) = (p.clone(), runs.clone());
    p.then(move |_| {
        let r2 = r.clone();
        q.then(move |v| {
            assert_eq!(v, Ok(&1));
            r2.fetch_add(1, Ordering::SeqCst);
        });
        r.fetch_add(1, Ordering::SeqCst);
    });
    p.set_result(1).unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

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

#[test]
fn map_and_and_then_chain_new_promises() {
    let p: Promise<i32, String> = Promise::with_setter(None);
    let doubled = p.map(|v| v * 2);
    let checked = p.and_then(|v| {
        if *v > 0 {
            Ok(*v as u32)
        } else {
            Err("negative".into())
        }
    });
    p.set_result(21).unwrap();
    assert_eq!(doubled.result(LONG), Ok(&42));
    assert_eq!(checked.result(LONG), Ok(&21));

    let failed: Promise<i32, String> = Promise::with_setter(None);
    let mapped = failed.map(|v| v + 1);
    failed.set_exception("upstream".into()).unwrap();
    assert_eq!(
        mapped.result(LONG),
        Err(PromiseError::Failed(&"upstream".to_string()))
    );

    let orphan: Promise<i32, String> = Promise::with_setter(None);
    let mapped = orphan.map(|v| v + 1);
    drop(orphan);
    assert_eq!(mapped.result(LONG), Err(PromiseError::Abandoned));
}

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

#[test]
fn a_callback_may_drop_a_handle_of_its_own_promise() {
    let drops = Arc::new(AtomicUsize::new(0));
    let p: Promise<DropCounter, ()> = Promise::with_setter(None);
    let holder = Arc::new(Mutex::new(Some(p.clone())));
    let h = holder.clone();
    p.then(move |_| drop(h.lock().unwrap().take()));
    let setter = p.clone();
    drop(p);
    setter.set_result(DropCounter(drops.clone())).unwrap();
    assert!(holder.lock().unwrap().is_none(), "the callback ran");
    drop(setter);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

use std::future::Future;
