//! The worker: the IDLE/RUNNING/PARKED state machine that keeps exactly one worker thread
//! alive while there is work, and what the queue and its workers share ([`Shared`]).
//!
//! Actions go into a lock-free FIFO ([`Fifo`], many producers and one consumer: the worker).
//! One atomic byte, `state` (an [`AtomicWorkerState`] holding a [`WorkerState`]), says whether
//! a worker exists and whether it is parked:
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
//!   worker will find the action. `put` never waits, and takes no lock on its way (only a
//!   spawn that fails takes `wait_idle`'s lock, briefly, to tell its callers).
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
//! too, and `wait_idle` does not need one (see [`super::idle`]).
//!
//! **A worker that dies.** Actions run under `catch_unwind`, and so does every other piece of
//! foreign code the worker calls (the panic handler, the logger, a panic payload's `Drop`).
//! Should the worker thread unwind all the same, a guard on its exit path (`WorkerExit`)
//! gives the state back as the retiring CAS would (`swap(IDLE)`, then a re-check of the queue
//! that starts a new worker if anything is queued), so the queue never keeps a RUNNING or
//! PARKED state with no thread behind it. Spawning is contained the same way: a spawn that
//! panics is handled as a spawn that failed.

use super::action::Action;
use super::batch;
use super::executor::Executor;
use super::idle::{self, IdleWait};
use super::pool::PoolRef;
use super::PanicHandler;
use crate::panics;
use crate::setter;
use crate::sync::{
    self, fence, thread, Arc, AtomicBool, AtomicU8, AtomicUsize, Fifo, Mutex, Ordering, Spin,
    UnparkerCell,
};
use crate::Promise;
use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

/// The worker state: the value of `Shared::state`. See the module docs for the diagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WorkerState {
    /// No worker thread exists.
    Idle = 0,
    /// A worker exists and is running actions, or about to look for them.
    Running = 1,
    /// A worker exists, found the queue empty, and parks until unparked or its keep-alive ends.
    Parked = 2,
    /// Pool threads only ([`super::pool`]): the thread found the run queue empty and spins
    /// looking for work before it parks; a notifier may claim it (CAS to RUNNING) without
    /// a system call. A dedicated queue's worker never stores it.
    Spinning = 3,
}

impl WorkerState {
    /// The state a byte of [`AtomicWorkerState`] holds.
    #[inline]
    fn from_byte(byte: u8) -> Self {
        match byte {
            0 => WorkerState::Idle,
            1 => WorkerState::Running,
            2 => WorkerState::Parked,
            3 => WorkerState::Spinning,
            // Only `AtomicWorkerState` writes the byte, and only from a `WorkerState`.
            _ => unreachable!("worker state byte {byte}: only the four states are stored"),
        }
    }
}

/// The worker state byte, read and written as [`WorkerState`]s. Each method is the one
/// atomic operation of its name; the caller passes (and at its call site justifies) the
/// ordering.
pub(super) struct AtomicWorkerState(AtomicU8);

impl AtomicWorkerState {
    pub(super) fn new(state: WorkerState) -> Self {
        AtomicWorkerState(AtomicU8::new(state as u8))
    }

    #[inline]
    pub(super) fn load(&self, order: Ordering) -> WorkerState {
        // ORDERING: the caller's (see each call site).
        WorkerState::from_byte(self.0.load(order))
    }

    #[inline]
    pub(super) fn swap(&self, state: WorkerState, order: Ordering) -> WorkerState {
        // ORDERING: the caller's (see each call site).
        WorkerState::from_byte(self.0.swap(state as u8, order))
    }

    #[inline]
    pub(super) fn store(&self, state: WorkerState, order: Ordering) {
        // ORDERING: the caller's (see each call site).
        self.0.store(state as u8, order);
    }

