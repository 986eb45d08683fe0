//! The [`WorkerPool`]: a bounded set of threads that run the batches of many pool-backed
//! queues (see [`super::batch`] for how a queue is scheduled and handed back).
//!
//! # How it works
//!
//! Scheduled queues wait in one lock-free FIFO, the *run queue* (a
//! `crossbeam_queue::SegQueue` of [`Task`]s). The pool has `max_threads` *slots*; each holds
//! the same IDLE/RUNNING/PARKED byte as a dedicated queue's worker (see [`super::worker`]),
//! here for one pool thread, plus a fourth state, SPINNING, for a thread that looks for work
//! before it parks:
//!
//! ```text
//!            notify: CAS(IDLE → RUNNING) → spawn the slot's thread
//!   IDLE ──────────────────────────────────────────────────────> RUNNING ──┐ thread runs
//!    ^                                     notify: CAS(SPINNING   ^  ^ │    │ batches from
//!    │ thread: keep-alive over (or pool    → RUNNING), no syscall; │  │ │    │ the run queue
//!    │ closed), CAS(PARKED → IDLE) retires thread: found work     │  │ │ run queue empty:
//!    │                                               SPINNING ────┘  │ │ swap(SPINNING)
//!    │                                    spin over: swap(PARKED),│  │ v
//!    │                                    fence, re-check         v  │ SPINNING
//!    └──────────────────────────────────────────────────────── PARKED
//!                                          notify: CAS(PARKED → RUNNING) → unpark
//! ```
//!
//! - `schedule` pushes the task, then *notifies*: a `fence(SeqCst)`, then it looks at the
//!   slots: it claims one SPINNING thread (`CAS(SPINNING → RUNNING)`: no system call; the
//!   thread sees the push while it spins, or its `swap(PARKED)` reads the claim), or else wakes
//!   one PARKED thread (`CAS(PARKED → RUNNING)` + unpark), or else starts a thread in one IDLE
//!   slot (`CAS(IDLE → RUNNING)` + spawn), or, if every slot is RUNNING, does nothing: a
//!   running thread takes the task when its batch ends. So a queue whose one thread has just
//!   finished a batch (and spins) gets that thread back, not a second one. `put` takes no lock
//!   and waits for no thread on this path; only waking a parked thread (a futex wake) and a
//!   spawn (when the pool grows, or after a retirement: with a zero keep-alive, whenever the
//!   pool goes from idle to busy) make a system call.
//! - A thread pops tasks and runs their batches until the run queue is empty, spins briefly as
//!   SPINNING, then `swap(PARKED)`, `fence(SeqCst)`, and re-checks the run queue; if it is
//!   still empty it parks until its keep-alive ends and retires with `CAS(PARKED → IDLE)`,
//!   which fails if a notifier claimed the slot meanwhile.
//!
//! **Why no task is stranded.** The notifier's push and the thread's `swap(PARKED)` are each
//! followed by a `fence(SeqCst)` and then a read of the other's location: in the fences' single
//! total order, either the notifier's fence comes first, and the thread's re-check sees the
//! push, or the thread's comes first, and the notifier reads PARKED (or a later state: RUNNING
//! if the thread took work back, IDLE if it retired) and wakes or respawns it. A notifier that
//! claims a SPINNING thread writes RUNNING before the thread's `swap(PARKED)`, which then reads
//! it (the chain of read-modify-writes on the slot), so the push is visible to the thread's
//! re-check. A notifier that reads RUNNING for every slot has therefore a thread that will
//! re-check after its push. A thread leaves only through the retiring CAS, which fails once a
//! notifier has written RUNNING; so a slot never has two threads, and there are never more than
//! `max_threads`.
//!
//! **Parallelism.** Every notify that finds a SPINNING, PARKED or IDLE slot gets one more
//! thread running: when n ≤ `max_threads` queues have work, n threads run them at once, even if
//! the threads already running are blocked inside actions.
//!
//! **Closing.** The pool counts its *users*: the [`WorkerPool`] handles and the queues built
//! on it. When the last one goes, no queue exists, so no task is left; the pool is closed
//! and every parked thread is woken to retire at once instead of lingering (the same
//! store/fence/load pairing as a dedicated queue's drop).
//!
//! **A spawn that fails.** The slot goes back to IDLE and the failure is logged. If no pool
//! thread is alive at all, nobody would pop the run queue: the failing spawner pops every
//! task and unschedules its queue (the queue's actions stay queued, its state goes back to
//! IDLE, its `wait_idle` callers are told), so that the next `put` on each queue schedules it
//! again and retries the spawn, as a dedicated queue's next `put` does, and no `Task` is left
//! holding a queue (and through it the pool) where nobody takes it.

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
///   [`max_threads`](PoolBuilder::max_threads), and retire after being idle for the keep-alive;
///   an idle pool holds no thread.
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
    /// Threads alive now, and the most that were alive at once.
    threads: AtomicUsize,
    peak: AtomicUsize,
    name: String,
    keep_alive: Duration,
    stack_size: Option<usize>,
}

