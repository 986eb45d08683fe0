//! The [`ActionQueue`]: a serial background worker that starts a thread when work arrives
//! and retires it when the queue has been idle for its keep-alive.
//!
//! # How it works
//!
//! Actions go into a lock-free FIFO (`crossbeam_queue::SegQueue`). One atomic byte, `state`,
//! says whether a worker exists and whether it is parked:
//!
//! ```text
//!             put: swap(RUNNING) saw IDLE → spawn a worker
//!   IDLE ─────────────────────────────────────────────────────> RUNNING ──┐ worker drains
//!    ^                                                            ^  │    │ the queue
//!    │ worker: keep-alive over,                 put: swap(RUNNING) │  │    │
//!    │ CAS(PARKED → IDLE) retires               saw PARKED → unpark│  │ worker: queue empty,
//!    │                                                             │  v swap(PARKED), re-check
//!    └─────────────────────────────────────────────────────────── PARKED
//! ```
//!
//! - `put` pushes its action, then `swap(RUNNING)`: IDLE means no worker, so it spawns one;
//!   PARKED means the worker is (about to be) asleep, so it unparks it; RUNNING means a
//!   worker will find the action. `put` never takes a lock and never waits.
//! - The worker drains the queue, spins briefly, then `swap(PARKED)` and checks the queue
//!   once more; if it is still empty it parks until its keep-alive ends and retires with
//!   `CAS(PARKED → IDLE)`, which fails if a `put` came in between.
//!
//! **Why no action is ever stranded.** Both sides write `state` with read-modify-write
//! operations, so all of them are totally ordered, and each is Release + Acquire. Take a
//! `put` P (push, then swap) and the worker's `swap(PARKED)` W:
//! - if P's swap comes first, W reads P's write (or a later one in the same chain of
//!   read-modify-writes), so P's push happens before W's re-check, which finds the action;
//! - if W comes first, P's swap reads PARKED (or IDLE, if the worker retired since): P
//!   unparks the worker (or spawns a new one), and the worker's retiring CAS fails because
//!   P wrote RUNNING.
//!
//! A successful retiring CAS therefore means no push is unaccounted for, and any later `put`
//! sees IDLE and spawns. Only the `put` that reads IDLE spawns, so there are never two
//! workers, and a worker exits only through that CAS (or, if its thread unwinds, through its
//! exit guard, below), so there is never zero workers while an action waits (except after a
//! failed spawn, which is logged and retried by the next `put`).
//!
//! This is the swap-on-both-sides protocol; a plain `store(false)` by the retiring worker
//! would need a `fence(SeqCst)` on both sides instead. A pending-work counter (folly's
//! serial executor) would cost a contended read-modify-write per action on the worker's side
//! too, and `wait_idle` does not need one (below).
//!
//! **A worker that dies.** Actions run under `catch_unwind`, and so does every other piece of
//! foreign code the worker calls (the panic handler, the logger, a panic payload's `Drop`).
//! Should the worker thread unwind all the same, a guard on its exit path (`WorkerExit`)
//! gives the state back as the retiring CAS would (`swap(IDLE)`, then a re-check of the queue
//! that starts a new worker if anything is queued), so the queue never keeps a RUNNING or
//! PARKED state with no thread behind it. Spawning is contained the same way: a spawn that
//! panics is handled as a spawn that failed.
//!
//! # Waiting until idle
//!
//! The queue is idle when it is empty and no action runs. The worker publishes `busy` with a
//! plain store before each drain (before its first pop) and another after it (once a pop
//! found the queue empty): two stores per drain, none per action, nothing on the `put` side.
//! The check reads `actions.is_empty()` first and `busy` second. If the queue looked empty
//! because the worker had popped the last action, that pop (a release operation on the
//! queue, which `is_empty` acquires) carries the `busy = true` written before it, so the
//! check cannot miss an action that still runs; and a `busy = false` it reads was written
//! after the actions of that drain finished (Release/Acquire), so their effects are visible.
//!
//! To wait, a caller registers on one shared *signal* promise and makes sure one *marker*
//! action is queued, both under a lock that only `wait_idle`'s slow path, the worker at the
//! end of a drain that ran the marker, and a failed spawn take. At most one marker is queued
//! at a time however many callers wait or time out. The marker only raises a flag on the
//! worker thread; at the end of that drain (after `busy = false`) the worker takes the signal
//! and sets it, and the waiters check again (and wait again if new work came in). A failed
//! spawn fails the signal instead, so a caller without a deadline is not left waiting for a
//! worker that cannot start.

