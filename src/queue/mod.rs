//! The [`ActionQueue`]: a serial background worker that starts a thread when work arrives
//! and retires it when the queue has been idle for its keep-alive.
//!
//! # How it works
//!
//! Actions go into a lock-free FIFO (`sync::Fifo`: many producers, one consumer), each stored
//! as an [`Action`](action::Action), and one atomic byte says whether a worker exists and
//! whether it is parked. Each mechanism has its own module, which draws its state machine and
//! argues why nothing is lost:
//!
//! - [`worker`]: the IDLE/RUNNING/PARKED worker state machine, why no action is ever
//!   stranded, how a worker is spawned, runs actions, parks, retires, and what happens when
//!   it dies;
//! - [`idle`]: [`wait_idle`](ActionQueue::wait_idle): the idle check, and the shared signal
//!   and marker action that wake its callers;
//! - [`action`]: a queued closure, stored in place when it is small;
//! - this file: the API ([`ActionQueue`], [`Builder`]) and the queue's drop.
//!
//! Who may set a promise (the queue's id in its worker's thread-local) lives in
//! [`crate::setter`], shared with the promise; the panic-containment helpers in
//! [`crate::panics`].

mod action;
mod batch;
mod executor;
mod idle;
mod pool;
mod worker;

pub use batch::Task;
pub use executor::Executor;
#[cfg(feature = "tokio")]
pub use executor::TokioBlocking;
pub use pool::{PoolBuilder, WorkerPool};

use crate::error::ActionPanicked;
use crate::panics;
use crate::setter::{next_queue_id, Setter};
use crate::sync::{self, fence, Arc, AtomicBool, AtomicUsize, Fifo, Mutex, Ordering, UnparkerCell};
use crate::Promise;
use action::Action;
use idle::IdleWait;
use std::any::Any;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;
use worker::{AtomicWorkerState, Runner, Shared, WorkerState};

/// A panic handler set with [`Builder::panic_handler`].
type PanicHandler = Box<dyn Fn(&(dyn Any + Send)) + Send + Sync>;

/// A serial background worker: [`put`](ActionQueue::put) returns at once, and the actions
/// run one at a time, in the order they were put, on a worker thread that the queue starts
/// when work arrives and retires after it has been idle for the keep-alive.
///
/// - A panicking action is caught and logged (`log::error!`, with the queue's name) and the
///   next action runs: a panic never wedges the queue.
/// - If the worker thread cannot be spawned, the actions stay queued, the failure is logged,
///   and the next `put` tries again.
/// - `ActionQueue` is a cheap handle: clones share the queue (and its order), and every
///   clone may `put`. Dropping the last handle lets the actions already queued run to
///   completion, without blocking the dropping thread; an action may drop the last handle
///   to its own queue. To wait for them (before `main` returns, say), give the handle up
///   with [`join`](ActionQueue::join) instead.
/// - Past its keep-alive an idle queue holds no thread.
///
/// # Example
///
/// ```
/// use orderslip::ActionQueue;
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// let queue = ActionQueue::new();
/// let log = Arc::new(Mutex::new(Vec::new()));
/// for i in 0..3 {
///     let log = log.clone();
///     queue.put(move || log.lock().unwrap().push(i));
/// }
/// assert!(queue.wait_idle(Duration::from_secs(5)));
/// assert_eq!(*log.lock().unwrap(), [0, 1, 2]);
/// ```
pub struct ActionQueue {
    shared: Arc<Shared>,
}

/// Configures an [`ActionQueue`]; made by [`ActionQueue::builder`].
///
/// ```
/// use orderslip::ActionQueue;
/// use std::time::Duration;
///
/// let queue = ActionQueue::builder()
///     .name("audit-log")
///     .keep_alive(Duration::ZERO) // retire as soon as the queue is empty
///     .build();
/// queue.put(|| println!("written"));
/// ```
#[must_use = "a builder does nothing until .build()"]
pub struct Builder {
    name: String,
    stack_size: Option<usize>,
    keep_alive: Duration,
    panic_handler: Option<PanicHandler>,
    /// Borrowed threads to run on (`None`: a thread of the queue's own).
    runner: Option<Runner>,
}

impl ActionQueue {
    /// The keep-alive of [`ActionQueue::new`]: how long an idle worker lingers (parked, using
    /// no CPU) before it retires, so that a burst of work after a pause does not pay for a
    /// thread start. See the README's "Performance" section for the measurements behind it.
    pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_millis(100);

