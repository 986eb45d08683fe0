//! Peers shared by the benches: the std baseline promise (`Mutex<Option<T>>` + `Condvar`)
//! and persistent single-worker queues built on std and on channels, so that every group
//! runs orderslip beside the same hand-written alternatives.
//!
//! Each bench file includes this with `mod common;` and uses only part of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The group settings every bench uses unless it says otherwise: short enough that the
/// whole `cargo bench` stays well under 10 minutes on 2 cores.
pub const WARM_UP: Duration = Duration::from_millis(800);
/// See [`WARM_UP`].
pub const MEASURE: Duration = Duration::from_secs(2);
/// See [`WARM_UP`].
pub const SAMPLES: usize = 20;

// ---------------------------------------------------------------------------------------
// The std baseline promise.
// ---------------------------------------------------------------------------------------

/// A write-once slot on `Mutex<Option<T>>` + `Condvar`: what one writes with std alone.
/// Clones share the slot (one `Arc`, one allocation), like an orderslip `Promise`.
pub struct StdPromise<T>(Arc<(Mutex<Option<T>>, Condvar)>);

impl<T> Clone for StdPromise<T> {
    fn clone(&self) -> Self {
        StdPromise(Arc::clone(&self.0))
    }
}

impl<T> Default for StdPromise<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> StdPromise<T> {
    /// A pending slot.
    pub fn new() -> Self {
        StdPromise(Arc::new((Mutex::new(None), Condvar::new())))
    }

    /// Sets the value (the first set wins) and wakes every waiter.
    pub fn set(&self, value: T) {
        let (lock, cond) = &*self.0;
        let mut slot = lock.lock().unwrap();
        if slot.is_none() {
            *slot = Some(value);
            drop(slot);
            cond.notify_all();
        }
    }

    /// Blocks until the value is set, then runs `f` on it (under the lock).
    pub fn wait_with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        let (lock, cond) = &*self.0;
        let slot = cond
            .wait_while(lock.lock().unwrap(), |slot| slot.is_none())
            .unwrap();
        f(slot.as_ref().unwrap())
    }

    /// Blocks until the value is set, then takes it out.
    pub fn take(&self) -> T {
        let (lock, cond) = &*self.0;
        let mut slot = cond
            .wait_while(lock.lock().unwrap(), |slot| slot.is_none())
            .unwrap();
        slot.take().unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// Persistent serial workers (the queue peers).
// ---------------------------------------------------------------------------------------

/// A boxed action, as every queue here stores them.
pub type Job = Box<dyn FnOnce() + Send>;

/// Something that runs actions in order on a background thread. Generic over the closure
/// so that each implementation boxes it exactly once, as `ActionQueue::put` does.
pub trait Worker: Send + Sync {
    /// Queues one action.
    fn put<F: FnOnce() + Send + 'static>(&self, f: F);
}

impl Worker for orderslip::ActionQueue {
    fn put<F: FnOnce() + Send + 'static>(&self, f: F) {
        orderslip::ActionQueue::put(self, f);
    }
}

/// A persistent worker on `Mutex<VecDeque>` + `Condvar`: the std baseline.
pub struct StdWorker {
    shared: Arc<StdShared>,
    thread: Option<JoinHandle<()>>,
}

struct StdShared {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
    stop: AtomicBool,
}

impl Default for StdWorker {
    fn default() -> Self {
        Self::new()
    }
}

impl StdWorker {
    /// Starts the worker thread.
    pub fn new() -> Self {
        let shared = Arc::new(StdShared {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let worker = Arc::clone(&shared);
        let thread = thread::spawn(move || loop {
            let job = {
                let mut queue = worker.queue.lock().unwrap();
                loop {
                    if let Some(job) = queue.pop_front() {
                        break job;
                    }
                    if worker.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    queue = worker.ready.wait(queue).unwrap();
                }
            };
            job();
        });
        StdWorker {
            shared,
            thread: Some(thread),
        }
    }
}

impl Worker for StdWorker {
    fn put<F: FnOnce() + Send + 'static>(&self, f: F) {
        self.shared.queue.lock().unwrap().push_back(Box::new(f));
        self.shared.ready.notify_one();
    }
}

impl Drop for StdWorker {
    fn drop(&mut self) {
        {
            let _queue = self.shared.queue.lock().unwrap();
            self.shared.stop.store(true, Ordering::Relaxed);
        }
        self.shared.ready.notify_one();
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// A persistent worker that receives its actions from a `crossbeam_channel::unbounded`.
pub struct CrossbeamWorker {
    tx: Option<crossbeam_channel::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Default for CrossbeamWorker {
    fn default() -> Self {
        Self::new()
    }
}

impl CrossbeamWorker {
    /// Starts the worker thread.
    pub fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let thread = thread::spawn(move || {
            for job in rx {
                job();
            }
        });
        CrossbeamWorker {
            tx: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Worker for CrossbeamWorker {
    fn put<F: FnOnce() + Send + 'static>(&self, f: F) {
        self.tx.as_ref().unwrap().send(Box::new(f)).unwrap();
    }
}

impl Drop for CrossbeamWorker {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// A persistent worker that receives its actions from a `std::sync::mpsc::channel`.
pub struct MpscWorker {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Default for MpscWorker {
    fn default() -> Self {
        Self::new()
    }
}

impl MpscWorker {
    /// Starts the worker thread.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = thread::spawn(move || {
            for job in rx {
                job();
            }
        });
        MpscWorker {
            tx: Some(tx),
            thread: Some(thread),
        }
    }
}

// `mpsc::Sender` is `Sync` since Rust 1.72.
impl Worker for MpscWorker {
    fn put<F: FnOnce() + Send + 'static>(&self, f: F) {
        self.tx.as_ref().unwrap().send(Box::new(f)).unwrap();
    }
}

impl Drop for MpscWorker {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}
