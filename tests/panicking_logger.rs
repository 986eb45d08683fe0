//! A `log` logger that panics on every record, installed for this whole test binary (a
//! logger is process-wide, hence a binary of its own). The queue reports through `log` from
//! its worker thread (an action's panic, a panicking panic handler, a panic payload whose
//! `Drop` panics) and from `put` (a failed spawn): a panicking logger must neither kill the
//! worker (which used to leave the state RUNNING with no thread behind it, so nothing ever
//! ran again) nor reach the caller of `put`.
//!
//! Regression tests for issue 10, defect 5. Every test here fails on ed2d89b.
#![cfg(not(loom))]

mod util;

use orderslip::{ActionQueue, PromiseError};
use std::any::Any;
use std::panic;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Once};
use std::time::Duration;
use util::{wait_until, DEADLINE};

/// How many records reached the logger (each made it panic).
static RECORDS: AtomicUsize = AtomicUsize::new(0);

struct PanickingLogger;

impl log::Log for PanickingLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        RECORDS.fetch_add(1, Ordering::SeqCst);
        panic!("intentional: the logger panics on {:?}", record.args());
    }

    fn flush(&self) {}
}

static LOGGER: PanickingLogger = PanickingLogger;

/// Installs the panicking logger (once per process) and keeps the intentional panics, the
/// logger's and the actions', off stderr.
fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&LOGGER).expect("no other logger in this binary");
        log::set_max_level(log::LevelFilter::Error);
        util::quiet_intentional_panics();
    });
}

fn records() -> usize {
    RECORDS.load(Ordering::SeqCst)
}

/// Keep-alive zero: the worker retires as soon as the queue is empty, so a dead worker shows
/// as a queue that never stops "running".
fn queue_without_handler() -> ActionQueue {
    ActionQueue::builder().keep_alive(Duration::ZERO).build()
}

/// Puts `bad` (an action whose panic gets reported through the logger) between two actions
/// that record their thread, then checks that the *same* worker ran both (the report's panic
/// did not kill it: a replacement worker started by the exit guard would pass every other
/// check here; review of issue 10), and that the queue still retires and restarts.
fn check_queue_survives(queue: &ActionQueue, bad: impl FnOnce() + Send + 'static) {
    let before = records();
    let (release, gate) = mpsc::channel::<()>();
    let (tx, rx) = mpsc::channel();
    let first = tx.clone();
    queue.put(move || {
        gate.recv().unwrap();
        first.send(std::thread::current().id()).unwrap();
    });
    queue.put(bad);
    queue.put(move || tx.send(std::thread::current().id()).unwrap());
    release.send(()).unwrap();
    let before_bad = rx.recv_timeout(DEADLINE).unwrap();
    let after_bad = rx.recv_timeout(DEADLINE).unwrap();
    assert_eq!(before_bad, after_bad, "the worker died and was replaced");
    assert!(records() > before, "the report reached the logger");
    assert!(
        wait_until(|| !queue.is_running()),
        "the worker retired: the state is not stuck at RUNNING"
    );
    assert_eq!(
        queue.submit(|| 2).result(DEADLINE),
        Ok(&2),
        "restarts on demand"
    );
    assert!(queue.wait_idle(DEADLINE));
}

#[test]
fn a_panicking_logger_reporting_an_action_panic_does_not_kill_the_worker() {
    install();
    let queue = queue_without_handler();
    check_queue_survives(&queue, || panic!("intentional: an action panics"));
    // A submitted action's panic goes to its promise, not to the logger.
    match queue
        .submit(|| -> u8 { panic!("intentional: submitted") })
        .wait()
    {
        Err(PromiseError::Failed(e)) => assert_eq!(e.message(), Some("intentional: submitted")),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_panicking_logger_reporting_a_panicking_panic_handler_does_not_kill_the_worker() {
    install();
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let queue = ActionQueue::builder()
        .keep_alive(Duration::ZERO)
        .panic_handler(move |_: &(dyn Any + Send)| {
            h.fetch_add(1, Ordering::SeqCst);
            panic!("intentional: the panic handler panics");
        })
        .build();
    check_queue_survives(&queue, || panic!("intentional: an action panics"));
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

/// A panic payload whose `Drop` panics (when the thread is not already unwinding).
struct PayloadBomb(Arc<AtomicUsize>);

impl Drop for PayloadBomb {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        if !std::thread::panicking() {
            panic!("intentional: PayloadBomb::drop");
        }
    }
}

#[test]
fn a_panicking_logger_reporting_a_panicking_payload_drop_does_not_kill_the_worker() {
    install();
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let queue = ActionQueue::builder()
        .keep_alive(Duration::ZERO)
        .panic_handler(|_: &(dyn Any + Send)| {}) // quiet: only the payload's drop logs
        .build();
    check_queue_survives(&queue, move || panic::panic_any(PayloadBomb(d)));
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the payload was dropped once"
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri ignores the requested stack size, so the spawn succeeds"
)]
fn a_panicking_logger_reporting_a_failed_spawn_does_not_reach_put() {
    install();
    let queue = ActionQueue::builder().stack_size(1 << 60).build();
    let (tx, rx) = mpsc::channel::<u8>();
    let before = records();
    let put = panic::catch_unwind(panic::AssertUnwindSafe(|| {
        queue.put(move || tx.send(1).unwrap());
    }));
    assert!(put.is_ok(), "put panicked");
    assert!(records() > before, "the failed spawn was reported");
    assert!(!queue.is_running(), "no worker, and the state says so");
    assert!(rx.try_recv().is_err(), "the action stays queued");
}
