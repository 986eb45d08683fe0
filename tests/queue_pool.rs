//! Queues on a `WorkerPool` (`ActionQueue::builder().pool(&pool)`): everything an
//! `ActionQueue` promises holds on pool threads, and the pool keeps its own promises.
//!
//! - The queue's promises: many queues fed by several producers each run their actions one
//!   at a time (an in-flight counter per queue), in per-producer order, exactly once; a put
//!   that races the end of its queue's batch is never stranded; `submit` carries the result
//!   or the panic; `wait_idle` (after work, the zero-timeout check, per queue while another
//!   queue of the pool blocks, `false` from inside its own action);
//!   `is_running` (scheduled while work is queued or runs, not once drained, even while the
//!   pool thread lingers); `len`/`is_empty`; the deadlock check (waiting inside an action on
//!   a `submit` promise or `queue.promise()` of the same queue fails at once; waiting on
//!   another queue of a two-thread pool works; on a one-thread pool it times out, the
//!   documented limit; a pool thread is a queue's worker only during that queue's batch);
//!   panic isolation; `join` on the last handle and on a clone, and inside its own action.
//! - Dropping: with every queue handle and the pool dropped, the pending work runs and then
//!   the threads exit at once despite a one-hour keep-alive; a queue keeps working after the
//!   last pool handle is gone; an action may drop the last handle to its own queue.
//! - The pool's threads: none while idle; named `<name>-<slot>`; never more than
//!   `max_threads` at once, and exactly that many when more queues block; `max_threads`
//!   queues blocked at once all run (a barrier of `max_threads` inside the actions); a queue
//!   with endless work does not starve another on a one-thread pool; threads linger for a long
//!   keep-alive and retire with a zero or the default one; clones share the threads.
//! - Actions and other queues: putting to another queue of the pool (or of another pool),
//!   two queues passing work back and forth, an action putting to its own queue thousands
//!   deep.
//! - A pool that cannot start a thread: the work stays queued and `wait_idle(Duration::MAX)`
//!   says no; `join` on the last handle (a bug, ignored: see the test).
//! - `Clone`/`Send`/`Sync`/`Debug`/`Default` of `WorkerPool`, its `Debug` output, a NUL byte
//!   in its name, `max_threads(0)`.
//!
//! No test sleeps to synchronise: gates (`util::Gate`, channels, `util::DeadlineBarrier`)
//! and `wait_until` with its deadline. Executors (`Builder::executor`) are in
//! `tests/queue_executor.rs`.
#![cfg(not(loom))]

mod util;

use orderslip::{ActionQueue, Promise, PromiseError, WorkerPool};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::panic;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;
use util::{
    counter, load, owned, quiet_intentional_panics, wait_until, DeadlineBarrier, DropCounter, Gate,
    DEADLINE, LONG,
};

/// A keep-alive no test outlasts: a thread that retires in a test using it was told to.
const HOUR: Duration = Duration::from_secs(3600);

fn pool(max_threads: usize) -> WorkerPool {
    WorkerPool::builder().max_threads(max_threads).build()
}

fn lingering_pool(max_threads: usize) -> WorkerPool {
    WorkerPool::builder()
        .max_threads(max_threads)
        .keep_alive(HOUR)
        .build()
}

fn on(pool: &WorkerPool) -> ActionQueue {
    ActionQueue::builder().pool(pool).build()
}

std::thread_local! {
    /// Dropped when the thread that set it exits: see [`watch_this_thread`].
    static EXIT_SIGNAL: RefCell<Option<mpsc::Sender<()>>> = const { RefCell::new(None) };
}

/// On its first call on a thread: a receiver that disconnects when the thread exits (its
/// thread-local destructors run). `None` on later calls on the same thread.
fn watch_this_thread() -> Option<mpsc::Receiver<()>> {
    EXIT_SIGNAL.with(|signal| {
        let mut signal = signal.borrow_mut();
        if signal.is_some() {
            return None;
        }
        let (tx, rx) = mpsc::channel();
        *signal = Some(tx);
        Some(rx)
    })
}

/// Waits (up to the deadline) until the thread behind `rx` has exited.
fn thread_exited(rx: &mpsc::Receiver<()>) -> bool {
    matches!(
        rx.recv_timeout(DEADLINE),
        Err(mpsc::RecvTimeoutError::Disconnected)
    )
}

/// A queue on `pool` whose shared block, when freed, counts into `freed` (its panic handler
/// owns a `DropCounter`): it tells when the pool has let go of the queue.
fn watched_queue(pool: &WorkerPool, freed: &Arc<AtomicUsize>) -> ActionQueue {
    let witness = DropCounter(freed.clone());
    ActionQueue::builder()
        .pool(pool)
        .panic_handler(move |_| {
            let _ = &witness;
        })
        .build()
}

// ---- the queue's promises, on pool threads ----

