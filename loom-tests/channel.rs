//! Loom models of the channel protocol (`Promise::channel`, `Resolver`): one model per race
//! between the resolver's final CAS (set or drop unset), the promise side's waiters, futures
//! and callbacks (and the resolver awaiting `closed()`), and the last handle's CAS that sets
//! GONE; see `src/promise/channel.rs`.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_channel`.
//! Every model is exhaustive (no `LOOM_MAX_PREEMPTIONS` bound) unless its doc says otherwise.
//! Loom fails a model that ends with a promise block, callback node or waiter node still
//! allocated (`loom::alloc`, loom `Arc`s), or that frees one twice.
//!
//! The values set through the channels are [`Counted`]: each copy counts itself in a std
//! counter, so a model can check that the value was dropped exactly once whoever ended up
//! owning it (a waiter's clone, the block, or the resolver that got it handed back). The
//! counters are std atomics on purpose: loom runs a model's threads one at a time on one OS
//! thread, so they need no modelling, and loom atomics would add a scheduling point to every
//! copy and drop. They are only asserted on after the threads that touch them were joined.
//!
//! Loom's exploration has blind spots (see [`Reached`]), so every model spawns its threads
//! behind a [`StartLine`], and every model whose outcomes can be told apart from outside
//! asserts, once loom is done, that it reached each of them (printed as `loom: outcomes`).
#![cfg(loom)]

mod util;

use loom::thread;
use orderslip::{Promise, PromiseError};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc as StdArc, Mutex as StdMutex};
use std::task::{Context, Poll, Wake, Waker};
use util::{bounded, model, Reached, StartLine};

type P = Promise<usize, usize>;
type C = Promise<Counted, usize>;

/// A std counter shared outside the model's view (see the module docs).
type Count = StdArc<AtomicUsize>;

fn count() -> Count {
    StdArc::new(AtomicUsize::new(0))
}

fn get(count: &Count) -> usize {
    // ORDERING: Relaxed: read after the threads that write it were joined (and loom runs
    // every model thread on one OS thread).
    count.load(Ordering::Relaxed)
}

fn bump(count: &Count) {
    // ORDERING: Relaxed: see `get`.
    count.fetch_add(1, Ordering::Relaxed);
}

/// A value whose live copies are counted in `live`: +1 when made or cloned, -1 when
/// dropped. A model that ends with `live` at 0 dropped every copy exactly once.
#[derive(Debug)]
struct Counted {
    n: usize,
    live: Count,
}

impl Counted {
    fn new(n: usize, live: &Count) -> Self {
        bump(live);
        Counted {
            n,
            live: live.clone(),
        }
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        Counted::new(self.n, &self.live)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // ORDERING: Relaxed: see `get`.
        let before = self.live.fetch_sub(1, Ordering::Relaxed);
        assert!(before > 0, "a Counted dropped twice");
    }
}

/// Records, when dropped, whether that happened on the thread it names (for a callback's
/// captures).
struct DropOn(StdArc<StdMutex<Vec<bool>>>, thread::ThreadId);

impl Drop for DropOn {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap()
            .push(thread::current().id() == self.1);
    }
}

/// A waker that counts its wakes.
struct CountingWaker(Count);

impl Wake for CountingWaker {
    fn wake(self: StdArc<Self>) {
        bump(&self.0);
    }

    fn wake_by_ref(self: &StdArc<Self>) {
        bump(&self.0);
    }
}

fn counting_waker(wakes: &Count) -> Waker {
    Waker::from(StdArc::new(CountingWaker(wakes.clone())))
}

/// set ∥ blocking waits on two clones: both waiters get the value, whether their push
/// comes before the resolver's CAS (taken and woken) or after it (the push fails on DONE).
/// A missed node would park its waiter forever, which loom reports as a deadlock. (No
/// outcome check: how a waiter got the value cannot be seen from outside.)
///
/// Three threads (main, resolver, second waiter): bounded to 5 preemptions. Measured on the
/// 2-core machine at a load of about 2: bound 4: 118 832 executions, 7 s; 5: 517 970,
/// 31 s; 6: 1 985 496, 113 s, too much of the suite's budget. The exhaustive run (without
/// the start line) had not finished after 10 minutes.
#[test]
fn set_vs_two_waits() {
    bounded(BOUND_SET_VS_TWO_WAITS, || {
        let (resolver, p) = P::channel();
        let q = p.clone();
        let line = StartLine::new();
        let t = line.spawn(move || resolver.set_result(7).unwrap());
        let w = line.spawn(move || assert_eq!(q.wait(), Ok(&7)));
        line.race();
        assert_eq!(p.wait(), Ok(&7));
        t.join().unwrap();
        w.join().unwrap();
    });
}

