//! The [`WorkerPool`]: a bounded set of threads that run the batches of many pool-backed
//! queues (see [`super::batch`] for how a queue is scheduled and handed back).
//!
//! # How it works
//!
//! Scheduled queues wait in one lock-free FIFO, the *run queue* (a
//! `crossbeam_queue::SegQueue` of [`Task`]s). The pool has `max_threads` *slots*; each holds
//! the same IDLE/RUNNING/PARKED byte as a dedicated queue's worker (see [`super::worker`]),
//! here for one pool thread:
//!
//! ```text
//!            notify: CAS(IDLE → RUNNING) → spawn the slot's thread
//!   IDLE ──────────────────────────────────────────────────────> RUNNING ──┐ thread runs
//!    ^                                                            ^  │    │ batches from
//!    │ thread: keep-alive over (or pool closed),                  │  │    │ the run queue
//!    │ CAS(PARKED → IDLE) retires     notify: CAS(PARKED → RUNNING)│  │ run queue empty:
//!    │                                         → unpark           │  v swap(PARKED), fence,
//!    └─────────────────────────────────────────────────────────── PARKED    re-check
//! ```
//!
//! - `schedule` pushes the task, then *notifies*: a `fence(SeqCst)`, then it looks at the
//!   slots: it wakes one PARKED thread (`CAS(PARKED → RUNNING)` + unpark), or else starts a
//!   thread in one IDLE slot (`CAS(IDLE → RUNNING)` + spawn), or, if every slot is RUNNING,
//!   does nothing: a running thread takes the task when its batch ends. `put` takes no lock
//!   and waits for no thread on this path; only a spawn (at most `max_threads` times per
//!   keep-alive) makes a system call.
//! - A thread pops tasks and runs their batches until the run queue is empty, spins
//!   briefly, then `swap(PARKED)`, `fence(SeqCst)`, and re-checks the run queue; if it is
//!   still empty it parks until its keep-alive ends and retires with `CAS(PARKED → IDLE)`,
//!   which fails if a notifier claimed the slot meanwhile.
//!
//! **Why no task is stranded.** The notifier's push and the thread's `swap(PARKED)` are
//! each followed by a `fence(SeqCst)` and then a read of the other's location: in the
//! fences' single total order, either the notifier's fence comes first, and the thread's
//! re-check sees the push, or the thread's comes first, and the notifier reads PARKED (or a
//! later state: RUNNING if the thread took work back, IDLE if it retired) and wakes or
//! respawns it. A notifier that reads RUNNING for every slot has therefore a thread that will
//! re-check after its push. A thread leaves only through the retiring CAS, which fails once a
//! notifier has written RUNNING; so a slot never has two threads, and there are never more
//! than `max_threads`.
//!
//! **Parallelism.** Every notify that finds a PARKED or IDLE slot gets one more thread
//! running: when n ≤ `max_threads` queues have work, n threads run them at once, even if the
//! threads already running are blocked inside actions.
//!
//! **Closing.** The pool counts its *users*: the [`WorkerPool`] handles and the queues built
//! on it. When the last one goes, no queue exists, so no task is left; the pool is closed
//! and every parked thread is woken to retire at once instead of lingering (the same
//! store/fence/load pairing as a dedicated queue's drop).
//!
//! **A spawn that fails.** The slot goes back to IDLE and the failure is logged. If no pool
//! thread is alive at all, the pool is *stalled*: the scheduling queue's `wait_idle` callers
//! are told, and every later `put` on any of the pool's queues (a relaxed load per `put`)
//! retries the spawn, as a dedicated queue's next `put` does.

use super::batch::Task;
use super::worker::{AtomicWorkerState, WorkerState};
use crate::panics;
use crate::sync::{
    self, fence, thread, Arc, AtomicBool, AtomicUsize, Ordering, SegQueue, Spin, UnparkerCell,
};
use std::cell::Cell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