    /// `compare_exchange`; the error holds the state found instead.
    #[inline]
    pub(super) fn compare_exchange(
        &self,
        current: WorkerState,
        new: WorkerState,
        success: Ordering,
        failure: Ordering,
    ) -> Result<WorkerState, WorkerState> {
        // ORDERING: the caller's (see each call site).
        self.0
            .compare_exchange(current as u8, new as u8, success, failure)
            .map(WorkerState::from_byte)
            .map_err(WorkerState::from_byte)
    }
}

/// What the queue and its workers share.
pub(super) struct Shared {
    pub(super) actions: Fifo<Action>,
    /// IDLE, RUNNING or PARKED; see the module docs.
    pub(super) state: AtomicWorkerState,
    /// Set when the last `ActionQueue` handle is dropped: the worker drains and retires
    /// without lingering.
    pub(super) closed: AtomicBool,
    /// Where the queue's actions run: a thread of its own, or borrowed ones.
    pub(super) runner: Runner,
    pub(super) id: usize,
    pub(super) name: String,
    pub(super) stack_size: Option<usize>,
    pub(super) keep_alive: Duration,
    pub(super) panic_handler: Option<PanicHandler>,
    /// Whether the worker is draining the queue: written by the worker alone, `true` before
    /// its first pop of a drain and `false` once a pop found the queue empty (or by its exit
    /// guard). With `actions.is_empty()` it makes the idle check; see the module docs.
    pub(super) busy: AtomicBool,
    /// What the `wait_idle` callers share.
    pub(super) idle: IdleWait,
    /// How many `ActionQueue` handles exist (the worker's `Arc` is not one): the last one
    /// to go closes the queue.
    pub(super) handles: AtomicUsize,
    /// Set by `Drop for Shared`, once the worker (if any) has let go of the queue: what
    /// [`ActionQueue::join`](super::ActionQueue::join) on the last handle waits for.
    pub(super) gone: Mutex<Option<Promise<(), ()>>>,
    /// Test hook: how many more times the worker is to panic outside an action.
    #[cfg(test)]
    pub(super) worker_panics: sync::StdAtomicUsize,
}

/// Where a queue's actions run.
pub(super) enum Runner {
    /// On a thread of the queue's own (this module's state machine). The worker incarnation
    /// that owns RUNNING/PARKED parks on this parker; producers unpark it.
    Thread(UnparkerCell),
    /// In batches on a [`WorkerPool`](super::WorkerPool)'s threads ([`super::batch`]).
    Pool(PoolRef),
    /// In batches handed to an application's [`Executor`] ([`super::batch`]).
    Executor(Arc<dyn Executor>),
}

impl Shared {
    /// The dedicated worker's parker.
    pub(super) fn parker(&self) -> &UnparkerCell {
        match &self.runner {
            Runner::Thread(parker) => parker,
            Runner::Pool(_) | Runner::Executor(_) => {
                unreachable!("only a dedicated queue's worker parks")
            }
        }
    }

