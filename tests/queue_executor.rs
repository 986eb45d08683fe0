//! Queues on an `Executor` (`ActionQueue::builder().executor(...)`) and the `Task` protocol.
//!
//! - Custom executors: a thread per task and a single-thread channel executor each run two
//!   queues, fed by several producers, one action at a time per queue (an in-flight counter)
//!   and in per-producer order; a put racing the end of a batch is never stranded; the single
//!   thread runs everything, one task per scheduled queue however many puts, a batch limit
//!   that lets the other queue take turns; dropping the last handle lets the queued work run
//!   and then lets go of the executor.
//! - The `Task` protocol, on an executor that keeps its tasks for the test to run by hand: at
//!   most one task per queue, batches of 1..=128 actions, the next batch handed back to the
//!   executor; running a task makes the calling thread the queue's worker (the deadlock check)
//!   for that batch only; a dropped task unschedules the queue (the next put schedules it
//!   again) and wakes a `wait_idle(Duration::MAX)` with `false`; `Task` is `Send` and its
//!   `Debug` names the queue.
//! - Executors that fail: one that drops every task (the actions stay queued,
//!   `wait_idle(Duration::MAX)` says no instead of hanging, a later put runs everything once
//!   it works again; dropping the queue drops the work unrun and abandons its promises, and
//!   `join` says no at once); one whose `execute` panics (`put` does not panic, the same
//!   recovery), or panics after taking the task (the task still runs).
//! - An executor that runs the task inline (which the `Executor` docs forbid, for stack depth;
//!   here it reaches nested batches deterministically, as a work-stealing pool may nest them):
//!   `put` runs the action before it returns; a queue's batch nested in another queue's
//!   action restores the outer queue's deadlock check and leaves the outer batch's
//!   `wait_idle` marker to it; inside the nested batch, a wait for the *outer* queue (its
//!   promise, `wait_idle`, `join`) is refused at once (review of issue 14: it hung).
//! - With `--features rayon`: a `rayon::ThreadPool` (two threads) runs two queues, serially,
//!   in order, on its threads, with the queue's promises (submit, panics, deadlock, waits on
//!   another queue of the pool, `wait_idle`, `join`).
//! - With `--features tokio`: `TokioBlocking` on a multi-thread runtime runs two queues the
//!   same way on its blocking threads; an async task awaits a submit; a runtime that was shut
//!   down drops the tasks (the queue's work stays queued, `wait_idle` says no).
//!
//! Queues on a `WorkerPool` are in `tests/queue_pool.rs`.
#![cfg(not(loom))]

mod util;

use orderslip::{ActionQueue, Executor, Promise, PromiseError, Task};
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;
use util::{counter, load, owned, quiet_intentional_panics, DropCounter, Gate, DEADLINE, LONG};

/// How many actions a batch runs at most (`BATCH_ACTIONS` in src/queue/batch.rs).
const BATCH: usize = 128;

fn on(executor: Arc<dyn Executor>) -> ActionQueue {
    ActionQueue::builder().executor(executor).build()
}

