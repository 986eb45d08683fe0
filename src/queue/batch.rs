//! A queue that runs on borrowed threads (a [`WorkerPool`](super::WorkerPool)'s, or an
//! [`Executor`](super::Executor)'s): how it is scheduled without a lock, how a batch of its
//! actions runs, and how the thread that drained it hands it back without losing a wake-up.
//!
//! Such a queue has no thread of its own. Its state byte (the same [`WorkerState`] as a
//! dedicated queue's, of which it uses only IDLE and RUNNING) says whether it is *scheduled*: a
//! [`Task`] for it exists (in the pool's run queue, in the executor, or running a batch):
//!
//! ```text
//!          put: push, swap(RUNNING) saw IDLE → hand a Task to the pool / executor
//!   IDLE ──────────────────────────────────────────────────────────────────> RUNNING ─┐
//!    ^                                                                          ^     │ a batch:
//!    │ batch drained the queue: swap(IDLE), then re-check the queue:            │     │ ≤ 128 actions,
//!    │   empty → done (IDLE)                                                    │     │ ≤ 1 ms
//!    │   not empty → CAS(IDLE → RUNNING): won → go on; lost → a put scheduled it │     │
//!    └──────────────────────────────────────────────────────────────────────────┴─────┘
//!                                                       batch limit hit, queue not empty:
//!                                                       stay RUNNING, Task goes to the back
//! ```
//!
//! **Why no action is stranded, and no two run at once.** Every write of the state byte is
//! a read-modify-write with Release + Acquire, so they form one chain. Take a `put` P (push,
//! then `swap(RUNNING)`) and the hand-back H (`swap(IDLE)`, then a re-check of the queue):
//! - if P's swap comes before H in the chain, H reads P's write or a later one, so P's push
//!   happens before H's re-check, which finds the action; H then takes the queue back with
//!   `CAS(IDLE → RUNNING)`, unless a later `put` read H's IDLE first and scheduled a new
//!   `Task` itself (then the CAS fails and that `Task` runs the action);
//! - if P's swap comes after H, it reads IDLE (H's write, or a later one) and schedules a new
//!   `Task`.
//!
//! Only the write that moves the byte from IDLE (a `put`'s swap, or H's CAS) creates a
//! `Task`, and the `Task` gives RUNNING up only through H, so at most one `Task` of a queue
//! exists at a time: its actions never run on two threads at once, and since one `Task`'s
//! batch happens before the hand-back that the next `Task`'s creator read (Release/Acquire),
//! they run in order.
//!
//! **Fairness.** A batch runs at most [`BATCH_ACTIONS`] actions and, checked every
//! [`CLOCK_EVERY`] actions, at most [`BATCH_TIME`] (counted from its 8th action: a batch of
//! fewer actions reads no clock); then, if the queue still has work, its
//! `Task` goes to the back of the pool's run queue (or back to the executor) behind every
//! other queue that is waiting, so one queue with endless work delays each other queue by at
//! most one batch per turn. 128 actions keep the hand-over (a push and a pop of the run queue:
//! 15-21 ns uncontended, measured on the 2-vCPU machine of the README's figures) under 1 % of
//! a batch of the cheapest actions (22-24 ns each in `queue/throughput_1p`), and 1 ms bounds
//! the delay a slow queue adds per turn for each queue behind it; the clock (`Instant::now`,
//! about 30 ns a read there) is read every 8 actions so that cheap actions do not pay it each.
//!
//! **Deadlock check and `wait_idle`.** While a batch runs, the thread is the queue's worker
//! for the deadlock check ([`setter::as_queue`]), and the batch is a *drain* for `wait_idle`
//! ([`super::idle`]): `busy` is raised before its first pop and lowered after its last, and a
//! marker that ran in it wakes the waiters at its end. A batch that runs inside another
//! batch's action on the same thread (a foreign executor may do that) keeps the outer
//! batch's marker flag apart.
//!
//! **A thread that unwinds.** Actions run under `catch_unwind`; should the batch unwind all
//! the same (a panic in our own code, or a test's injected fault), its exit guard hands the
//! queue back as H would and reschedules it if it has work, so the queue never stays
//! RUNNING with no `Task` behind it.