/// A bounded set of threads shared by many [`ActionQueue`](crate::ActionQueue)s: each queue
/// built with [`pool`](crate::Builder::pool) runs its actions on the pool's threads, still
/// strictly one at a time and in order, so ten thousand queues need not mean ten thousand
/// threads.
///
/// - Threads start on demand, one per queue with work up to
///   [`max_threads`](PoolBuilder::max_threads), and retire after being idle for the keep-alive; an idle
///   pool holds no thread.
/// - A queue runs at most a batch (128 actions or about a millisecond) before its thread
///   moves on to the next waiting queue, so a queue with endless work cannot starve the
///   others.
/// - `WorkerPool` is a cheap handle (`Clone`). Dropping every handle and every queue built
///   on the pool lets the queued actions run, and then the threads exit at once.
///
/// **Blocking inside an action** holds its pool thread. An action may wait for a promise of
/// a queue on another pool (or on a dedicated queue), or of a queue on this pool when
/// `max_threads` is larger than the number of actions that block at the same time; otherwise
/// every thread may be blocked waiting for work that has no thread left to run on. Waiting
/// on a promise of the *same* queue can never end, and fails at once with
/// [`PromiseError::Deadlock`](crate::PromiseError::Deadlock).
///
/// # Example
///
/// ```
/// use orderslip::{ActionQueue, WorkerPool};
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// let pool = WorkerPool::builder().max_threads(2).name("conn").build();
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let connections: Vec<ActionQueue> =
///     (0..100).map(|_| ActionQueue::builder().pool(&pool).build()).collect();
/// for (id, connection) in connections.iter().enumerate() {
///     for step in 0..3 {
///         let log = log.clone();
///         connection.put(move || log.lock().unwrap().push((id, step)));
///     }
/// }
/// for connection in connections {
///     assert!(connection.join(Duration::from_secs(5)));
/// }
/// let log = log.lock().unwrap();
/// assert_eq!(log.len(), 300);
/// for id in 0..100 { // each connection's steps ran in order
///     let steps: Vec<_> = log.iter().filter(|(i, _)| *i == id).map(|(_, s)| *s).collect();
///     assert_eq!(steps, [0, 1, 2]);
/// }
/// assert!(pool.peak_threads() <= 2);
/// ```
pub struct WorkerPool {
    inner: Arc<PoolInner>,
}

/// Configures a [`WorkerPool`]; made by [`WorkerPool::builder`].
///
/// ```
/// use orderslip::WorkerPool;
/// use std::time::Duration;
///
/// let pool = WorkerPool::builder()
///     .max_threads(4)
///     .keep_alive(Duration::from_secs(1))
///     .name("io")
///     .build();
/// assert_eq!(pool.max_threads(), 4);
/// ```
#[must_use = "a builder does nothing until .build()"]
pub struct PoolBuilder {
    max_threads: usize,
    keep_alive: Duration,
    name: String,
    stack_size: Option<usize>,
}

/// What the pool's handles, its queues and its threads share.
pub(crate) struct PoolInner {
    /// The scheduled queues, in the order they were scheduled.
    run_queue: SegQueue<Task>,
    /// One per thread the pool may run.
    slots: Box<[Slot]>,
    /// The `WorkerPool` handles plus the queues built on the pool; the last to go closes it.
    users: AtomicUsize,
    /// Set when `users` reaches 0: threads retire without lingering.
    closed: AtomicBool,
    /// Set when a spawn failed while no pool thread was alive: the next `put` retries.
    stalled: AtomicBool,
    /// Threads alive now, and the most that were alive at once.
    threads: AtomicUsize,
    peak: AtomicUsize,
    name: String,
    keep_alive: Duration,
    stack_size: Option<usize>,
}

/// One pool thread's place: its state (see the module docs) and its parker.
struct Slot {
    state: AtomicWorkerState,
    parker: UnparkerCell,
}

impl WorkerPool {
    /// The keep-alive of [`WorkerPool::new`]: how long an idle pool thread lingers (parked)
    /// before it retires. The same as [`ActionQueue::DEFAULT_KEEP_ALIVE`](crate::ActionQueue::DEFAULT_KEEP_ALIVE).
    pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_millis(100);