/// One pool thread's place: its state (see the module docs) and its parker. `threads`
/// counts a thread from its spawn until just before its retiring CAS (and again if that
/// CAS fails), so it never exceeds the slots that are not IDLE, nor `max_threads`.
struct Slot {
    state: AtomicWorkerState,
    parker: UnparkerCell,
}

impl WorkerPool {
    /// The keep-alive of [`WorkerPool::new`]: how long an idle pool thread lingers (parked)
    /// before it retires. The same as
    /// [`ActionQueue::DEFAULT_KEEP_ALIVE`](crate::ActionQueue::DEFAULT_KEEP_ALIVE).
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
    /// keep-alive); a thread that retires is counted out as it gives its slot up, so this
    /// never exceeds [`max_threads`](WorkerPool::max_threads). A snapshot.
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

    /// Queues `task` and makes sure a thread will run it. If no pool thread is alive and
    /// none could be started, every queued task (this one among them) is unscheduled (see
    /// `spawn`), so that the next `put` on each queue tries again.
    pub(super) fn schedule(&self, task: Task) {
        self.0.run_queue.push(task);
        PoolInner::notify(&self.0);
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

    /// After a push onto the run queue: claims a spinning thread, wakes a parked one or
    /// starts one in an empty slot, unless every slot's thread is running (then one of them
    /// takes the task). If the start fails with no thread alive, `spawn` unschedules the
    /// queued tasks.
    fn notify(this: &Arc<Self>) {
        // Pairs with the fence a thread issues after its swap(PARKED) before it re-checks
        // the run queue (see the module docs).
        fence(Ordering::SeqCst);
        loop {
            let mut changed = false;
            // First a spinning thread: it is looking for work already, and a claim costs no
            // system call. It sees our push: it re-checks the run queue while it spins, and
            // its swap(PARKED) after the spin reads our claim.
            for slot in this.slots.iter() {
                // ORDERING: Relaxed: ordered by the fence above.
                if slot.state.load(Ordering::Relaxed) == WorkerState::Spinning {
                    // ORDERING: AcqRel: Release hands our push to the thread's swap that
                    // reads this write; Acquire, as every write of the slot.
                    match slot.state.compare_exchange(
                        WorkerState::Spinning,
                        WorkerState::Running,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return,
                        Err(_) => changed = true,
                    }
                }
            }
            // Then a parked thread: cheaper than a new one.
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
                            return;
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
                return;
            }
        }
    }

    /// Counts a thread in: one more alive (or about to be), and the peak.
    fn count_in(&self) {
        // ORDERING: Relaxed: a count for display; it orders nothing. A thread is counted in
        // only while it holds its slot (it is counted out before it frees the slot), and the
        // slot's hand-over orders the counts of successive threads, so the count never
        // exceeds the slots.
        let alive = self.threads.fetch_add(1, Ordering::Relaxed) + 1;
        // ORDERING: Relaxed: a statistic.
        self.peak.fetch_max(alive, Ordering::Relaxed);
    }