use super::idle;
use super::worker::{Runner, Shared, WorkerState};
use crate::panics;
use crate::setter;
use crate::sync::{self, Arc, Ordering};
use std::cell::Cell;
use std::fmt;
use std::time::Duration;

/// The most actions one batch runs before the queue yields its thread: 128 (2 under loom,
/// so that a model can reach the limit; see [`sync::BATCH_ACTIONS`]).
pub(super) const BATCH_ACTIONS: usize = sync::BATCH_ACTIONS;
/// The longest a batch runs (checked every [`CLOCK_EVERY`] actions) before the queue yields.
pub(super) const BATCH_TIME: Duration = Duration::from_millis(1);
/// How often (in actions) a batch reads the clock.
const CLOCK_EVERY: usize = 8;

/// Makes sure the actions pushed before this call run: schedules the queue if it is not
/// scheduled. Called by `put` after its push (and by every other place that a dedicated
/// queue's `ensure_worker` is called from).
pub(super) fn ensure_scheduled(this: &Arc<Shared>) {
    // ORDERING: AcqRel: Release carries our push to the hand-back swap(IDLE) that reads this
    // write or a later one (see the module docs); Acquire orders the batch we may start
    // after the previous batch's hand-back, whose IDLE we read.
    match this.state.swap(WorkerState::Running, Ordering::AcqRel) {
        // Scheduled already: its `Task` will find our action (or the hand-back will).
        WorkerState::Running => {}
        // Not scheduled: we moved it from IDLE, so we create its only `Task`.
        WorkerState::Idle => submit(&this.runner, Task::new(Arc::clone(this))),
        // Never stored for a queue without a thread of its own.
        WorkerState::Parked | WorkerState::Spinning => {
            unreachable!("a pool-backed queue is only IDLE or RUNNING")
        }
    }
}

/// Hands `task` to `runner` (its queue's pool or executor, borrowed from a handle that the
/// caller keeps alive apart from the task: once queued, the task may run and be gone).
fn submit(runner: &Runner, task: Task) {
    match runner {
        Runner::Pool(pool) => pool.schedule(task),
        Runner::Executor(executor) => {
            // A foreign `execute` may panic; the task it was given is then dropped (its
            // `Drop` hands the queue back) or kept. Either way nothing is half-changed here.
            if !panics::contain_silently(|| executor.execute(task)) {
                panics::report(format_args!(
                    "orderslip: an Executor's execute panicked; the queue's actions stay \
                     queued until the task runs or the next put"
                ));
            }
        }
        Runner::Thread(_) => unreachable!("a dedicated queue is never submitted"),
    }
}

/// [`submit`] of a task whose queue only the task holds: keeps the runner alive by a
/// reference of its own while it hands the task over.
fn resubmit(again: Arc<Shared>) {
    let runner = match &again.runner {
        Runner::Pool(pool) => Runner::Pool(pool.clone()),
        Runner::Executor(executor) => Runner::Executor(Arc::clone(executor)),
        Runner::Thread(_) => unreachable!("a dedicated queue is never submitted"),
    };
    submit(&runner, Task::new(again));
}