/// resolver dropped unset ∥ a blocking wait on one clone ∥ an async poll on another: both
/// get `Abandoned`. A poll that registered before the drop's CAS is woken exactly once (its
/// counting waker) and its next poll is ready; the blocking waiter would park forever if its
/// node were missed (loom reports the deadlock).
///
/// Three threads (main, resolver, blocking waiter): bounded to 6 preemptions. Measured as
/// for `set_vs_two_waits`: bound 4: 47 225 executions, 3 s; 5: 193 636, 13 s; 6: 724 557,
/// 42 s. The exhaustive run, without the start line and outcome check, passed once:
/// 6 020 853 executions, 502 s at a load of about 5, over the budget.
#[test]
fn abandon_vs_wait_and_async_poll() {
    let reached = Reached::default();
    let record = reached.clone();
    bounded(BOUND_ABANDON_VS_WAIT_AND_ASYNC_POLL, move || {
        let (resolver, p) = P::channel();
        let q = p.clone();
        let line = StartLine::new();
        let t = line.spawn(move || drop(resolver));
        let w = line.spawn(move || assert_eq!(q.wait(), Err(PromiseError::Abandoned)));
        let wakes = count();
        let waker = counting_waker(&wakes);
        let mut cx = Context::from_waker(&waker);
        let mut fut = Box::pin(p.wait_async());
        line.race();
        let first = fut.as_mut().poll(&mut cx);
        t.join().unwrap();
        assert!(get(&wakes) <= 1, "woken {} times", get(&wakes));
        match &first {
            Poll::Ready(r) => assert_eq!(*r, Err(PromiseError::Abandoned)),
            Poll::Pending => {
                assert_eq!(get(&wakes), 1, "a registered task missed the abandonment");
                assert_eq!(
                    fut.as_mut().poll(&mut cx),
                    Poll::Ready(Err(PromiseError::Abandoned))
                );
            }
        }
        record.record(format!("{} woken {}", ready(&first), get(&wakes)));
        drop(fut);
        w.join().unwrap();
    });
    reached.assert_includes(&["ready woken 0", "pending woken 1"]);
}

/// set ∥ the last handle (which first peeks at the result) dropped: the value is read by
/// the handle or handed back by `set_result` (`Err(v)`), never both, never lost; it is
/// dropped exactly once and the block is freed exactly once (by whichever of the resolver's
/// CAS and the handle's CAS that sets GONE comes second). A racing `is_closed` that said
/// `true` means the set must hand the value back. Without the [`StartLine`], loom never
/// reached `closed true` (11 executions, every other outcome reached).
///
/// Two threads, exhaustive.
#[test]
fn set_vs_last_handle_drop() {
    let reached = Reached::default();
    let record = reached.clone();
    model(move || {
        let live = count();
        let (resolver, p) = C::channel();
        let line = StartLine::new();
        let t = line.spawn(move || {
            let seen = p.try_result().map(|r| r.unwrap().n);
            drop(p);
            seen
        });
        line.race();
        let closed = resolver.is_closed();
        let outcome = resolver.set_result(Counted::new(7, &live));
        let seen = t.join().unwrap();
        match &outcome {
            Ok(()) => assert!(
                !closed,
                "is_closed said nobody listens, yet the set took it"
            ),
            Err(v) => {
                assert_eq!(v.n, 7);
                assert_eq!(seen, None, "handed back a value a handle had read");
            }
        }
        assert!(seen.is_none() || seen == Some(7));
        record.record(format!(
            "closed {closed} set {} seen {}",
            ok(&outcome),
            seen.is_some()
        ));
        drop(outcome);
        assert_eq!(get(&live), 0, "the value was leaked or dropped twice");
    });
    reached.assert_includes(&[
        "closed false set Ok seen true",
        "closed false set Ok seen false",
        "closed false set Err seen false",
        "closed true set Err seen false",
    ]);
}

/// resolver dropped unset ∥ the last handle dropped: the block is freed exactly once
/// (loom fails on a leak or a double free), by whichever RMW comes second. The resolver
/// looks at `is_closed` first, to tell the orders apart.
///
/// Two threads, exhaustive.
#[test]
fn abandon_vs_last_handle_drop() {
    let reached = Reached::default();
    let record = reached.clone();
    model(move || {
        let (resolver, p) = P::channel();
        let line = StartLine::new();
        let t = line.spawn(move || {
            let closed = resolver.is_closed();
            drop(resolver);
            closed
        });
        line.race();
        drop(p);
        let closed = t.join().unwrap();
        record.record(format!("closed {closed}"));
    });
    reached.assert_includes(&["closed false", "closed true"]);
}