    /// A queue with the defaults: worker thread named `orderslip-worker`, the platform's
    /// stack size, and [`DEFAULT_KEEP_ALIVE`](ActionQueue::DEFAULT_KEEP_ALIVE).
    ///
    /// ```
    /// let queue = orderslip::ActionQueue::new();
    /// assert!(!queue.is_running()); // no thread until there is work
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A [`Builder`] to set the worker's name, stack size, keep-alive and panic handler.
    ///
    /// ```
    /// let queue = orderslip::ActionQueue::builder().name("io").build();
    /// # drop(queue);
    /// ```
    pub fn builder() -> Builder {
        Builder {
            name: "orderslip-worker".to_owned(),
            stack_size: None,
            keep_alive: Self::DEFAULT_KEEP_ALIVE,
            panic_handler: None,
            runner: None,
        }
    }

    /// Queues `action` to run after every action queued before it, and returns at once. It
    /// never waits for the worker and takes no lock: it pushes the action (lock-free), then
    /// starts a worker if there is none, or unparks the one that is idle. (Only a spawn that
    /// fails takes a brief lock, to tell `wait_idle` callers.)
    ///
    /// If a worker thread cannot be spawned (the spawn fails or panics), the action stays
    /// queued, the error is logged, and the next `put` tries again: `put` itself never
    /// panics, whatever the logger does.
    ///
    /// ```
    /// use orderslip::ActionQueue;
    /// use std::sync::mpsc;
    ///
    /// let queue = ActionQueue::new();
    /// let (tx, rx) = mpsc::channel();
    /// queue.put(move || tx.send("ran").unwrap());
    /// assert_eq!(rx.recv().unwrap(), "ran");
    /// ```
    pub fn put<F>(&self, action: F)
    where
        F: FnOnce() + Send + 'static,
    {
        self.shared.actions.push(Action::new(action));
        Shared::ensure_worker(&self.shared);
    }

    /// Queues `f` and returns a promise for its result. If `f` panics, the promise fails with
    /// [`ActionPanicked`] (and the queue goes on). If the action can never run (its worker
    /// could not be spawned and the queue was dropped), the promise is abandoned.
    ///
    /// Waiting on the promise from inside an action of the same queue fails at once with
    /// [`PromiseError::Deadlock`](crate::PromiseError::Deadlock): the worker would be
    /// waiting for itself.
    ///
    /// ```
    /// use orderslip::ActionQueue;
    /// use std::time::Duration;
    ///
    /// let queue = ActionQueue::new();
    /// let sum = queue.submit(|| (1..=10).sum::<u32>());
    /// assert_eq!(sum.result(Duration::from_secs(5)), Ok(&55));
    /// ```
    pub fn submit<R, F>(&self, f: F) -> Promise<R, ActionPanicked>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + Sync + 'static,
    {
        let promise = self.promise();
        let setter = promise.clone();
        self.put(move || {
            let _ = match panic::catch_unwind(AssertUnwindSafe(f)) {
                Ok(value) => setter.set_result(value).map_err(drop),
                Err(payload) => {
                    let error = ActionPanicked::from_payload(&*payload);
                    panics::drop_payload(payload);
                    setter.set_exception(error).map_err(drop)
                }
            };
        });
        promise
    }

    /// A pending promise that an action of this queue is to set, for results that an action
    /// produces by hand (as opposed to [`submit`](ActionQueue::submit)). Its designated
    /// setter is the queue: waiting for it from inside an action of this queue while it is
    /// pending fails at once with [`PromiseError::Deadlock`](crate::PromiseError::Deadlock),
    /// whichever worker thread the queue runs at the time.
    ///
    /// ```
    /// use orderslip::{ActionQueue, Promise};
    /// use std::time::Duration;
    ///
    /// let queue = ActionQueue::new();
    /// let reply: Promise<String, String> = queue.promise();
    /// let setter = reply.clone();
    /// queue.put(move || setter.set_result("pong".to_string()).unwrap());
    /// assert_eq!(reply.result(Duration::from_secs(5)).map(String::as_str), Ok("pong"));
    /// ```
    #[must_use]
    pub fn promise<T, E>(&self) -> Promise<T, E> {
        Promise::with_setter_kind(Setter::Queue(self.shared.id))
    }