/// One scheduled turn of a queue that runs on borrowed threads: running it runs one batch of
/// the queue's actions, in order, on the calling thread. A [`WorkerPool`](super::WorkerPool)
/// makes and runs these itself; an [`Executor`](super::Executor) is handed them and must
/// call [`run`](Task::run) once, on any thread.
///
/// A queue has at most one `Task` at a time; while it exists the queue is scheduled, and its
/// actions run only through it. Dropping a `Task` without running it (an executor that shuts
/// down, say) unschedules the queue: its actions stay queued, the next `put` schedules it
/// again, and a [`wait_idle`](super::ActionQueue::wait_idle) waiting on it returns `false`.
///
/// ```
/// use orderslip::{ActionQueue, Executor, Task};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// /// Runs every task on a fresh thread (a stand-in for an application's own pool).
/// struct ThreadPerTask;
///
/// impl Executor for ThreadPerTask {
///     fn execute(&self, task: Task) {
///         std::thread::spawn(move || task.run());
///     }
/// }
///
/// let queue = ActionQueue::builder().executor(Arc::new(ThreadPerTask)).build();
/// let answer = queue.submit(|| 6 * 7);
/// assert_eq!(answer.result(Duration::from_secs(5)), Ok(&42));
/// ```
#[must_use = "a task must be run, or its queue stays unscheduled until the next put"]
pub struct Task {
    /// The queue; `None` once run.
    shared: Option<Arc<Shared>>,
}

impl Task {
    pub(super) fn new(shared: Arc<Shared>) -> Task {
        Task {
            shared: Some(shared),
        }
    }

    /// Runs one batch of the queue's actions on this thread (at most 128 actions or about a
    /// millisecond). If the queue has more work afterwards, a new `Task` for it goes back to
    /// the same executor, behind whatever is waiting there.
    pub fn run(mut self) {
        let shared = self
            .shared
            .take()
            .expect("a Task holds its queue until it runs");
        if let Some(again) = run_batch(shared) {
            resubmit(again);
        }
    }

    /// Runs one batch; the queue back if it still has work (and is still scheduled: the
    /// caller must run it again or hand it on), `None` if it was handed back.
    pub(super) fn run_here(mut self) -> Option<Task> {
        let shared = self
            .shared
            .take()
            .expect("a Task holds its queue until it runs");
        run_batch(shared).map(Task::new)
    }
}

impl Task {
    /// Unschedules the queue without running it (its pool has no thread and could start
    /// none; the pool reports that): its actions stay queued, the next `put` schedules it
    /// again, and its `wait_idle` callers are told now.
    pub(super) fn unschedule(mut self) {
        if let Some(shared) = self.shared.take() {
            unschedule(&shared);
        }
    }
}

/// Gives up a queue's scheduled state without running it: see [`Task::unschedule`].
fn unschedule(shared: &Shared) {
    // ORDERING: AcqRel, as a hand-back: Release so that the `put` that reads IDLE schedules
    // a consistent queue; Acquire reads the puts whose swaps came before.
    shared.state.swap(WorkerState::Idle, Ordering::AcqRel);
    // Its `wait_idle` callers would wait for a batch that is not coming.
    shared.idle.spawn_failed();
}

impl Drop for Task {
    /// A task dropped unrun: unschedule its queue (see the type's docs).
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        unschedule(&shared);
        panics::report(format_args!(
            "orderslip: a task of queue '{}' was dropped without running (its executor shut \
             down?); its actions stay queued and the next put schedules it again",
            shared.name
        ));
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Task");
        if let Some(shared) = &self.shared {
            d.field("queue", &shared.name);
        }
        d.finish_non_exhaustive()
    }
}

/// Runs one batch of `this`'s actions as its worker; returns the queue if it must run again
/// (batch limit reached with work left; still RUNNING), `None` once it was handed back.
fn run_batch(this: Arc<Shared>) -> Option<Arc<Shared>> {
    let again = setter::as_queue(this.id, || {
        // A batch nested in an outer batch's action (a foreign executor may do that) must
        // not take the outer batch's marker flag as its own: set it aside, put it back after.
        let outer_marker = idle::take_marker_ran();
        let exit = BatchExit {
            shared: &this,
            done: Cell::new(false),
            outer_marker,
        };
        let limited = drain(&this);
        // ORDERING: Release: an idle check that reads this `false` (Acquire) sees every
        // effect of the batch's actions (as at the end of a dedicated worker's drain).
        this.busy.store(false, Ordering::Release);
        if idle::take_marker_ran() {
            this.idle.marker_drain_ended();
        }
        exit.done.set(true);
        if outer_marker {
            idle::set_marker_ran();
        }
        limited
    });
    // Batch limit reached and work left: stay scheduled, to run again behind the others.
    if again && !this.actions.is_empty() {
        return Some(this);
    }
    hand_back(this)
}

