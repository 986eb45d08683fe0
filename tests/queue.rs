//! Behaviour of `ActionQueue`: the seed's `quickrpc.action_queue` behaviours, then what
//! orderslip adds (panic isolation, submit, deadlock guard, wait_idle, drop, keep-alive).
#![cfg(not(loom))]

mod util;

use orderslip::{ActionQueue, PromiseError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use util::{owned, wait_until, DEADLINE};

fn seed_queue() -> ActionQueue {
    ActionQueue::builder().keep_alive(Duration::ZERO).build()
}

// ---- the seed's behaviours ----

#[test]
fn one_action_starts_a_worker_that_retires_when_the_queue_is_empty() {
    let queue = seed_queue();
    assert!(!queue.is_running());
    let (tx, rx) = mpsc::channel();
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    queue.put(move || {
        g.wait();
        tx.send(thread::current().name().map(str::to_owned))
            .unwrap();
    });
    assert!(queue.is_running(), "a worker runs the action");
    gate.wait();
    assert_eq!(
        rx.recv_timeout(DEADLINE).unwrap().as_deref(),
        Some("orderslip-worker")
    );
    assert!(wait_until(|| !queue.is_running()), "the worker retired");
}

#[test]
fn two_actions_run_in_order() {
    let queue = seed_queue();
    let log = Arc::new(Mutex::new(Vec::new()));
    for i in 0..2 {
        let log = log.clone();
        queue.put(move || log.lock().unwrap().push(i));
    }
    assert!(queue.wait_idle(DEADLINE));
    assert_eq!(*log.lock().unwrap(), [0, 1]);
}

// ---- beyond the seed ----

#[test]
fn racing_producers_and_a_retiring_worker_lose_nothing() {
    // Keep-alive zero: the worker retires whenever the queue looks empty and restarts on the
    // next put, thousands of times. Every action runs exactly once, in per-producer order.
    const PRODUCERS: usize = 4;
    // Miri interprets every step: a smaller run still races the retiring worker.
    const PER_PRODUCER: usize = if cfg!(miri) { 50 } else { 5_000 };
    let queue = Arc::new(seed_queue());
    let next = Arc::new(
        (0..PRODUCERS)
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>(),
    );
    let errors = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (queue, next, errors) = (queue.clone(), next.clone(), errors.clone());
            thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    let (next, errors) = (next.clone(), errors.clone());
                    queue.put(move || {
                        // Only the worker touches `next[p]`, one action at a time.
                        if next[p].load(Ordering::Relaxed) != i {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        next[p].store(i + 1, Ordering::Relaxed);
                    });
                    if i % 64 == 0 {
                        thread::yield_now(); // let the worker drain and retire now and then
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    assert!(queue.wait_idle(DEADLINE));
    assert_eq!(
        errors.load(Ordering::Relaxed),
        0,
        "out of order or repeated"
    );
    for n in next.iter() {
        assert_eq!(
            n.load(Ordering::Relaxed),
            PER_PRODUCER,
            "every action ran once"
        );
    }
}

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

#[test]
fn wait_idle_waits_for_queued_and_running_actions() {
    let queue = ActionQueue::new();
    assert!(queue.wait_idle(Duration::ZERO), "an unused queue is idle");
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..100 {
        let done = done.clone();
        queue.put(move || {
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    assert!(queue.wait_idle(DEADLINE));
    assert_eq!(done.load(Ordering::SeqCst), 100);
}

#[test]
fn wait_idle_times_out_while_an_action_blocks() {
    let queue = ActionQueue::new();
    let (release, gate) = mpsc::channel::<()>();
    queue.put(move || gate.recv().unwrap());
    assert!(!queue.wait_idle(Duration::from_millis(20)));
    release.send(()).unwrap();
    assert!(queue.wait_idle(DEADLINE));
}

/// Regression (issue 10, defect 8a): right after `wait_idle` returned `true`, the worker is
/// still in its post-drain spin with its state RUNNING, and `wait_idle(Duration::ZERO)` used
/// to answer `false` for that whole time although the queue was empty and no action ran. A
/// drained queue whose worker lingers is idle. Fails on ed2d89b (in the first few rounds:
/// the spin lasts microseconds, the second call comes within a microsecond).
#[test]
fn a_drained_queue_whose_worker_lingers_is_idle_at_once() {
    let queue = ActionQueue::builder()
        .keep_alive(Duration::from_secs(60))
        .build();
    let done = Arc::new(AtomicUsize::new(0));
    for round in 1..=200 {
        let d = done.clone();
        queue.put(move || {
            d.fetch_add(1, Ordering::SeqCst);
        });
        assert!(queue.wait_idle(DEADLINE));
        assert!(
            queue.wait_idle(Duration::ZERO),
            "round {round}: idle a moment ago, busy now with nothing queued or running"
        );
        assert_eq!(done.load(Ordering::SeqCst), round);
    }
    assert!(queue.is_running(), "the worker lingered throughout");
}

#[test]
fn wait_idle_inside_an_action_returns_false_at_once() {
    let queue = Arc::new(ActionQueue::new());
    let q = queue.clone();
    let answer = queue.submit(move || q.wait_idle(Duration::from_secs(60)));
    assert_eq!(answer.result(DEADLINE), Ok(&false));
}

#[test]
fn dropping_the_queue_lets_queued_actions_finish() {
    let queue = ActionQueue::new();
    let (tx, rx) = mpsc::channel();
    let (release, gate) = mpsc::channel::<()>();
    queue.put(move || gate.recv().unwrap());
    for i in 0..10 {
        let tx = tx.clone();
        queue.put(move || tx.send(i).unwrap());
    }
    drop(queue); // does not block: the first action is still waiting for `release`
    release.send(()).unwrap();
    let got: Vec<i32> = (0..10)
        .map(|_| rx.recv_timeout(DEADLINE).unwrap())
        .collect();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

#[test]
fn an_action_may_drop_the_last_handle_to_its_queue() {
    let queue = Arc::new(ActionQueue::new());
    let holder = Arc::new(Mutex::new(Some(queue.clone())));
    let h = holder.clone();
    let done = queue.submit(move || {
        drop(h.lock().unwrap().take());
        "dropped"
    });
    drop(queue);
    assert_eq!(done.result(DEADLINE), Ok(&"dropped"));
    assert!(holder.lock().unwrap().is_none());
}

#[test]
fn no_thread_is_left_after_the_keep_alive() {
    let queue = ActionQueue::builder()
        .keep_alive(Duration::from_millis(5))
        .build();
    assert_eq!(queue.submit(|| 1).result(DEADLINE), Ok(&1));
    assert!(
        wait_until(|| !queue.is_running()),
        "retired after its keep-alive"
    );
    // And it comes back on demand.
    assert_eq!(queue.submit(|| 2).result(DEADLINE), Ok(&2));
}

#[test]
fn a_lingering_worker_takes_new_work_without_a_new_thread() {
    let queue = ActionQueue::builder()
        .keep_alive(Duration::from_secs(60))
        .build();
    let first = queue.submit(|| thread::current().id());
    let first = *first.result(DEADLINE).unwrap();
    assert!(queue.wait_idle(DEADLINE));
    assert!(queue.is_running(), "still lingering");
    let second = queue.submit(|| thread::current().id());
    assert_eq!(second.result(DEADLINE), Ok(&first), "same worker thread");
}

#[test]
fn an_action_may_put_more_actions_recursively() {
    const DEPTH: usize = if cfg!(miri) { 50 } else { 5_000 };
    fn step(queue: Arc<ActionQueue>, left: usize, count: Arc<AtomicUsize>) {
        count.fetch_add(1, Ordering::SeqCst);
        if left > 0 {
            let q = queue.clone();
            queue.put(move || step(q, left - 1, count));
        }
    }
    let queue = Arc::new(ActionQueue::new());
    let count = Arc::new(AtomicUsize::new(0));
    let (q, c) = (queue.clone(), count.clone());
    queue.put(move || step(q, DEPTH, c));
    assert!(wait_until(|| count.load(Ordering::SeqCst) == DEPTH + 1));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri ignores the requested stack size, so the spawn succeeds"
)]
fn a_failed_spawn_keeps_the_action_and_a_later_put_retries() {
    // A stack no system can give makes the spawn fail; see also the unit test with an
    // injected failure, which also shows the retry succeeding.
    let queue = ActionQueue::builder().stack_size(1 << 60).build();
    let (tx, rx) = mpsc::channel();
    let t = tx.clone();
    queue.put(move || t.send(1).unwrap());
    assert!(!queue.is_running(), "no worker could start");
    assert!(rx.try_recv().is_err());
    queue.put(move || tx.send(2).unwrap());
    assert!(!queue.is_running(), "the retry failed the same way");
    assert!(
        !queue.wait_idle(Duration::from_millis(10)),
        "work is still queued"
    );
}

#[test]
fn action_queue_is_send_sync_and_debug() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ActionQueue>();
    let queue = ActionQueue::builder().name("named").build();
    let shown = format!("{queue:?}");
    assert!(shown.contains("named") && shown.contains("idle"), "{shown}");
}
