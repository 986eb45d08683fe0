//! `Promise::channel()`: the single-setter end (`Resolver`), exact abandonment, "nobody
//! waits" for producers, owned awaits and `into_inner` (issue 12).

mod util;

use orderslip::{Promise, PromiseError, Resolver};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use util::{
    block_on, counter, counting_waker, load, owned, poll_once, wait_until, DropCounter, GateWake,
    LONG,
};

#[test]
fn the_resolver_sets_and_every_clone_sees_it() {
    let (resolver, p) = Promise::<u32, String>::channel();
    let clones: Vec<_> = (0..4).map(|_| p.clone()).collect();
    let waiters: Vec<_> = clones
        .into_iter()
        .map(|c| thread::spawn(move || owned(c.result(LONG))))
        .collect();
    resolver.set_result(7).unwrap();
    for w in waiters {
        assert_eq!(w.join().unwrap(), Ok(7));
    }
    assert_eq!(p.try_result(), Some(Ok(&7)));
}

#[test]
fn set_exception_fails_every_waiter() {
    let (resolver, p) = Promise::<u32, String>::channel();
    resolver.set_exception("boom".into()).unwrap();
    assert_eq!(p.wait(), Err(PromiseError::Failed(&"boom".to_string())));
}

/// The first complaint: a waiter that holds a second clone got `Timeout` after the
/// full wait when the producer died. With a channel, every waiter on every clone gets
/// `Abandoned` however many clones exist.
#[test]
fn a_dropped_resolver_abandons_every_waiter_on_every_clone_at_once() {
    let (resolver, p) = Promise::<u32, String>::channel();
    let _kept_in_a_map = p.clone();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let c = p.clone();
            thread::spawn(move || owned(c.result(LONG)))
        })
        .collect();
    let task = p.clone();
    let (tx, rx) = mpsc::channel();
    let async_waiter = thread::spawn(move || {
        tx.send(()).unwrap();
        owned(block_on(task.wait_async()))
    });
    rx.recv().unwrap();
    drop(resolver);
    for w in waiters {
        assert_eq!(w.join().unwrap(), Err(PromiseError::Abandoned));
    }
    assert_eq!(async_waiter.join().unwrap(), Err(PromiseError::Abandoned));
    // A wait after the drop, on a handle that has clones, also fails at once.
    assert_eq!(p.result(LONG), Err(PromiseError::Abandoned));
    assert!(format!("{p:?}").contains("abandoned"));
}

/// Deterministic: a waker that blocks inside `wake` freezes the dropping resolver after its
/// CAS; a waiter that comes now must see ABANDONED (its push fails), not park.
#[test]
fn a_waiter_arriving_while_the_abandoning_drop_wakes_others_sees_abandoned() {
    let (resolver, p) = Promise::<u32, ()>::channel();
    let (gate_waker, gate) = GateWake::new();
    let mut frozen = Box::pin(p.wait_async());
    assert!(poll_once(frozen.as_mut(), &gate_waker).is_pending());
    let dropper = thread::spawn(move || drop(resolver));
    assert!(gate.wait_entered());
    let late = p.clone();
    let late_waiter = thread::spawn(move || owned(late.result(LONG)));
    assert_eq!(late_waiter.join().unwrap(), Err(PromiseError::Abandoned));
    gate.release();
    dropper.join().unwrap();
    assert_eq!(
        poll_once(frozen.as_mut(), &gate_waker),
        std::task::Poll::Ready(Err(PromiseError::Abandoned))
    );
}

#[test]
fn set_on_the_promise_end_is_refused_and_hands_the_value_back() {
    let (resolver, p) = Promise::<String, String>::channel();
    let refused = p.set_result("not mine".into()).unwrap_err();
    assert!(!refused.is_already_set());
    assert!(refused.to_string().contains("Resolver"), "{refused}");
    assert_eq!(refused.into_inner(), "not mine");
    let refused = p.set_exception("nor this".into()).unwrap_err();
    assert!(!refused.is_already_set());
    assert!(!p.is_done());
    resolver.set_result("mine".into()).unwrap();
    let refused = p.set_result("late".into()).unwrap_err();
    assert!(
        !refused.is_already_set(),
        "still the channel's rule, not 'already set'"
    );
    assert_eq!(p.wait().unwrap(), "mine");
}

#[test]
fn the_creating_thread_may_wait_while_the_resolver_is_set_elsewhere() {
    let (resolver, p): (Resolver<u8, ()>, _) = Promise::channel();
    let t = thread::spawn(move || {
        thread::yield_now();
        resolver.set_result(3).unwrap();
    });
    // No designated setter thread: never `Deadlock`.
    assert_eq!(p.result(LONG), Ok(&3));
    t.join().unwrap();
}