use crate::action::Action;
use crate::promise::{drop_payload, panic_message, Setter};
use crate::sync::{
    self, fence, thread, Arc, AtomicBool, AtomicU8, Mutex, Ordering, SegQueue, Spin, UnparkerCell,
};
use crate::Promise;
use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// No worker thread exists.
const IDLE: u8 = 0;
/// A worker exists and is running actions, or about to look for them.
const RUNNING: u8 = 1;
/// A worker exists, found the queue empty, and parks until unparked or its keep-alive ends.
const PARKED: u8 = 2;

type PanicHandler = Box<dyn Fn(&(dyn Any + Send)) + Send + Sync>;

#[cfg(not(loom))]
std::thread_local! {
    /// The id of the queue whose worker is this thread (0: none).
    static CURRENT_QUEUE: Cell<usize> = const { Cell::new(0) };
    /// Raised by `wait_idle`'s marker action on the worker thread that runs it: the worker
    /// wakes the waiters at the end of the drain.
    static MARKER_RAN: Cell<bool> = const { Cell::new(false) };
}
#[cfg(loom)]
loom::thread_local! {
    static CURRENT_QUEUE: Cell<usize> = Cell::new(0);
    static MARKER_RAN: Cell<bool> = Cell::new(false);
}

/// The id of the queue whose worker thread is the calling thread, if any.
pub(crate) fn current_queue() -> Option<usize> {
    match CURRENT_QUEUE.with(Cell::get) {
        0 => None,
        id => Some(id),
    }
}

/// A process-wide source of queue ids (for the deadlock check of [`ActionQueue::submit`]).
/// Plain std atomic even under loom: it only hands out distinct numbers.
fn next_queue_id() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What the queue and its workers share.
struct Shared {
    actions: SegQueue<Action>,
    /// IDLE, RUNNING or PARKED; see the module docs.
    state: AtomicU8,
    /// Set when the last `ActionQueue` handle is dropped: the worker drains and retires
    /// without lingering.
    closed: AtomicBool,
    /// The worker incarnation that owns RUNNING/PARKED parks here; producers unpark it.
    parker: UnparkerCell,
    id: usize,
    name: String,
    stack_size: Option<usize>,
    keep_alive: Duration,
    panic_handler: Option<PanicHandler>,
    /// Whether the worker is draining the queue: written by the worker alone, `true` before
    /// its first pop of a drain and `false` once a pop found the queue empty (or by its exit
    /// guard). With `actions.is_empty()` it makes the idle check; see the module docs.
    busy: AtomicBool,
    /// What the `wait_idle` callers share.
    idle: Mutex<IdleWait>,
    /// Test hook: how many more times the worker is to panic outside an action.
    #[cfg(test)]
    worker_panics: std::sync::atomic::AtomicUsize,
}

/// What the [`ActionQueue::wait_idle`] callers share, under `Shared::idle`'s lock.
///
/// Why a registered caller is always woken: it registers on `signal` with `marker_queued`
/// set, and then (outside the lock) runs `ensure_worker`. The marker is in the queue, or
/// runs in the worker's current drain, until the worker clears `marker_queued` under the
/// lock at the end of that drain, taking the signal; so that lock comes after the caller's,
/// and its signal is the one set. The marker runs unless no worker can be spawned: then the
/// caller's own `ensure_worker` spawns and fails, or it read RUNNING from a spawner that has
/// not yet given the state back. A failing spawner writes IDLE and only then takes the
/// signal under the lock; had that lock come before the caller's, the IDLE store would
/// happen before the caller's swap, which could not then read the RUNNING before it. Either
/// way the failure path takes and fails the caller's signal. A worker that dies takes the
/// end-of-drain step in its exit guard.
#[derive(Default)]
struct IdleWait {
    /// The pending promise the current waiters wait on: set (`Ok`) at the end of the drain
    /// that ran the marker, failed (`Err`) when a spawn fails. Always pending while here: it
    /// is taken out before it is set, and the next caller makes a new one.
    signal: Option<Promise<(), ()>>,
    /// Whether the marker action is queued or runs in the current drain. At most one is.
    marker_queued: bool,
}

/// A serial background worker: [`put`](ActionQueue::put) returns at once, and the actions
/// run one at a time, in the order they were put, on a worker thread that the queue starts
/// when work arrives and retires after it has been idle for the keep-alive.
///
/// - A panicking action is caught and logged (`log::error!`, with the queue's name) and the
///   next action runs: a panic never wedges the queue.
/// - If the worker thread cannot be spawned, the actions stay queued, the failure is logged,
///   and the next `put` tries again.
/// - Dropping the queue lets the actions already queued run to completion, without blocking
///   the dropping thread; an action may drop the last handle to its own queue.
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
///     .keep_alive(Duration::ZERO) // the seed's behaviour: retire as soon as it is empty
///     .build();
/// queue.put(|| println!("written"));
/// ```
#[must_use = "a builder does nothing until .build()"]
pub struct Builder {
    name: String,
    stack_size: Option<usize>,
    keep_alive: Duration,
    panic_handler: Option<PanicHandler>,
}

