//! Who may set a promise, and who therefore must not wait for it while it is pending.
//!
//! Both the promise (its deadlock check) and the queue (the setter of a `submit`ted action's
//! promise, and the identity of its worker thread) need this, so it lives here and both
//! import it; neither imports the other for it.
//!
//! A promise records one [`Setter`] when it is made. A wait on it while it is pending asks
//! [`Setter::is_current`]: for a thread, whether the caller is that thread (the cached id of
//! [`thread::current_id`]); for a queue, whether the caller is that queue's worker, which
//! a dedicated worker announces in the thread-local [`CURRENT_QUEUE`] for as long as it runs
//! (and clears on its way out, however it leaves), and a batch on a borrowed thread (a pool's
//! or an executor's) in a chain of frames on its own stack ([`as_queue`]): batches nest when a
//! foreign executor runs a task inside another queue's action, and a wait for any queue of
//! the chain could never end ([`in_queue`]). Queue ids come from [`next_queue_id`] and are
//! never 0, which marks "no queue".
//!
//! A third kind of setter is a promise's own callback drain: a [`map`](crate::Promise::map)
//! or [`and_then`](crate::Promise::and_then) promise is set by a callback of the promise it
//! was made from (its *origin*), and callbacks run in registration order, one after the
//! other. So a callback that waits for a pending promise made from the very promise whose
//! callbacks this thread is running waits for a callback queued behind itself: the wait
//! could never end. The setter announces each drain it runs in a chain of frames on its own
//! stack ([`draining`]), and a wait asks [`is_draining`] for the origin it records.

use crate::sync::{self, thread, StdAtomicUsize};
use std::cell::Cell;

/// Which thread, if any, must not wait for the promise while it is pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Setter {
    /// No deadlock check.
    Nobody,
    /// This thread will set it.
    Thread(thread::ThreadId),
    /// An action of the [`ActionQueue`](crate::ActionQueue) with this id will set it, so
    /// waiting from inside an action of that queue can never end.
    Queue(usize),
}

impl Setter {
    /// In debug builds: reports (once per process) a promise with a designated setter
    /// thread that is set on another thread. That is the mistake behind `Deadlock` errors
    /// that come and go with timing: the creating thread's wait fails only if it comes
    /// before the set. The once-flag is a plain std `Once` even under loom: it guards a log
    /// line, not a protocol.
    #[cfg(debug_assertions)]
    #[cold]
    pub(crate) fn check_set_here(self) {
        if let Setter::Thread(id) = self {
            let here = thread::current_id();
            if here != id {
                static REPORTED: sync::StdOnce = sync::StdOnce::new();
                REPORTED.call_once(|| {
                    crate::panics::warn(format_args!(
                        "orderslip: a promise whose designated setter is thread {id:?} was \
                         set on thread {here:?}. Promise::new() designates the creating \
                         thread, and a wait on that thread while the promise is pending \
                         fails with PromiseError::Deadlock, so whether it fails depends on \
                         timing. If another thread sets the promise, create it with \
                         Promise::with_setter(None). (Reported once per process, in debug \
                         builds.)"
                    ))
                });
            }
        }
    }

    /// Whether the calling thread is the designated setter: waiting here for the pending
    /// promise could never end.
    pub(crate) fn is_current(self) -> bool {
        match self {
            Setter::Nobody => false,
            Setter::Thread(id) => thread::current_id() == id,
            Setter::Queue(id) => in_queue(id),
        }
    }
}

sync::thread_locals! {
    /// The id of the queue whose dedicated worker is this thread (0: none).
    static CURRENT_QUEUE: Cell<usize> = const { Cell::new(0) };
    /// The innermost batch of a queue on borrowed threads that this thread runs: the address
    /// of its [`BatchFrame`] on this thread's stack (0: none).
    static BATCHES: Cell<usize> = const { Cell::new(0) };
    /// The innermost callback drain this thread runs: the address of its [`DrainFrame`] on
    /// this thread's stack (0: none).
    static DRAINING: Cell<usize> = const { Cell::new(0) };
}

/// One callback drain under way on this thread; frames of nested drains (a callback that
/// sets another promise) link outwards.
struct DrainFrame {
    /// The address of the promise block whose callbacks run.
    origin: usize,
    /// The enclosing frame's address (0: none).
    outer: usize,
}

