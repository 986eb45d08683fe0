//! Attacks on `Promise::channel`, `Resolver`, `PromiseFuture` and `into_inner` from the
//! hostile review of their first version (e0cfb5d). Each test pins one interleaving: a
//! `GateWake` freezes a thread inside `Waker::wake` (so at a known point of its protocol), a
//! callback that blocks on an mpsc freezes a resolver inside its drain.
//!
//! The "Findings" failed on e0cfb5d (findings 2 to 5 were fixed; finding 1 is now the
//! documented behaviour of `into_inner`); the others are attacks that held up (they pass,
//! also under Miri with `MIRIFLAGS=-Zmiri-permissive-provenance`).
#![cfg(not(loom))]

mod util;

use orderslip::{Promise, PromiseError};
use std::future::IntoFuture;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::Poll;
use std::thread;
use std::time::Duration;
use util::{
    counter, counting_waker, load, owned, poll_once, quiet_intentional_panics, Bomb, DropCounter,
    GateWake, PanickingWake, LONG,
};

/// A value that counts its drops and may be cloned (clones count too).
#[derive(Debug, Clone)]
struct Dc(Arc<AtomicUsize>);

impl Drop for Dc {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Fewer rounds under Miri, which is slow.
const ROUNDS: usize = if cfg!(miri) { 24 } else { 2000 };

// ------------------------------------------------------------------------------------------
// Findings (failed on e0cfb5d)
// ------------------------------------------------------------------------------------------

/// Finding 1. On a shared promise, an orphaning drop that is still waking waiters holds a
/// second *guard*: the last handle's `release` then gives up the live handles' guard
/// without being the last guard, so `into_inner` returns `None` and the orphaning thread
/// frees the block and drops the value. On e0cfb5d the docs promised the value; they now
/// say this (`Promise::into_inner`): the value is dropped once, by that drop.
///
/// Interleaving: H1 waits (gate waker), thread B drops H2 while pending (orphaning: guard+1,
/// count 2->1, take, wake -> frozen in `wake`); H1 sets and calls `into_inner`.
#[test]
fn into_inner_during_an_orphaning_wake_returns_none_and_that_drop_drops_the_value_once() {
    let drops = counter();
    let p: Promise<DropCounter, ()> = Promise::with_setter(None);
    let q = p.clone();
    let (gate_waker, gate) = GateWake::new();
    let mut fut = Box::pin(p.wait_async());
    assert!(poll_once(fut.as_mut(), &gate_waker).is_pending());
    let dropper = thread::spawn(move || drop(q));
    assert!(gate.wait_entered(), "the orphaning drop is frozen in wake");
    drop(fut);
    p.set_result(DropCounter(drops.clone())).unwrap();
    assert!(p.into_inner().is_none(), "the documented None");
    assert_eq!(load(&drops), 0, "the orphaning drop still holds the block");
    gate.release();
    dropper.join().unwrap();
    assert_eq!(
        load(&drops),
        1,
        "dropped exactly once, by the orphaning drop"
    );
}

/// Finding 2. `PromiseFuture` docs: "it resolves to PromiseError::Abandoned when nobody can
/// set the promise any more". An owned future of a never-cloned shared promise holds the
/// only handle there is (no reference can outlive the move), so nobody can ever set it; yet
/// it stays `Pending` for ever (the never-cloned exemption of `Handles::is_abandoned` is
/// about references, which cannot exist here).
#[test]
fn an_owned_future_of_a_never_cloned_promise_is_abandoned() {
    let p: Promise<u8, ()> = Promise::with_setter(None);
    let mut fut = Box::pin(p.into_future());
    let (waker, _wakes) = counting_waker();
    assert_eq!(
        poll_once(fut.as_mut(), &waker),
        Poll::Ready(Err(PromiseError::Abandoned))
    );
}

/// Finding 3. `Promise` docs (# Panics): "Nothing else a promise does lets a foreign panic
/// through" (besides the last handle's drop). `then` on an abandoned channel drops the
/// callback on the caller's thread unguarded (`run_now` -> `drop(f)`), so a callback whose
/// `Drop` panics unwinds out of `then` (and out of `map`/`and_then`). The same callback
/// registered a moment earlier is dropped by the resolver's `discard`, which contains it.
#[test]
fn then_on_an_abandoned_channel_contains_a_panicking_callback_drop() {
    quiet_intentional_panics();
    let drops = counter();
    let (resolver, p) = Promise::<u8, ()>::channel();
    drop(resolver);
    let bomb = Bomb(drops.clone());
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        p.then(move |_| {
            let _keep = &bomb;
        })
    }));
    assert_eq!(load(&drops), 1, "dropped unrun, once");
    assert!(outcome.is_ok(), "the Drop panic escaped `then`");
}

