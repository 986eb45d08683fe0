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
//! workers, and a worker exits only through that CAS, so there is never zero workers while an
//! action waits (except after a failed spawn, which is logged and retried by the next `put`).
//!
//! This is the swap-on-both-sides protocol; a plain `store(false)` by the retiring worker
//! would need a `fence(SeqCst)` on both sides instead. A pending-work counter (folly's
//! serial executor) would cost a contended read-modify-write per action on the worker's side
//! too, and `wait_idle` does not need one.

use crate::action::Action;
use crate::promise::{drop_payload, panic_message, Setter};
use crate::sync::{
    self, fence, thread, Arc, AtomicBool, AtomicU8, Ordering, SegQueue, Spin, UnparkerCell,
};
use crate::Promise;
use std::any::Any;
use std::cell::Cell;
use std::fmt;
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
}
#[cfg(loom)]
loom::thread_local! {
    static CURRENT_QUEUE: Cell<usize> = Cell::new(0);
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
    /// If a worker thread cannot be spawned, the action stays queued, the error is logged,
    /// and the next `put` tries again.
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

    /// Waits up to `timeout` until the queue is idle: every action put before this call has
    /// run and the queue is empty. Returns whether it became idle in time. With a zero
    /// timeout it only checks, and queues nothing. Called from inside
    /// an action of this queue, it returns `false` at once (the queue cannot be idle while
    /// that action runs).
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
    /// ```
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        if current_queue() == Some(self.shared.id) {
            return false;
        }
        let deadline = Instant::now().checked_add(timeout);
        loop {
            // ORDERING: Acquire: a non-RUNNING state means the worker finished its last
            // action (it wrote PARKED/IDLE after it) and saw the queue empty.
            if self.shared.state.load(Ordering::Acquire) != RUNNING
                && self.shared.actions.is_empty()
            {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                // A poll (or a deadline already passed): answer without queueing a marker,
                // so a loop of polls does not grow the queue.
                return false;
            }
            // Queue a marker behind everything queued so far and wait for it to run.
            let marker: Promise<(), ()> = Promise::with_setter_kind(Setter::Nobody);
            let setter = marker.clone();
            self.put(move || {
                let _ = setter.set_result(());
            });
            let remaining = match deadline {
                None => Duration::MAX,
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            };
            if marker.result(remaining).is_err() {
                return false;
            }
            if self.shared.actions.is_empty() {
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
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
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
            }),
        }
    }
}

impl Shared {
    /// Makes sure a worker will see the action just pushed: spawns one if there is none,
    /// unparks it if it is parked.
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
        let shared = Arc::clone(this);
        let mut builder = thread::Builder::new().name(this.name.clone());
        if let Some(bytes) = this.stack_size {
            builder = builder.stack_size(bytes);
        }
        #[cfg(test)]
        let result = if tests::fail_spawn() {
            Err(std::io::Error::other("spawn failure injected by a test"))
        } else {
            builder.spawn(move || Shared::work(shared))
        };
        #[cfg(not(test))]
        let result = builder.spawn(move || Shared::work(shared));
        if let Err(error) = result {
            // No worker: give the state back so that the next `put` tries again. Only
            // producers write RUNNING while no worker exists, so IDLE is right to restore.
            // ORDERING: Release, so the next producer's Acquire swap sees a consistent queue.
            this.state.store(IDLE, Ordering::Release);
            log::error!(
                "orderslip: queue '{}' could not start its worker thread ({error}); \
                 its actions stay queued and the next put will try again",
                this.name
            );
        }
    }

    /// The worker thread's body.
    fn work(this: Arc<Self>) {
        CURRENT_QUEUE.with(|id| id.set(this.id));
        // SAFETY: this incarnation owns the parker: it was spawned by the `put` that moved
        // the state from IDLE, and the previous incarnation stopped using the parker before
        // its retiring CAS (which that `put` read).
        let parker = unsafe { this.parker.parker() };
        'work: loop {
            while let Some(action) = this.actions.pop() {
                this.run(action);
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
        CURRENT_QUEUE.with(|id| id.set(0));
    }

    /// Runs one action, catching and reporting its panic so the worker goes on.
    fn run(&self, action: Action) {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| action.run())) {
            self.report_panic(&*payload);
            drop_payload(payload);
        }
    }

    fn report_panic(&self, payload: &(dyn Any + Send)) {
        match &self.panic_handler {
            Some(handler) => {
                if panic::catch_unwind(AssertUnwindSafe(|| handler(payload))).is_err() {
                    log::error!(
                        "orderslip: the panic handler of queue '{}' panicked",
                        self.name
                    );
                }
            }
            None => log::error!(
                "orderslip: an action on queue '{}' panicked: {}",
                self.name,
                panic_message(payload).unwrap_or("(non-string panic payload)")
            ),
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

    std::thread_local! {
        static FAIL_SPAWNS: Cell<usize> = const { Cell::new(0) };
    }

    /// Whether the next spawn on this thread must fail (a test injects failures).
    pub(crate) fn fail_spawn() -> bool {
        FAIL_SPAWNS.with(|n| {
            let left = n.get();
            n.set(left.saturating_sub(1));
            left > 0
        })
    }

    #[cfg(not(loom))]
    #[test]
    fn a_failed_spawn_loses_no_action_and_the_next_put_retries() {
        use super::ActionQueue;
        use std::sync::mpsc;
        use std::time::Duration;

        let queue = ActionQueue::builder().keep_alive(Duration::ZERO).build();
        let (tx, rx) = mpsc::channel();
        let first = tx.clone();
        FAIL_SPAWNS.with(|n| n.set(1));
        queue.put(move || first.send(1).unwrap());
        assert!(!queue.is_running(), "no worker after a failed spawn");
        assert!(rx.try_recv().is_err(), "nothing ran");
        queue.put(move || tx.send(2).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(1));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(2));
    }

    #[cfg(not(loom))]
    #[test]
    fn a_failed_spawn_is_retried_when_the_queue_is_dropped() {
        use super::ActionQueue;
        use std::sync::mpsc;
        use std::time::Duration;

        let queue = ActionQueue::new();
        let (tx, rx) = mpsc::channel();
        FAIL_SPAWNS.with(|n| n.set(1));
        queue.put(move || tx.send("ran").unwrap());
        drop(queue);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok("ran"));
    }
}