/// Runs `drain` (the callback drain of the promise block at `origin`) with the drain
/// announced to [`is_draining`] on this thread. Allocates nothing: the frame lives on this
/// stack frame, and the chain is restored on the way out, also when unwinding.
pub(crate) fn draining<R>(origin: usize, drain: impl FnOnce() -> R) -> R {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            // `try_with`: never fails while the thread runs code; be lenient at its end.
            let _ = DRAINING.try_with(|top| top.set(self.0));
        }
    }
    let frame = DrainFrame {
        origin,
        outer: DRAINING.with(Cell::get),
    };
    let _restore = Restore(frame.outer);
    DRAINING.with(|top| top.set(&frame as *const DrainFrame as usize));
    drain()
}

/// Whether this thread is running the callback drain of the promise block at `origin`
/// (at any depth of nesting).
pub(crate) fn is_draining(origin: usize) -> bool {
    let mut frame = DRAINING.with(Cell::get);
    while frame != 0 {
        // SAFETY: every address in the chain is a `DrainFrame` of a `draining` call that is
        // still running on this thread (each call unlinks its frame before it returns or
        // unwinds), so it is alive; frames are only read.
        let current = unsafe { &*(frame as *const DrainFrame) };
        if current.origin == origin {
            return true;
        }
        frame = current.outer;
    }
    false
}

/// Whether the calling thread is running an action of queue `id`: it is that queue's
/// dedicated worker, or a batch of that queue runs on this thread, at any depth (a batch of
/// another queue may run inside one of its actions: a foreign executor may run a task
/// there). A wait for that queue could never end.
pub(crate) fn in_queue(id: usize) -> bool {
    if CURRENT_QUEUE.with(Cell::get) == id {
        return true;
    }
    let mut frame = BATCHES.with(Cell::get);
    while frame != 0 {
        // SAFETY: every address in the chain is a `BatchFrame` of an `as_queue` call that is
        // still running on this thread (each call unlinks its frame before it returns or
        // unwinds), so it is alive; frames are only read.
        let current = unsafe { &*(frame as *const BatchFrame) };
        if current.id == id {
            return true;
        }
        frame = current.outer;
    }
    false
}

/// Called by a dedicated worker thread as it starts: from now on this thread is queue
/// `id`'s worker, and waits for that queue's promises fail with `Deadlock`.
pub(crate) fn enter_queue(id: usize) {
    CURRENT_QUEUE.with(|current| current.set(id));
}

/// One batch of a queue running on this thread; frames of nested batches link outwards.
struct BatchFrame {
    /// The queue's id.
    id: usize,
    /// The enclosing frame's address (0: none).
    outer: usize,
}

/// Runs `f` (a batch of queue `id`'s actions on a borrowed thread: a pool's, or a foreign
/// executor's) as that queue's worker, announced to [`in_queue`] on this thread for as long
/// as it runs. Allocates nothing: the frame lives on this stack frame, and the chain is
/// restored on the way out, also when unwinding.
pub(crate) fn as_queue<R>(id: usize, f: impl FnOnce() -> R) -> R {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            // `try_with`: never fails while the thread runs code; be lenient at its end.
            let _ = BATCHES.try_with(|top| top.set(self.0));
        }
    }
    let frame = BatchFrame {
        id,
        outer: BATCHES.with(Cell::get),
    };
    let _restore = Restore(frame.outer);
    BATCHES.with(|top| top.set(&frame as *const BatchFrame as usize));
    f()
}

/// Called by a dedicated worker thread on its way out (also while it unwinds): this thread is no
/// queue's worker any more. `try_with`: the thread is ending; its thread-locals may be going
/// too.
pub(crate) fn leave_queue() {
    let _ = CURRENT_QUEUE.try_with(|id| id.set(0));
}

/// A process-wide source of queue ids (for the deadlock check of
/// [`ActionQueue::submit`](crate::ActionQueue::submit)); never 0.
pub(crate) fn next_queue_id() -> usize {
    static NEXT: StdAtomicUsize = StdAtomicUsize::new(1);
    // ORDERING: Relaxed: it only hands out distinct numbers, which the RMW alone guarantees;
    // nothing is published with them.
    NEXT.fetch_add(1, sync::Ordering::Relaxed)
}