/// Why a [`submit`](ActionQueue::submit)ted action produced no value: it panicked. Carries
/// the panic message when the panic payload was a string.
///
/// ```
/// use orderslip::{ActionQueue, PromiseError};
/// use std::time::Duration;
///
/// let queue = ActionQueue::new();
/// let p = queue.submit(|| -> u8 { panic!("sensor offline") });
/// match p.result(Duration::from_secs(5)) {
///     Err(PromiseError::Failed(e)) => assert_eq!(e.message(), Some("sensor offline")),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionPanicked {
    message: Option<String>,
}

impl ActionPanicked {
    fn from_payload(payload: &(dyn Any + Send)) -> Self {
        ActionPanicked {
            message: panic_message(payload).map(str::to_owned),
        }
    }

    /// The panic message, if the action panicked with a string.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
}

impl fmt::Display for ActionPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(message) => write!(f, "the action panicked: {message}"),
            None => f.write_str("the action panicked"),
        }
    }
}

impl std::error::Error for ActionPanicked {}

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
        }
    }

    /// Queues `action` to run after every action queued before it, and returns at once. It
    /// never takes a lock and never waits for the worker: it pushes the action, then starts
    /// a worker if there is none, or unparks the one that is idle.
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
                    drop_payload(payload);
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
    pub fn promise<T, E>(&self) -> Promise<T, E> {
        Promise::with_setter_kind(Setter::Queue(self.shared.id))
    }

    /// Whether a worker thread exists now (running actions, or idle within its keep-alive).
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
    pub fn is_running(&self) -> bool {
        // ORDERING: Acquire: a `false` lets the caller rely on the worker's last actions.
        self.shared.state.load(Ordering::Acquire) != IDLE
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
    /// - Other threads that keep putting work can keep the queue from ever being idle.
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
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        if current_queue() == Some(self.shared.id) {
            return false;
        }
        if self.shared.is_idle() {
            return true;
        }
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if sync::deadline_passed(deadline) {
                // A poll (or a deadline already passed): answer without queueing a marker.
                return false;
            }
            let signal = Shared::idle_signal(&self.shared);
            let remaining = match deadline {
                None => Duration::MAX,
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            };
            if signal.result(remaining).is_err() {
                // Timed out, or a spawn failed (the signal's error): answer as things stand.
                return self.shared.is_idle();
            }
            // The worker ended the drain that ran the marker: idle, unless new work came in.
            if self.shared.is_idle() {
                return true;
            }
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
    /// `std::thread::spawn`).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// How long an idle worker lingers before it retires (default
    /// [`ActionQueue::DEFAULT_KEEP_ALIVE`]). It spins for a few microseconds, then parks
    /// with a timeout, using no CPU. `Duration::ZERO` is the seed's behaviour: retire as soon
    /// as the queue is empty.
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Called on the worker thread with the payload of every action that panics, instead of
    /// the default `log::error!` report. A panic inside the handler is caught and logged.
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

    /// Builds the queue. No thread starts until the first action arrives.
    pub fn build(self) -> ActionQueue {
        ActionQueue {
            shared: Arc::new(Shared {
                actions: SegQueue::new(),
                state: AtomicU8::new(IDLE),
                closed: AtomicBool::new(false),
                parker: UnparkerCell::new(),
                id: next_queue_id(),
                name: self.name,
                stack_size: self.stack_size,
                keep_alive: self.keep_alive,
                panic_handler: self.panic_handler,
                busy: AtomicBool::new(false),
                idle: Mutex::new(IdleWait::default()),
                #[cfg(test)]
                worker_panics: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }
}

impl Shared {
    /// Makes sure a worker will see the actions pushed before this call: spawns one if there
    /// is none, unparks it if it is parked. Called by `put` after its push, by `wait_idle`
    /// (also without a push of its own, to retry a failed spawn), by the queue's drop after a
    /// failed spawn, and by a dead worker's exit guard.
    fn ensure_worker(this: &Arc<Self>) {
        // ORDERING: AcqRel: Release carries our push to the worker's swap(PARKED) or its
        // retiring CAS (whichever reads this write or a later one); Acquire orders our
        // unpark or spawn after the worker's announcement. See the module docs.
        match this.state.swap(RUNNING, Ordering::AcqRel) {
            RUNNING => {}
            PARKED => this.parker.unpark(),
            _idle => Shared::spawn_worker(this),
        }
    }

    /// Starts a worker. The caller won the state from IDLE, so no other worker exists.
    #[cold]
    fn spawn_worker(this: &Arc<Self>) {
        // `thread::Builder::spawn` may panic as well as fail (it panics on a thread name it
        // cannot take): a panic counts as a failure, so the state is never left claimed with
        // no worker behind it and the panic never reaches `put`.
        let error = match panic::catch_unwind(AssertUnwindSafe(|| Shared::try_spawn(this))) {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error.to_string(),
            Err(payload) => {
                let error = format!(
                    "spawning it panicked: {}",
                    panic_message(&*payload).unwrap_or("(non-string panic payload)")
                );
                contain(move || drop_payload(payload));
                error
            }
        };
        // No worker: give the state back so that the next `put` tries again. Only
        // producers write RUNNING while no worker exists, so IDLE is right to restore.
        // ORDERING: Release, so the next producer's Acquire swap sees a consistent queue.
        this.state.store(IDLE, Ordering::Release);
        // Then (the order matters, see `IdleWait`) tell the `wait_idle` callers that the
        // queued actions cannot run for now.
        this.fail_idle_waiters();
        log_error(format_args!(
            "orderslip: queue '{}' could not start its worker thread ({error}); its actions \
             stay queued and the next put will try again",
            this.name
        ));
    }

    /// Spawns the worker thread.
    fn try_spawn(this: &Arc<Self>) -> std::io::Result<()> {
        let shared = Arc::clone(this);
        let mut builder = thread::Builder::new().name(this.name.clone());
        if let Some(bytes) = this.stack_size {
            builder = builder.stack_size(bytes);
        }
        #[cfg(test)]
        match tests::spawn_fault() {
            Some(tests::SpawnFault::Fail) => {
                return Err(std::io::Error::other("spawn failure injected by a test"))
            }
            Some(tests::SpawnFault::Panic) => panic!("spawn panic injected by a test"),
            None => {}
        }
        builder.spawn(move || Shared::work(shared)).map(drop)
    }

    /// The worker thread's body.
    fn work(this: Arc<Self>) {
        CURRENT_QUEUE.with(|id| id.set(this.id));
        // Hands the state back if this thread unwinds; disarmed by a normal retirement.
        let exit = WorkerExit {
            shared: this,
            retired: Cell::new(false),
        };
        let this = &exit.shared;
        // SAFETY: this incarnation owns the parker: it was spawned by the producer that moved
        // the state from IDLE (a `put`, a `wait_idle`, the queue's drop or a dead worker's
        // exit guard), and the previous incarnation stopped using the parker before its
        // retiring CAS or its exit guard's swap(IDLE) (which that producer read).
        let parker = unsafe { this.parker.parker() };
        'work: loop {
            // A drain, unless there is nothing to drain: a worker woken with nothing queued
            // (by a `put` whose action an earlier drain took) must not look busy to
            // `wait_idle`, not even for a moment.
            if !this.actions.is_empty() {
                // ORDERING: Relaxed: the pops below advance the queue's head with release
                // writes (SegQueue: a SeqCst CAS, or a Release store when it moves to the next
                // block; the loom stand-in: a mutex), sequenced after this store, and
                // `is_empty` reads the head with SeqCst. So an idle check whose `is_empty`
                // sees the queue emptied by one of them reads `true` here (or the `false`
                // written after the drain).
                this.busy.store(true, Ordering::Relaxed);
                while let Some(action) = this.actions.pop() {
                    this.run(action);
                    #[cfg(test)]
                    tests::worker_fault(this);
                }
                // The drain is over: no action runs and a pop found the queue empty.
                // ORDERING: Release: an idle check that reads this `false` (Acquire) sees
                // every effect of the actions of the drain.
                this.busy.store(false, Ordering::Release);
                if MARKER_RAN.with(|ran| ran.replace(false)) {
                    this.wake_idle_waiters();
                }
            }
            // ORDERING: Acquire pairs with the Release store in `Drop for ActionQueue`.
            let closed = this.closed.load(Ordering::Acquire);
            if !closed && !this.keep_alive.is_zero() {
                let spin = Spin::new();
                while !spin.is_completed() {
                    if !this.actions.is_empty() {
                        continue 'work;
                    }
                    spin.snooze();
                }
            }
            // Announce that we are about to park. ORDERING: AcqRel: Acquire reads the
            // Release swap of every `put` that came before, so the re-check below sees its
            // push; Release pairs with a later `put`'s Acquire swap.
            this.state.swap(PARKED, Ordering::AcqRel);
            // Pairs with the fence in `Drop for ActionQueue`: either it sees PARKED and
            // unparks us, or we see `closed` here and do not linger.
            fence(Ordering::SeqCst);
            if !this.actions.is_empty() {
                // Take the work back. Whether a `put` saw PARKED (and will unpark us: a
                // spare token that only makes a later park return early) or not, we own
                // RUNNING again. ORDERING: Release pairs with the next put's swap.
                this.state.swap(RUNNING, Ordering::AcqRel);
                continue;
            }
            // ORDERING: Relaxed: the SeqCst fence above orders it against the dropper.
            let keep_alive = if this.closed.load(Ordering::Relaxed) {
                Duration::ZERO
            } else {
                this.keep_alive
            };
            let deadline = Instant::now().checked_add(keep_alive);
            loop {
                // ORDERING: Acquire pairs with the put's Release swap: its push is visible.
                if this.state.load(Ordering::Acquire) == RUNNING {
                    continue 'work;
                }
                let timed_out = match deadline {
                    Some(deadline) => keep_alive.is_zero() || sync::park_on(parker, deadline),
                    None => {
                        parker.park();
                        false
                    }
                };
                // ORDERING: Relaxed: only shortens the linger; the retiring CAS decides.
                if timed_out || this.closed.load(Ordering::Relaxed) {
                    // Retire, unless a `put` wrote RUNNING since our announcement.
                    // ORDERING: AcqRel: Release hands the parker and the queue's state to
                    // the next incarnation's spawner; Acquire on failure reads the put's
                    // push before we run it.
                    match this.state.compare_exchange(
                        PARKED,
                        IDLE,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => break 'work,
                        Err(_) => continue 'work,
                    }
                }
            }
        }
        exit.retired.set(true);
    }

    /// Runs one action, catching and reporting its panic so the worker goes on.
    fn run(&self, action: Action) {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| action.run())) {
            self.report_panic(&*payload);
            // `drop_payload` contains a panic of the payload's `Drop`, but then logs it, and
            // the logger may panic too.
            contain(move || drop_payload(payload));
        }
    }

    fn report_panic(&self, payload: &(dyn Any + Send)) {
        match &self.panic_handler {
            Some(handler) => {
                if !contain(|| handler(payload)) {
                    log_error(format_args!(
                        "orderslip: the panic handler of queue '{}' panicked",
                        self.name
                    ));
                }
            }
            None => log_error(format_args!(
                "orderslip: an action on queue '{}' panicked: {}",
                self.name,
                panic_message(payload).unwrap_or("(non-string panic payload)")
            )),
        }
    }

    /// Whether the queue is empty and no action runs. The order of the two reads matters;
    /// see the module docs.
    fn is_idle(&self) -> bool {
        // ORDERING: Acquire pairs with the worker's Release store of `false` after a drain;
        // `true` needs no more than the queue's own synchronisation (see `work`).
        self.actions.is_empty() && !self.busy.load(Ordering::Acquire)
    }

    /// Registers a `wait_idle` caller: returns the shared signal, once the marker is queued
    /// and a worker exists to run it (or a failed spawn has failed the signal). See
    /// `IdleWait` for why the caller is always woken.
    #[cold]
    fn idle_signal(this: &Arc<Self>) -> Promise<(), ()> {
        let (signal, queue_marker) = {
            let mut idle = sync::lock(&this.idle);
            let signal = idle
                .signal
                .get_or_insert_with(|| Promise::with_setter_kind(Setter::Nobody))
                .clone();
            (signal, !mem::replace(&mut idle.marker_queued, true))
        };
        if queue_marker {
            this.actions
                .push(Action::new(|| MARKER_RAN.with(|ran| ran.set(true))));
            Shared::ensure_worker(this);
            return signal;
        }
        // An earlier caller queued the marker. If no worker is there to run it, its spawn
        // failed (or a `put` is between its push and its swap): try again, and if that fails
        // too, the failure path fails our signal. Had we read a spawner's RUNNING instead,
        // that spawner succeeds (a worker runs the marker) or fails after our registration
        // (see `IdleWait`) and fails our signal.
        // ORDERING: Acquire: a failing spawner writes IDLE before it takes the signal under
        // the lock; if that lock came before ours, we read its IDLE (or a later write).
        if this.state.load(Ordering::Acquire) == IDLE && !this.actions.is_empty() {
            Shared::ensure_worker(this);
        }
        signal
    }

    /// The end of a drain in which the marker ran: no marker is queued any more, and the
    /// waiters registered so far are woken to check again.
    #[cold]
    fn wake_idle_waiters(&self) {
        let signal = {
            let mut idle = sync::lock(&self.idle);
            idle.marker_queued = false;
            idle.signal.take()
        };
        if let Some(signal) = signal {
            let _ = signal.set_result(());
        }
    }

    /// A spawn failed: the queued actions (the marker among them) cannot run for now, so the
    /// waiters registered so far are told at once. The marker stays queued, and
    /// `marker_queued` set: it runs once a later spawn succeeds.
    #[cold]
    fn fail_idle_waiters(&self) {
        let signal = sync::lock(&self.idle).signal.take();
        if let Some(signal) = signal {
            let _ = signal.set_exception(());
        }
    }
}