/// Pops and runs actions until the queue is empty (`false`) or a batch limit is reached
/// (`true`).
fn drain(this: &Shared) -> bool {
    if this.actions.is_empty() {
        return false; // a spurious schedule: nothing to run, so never look busy
    }
    // ORDERING: Relaxed: as in a dedicated worker's drain (`worker::Shared::work`), the pops
    // below are release operations on the queue sequenced after this store, which an idle
    // check's `is_empty` acquires.
    this.busy.store(true, Ordering::Relaxed);
    // The clock starts at the first check (after `CLOCK_EVERY` actions), so that the many
    // short batches of a queue with a few actions read no clock at all.
    let mut start = None;
    let mut ran = 0;
    // SAFETY: the caller runs the queue's only `Task`, so it is the queue's only consumer
    // (see the module docs); the previous consumer's pops happen before ours through the
    // state hand-over.
    while let Some(action) = unsafe { this.actions.pop() } {
        this.run(action);
        ran += 1;
        #[cfg(test)]
        super::worker::worker_fault(this);
        if ran == BATCH_ACTIONS {
            return true;
        }
        if ran % CLOCK_EVERY == 0 {
            let now = sync::now();
            match start {
                None => start = Some(now),
                Some(start) if now.duration_since(start) >= BATCH_TIME => return true,
                Some(_) => {}
            }
        }
    }
    false
}

/// The hand-back H of the module docs: unschedules `this`, or takes it back if work came in.
fn hand_back(this: Arc<Shared>) -> Option<Arc<Shared>> {
    // ORDERING: AcqRel: Release hands our batch's effects to the `put` that reads IDLE (and
    // so to the next `Task`); Acquire reads the push of every `put` whose swap came before
    // ours, so the re-check below sees it.
    this.state.swap(WorkerState::Idle, Ordering::AcqRel);
    if this.actions.is_empty() {
        return None;
    }
    // Work came in: a `put` whose swap came before ours relies on us. Take the queue back,
    // unless a `put` after us read IDLE and scheduled it already.
    // ORDERING: AcqRel on success, as a `put`'s swap; Relaxed on failure: we touch nothing.
    match this.state.compare_exchange(
        WorkerState::Idle,
        WorkerState::Running,
        Ordering::AcqRel,
        Ordering::Relaxed,
    ) {
        Ok(_) => Some(this),
        Err(_) => None,
    }
}

/// A batch's exit path: if the batch unwinds (outside the actions' `catch_unwind`), lowers
/// `busy`, wakes a marker's waiters and hands the queue back, rescheduling it if it has work.
struct BatchExit<'a> {
    shared: &'a Arc<Shared>,
    done: Cell<bool>,
    /// The enclosing batch's marker flag, set aside at the start: given back on unwinding
    /// too, or the outer queue's `wait_idle` callers would never be woken.
    outer_marker: bool,
}

impl Drop for BatchExit<'_> {
    fn drop(&mut self) {
        if self.done.get() {
            return;
        }
        let shared = self.shared;
        // ORDERING: Release, as at the end of a batch.
        shared.busy.store(false, Ordering::Release);
        if idle::take_marker_ran_on_exit() {
            shared.idle.marker_drain_ended();
        }
        if self.outer_marker {
            idle::set_marker_ran_on_exit();
        }
        if let Some(again) = hand_back(Arc::clone(shared)) {
            submit(&shared.runner, Task::new(again));
        }
        panics::report(format_args!(
            "orderslip: a batch of queue '{}' panicked outside an action; the queue was handed \
             back and any queued actions rescheduled",
            shared.name
        ));
    }
}