/// set ∥ an owned future (`IntoFuture`, the only handle) polled once and then dropped:
/// a ready poll gets the value; a pending poll's node is unregistered by the drop (or taken
/// and woken by the resolver) and freed, the handle goes, and the value is dropped exactly
/// once, whether the block kept it or the set handed it back. A counting waker checks no
/// task is woken twice.
///
/// Two threads, exhaustive.
#[test]
fn set_vs_owned_future_poll_and_drop() {
    let reached = Reached::default();
    let record = reached.clone();
    model(move || {
        let live = count();
        let (resolver, p) = C::channel();
        let producer = live.clone();
        let line = StartLine::new();
        let t = line.spawn(move || resolver.set_result(Counted::new(7, &producer)).is_ok());
        let wakes = count();
        let waker = counting_waker(&wakes);
        let mut cx = Context::from_waker(&waker);
        let mut fut = IntoFuture::into_future(p);
        line.race();
        let first = Pin::new(&mut fut).poll(&mut cx);
        drop(fut);
        let set = t.join().unwrap();
        if let Poll::Ready(r) = &first {
            assert!(set, "the future got a value the set handed back");
            assert_eq!(r.as_ref().map(|v| v.n), Ok(7));
        }
        assert!(get(&wakes) <= 1, "woken {} times", get(&wakes));
        record.record(format!(
            "{} set {} woken {}",
            ready(&first),
            if set { "Ok" } else { "Err" },
            get(&wakes)
        ));
        drop(first);
        assert_eq!(get(&live), 0, "the value was leaked or dropped twice");
    });
    reached.assert_includes(&[
        "ready set Ok woken 0",
        "pending set Ok woken 1",
        "pending set Ok woken 0",
        "pending set Err woken 0",
    ]);
}

/// `then` (and then the last handle dropped) ∥ set: the callback runs exactly once, with
/// the value: queued and run by the resolver's drain, or run at once by `then` if it saw
/// DONE. The handle's drop races the resolver's drain and its `fetch_and(!RESOLVER)`, and
/// the resolver's `is_closed` never says `true` (the handle is alive, or the callback is
/// registered and waits).
///
/// Two threads, exhaustive.
#[test]
fn then_vs_set() {
    let reached = Reached::default();
    let record = reached.clone();
    model(move || {
        let live = count();
        let ran_on = StdArc::new(StdMutex::new(Vec::new()));
        let (resolver, p) = C::channel();
        let producer = live.clone();
        let line = StartLine::new();
        let t = line.spawn(move || {
            assert!(!resolver.is_closed(), "closed with a callback registered");
            resolver.set_result(Counted::new(5, &producer)).unwrap();
        });
        let on = ran_on.clone();
        let main = thread::current().id();
        line.race();
        p.then(move |r| {
            assert_eq!(r.map(|v| v.n), Ok(5));
            on.lock().unwrap().push(thread::current().id() == main);
        });
        drop(p);
        t.join().unwrap();
        let ran_on = ran_on.lock().unwrap();
        assert_eq!(ran_on.len(), 1, "the callback ran {} times", ran_on.len());
        record.record(format!("ran on main {}", ran_on[0]));
        assert_eq!(get(&live), 0, "the value was leaked or dropped twice");
    });
    reached.assert_includes(&["ran on main true", "ran on main false"]);
}

/// `then` (and then the last handle dropped) ∥ resolver dropped unset: the callback
/// never runs and is dropped exactly once (by the resolver's discard, or by `then` itself if
/// it saw ABANDONED or the closed stack), and the block is freed once. As in
/// `then_vs_set`, `is_closed` never says `true`.
///
/// Two threads, exhaustive.
#[test]
fn then_vs_abandon() {
    let reached = Reached::default();
    let record = reached.clone();
    model(move || {
        let runs = count();
        let dropped_on = StdArc::new(StdMutex::new(Vec::new()));
        let (resolver, p) = P::channel();
        let line = StartLine::new();
        let t = line.spawn(move || {
            assert!(!resolver.is_closed(), "closed with a callback registered");
            drop(resolver);
        });
        let seen = runs.clone();
        let main = thread::current().id();
        let token = DropOn(dropped_on.clone(), main);
        line.race();
        p.then(move |_| {
            let _token = &token;
            bump(&seen);
        });
        drop(p);
        t.join().unwrap();
        assert_eq!(get(&runs), 0, "a callback of an abandoned channel ran");
        let dropped_on = dropped_on.lock().unwrap();
        assert_eq!(
            dropped_on.len(),
            1,
            "the unrun callback was dropped {} times",
            dropped_on.len()
        );
        record.record(format!("dropped on main {}", dropped_on[0]));
    });
    reached.assert_includes(&["dropped on main true", "dropped on main false"]);
}