/// Finding 4 (low). The deadlock check announces a drain frame only when callbacks *run*
/// (`finish` -> `setter::draining`); `discard` (resolver dropped unset) drops them with no
/// frame. A callback whose `Drop` waits for a `map` registered after it waits for the
/// map's resolver, which sits in a later callback of the same discard: it can only time out
/// (or hang, with `wait()`), where the running-callback form of the same mistake gets
/// `Deadlock` at once.
#[test]
fn a_wait_inside_a_discarded_callbacks_drop_for_a_later_map_is_a_deadlock() {
    struct WaitsInDrop {
        later: Arc<Mutex<Option<Promise<u32, ()>>>>,
        tx: mpsc::Sender<Result<u32, PromiseError<()>>>,
    }
    impl Drop for WaitsInDrop {
        fn drop(&mut self) {
            let later = self.later.lock().unwrap().take().unwrap();
            let _ = self
                .tx
                .send(owned(later.result(Duration::from_millis(300))));
        }
    }
    let (resolver, p) = Promise::<u8, ()>::channel();
    let slot = Arc::new(Mutex::new(None));
    let (tx, rx) = mpsc::channel();
    let guard = WaitsInDrop {
        later: slot.clone(),
        tx,
    };
    p.then(move |_| {
        let _keep = &guard;
    });
    let later = p.map(|v| u32::from(*v));
    *slot.lock().unwrap() = Some(later.clone());
    drop(resolver);
    assert_eq!(later.result(LONG), Err(PromiseError::Abandoned));
    assert_eq!(rx.recv().unwrap(), Err(PromiseError::Deadlock));
}

/// Finding 5 (low, docs). `finish` says it "never unwinds", and `Promise`'s # Panics says a
/// panicking drop of the result is re-raised "in the thread that dropped the last handle".
/// When the last handle goes while the resolver drains (or before the set, with a callback
/// registered), the resolver frees the block and drops the value itself: a `T::drop` panic
/// unwinds out of `Resolver::set_result`, on the producer's thread, after the set succeeded.
#[test]
fn a_panicking_value_drop_does_not_escape_set_result() {
    quiet_intentional_panics();
    let drops = counter();
    let (resolver, p) = Promise::<Bomb, ()>::channel();
    p.then(|_| ());
    drop(p); // GONE; the callback keeps the channel open
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        resolver.set_result(Bomb(drops.clone())).map_err(drop)
    }));
    assert_eq!(load(&drops), 1, "dropped once, with the block");
    assert!(
        outcome.is_ok(),
        "T::drop's panic escaped set_result on the producer's thread"
    );
}

// ------------------------------------------------------------------------------------------
// Attacks that held up
// ------------------------------------------------------------------------------------------

/// The resolver's set CAS (no callbacks) clears RESOLVER; it is then frozen inside a waiter's
/// `wake`, and the last handle, dropped on another thread, frees the block under it. The
/// resolver must touch only the nodes afterwards (Miri checks it).
#[test]
fn the_last_handle_frees_the_block_while_the_resolver_still_wakes() {
    let drops = counter();
    let (resolver, p) = Promise::<Dc, ()>::channel();
    let (gate_waker, gate) = GateWake::new();
    let mut fut = Box::pin(p.clone().into_future());
    assert!(poll_once(fut.as_mut(), &gate_waker).is_pending());
    let d = drops.clone();
    let setter = thread::spawn(move || resolver.set_result(Dc(d)).map_err(drop));
    assert!(gate.wait_entered());
    drop(p);
    // The owned future's handle is now the last one and RESOLVER is clear: it moves the
    // value out and frees the block while the resolver is still inside wake_list.
    let (waker, _) = counting_waker();
    let value = match poll_once(fut.as_mut(), &waker) {
        Poll::Ready(Ok(v)) => v,
        other => panic!("{other:?}"),
    };
    drop(fut);
    assert_eq!(load(&drops), 0);
    drop(value);
    assert_eq!(load(&drops), 1);
    gate.release();
    setter.join().unwrap().unwrap();
    assert_eq!(load(&drops), 1);
}

