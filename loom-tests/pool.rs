//! Loom models of the worker pool's protocols (`src/queue/pool.rs`, `src/queue/batch.rs`):
//! one model per race between a `put` on a pool-backed queue (its schedule and the pool's
//! notify) and a pool thread handing a queue back, yielding it at the batch limit, parking,
//! retiring, or being woken by the pool's close.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_pool`.
//!
//! Pool threads are loom threads: loom allows at most 5 threads per model, counting the main
//! thread, producers and every pool-thread incarnation (a thread that retires and is spawned
//! again counts twice), so each model puts few actions. Under loom a keep-alive park yields
//! once and then times out, and the clock is frozen, so a batch ends at the count limit
//! only, which is 2 actions under loom instead of 128 (`sync::BATCH_ACTIONS`): a model
//! reaches the limit with three actions. The run queue is a loom `Mutex<VecDeque>`.
//!
//! **What fails a model.** A stranded action leaves the main thread waiting for its
//! [`Signal`] forever, and a pool thread that never ends (parked past the pool's close)
//! leaves loom with a thread that cannot run: loom reports either as a deadlock. A pool
//! thread that ends with a task still queued leaks the queue (loom's leak check). Inside
//! the actions, a queue's [`Trace`] checks their order, and that each happens before the
//! next (a loom `UnsafeCell`: two tasks of one queue running at once are a causality
//! violation). A queue catches its actions' panics, so these checks report to the model's
//! [`Failures`], which the main thread asserts empty once the actions ran.
//!
//! The models wait with a [`Signal`] (a loom `Notify`) that the last action sets, rather
//! than with `submit`'s promise: the promise has models of its own, and it made
//! `put_vs_hand_back` four to five times larger (13 582 executions at 3 preemptions
//! instead of 2 890, measured on the pool before its SPINNING state).
//!
//! Every model but `close_vs_lingering_thread` is bounded (a preemption bound set per test,
//! printed by `bounded`): `put_vs_hand_back`, the smallest, had not finished exhaustively
//! after 12 minutes (measured on the pool before its SPINNING state was added), and the
//! others are larger. Each gives its measured time and executions; the
//! suite's total is about 3.5 minutes on a 2-core machine (212 s measured). The outcomes that
//! can be told apart from outside (which thread ran an action, which queue ran first) are
//! asserted to have been reached ([`Reached`]).
#![cfg(loom)]

mod util;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Notify};
use loom::thread::{self, ThreadId};
use orderslip::{ActionQueue, WorkerPool};
use std::any::Any;
use std::sync::{Arc as StdArc, Mutex as StdMutex};
use std::time::Duration;
use util::{bounded, model, Reached, StartLine};

fn pool(max_threads: usize, keep_alive: Duration) -> WorkerPool {
    WorkerPool::builder()
        .max_threads(max_threads)
        .keep_alive(keep_alive)
        .build()
}

/// The panics of a model's actions: the failed checks of its [`Trace`]s, and causality
/// violations that loom found inside an action. A queue catches its actions' panics (and
/// runs the next action), so a check that fails inside an action would not fail the model
/// by itself: each queue's panic handler records it here, and the main thread asserts that
/// there were none after its last wait. (Should the last action itself fail, it never sets
/// its signal: loom then reports a deadlock, after the panic's message.) A std mutex:
/// loom need not see it, and runs the model's threads one at a time.
#[derive(Clone, Default)]
struct Failures(StdArc<StdMutex<Vec<String>>>);

impl Failures {
    /// A queue on `pool` whose actions' panics are recorded here.
    fn queue(&self, pool: &WorkerPool) -> ActionQueue {
        let failures = self.clone();
        ActionQueue::builder()
            .pool(pool)
            .panic_handler(move |payload: &(dyn Any + Send)| {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "(a non-string panic)".to_owned());
                failures.0.lock().unwrap().push(message);
            })
            .build()
    }

    fn assert_none(&self) {
        let failures = self.0.lock().unwrap();
        assert!(failures.is_empty(), "actions failed: {failures:?}");
    }
}