    /// Starts the thread of slot `index`, whose state we moved from IDLE. If that fails while
    /// no other pool thread is alive, unschedules the queued tasks (see the module docs).
    #[cold]
    fn spawn(this: &Arc<Self>, index: usize) {
        this.count_in();
        let error =
            match panic::catch_unwind(AssertUnwindSafe(|| PoolInner::try_spawn(this, index))) {
                Ok(Ok(())) => return,
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
        panics::report(format_args!(
            "orderslip: pool '{}' could not start a thread ({error}); {}",
            this.name,
            if stalled {
                "no pool thread is alive, so the queued work waits for the next put on each queue"
            } else {
                "the queued work waits for a running pool thread"
            }
        ));
        if stalled {
            // No thread will pop the run queue: unschedule every queued task, so that no
            // `Task` (which holds its queue, which holds the pool) is left where nobody
            // takes it, and each queue's next `put` (or its last handle's drop) tries again.
            // Pairs with the fence in `notify`: a notifier whose push we do not see here read
            // our slot's IDLE after its push, and tries a spawn itself.
            fence(Ordering::SeqCst);
            while let Some(task) = this.run_queue.pop() {
                // Another notifier may have started a thread since our scan (review of issue
                // 14): then that thread, not nobody, pops the run queue. Put the task back,
                // make sure a thread will see it, and leave the rest to it.
                // ORDERING: SeqCst, as the scan above.
                if this
                    .slots
                    .iter()
                    .any(|slot| slot.state.load(Ordering::SeqCst) != WorkerState::Idle)
                {
                    this.run_queue.push(task);
                    PoolInner::notify(this);
                    break;
                }
                task.unschedule();
            }
        }
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
            while let Some(mut task) = this.run_queue.pop() {
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
                // Look for work a little before parking, as SPINNING: a notifier claims us
                // (CAS to RUNNING) instead of starting or waking another thread. Only this
                // thread writes its slot while it is RUNNING, so the swap reads RUNNING.
                // ORDERING: AcqRel: Release pairs with the notifier's Acquire CAS (nothing
                // to hand over but the state); Acquire, as every write of the slot.
                slot.state.swap(WorkerState::Spinning, Ordering::AcqRel);
                let spin = Spin::new();
                while !spin.is_completed() {
                    if !this.run_queue.is_empty() {
                        // Back to RUNNING, whether or not a notifier claimed us already.
                        // ORDERING: AcqRel: Acquire reads a claiming notifier's CAS.
                        slot.state.swap(WorkerState::Running, Ordering::AcqRel);
                        continue 'work;
                    }
                    spin.snooze();
                }
            }
            // Announce that we are about to park (over RUNNING, SPINNING, or a notifier's
            // claim of our SPINNING: its push is visible to the re-check below, since this
            // swap reads its CAS). ORDERING: AcqRel: Acquire reads the CAS of a notifier that
            // came before; Release pairs with a later notifier's CAS.
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
                    // Count this thread out before the retiring CAS frees the slot: after it,
                    // a notifier may start the slot's next thread (and count it in) while
                    // this one is still on its way out, and the two must not both count
                    // (else `peak_threads` could exceed `max_threads`). ORDERING: Relaxed:
                    // the retiring CAS, which the next spawner's CAS reads, orders this
                    // decrement before that thread's increment.
                    this.threads.fetch_sub(1, Ordering::Relaxed);
                    // ORDERING: AcqRel: Release hands the parker to the next incarnation's
                    // spawner; Acquire on failure reads the notifier's push.
                    match slot.state.compare_exchange(
                        WorkerState::Parked,
                        WorkerState::Idle,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => break 'work,
                        Err(_) => {
                            // A notifier claimed the slot: we keep it, and count again.
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

/// A pool thread's exit path: if it unwinds instead of retiring (a retiring thread counted
/// itself out before its retiring CAS), counts the thread out, gives its slot back and makes
/// sure the run queue still has a thread.
struct ThreadExit {
    pool: Arc<PoolInner>,
    index: usize,
    retired: Cell<bool>,
}

impl Drop for ThreadExit {
    fn drop(&mut self) {
        if self.retired.get() {
            return; // counted out before the retiring CAS
        }
        let pool = &self.pool;
        // ORDERING: Relaxed: a count (see `count_in`), before the slot is given back.
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

#[cfg(test)]
mod tests {
    use super::WorkerPool;
    use crate::sync::spawn_faults;
    use crate::ActionQueue;
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::mpsc;
    use std::time::Duration;

    const DEADLINE: Duration = Duration::from_secs(30);

    /// A pool whose first thread cannot be spawned keeps the work queued (the queue is
    /// unscheduled: no task is left in a run queue that no thread pops); `wait_idle`
    /// without a limit says `false` at once (its own retry fails too) instead of hanging,
    /// and the next `put` on the same queue retries and runs everything in order.
    #[test]
    fn a_failed_pool_spawn_keeps_the_work_and_the_next_put_on_the_queue_retries() {
        let pool = WorkerPool::builder().max_threads(1).build();
        let queue = ActionQueue::builder().pool(&pool).build();
        let (tx, rx) = mpsc::channel();
        let first = tx.clone();
        spawn_faults::fail_next(2);
        queue.put(move || first.send(1).unwrap());
        assert_eq!(pool.threads(), 0, "no thread after a failed spawn");
        assert!(!queue.is_running(), "unscheduled");
        assert_eq!(queue.len(), 1, "its work stays queued");
        assert!(
            !queue.wait_idle(Duration::MAX),
            "told at once that the work cannot run"
        );
        assert!(rx.try_recv().is_err(), "nothing ran");
        queue.put(move || tx.send(2).unwrap());
        assert_eq!(rx.recv_timeout(DEADLINE), Ok(1));
        assert_eq!(rx.recv_timeout(DEADLINE), Ok(2));
        assert!(queue.wait_idle(DEADLINE));
        assert_eq!(pool.peak_threads(), 1);
    }

    /// A spawn that panics is a spawn that failed. A `put` on another queue of the pool
    /// retries the spawn for itself; the first queue's work waits for a `put` of its own
    /// (as a dedicated queue's does), and then everything runs.
    #[test]
    fn a_pool_spawn_that_panics_fails_and_each_queues_next_put_retries() {
        let pool = WorkerPool::builder().max_threads(2).build();
        let a = ActionQueue::builder().pool(&pool).build();
        let b = ActionQueue::builder().pool(&pool).build();
        let (tx, rx) = mpsc::channel();
        let first = tx.clone();
        spawn_faults::panic_next(1);
        let put = panic::catch_unwind(AssertUnwindSafe(|| a.put(move || first.send("a").unwrap())));
        assert!(put.is_ok(), "put did not panic");
        assert!(rx.try_recv().is_err(), "nothing ran");
        let second = tx.clone();
        b.put(move || second.send("b").unwrap());
        assert_eq!(rx.recv_timeout(DEADLINE), Ok("b"));
        assert!(b.wait_idle(DEADLINE));
        assert_eq!(a.len(), 1, "a's action still waits for a put on a");
        a.put(move || tx.send("a again").unwrap());
        assert_eq!(rx.recv_timeout(DEADLINE), Ok("a"));
        assert_eq!(rx.recv_timeout(DEADLINE), Ok("a again"));
    }

    /// With one pool thread alive, a failed spawn of a second is not a stall: the running
    /// thread takes the work.
    #[test]
    fn a_failed_spawn_beside_a_live_thread_leaves_the_work_to_that_thread() {
        let pool = WorkerPool::builder()
            .max_threads(2)
            .keep_alive(Duration::from_secs(600))
            .build();
        let a = ActionQueue::builder().pool(&pool).build();
        let (release, gate) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel();
        a.put(move || {
            started_tx.send(()).unwrap();
            gate.recv().unwrap();
        });
        started.recv_timeout(DEADLINE).unwrap(); // thread 0 runs `a`, blocked
        let b = ActionQueue::builder().pool(&pool).build();
        spawn_faults::fail_next(1);
        let done = b.submit(|| "b ran");
        assert_eq!(pool.threads(), 1, "the second thread could not start");
        release.send(()).unwrap();
        assert_eq!(
            done.result(DEADLINE),
            Ok(&"b ran"),
            "thread 0 ran it after `a`"
        );
    }

    /// A pool thread that dies outside an action (a test's injected fault, after the first
    /// action of a batch) hands the queue back and reschedules it (the batch's exit guard),
    /// gives its slot back (the thread's exit guard), and a new thread runs the rest in order.
    #[test]
    fn a_pool_thread_that_dies_outside_an_action_loses_nothing() {
        let pool = WorkerPool::builder().max_threads(1).build();
        let queue = ActionQueue::builder().pool(&pool).build();
        // ORDERING: Relaxed: the `put`s below publish it to the pool thread.
        queue
            .shared
            .worker_panics
            .store(1, std::sync::atomic::Ordering::Relaxed);
        let (release, gate) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel();
        let t = tx.clone();
        queue.put(move || {
            gate.recv().unwrap();
            t.send(std::thread::current().id()).unwrap();
        });
        queue.put(move || tx.send(std::thread::current().id()).unwrap());
        release.send(()).unwrap();
        let first = rx.recv_timeout(DEADLINE).expect("the first action ran");
        let second = rx.recv_timeout(DEADLINE).expect("the one behind it ran");
        assert_ne!(first, second, "a new pool thread took over");
        assert!(queue.wait_idle(DEADLINE));
        assert!(
            pool.peak_threads() <= 1,
            "never more than max_threads alive"
        );
    }
}