    /// Whether a worker thread exists now (running actions, or idle within its keep-alive).
    /// For a queue on a [`WorkerPool`] or an [`Executor`]: whether it is scheduled (it has
    /// work queued or running); a pool thread that lingers does not count.
    ///
    /// ```
    /// use orderslip::ActionQueue;
    /// use std::time::Duration;
    ///
    /// let queue = ActionQueue::builder().keep_alive(Duration::from_secs(60)).build();
    /// assert!(!queue.is_running());
    /// queue.put(|| ());
    /// assert!(queue.is_running());
    /// ```
    #[must_use]
    pub fn is_running(&self) -> bool {
        // ORDERING: Acquire: a `false` lets the caller rely on the worker's last actions.
        self.shared.state.load(Ordering::Acquire) != WorkerState::Idle
    }

    /// Waits up to `timeout` until the queue is idle: empty, with no action running (so every
    /// action put before this call has run). Returns whether it was idle in time.
    ///
    /// - With a zero timeout it only checks, and queues nothing.
    /// - A worker that lingers after it drained the queue (see [`Builder::keep_alive`]) does
    ///   not make the queue busy: right after `wait_idle` returned `true`,
    ///   `wait_idle(Duration::ZERO)` is `true` as well, unless new work came in.
    /// - Callers that wait share one marker action: a call that times out leaves at most that
    ///   one marker queued, however often it is repeated.
    /// - If no worker thread can be spawned (see [`put`](ActionQueue::put)), the queued
    ///   actions cannot run: `wait_idle` then returns `false` as soon as the spawn attempt it
    ///   makes fails, whatever the timeout (`Duration::MAX` included). It can also return
    ///   `false` early when another thread's spawn attempt fails while it waits.
    /// - Called from inside an action of this queue, it returns `false` at once (the queue
    ///   cannot be idle while that action runs).
    /// - Other threads that keep putting work can keep the queue from ever being idle. To
    ///   wait only for the work queued before a point, give a handle up with
    ///   [`join`](ActionQueue::join).
    ///
    /// # In async code
    ///
    /// This blocks the calling thread: inside an async task it blocks the executor's thread
    /// too (see [`Promise::result`]). Call it through `spawn_blocking`, or `.await` the
    /// [`wait_async`](Promise::wait_async) of a [`submit`](ActionQueue::submit)ted no-op
    /// instead.
    ///
    /// ```
    /// use orderslip::ActionQueue;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// let queue = ActionQueue::new();
    /// let count = Arc::new(AtomicU32::new(0));
    /// for _ in 0..100 {
    ///     let count = count.clone();
    ///     queue.put(move || { count.fetch_add(1, Ordering::Relaxed); });
    /// }
    /// assert!(queue.wait_idle(Duration::from_secs(5)));
    /// assert_eq!(count.load(Ordering::Relaxed), 100);
    /// assert!(queue.wait_idle(Duration::ZERO)); // still idle, though the worker lingers
    /// ```
    #[must_use = "`false` means the queue was not idle by the timeout"]
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        idle::wait_idle(&self.shared, timeout)
    }

    /// How many actions are queued and not started yet. The action running now is not
    /// counted; the internal marker of a pending [`wait_idle`](ActionQueue::wait_idle) or
    /// [`join`](ActionQueue::join) is. With other threads putting, it is a snapshot.
    ///
    /// ```
    /// use orderslip::ActionQueue;
    /// use std::sync::mpsc;
    ///
    /// let queue = ActionQueue::new();
    /// let (release, gate) = mpsc::channel::<()>();
    /// queue.put(move || gate.recv().unwrap()); // runs, and blocks until released
    /// queue.put(|| ());
    /// queue.put(|| ());
    /// assert!(queue.len() >= 2); // the two behind the blocked one (or three, before it starts)
    /// release.send(()).unwrap();
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.shared.actions.len()
    }

    /// Whether no action is queued (one may still be running; see
    /// [`wait_idle`](ActionQueue::wait_idle) for "nothing queued or running").
    ///
    /// ```
    /// let queue = orderslip::ActionQueue::new();
    /// assert!(queue.is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.shared.actions.is_empty()
    }

    /// Gives up this handle and waits up to `timeout` until every action queued before the
    /// call has run, and, if this was the last handle, until the worker has let go of the
    /// queue (it retires at once: with no handle left, nobody can put more). Other clones may
    /// go on putting; their later actions are not waited for. Returns whether all that
    /// happened in time.
    ///
    /// This is how a program makes sure queued work is done before `main` returns (dropping
    /// the last handle does not wait, and the process ends with `main`).
    ///
    /// - `Duration::MAX` (or any timeout too large for the clock) waits without limit.
    /// - If the worker cannot be spawned, the queued actions cannot run: on the last handle
    ///   it returns `false` at once (the queue is dropped, with them); otherwise it waits
    ///   until another handle's `put` starts a worker, or until the timeout.
    /// - Called from inside an action of this queue, it returns `false` at once: the queue
    ///   cannot get past the running action while that action waits.
    ///
    /// # In async code
    ///
    /// This blocks the calling thread (see [`Promise::result`]): in an async task, call it
    /// through `spawn_blocking`.
    ///
    /// ```
    /// use orderslip::ActionQueue;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// let written = Arc::new(AtomicU32::new(0));
    /// let journal = ActionQueue::new();
    /// for _ in 0..3 {
    ///     let written = written.clone();
    ///     journal.put(move || { written.fetch_add(1, Ordering::SeqCst); });
    /// }
    /// assert!(journal.join(Duration::from_secs(5))); // the last handle: the worker is gone too
    /// assert_eq!(written.load(Ordering::SeqCst), 3);
    /// ```
    #[must_use = "`false` means some queued actions had not run by the timeout"]
    pub fn join(self, timeout: Duration) -> bool {
        if crate::setter::in_queue(self.shared.id) {
            return false; // our own action: the queue cannot get past us
        }
        let deadline = sync::now().checked_add(timeout);
        let remaining = || match deadline {
            None => Duration::MAX,
            Some(deadline) => deadline.saturating_duration_since(sync::now()),
        };
        // The last handle? (Only a handle can make another, and we own this one, so `1`
        // cannot change under us.) ORDERING: Acquire: pairs with other handles' Release
        // decrements, like the check in `Drop`.
        let gone = (self.shared.handles.load(Ordering::Acquire) == 1).then(|| {
            let gone: Promise<(), ()> = Promise::with_setter_kind(Setter::Nobody);
            *sync::lock(&self.shared.gone) = Some(gone.clone());
            gone
        });
        // A marker behind everything queued before this call.
        let marker: Promise<(), ()> = Promise::with_setter_kind(Setter::Nobody);
        let setter = marker.clone();
        self.put(move || {
            let _ = setter.set_result(());
        });
        // Give the handle up before waiting: if it is the last, the queue closes (the worker
        // retires once it has drained), and should no worker be able to start, the queue is
        // dropped here with its actions, the marker's setter among them, which ends our wait
        // at once (abandoned) rather than at the timeout.
        drop(self);
        let ran = marker.result(remaining()).is_ok();
        if !ran {
            return false;
        }
        match gone {
            None => true,
            // Set by `Drop for Shared`, when the worker (or we, just now) let go of it.
            Some(gone) => gone.result(remaining()).is_ok(),
        }
    }
}