/// The actions' own record of how they ran: each takes the next step, noting its name and
/// the loom thread it ran on (a pool thread that retires and is spawned again is a new loom
/// thread). The step count lives in a loom `UnsafeCell`, so loom checks that every step
/// happens before the next: two actions that share a trace and are not ordered (two tasks
/// of one queue at once, or two actions of a one-thread pool at once) are a causality
/// violation, whichever way their steps interleave. Checking this needs no scheduling point
/// in the action, where an atomic "in action" flag needs two and catches only the
/// interleavings in which the actions overlap.
struct Trace {
    steps: UnsafeCell<usize>,
    ran: StdMutex<Vec<(&'static str, ThreadId)>>,
}

// SAFETY: the cell is only touched through loom's checked `with`/`with_mut`, which fail the
// model (a panic, before the access) when two accesses are not ordered by happens-before;
// the queues under test are to order them, and that is what a trace checks.
unsafe impl Sync for Trace {}

impl Trace {
    fn new() -> Arc<Trace> {
        Arc::new(Trace {
            steps: UnsafeCell::new(0),
            ran: StdMutex::new(Vec::new()),
        })
    }

    /// Takes the next step, as `name`; returns how many steps were taken before.
    fn step(&self, name: &'static str) -> usize {
        self.ran
            .lock()
            .unwrap()
            .push((name, thread::current().id()));
        self.steps.with_mut(|steps| {
            // SAFETY: see `Sync for Trace` (loom checked this access before we got here).
            let steps = unsafe { &mut *steps };
            *steps += 1;
            *steps - 1
        })
    }

    /// Takes the next step, which must be the `n`th (from 0): the queue's earlier actions ran.
    fn step_n(&self, name: &'static str, n: usize) {
        assert_eq!(self.step(name), n, "`{name}` out of order");
    }

    /// How many steps were taken (a checked read: it must happen after them).
    fn taken(&self) -> usize {
        // SAFETY: see `Sync for Trace`.
        self.steps.with(|steps| unsafe { *steps })
    }

    /// The steps' names and threads, in order.
    fn ran(&self) -> Vec<(&'static str, ThreadId)> {
        self.ran.lock().unwrap().clone()
    }

    /// Whether the first and the last step ran on the same loom thread.
    fn one_thread(&self) -> bool {
        let ran = self.ran();
        ran.first().map(|r| r.1) == ran.last().map(|r| r.1)
    }
}

/// A one-shot signal: an action sets it, one thread waits for it. (A bare loom `Notify` may
/// wake its waiter spuriously once, so the waiter loops on a flag.)
struct Signal {
    set: AtomicBool,
    notify: Notify,
}

impl Signal {
    fn new() -> Arc<Signal> {
        Arc::new(Signal {
            set: AtomicBool::new(false),
            notify: Notify::new(),
        })
    }

    fn set(&self) {
        // ORDERING: Release: the waiter sees what the setter did before.
        self.set.store(true, Ordering::Release);
        self.notify.notify();
    }