/// The worker's exit path. A worker that retires (its retiring CAS wrote IDLE) disarms it; a
/// worker thread that unwinds instead (a panic outside the actions' `catch_unwind`, which the
/// worker avoids everywhere it knows of) still owns RUNNING or PARKED, and this gives the
/// state back, so that the queue is never left claiming a worker that is gone.
struct WorkerExit {
    shared: Arc<Shared>,
    retired: Cell<bool>,
}

impl Drop for WorkerExit {
    fn drop(&mut self) {
        // `try_with`: the thread is ending; its thread-locals may be going too.
        let _ = CURRENT_QUEUE.try_with(|id| id.set(0));
        if self.retired.get() {
            return;
        }
        let shared = &self.shared;
        // No action of ours runs any more. ORDERING: Release, as at the end of a drain.
        shared.busy.store(false, Ordering::Release);
        // Give the state back, as the retiring CAS would (we no longer use the parker), but
        // unconditionally: a `put` that wrote RUNNING since relied on us to find its action,
        // so we look at the queue again below. ORDERING: AcqRel, as the retiring CAS:
        // Release hands the parker and the queue to the next spawner; Acquire reads every
        // `put` whose swap came before ours, so the re-check below sees its push.
        shared.state.swap(IDLE, Ordering::AcqRel);
        // A marker ran in the drain that will not end: wake its waiters now.
        if MARKER_RAN
            .try_with(|ran| ran.replace(false))
            .unwrap_or(false)
        {
            shared.wake_idle_waiters();
        }
        if !shared.actions.is_empty() {
            // Actions are queued, and the `put`s whose swap came before ours will not start
            // a worker for them: start one (a `put` whose swap comes after ours reads IDLE
            // and starts one itself; only one of us reads IDLE).
            Shared::ensure_worker(shared);
        }
        log_error(format_args!(
            "orderslip: the worker of queue '{}' panicked outside an action; the state was \
             handed back and any queued actions go to a new worker",
            shared.name
        ));
    }
}