impl Default for ActionQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// The worker thread's name (default `orderslip-worker`), also used in log messages.
    ///
    /// # Panics
    ///
    /// If `name` contains a NUL byte: no thread can be given such a name (it cannot be made
    /// into a C string, see [`CString::new`](std::ffi::CString::new)), so no worker could ever
    /// be spawned.
    ///
    /// ```
    /// let queue = orderslip::ActionQueue::builder().name("audit-log").build();
    /// let worker = queue.submit(|| std::thread::current().name().map(str::to_owned));
    /// assert_eq!(worker.wait().unwrap().as_deref(), Some("audit-log"));
    /// ```
    ///
    /// ```should_panic
    /// let _ = orderslip::ActionQueue::builder().name("bad\0name");
    /// ```
    #[track_caller]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        assert!(
            !name.contains('\0'),
            "ActionQueue worker name {name:?} contains a NUL byte, which no thread name may \
             contain"
        );
        self.name = name;
        self
    }

    /// The worker thread's stack size in bytes (default: the platform's, as for
    /// `std::thread::spawn`). A size the platform cannot give makes every spawn fail (see
    /// [`ActionQueue::put`]).
    ///
    /// ```
    /// let queue = orderslip::ActionQueue::builder().stack_size(256 * 1024).build();
    /// assert_eq!(queue.submit(|| 1 + 1).wait(), Ok(&2));
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// How long an idle worker lingers before it retires (default
    /// [`ActionQueue::DEFAULT_KEEP_ALIVE`]). It spins for a few microseconds, then parks
    /// with a timeout, using no CPU. `Duration::ZERO` is the Python original's behaviour:
    /// retire as soon as the queue is empty.
    ///
    /// ```
    /// use orderslip::ActionQueue;
    /// use std::time::Duration;
    ///
    /// // A queue for bursts a second apart: keep the thread between them.
    /// let queue = ActionQueue::builder().keep_alive(Duration::from_secs(2)).build();
    /// assert_eq!(queue.submit(|| "first burst").wait(), Ok(&"first burst"));
    /// assert!(queue.is_running()); // lingering, parked
    /// ```
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Called on the worker thread with the payload of every [`put`](ActionQueue::put) action
    /// that panics, instead of the default `log::error!` report. A panic inside the handler
    /// is caught and logged. (A [`submit`](ActionQueue::submit)ted action's panic is not
    /// reported here: it goes to its promise, as [`ActionPanicked`], for its waiter to see.)
    ///
    /// ```
    /// use orderslip::ActionQueue;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// let panics = Arc::new(AtomicU32::new(0));
    /// let seen = panics.clone();
    /// let queue = ActionQueue::builder()
    ///     .panic_handler(move |_payload| { seen.fetch_add(1, Ordering::SeqCst); })
    ///     .build();
    /// queue.put(|| panic!("boom"));
    /// assert!(queue.wait_idle(Duration::from_secs(5)));
    /// assert_eq!(panics.load(Ordering::SeqCst), 1);
    /// ```
    pub fn panic_handler<H>(mut self, handler: H) -> Self
    where
        H: Fn(&(dyn Any + Send)) + Send + Sync + 'static,
    {
        self.panic_handler = Some(Box::new(handler));
        self
    }

    /// Runs the queue's actions on `pool`'s threads instead of a thread of its own: still one
    /// at a time and in order, in batches that let the pool's other queues take turns (see
    /// [`WorkerPool`]). Everything else the queue promises holds as for a dedicated queue;
    /// [`stack_size`](Builder::stack_size) and [`keep_alive`](Builder::keep_alive) are the
    /// pool's to set and are ignored here, and the queue's name is used in its log messages.
    /// Of [`pool`](Builder::pool) and [`executor`](Builder::executor), the last one called
    /// wins.
    ///
    /// ```
    /// use orderslip::{ActionQueue, WorkerPool};
    /// use std::time::Duration;
    ///
    /// let pool = WorkerPool::builder().max_threads(2).build();
    /// let queue = ActionQueue::builder().pool(&pool).name("session-7").build();
    /// assert_eq!(queue.submit(|| 6 * 7).result(Duration::from_secs(5)), Ok(&42));
    /// ```
    pub fn pool(mut self, pool: &WorkerPool) -> Self {
        self.runner = Some(Runner::Pool(pool.user()));
        self
    }

    /// Runs the queue's actions on an application's own thread pool, in batches handed to
    /// `executor` as [`Task`]s (see [`Executor`]; adapters for rayon and tokio behind the
    /// features of those names). As with [`pool`](Builder::pool), the actions still run one
    /// at a time and in order, and the stack size and keep-alive are ignored.
    ///
    /// ```
    /// use orderslip::{ActionQueue, Executor, Task};
    /// use std::sync::Arc;
    ///
    /// struct Spawner;
    /// impl Executor for Spawner {
    ///     fn execute(&self, task: Task) {
    ///         std::thread::spawn(move || task.run());
    ///     }
    /// }
    ///
    /// let queue = ActionQueue::builder().executor(Arc::new(Spawner)).build();
    /// assert_eq!(queue.submit(|| "ran").wait(), Ok(&"ran"));
    /// ```
    pub fn executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.runner = Some(Runner::Executor(executor));
        self
    }

    /// Builds the queue. No thread starts until the first action arrives.
    #[must_use]
    pub fn build(self) -> ActionQueue {
        ActionQueue {
            shared: Arc::new(Shared {
                actions: Fifo::new(),
                state: AtomicWorkerState::new(WorkerState::Idle),
                closed: AtomicBool::new(false),
                runner: self
                    .runner
                    .unwrap_or_else(|| Runner::Thread(UnparkerCell::new())),
                id: next_queue_id(),
                name: self.name,
                stack_size: self.stack_size,
                keep_alive: self.keep_alive,
                panic_handler: self.panic_handler,
                busy: AtomicBool::new(false),
                idle: IdleWait::default(),
                handles: AtomicUsize::new(1),
                gone: Mutex::new(None),
                #[cfg(test)]
                worker_panics: crate::sync::StdAtomicUsize::new(0),
            }),
        }
    }
}