    fn wait(&self) {
        // ORDERING: Acquire: pairs with `set`.
        while !self.set.load(Ordering::Acquire) {
            self.notify.wait();
        }
    }
}

/// put ∥ the pool thread handing the drained queue back (max_threads 1, keep-alive zero):
/// the first action runs, and its batch's hand-back (`swap(IDLE)`, re-check, CAS) races with
/// the second `put` (push, `swap(RUNNING)`, and, if it read IDLE, the run queue's push and
/// the notify), while the thread may retire (keep-alive zero) and the put respawn the slot.
/// Both actions run, in order, and the pool never counts more than one thread. Reached: the
/// second action on the first thread (in the same batch, through the hand-back's re-check,
/// or as a task the running thread found) and on a respawned one.
///
/// Fails it: not measured for this model by a mutation run (the shuttle suite's mutation runs, in
/// `tests/shuttle_pool.rs`, cover the hand-back's and the park's re-checks).
///
/// Bounded to 4 preemptions: 21 822 executions, 3 s on 2 cores.
#[test]
fn put_vs_hand_back() {
    let reached = Reached::default();
    let record = reached.clone();
    bounded(4, move || {
        let pool = pool(1, Duration::ZERO);
        let failures = Failures::default();
        let queue = failures.queue(&pool);
        let trace = Trace::new();
        let done = Signal::new();
        let t = trace.clone();
        queue.put(move || t.step_n("first", 0));
        let (t, d) = (trace.clone(), done.clone());
        queue.put(move || {
            t.step_n("second", 1);
            d.set();
        });
        done.wait();
        failures.assert_none();
        assert!(pool.peak_threads() <= 1, "peak {}", pool.peak_threads());
        record.record(
            if trace.one_thread() {
                "one thread"
            } else {
                "respawned"
            }
            .into(),
        );
    });
    reached.assert_includes(&["one thread", "respawned"]);
}

/// Puts on two queues, from two threads, ∥ one pool thread (max_threads 1, keep-alive zero):
/// both notifiers may find the slot IDLE, and only one's CAS may claim it and spawn; the
/// other's fails and it looks again (RUNNING: the running thread takes its task). The
/// thread may retire between the two tasks and be respawned. Both actions run, and one
/// after the other (they share a [`Trace`]: two at once would be a causality violation),
/// and the pool never counts more than one thread. Reached: either queue first.
///
/// Fails it: not measured for this model by a mutation run (the shuttle suite's mutation runs, in
/// `tests/shuttle_pool.rs`, cover the hand-back's and the park's re-checks).
///
/// Bounded to 3 preemptions: 209 179 executions, 30 s on 2 cores.
#[test]
fn two_queues_vs_one_thread() {
    let reached = Reached::default();
    let record = reached.clone();
    bounded(3, move || {
        let pool = pool(1, Duration::ZERO);
        let failures = Failures::default();
        let (a, b) = (failures.queue(&pool), failures.queue(&pool));
        let trace = Trace::new();
        let (done_a, done_b) = (Signal::new(), Signal::new());
        let line = StartLine::new();
        let (t, d) = (trace.clone(), done_b.clone());
        let producer = line.spawn(move || {
            b.put(move || {
                t.step("b");
                d.set();
            });
            b // kept until its action ran: the last handle's drop would reschedule it
        });
        let (t, d) = (trace.clone(), done_a.clone());
        line.race();
        a.put(move || {
            t.step("a");
            d.set();
        });
        let b = producer.join().unwrap();
        done_a.wait();
        done_b.wait();
        failures.assert_none();
        assert!(pool.peak_threads() <= 1, "peak {}", pool.peak_threads());
        record.record(format!("{} first", trace.ran()[0].0));
        drop((a, b));
    });
    reached.assert_includes(&["a first", "b first"]);
}

/// The batch limit (2 actions under loom) ∥ a put on the yielding queue, with another queue
/// waiting (max_threads 1, keep-alive zero). Queue A's first action waits at a gate that the
/// main thread opens once A holds three actions and queue B's task waits in the run queue,
/// so A's first batch always ends at the limit with work left: A's task goes behind B's
/// (B's action runs before A's third). A fourth put on A then races with A's second batch
/// and its hand-back (it may land in that batch, be found by the hand-back's re-check, or
/// find A IDLE and schedule it again, perhaps on a respawned thread). Every action runs
/// once, A's in order, and A's remaining actions run after the yield. Reached: A's last
/// action on the first thread and on a respawned one.
///
/// Fails it: not measured for this model by a mutation run (the shuttle suite's mutation runs, in
/// `tests/shuttle_pool.rs`, cover the hand-back's and the park's re-checks).
///
/// Bounded to 3 preemptions: 16 375 executions, 3 s on 2 cores.
#[test]
fn batch_yield_vs_put() {
    let reached = Reached::default();
    let record = reached.clone();
    bounded(3, move || {
        let pool = pool(1, Duration::ZERO);
        let failures = Failures::default();
        let (a, b) = (failures.queue(&pool), failures.queue(&pool));
        let (trace_a, trace_b) = (Trace::new(), Trace::new());
        let (gate, done) = (Signal::new(), Signal::new());
        let (t, g) = (trace_a.clone(), gate.clone());
        a.put(move || {
            g.wait();
            t.step_n("a1", 0);
        });
        let t = trace_a.clone();
        a.put(move || t.step_n("a2", 1));
        let (t, tb) = (trace_a.clone(), trace_b.clone());
        a.put(move || {
            t.step_n("a3", 2);
            assert_eq!(tb.taken(), 1, "A yielded behind B at the batch limit");
        });
        let t = trace_b.clone();
        b.put(move || {
            t.step("b1");
        });
        gate.set();
        let (t, d) = (trace_a.clone(), done.clone());
        a.put(move || {
            t.step_n("a4", 3);
            d.set();
        });
        done.wait();
        failures.assert_none();
        assert!(pool.peak_threads() <= 1, "peak {}", pool.peak_threads());
        record.record(
            if trace_a.one_thread() {
                "one thread"
            } else {
                "respawned"
            }
            .into(),
        );
    });
    reached.assert_includes(&["one thread", "respawned"]);
}

/// A lingering pool thread's keep-alive park timing out and its retiring CAS(PARKED → IDLE)
/// ∥ a put whose notify finds the slot PARKED (it CASes it to RUNNING and unparks: the
/// retiring CAS fails and the thread runs the task), RUNNING (the thread's re-check after
/// `swap(PARKED)` finds the task), or IDLE (the thread retired: a new one is spawned).
/// max_threads 1, keep-alive 1 s, which under loom is one yield and a timeout. The second
/// action runs, after the first; the pool never counts more than one thread, and every
/// incarnation ends. Reached: the second action on the first thread and on a respawned one.
///
/// Fails it: not measured for this model by a mutation run (the shuttle suite's mutation runs, in
/// `tests/shuttle_pool.rs`, cover the hand-back's and the park's re-checks).
///
/// Bounded to 3 preemptions: 24 433 executions, 3 s on 2 cores.
#[test]
fn retire_vs_put() {
    let reached = Reached::default();
    let record = reached.clone();
    bounded(3, move || {
        let pool = pool(1, Duration::from_secs(1));
        let failures = Failures::default();
        let queue = failures.queue(&pool);
        let trace = Trace::new();
        let (first, second) = (Signal::new(), Signal::new());
        let (t, d) = (trace.clone(), first.clone());
        queue.put(move || {
            t.step_n("first", 0);
            d.set();
        });
        first.wait();
        let (t, d) = (trace.clone(), second.clone());
        queue.put(move || {
            t.step_n("second", 1);
            d.set();
        });
        second.wait();
        failures.assert_none();
        assert!(pool.peak_threads() <= 1, "peak {}", pool.peak_threads());
        record.record(
            if trace.one_thread() {
                "one thread"
            } else {
                "respawned"
            }
            .into(),
        );
    });
    reached.assert_includes(&["one thread", "respawned"]);
}

/// A queue's hand-back ∥ puts that schedule it again, with a second pool thread to take the
/// new task (max_threads 2, keep-alive zero, one queue): the second and third puts land
/// while the first batch drains and hands the queue back, so a put may read IDLE and
/// schedule a new task, which the other slot's thread takes (the first thread being still
/// in its hand-back, or retiring) while the hand-back's re-check also finds work and its
/// CAS(IDLE → RUNNING) must fail. The three actions run once each, in order and one after
/// the other (the queue's [`Trace`]), and the pool counts at most two threads. Reached: the
/// actions on one thread and on two.
///
/// Fails it: a hand-back that takes the queue back with a store of RUNNING instead of the
/// CAS (two tasks of the queue: a causality violation on its trace, at 3 preemptions). Two
/// actions are not enough for that: the second task then finds the queue empty.
///
/// Bounded to 4 preemptions: 676 213 executions, 103 s on 2 cores (376 686 and 55 s before
/// the pool's SPINNING state; 3: 15 977, 6 s then).
#[test]
fn hand_back_vs_put_on_two_threads() {
    let reached = Reached::default();
    let record = reached.clone();
    bounded(4, move || {
        let pool = pool(2, Duration::ZERO);
        let failures = Failures::default();
        let queue = failures.queue(&pool);
        let trace = Trace::new();
        let done = Signal::new();
        let t = trace.clone();
        queue.put(move || t.step_n("first", 0));
        let t = trace.clone();
        queue.put(move || t.step_n("second", 1));
        let (t, d) = (trace.clone(), done.clone());
        queue.put(move || {
            t.step_n("third", 2);
            d.set();
        });
        done.wait();
        failures.assert_none();
        assert!(pool.peak_threads() <= 2, "peak {}", pool.peak_threads());
        let ran = trace.ran();
        record.record(
            if ran.iter().all(|r| r.1 == ran[0].1) {
                "one thread"
            } else {
                "two threads"
            }
            .into(),
        );
    });
    reached.assert_includes(&["one thread", "two threads"]);
}

/// Two pool threads (max_threads 2) ∥ puts on two queues from two threads: queue A gets
/// three actions from the main thread, B one from a producer, so both notifiers race for
/// the two slots while A's batches hand back and are scheduled again. Every action runs
/// once, A's in order and one after the other (A's [`Trace`]), and the pool counts at most
/// two threads. The keep-alive is `Duration::MAX` (an untimed park), so each slot has one
/// incarnation (the model stays within loom's five threads), and the model ends with the
/// pool's close waking the lingering threads. Reached: B's action and A's first on the same
/// thread and on different ones.
///
/// Fails it: a notify that claims an IDLE slot with a store of RUNNING instead of the CAS
/// (a third thread: peak 3).
///
/// Bounded to 2 preemptions: 314 209 executions, 56 s on 2 cores (202 160 and 36-43 s
/// before the pool's SPINNING state; 1: 3 291, 0.7 s); 3 would take about 10 times as long.
#[test]
fn two_threads_two_queues() {
    let reached = Reached::default();
    let record = reached.clone();
    bounded(2, move || {
        let pool = pool(2, Duration::MAX);
        let failures = Failures::default();
        let (a, b) = (failures.queue(&pool), failures.queue(&pool));
        let (trace_a, trace_b) = (Trace::new(), Trace::new());
        let (done_a, done_b) = (Signal::new(), Signal::new());
        let line = StartLine::new();
        let (t, d) = (trace_b.clone(), done_b.clone());
        let producer = line.spawn(move || {
            b.put(move || {
                t.step("b1");
                d.set();
            });
            b // kept until its action ran: the last handle's drop would reschedule it
        });
        let t = trace_a.clone();
        line.race();
        a.put(move || t.step_n("a1", 0));
        let t = trace_a.clone();
        a.put(move || t.step_n("a2", 1));
        let (t, d) = (trace_a.clone(), done_a.clone());
        a.put(move || {
            t.step_n("a3", 2);
            d.set();
        });
        let b = producer.join().unwrap();
        done_a.wait();
        done_b.wait();
        failures.assert_none();
        assert!(pool.peak_threads() <= 2, "peak {}", pool.peak_threads());
        let same = trace_a.ran()[0].1 == trace_b.ran()[0].1;
        record.record(
            if same {
                "a and b on one thread"
            } else {
                "a and b on two"
            }
            .into(),
        );
        drop((a, b));
    });
    reached.assert_includes(&["a and b on one thread", "a and b on two"]);
}

/// The pool's close (the last queue and the last pool handle dropped) ∥ a pool thread that
/// lingers (keep-alive `Duration::MAX`: its park has no deadline, so only an unpark ends
/// it). The close stores `closed`, fences and unparks a PARKED slot; the thread, after
/// `swap(PARKED)` and its fence, reads `closed` before it parks. Either way the thread
/// retires and the model ends (loom fails a model whose thread stays parked). The last
/// user may be the pool thread itself, dropping the queue's last `Arc` after its batch.
///
/// Fails it: not measured for this model by a mutation run (the shuttle suite's mutation runs, in
/// `tests/shuttle_pool.rs`, cover the hand-back's and the park's re-checks).
///
/// Exhaustive: 131 050 executions, 14 s on 2 cores.
#[test]
fn close_vs_lingering_thread() {
    model(|| {
        let pool = pool(1, Duration::MAX);
        let queue = ActionQueue::builder().pool(&pool).build();
        let done = Signal::new();
        let d = done.clone();
        queue.put(move || d.set());
        done.wait();
        drop(queue);
        drop(pool);
    });
}