#[test]
fn pool_queues_run_each_queues_actions_one_at_a_time_in_order_exactly_once() {
    // Keep-alive zero: pool threads retire whenever the run queue looks empty and restart on
    // the next put, racing the producers. Each action checks that no other action of its
    // queue is in flight and that it is the next one its producer put into that queue.
    const MAX_THREADS: usize = 4;
    const QUEUES: usize = if cfg!(miri) { 3 } else { 64 };
    const PRODUCERS: usize = if cfg!(miri) { 2 } else { 4 };
    const PER_PRODUCER: usize = if cfg!(miri) { 30 } else { 20_000 };
    struct Track {
        in_flight: Vec<AtomicUsize>,
        next: Vec<Vec<AtomicUsize>>, // [queue][producer]: the sequence number expected next
        overlaps: AtomicUsize,
        out_of_order: AtomicUsize,
        ran: AtomicUsize,
    }
    let pool = WorkerPool::builder()
        .max_threads(MAX_THREADS)
        .keep_alive(Duration::ZERO)
        .build();
    let queues: Arc<Vec<ActionQueue>> = Arc::new((0..QUEUES).map(|_| on(&pool)).collect());
    let track = Arc::new(Track {
        in_flight: (0..QUEUES).map(|_| AtomicUsize::new(0)).collect(),
        next: (0..QUEUES)
            .map(|_| (0..PRODUCERS).map(|_| AtomicUsize::new(0)).collect())
            .collect(),
        overlaps: AtomicUsize::new(0),
        out_of_order: AtomicUsize::new(0),
        ran: AtomicUsize::new(0),
    });
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (queues, track) = (queues.clone(), track.clone());
            thread::spawn(move || {
                let mut sent = vec![0; QUEUES];
                for i in 0..PER_PRODUCER {
                    let q = (i * 7 + p) % QUEUES;
                    let seq = sent[q];
                    sent[q] += 1;
                    let track = track.clone();
                    queues[q].put(move || {
                        if track.in_flight[q].fetch_add(1, Ordering::SeqCst) != 0 {
                            track.overlaps.fetch_add(1, Ordering::SeqCst);
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
                    if i % 64 == 0 {
                        thread::yield_now(); // let the pool drain and retire now and then
                    }
                }
                sent
            })
        })
        .collect();
    let sent: Vec<Vec<usize>> = producers.into_iter().map(|p| p.join().unwrap()).collect();
    // Before anything else is put (a later put would rescue a stranded action).
    assert!(
        wait_until(|| load(&track.ran) == PRODUCERS * PER_PRODUCER),
        "an action was stranded"
    );
    let queues = Arc::try_unwrap(queues).ok().unwrap();
    for queue in queues {
        assert!(queue.join(DEADLINE));
    }
    assert_eq!(
        load(&track.overlaps),
        0,
        "two actions of a queue ran at once"
    );
    assert_eq!(load(&track.out_of_order), 0, "out of order or repeated");
    assert_eq!(
        load(&track.ran),
        PRODUCERS * PER_PRODUCER,
        "every action ran"
    );
    for (q, next) in track.next.iter().enumerate() {
        for (p, next) in next.iter().enumerate() {
            assert_eq!(
                next.load(Ordering::Relaxed),
                sent[p][q],
                "queue {q}, producer {p}"
            );
        }
    }
    assert!(pool.peak_threads() <= MAX_THREADS);
}

/// Each put comes as the previous action has just run, a little later each round (a few
/// microseconds of spinning, swept over the rounds), while its batch is ending or its pool
/// thread is going idle: the put races the batch's hand-back (which must find the action), and
/// the thread's announcement that it parks (which must see the queue's task, or be woken).
/// Nothing else is put meanwhile, so a stranded action stays stranded and the wait for it
/// fails. With one slot no spare thread can be started to rescue it, and with a one-hour
/// keep-alive a thread that parked past the task does not come back in time.
#[test]
fn a_put_racing_the_end_of_a_batch_is_never_stranded() {
    const ROUNDS: usize = if cfg!(miri) { 10 } else { 3_000 };
    for (max_threads, keep_alive) in [(2, Duration::ZERO), (2, HOUR), (1, HOUR)] {
        let pool = WorkerPool::builder()
            .max_threads(max_threads)
            .keep_alive(keep_alive)
            .build();
        let queue = on(&pool);
        let ran = counter();
        for round in 0..ROUNDS {
            for _ in 0..round % 256 {
                std::hint::spin_loop(); // not a synchronisation: a sweep of the put's timing
            }
            let r = ran.clone();
            queue.put(move || {
                r.fetch_add(1, Ordering::SeqCst);
            });
            assert!(
                wait_until(|| load(&ran) == round + 1),
                "round {round} (max_threads {max_threads}, keep-alive {keep_alive:?}): the \
                 action was stranded"
            );
        }
    }
}

#[test]
fn submit_on_a_pool_queue_returns_the_result_or_the_panic() {
    quiet_intentional_panics();
    let pool = pool(2);
    let queue = on(&pool);
    assert_eq!(
        queue.submit(|| vec![1, 2, 3]).result(DEADLINE),
        Ok(&vec![1, 2, 3])
    );
    let failed = queue.submit(|| -> u8 { panic!("intentional: disk {} full", 3) });
    match failed.result(DEADLINE) {
        Err(PromiseError::Failed(e)) => {
            assert_eq!(e.message(), Some("intentional: disk 3 full"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let opaque = queue.submit(|| -> u8 { panic::panic_any(5u8) });
    match opaque.result(DEADLINE) {
        Err(PromiseError::Failed(e)) => assert_eq!(e.message(), None),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(queue.submit(|| "after").result(DEADLINE), Ok(&"after"));
}

#[test]
fn wait_idle_on_a_pool_queue_waits_for_the_work_and_then_answers_at_once() {
    let pool = lingering_pool(2);
    let queue = on(&pool);
    assert!(queue.wait_idle(Duration::ZERO), "an unused queue is idle");
    const PUTS: usize = if cfg!(miri) { 10 } else { 100 };
    const ROUNDS: usize = if cfg!(miri) { 5 } else { 50 };
    let done = counter();
    for _ in 0..PUTS {
        let done = done.clone();
        queue.put(move || {
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    assert!(queue.wait_idle(DEADLINE));
    assert_eq!(load(&done), PUTS);
    assert!(
        queue.wait_idle(Duration::ZERO),
        "still idle, threads lingering"
    );
    // Round after round, as the dedicated queue's regression test (issue 10, defect 8a).
    for round in 1..=ROUNDS {
        let d = done.clone();
        queue.put(move || {
            d.fetch_add(1, Ordering::SeqCst);
        });
        assert!(queue.wait_idle(DEADLINE));
        assert!(queue.wait_idle(Duration::ZERO), "round {round}");
        assert_eq!(load(&done), PUTS + round);
    }
    // While an action blocks: a zero-timeout check says no and queues nothing.
    let gate = Gate::new();
    let (started_tx, started) = mpsc::channel();
    let g = gate.clone();
    queue.put(move || {
        started_tx.send(()).unwrap();
        assert!(g.pass());
    });
    started.recv_timeout(DEADLINE).unwrap();
    assert!(!queue.wait_idle(Duration::ZERO));
    assert_eq!(queue.len(), 0, "the check queued no marker");
    assert!(!queue.wait_idle(Duration::from_millis(10)));
    gate.open();
    assert!(queue.wait_idle(DEADLINE));
}

#[test]
fn wait_idle_is_per_queue_while_another_queue_of_the_pool_blocks_its_thread() {
    let pool = lingering_pool(1);
    let (blocked, other) = (on(&pool), on(&pool));
    let gate = Gate::new();
    let (started_tx, started) = mpsc::channel();
    let g = gate.clone();
    blocked.put(move || {
        started_tx.send(()).unwrap();
        assert!(g.pass());
    });
    started.recv_timeout(DEADLINE).unwrap();
    assert!(
        other.wait_idle(Duration::ZERO),
        "a queue with no work is idle"
    );
    let ran = counter();
    let r = ran.clone();
    other.put(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    assert!(
        !other.wait_idle(Duration::from_millis(10)),
        "its action waits for the pool's one thread"
    );
    assert_eq!(load(&ran), 0);
    gate.open();
    assert!(other.wait_idle(DEADLINE));
    assert_eq!(load(&ran), 1);
    assert!(blocked.wait_idle(DEADLINE));
}

#[test]
fn wait_idle_inside_an_action_of_its_own_pool_queue_returns_false_at_once() {
    let pool = pool(2);
    let queue = on(&pool);
    let q = queue.clone();
    let answer = queue.submit(move || q.wait_idle(LONG));
    assert_eq!(answer.result(DEADLINE), Ok(&false));
    assert!(queue.wait_idle(DEADLINE));
}

#[test]
fn is_running_while_work_is_queued_or_running_and_not_once_drained() {
    // One lingering thread: a queue whose work waits behind another queue's blocked action
    // is running (scheduled) too; once drained, neither is, though the thread lingers.
    let pool = lingering_pool(1);
    let (first, second) = (on(&pool), on(&pool));
    assert!(!first.is_running() && !second.is_running());
    let gate = Gate::new();
    let (started_tx, started) = mpsc::channel();
    let g = gate.clone();
    first.put(move || {
        started_tx.send(()).unwrap();
        assert!(g.pass());
    });
    started.recv_timeout(DEADLINE).unwrap();
    assert!(first.is_running(), "its action runs");
    let ran = counter();
    let r = ran.clone();
    second.put(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    assert!(
        second.is_running(),
        "queued behind the pool's blocked thread"
    );
    assert_eq!(load(&ran), 0);
    gate.open();
    assert!(wait_until(|| !first.is_running() && !second.is_running()));
    assert_eq!(load(&ran), 1);
    assert!(pool.threads() >= 1, "the pool thread lingers");
    assert!(
        !first.is_running(),
        "a lingering pool thread is not the queue's"
    );
}

#[test]
fn len_and_is_empty_count_the_queued_actions_but_not_the_running_one() {
    let pool = pool(2);
    let queue = on(&pool);
    assert_eq!(queue.len(), 0);
    assert!(queue.is_empty());
    let gate = Gate::new();
    let (started_tx, started) = mpsc::channel();
    let g = gate.clone();
    queue.put(move || {
        started_tx.send(()).unwrap();
        assert!(g.pass());
    });
    started.recv_timeout(DEADLINE).unwrap();
    assert_eq!(queue.len(), 0, "the running action is not counted");
    assert!(queue.is_empty());
    queue.put(|| ());
    queue.put(|| ());
    assert_eq!(queue.len(), 2);
    assert!(!queue.is_empty());
    gate.open();
    assert!(queue.join(DEADLINE));
}

#[test]
fn waiting_inside_a_pool_queue_for_its_own_submit_is_a_deadlock() {
    let pool = pool(2);
    let queue = on(&pool);
    let q = queue.clone();
    // A `LONG` wait that ended in time with `Deadlock` ended at once: it was not a timeout.
    let outer = queue.submit(move || owned(q.submit(|| 5).result(LONG)));
    assert_eq!(outer.result(DEADLINE), Ok(&Err(PromiseError::Deadlock)));
    assert_eq!(queue.submit(|| 6).result(DEADLINE), Ok(&6), "outside: fine");
}

#[test]
fn waiting_inside_a_pool_queue_for_its_own_promise_is_a_deadlock() {
    let pool = pool(2);
    let queue = on(&pool);
    let reply: Promise<u8, ()> = queue.promise();
    let (waiting, setter) = (reply.clone(), reply.clone());
    let inside = queue.submit(move || owned(waiting.result(LONG)));
    assert_eq!(inside.result(DEADLINE), Ok(&Err(PromiseError::Deadlock)));
    queue.put(move || setter.set_result(1).unwrap());
    assert_eq!(reply.result(DEADLINE), Ok(&1), "outside: an ordinary wait");
}

#[test]
fn waiting_inside_an_action_for_another_queue_of_a_two_thread_pool_works() {
    let pool = pool(2);
    let (a, b) = (on(&pool), on(&pool));
    let b2 = b.clone();
    let outer = a.submit(move || owned(b2.submit(|| 7).result(DEADLINE)));
    assert_eq!(outer.result(DEADLINE), Ok(&Ok(7)));
    // And a queue-made promise of the other queue, set by an action of that queue.
    let reply: Promise<u8, ()> = b.promise();
    let (waiting, setter) = (reply.clone(), reply);
    let inside = a.submit(move || owned(waiting.result(DEADLINE)));
    b.put(move || setter.set_result(8).unwrap());
    assert_eq!(inside.result(DEADLINE), Ok(&Ok(8)));
}

#[test]
fn on_a_one_thread_pool_waiting_for_another_queue_of_the_pool_times_out() {
    // The documented limit: the pool's only thread is blocked in the waiting action, so the
    // other queue's action cannot run until that wait ends. Not a deadlock error (the other
    // queue is not this one), a timeout; the other queue's work runs afterwards.
    let pool = pool(1);
    let (a, b) = (on(&pool), on(&pool));
    let ran = counter();
    let (b2, r) = (b.clone(), ran.clone());
    let outer = a.submit(move || {
        owned(
            b2.submit(move || {
                r.fetch_add(1, Ordering::SeqCst);
            })
            .result(Duration::from_millis(20)),
        )
    });
    assert_eq!(outer.result(DEADLINE), Ok(&Err(PromiseError::Timeout)));
    assert!(b.wait_idle(DEADLINE));
    assert_eq!(load(&ran), 1, "the other queue's action ran after the wait");
}

#[test]
fn a_pool_thread_is_a_queues_worker_only_while_it_runs_that_queues_batch() {
    // One thread runs both queues' batches in turn: inside a batch of `b` a pending promise
    // of `a` is an ordinary wait (a zero-timeout poll: `Timeout`), one of `b` a deadlock.
    let pool = lingering_pool(1);
    let (a, b) = (on(&pool), on(&pool));
    for round in 0..if cfg!(miri) { 3 } else { 10 } {
        let of_a: Promise<u8, ()> = a.promise();
        let of_b: Promise<u8, ()> = b.promise();
        let (wa, wb) = (of_a.clone(), of_b.clone());
        assert_eq!(a.submit(|| ()).result(DEADLINE), Ok(&()));
        let inside_b = b.submit(move || {
            (
                owned(wa.result(Duration::ZERO)),
                owned(wb.result(Duration::ZERO)),
            )
        });
        assert_eq!(
            inside_b.result(DEADLINE),
            Ok(&(Err(PromiseError::Timeout), Err(PromiseError::Deadlock))),
            "round {round}"
        );
        drop((of_a, of_b)); // held until here: neither was abandoned during the polls
    }
}

#[test]
fn a_panicking_pool_action_is_reported_and_the_next_one_runs() {
    quiet_intentional_panics();
    let pool = pool(1);
    let handled = counter();
    let h = handled.clone();
    let queue = ActionQueue::builder()
        .pool(&pool)
        .name("panicky")
        .panic_handler(move |payload| {
            assert_eq!(
                payload.downcast_ref::<&str>(),
                Some(&"intentional: pool action")
            );
            h.fetch_add(1, Ordering::SeqCst);
        })
        .build();
    queue.put(|| panic!("intentional: pool action"));
    assert_eq!(
        queue.submit(|| "still running").result(DEADLINE),
        Ok(&"still running")
    );
    assert_eq!(load(&handled), 1, "reported to the handler");
    let failed = queue.submit(|| -> u8 { panic!("intentional: submitted") });
    match failed.result(DEADLINE) {
        Err(PromiseError::Failed(e)) => assert_eq!(e.message(), Some("intentional: submitted")),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(load(&handled), 1, "a submit's panic goes to its promise");
    // Without a handler the panic is logged; the queue and its pool's other queues go on.
    let plain = on(&pool);
    plain.put(|| panic!("intentional: logged"));
    plain.put(|| panic::panic_any(17u32));
    assert_eq!(plain.submit(|| 1).result(DEADLINE), Ok(&1));
    assert_eq!(queue.submit(|| 2).result(DEADLINE), Ok(&2));
}

#[test]
fn join_on_the_last_handle_of_a_pool_queue_runs_everything_and_lets_go_of_it() {
    let freed = counter();
    let pool = lingering_pool(2);
    let queue = watched_queue(&pool, &freed);
    let log = Arc::new(Mutex::new(Vec::new()));
    for i in 0..3 {
        let log = log.clone();
        queue.put(move || log.lock().unwrap().push(i));
    }
    assert!(queue.join(DEADLINE));
    assert_eq!(*log.lock().unwrap(), [0, 1, 2], "all ran, in order");
    assert_eq!(load(&freed), 1, "the pool had let go of the queue");
    assert!(pool.threads() >= 1, "while its threads linger");
}

#[test]
fn join_on_a_clone_of_a_pool_queue_waits_for_the_work_queued_before_it() {
    let freed = counter();
    let pool = lingering_pool(2);
    let queue = watched_queue(&pool, &freed);
    let clone = queue.clone();
    let gate = Gate::new();
    let g = gate.clone();
    let ran = counter();
    let r = ran.clone();
    queue.put(move || {
        assert!(g.pass());
        r.fetch_add(1, Ordering::SeqCst);
    });
    let timed_out = clone.clone();
    assert!(
        !timed_out.join(Duration::from_millis(10)),
        "the earlier action blocks"
    );
    gate.open();
    assert!(clone.join(DEADLINE));
    assert_eq!(load(&ran), 1, "the work queued before the join ran");
    assert_eq!(load(&freed), 0, "a handle is left: the queue is open");
    assert_eq!(queue.submit(|| 3).result(DEADLINE), Ok(&3));
    assert!(queue.join(DEADLINE));
    assert_eq!(load(&freed), 1);
}

#[test]
fn join_inside_an_action_of_its_pool_queue_returns_false_at_once() {
    let pool = pool(2);
    let queue = on(&pool);
    let inner = queue.clone();
    assert_eq!(
        queue
            .submit(move || inner.join(Duration::MAX))
            .result(DEADLINE),
        Ok(&false)
    );
    assert!(queue.join(DEADLINE));
}

// ---- dropping ----

#[test]
fn dropping_every_queue_and_the_pool_runs_the_pending_work_and_then_the_threads_exit() {
    // Both threads of the pool are made to run an action (they meet at a barrier) and are
    // watched; the pool can have no other. With everything dropped the pending work runs,
    // and the threads exit at once despite their one-hour keep-alive. (`pool.threads()`
    // cannot be read once the pool is dropped: the threads' exits are watched instead.)
    const MAX_THREADS: usize = 2;
    const QUEUES: usize = 4;
    const STEPS: usize = 10;
    let pool = lingering_pool(MAX_THREADS);
    let queues: Vec<ActionQueue> = (0..QUEUES).map(|_| on(&pool)).collect();
    let meet = DeadlineBarrier::new(MAX_THREADS);
    let gate = Gate::new();
    let met = counter();
    let (exit_tx, exits) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    for (i, queue) in queues.iter().enumerate() {
        let (meet, gate, met, exit_tx) = (meet.clone(), gate.clone(), met.clone(), exit_tx.clone());
        queue.put(move || {
            if let Some(exit) = watch_this_thread() {
                exit_tx.send(exit).unwrap();
            }
            if i < MAX_THREADS && meet.wait() {
                met.fetch_add(1, Ordering::SeqCst);
            }
            assert!(gate.pass());
        });
        for step in 0..STEPS {
            let tx = tx.clone();
            queue.put(move || tx.send((i, step)).unwrap());
        }
    }
    drop((exit_tx, tx));
    let exits: Vec<_> = (0..MAX_THREADS)
        .map(|_| exits.recv_timeout(DEADLINE).unwrap())
        .collect();
    assert!(
        wait_until(|| load(&met) == MAX_THREADS),
        "both threads ran at once"
    );
    assert_eq!(pool.threads(), MAX_THREADS);
    assert_eq!(pool.peak_threads(), MAX_THREADS, "no thread unwatched");
    drop(queues);
    drop(pool);
    gate.open();
    let mut got: Vec<(usize, usize)> = rx.iter().collect(); // ends when every action is gone
    assert_eq!(got.len(), QUEUES * STEPS, "all pending work ran");
    for i in 0..QUEUES {
        let steps: Vec<usize> = got
            .iter()
            .filter(|(q, _)| *q == i)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(steps, (0..STEPS).collect::<Vec<_>>(), "queue {i} in order");
    }
    got.clear();
    for exit in &exits {
        assert!(thread_exited(exit), "a pool thread lingered");
    }
}

#[test]
fn a_pool_queue_keeps_working_after_the_last_pool_handle_is_dropped() {
    let pool = lingering_pool(1);
    let queue = on(&pool);
    drop(pool);
    let (exit_tx, exits) = mpsc::channel();
    queue.put(move || exit_tx.send(watch_this_thread()).unwrap());
    let exit = exits
        .recv_timeout(DEADLINE)
        .unwrap()
        .expect("a fresh thread");
    assert_eq!(queue.submit(|| 4).result(DEADLINE), Ok(&4));
    assert!(queue.wait_idle(DEADLINE));
    assert_eq!(
        exit.try_recv(),
        Err(mpsc::TryRecvError::Empty),
        "the thread lingers"
    );
    // The queue was the pool's last user: its drop lets the thread exit at once.
    drop(queue);
    assert!(thread_exited(&exit), "the pool thread lingered");
}

#[test]
fn an_action_may_drop_the_last_handle_to_its_own_pool_queue() {
    // The pool handle is gone too: the action's drop of the queue's last handle is the pool's
    // last user going, on the pool's own thread. The work queued behind still runs, in order,
    // and the thread then exits despite the one-hour keep-alive.
    let pool = lingering_pool(1);
    let queue = on(&pool);
    drop(pool);
    let holder = Arc::new(Mutex::new(Some(queue.clone())));
    let gate = Gate::new();
    let (exit_tx, exits) = mpsc::channel();
    let (h, g) = (holder.clone(), gate.clone());
    queue.put(move || {
        assert!(g.pass());
        exit_tx.send(watch_this_thread()).unwrap();
        drop(h.lock().unwrap().take()); // the last handle
    });
    const BEHIND: usize = if cfg!(miri) { 10 } else { 100 };
    let (tx, rx) = mpsc::channel();
    for i in 0..BEHIND {
        let tx = tx.clone();
        queue.put(move || tx.send(i).unwrap());
    }
    drop((queue, tx));
    gate.open();
    let exit = exits
        .recv_timeout(DEADLINE)
        .unwrap()
        .expect("a fresh thread");
    let got: Vec<usize> = rx.iter().collect(); // ends when every action is gone
    assert_eq!(
        got,
        (0..BEHIND).collect::<Vec<_>>(),
        "queued work ran, in order"
    );
    assert!(holder.lock().unwrap().is_none());
    assert!(thread_exited(&exit), "the pool thread lingered");
}

// ---- the pool's threads ----

#[test]
fn an_idle_pool_holds_no_thread() {
    let pool = pool(4);
    assert_eq!(pool.threads(), 0);
    let queues: Vec<ActionQueue> = (0..10).map(|_| on(&pool)).collect();
    assert_eq!(pool.threads(), 0, "queues without work start no thread");
    assert_eq!(pool.peak_threads(), 0);
    assert!(queues.iter().all(|q| !q.is_running()));
    assert_eq!(WorkerPool::new().threads(), 0);
    assert_eq!(WorkerPool::default().peak_threads(), 0);
}

#[test]
fn pool_threads_are_named_after_the_pool_and_their_slot() {
    // Two queues whose actions meet at a barrier run on the pool's two threads at once.
    let pool = WorkerPool::builder().max_threads(2).name("io").build();
    let (a, b) = (on(&pool), on(&pool));
    let meet = DeadlineBarrier::new(2);
    let names: Vec<_> = [&a, &b]
        .iter()
        .map(|queue| {
            let meet = meet.clone();
            queue.submit(move || (meet.wait(), thread::current().name().map(str::to_owned)))
        })
        .collect();
    let names: BTreeSet<Option<String>> = names
        .iter()
        .map(|name| {
            let (met, name) = name.result(DEADLINE).unwrap().clone();
            assert!(met, "the two actions ran at once");
            name
        })
        .collect();
    let expected: BTreeSet<Option<String>> =
        [Some("io-0".to_owned()), Some("io-1".to_owned())].into();
    assert_eq!(names, expected);
}

#[test]
fn the_default_pool_thread_name_is_orderslip_pool() {
    let pool = pool(1);
    let queue = on(&pool);
    let name = queue.submit(|| thread::current().name().map(str::to_owned));
    assert_eq!(
        name.result(DEADLINE).unwrap().as_deref(),
        Some("orderslip-pool-0")
    );
    // A queue's own name is for its log messages, not its (borrowed) thread.
    let named = ActionQueue::builder().pool(&pool).name("session-7").build();
    let name = named.submit(|| thread::current().name().map(str::to_owned));
    assert_eq!(
        name.result(DEADLINE).unwrap().as_deref(),
        Some("orderslip-pool-0")
    );
}

#[test]
fn no_more_than_max_threads_actions_run_at_once() {
    // More queues than threads, each with an action that blocks until let through: exactly
    // `MAX_THREADS` of them run at once, the others wait, scheduled; letting one through lets
    // one more start, never more.
    const MAX_THREADS: usize = if cfg!(miri) { 2 } else { 3 };
    const QUEUES: usize = if cfg!(miri) { 4 } else { 12 };
    let pool = lingering_pool(MAX_THREADS);
    let queues: Vec<ActionQueue> = (0..QUEUES).map(|_| on(&pool)).collect();
    let (running, peak, started) = (counter(), counter(), counter());
    let gate = Gate::new();
    for queue in &queues {
        let (running, peak, started, gate) =
            (running.clone(), peak.clone(), started.clone(), gate.clone());
        queue.put(move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            started.fetch_add(1, Ordering::SeqCst);
            assert!(gate.pass());
            running.fetch_sub(1, Ordering::SeqCst);
        });
    }
    assert!(wait_until(|| load(&started) == MAX_THREADS));
    assert_eq!(load(&running), MAX_THREADS);
    assert_eq!(pool.threads(), MAX_THREADS);
    assert!(
        queues.iter().all(ActionQueue::is_running),
        "the others are scheduled"
    );
    assert_eq!(
        queues.iter().map(ActionQueue::len).sum::<usize>(),
        QUEUES - MAX_THREADS,
        "their actions wait"
    );
    for more in MAX_THREADS + 1..=QUEUES {
        gate.release(1);
        assert!(wait_until(|| load(&started) == more));
        assert!(load(&running) <= MAX_THREADS);
    }
    gate.open();
    for queue in queues {
        assert!(queue.join(DEADLINE));
    }
    assert_eq!(load(&running), 0);
    assert_eq!(
        load(&peak),
        MAX_THREADS,
        "never more actions at once than threads"
    );
    assert_eq!(pool.peak_threads(), MAX_THREADS, "never more threads");
}

#[test]
fn max_threads_zero_is_taken_as_one() {
    let pool = pool(0);
    assert_eq!(pool.max_threads(), 1);
    let queue = on(&pool);
    assert_eq!(queue.submit(|| 1).result(DEADLINE), Ok(&1));
    assert_eq!(pool.peak_threads(), 1);
}

#[test]
fn max_threads_queues_blocked_in_an_action_all_run_at_once() {
    // A barrier of `MAX_THREADS` inside the actions: it is passed only if every queue's
    // action runs at the same time, each on a thread of its own.
    const MAX_THREADS: usize = if cfg!(miri) { 3 } else { 4 };
    for round in 0..if cfg!(miri) { 1 } else { 5 } {
        let pool = pool(MAX_THREADS);
        let queues: Vec<ActionQueue> = (0..MAX_THREADS).map(|_| on(&pool)).collect();
        let meet = DeadlineBarrier::new(MAX_THREADS);
        let met: Vec<_> = queues
            .iter()
            .map(|queue| {
                let meet = meet.clone();
                queue.submit(move || meet.wait())
            })
            .collect();
        for met in &met {
            assert_eq!(met.result(DEADLINE), Ok(&true), "round {round}");
        }
        assert_eq!(pool.peak_threads(), MAX_THREADS);
    }
}

#[test]
fn a_queue_with_endless_work_does_not_starve_another_on_a_one_thread_pool() {
    // `endless` re-puts its action for ever (until told to stop); another queue's action
    // still gets the pool's only thread, while `endless` keeps going.
    const TURNS: usize = if cfg!(miri) { 20 } else { 2_000 };
    fn turn(queue: ActionQueue, stop: Arc<AtomicBool>, turns: Arc<AtomicUsize>) {
        turns.fetch_add(1, Ordering::SeqCst);
        if !stop.load(Ordering::SeqCst) {
            let q = queue.clone();
            queue.put(move || turn(q, stop, turns));
        }
    }
    let pool = lingering_pool(1);
    let (endless, other) = (on(&pool), on(&pool));
    let (stop, turns) = (Arc::new(AtomicBool::new(false)), counter());
    let (q, s, t) = (endless.clone(), stop.clone(), turns.clone());
    endless.put(move || turn(q, s, t));
    assert!(wait_until(|| load(&turns) > TURNS), "it runs");
    let (e, t) = (endless.clone(), turns.clone());
    let seen = other.submit(move || (load(&t), e.is_running(), e.len()));
    let &(at, endless_running, endless_queued) = seen.result(DEADLINE).unwrap();
    assert!(
        endless_running && endless_queued >= 1,
        "the other queue ran while the endless one had work"
    );
    assert!(
        wait_until(|| load(&turns) > at + TURNS),
        "and the endless one went on"
    );
    stop.store(true, Ordering::SeqCst);
    assert!(endless.wait_idle(DEADLINE));
    // Unscheduled just after its last batch ends (the hand-back follows the idle signal).
    assert!(wait_until(|| !endless.is_running()));
}

#[test]
fn pool_threads_linger_for_a_long_keep_alive() {
    let pool = lingering_pool(2);
    let queue = on(&pool);
    assert_eq!(queue.submit(|| 1).result(DEADLINE), Ok(&1));
    assert!(queue.wait_idle(DEADLINE));
    assert!(pool.threads() >= 1, "lingering");
    drop(queue);
    assert!(
        pool.threads() >= 1,
        "still lingering: the pool handle is alive"
    );
    // They take new work, on the threads the pool may have.
    let again = on(&pool);
    assert_eq!(again.submit(|| 2).result(DEADLINE), Ok(&2));
    assert!(pool.threads() >= 1);
    assert!(pool.peak_threads() <= 2);
}

#[test]
fn with_a_zero_keep_alive_pool_threads_retire_when_the_work_is_done() {
    let pool = WorkerPool::builder()
        .max_threads(2)
        .keep_alive(Duration::ZERO)
        .build();
    let queue = on(&pool);
    for round in 0..3 {
        assert_eq!(queue.submit(move || round).result(DEADLINE), Ok(&round));
        assert!(wait_until(|| pool.threads() == 0), "round {round}: retired");
    }
    assert!(pool.peak_threads() >= 1);
}

#[test]
fn with_the_default_keep_alive_pool_threads_retire() {
    let pool = WorkerPool::builder().max_threads(2).build();
    let queue = on(&pool);
    assert_eq!(queue.submit(|| 1).result(DEADLINE), Ok(&1));
    assert!(wait_until(|| pool.threads() == 0), "retired after 100 ms");
    // And they come back on demand.
    assert_eq!(queue.submit(|| 2).result(DEADLINE), Ok(&2));
}

#[test]
fn clones_of_a_pool_share_its_threads() {
    let pool = WorkerPool::builder()
        .max_threads(1)
        .keep_alive(HOUR)
        .name("shared")
        .build();
    let clone = pool.clone();
    assert_eq!(clone.max_threads(), 1);
    let (a, b) = (on(&pool), on(&clone));
    let first = *a
        .submit(|| thread::current().id())
        .result(DEADLINE)
        .unwrap();
    let second = *b
        .submit(|| thread::current().id())
        .result(DEADLINE)
        .unwrap();
    assert_eq!(first, second, "the one lingering thread ran both");
    assert_eq!(pool.peak_threads(), 1);
    assert_eq!(clone.threads(), pool.threads());
    drop(pool);
    assert_eq!(
        a.submit(|| thread::current().id()).result(DEADLINE),
        Ok(&first),
        "the clone keeps the pool"
    );
}

// ---- actions and other queues ----

#[test]
fn an_action_may_put_to_another_queue_of_the_pool_or_of_another_pool() {
    const N: usize = if cfg!(miri) { 10 } else { 1_000 };
    let (pool, other_pool) = (pool(2), pool(1));
    let (a, b, c) = (on(&pool), on(&pool), on(&other_pool));
    let log = Arc::new(Mutex::new(Vec::new()));
    let (b2, c2, l) = (b.clone(), c.clone(), log.clone());
    a.put(move || {
        for i in 0..N {
            let (lb, lc) = (l.clone(), l.clone());
            b2.put(move || lb.lock().unwrap().push(('b', i)));
            c2.put(move || lc.lock().unwrap().push(('c', i)));
        }
    });
    assert!(a.join(DEADLINE));
    assert!(b.join(DEADLINE));
    assert!(c.join(DEADLINE));
    let log = log.lock().unwrap();
    for queue in ['b', 'c'] {
        let order: Vec<usize> = log
            .iter()
            .filter(|(q, _)| *q == queue)
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(order, (0..N).collect::<Vec<_>>(), "queue {queue}");
    }
}

#[test]
fn two_pool_queues_can_pass_work_back_and_forth() {
    // A chain of hops, each put by the previous hop's action into the other queue.
    const HOPS: usize = if cfg!(miri) { 10 } else { 2_000 };
    fn hop(here: ActionQueue, there: ActionQueue, left: usize, log: Arc<Mutex<Vec<usize>>>) {
        log.lock().unwrap().push(left);
        if left > 0 {
            let (h, t) = (here.clone(), there.clone());
            there.put(move || hop(t, h, left - 1, log));
        }
    }
    for max_threads in [1, 2] {
        let pool = pool(max_threads);
        let (a, b) = (on(&pool), on(&pool));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (a2, b2, l) = (a.clone(), b.clone(), log.clone());
        a.put(move || hop(a2, b2, HOPS, l));
        assert!(wait_until(|| log.lock().unwrap().len() == HOPS + 1));
        assert!(a.wait_idle(DEADLINE) && b.wait_idle(DEADLINE));
        assert_eq!(
            *log.lock().unwrap(),
            (0..=HOPS).rev().collect::<Vec<_>>(),
            "max_threads {max_threads}"
        );
    }
}

#[test]
fn an_action_may_put_to_its_own_pool_queue_thousands_deep() {
    const DEPTH: usize = if cfg!(miri) { 15 } else { 20_000 };
    fn step(queue: ActionQueue, left: usize, order: Arc<Mutex<Vec<usize>>>) {
        order.lock().unwrap().push(left);
        if left > 0 {
            let q = queue.clone();
            // A put and a submit per level: neither blocks, and nothing nests on the stack.
            queue.put(move || step(q, left - 1, order));
            drop(queue.submit(move || left));
        }
    }
    let pool = WorkerPool::builder()
        .max_threads(2)
        .keep_alive(Duration::ZERO)
        .build();
    let queue = on(&pool);
    let order = Arc::new(Mutex::new(Vec::new()));
    let (q, o) = (queue.clone(), order.clone());
    queue.put(move || step(q, DEPTH, o));
    assert!(wait_until(|| order.lock().unwrap().len() == DEPTH + 1));
    assert!(queue.wait_idle(DEADLINE));
    assert_eq!(
        *order.lock().unwrap(),
        (0..=DEPTH).rev().collect::<Vec<_>>()
    );
}

// ---- a pool that cannot start a thread ----

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri ignores the requested stack size, so the spawn succeeds"
)]
fn a_pool_that_cannot_start_a_thread_keeps_the_work_and_wait_idle_says_no() {
    // A stack no system can give makes every spawn fail.
    let pool = WorkerPool::builder().stack_size(1 << 60).build();
    let queue = on(&pool);
    let ran = counter();
    let r = ran.clone();
    queue.put(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(pool.threads(), 0, "no thread could start");
    let reply = queue.submit(|| 1);
    assert_eq!(
        reply.result(Duration::from_millis(1)),
        Err(PromiseError::Timeout)
    );
    // On its own thread, so that a hang is a failed assertion here, not a hung test run.
    let (tx, rx) = mpsc::channel();
    let q = queue.clone();
    thread::spawn(move || tx.send(q.wait_idle(Duration::MAX)).unwrap());
    assert_eq!(
        rx.recv_timeout(DEADLINE),
        Ok(false),
        "wait_idle(MAX) answered that the queue cannot become idle"
    );
    assert!(!queue.wait_idle(Duration::ZERO));
    assert_eq!(load(&ran), 0, "kept, not run");
    assert!(queue.len() >= 2, "both actions still queued");
    assert_eq!(pool.threads(), 0);
}

/// Regression (found by this test, fixed since): `join` on the last handle of a queue whose
/// pool cannot start a thread never returned (with `Duration::MAX`). The dedicated queue's
/// contract, which `Builder::pool` says holds here too, is "on the last handle it returns
/// `false` at once (the queue is dropped, with them)". The queue's `Task` sat in the pool's
/// run queue holding the queue's shared block (a cycle through the queue's reference to the
/// pool), so the last handle's drop dropped nothing. A stalled pool now unschedules its
/// tasks. The wait runs on a thread of its own, so a regression fails after `DEADLINE`
/// instead of hanging.
#[test]
#[cfg_attr(
    miri,
    ignore = "Miri ignores the requested stack size, so the spawn succeeds"
)]
fn join_on_the_last_handle_of_a_queue_whose_pool_cannot_start_a_thread_returns_false() {
    let pool = WorkerPool::builder().stack_size(1 << 60).build();
    let queue = on(&pool);
    let drops = counter();
    let marker = DropCounter(drops.clone());
    queue.put(move || drop(marker));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(queue.join(Duration::MAX)).unwrap());
    assert_eq!(rx.recv_timeout(DEADLINE), Ok(false), "join returned");
    assert_eq!(load(&drops), 1, "the queued action was dropped unrun");
}

// ---- traits ----

#[test]
fn worker_pool_is_clone_send_sync_debug_and_default() {
    fn assert_traits<T: Clone + Send + Sync + Debug + Default + 'static>() {}
    fn assert_send_debug<T: Send + Debug>() {}
    assert_traits::<WorkerPool>();
    assert_send_debug::<orderslip::PoolBuilder>();
}

#[test]
fn debug_output_names_the_pool() {
    let pool = WorkerPool::builder()
        .max_threads(3)
        .name("debug-me")
        .build();
    let shown = format!("{pool:?}");
    assert!(
        shown.contains("WorkerPool") && shown.contains("debug-me") && shown.contains('3'),
        "{shown}"
    );
    let builder = format!("{:?}", WorkerPool::builder().name("built"));
    assert!(
        builder.contains("PoolBuilder") && builder.contains("built"),
        "{builder}"
    );
    let queue = on(&pool);
    let shown = format!("{queue:?}");
    assert!(
        shown.contains("WorkerPool"),
        "a pool queue's Debug: {shown}"
    );
}

#[test]
fn a_nul_byte_in_the_pool_name_is_rejected_by_the_builder() {
    quiet_intentional_panics();
    let rejected = panic::catch_unwind(|| WorkerPool::builder().name("intentional\0name"));
    let payload = rejected.expect_err("a name with a NUL byte was accepted");
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    assert!(message.contains("NUL"), "unclear message: {message:?}");
}