    /// Makes sure a worker will see the actions pushed before this call: spawns one if there
    /// is none, unparks it if it is parked. Called by `put` after its push, by `wait_idle`
    /// (also without a push of its own, to retry a failed spawn), by the queue's drop after a
    /// failed spawn, and by a dead worker's exit guard.
    pub(super) fn ensure_worker(this: &Arc<Self>) {
        if !matches!(this.runner, Runner::Thread(_)) {
            return batch::ensure_scheduled(this);
        }
        // ORDERING: AcqRel: Release carries our push to the worker's swap(PARKED) or its
        // retiring CAS (whichever reads this write or a later one); Acquire orders our
        // unpark or spawn after the worker's announcement. See the module docs.
        match this.state.swap(WorkerState::Running, Ordering::AcqRel) {
            // A worker is draining (or about to look): it will find our action.
            WorkerState::Running => {}
            // The worker is parked, or about to park: wake it (a spare token if it re-checks
            // the queue first only makes a later park return early).
            WorkerState::Parked => this.parker().unpark(),
            // No worker: we won the state from IDLE, so we start the only one.
            WorkerState::Idle => Shared::spawn_worker(this),
            // Only pool threads' slots spin.
            WorkerState::Spinning => unreachable!("a dedicated worker never stores SPINNING"),
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
                    panics::panic_message(&*payload).unwrap_or("(non-string panic payload)")
                );
                panics::contain_silently(move || panics::drop_payload(payload));
                error
            }
        };
        // No worker: give the state back so that the next `put` tries again. Only
        // producers write RUNNING while no worker exists, so IDLE is right to restore.
        // ORDERING: Release, so the next producer's Acquire swap sees a consistent queue.
        this.state.store(WorkerState::Idle, Ordering::Release);
        // Then (the order matters, see `IdleWait`) tell the `wait_idle` callers that the
        // queued actions cannot run for now.
        this.idle.spawn_failed();
        panics::report(format_args!(
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
        sync::spawn_worker(builder, move || Shared::work(shared))
    }

    /// The worker thread's body.
    fn work(this: Arc<Self>) {
        setter::enter_queue(this.id);
        // Hands the state back if this thread unwinds; disarmed by a normal retirement.
        let exit = WorkerExit {
            shared: this,
            retired: Cell::new(false),
        };
        let this = &exit.shared;
        'work: loop {
            // A drain, unless there is nothing to drain: a worker woken with nothing queued
            // (by a `put` whose action an earlier drain took) must not look busy to
            // `wait_idle`, not even for a moment.
            if !this.actions.is_empty() {
                // ORDERING: Relaxed: the pops below advance the queue's head with release
                // writes (the FIFO: a SeqCst store of its head; the loom stand-in: a mutex),
                // sequenced after this store, and
                // `is_empty` reads the head with SeqCst. So an idle check whose `is_empty`
                // sees the queue emptied by one of them reads `true` here (or the `false`
                // written after the drain).
                this.busy.store(true, Ordering::Relaxed);
                // SAFETY: this worker incarnation owns RUNNING/PARKED, so it is the queue's
                // only consumer (see the module docs).
                while let Some(action) = unsafe { this.actions.pop() } {
                    this.run(action);
                    #[cfg(test)]
                    worker_fault(this);
                }
                // The drain is over: no action runs and a pop found the queue empty.
                // ORDERING: Release: an idle check that reads this `false` (Acquire) sees
                // every effect of the actions of the drain.
                this.busy.store(false, Ordering::Release);
                if idle::take_marker_ran() {
                    this.idle.marker_drain_ended();
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
            this.state.swap(WorkerState::Parked, Ordering::AcqRel);
            // Pairs with the fence in `Drop for ActionQueue`: either it sees PARKED and
            // unparks us, or we see `closed` here and do not linger.
            fence(Ordering::SeqCst);
            if !this.actions.is_empty() {
                // Take the work back. Whether a `put` saw PARKED (and will unpark us: a
                // spare token that only makes a later park return early) or not, we own
                // RUNNING again. ORDERING: AcqRel: Release pairs with the next put's swap;
                // Acquire reads the push of any `put` whose swap came before this one (our
                // pops synchronise through the queue anyway).
                this.state.swap(WorkerState::Running, Ordering::AcqRel);
                continue;
            }
            // ORDERING: Relaxed: the SeqCst fence above orders it against the dropper.
            let keep_alive = if this.closed.load(Ordering::Relaxed) {
                Duration::ZERO
            } else {
                this.keep_alive
            };
            let deadline = sync::now().checked_add(keep_alive);
            loop {
                // ORDERING: Acquire pairs with the put's Release swap: its push is visible.
                if this.state.load(Ordering::Acquire) == WorkerState::Running {
                    continue 'work;
                }
                // SAFETY: this incarnation owns the parker: it was spawned by the producer that
                // moved the state from IDLE (a `put`, a `wait_idle`, the queue's drop or a dead
                // worker's exit guard), and the previous incarnation stopped using the parker
                // before its retiring CAS or its exit guard's swap(IDLE) (which that producer
                // read). We stop parking before our own retiring CAS below, and our exit guard
                // runs only after this loop.
                let timed_out = keep_alive.is_zero() || unsafe { this.parker().park(deadline) };
                // ORDERING: Relaxed: only shortens the linger; the retiring CAS decides.
                if timed_out || this.closed.load(Ordering::Relaxed) {
                    // Retire, unless a `put` wrote RUNNING since our announcement.
                    // ORDERING: AcqRel: Release hands the parker and the queue's state to
                    // the next incarnation's spawner; Acquire on failure reads the put's
                    // push before we run it.
                    match this.state.compare_exchange(
                        WorkerState::Parked,
                        WorkerState::Idle,
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
    pub(super) fn run(&self, action: Action) {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| action.run())) {
            self.report_panic(&*payload);
            // `drop_payload` contains a panic of the payload's `Drop`, but then logs it, and
            // the logger may panic too.
            panics::contain_silently(move || panics::drop_payload(payload));
        }
    }

    fn report_panic(&self, payload: &(dyn Any + Send)) {
        match &self.panic_handler {
            Some(handler) => {
                if !panics::contain_silently(|| handler(payload)) {
                    panics::report(format_args!(
                        "orderslip: the panic handler of queue '{}' panicked",
                        self.name
                    ));
                }
            }
            None => panics::report(format_args!(
                "orderslip: an action on queue '{}' panicked: {}",
                self.name,
                panics::panic_message(payload).unwrap_or("(non-string panic payload)")
            )),
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
        setter::leave_queue();
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
        shared.state.swap(WorkerState::Idle, Ordering::AcqRel);
        // A marker ran in the drain that will not end: wake its waiters now.
        if idle::take_marker_ran_on_exit() {
            shared.idle.marker_drain_ended();
        }
        if !shared.actions.is_empty() {
            // Actions are queued, and the `put`s whose swap came before ours will not start
            // a worker for them: start one (a `put` whose swap comes after ours reads IDLE
            // and starts one itself; only one of us reads IDLE).
            Shared::ensure_worker(shared);
        }
        panics::report(format_args!(
            "orderslip: the worker of queue '{}' panicked outside an action; the state was \
             handed back and any queued actions go to a new worker",
            shared.name
        ));
    }
}

/// The worker's side of `wait_idle` (see [`idle`]).
impl idle::Host for Arc<Shared> {
    fn queue_id(&self) -> usize {
        self.id
    }

    fn is_idle(&self) -> bool {
        // The order of the two reads matters; see `idle`'s module docs.
        // ORDERING: Acquire pairs with the worker's Release store of `false` after a drain;
        // `true` needs no more than the queue's own synchronisation (see `work`).
        self.actions.is_empty() && !self.busy.load(Ordering::Acquire)
    }

    fn idle_wait(&self) -> &IdleWait {
        &self.idle
    }

    fn queue_marker(&self) {
        self.actions.push(idle::marker());
        Shared::ensure_worker(self);
    }

    fn retry_stalled_spawn(&self) {
        if !matches!(self.runner, Runner::Thread(_)) {
            // Scheduled (or being scheduled by a `put` between its push and its swap) unless
            // a spawn failed: `ensure_scheduled` handles both.
            return batch::ensure_scheduled(self);
        }
        // ORDERING: Acquire: a failing spawner writes IDLE before it takes the signal under
        // the lock; if that lock came before ours, we read its IDLE (or a later write).
        if self.state.load(Ordering::Acquire) == WorkerState::Idle && !self.actions.is_empty() {
            Shared::ensure_worker(self);
        }
    }
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
                        panics::contain_silently(move || panics::drop_payload(payload));
                    }
                }
            }
        };
        // SAFETY: `&mut self`: no worker or batch is left, so we are the only consumer.
        while let Some(action) = unsafe { self.actions.pop() } {
            keep(panic::catch_unwind(AssertUnwindSafe(move || drop(action))));
        }
        let handler = self.panic_handler.take();
        keep(panic::catch_unwind(AssertUnwindSafe(move || drop(handler))));
        // The queue is gone: tell a `join` on its last handle (a promise of ours: its set
        // runs no foreign code).
        if let Some(gone) = sync::lock(&self.gone).take() {
            let _ = gone.set_result(());
        }
        if let Some(payload) = first_panic {
            // Not a concurrency primitive: std's, also under loom.
            if std::thread::panicking() {
                // Unwinding already (the last handle dropped during a panic): a second
                // panic would abort the process.
                panics::contain_silently(move || panics::drop_payload(payload));
                panics::report(format_args!(
                    "orderslip: dropping an unrun action (or the panic handler) of queue '{}' \
                     panicked while the thread was already unwinding",
                    self.name
                ));
            } else {
                panic::resume_unwind(payload);
            }
        }
    }
}

