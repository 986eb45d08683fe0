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
use crate::setter::{in_queue, Setter};
use crate::sync::{self, Mutex};
use crate::Promise;
use std::cell::Cell;
use std::mem;
use std::time::Duration;

sync::thread_locals! {
    /// Raised by `wait_idle`'s marker action on the worker thread that runs it: the worker
    /// wakes the waiters at the end of the drain.
    static MARKER_RAN: Cell<bool> = const { Cell::new(false) };
}

/// Called by the worker at the end of each drain: whether the marker ran in it (then the
/// worker calls [`IdleWait::marker_drain_ended`]); lowers the flag.
pub(super) fn take_marker_ran() -> bool {
    MARKER_RAN.with(|ran| ran.replace(false))
}

/// Raises the flag again: a batch nested in another batch's action hands the outer batch's
/// flag back (see `batch`).
pub(super) fn set_marker_ran() {
    MARKER_RAN.with(|ran| ran.set(true));
}

/// [`set_marker_ran`] for a batch that unwinds: `try_with`, as [`take_marker_ran_on_exit`].
pub(super) fn set_marker_ran_on_exit() {
    let _ = MARKER_RAN.try_with(|ran| ran.set(true));
}

/// [`take_marker_ran`] for a worker thread that unwinds: `try_with`, because the thread is
/// ending and its thread-locals may be going too (then no marker counts as run).
pub(super) fn take_marker_ran_on_exit() -> bool {
    MARKER_RAN
        .try_with(|ran| ran.replace(false))
        .unwrap_or(false)
}

/// The marker action: it only raises [`MARKER_RAN`] on the worker thread that runs it.
pub(super) fn marker() -> Action {
    Action::new(|| MARKER_RAN.with(|ran| ran.set(true)))
}

/// What a queue offers this module: its identity, the idle check, and the worker-side steps
/// of the protocol. The worker's module implements it, so this one needs nothing of the
/// worker's internals.
pub(super) trait Host {
    /// The queue's id: waiting from inside one of its actions can never succeed.
    fn queue_id(&self) -> usize;
    /// Whether the queue is empty and no action runs (see the module docs for the reads).
    fn is_idle(&self) -> bool;
    /// The waiters' shared state.
    fn idle_wait(&self) -> &IdleWait;
    /// Queues the marker behind everything queued so far, and makes sure a worker will run
    /// it (as `put` does).
    fn queue_marker(&self);
    /// If no worker exists while actions are queued (an earlier spawn failed, or a `put` is
    /// between its push and its swap), tries to start one; a failure fails the signal.
    fn retry_stalled_spawn(&self);
}

/// What the [`ActionQueue::wait_idle`](super::ActionQueue::wait_idle) callers share, under
/// its lock.
///
/// Why a registered caller is always woken: it registers on `signal` with `marker_queued`
/// set, and then (outside the lock) makes sure a worker runs the marker. The marker is in the
/// queue, or runs in the worker's current drain, until the worker clears `marker_queued`
/// under the lock at the end of that drain, taking the signal; so that lock comes after the
/// caller's, and its signal is the one set. The marker runs unless no worker can be spawned:
/// then the caller's own spawn attempt fails, or it read RUNNING from a spawner that has not
/// yet given the state back. A failing spawner writes IDLE and only then takes the signal
/// under the lock; had that lock come before the caller's, the IDLE store would happen
/// before the caller's swap, which could not then read the RUNNING before it. Either way the
/// failure path takes and fails the caller's signal. A worker that dies takes the
/// end-of-drain step in its exit guard.
#[derive(Default)]
pub(super) struct IdleWait(Mutex<IdleState>);

#[derive(Default)]
struct IdleState {
    /// The pending promise the current waiters wait on: set (`Ok`) at the end of the drain
    /// that ran the marker, failed (`Err`) when a spawn fails. Always pending while here: it
    /// is taken out before it is set, and the next caller makes a new one.
    signal: Option<Promise<(), ()>>,
    /// Whether the marker action is queued or runs in the current drain. At most one is.
    marker_queued: bool,
}

impl IdleWait {
    /// Registers a caller: the shared signal, and whether this caller must queue the marker
    /// (none is queued yet).
    fn register(&self) -> (Promise<(), ()>, bool) {
        let mut idle = sync::lock(&self.0);
        let signal = idle
            .signal
            .get_or_insert_with(|| Promise::with_setter_kind(Setter::Nobody))
            .clone();
        (signal, !mem::replace(&mut idle.marker_queued, true))
    }

    /// The end of a drain in which the marker ran: no marker is queued any more, and the
    /// waiters registered so far are woken to check again.
    #[cold]
    pub(super) fn marker_drain_ended(&self) {
        let signal = {
            let mut idle = sync::lock(&self.0);
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
    pub(super) fn spawn_failed(&self) {
        let signal = sync::lock(&self.0).signal.take();
        if let Some(signal) = signal {
            let _ = signal.set_exception(());
        }
    }
}

/// [`ActionQueue::wait_idle`](super::ActionQueue::wait_idle): see its docs for the contract
/// and the module docs for the mechanism.
pub(super) fn wait_idle(host: &impl Host, timeout: Duration) -> bool {
    if in_queue(host.queue_id()) {
        return false;
    }
    if host.is_idle() {
        return true;
    }
    let deadline = sync::now().checked_add(timeout);
    loop {
        if sync::deadline_passed(deadline) {
            // A poll (or a deadline already passed): answer without queueing a marker.
            return false;
        }
        let signal = idle_signal(host);
        let remaining = match deadline {
            None => Duration::MAX,
            Some(deadline) => deadline.saturating_duration_since(sync::now()),
        };
        if signal.result(remaining).is_err() {
            // Timed out, or a spawn failed (the signal's error): answer as things stand.
            return host.is_idle();
        }
        // The worker ended the drain that ran the marker: idle, unless new work came in.
        if host.is_idle() {
            return true;
        }
    }
}

/// Registers a `wait_idle` caller: returns the shared signal, once the marker is queued and
/// a worker exists to run it (or a failed spawn has failed the signal). See [`IdleWait`] for
/// why the caller is always woken.
#[cold]
fn idle_signal(host: &impl Host) -> Promise<(), ()> {
    let (signal, queue_marker) = host.idle_wait().register();
    if queue_marker {
        host.queue_marker();
    } else {
        // An earlier caller queued the marker. If no worker is there to run it, its spawn
        // failed (or a `put` is between its push and its swap): try again, and if that fails
        // too, the failure path fails our signal. Had we read a spawner's RUNNING instead,
        // that spawner succeeds (a worker runs the marker) or fails after our registration
        // (see `IdleWait`) and fails our signal.
        host.retry_stalled_spawn();
    }
    signal
}