#[test]
fn is_closed_once_every_promise_handle_is_gone() {
    let (resolver, p) = Promise::<u8, ()>::channel();
    let q = p.clone();
    assert!(!resolver.is_closed());
    drop(p);
    assert!(!resolver.is_closed());
    let fut = q.clone().into_future_for_test();
    drop(q);
    assert!(!resolver.is_closed(), "an owned future holds a handle");
    drop(fut);
    assert!(resolver.is_closed());
    assert!(format!("{resolver:?}").contains("closed: true"));
    // Nobody can read it: the value is handed back.
    assert_eq!(resolver.set_result(9), Err(9));
}

trait IntoFutureForTest: std::future::IntoFuture + Sized {
    fn into_future_for_test(self) -> Self::IntoFuture {
        std::future::IntoFuture::into_future(self)
    }
}
impl<T: Clone, E: Clone> IntoFutureForTest for Promise<T, E> {}

#[test]
fn a_registered_callback_keeps_the_channel_open_and_runs() {
    let (resolver, p) = Promise::<u8, ()>::channel();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    p.then(move |r| s.store(usize::from(*r.unwrap()), Ordering::SeqCst));
    drop(p);
    assert!(!resolver.is_closed(), "the callback is a reader");
    resolver.set_result(5).unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 5);
}

#[test]
fn a_dropped_resolver_drops_the_callbacks_unrun_and_abandons_maps() {
    let (resolver, p) = Promise::<u8, String>::channel();
    let drops = counter();
    let guard = DropCounter(drops.clone());
    let ran = counter();
    let r = ran.clone();
    p.then(move |_| {
        let _keep = &guard;
        r.fetch_add(1, Ordering::SeqCst);
    });
    let mapped = p.map(|v| u32::from(*v) * 2);
    let mapped_clone = mapped.clone();
    drop(resolver);
    assert_eq!(load(&drops), 1, "dropped at the resolver's drop, not later");
    assert_eq!(load(&ran), 0);
    assert_eq!(mapped.result(LONG), Err(PromiseError::Abandoned));
    assert_eq!(mapped_clone.result(LONG), Err(PromiseError::Abandoned));
    // A callback registered afterwards is dropped at once, unrun.
    let late = DropCounter(drops.clone());
    p.then(move |_| drop(late));
    assert_eq!(load(&drops), 2);
}

#[test]
fn a_map_of_a_channel_gets_the_value_or_the_same_error() {
    let (resolver, p) = Promise::<u8, String>::channel();
    let doubled = p.map(|v| u32::from(*v) * 2);
    assert!(!doubled.set_result(1).unwrap_err().is_already_set());
    resolver.set_result(21).unwrap();
    assert_eq!(doubled.result(LONG), Ok(&42));

    let (resolver, p) = Promise::<u8, String>::channel();
    let doubled = p.map(|v| u32::from(*v) * 2);
    resolver.set_exception("e".into()).unwrap();
    assert_eq!(
        doubled.result(LONG),
        Err(PromiseError::Failed(&"e".to_string()))
    );
}

#[test]
fn the_value_is_dropped_when_the_last_handle_goes() {
    let drops = counter();
    let (resolver, p) = Promise::<DropCounter, ()>::channel();
    let q = p.clone();
    resolver.set_result(DropCounter(drops.clone())).unwrap();
    drop(p);
    assert_eq!(load(&drops), 0);
    drop(q);
    assert_eq!(load(&drops), 1);

    // Handed back when nobody listens: dropped by the caller, once.
    let (resolver, p) = Promise::<DropCounter, ()>::channel();
    drop(p);
    let back = resolver.set_result(DropCounter(drops.clone())).unwrap_err();
    assert_eq!(load(&drops), 1);
    drop(back);
    assert_eq!(load(&drops), 2);
}

#[test]
fn into_inner_moves_the_value_out_of_the_last_handle() {
    let (resolver, p) = Promise::<Vec<u8>, ()>::channel();
    assert_eq!(
        p.clone().into_inner(),
        None,
        "not done, and not the last handle"
    );
    let q = p.clone();
    resolver.set_result(vec![1, 2, 3]).unwrap();
    assert_eq!(q.into_inner(), None, "another handle exists");
    assert_eq!(p.into_inner(), Some(Ok(vec![1, 2, 3])));

    // Shared promises too.
    let shared: Promise<String, ()> = Promise::with_setter(None);
    shared.set_result("s".into()).unwrap();
    assert_eq!(shared.into_inner(), Some(Ok("s".to_string())));
    let pending: Promise<String, ()> = Promise::with_setter(None);
    assert_eq!(pending.into_inner(), None);
}

#[test]
fn exactly_one_of_two_racing_into_inners_gets_the_value() {
    for _ in 0..200 {
        let (resolver, p) = Promise::<u64, ()>::channel();
        resolver.set_result(11).unwrap();
        let q = p.clone();
        let t = thread::spawn(move || q.into_inner());
        let mine = p.into_inner();
        let theirs = t.join().unwrap();
        assert_eq!(
            usize::from(mine.is_some()) + usize::from(theirs.is_some()),
            1,
            "{mine:?} {theirs:?}"
        );
    }
}