/// Same, but the resolver is frozen while it *drains* (a callback blocks): RESOLVER is still
/// set, so the owned future of the last handle must clone, `into_inner` must give `None`,
/// GONE hands the free to the resolver, and the value is dropped exactly once, after the
/// callback.
#[test]
fn the_last_handle_goes_while_the_resolver_drains() {
    #[derive(Debug)]
    struct Counted(Arc<AtomicUsize>, Arc<AtomicUsize>); // (drops, clones)
    impl Clone for Counted {
        fn clone(&self) -> Self {
            self.1.fetch_add(1, Ordering::SeqCst);
            Counted(self.0.clone(), self.1.clone())
        }
    }
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let (drops, clones) = (counter(), counter());
    let (resolver, p) = Promise::<Counted, ()>::channel();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    p.then(move |r| {
        assert!(r.is_ok());
        entered_tx.send(()).unwrap();
        go_rx.recv().unwrap();
    });
    let mut fut = Box::pin(p.clone().into_future());
    let (waker, _) = counting_waker();
    assert!(poll_once(fut.as_mut(), &waker).is_pending());
    let into = p.clone();
    drop(p);
    let (d, c) = (drops.clone(), clones.clone());
    let setter = thread::spawn(move || resolver.set_result(Counted(d, c)).map_err(drop));
    entered_rx.recv().unwrap();
    assert_eq!(
        into.into_inner().map(|_| ()),
        None,
        "the resolver still drains"
    );
    // The future's handle is the last one, but the resolver still touches the block.
    let value = match poll_once(fut.as_mut(), &waker) {
        Poll::Ready(Ok(v)) => v,
        other => panic!("{other:?}"),
    };
    drop(fut); // last handle: GONE, the resolver frees
    assert_eq!(load(&clones), 1, "cloned, not moved");
    assert_eq!(load(&drops), 0);
    go_tx.send(()).unwrap();
    setter.join().unwrap().unwrap();
    assert_eq!(
        load(&drops),
        1,
        "the block's value, dropped by the resolver"
    );
    drop(value);
    assert_eq!(load(&drops), 2);
}

/// A resolver dropped while its thread unwinds: a callback whose Drop panics (even while
/// panicking) and a Waker that panics must be contained, every waiter abandoned, a map
/// abandoned, no abort.
#[test]
fn a_resolver_dropped_during_unwinding_with_panicking_callback_drops_and_wakers() {
    quiet_intentional_panics();
    struct AlwaysPanicsOnDrop(Arc<AtomicUsize>);
    impl Drop for AlwaysPanicsOnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
            panic!("intentional: a callback Drop that panics even while panicking");
        }
    }
    let drops = counter();
    let (resolver, p) = Promise::<u8, ()>::channel();
    let bomb = AlwaysPanicsOnDrop(drops.clone());
    p.then(move |_| {
        let _keep = &bomb;
    });
    let mapped = p.map(|v| u32::from(*v));
    let panicking = std::task::Waker::from(Arc::new(PanickingWake));
    let mut fut = Box::pin(p.wait_async());
    assert!(poll_once(fut.as_mut(), &panicking).is_pending());
    let t = thread::spawn(move || {
        let _dropped_while_unwinding = resolver;
        panic!("intentional: the producer panics");
    });
    assert!(t.join().is_err());
    assert_eq!(load(&drops), 1);
    assert_eq!(mapped.result(LONG), Err(PromiseError::Abandoned));
    assert_eq!(
        poll_once(fut.as_mut(), &panicking),
        Poll::Ready(Err(PromiseError::Abandoned))
    );
    assert_eq!(p.wait(), Err(PromiseError::Abandoned));
}

/// The closure of a `map` of a channel panics: the map's resolver is dropped during that
/// unwinding (inside the origin's drain), so the map is abandoned, not left pending.
#[test]
fn a_panicking_map_function_abandons_the_mapped_channel() {
    quiet_intentional_panics();
    let (resolver, p) = Promise::<u8, ()>::channel();
    let mapped = p.map(|_| -> u32 { panic!("intentional: the map panics") });
    let chained = mapped.map(|v| *v + 1);
    let waiter = {
        let m = chained.clone();
        thread::spawn(move || owned(m.result(LONG)))
    };
    resolver.set_result(1).unwrap();
    assert_eq!(mapped.result(LONG), Err(PromiseError::Abandoned));
    assert_eq!(waiter.join().unwrap(), Err(PromiseError::Abandoned));
}

/// The deadlock check with channel maps: a callback of the channel waiting for a map (and a
/// map of a map) registered after it gets `Deadlock`; a map registered before is done.
#[test]
fn a_channel_callback_waiting_for_a_later_map_gets_deadlock() {
    let (resolver, p) = Promise::<u8, ()>::channel();
    let earlier = p.map(|v| u32::from(*v));
    type Pair = (Promise<u32, ()>, Promise<u32, ()>);
    let slot: Arc<Mutex<Option<Pair>>> = Arc::default();
    let (tx, rx) = mpsc::channel();
    let (s, e) = (slot.clone(), earlier.clone());
    p.then(move |_| {
        let (later, later2) = s.lock().unwrap().take().unwrap();
        tx.send((
            owned(e.result(LONG)),
            owned(later.result(LONG)),
            owned(later2.result(LONG)),
        ))
        .unwrap();
    });
    let later = p.map(|v| u32::from(*v) + 1);
    let later2 = later.map(|v| *v + 1);
    *slot.lock().unwrap() = Some((later.clone(), later2.clone()));
    resolver.set_result(1).unwrap();
    assert_eq!(
        rx.recv().unwrap(),
        (
            Ok(1),
            Err(PromiseError::Deadlock),
            Err(PromiseError::Deadlock)
        )
    );
    assert_eq!(later2.result(LONG), Ok(&3));
}