/// Runs foreign code that may panic (a logger, a panic handler, a destructor) and contains
/// the panic; returns whether `f` returned normally. The panic's payload is dropped under
/// `catch_unwind` too, and a payload whose `Drop` panics in turn is leaked (forgotten) rather
/// than let anything unwind further.
fn contain(f: impl FnOnce()) -> bool {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => true,
        Err(payload) => {
            if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                mem::forget(again);
            }
            false
        }
    }
}

/// `log::error!`, with a panic of the logger (foreign code) contained: there is nowhere left
/// to report that panic, so it is dropped.
#[cold]
fn log_error(message: fmt::Arguments<'_>) {
    contain(|| log::error!("{message}"));
}

impl Drop for Shared {
    /// Drops the actions that never ran (those of a queue whose worker could not be spawned:
    /// a worker drains the queue before it retires, and once the last handle is gone nobody
    /// can put more). Their captured state is foreign: if dropping one panics, the others are
    /// dropped anyway and the first panic is re-raised afterwards, as std's containers and
    /// `Drop for Inner` in `promise.rs` do. So is the panic handler's.
    fn drop(&mut self) {
        let mut first_panic = None;
        let mut keep = |result: std::thread::Result<()>| {
            if let Err(payload) = result {
                match first_panic {
                    None => first_panic = Some(payload),
                    Some(_) => {
                        contain(move || drop_payload(payload));
                    }
                }
            }
        };
        while let Some(action) = self.actions.pop() {
            keep(panic::catch_unwind(AssertUnwindSafe(move || drop(action))));
        }
        let handler = self.panic_handler.take();
        keep(panic::catch_unwind(AssertUnwindSafe(move || drop(handler))));
        if let Some(payload) = first_panic {
            // Not a concurrency primitive: std's, also under loom.
            if std::thread::panicking() {
                // Unwinding already (the last handle dropped during a panic): a second
                // panic would abort the process.
                contain(move || drop_payload(payload));
                log_error(format_args!(
                    "orderslip: dropping an unrun action of queue '{}' panicked",
                    self.name
                ));
            } else {
                panic::resume_unwind(payload);
            }
        }
    }
}