    /// A pool of up to [`std::thread::available_parallelism`] threads (1 if that is unknown)
    /// named `orderslip-pool-0`, `orderslip-pool-1`, …, with
    /// [`DEFAULT_KEEP_ALIVE`](WorkerPool::DEFAULT_KEEP_ALIVE).
    ///
    /// ```
    /// let pool = orderslip::WorkerPool::new();
    /// assert!(pool.max_threads() >= 1);
    /// assert_eq!(pool.threads(), 0); // no thread until there is work
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A [`PoolBuilder`] to set the pool's size, keep-alive, thread names and stack size.
    ///
    /// ```
    /// let pool = orderslip::WorkerPool::builder().max_threads(2).build();
    /// assert_eq!(pool.max_threads(), 2);
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            max_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            keep_alive: Self::DEFAULT_KEEP_ALIVE,
            name: "orderslip-pool".to_owned(),
            stack_size: None,
        }
    }

    /// The most threads the pool runs at once.
    ///
    /// ```
    /// assert_eq!(orderslip::WorkerPool::builder().max_threads(3).build().max_threads(), 3);
    /// ```
    #[must_use]
    pub fn max_threads(&self) -> usize {
        self.inner.slots.len()
    }

    /// How many pool threads are alive now (running batches, or parked within their
    /// keep-alive): never more than [`max_threads`](WorkerPool::max_threads), since a thread
    /// that retires is counted out as it gives its slot up, just before it exits. A snapshot.
    ///
    /// ```
    /// use orderslip::{ActionQueue, WorkerPool};
    /// use std::time::Duration;
    ///
    /// let pool = WorkerPool::builder().keep_alive(Duration::from_secs(60)).build();
    /// let queue = ActionQueue::builder().pool(&pool).build();
    /// assert!(queue.submit(|| ()).wait().is_ok());
    /// assert!(pool.threads() >= 1); // lingering
    /// ```
    #[must_use]
    pub fn threads(&self) -> usize {
        // ORDERING: Relaxed: a snapshot for display; it orders nothing.
        self.inner.threads.load(Ordering::Relaxed)
    }

    /// The most pool threads that were alive at once since the pool was built (counted as
    /// for [`threads`](WorkerPool::threads): at most
    /// [`max_threads`](WorkerPool::max_threads)).
    ///
    /// ```
    /// use orderslip::{ActionQueue, WorkerPool};
    ///
    /// let pool = WorkerPool::builder().max_threads(2).build();
    /// let queues: Vec<_> = (0..50).map(|_| ActionQueue::builder().pool(&pool).build()).collect();
    /// for queue in &queues {
    ///     queue.put(|| ());
    /// }
    /// assert!(pool.peak_threads() <= 2);
    /// ```
    #[must_use]
    pub fn peak_threads(&self) -> usize {
        // ORDERING: Relaxed: a snapshot for display; it orders nothing.
        self.inner.peak.load(Ordering::Relaxed)
    }

    /// The shared state, for a queue built on this pool (counted as a user).
    pub(super) fn user(&self) -> PoolRef {
        PoolRef::new(&self.inner)
    }
}

impl Default for WorkerPool {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for WorkerPool {
    /// Another handle to the same pool.
    fn clone(&self) -> Self {
        self.inner.add_user();
        WorkerPool {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.inner.remove_user();
    }
}

impl fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool")
            .field("name", &self.inner.name)
            .field("max_threads", &self.max_threads())
            .field("threads", &self.threads())
            .field("keep_alive", &self.inner.keep_alive)
            .finish_non_exhaustive()
    }
}

impl PoolBuilder {
    /// The most threads the pool runs at once (default: the machine's available
    /// parallelism). At least 1: `0` is taken as 1.
    ///
    /// ```
    /// let pool = orderslip::WorkerPool::builder().max_threads(8).build();
    /// assert_eq!(pool.max_threads(), 8);
    /// ```
    pub fn max_threads(mut self, n: usize) -> Self {
        self.max_threads = n.max(1);
        self
    }

    /// How long an idle pool thread lingers before it retires (default
    /// [`WorkerPool::DEFAULT_KEEP_ALIVE`]). `Duration::ZERO` retires a thread as soon as
    /// no queue has work.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = orderslip::WorkerPool::builder().keep_alive(Duration::ZERO).build();
    /// # drop(pool);
    /// ```
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// The prefix of the pool threads' names (default `orderslip-pool`): `name("io")` gives
    /// threads named `io-0`, `io-1`, … (one number per slot; a thread that retires and is
    /// started again gets its slot's name again).
    ///
    /// # Panics
    ///
    /// If `prefix` contains a NUL byte, which no thread name may contain.
    ///
    /// ```
    /// use orderslip::{ActionQueue, WorkerPool};
    ///
    /// let pool = WorkerPool::builder().max_threads(1).name("io").build();
    /// let queue = ActionQueue::builder().pool(&pool).build();
    /// let name = queue.submit(|| std::thread::current().name().map(str::to_owned));
    /// assert_eq!(name.wait().unwrap().as_deref(), Some("io-0"));
    /// ```
    #[track_caller]
    pub fn name(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        assert!(
            !prefix.contains('\0'),
            "WorkerPool thread name prefix {prefix:?} contains a NUL byte, which no thread name \
             may contain"
        );
        self.name = prefix;
        self
    }