#[test]
fn an_owned_future_can_be_spawned_and_its_output_borrows_nothing() {
    fn assert_send_static<F: std::future::Future + Send + 'static>(_: &F) {}
    let (resolver, p) = Promise::<String, String>::channel();
    let fut = std::future::IntoFuture::into_future(p.clone());
    assert_send_static(&fut);
    let t = thread::spawn(move || block_on(fut));
    resolver.set_result("v".into()).unwrap();
    assert_eq!(t.join().unwrap(), Ok("v".to_string()));
    // `p` still holds the value: the future cloned it.
    assert_eq!(p.try_result(), Some(Ok(&"v".to_string())));
}

#[test]
fn an_owned_future_of_the_last_handle_moves_the_value_without_cloning() {
    #[derive(Debug)]
    struct CountsClones(Arc<AtomicUsize>);
    impl Clone for CountsClones {
        fn clone(&self) -> Self {
            self.0.fetch_add(1, Ordering::SeqCst);
            CountsClones(self.0.clone())
        }
    }
    let clones = counter();
    let (resolver, p) = Promise::<CountsClones, ()>::channel();
    resolver.set_result(CountsClones(clones.clone())).unwrap();
    let value = block_on(async move { p.await }).unwrap();
    assert_eq!(load(&clones), 0);
    drop(value);
}

#[test]
fn a_dropped_owned_future_unregisters_and_releases_its_handle() {
    let (resolver, p) = Promise::<u8, ()>::channel();
    let (waker, wakes) = counting_waker();
    let mut fut = Box::pin(std::future::IntoFuture::into_future(p));
    assert!(poll_once(fut.as_mut(), &waker).is_pending());
    assert!(!resolver.is_closed());
    drop(fut);
    assert!(resolver.is_closed());
    assert_eq!(resolver.set_result(1), Err(1));
    assert_eq!(wakes.count.load(Ordering::SeqCst), 0);
    drop(waker);
    assert!(
        wait_until(|| Arc::strong_count(&wakes) == 1),
        "the waker is released"
    );
}

#[test]
fn an_owned_future_resolves_to_abandoned() {
    let (resolver, p) = Promise::<u8, ()>::channel();
    let q = p.clone();
    let t = thread::spawn(move || block_on(async move { q.await }));
    thread::yield_now();
    drop(resolver);
    assert_eq!(t.join().unwrap(), Err(PromiseError::Abandoned));
}

#[test]
fn closed_resolves_when_the_last_handle_goes_on_another_thread() {
    let (resolver, p) = Promise::<u8, ()>::channel();
    let q = p.clone();
    let (waker, wakes) = counting_waker();
    let mut closed = Box::pin(resolver.closed());
    assert!(poll_once(closed.as_mut(), &waker).is_pending());
    drop(p);
    assert!(
        poll_once(closed.as_mut(), &waker).is_pending(),
        "q still waits"
    );
    assert_eq!(wakes.count.load(Ordering::SeqCst), 0);
    thread::spawn(move || drop(q)).join().unwrap();
    assert_eq!(
        wakes.count.load(Ordering::SeqCst),
        1,
        "the last drop woke it"
    );
    assert!(poll_once(closed.as_mut(), &waker).is_ready());
    drop(closed);
    assert_eq!(resolver.set_result(1), Err(1));
}

#[test]
fn closed_of_a_closed_channel_is_ready_at_once_and_blocks_under_block_on() {
    let (resolver, p) = Promise::<u8, ()>::channel();
    let t = thread::spawn(move || {
        block_on(resolver.closed());
        resolver
    });
    drop(p);
    let resolver = t.join().unwrap();
    assert!(resolver.is_closed());
    block_on(resolver.closed());
}

#[test]
fn a_dropped_closed_future_unregisters_its_waker() {
    let (resolver, p) = Promise::<u8, ()>::channel();
    let (waker, wakes) = counting_waker();
    let mut closed = Box::pin(resolver.closed());
    assert!(poll_once(closed.as_mut(), &waker).is_pending());
    drop(closed);
    drop(waker);
    assert_eq!(
        Arc::strong_count(&wakes),
        1,
        "the node was pruned with its waker"
    );
    drop(p);
    assert_eq!(wakes.count.load(Ordering::SeqCst), 0);
    assert!(resolver.is_closed());
}

#[test]
fn closed_stays_pending_while_a_callback_is_registered() {
    let (resolver, p) = Promise::<u8, ()>::channel();
    let ran = counter();
    let r = ran.clone();
    p.then(move |_| {
        r.fetch_add(1, Ordering::SeqCst);
    });
    let (waker, _wakes) = counting_waker();
    let mut closed = Box::pin(resolver.closed());
    assert!(poll_once(closed.as_mut(), &waker).is_pending());
    drop(p);
    assert!(
        poll_once(closed.as_mut(), &waker).is_pending(),
        "the callback reads"
    );
    drop(closed);
    resolver.set_result(2).unwrap();
    assert_eq!(load(&ran), 1);
}