impl Drop for ActionQueue {
    fn drop(&mut self) {
        // The worker (which holds its own `Arc`) finishes the queued actions; tell it not to
        // linger afterwards. ORDERING: Release pairs with the worker's Acquire load.
        self.shared.closed.store(true, Ordering::Release);
        // Pairs with the worker's fence after its swap(PARKED): either we see PARKED here
        // and unpark it, or it sees `closed`.
        fence(Ordering::SeqCst);
        // ORDERING: Relaxed: ordered by the fence; a stale answer costs one spare unpark.
        match self.shared.state.load(Ordering::Relaxed) {
            PARKED => self.shared.parker.unpark(),
            IDLE if !self.shared.actions.is_empty() => {
                // A spawn failed earlier: try once more so the queued actions run.
                Shared::ensure_worker(&self.shared);
            }
            _ => {}
        }
    }
}

impl fmt::Debug for ActionQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.shared.state.load(Ordering::Relaxed) {
            IDLE => "idle",
            RUNNING => "running",
            _ => "parked",
        };
        f.debug_struct("ActionQueue")
            .field("name", &self.shared.name)
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
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;

    /// A fault injected into a spawn by a test.
    pub(crate) enum SpawnFault {
        /// `spawn` returns an error (as when the OS is out of threads).
        Fail,
        /// `spawn` panics (as `std::thread::Builder::spawn` does on a name it cannot take).
        Panic,
    }

    std::thread_local! {
        static FAIL_SPAWNS: Cell<usize> = const { Cell::new(0) };
        static PANIC_SPAWNS: Cell<usize> = const { Cell::new(0) };
    }

    /// Counts one injected fault down; whether there was one left.
    fn take_one(left: &Cell<usize>) -> bool {
        let n = left.get();
        left.set(n.saturating_sub(1));
        n > 0
    }

    /// The fault a test injected into the next spawn on this thread, if any.
    pub(crate) fn spawn_fault() -> Option<SpawnFault> {
        if FAIL_SPAWNS.with(take_one) {
            Some(SpawnFault::Fail)
        } else if PANIC_SPAWNS.with(take_one) {
            Some(SpawnFault::Panic)
        } else {
            None
        }
    }

    /// Called by the worker after each action, outside its `catch_unwind`: panics if a test
    /// asked this queue's worker to.
    pub(super) fn worker_fault(shared: &super::Shared) {
        use std::sync::atomic::Ordering;
        // ORDERING: Relaxed: only the worker reads and writes the counter after the test set
        // it, and the test set it before the `put` whose push the worker's pop acquired.
        let left = shared.worker_panics.load(Ordering::Relaxed);
        if left > 0 {
            // ORDERING: Relaxed, as above.
            shared.worker_panics.store(left - 1, Ordering::Relaxed);
            panic!("worker panic outside an action, injected by a test");
        }
    }

    #[cfg(not(loom))]
    mod std_only {
        use super::super::ActionQueue;
        use super::{FAIL_SPAWNS, PANIC_SPAWNS};
        use std::panic::{self, AssertUnwindSafe};
        use std::sync::atomic::Ordering;
        use std::sync::{mpsc, Arc};
        use std::thread;
        use std::time::{Duration, Instant};

        const DEADLINE: Duration = Duration::from_secs(30);

        /// Polls `cond` (yielding in between) until it holds or `DEADLINE` passes.
        fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
            let deadline = Instant::now() + DEADLINE;
            while Instant::now() < deadline {
                if cond() {
                    return true;
                }
                thread::yield_now();
            }
            cond()
        }

        #[test]
        fn a_failed_spawn_loses_no_action_and_the_next_put_retries() {
            let queue = ActionQueue::builder().keep_alive(Duration::ZERO).build();
            let (tx, rx) = mpsc::channel();
            let first = tx.clone();
            FAIL_SPAWNS.with(|n| n.set(1));
            queue.put(move || first.send(1).unwrap());
            assert!(!queue.is_running(), "no worker after a failed spawn");
            assert!(rx.try_recv().is_err(), "nothing ran");
            queue.put(move || tx.send(2).unwrap());
            assert_eq!(rx.recv_timeout(DEADLINE), Ok(1));
            assert_eq!(rx.recv_timeout(DEADLINE), Ok(2));
        }

        #[test]
        fn a_failed_spawn_is_retried_when_the_queue_is_dropped() {
            let queue = ActionQueue::new();
            let (tx, rx) = mpsc::channel();
            FAIL_SPAWNS.with(|n| n.set(1));
            queue.put(move || tx.send("ran").unwrap());
            drop(queue);
            assert_eq!(rx.recv_timeout(DEADLINE), Ok("ran"));
        }

        /// Regression (issue 10, defect 4): `thread::Builder::spawn` panics on a name it
        /// cannot take. The panic used to unwind out of `put` after the state had been claimed
        /// (RUNNING), skipping the restore to IDLE: `is_running()` said true for ever and
        /// nothing ran again. A spawn that panics is now handled like one that fails. Fails on
        /// ed2d89b (with the `Panic` fault of the hook added): `put` panics.
        #[test]
        fn a_spawn_that_panics_is_a_spawn_that_failed() {
            let queue = ActionQueue::builder().keep_alive(Duration::ZERO).build();
            let (tx, rx) = mpsc::channel();
            let first = tx.clone();
            PANIC_SPAWNS.with(|n| n.set(1));
            let put = panic::catch_unwind(AssertUnwindSafe(|| {
                queue.put(move || first.send(1).unwrap());
            }));
            assert!(put.is_ok(), "put panicked");
            assert!(!queue.is_running(), "the state went back to IDLE");
            assert!(rx.try_recv().is_err(), "nothing ran");
            // A waiter without a deadline whose own spawn attempt panics is told at once.
            PANIC_SPAWNS.with(|n| n.set(1));
            let waited = panic::catch_unwind(AssertUnwindSafe(|| queue.wait_idle(Duration::MAX)));
            assert_eq!(waited.ok(), Some(false), "wait_idle: no panic, not idle");
            assert!(!queue.is_running());
            // The next put starts a worker, which runs everything in order.
            queue.put(move || tx.send(2).unwrap());
            assert_eq!(rx.recv_timeout(DEADLINE), Ok(1));
            assert_eq!(rx.recv_timeout(DEADLINE), Ok(2));
            assert!(queue.wait_idle(DEADLINE));
            assert!(wait_until(|| !queue.is_running()), "and it retires");
        }

        /// Regression (issue 10, defect 5): a panic on the worker thread outside an action's
        /// `catch_unwind` used to end the thread with the state left RUNNING: the action
        /// queued behind never ran, and no later `put` started a worker. The worker's exit
        /// guard now hands the state back and, since an action is still queued, starts a new
        /// worker. Fails on ed2d89b (with the worker fault of the hook added): the second
        /// action never runs.
        #[test]
        fn a_worker_that_dies_outside_an_action_hands_its_state_back() {
            let queue = ActionQueue::builder().keep_alive(Duration::ZERO).build();
            // ORDERING: Relaxed: the `put`s below publish it to the worker.
            queue.shared.worker_panics.store(1, Ordering::Relaxed);
            let (release, gate) = mpsc::channel::<()>();
            let (tx, rx) = mpsc::channel();
            let t = tx.clone();
            queue.put(move || {
                gate.recv().unwrap();
                t.send(thread::current().id()).unwrap();
            });
            // Queued behind the first action, before the worker dies after running it.
            let t = tx.clone();
            queue.put(move || t.send(thread::current().id()).unwrap());
            release.send(()).unwrap();
            let first = rx.recv_timeout(DEADLINE).expect("the first action ran");
            let second = rx
                .recv_timeout(DEADLINE)
                .expect("the action queued behind it ran");
            assert_ne!(first, second, "a new worker took over");
            assert!(queue.wait_idle(DEADLINE));
            assert!(queue.wait_idle(Duration::ZERO));
            assert!(wait_until(|| !queue.is_running()), "the new worker retired");
            // And the next put starts one again.
            queue.put(move || tx.send(thread::current().id()).unwrap());
            assert!(rx.recv_timeout(DEADLINE).is_ok(), "a later put still runs");
        }

        /// The worker dies at the end of the drain in which a waiting `wait_idle`'s marker
        /// ran (the injected panic comes right after the marker): the exit guard wakes the
        /// waiter, as the end of that drain would have.
        #[test]
        fn a_worker_that_dies_after_the_marker_still_wakes_wait_idle() {
            let queue = ActionQueue::builder().keep_alive(Duration::ZERO).build();
            let shared = Arc::clone(&queue.shared);
            queue.put(move || {
                // Once the marker of the `wait_idle` below is queued, arm the fault: this
                // worker dies after this action, and the next one right after the marker.
                assert!(wait_until(|| !shared.actions.is_empty()));
                // ORDERING: Relaxed: only this worker and its successor (spawned by its exit
                // guard, which publishes it) read it.
                shared.worker_panics.store(2, Ordering::Relaxed);
            });
            assert!(queue.wait_idle(DEADLINE), "woken, and idle");
            assert!(queue.wait_idle(Duration::ZERO));
            // ORDERING: Relaxed: read after `wait_idle` acquired the workers' last writes.
            assert_eq!(
                queue.shared.worker_panics.load(Ordering::Relaxed),
                0,
                "both injected panics happened"
            );
        }
    }
}