    /// The pool threads' stack size in bytes (default: the platform's).
    ///
    /// ```
    /// let pool = orderslip::WorkerPool::builder().stack_size(256 * 1024).build();
    /// # drop(pool);
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Builds the pool. No thread starts until a queue on it has work.
    #[must_use]
    pub fn build(self) -> WorkerPool {
        let slots = (0..self.max_threads)
            .map(|_| Slot {
                state: AtomicWorkerState::new(WorkerState::Idle),
                parker: UnparkerCell::new(),
            })
            .collect();
        WorkerPool {
            inner: Arc::new(PoolInner {
                run_queue: SegQueue::new(),
                slots,
                users: AtomicUsize::new(1),
                closed: AtomicBool::new(false),
                stalled: AtomicBool::new(false),
                threads: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                name: self.name,
                keep_alive: self.keep_alive,
                stack_size: self.stack_size,
            }),
        }
    }
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("max_threads", &self.max_threads)
            .field("keep_alive", &self.keep_alive)
            .field("name", &self.name)
            .field("stack_size", &self.stack_size)
            .finish()
    }
}

/// A queue's reference to its pool: it counts as one of the pool's users while it lives.
pub(crate) struct PoolRef(Arc<PoolInner>);

impl PoolRef {
    fn new(inner: &Arc<PoolInner>) -> PoolRef {
        inner.add_user();
        PoolRef(Arc::clone(inner))
    }

    /// Queues `task` and makes sure a thread will run it. Returns `false` if no pool thread
    /// is alive and none could be started: the task stays queued for the next attempt.
    pub(super) fn schedule(&self, task: Task) -> bool {
        self.0.run_queue.push(task);
        PoolInner::notify(&self.0)
    }

    /// A `put` on a queue that is scheduled already: if the pool is stalled (no thread, and
    /// the last spawn failed), try again. Returns `false` if that failed too.
    #[inline]
    pub(super) fn retry_stalled(&self) -> bool {
        // ORDERING: Relaxed: a hint; `notify` itself is ordered by its fence.
        if self.0.stalled.load(Ordering::Relaxed) {
            return PoolInner::retry(&self.0);
        }
        true
    }
}

impl Clone for PoolRef {
    fn clone(&self) -> PoolRef {
        PoolRef::new(&self.0)
    }
}

impl Drop for PoolRef {
    fn drop(&mut self) {
        self.0.remove_user();
    }
}

impl PoolInner {
    fn add_user(&self) {
        // ORDERING: Relaxed, as for `Arc`: a new user is made from a live one.
        if self.users.fetch_add(1, Ordering::Relaxed) > isize::MAX as usize {
            std::process::abort();
        }
    }

