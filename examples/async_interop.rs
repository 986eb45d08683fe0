//! Promises between plain threads and async tasks, in a real runtime (tokio).
//!
//! `orderslip` has no runtime of its own: [`Promise::wait_async`] is a plain `Future` that
//! any executor can poll, woken by whatever thread sets the promise. This example shows
//!
//! 1. a task awaiting a promise that a plain thread sets;
//! 2. many tasks (and a blocked thread) awaiting one promise, all woken by one set;
//! 3. `tokio::time::timeout` around a wait, and waiting again afterwards;
//! 4. a task learning that the thread that should have answered is gone (abandoned);
//! 5. blocking work handed to an [`ActionQueue`] with `submit` and awaited.
//!
//! ```sh
//! cargo run --example async_interop
//! ```
//!
//! Every step asserts what it shows; the example panics (and exits non-zero) if one fails.

use orderslip::{ActionQueue, Promise, PromiseError};
use std::future::Future;
use std::sync::mpsc;
use std::task::Poll;
use std::thread;
use std::time::Duration;

/// How many tasks await the one promise in step 2.
pub const TASKS: usize = 1000;

/// Runs every step; panics if one does not behave as shown.
pub async fn run() {
    // 1. A plain thread sets, a task awaits.
    let reading: Promise<f64, String> = Promise::with_setter(None);
    let sensor = reading.clone();
    let task = tokio::spawn(async move { *reading.wait_async().await.unwrap() });
    let sensor_thread = thread::spawn(move || sensor.set_result(21.5).unwrap());
    assert_eq!(task.await.unwrap(), 21.5);
    sensor_thread.join().unwrap();
    println!("1. a task awaited a value set by a plain thread: 21.5");

    // 2. Many tasks and one blocked thread wait for one promise; one set wakes them all.
    //    Each task polls its wait once (which registers it) and reports in; the setter
    //    thread sets the value only when every task is registered, so all of them really
    //    are woken rather than finding the value already there.
    let config: Promise<String, String> = Promise::with_setter(None);
    let (registered, reports) = mpsc::channel::<()>();
    let mut tasks = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        let config = config.clone();
        let registered = registered.clone();
        tasks.push(tokio::spawn(async move {
            let mut wait = std::pin::pin!(config.wait_async());
            let first = std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx))).await;
            assert!(first.is_pending(), "nobody has set it yet");
            registered.send(()).unwrap();
            wait.await.map(String::len).map_err(PromiseError::cloned)
        }));
    }
    drop(registered);
    let blocked = {
        let config = config.clone();
        thread::spawn(move || {
            let result = config.result(Duration::from_secs(30));
            result.cloned().map_err(PromiseError::cloned)
        })
    };
    let setter = {
        let config = config.clone();
        thread::spawn(move || {
            for _ in 0..TASKS {
                reports.recv().unwrap();
            }
            config.set_result("mode=fast".to_string()).unwrap();
        })
    };
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok("mode=fast".len()));
    }
    assert_eq!(blocked.join().unwrap(), Ok("mode=fast".to_string()));
    setter.join().unwrap();
    println!("2. {TASKS} tasks and 1 blocked thread were woken by one set_result");

    // 3. A timeout around a wait. Nobody sets the promise in time (we hold the only other
    //    handle), so the timeout fires; the dropped wait unregisters itself. The promise is
    //    still usable: set it and wait again.
    let slow: Promise<u32, String> = Promise::with_setter(None);
    let producer = slow.clone();
    let waited = tokio::time::timeout(Duration::from_millis(50), slow.wait_async()).await;
    assert!(waited.is_err(), "nothing was set, so the timeout fires");
    producer.set_result(7).unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(30), slow.wait_async()).await;
    assert_eq!(waited.expect("it is set now"), Ok(&7));
    println!("3. tokio::time::timeout fired after 50 ms; after set_result the next wait got 7");

    // 4. The thread that should answer exits without answering: its handle is dropped, so
    //    the waiting task is told at once instead of waiting forever.
    let reply: Promise<u32, String> = Promise::with_setter(None);
    let worker_side = reply.clone();
    let worker = thread::spawn(move || {
        let _gave_up = worker_side; // dropped unset when the thread ends
    });
    assert_eq!(reply.wait_async().await, Err(PromiseError::Abandoned));
    worker.join().unwrap();
    println!("4. the answering thread quit without answering: Abandoned");

    // 5. Blocking work goes to a serial ActionQueue (so it never blocks the runtime's
    //    threads); the task awaits the promise `submit` returns.
    //    The second action panics on purpose: the queue catches it (the default panic hook
    //    still prints it) and fails that promise; the queue goes on.
    let checksum = |n: u64| (1..=n).map(|i| i * i % 97).sum::<u64>();
    let queue = ActionQueue::new();
    let computed = queue.submit(move || checksum(1_000));
    eprintln!(
        "5. (an action panics on purpose next: the \"disk unplugged\" panic message that \
         follows is expected)"
    );
    let failing = queue.submit(|| -> u64 { panic!("disk unplugged") });
    let after = queue.submit(|| "still running");
    assert_eq!(computed.wait_async().await, Ok(&checksum(1_000)));
    match failing.wait_async().await {
        Err(PromiseError::Failed(e)) => assert_eq!(e.message(), Some("disk unplugged")),
        other => panic!("expected the action's panic, got {other:?}"),
    }
    assert_eq!(after.wait_async().await, Ok(&"still running"));
    println!("5. ActionQueue::submit awaited from a task: a value, and a caught panic");
}

#[tokio::main]
async fn main() {
    install_logger();
    run().await;
    println!("async interop: all checks passed");
}

#[path = "support/stderr_logger.rs"]
mod stderr_logger;
use stderr_logger::install_logger;
