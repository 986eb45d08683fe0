//! Peers shared by the benches: the std baseline promise (`Mutex<Option<T>>` + `Condvar`),
//! persistent single-worker queues built on std and on channels, and, for many queues on few
//! threads, a naive sequential executor and tokio actors, so that every group runs orderslip
//! beside the same hand-written alternatives.
//!
//! Each bench file includes this with `mod common;` and uses only part of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
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

// ---------------------------------------------------------------------------------------
// Many serial queues on few threads (the peers of a pool-backed ActionQueue).
// ---------------------------------------------------------------------------------------

/// How many actions a [`NaiveQueue`] runs per turn before it goes to the back of the run
/// queue.
pub const NAIVE_TURN: usize = 64;

/// A naive sequential executor: a fixed set of threads taking scheduled [`NaiveQueue`]s
/// from one `Mutex<VecDeque>` + `Condvar` run queue. What one writes without a lock-free
/// queue: every `put` and every action taken locks its queue's mutex.
pub struct NaivePool {
    shared: Arc<NaiveShared>,
    threads: Vec<JoinHandle<()>>,
}

struct NaiveShared {
    run: Mutex<RunQueue>,
    ready: Condvar,
}

struct RunQueue {
    queues: VecDeque<Arc<NaiveInner>>,
    /// Threads waiting on `ready`: `schedule` notifies only if there is one.
    waiting: usize,
    stop: bool,
}

/// A serial queue on a [`NaivePool`]: its actions in a `Mutex<VecDeque>`, and a flag that
/// says whether it is in the run queue (or being run).
pub struct NaiveQueue {
    inner: Arc<NaiveInner>,
}

struct NaiveInner {
    jobs: Mutex<VecDeque<Job>>,
    scheduled: AtomicBool,
    pool: Arc<NaiveShared>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap()
}

impl NaivePool {
    /// Starts `threads` threads, which wait for scheduled queues.
    pub fn new(threads: usize) -> Self {
        let shared = Arc::new(NaiveShared {
            run: Mutex::new(RunQueue {
                queues: VecDeque::new(),
                waiting: 0,
                stop: false,
            }),
            ready: Condvar::new(),
        });
        let threads = (0..threads)
            .map(|_| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || shared.work())
            })
            .collect();
        NaivePool { shared, threads }
    }

    /// A new, empty queue whose actions run on this pool.
    pub fn queue(&self) -> NaiveQueue {
        NaiveQueue {
            inner: Arc::new(NaiveInner {
                jobs: Mutex::new(VecDeque::new()),
                scheduled: AtomicBool::new(false),
                pool: Arc::clone(&self.shared),
            }),
        }
    }
}

impl NaiveShared {
    fn schedule(&self, queue: Arc<NaiveInner>) {
        let mut run = lock(&self.run);
        run.queues.push_back(queue);
        let wake = run.waiting > 0;
        drop(run);
        if wake {
            self.ready.notify_one();
        }
    }

    /// A pool thread: runs a turn of each scheduled queue, until stopped with nothing left.
    fn work(&self) {
        loop {
            let queue = {
                let mut run = lock(&self.run);
                loop {
                    if let Some(queue) = run.queues.pop_front() {
                        break queue;
                    }
                    if run.stop {
                        return;
                    }
                    run.waiting += 1;
                    run = self.ready.wait(run).unwrap();
                    run.waiting -= 1;
                }
            };
            if queue.turn() {
                self.schedule(queue);
            }
        }
    }
}

impl NaiveInner {
    /// Runs up to [`NAIVE_TURN`] actions; whether the queue must be scheduled again.
    fn turn(&self) -> bool {
        let mut ran = 0;
        while ran < NAIVE_TURN {
            let job = lock(&self.jobs).pop_front();
            if let Some(job) = job {
                job();
                ran += 1;
                continue;
            }
            // Empty: unschedule, then look again. A `put` that pushed before our store saw
            // `scheduled` set and left the queue to us; the lock orders its push before our
            // look, or its swap after our store (then it schedules the queue itself).
            self.scheduled.store(false, Ordering::SeqCst);
            if lock(&self.jobs).is_empty() || self.scheduled.swap(true, Ordering::SeqCst) {
                return false;
            }
        }
        true
    }
}

impl Worker for NaiveQueue {
    fn put<F: FnOnce() + Send + 'static>(&self, f: F) {
        lock(&self.inner.jobs).push_back(Box::new(f));
        if !self.inner.scheduled.swap(true, Ordering::SeqCst) {
            self.inner.pool.schedule(Arc::clone(&self.inner));
        }
    }
}

impl Drop for NaivePool {
    /// Lets the scheduled queues finish, then stops and joins the threads.
    fn drop(&mut self) {
        lock(&self.shared.run).stop = true;
        self.shared.ready.notify_all();
        for thread in self.threads.drain(..) {
            thread.join().unwrap();
        }
    }
}

/// A tokio actor: one spawned task that receives boxed actions from an unbounded channel and
/// runs them in order. Made by [`TokioActor::spawn`] on a runtime the caller owns.
pub struct TokioActor {
    tx: tokio::sync::mpsc::UnboundedSender<Job>,
}

impl TokioActor {
    /// Spawns the actor's task on `runtime`.
    pub fn spawn(runtime: &tokio::runtime::Runtime) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        drop(runtime.spawn(async move {
            while let Some(job) = rx.recv().await {
                job();
            }
        }));
        TokioActor { tx }
    }
}

impl Worker for TokioActor {
    fn put<F: FnOnce() + Send + 'static>(&self, f: F) {
        // The task ends only when every sender is gone, so the send cannot fail.
        if self.tx.send(Box::new(f)).is_err() {
            panic!("a tokio actor's task ended while its sender was alive");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Counting threads.
// ---------------------------------------------------------------------------------------

/// The number of threads of this process (`Threads:` of `/proc/self/status`); `None` where
/// that cannot be read (not Linux).
pub fn process_threads() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}