    fn remove_user(&self) {
        // ORDERING: AcqRel: the last user's close comes after every other user's work.
        if self.users.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.close();
        }
    }

    /// No user is left (so no queue, and no task): wake every parked thread so that it
    /// retires at once.
    fn close(&self) {
        // ORDERING: Release pairs with the threads' Acquire loads.
        self.closed.store(true, Ordering::Release);
        // Pairs with each thread's fence after its swap(PARKED): either we read PARKED and
        // unpark it, or it reads `closed` and does not linger.
        fence(Ordering::SeqCst);
        for slot in self.slots.iter() {
            // ORDERING: Relaxed: ordered by the fence; a stale answer costs a spare unpark.
            if slot.state.load(Ordering::Relaxed) == WorkerState::Parked {
                slot.parker.unpark();
            }
        }
    }

    /// Retries after a failed spawn; whether a thread is (now) there to run the tasks.
    #[cold]
    fn retry(this: &Arc<Self>) -> bool {
        // ORDERING: AcqRel: one retrier at a time takes the flag; `notify` sets it again if
        // it fails too.
        if this.stalled.swap(false, Ordering::AcqRel) {
            PoolInner::notify(this)
        } else {
            true
        }
    }

    /// After a push onto the run queue: wakes a parked thread or starts one in an empty
    /// slot, unless every slot's thread is running (then one of them takes the task). Returns
    /// `false` if no thread is alive and none could be started.
    fn notify(this: &Arc<Self>) -> bool {
        // Pairs with the fence a thread issues after its swap(PARKED) before it re-checks
        // the run queue (see the module docs).
        fence(Ordering::SeqCst);
        loop {
            let mut changed = false;
            // First a parked thread: cheaper than a new one.
            for slot in this.slots.iter() {
                // ORDERING: Relaxed: ordered by the fence above.
                if slot.state.load(Ordering::Relaxed) == WorkerState::Parked {
                    // ORDERING: AcqRel: Release hands our push to the thread, which reads
                    // RUNNING with Acquire; Acquire orders our unpark after its announcement.
                    match slot.state.compare_exchange(
                        WorkerState::Parked,
                        WorkerState::Running,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            slot.parker.unpark();
                            return true;
                        }
                        Err(_) => changed = true,
                    }
                }
            }
            for (index, slot) in this.slots.iter().enumerate() {
                // ORDERING: Relaxed: ordered by the fence above.
                if slot.state.load(Ordering::Relaxed) == WorkerState::Idle {
                    // ORDERING: AcqRel: Acquire takes over the slot (and its parker) from
                    // the incarnation whose retiring CAS wrote IDLE; Release, as above.
                    match slot.state.compare_exchange(
                        WorkerState::Idle,
                        WorkerState::Running,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return PoolInner::spawn(this, index),
                        Err(_) => changed = true,
                    }
                }
            }
            if !changed {
                // Every slot's thread runs, and re-checks the run queue before it parks.
                return true;
            }
        }
    }

    /// Counts a thread in: one that is spawned, or one that was retiring and whose slot a
    /// notifier claimed back. Each slot's increments and decrements of `threads` alternate,
    /// ordered by the slot's state (a thread counts itself out before its retiring CAS, which
    /// the next spawner's CAS reads), so `threads`, and with it the peak, never passes
    /// `max_threads`.
    fn count_in(&self) {
        // ORDERING: Relaxed: a count for display; the slot's state orders each slot's
        // increments and decrements (above), and coherence keeps that order in the count's.
        let alive = self.threads.fetch_add(1, Ordering::Relaxed) + 1;
        // ORDERING: Relaxed: a statistic.
        self.peak.fetch_max(alive, Ordering::Relaxed);
    }

    /// Starts the thread of slot `index`, whose state we moved from IDLE. Returns `false` if
    /// that failed while no other pool thread is alive.
    #[cold]
    fn spawn(this: &Arc<Self>, index: usize) -> bool {
        this.count_in();
        let error =
            match panic::catch_unwind(AssertUnwindSafe(|| PoolInner::try_spawn(this, index))) {
                Ok(Ok(())) => return true,
                Ok(Err(error)) => error.to_string(),
                Err(payload) => {
                    let error = format!(
                        "spawning it panicked: {}",
                        panics::panic_message(&*payload).unwrap_or("(non-string panic payload)")
                    );
                    panics::contain_silently(move || panics::drop_payload(payload));
                    error
                }
            };
        // ORDERING: Relaxed: see `count_in` (before the store of IDLE below).
        this.threads.fetch_sub(1, Ordering::Relaxed);
        // No thread: give the slot back. ORDERING: SeqCst (a Release store, and in one total
        // order with the loads below and with other failing spawners' stores and loads), so
        // that of two spawners failing at once, the later one sees both slots IDLE.
        this.slots[index]
            .state
            .store(WorkerState::Idle, Ordering::SeqCst);
        // Stalled if no slot has a thread (or a spawner) any more. A thread that retires
        // after this read re-checked the run queue after our push (or was woken by our
        // notify instead), so it does not leave our task behind.
        let stalled = this
            .slots
            .iter()
            // ORDERING: SeqCst: see the store above.
            .all(|slot| slot.state.load(Ordering::SeqCst) == WorkerState::Idle);
        if stalled {
            // ORDERING: SeqCst: after the slots' IDLE, before the `put`s that read it.
            this.stalled.store(true, Ordering::SeqCst);
        }
        panics::report(format_args!(
            "orderslip: pool '{}' could not start a thread ({error}); the queued work waits \
             for a running pool thread or the next put",
            this.name
        ));
        !stalled
    }

    fn try_spawn(this: &Arc<Self>, index: usize) -> std::io::Result<()> {
        let pool = Arc::clone(this);
        let mut builder = thread::Builder::new().name(format!("{}-{index}", this.name));
        if let Some(bytes) = this.stack_size {
            builder = builder.stack_size(bytes);
        }
        sync::spawn_worker(builder, move || PoolInner::work(pool, index))
    }

    /// A pool thread's body: slot `index`'s incarnation.
    fn work(this: Arc<Self>, index: usize) {
        let exit = ThreadExit {
            pool: this,
            index,
            retired: Cell::new(false),
        };
        let this = &exit.pool;
        let slot = &this.slots[index];
        'work: loop {
            while let Some(task) = this.run_queue.pop() {
                let mut task = task;
                // Run the queue's batches; after each, move on if another queue waits.
                while let Some(again) = task.run_here() {
                    if this.run_queue.is_empty() {
                        task = again;
                    } else {
                        this.run_queue.push(again);
                        break;
                    }
                }
            }
            // ORDERING: Acquire pairs with the Release store in `close`.
            let closed = this.closed.load(Ordering::Acquire);
            if !closed && !this.keep_alive.is_zero() {
                let spin = Spin::new();
                while !spin.is_completed() {
                    if !this.run_queue.is_empty() {
                        continue 'work;
                    }
                    spin.snooze();
                }
            }
            // Announce that we are about to park. ORDERING: AcqRel: Acquire reads the CAS of
            // a notifier that came before; Release pairs with a later notifier's CAS.
            slot.state.swap(WorkerState::Parked, Ordering::AcqRel);
            // Pairs with the fence in `notify` (and in `close`): either the notifier reads
            // PARKED and wakes us, or we see its push here.
            fence(Ordering::SeqCst);
            if !this.run_queue.is_empty() {
                // Take the slot back (a notifier that read PARKED and claimed it leaves a
                // spare token: a later park returns early and re-checks). ORDERING: AcqRel,
                // as the swap above.
                slot.state.swap(WorkerState::Running, Ordering::AcqRel);
                continue;
            }
            // ORDERING: Relaxed: the SeqCst fence above orders it against `close`.
            let keep_alive = if this.closed.load(Ordering::Relaxed) {
                Duration::ZERO
            } else {
                this.keep_alive
            };
            let deadline = sync::now().checked_add(keep_alive);
            loop {
                // ORDERING: Acquire pairs with the notifier's Release CAS: its push is
                // visible.
                if slot.state.load(Ordering::Acquire) == WorkerState::Running {
                    continue 'work;
                }
                // SAFETY: this incarnation owns the slot's parker: it was spawned by the
                // notifier that moved the slot from IDLE, after the previous incarnation's
                // retiring CAS (or exit guard's swap), which that notifier's CAS read; we
                // stop parking before our own retiring CAS, and our exit guard runs after.
                let timed_out = keep_alive.is_zero() || unsafe { slot.parker.park(deadline) };
                // ORDERING: Relaxed: only shortens the linger; the retiring CAS decides.
                if timed_out || this.closed.load(Ordering::Relaxed) {
                    // Count ourselves out before the slot can go to a new incarnation, which
                    // counts itself in (see `count_in`). ORDERING: Relaxed: see `count_in`.
                    this.threads.fetch_sub(1, Ordering::Relaxed);
                    // ORDERING: AcqRel: Release hands the parker (and our decrement) to the
                    // next incarnation's spawner; Acquire on failure reads the notifier's push.
                    match slot.state.compare_exchange(
                        WorkerState::Parked,
                        WorkerState::Idle,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => break 'work,
                        Err(_) => {
                            // A notifier claimed the slot back: we keep it.
                            this.count_in();
                            continue 'work;
                        }
                    }
                }
            }
        }
        exit.retired.set(true);
    }
}

/// A pool thread's exit path: if the thread unwinds instead of retiring (a retiring thread
/// counted itself out already), counts it out, gives its slot back and makes sure the run
/// queue still has a thread.
struct ThreadExit {
    pool: Arc<PoolInner>,
    index: usize,
    retired: Cell<bool>,
}

impl Drop for ThreadExit {
    fn drop(&mut self) {
        if self.retired.get() {
            return;
        }
        let pool = &self.pool;
        // ORDERING: Relaxed: a count (see `count_in`); before the swap below, as before a
        // retiring CAS.
        pool.threads.fetch_sub(1, Ordering::Relaxed);
        // ORDERING: AcqRel, as the retiring CAS (see `work`).
        pool.slots[self.index]
            .state
            .swap(WorkerState::Idle, Ordering::AcqRel);
        // Tasks may be queued that a notifier left to us: get another thread for them.
        if !pool.run_queue.is_empty() {
            PoolInner::notify(pool);
        }
        panics::report(format_args!(
            "orderslip: a thread of pool '{}' panicked outside an action; its slot was handed \
             back",
            pool.name
        ));
    }
}
