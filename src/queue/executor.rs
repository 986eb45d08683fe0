//! [`Executor`]: running a queue's batches on a thread pool the application already has,
//! with adapters for rayon's `ThreadPool` (feature `rayon`) and tokio's blocking pool
//! (feature `tokio`).

use super::batch::Task;

/// A thread pool that can run a queue's [`Task`]s: give it to
/// [`Builder::executor`](crate::Builder::executor) and the queue's actions run on the
/// pool's threads, a batch per task, still one at a time and in order.
///
/// `execute` is called by `put` (when the queue goes from idle to scheduled) and by a task
/// whose batch ended with work left. It must return quickly and run the task soon, later,
/// on a thread of its own: **not inside `execute`**. A task run inline would run the queue's
/// actions inside the caller (a `put`, or an action of another queue), and every batch of a
/// long queue would run one stack frame deeper than the last, until the stack overflows. (A
/// task that an executor runs inside one of its own jobs while that job waits, as
/// work-stealing pools do, is fine: the deadlock check sees every queue whose batch runs on
/// the thread.) A task it drops unrun unschedules its queue (see [`Task`]); a panic in
/// `execute` is contained and logged.
///
/// The adapters (each behind the cargo feature of its name, off by default):
/// `Arc<rayon::ThreadPool>` runs tasks with `ThreadPool::spawn`, and
/// `TokioBlocking` (holding a `tokio::runtime::Handle`) with `spawn_blocking`.
///
/// ```
/// use orderslip::{ActionQueue, Executor, Task};
/// use std::sync::{mpsc, Arc, Mutex};
/// use std::time::Duration;
///
/// /// One thread that runs every task sent to it: the simplest executor.
/// struct OneThread(Mutex<mpsc::Sender<Task>>);
///
/// impl Executor for OneThread {
///     fn execute(&self, task: Task) {
///         let _ = self.0.lock().unwrap().send(task);
///     }
/// }
///
/// let (tx, rx) = mpsc::channel::<Task>();
/// std::thread::spawn(move || rx.into_iter().for_each(Task::run));
/// let executor = Arc::new(OneThread(Mutex::new(tx)));
/// let a = ActionQueue::builder().executor(executor.clone()).build();
/// let b = ActionQueue::builder().executor(executor).build();
/// let x = a.submit(|| "a ran");
/// let y = b.submit(|| "b ran");
/// assert_eq!(x.result(Duration::from_secs(5)), Ok(&"a ran"));
/// assert_eq!(y.result(Duration::from_secs(5)), Ok(&"b ran"));
/// ```
pub trait Executor: Send + Sync + 'static {
    /// Runs `task` (calls [`Task::run`] once), soon, on a thread of the executor's.
    fn execute(&self, task: Task);
}

#[cfg(feature = "rayon")]
impl Executor for rayon::ThreadPool {
    /// `ThreadPool::spawn`: the task runs on one of the pool's threads.
    fn execute(&self, task: Task) {
        self.spawn(move || task.run());
    }
}

/// Runs a queue's tasks on tokio's blocking pool (`Handle::spawn_blocking`), which is meant
/// for work that blocks; feature `tokio`.
///
/// ```
/// # #[cfg(feature = "tokio")] {
/// use orderslip::{ActionQueue, TokioBlocking};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
/// let queue = ActionQueue::builder()
///     .executor(Arc::new(TokioBlocking(runtime.handle().clone())))
///     .build();
/// assert_eq!(queue.submit(|| 2 + 2).result(Duration::from_secs(5)), Ok(&4));
/// # }
/// ```
#[cfg(feature = "tokio")]
#[derive(Clone, Debug)]
pub struct TokioBlocking(pub tokio::runtime::Handle);

#[cfg(feature = "tokio")]
impl Executor for TokioBlocking {
    /// `Handle::spawn_blocking`: a runtime that is shutting down drops the task unrun, which
    /// unschedules the queue (see [`Task`]).
    fn execute(&self, task: Task) {
        drop(self.0.spawn_blocking(move || task.run()));
    }
}
