//! Handles of a queue (issue 13, item 4): `ActionQueue` is `Clone`, the last handle closes
//! the queue, `join` gives a handle up and waits for the work queued before it (and, on the
//! last handle, for the worker to let go of the queue), and `len` counts what is queued.
//! Before, dropping the only handle did not wait, and there was no way to: work queued just
//! before `main` returned was lost.
#![cfg(not(loom))]

mod util;

use orderslip::ActionQueue;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use util::{wait_until, DropCounter, DEADLINE};

/// A queue whose shared block, when freed, counts into `freed` (its panic handler owns a
/// `DropCounter`): it tells when the worker has let go of the queue.
fn watched_queue(keep_alive: Duration, freed: &Arc<AtomicUsize>) -> ActionQueue {
    let witness = DropCounter(freed.clone());
    ActionQueue::builder()
        .keep_alive(keep_alive)
        .panic_handler(move |_| {
            let _ = &witness;
        })
        .build()
}

#[test]
fn join_on_the_last_handle_runs_everything_and_the_worker_lets_go() {
    let freed = Arc::new(AtomicUsize::new(0));
    // A long keep-alive: without the close, the worker would linger for a minute.
    let queue = watched_queue(Duration::from_secs(60), &freed);
    let log = Arc::new(Mutex::new(Vec::new()));
    for i in 0..3 {
        let log = log.clone();
        queue.put(move || log.lock().unwrap().push(i));
    }
    assert!(queue.join(DEADLINE));
    assert_eq!(
        *log.lock().unwrap(),
        [0, 1, 2],
        "all ran, in order, before join returned"
    );
    assert_eq!(
        freed.load(Ordering::SeqCst),
        1,
        "the worker had let go of the queue"
    );
}

#[test]
fn clones_share_one_order_and_only_the_last_handle_closes_the_queue() {
    let freed = Arc::new(AtomicUsize::new(0));
    let queue = watched_queue(Duration::from_secs(60), &freed);
    let log = Arc::new(Mutex::new(Vec::new()));
    let clones: Vec<ActionQueue> = (0..3).map(|_| queue.clone()).collect();
    for (i, q) in clones.iter().enumerate() {
        let log = log.clone();
        q.put(move || log.lock().unwrap().push(i));
    }
    drop(clones);
    // The queue is still open: another put through the remaining handle runs, after them.
    let l = log.clone();
    assert_eq!(queue.submit(move || l.lock().unwrap().len()).wait(), Ok(&3));
    assert_eq!(
        freed.load(Ordering::SeqCst),
        0,
        "a handle is left: not freed"
    );
    assert!(queue.is_running(), "the worker lingers for its keep-alive");
    drop(queue);
    // The last handle closed it: the worker retires at once instead of lingering a minute.
    assert!(wait_until(|| freed.load(Ordering::SeqCst) == 1));
}

#[test]
fn join_on_one_of_several_handles_waits_only_for_the_work_queued_before_it() {
    let queue = ActionQueue::new();
    let other = queue.clone();
    let (release, gate) = mpsc::channel::<()>();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    queue.put(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    assert!(queue.join(DEADLINE));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    // The queue is still open for the other handle; a join through one of its clones waits
    // for the action that clone's handle queued before, until it is released.
    other.put(move || gate.recv().unwrap());
    let third = other.clone();
    release.send(()).unwrap();
    assert!(third.join(DEADLINE));
    assert!(other.join(DEADLINE));
}

#[test]
fn join_times_out_while_an_earlier_action_blocks() {
    let queue = ActionQueue::new();
    let witness = queue.clone();
    let (release, gate) = mpsc::channel::<()>();
    queue.put(move || gate.recv().unwrap());
    assert!(!queue.join(Duration::from_millis(20)));
    release.send(()).unwrap();
    assert!(
        witness.join(DEADLINE),
        "the blocked action finished after all"
    );
}

#[test]
fn join_inside_an_action_of_its_queue_returns_false_at_once() {
    let queue = ActionQueue::new();
    let inner = queue.clone();
    let answer = queue.submit(move || inner.join(Duration::MAX));
    assert_eq!(answer.wait(), Ok(&false));
    assert!(queue.join(DEADLINE));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri ignores the requested stack size, so the spawn succeeds"
)]
fn join_without_a_possible_worker_returns_false_instead_of_hanging() {
    // No thread can have this stack: every spawn fails.
    let queue = ActionQueue::builder().stack_size(usize::MAX).build();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    queue.put(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    // Without limit, on the last handle: the queue is dropped with its actions, and the
    // join learns it at once.
    assert!(!queue.join(Duration::MAX));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn len_counts_the_queued_actions_but_not_the_running_one() {
    let queue = ActionQueue::new();
    assert_eq!(queue.len(), 0);
    assert!(queue.is_empty());
    let (started_tx, started) = mpsc::channel::<()>();
    let (release, gate) = mpsc::channel::<()>();
    queue.put(move || {
        started_tx.send(()).unwrap();
        gate.recv().unwrap();
    });
    started.recv_timeout(DEADLINE).unwrap();
    assert_eq!(queue.len(), 0, "the running action is not counted");
    queue.put(|| ());
    queue.put(|| ());
    assert_eq!(queue.len(), 2);
    assert!(!queue.is_empty());
    release.send(()).unwrap();
    assert!(queue.join(DEADLINE));
}

/// The scenario of the issue: actions queued, then `main` returns (the process exits). Run
/// in a child process (this test binary again), which queues three slow actions, joins, and
/// exits at once, as `main` returning does; every action must have run.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot spawn processes")]
fn no_action_is_lost_when_the_process_exits_right_after_join() {
    const CHILD: &str = "ORDERSLIP_JOIN_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let queue = ActionQueue::new();
        for i in 0..3 {
            queue.put(move || {
                // Some work, so that an exit that does not wait would cut it short.
                let until = Instant::now() + Duration::from_millis(20);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                println!("action {i} done");
            });
        }
        let joined = queue.join(Duration::MAX);
        println!("joined: {joined}");
        std::process::exit(0);
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "no_action_is_lost_when_the_process_exits_right_after_join",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in [
        "action 0 done",
        "action 1 done",
        "action 2 done",
        "joined: true",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from {stdout:?}");
    }
}