/// A callback that holds the last handle of its own channel: dropped inside the drain (and
/// inside the discard), the handle sets GONE and the resolver frees after the drain. Miri
/// checks the block is freed exactly once and not leaked.
#[test]
fn a_callback_holding_the_last_handle_of_its_own_channel() {
    for abandon in [false, true] {
        let drops = counter();
        let (resolver, p) = Promise::<DropCounter, ()>::channel();
        let own = p.clone();
        let seen = counter();
        let s = seen.clone();
        p.then(move |r| {
            s.fetch_add(usize::from(r.is_ok()), Ordering::SeqCst);
            drop(own); // the last handle, inside the drain
            thread::yield_now();
        });
        drop(p);
        assert!(!resolver.is_closed(), "a callback waits");
        if abandon {
            drop(resolver);
            assert_eq!(load(&seen), 0);
        } else {
            resolver.set_result(DropCounter(drops.clone())).unwrap();
            assert_eq!(load(&seen), 1);
            assert_eq!(load(&drops), 1, "freed with the value after the drain");
        }
    }
}

/// A waker that, when woken by the resolver, drops the task that holds the last promise
/// handle (as an executor dropping a cancelled task would). Without callbacks RESOLVER is
/// already clear: the handle frees the block inside the resolver's wake_list; with one, it
/// sets GONE and the resolver frees after the drain.
#[test]
fn a_waker_that_drops_the_last_handle_inside_wake() {
    type Task = orderslip::PromiseFuture<u8, ()>;
    struct DropsOnWake(Mutex<Option<std::pin::Pin<Box<Task>>>>);
    impl std::task::Wake for DropsOnWake {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            let task = self.0.lock().unwrap().take();
            drop(task);
        }
    }
    for with_callback in [false, true] {
        let (resolver, p) = Promise::<u8, ()>::channel();
        if with_callback {
            p.then(|_| ());
        }
        let holder = Arc::new(DropsOnWake(Mutex::new(None)));
        let waker = std::task::Waker::from(holder.clone());
        let mut task = Box::pin(p.into_future());
        assert!(poll_once(task.as_mut(), &waker).is_pending());
        *holder.0.lock().unwrap() = Some(task);
        resolver.set_result(1).unwrap();
        assert!(holder.0.lock().unwrap().is_none());
    }
}

/// Races: set / drop unset against the last handle's drop, a late `then`, a waiter and an
/// `into_inner`. Every round must free the block exactly once (Miri: no leak, no double
/// free, no data race) and give consistent answers.
#[test]
fn race_resolver_against_the_promise_side() {
    for round in 0..ROUNDS {
        let drops = counter();
        let ran = counter();
        let (resolver, p) = Promise::<DropCounter, ()>::channel();
        let (a, b, c) = (p.clone(), p.clone(), p.clone());
        drop(p);
        let set = round % 2 == 0;
        let d = drops.clone();
        let producer = thread::spawn(move || {
            if set {
                let _ = resolver.set_result(DropCounter(d));
            } else {
                drop(resolver);
            }
        });
        let r = ran.clone();
        let registrar = thread::spawn(move || {
            a.then(move |res| {
                if res.is_ok() {
                    r.fetch_add(1, Ordering::SeqCst);
                }
            });
        });
        let waiter = thread::spawn(move || match b.wait() {
            Ok(_) => 1,
            Err(PromiseError::Abandoned) => 0,
            Err(e) => panic!("{e:?}"),
        });
        let taker = thread::spawn(move || c.into_inner().is_some());
        let waited = waiter.join().unwrap();
        let took = taker.join().unwrap();
        registrar.join().unwrap();
        producer.join().unwrap();
        assert_eq!(waited, usize::from(set));
        assert_eq!(load(&ran), usize::from(set));
        // Moved out and dropped by the taker, or dropped with the block: once either way.
        assert!(!took || set);
        assert_eq!(load(&drops), usize::from(set));
    }
}

/// The closed path: the last handle goes while the resolver sets; the value is handed back
/// (closed) or published and dropped with the block, exactly once.
#[test]
fn race_set_against_the_last_handle() {
    for _ in 0..ROUNDS {
        let drops = counter();
        let (resolver, p) = Promise::<DropCounter, ()>::channel();
        let d = drops.clone();
        let producer = thread::spawn(move || resolver.set_result(DropCounter(d)).is_ok());
        drop(p);
        let published = producer.join().unwrap();
        let _ = published;
        assert_eq!(load(&drops), 1);
    }
}