/// Test hook: called by the worker after each action, outside its `catch_unwind`: panics if a
/// test asked this queue's worker to.
#[cfg(test)]
pub(super) fn worker_fault(shared: &Shared) {
    // ORDERING: Relaxed: only the worker reads and writes the counter after the test set
    // it, and the test set it before the `put` whose push the worker's pop acquired.
    let left = shared.worker_panics.load(Ordering::Relaxed);
    if left > 0 {
        // ORDERING: Relaxed, as above.
        shared.worker_panics.store(left - 1, Ordering::Relaxed);
        panic!("worker panic outside an action, injected by a test");
    }
}

#[cfg(test)]
mod tests {
    use super::super::ActionQueue;
    use crate::sync::spawn_faults;
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
        spawn_faults::fail_next(1);
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
        spawn_faults::fail_next(1);
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
        spawn_faults::panic_next(1);
        let put = panic::catch_unwind(AssertUnwindSafe(|| {
            queue.put(move || first.send(1).unwrap());
        }));
        assert!(put.is_ok(), "put panicked");
        assert!(!queue.is_running(), "the state went back to IDLE");
        assert!(rx.try_recv().is_err(), "nothing ran");
        // A waiter without a deadline whose own spawn attempt panics is told at once.
        spawn_faults::panic_next(1);
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
    /// waiter, as the end of that drain would have. The wait has no limit, so only that
    /// wake-up can end it (a timed wait would end at its deadline and find the queue idle,
    /// which proves nothing; review of issue 10).
    #[test]
    fn a_worker_that_dies_after_the_marker_still_wakes_wait_idle() {
        let queue = Arc::new(ActionQueue::builder().keep_alive(Duration::ZERO).build());
        let shared = crate::sync::Arc::clone(&queue.shared);
        queue.put(move || {
            // Once the marker of the `wait_idle` below is queued, arm the fault: this
            // worker dies after this action, and the next one right after the marker.
            assert!(wait_until(|| !shared.actions.is_empty()));
            // ORDERING: Relaxed: only this worker and its successor (spawned by its exit
            // guard, which publishes it) read it.
            shared.worker_panics.store(2, Ordering::Relaxed);
        });
        let (tx, rx) = mpsc::channel();
        let waiter = Arc::clone(&queue);
        thread::spawn(move || tx.send(waiter.wait_idle(Duration::MAX)).unwrap());
        assert_eq!(
            rx.recv_timeout(DEADLINE),
            Ok(true),
            "woken by the exit guard"
        );
        assert!(queue.wait_idle(Duration::ZERO));
        // ORDERING: Relaxed: read after `wait_idle` acquired the workers' last writes.
        assert_eq!(
            queue.shared.worker_panics.load(Ordering::Relaxed),
            0,
            "both injected panics happened"
        );
    }
}
