//! `wait_idle`: how a caller learns that the queue is empty and no action runs, without
//! costing `put` or the worker anything per action.
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

use super::action::Action;
use super::worker::{Shared, WorkerState};
use crate::setter::{current_queue, Setter};
use crate::sync::{self, Arc, Ordering};
use crate::Promise;
use std::cell::Cell;
use std::mem;
use std::time::{Duration, Instant};

sync::thread_locals! {
    /// Raised by `wait_idle`'s marker action on the worker thread that runs it: the worker
    /// wakes the waiters at the end of the drain.
    static MARKER_RAN: Cell<bool> = const { Cell::new(false) };
}

/// Called by the worker at the end of each drain: whether the marker ran in it (then the
/// worker calls [`Shared::wake_idle_waiters`]); lowers the flag.
pub(super) fn take_marker_ran() -> bool {
    MARKER_RAN.with(|ran| ran.replace(false))
}

/// [`take_marker_ran`] for a worker thread that unwinds: `try_with`, because the thread is
/// ending and its thread-locals may be going too (then no marker counts as run).
pub(super) fn take_marker_ran_on_exit() -> bool {
    MARKER_RAN
        .try_with(|ran| ran.replace(false))
        .unwrap_or(false)
}

/// What the [`ActionQueue::wait_idle`](super::ActionQueue::wait_idle) callers share, under `Shared::idle`'s lock.
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
pub(super) struct IdleWait {
    /// The pending promise the current waiters wait on: set (`Ok`) at the end of the drain
    /// that ran the marker, failed (`Err`) when a spawn fails. Always pending while here: it
    /// is taken out before it is set, and the next caller makes a new one.
    signal: Option<Promise<(), ()>>,
    /// Whether the marker action is queued or runs in the current drain. At most one is.
    marker_queued: bool,
}

/// [`ActionQueue::wait_idle`](super::ActionQueue::wait_idle): see its docs for the contract
/// and the module docs for the mechanism.
pub(super) fn wait_idle(shared: &Arc<Shared>, timeout: Duration) -> bool {
    if current_queue() == Some(shared.id) {
        return false;
    }
    if shared.is_idle() {
        return true;
    }
    let deadline = Instant::now().checked_add(timeout);
    loop {
        if sync::deadline_passed(deadline) {
            // A poll (or a deadline already passed): answer without queueing a marker.
            return false;
        }
        let signal = Shared::idle_signal(shared);
        let remaining = match deadline {
            None => Duration::MAX,
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
        };
        if signal.result(remaining).is_err() {
            // Timed out, or a spawn failed (the signal's error): answer as things stand.
            return shared.is_idle();
        }
        // The worker ended the drain that ran the marker: idle, unless new work came in.
        if shared.is_idle() {
            return true;
        }
    }
}

impl Shared {
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
        if this.state.load(Ordering::Acquire) == WorkerState::Idle && !this.actions.is_empty() {
            Shared::ensure_worker(this);
        }
        signal
    }

    /// The end of a drain in which the marker ran: no marker is queued any more, and the
    /// waiters registered so far are woken to check again.
    #[cold]
    pub(super) fn wake_idle_waiters(&self) {
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
    pub(super) fn fail_idle_waiters(&self) {
        let signal = sync::lock(&self.idle).signal.take();
        if let Some(signal) = signal {
            let _ = signal.set_exception(());
        }
    }
}