/// `into_inner` ∥ `into_inner` on the last two handles of a set channel: exactly one
/// gets the value (the one whose handle goes last), moved out, not cloned; the other's
/// handle just goes. The block is freed once and the value dropped once.
///
/// Two threads, exhaustive.
#[test]
fn into_inner_vs_into_inner() {
    let reached = Reached::default();
    let record = reached.clone();
    model(move || {
        let live = count();
        let (resolver, p) = C::channel();
        let q = p.clone();
        resolver.set_result(Counted::new(9, &live)).unwrap();
        let line = StartLine::new();
        let t = line.spawn(move || q.into_inner().map(|r| r.unwrap().n));
        line.race();
        let mine = p.into_inner().map(|r| r.unwrap().n);
        let theirs = t.join().unwrap();
        match (mine, theirs) {
            (Some(9), None) => record.record("main got it".into()),
            (None, Some(9)) => record.record("thread got it".into()),
            other => panic!("not exactly one got the value: {other:?}"),
        }
        assert_eq!(get(&live), 0, "the value was leaked or dropped twice");
    });
    reached.assert_includes(&["main got it", "thread got it"]);
}

fn ready<T>(poll: &Poll<T>) -> &'static str {
    if poll.is_ready() {
        "ready"
    } else {
        "pending"
    }
}

fn ok<T, E>(result: &Result<T, E>) -> &'static str {
    if result.is_ok() {
        "Ok"
    } else {
        "Err"
    }
}

/// See `set_vs_two_waits`.
const BOUND_SET_VS_TWO_WAITS: usize = 5;
/// See `abandon_vs_wait_and_async_poll`.
const BOUND_ABANDON_VS_WAIT_AND_ASYNC_POLL: usize = 6;

/// `Resolver::closed()` awaited ∥ the last handle dropped: the resolver's task either sees
/// GONE when it polls, or has its node on the stack when the drop's CAS sets GONE and takes
/// it, and is woken; no lost wake-up (loom reports a deadlock if `block_on` is never woken).
/// A second handle, dropped by the main thread first, makes the first poll see a live one.
///
/// Two threads, exhaustive.
#[test]
fn closed_vs_last_handle_drop() {
    let reached = Reached::default();
    let record = reached.clone();
    model(move || {
        let (resolver, p) = P::channel();
        let q = p.clone();
        let line = StartLine::new();
        let t = line.spawn(move || drop(p));
        line.race();
        drop(q);
        let closed_before = resolver.is_closed();
        loom::future::block_on(resolver.closed());
        assert!(resolver.is_closed());
        t.join().unwrap();
        assert_eq!(resolver.set_result(1), Err(1));
        record.record(format!("closed before awaiting {closed_before}"));
    });
    reached.assert_includes(&[
        "closed before awaiting false",
        "closed before awaiting true",
    ]);
}

/// A `closed()` future polled once and dropped ∥ the last handle dropped: its node is
/// freed exactly once, by the future's prune or by the drop's CAS that takes the stack and
/// wakes it (loom fails on a leak or a double free), and the waker is woken at most once.
///
/// Two threads, exhaustive.
#[test]
fn dropped_closed_future_vs_last_handle_drop() {
    let reached = Reached::default();
    let record = reached.clone();
    model(move || {
        let wakes = count();
        let (resolver, p) = P::channel();
        let line = StartLine::new();
        let t = line.spawn(move || drop(p));
        line.race();
        let waker = counting_waker(&wakes);
        let mut closed = Box::pin(resolver.closed());
        let first = closed.as_mut().poll(&mut Context::from_waker(&waker));
        drop(closed);
        t.join().unwrap();
        assert!(get(&wakes) <= 1, "woken twice");
        record.record(format!(
            "first poll ready {} woken {}",
            first.is_ready(),
            get(&wakes)
        ));
        drop(resolver);
    });
    reached.assert_includes(&[
        "first poll ready true woken 0",
        "first poll ready false woken 0",
        "first poll ready false woken 1",
    ]);
}