/// Several producers put numbered actions into each of `queues` (in turn); every action
/// checks that no other action of its queue is in flight, that it is its producer's next one
/// for that queue, and that `on_thread` holds. Joins the queues, then asserts that every
/// action ran exactly once, in order, alone, where it should.
fn assert_serial_in_order(
    queues: Vec<ActionQueue>,
    producers: usize,
    per_producer: usize,
    on_thread: fn() -> bool,
) {
    struct Track {
        in_flight: Vec<AtomicUsize>,
        next: Vec<Vec<AtomicUsize>>, // [queue][producer]
        overlaps: AtomicUsize,
        out_of_order: AtomicUsize,
        elsewhere: AtomicUsize,
        ran: AtomicUsize,
    }
    let n = queues.len();
    let track = Arc::new(Track {
        in_flight: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        next: (0..n)
            .map(|_| (0..producers).map(|_| AtomicUsize::new(0)).collect())
            .collect(),
        overlaps: AtomicUsize::new(0),
        out_of_order: AtomicUsize::new(0),
        elsewhere: AtomicUsize::new(0),
        ran: AtomicUsize::new(0),
    });
    let queues = Arc::new(queues);
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let (queues, track) = (queues.clone(), track.clone());
            thread::spawn(move || {
                for seq in 0..per_producer {
                    for (q, queue) in queues.iter().enumerate() {
                        let track = track.clone();
                        queue.put(move || {
                            if track.in_flight[q].fetch_add(1, Ordering::SeqCst) != 0 {
                                track.overlaps.fetch_add(1, Ordering::SeqCst);
                            }
                            if !on_thread() {
                                track.elsewhere.fetch_add(1, Ordering::SeqCst);
                            }
                            if seq % 16 == 0 {
                                thread::yield_now(); // widen the window for an overlap
                            }
                            // Only queue q's actions touch next[q], one at a time.
                            if track.next[q][p].load(Ordering::Relaxed) != seq {
                                track.out_of_order.fetch_add(1, Ordering::SeqCst);
                            }
                            track.next[q][p].store(seq + 1, Ordering::Relaxed);
                            track.ran.fetch_add(1, Ordering::SeqCst);
                            track.in_flight[q].fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    // Before anything else is put (a later put would rescue a stranded action).
    assert!(
        util::wait_until(|| load(&track.ran) == n * producers * per_producer),
        "an action was stranded"
    );
    for queue in Arc::try_unwrap(queues).ok().unwrap() {
        assert!(queue.join(DEADLINE));
    }
    assert_eq!(
        load(&track.overlaps),
        0,
        "two actions of a queue ran at once"
    );
    assert_eq!(load(&track.out_of_order), 0, "out of order or repeated");
    assert_eq!(
        load(&track.elsewhere),
        0,
        "an action ran on a foreign thread"
    );
    assert_eq!(
        load(&track.ran),
        n * producers * per_producer,
        "every action ran"
    );
    for next in track.next.iter().flatten() {
        assert_eq!(next.load(Ordering::Relaxed), per_producer);
    }
}

// ---- custom executors ----

/// Runs every task on a fresh thread.
#[derive(Default)]
struct ThreadPerTask {
    executed: AtomicUsize,
}

impl Executor for ThreadPerTask {
    fn execute(&self, task: Task) {
        self.executed.fetch_add(1, Ordering::SeqCst);
        thread::spawn(move || task.run());
    }
}

/// One thread that runs the tasks sent to it, in order, once its start gate opens; it ends
/// when the executor (held by its queues) is dropped.
struct OneThread {
    tx: mpsc::Sender<Task>,
    executed: AtomicUsize,
    thread: thread::ThreadId,
}

impl OneThread {
    fn start(gate: Arc<Gate>) -> Arc<OneThread> {
        let (tx, rx) = mpsc::channel::<Task>();
        let thread = thread::spawn(move || {
            assert!(gate.pass());
            rx.into_iter().for_each(Task::run);
        });
        Arc::new(OneThread {
            tx,
            executed: AtomicUsize::new(0),
            thread: thread.thread().id(),
        })
    }
}

impl Executor for OneThread {
    fn execute(&self, task: Task) {
        self.executed.fetch_add(1, Ordering::SeqCst);
        self.tx.send(task).unwrap();
    }
}

#[test]
fn a_thread_per_task_executor_runs_two_queues_serially_and_in_order() {
    const PRODUCERS: usize = if cfg!(miri) { 2 } else { 3 };
    const PER_PRODUCER: usize = if cfg!(miri) { 10 } else { 3_000 };
    let executor = Arc::new(ThreadPerTask::default());
    let queues = vec![on(executor.clone()), on(executor.clone())];
    assert_serial_in_order(queues, PRODUCERS, PER_PRODUCER, || true);
    assert!(load(&executor.executed) >= 2, "a task per queue at least");
}

/// Each put comes as the previous action has just run, while its batch is ending: the put
/// races the batch's hand-back, which must find the action (nothing else is put meanwhile,
/// so a stranded action stays stranded).
#[test]
fn a_put_racing_the_end_of_a_batch_is_never_stranded() {
    const ROUNDS: usize = if cfg!(miri) { 10 } else { 2_000 };
    let executor = Arc::new(ThreadPerTask::default());
    let queue = on(executor.clone());
    let ran = counter();
    for round in 0..ROUNDS {
        let r = ran.clone();
        queue.put(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        assert!(
            util::wait_until(|| load(&ran) == round + 1),
            "round {round}: the action was stranded"
        );
    }
}

#[test]
fn a_one_thread_executor_runs_two_queues_in_order_and_lets_them_take_turns() {
    // Everything is put before the executor's thread starts: each queue has one task,
    // however many puts, and a batch of at most 128 actions before the other's turn.
    const N: usize = if cfg!(miri) { 40 } else { 1_000 };
    let gate = Gate::new();
    let executor = OneThread::start(gate.clone());
    let (a, b) = (on(executor.clone()), on(executor.clone()));
    let log = Arc::new(Mutex::new(Vec::new()));
    let foreign = counter();
    for i in 0..N {
        for (name, queue) in [('a', &a), ('b', &b)] {
            let (log, foreign, executor) = (log.clone(), foreign.clone(), executor.clone());
            queue.put(move || {
                if thread::current().id() != executor.thread {
                    foreign.fetch_add(1, Ordering::SeqCst);
                }
                log.lock().unwrap().push((name, i));
            });
        }
    }
    assert_eq!(
        load(&executor.executed),
        2,
        "one task per scheduled queue, however many puts"
    );
    gate.open();
    assert!(a.join(DEADLINE));
    assert!(b.join(DEADLINE));
    assert_eq!(
        load(&foreign),
        0,
        "every action ran on the executor's thread"
    );
    let log = log.lock().unwrap();
    for name in ['a', 'b'] {
        let order: Vec<usize> = log
            .iter()
            .filter(|(q, _)| *q == name)
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(order, (0..N).collect::<Vec<_>>(), "queue {name}");
    }
    let first_b = log.iter().position(|(q, _)| *q == 'b').unwrap();
    assert!(
        first_b <= BATCH,
        "b's first action waited for one batch of a at most"
    );
    assert!(
        load(&executor.executed) >= 2 * N.div_ceil(BATCH),
        "a task per batch"
    );
}

#[test]
fn dropping_the_last_handle_lets_the_queued_actions_run_and_then_lets_go_of_the_executor() {
    // Everything is queued behind a closed gate; dropping the queue does not wait, and loses
    // nothing; once the work is done, the queue lets go of its executor (whose thread ends).
    const N: usize = if cfg!(miri) { 20 } else { 1_000 };
    struct Watched {
        inner: Arc<OneThread>,
        _witness: DropCounter,
    }
    impl Executor for Watched {
        fn execute(&self, task: Task) {
            self.inner.execute(task);
        }
    }
    let freed = counter();
    let gate = Gate::new();
    let inner = OneThread::start(gate.clone());
    let queue = on(Arc::new(Watched {
        inner: inner.clone(),
        _witness: DropCounter(freed.clone()),
    }));
    let (tx, rx) = mpsc::channel();
    for i in 0..N {
        let tx = tx.clone();
        queue.put(move || tx.send(i).unwrap());
    }
    drop((queue, tx));
    assert_eq!(load(&freed), 0, "the queued work holds the executor");
    gate.open();
    let got: Vec<usize> = rx.iter().collect(); // ends when every action is gone
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "all ran, in order");
    assert!(
        util::wait_until(|| load(&freed) == 1),
        "the executor was let go"
    );
}

// ---- the Task protocol, by hand ----

/// Keeps the tasks it is given for the test to run (or drop).
#[derive(Default)]
struct Manual {
    tasks: Mutex<VecDeque<Task>>,
    executed: AtomicUsize,
}

impl Manual {
    fn take(&self) -> Option<Task> {
        self.tasks.lock().unwrap().pop_front()
    }

    fn pending(&self) -> usize {
        self.tasks.lock().unwrap().len()
    }

    /// Runs the tasks on this thread until none is left; how many ran.
    fn run_all(&self) -> usize {
        let mut ran = 0;
        while let Some(task) = self.take() {
            task.run();
            ran += 1;
        }
        ran
    }
}

impl Executor for Manual {
    fn execute(&self, task: Task) {
        self.executed.fetch_add(1, Ordering::SeqCst);
        self.tasks.lock().unwrap().push_back(task);
    }
}

#[test]
fn a_queue_has_one_task_at_a_time_and_a_task_runs_one_batch() {
    const N: usize = if cfg!(miri) { 150 } else { 300 }; // more than a batch
    let executor = Arc::new(Manual::default());
    let queue = on(executor.clone());
    assert!(!queue.is_running());
    assert_eq!(executor.pending(), 0, "no task without work");
    let log = Arc::new(Mutex::new(Vec::new()));
    for i in 0..N {
        let log = log.clone();
        queue.put(move || log.lock().unwrap().push(i));
    }
    assert_eq!(load(&executor.executed), 1, "one task, however many puts");
    assert!(queue.is_running(), "scheduled");
    assert_eq!(queue.len(), N);
    assert!(!queue.wait_idle(Duration::ZERO));
    assert_eq!(queue.len(), N, "the check queued no marker");
    let mut batches = 0;
    while let Some(task) = executor.take() {
        let before = log.lock().unwrap().len();
        task.run(); // on this thread
        let ran = log.lock().unwrap().len() - before;
        assert!((1..=BATCH).contains(&ran), "a batch of {ran}");
        assert!(executor.pending() <= 1, "one task at a time");
        batches += 1;
    }
    assert_eq!(*log.lock().unwrap(), (0..N).collect::<Vec<_>>());
    assert!(batches >= N.div_ceil(BATCH));
    assert_eq!(
        load(&executor.executed),
        batches,
        "each batch handed the next back"
    );
    assert!(!queue.is_running());
    assert!(queue.wait_idle(Duration::ZERO));
}

#[test]
fn running_a_task_makes_this_thread_the_queues_worker_for_that_batch_only() {
    let executor = Arc::new(Manual::default());
    let queue = on(executor.clone());
    let q = queue.clone();
    let inner = queue.submit(move || (owned(q.submit(|| 1).result(LONG)), q.wait_idle(LONG)));
    assert_eq!(executor.run_all(), 1);
    assert_eq!(
        inner.result(Duration::ZERO),
        Ok(&(Err(PromiseError::Deadlock), false)),
        "inside the batch: the queue's worker"
    );
    let later: Promise<u8, ()> = queue.promise();
    assert_eq!(
        later.result(Duration::ZERO),
        Err(PromiseError::Timeout),
        "after the batch: an ordinary poll"
    );
    drop(later);
}

#[test]
fn a_dropped_task_unschedules_the_queue_and_the_next_put_schedules_it_again() {
    let executor = Arc::new(Manual::default());
    let queue = on(executor.clone());
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    queue.put(move || l.lock().unwrap().push(1));
    drop(executor.take().unwrap());
    assert!(!queue.is_running(), "unscheduled");
    assert_eq!(queue.len(), 1, "the action stays queued");
    assert!(!queue.wait_idle(Duration::ZERO));
    let l = log.clone();
    queue.put(move || l.lock().unwrap().push(2));
    assert_eq!(load(&executor.executed), 2, "scheduled again");
    assert_eq!(executor.run_all(), 1);
    assert_eq!(*log.lock().unwrap(), [1, 2]);
    assert!(queue.wait_idle(Duration::ZERO));
}

#[test]
fn wait_idle_without_limit_returns_false_when_the_task_it_waits_for_is_dropped() {
    let executor = Arc::new(Manual::default());
    let queue = on(executor.clone());
    queue.put(|| ());
    let (tx, rx) = mpsc::channel();
    let q = queue.clone();
    thread::spawn(move || tx.send(q.wait_idle(Duration::MAX)).unwrap());
    assert!(
        util::wait_until(|| queue.len() == 2),
        "the waiter's marker is queued"
    );
    drop(executor.take().unwrap());
    assert_eq!(
        rx.recv_timeout(DEADLINE),
        Ok(false),
        "the waiter was told the queue cannot become idle"
    );
    // Once a task runs again, the work (the marker too) is done.
    let ran = counter();
    let r = ran.clone();
    queue.put(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    assert!(executor.run_all() >= 1);
    assert_eq!(load(&ran), 1);
    assert!(queue.is_empty());
    assert!(queue.wait_idle(Duration::ZERO));
}

#[test]
fn task_is_send_and_its_debug_names_the_queue() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Task>();
    let executor = Arc::new(Manual::default());
    let _as_trait_object: Arc<dyn Executor> = executor.clone();
    let queue = ActionQueue::builder()
        .executor(executor.clone())
        .name("by-hand")
        .build();
    assert!(format!("{queue:?}").contains("Executor"), "{queue:?}");
    queue.put(|| ());
    let task = executor.take().unwrap();
    let shown = format!("{task:?}");
    assert!(
        shown.contains("Task") && shown.contains("by-hand"),
        "{shown}"
    );
    thread::spawn(move || task.run()).join().unwrap();
    assert!(queue.wait_idle(Duration::ZERO));
}

// ---- executors that fail ----

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Drops the task unrun.
    Drop,
    /// Panics without running the task (it is dropped as the panic unwinds).
    Panic,
    /// Hands the task to a fresh thread, then panics.
    TakeThenPanic,
    /// Hands the task to a fresh thread.
    Run,
}

/// An executor that fails as its mode says, until told otherwise.
struct Unreliable {
    mode: Mutex<Mode>,
    executed: AtomicUsize,
}

impl Unreliable {
    fn new(mode: Mode) -> Arc<Unreliable> {
        Arc::new(Unreliable {
            mode: Mutex::new(mode),
            executed: AtomicUsize::new(0),
        })
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

impl Executor for Unreliable {
    fn execute(&self, task: Task) {
        self.executed.fetch_add(1, Ordering::SeqCst);
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Drop => drop(task),
            Mode::Panic => panic!("intentional: execute panics"),
            Mode::TakeThenPanic => {
                thread::spawn(move || task.run());
                panic!("intentional: execute panics after taking the task");
            }
            Mode::Run => {
                thread::spawn(move || task.run());
            }
        }
    }
}

/// `wait_idle(Duration::MAX)` on another thread: its answer, or `None` if it did not answer
/// within the deadline (then it hangs: a failure, not a hung test run).
fn wait_idle_without_limit(queue: &ActionQueue) -> Option<bool> {
    let (tx, rx) = mpsc::channel();
    let q = queue.clone();
    thread::spawn(move || tx.send(q.wait_idle(Duration::MAX)).unwrap());
    rx.recv_timeout(DEADLINE).ok()
}

/// The shared part of the failing-executor tests: with `executor` failing, work stays
/// queued, waits say no, nothing panics out of `put`/`submit`; switched to a working mode, a
/// later put runs everything, in order.
fn failing_then_working(executor: Arc<Unreliable>) {
    let queue = on(executor.clone());
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let put = panic::catch_unwind(AssertUnwindSafe(|| {
        queue.put(move || l.lock().unwrap().push(1));
    }));
    assert!(put.is_ok(), "put panicked");
    assert_eq!(load(&executor.executed), 1);
    assert!(!queue.is_running(), "the task is gone: unscheduled");
    assert_eq!(queue.len(), 1, "the action stays queued");
    let reply =
        panic::catch_unwind(AssertUnwindSafe(|| queue.submit(|| 2))).expect("submit panicked");
    assert_eq!(load(&executor.executed), 2, "each put schedules it again");
    assert_eq!(
        reply.result(Duration::from_millis(1)),
        Err(PromiseError::Timeout)
    );
    assert_eq!(
        wait_idle_without_limit(&queue),
        Some(false),
        "wait_idle(MAX) answered that the queue cannot become idle"
    );
    assert!(!queue.wait_idle(Duration::ZERO));
    assert_eq!(*log.lock().unwrap(), [] as [i32; 0], "nothing ran");
    // The executor works again: the next put runs everything queued, in order.
    executor.set(Mode::Run);
    let l = log.clone();
    queue.put(move || l.lock().unwrap().push(3));
    assert_eq!(reply.result(DEADLINE), Ok(&2));
    assert!(queue.wait_idle(DEADLINE));
    assert_eq!(*log.lock().unwrap(), [1, 3]);
    assert!(queue.join(DEADLINE));
}

#[test]
fn an_executor_that_drops_its_tasks_leaves_the_work_queued_and_wait_idle_says_no() {
    failing_then_working(Unreliable::new(Mode::Drop));
}

#[test]
fn an_executor_whose_execute_panics_does_not_make_put_panic() {
    quiet_intentional_panics();
    failing_then_working(Unreliable::new(Mode::Panic));
}

#[test]
fn an_execute_that_panics_after_taking_the_task_still_runs_it() {
    quiet_intentional_panics();
    const N: usize = if cfg!(miri) { 20 } else { 500 };
    let executor = Unreliable::new(Mode::TakeThenPanic);
    let queue = on(executor.clone());
    let log = Arc::new(Mutex::new(Vec::new()));
    for i in 0..N {
        let log = log.clone();
        let put = panic::catch_unwind(AssertUnwindSafe(|| {
            queue.put(move || log.lock().unwrap().push(i));
        }));
        assert!(put.is_ok(), "put panicked");
    }
    assert!(queue.join(DEADLINE));
    assert_eq!(*log.lock().unwrap(), (0..N).collect::<Vec<_>>());
    assert!(load(&executor.executed) >= 1);
}

#[test]
fn dropping_a_queue_whose_executor_drops_its_tasks_drops_the_work_unrun() {
    let executor = Unreliable::new(Mode::Drop);
    let drops = counter();
    let queue = on(executor.clone());
    let marker = DropCounter(drops.clone());
    queue.put(move || drop(marker));
    let reply = queue.submit(|| 1);
    drop(queue);
    assert_eq!(load(&drops), 1, "the action was dropped, once");
    assert_eq!(reply.result(LONG), Err(PromiseError::Abandoned), "at once");
    // `join` on the last handle says so at once, too.
    let queue = on(executor.clone());
    let marker = DropCounter(drops.clone());
    queue.put(move || drop(marker));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(queue.join(Duration::MAX)).unwrap());
    assert_eq!(rx.recv_timeout(DEADLINE), Ok(false));
    assert_eq!(load(&drops), 2);
}

// ---- an executor that runs the task inline ----

/// Runs the task on the calling thread, before `execute` returns (against the `Executor`
/// docs: it nests every batch one frame deeper; here it makes nesting deterministic).
struct Inline;

impl Executor for Inline {
    fn execute(&self, task: Task) {
        task.run();
    }
}

#[test]
fn an_inline_executor_runs_the_action_before_put_returns() {
    let queue = on(Arc::new(Inline));
    let ran = counter();
    let r = ran.clone();
    queue.put(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(load(&ran), 1, "ran inside put");
    let reply = queue.submit(|| 5);
    assert_eq!(
        reply.try_result(),
        Some(Ok(&5)),
        "done when submit returned"
    );
    assert!(queue.wait_idle(Duration::ZERO));
    assert!(!queue.is_running());
}

#[test]
fn a_batch_nested_in_another_queues_action_restores_that_queues_deadlock_check() {
    // `a`'s action puts to `b`: on an inline executor `b`'s batch runs right there, inside
    // `a`'s action, as `b`'s worker; afterwards the thread is `a`'s worker again.
    let executor: Arc<dyn Executor> = Arc::new(Inline);
    let (a, b) = (on(executor.clone()), on(executor));
    let log = Arc::new(Mutex::new(Vec::new()));
    let (a2, b2, l) = (a.clone(), b.clone(), log.clone());
    let checks = a.submit(move || {
        l.lock().unwrap().push("a: before");
        let (l2, b3) = (l.clone(), b2.clone());
        let inside_b = b2.submit(move || {
            l2.lock().unwrap().push("b");
            owned(b3.submit(|| ()).result(LONG))
        });
        l.lock().unwrap().push("a: after");
        let of_b: Promise<u8, ()> = b2.promise();
        (
            owned(inside_b.result(Duration::ZERO)),
            owned(a2.submit(|| ()).result(LONG)),
            owned(of_b.result(Duration::ZERO)),
        )
    });
    assert_eq!(*log.lock().unwrap(), ["a: before", "b", "a: after"]);
    assert_eq!(
        checks.result(Duration::ZERO),
        Ok(&(
            Ok(Err(PromiseError::Deadlock)), // b's action waiting for b
            Err(PromiseError::Deadlock),     // a's action waiting for a, after b's batch
            Err(PromiseError::Timeout),      // a's action polling b: no deadlock
        ))
    );
    assert!(a.wait_idle(Duration::ZERO) && b.wait_idle(Duration::ZERO));
}

#[test]
fn a_batch_nested_in_another_queues_action_keeps_that_batchs_wait_idle_marker() {
    // A waiter's marker runs in `a`'s batch; then an action of the same batch puts to `b`,
    // whose batch runs nested, right there. The marker's flag belongs to `a`'s batch: the
    // waiter must be woken at the end of `a`'s batch (it waits without limit, so only that
    // wake-up ends its wait), and `b`'s nested batch must neither take nor clear it.
    let executor: Arc<dyn Executor> = Arc::new(Inline);
    let (a, b) = (on(executor.clone()), on(executor));
    let gate = Gate::new();
    let (a2, g) = (a.clone(), gate.clone());
    // The first action runs inline on a helper thread, and blocks there.
    let runner = thread::spawn(move || a2.put(move || assert!(g.pass())));
    assert!(util::wait_until(|| a.is_running() && a.is_empty()));
    let (tx, waited) = mpsc::channel();
    let a3 = a.clone();
    thread::spawn(move || tx.send(a3.wait_idle(Duration::MAX)).unwrap());
    assert!(
        util::wait_until(|| a.len() == 1),
        "the waiter's marker is queued"
    );
    let b_ran = counter();
    let (b2, r) = (b.clone(), b_ran.clone());
    a.put(move || {
        b2.put(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
    });
    gate.open();
    runner.join().unwrap();
    assert_eq!(load(&b_ran), 1, "b's batch ran, nested");
    assert_eq!(
        waited.recv_timeout(DEADLINE),
        Ok(true),
        "the waiter was woken at the end of a's batch"
    );
    assert!(b.wait_idle(Duration::ZERO));
}

/// Inside `b`'s batch, nested in an action of `a` on the same thread, a wait for a promise
/// of `a` can never end (`a`'s action is below it on the stack): `Deadlock` at once. Failed
/// before the review's fix (the check knew only the innermost batch): a timeout (a hang
/// without one).
#[test]
fn a_nested_batch_waiting_for_a_promise_of_the_outer_queue_is_refused() {
    let pool = orderslip::WorkerPool::builder().max_threads(1).build();
    let a = ActionQueue::builder().pool(&pool).build();
    let b = on(Arc::new(Inline));
    let of_a: Promise<u32, ()> = a.promise();
    let setter = of_a.clone();
    let (tx, rx) = mpsc::channel();
    a.put(move || {
        b.put(move || tx.send(owned(of_a.result(LONG))).unwrap());
    });
    a.put(move || {
        let _ = setter.set_result(1);
    });
    assert_eq!(rx.recv_timeout(DEADLINE), Ok(Err(PromiseError::Deadlock)));
}

/// The same nesting: `wait_idle` and `join` of the outer queue from the nested batch return
/// `false` at once, as from the outer queue's own action (they waited without limit before
/// the review's fix).
#[test]
fn a_nested_batch_waiting_for_the_outer_queue_to_be_idle_or_joined_is_refused() {
    let a = Arc::new(on(Arc::new(ThreadPerTask::default())));
    let b = on(Arc::new(Inline));
    let (tx, rx) = mpsc::channel();
    let a2 = a.clone();
    a.put(move || {
        b.put(move || {
            let idle = a2.wait_idle(Duration::MAX);
            let joined = (*a2).clone().join(Duration::MAX);
            tx.send((idle, joined)).unwrap();
        });
    });
    assert_eq!(rx.recv_timeout(DEADLINE), Ok((false, false)));
}

// ---- rayon ----

#[cfg(feature = "rayon")]
mod on_rayon {
    use super::*;

    fn rayon_pool() -> Arc<rayon::ThreadPool> {
        Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap(),
        )
    }

    fn on_a_rayon_thread() -> bool {
        rayon::current_thread_index().is_some()
    }

    #[test]
    fn a_rayon_pool_runs_two_queues_serially_in_order_on_its_threads() {
        const PRODUCERS: usize = if cfg!(miri) { 2 } else { 3 };
        const PER_PRODUCER: usize = if cfg!(miri) { 20 } else { 3_000 };
        let pool = rayon_pool();
        let queues = vec![on(pool.clone()), on(pool.clone())];
        assert_serial_in_order(queues, PRODUCERS, PER_PRODUCER, on_a_rayon_thread);
    }

    #[test]
    fn on_a_rayon_pool_a_queue_keeps_its_promises() {
        quiet_intentional_panics();
        let pool = rayon_pool();
        let queue = on(pool.clone());
        assert_eq!(queue.submit(on_a_rayon_thread).result(DEADLINE), Ok(&true));
        let failed = queue.submit(|| -> u8 { panic!("intentional: on rayon") });
        match failed.result(DEADLINE) {
            Err(PromiseError::Failed(e)) => assert_eq!(e.message(), Some("intentional: on rayon")),
            other => panic!("unexpected {other:?}"),
        }
        let q = queue.clone();
        let inside = queue.submit(move || (owned(q.submit(|| 1).result(LONG)), q.wait_idle(LONG)));
        assert_eq!(
            inside.result(DEADLINE),
            Ok(&(Err(PromiseError::Deadlock), false))
        );
        // Waiting inside an action for another queue on the (two-thread) pool works.
        let other = on(pool.clone());
        let o = other.clone();
        let across = queue.submit(move || owned(o.submit(|| 2).result(DEADLINE)));
        assert_eq!(across.result(DEADLINE), Ok(&Ok(2)));
        let done = counter();
        for _ in 0..100 {
            let done = done.clone();
            queue.put(move || {
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        assert!(queue.wait_idle(DEADLINE));
        assert_eq!(load(&done), 100);
        assert!(queue.wait_idle(Duration::ZERO));
        assert!(queue.join(DEADLINE));
        assert!(other.join(DEADLINE));
    }
}

// ---- tokio ----

#[cfg(feature = "tokio")]
mod on_tokio {
    use super::*;
    use orderslip::TokioBlocking;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap()
    }

    fn in_a_runtime() -> bool {
        tokio::runtime::Handle::try_current().is_ok()
    }

    #[test]
    fn tokio_blocking_runs_two_queues_serially_in_order_on_the_runtimes_threads() {
        const PRODUCERS: usize = if cfg!(miri) { 2 } else { 3 };
        const PER_PRODUCER: usize = if cfg!(miri) { 20 } else { 3_000 };
        let runtime = runtime();
        let executor = Arc::new(TokioBlocking(runtime.handle().clone()));
        let queues = vec![on(executor.clone()), on(executor)];
        assert!(!in_a_runtime(), "the test thread is outside the runtime");
        assert_serial_in_order(queues, PRODUCERS, PER_PRODUCER, in_a_runtime);
    }

    #[test]
    fn an_async_task_awaits_a_submit_on_a_tokio_blocking_queue() {
        quiet_intentional_panics();
        let runtime = runtime();
        let queue = on(Arc::new(TokioBlocking(runtime.handle().clone())));
        let answer = runtime.block_on(async {
            let reply = queue.submit(|| 6 * 7);
            reply.wait_async().await.copied().map_err(|e| e.cloned())
        });
        assert_eq!(answer, Ok(42));
        let failed = queue.submit(|| -> u8 { panic!("intentional: on tokio") });
        match failed.result(DEADLINE) {
            Err(PromiseError::Failed(e)) => assert_eq!(e.message(), Some("intentional: on tokio")),
            other => panic!("unexpected {other:?}"),
        }
        let q = queue.clone();
        let inside = queue.submit(move || owned(q.submit(|| 1).result(LONG)));
        assert_eq!(inside.result(DEADLINE), Ok(&Err(PromiseError::Deadlock)));
        assert!(queue.join(DEADLINE));
    }

    #[test]
    fn a_runtime_that_was_shut_down_drops_the_tasks_and_the_work_stays_queued() {
        let runtime = runtime();
        let handle = runtime.handle().clone();
        let queue = on(Arc::new(TokioBlocking(handle)));
        assert_eq!(queue.submit(|| 1).result(DEADLINE), Ok(&1));
        assert!(queue.wait_idle(DEADLINE));
        runtime.shutdown_background();
        let ran = counter();
        let r = ran.clone();
        queue.put(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let reply = queue.submit(|| 2);
        assert!(!queue.is_running(), "the task was dropped: unscheduled");
        assert_eq!(queue.len(), 2, "the actions stay queued");
        assert_eq!(wait_idle_without_limit(&queue), Some(false));
        assert_eq!(load(&ran), 0);
        drop(queue);
        assert_eq!(
            reply.result(LONG),
            Err(PromiseError::Abandoned),
            "dropped unrun"
        );
    }
}