impl Clone for ActionQueue {
    /// Another handle to the same queue: its actions go into the same order.
    ///
    /// # Aborts
    ///
    /// If the handle count would pass `isize::MAX` (only leaked clones get there), as `Arc`
    /// does.
    fn clone(&self) -> Self {
        // ORDERING: Relaxed, as for `Arc`: the new handle is made from a live one.
        if self.shared.handles.fetch_add(1, Ordering::Relaxed) > isize::MAX as usize {
            std::process::abort();
        }
        ActionQueue {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for ActionQueue {
    fn drop(&mut self) {
        // ORDERING: AcqRel: Release so that the last handle's close below comes after every
        // other handle's puts (their pushes happen before their decrements); Acquire for the
        // last one to see them.
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return; // other handles may still put: the queue stays open
        }
        if !matches!(self.shared.runner, Runner::Thread(_)) {
            // The last handle of a queue on borrowed threads: its `Task`, if any, finishes
            // the queued actions. If actions are queued with no thread to run them (a pool
            // that could start none, a task an executor dropped), try once more.
            if !self.shared.actions.is_empty() {
                Shared::ensure_worker(&self.shared);
            }
            return;
        }
        // The last handle. The worker (which holds its own `Arc`) finishes the queued
        // actions; tell it not to linger afterwards.
        // ORDERING: Release pairs with the worker's Acquire load.
        self.shared.closed.store(true, Ordering::Release);
        // Pairs with the worker's fence after its swap(PARKED): either we see PARKED here
        // and unpark it, or it sees `closed`.
        fence(Ordering::SeqCst);
        // ORDERING: Relaxed: ordered by the fence; a stale answer costs one spare unpark.
        match self.shared.state.load(Ordering::Relaxed) {
            // Parked, or about to park: wake it so that it sees `closed` and retires now.
            WorkerState::Parked => self.shared.parker().unpark(),
            // No worker, yet actions are queued: a spawn failed earlier. Try once more so
            // the queued actions run.
            WorkerState::Idle if !self.shared.actions.is_empty() => {
                Shared::ensure_worker(&self.shared);
            }
            // No worker and nothing queued: nothing to do.
            WorkerState::Idle => {}
            // A worker is draining: it reads `closed` before it lingers.
            WorkerState::Running => {}
            // Only pool threads' slots spin.
            WorkerState::Spinning => unreachable!("a dedicated worker never stores SPINNING"),
        }
    }
}

impl fmt::Debug for ActionQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let runs_on = match &self.shared.runner {
            Runner::Thread(_) => "its own thread",
            Runner::Pool(_) => "a WorkerPool",
            Runner::Executor(_) => "an Executor",
        };
        // ORDERING: Relaxed: a snapshot for display; it orders nothing.
        let state = match self.shared.state.load(Ordering::Relaxed) {
            // No worker thread.
            WorkerState::Idle => "idle",
            // A worker runs actions (or is about to look for them).
            WorkerState::Running => "running",
            // A worker lingers, parked, within its keep-alive.
            WorkerState::Parked => "parked",
            // Not stored for a queue (pool threads' slots only).
            WorkerState::Spinning => "spinning",
        };
        f.debug_struct("ActionQueue")
            .field("name", &self.shared.name)
            .field("runs_on", &runs_on)
            .field("worker", &state)
            .field("keep_alive", &self.shared.keep_alive)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("stack_size", &self.stack_size)
            .field("keep_alive", &self.keep_alive)
            .field("panic_handler", &self.panic_handler.is_some())
            .field(
                "runs_on",
                &match self.runner {
                    None => "its own thread",
                    Some(Runner::Pool(_)) => "a WorkerPool",
                    Some(_) => "an Executor",
                },
            )
            .finish()
    }
}
