//! The `then` callbacks of one promise: a lock-free stack that registrars push onto and the
//! setter drains, in registration order, until it can close it.
//!
//! ```text
//!                 then: push (CAS)              setter: swap(null) takes a batch
//!   EMPTY (null) ───────────────────> LIST ─────────────────────────────────────> EMPTY
//!     │   ^                                                                     (batch runs,
//!     │   └─────────────────── the setter runs each batch, oldest first ─────── then look
//!     │                                                                           again)
//!     └── setter: CAS(null → CLOSED), only after its last batch has run ──> CLOSED (final:
//!                                                                           `then` runs at once)
//! ```
//!
//! Whether a drain is coming is said by the promise's state word (CALLBACKS, see
//! [`super::state`]): a `then` pushes here only if CALLBACKS is set, which happens only
//! before DONE, so the setter, whose publish reads it, always drains a stack that was pushed
//! to.
//!
//! **Why the order holds.** A `then` that sees the promise done, with a drain coming, pushes
//! its callback instead of running it, unless the stack is already closed. The setter takes
//! the stack (leaving it empty, not closed), runs the batch oldest first, and looks again; it
//! closes the stack only with a CAS from *empty*, after the last batch has run. So a callback
//! registered after another one (in happens-before order) is in the same batch after it, in
//! a later batch, or runs at once on its own thread after reading CLOSED, which the setter
//! published (Release) after every earlier callback returned.
//!
//! **Why no callback is lost.** A node is pushed only while the stack is not CLOSED (the CAS
//! fails on CLOSED), and the setter closes only an empty stack, so every pushed node is in a
//! batch the setter takes. A promise dropped unset still holds its stack: [`Callbacks`]'s
//! `Drop` drops those callbacks unrun.

use crate::panics;
use crate::sync::{self, AtomicPtr, Ordering};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

/// A registered callback.
pub(crate) type Callback<T, E> = Box<dyn FnOnce(Result<&T, &E>) + Send>;

/// A node of the stack.
struct Node<T, E> {
    /// Written by the registrar before the CAS that publishes the node; read by the setter
    /// after the swap that takes the stack.
    next: *mut Node<T, E>,
    f: Callback<T, E>,
}

/// The stack's value once the setter has closed it. It is the address just past a node at
/// address 0, which no heap allocation can have; it is only compared, never dereferenced.
fn closed<T, E>() -> *mut Node<T, E> {
    ptr::null_mut::<Node<T, E>>().wrapping_add(1)
}

/// The callback stack of one promise.
pub(crate) struct Callbacks<T, E> {
    /// Newest first; [`closed`] once the setter has run everything.
    head: AtomicPtr<Node<T, E>>,
}

impl<T, E> Callbacks<T, E> {
    pub(crate) fn new() -> Self {
        Callbacks {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Whether the setter has run every callback and closed the stack. A `true` (read with
    /// Acquire) orders the caller after every callback the setter ran.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        // ORDERING: Acquire pairs with the setter's Release close (see `drain`).
        self.head.load(Ordering::Acquire) == closed()
    }

    /// Queues `f` for the setter's drain. Hands it back if the stack is closed (then the
    /// caller runs it: every earlier callback has run, and the Acquire read of CLOSED orders
    /// the caller after them).
    pub(crate) fn push(&self, f: Callback<T, E>) -> Result<(), Callback<T, E>> {
        let node = sync::boxed::into_raw(Node {
            next: ptr::null_mut(),
            f,
        });
        // ORDERING: Acquire: a CLOSED head orders the caller after the setter's callbacks.
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            if head == closed() {
                // SAFETY: the node came from `boxed::into_raw` above and was never published;
                // we still own it.
                let node = unsafe { sync::boxed::take(node) };
                return Err(node.f);
            }
            // SAFETY: the node is not published yet; we are its only user.
            unsafe { (*node).next = head };
            // ORDERING: Release publishes the node's contents to the setter's Acquire swap;
            // Acquire on failure, as for the load above. (A push-only stack has no ABA
            // problem: if the head was taken and a new node got the same address, linking
            // to that address links to the new node, which is the head.)
            match self
                .head
                .compare_exchange_weak(head, node, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(actual) => head = actual,
            }
        }
    }

    /// Runs every queued callback with `result`, batch by batch in registration order, until
    /// it can close an empty stack (see the module docs). Each callback's panic is contained
    /// and reported.
    ///
    /// Called once, by the setter, after it published DONE with CALLBACKS set.
    pub(crate) fn drain(&self, result: Result<&T, &E>) {
        self.drain_with(|f| run(f, result));
    }

    /// Drops every queued callback unrun, batch by batch, until it can close an empty stack:
    /// [`drain`](Callbacks::drain) for a channel whose resolver was dropped unset (so that a
    /// `map` of it, whose resolver a callback holds, is abandoned at once). A panicking
    /// callback `Drop` is contained and reported: this runs inside the resolver's `Drop`,
    /// maybe while its thread unwinds.
    ///
    /// Called once, by the resolver's drop, after it published ABANDONED with CALLBACKS set.
    pub(crate) fn discard(&self) {
        self.drain_with(|f| {
            panics::contain("dropping an unrun promise callback", move || drop(f));
        });
    }

    /// The drain loop of [`drain`](Callbacks::drain) and [`discard`](Callbacks::discard):
    /// hands each callback to `each`, in registration order, until it closes the stack.
    fn drain_with(&self, mut each: impl FnMut(Callback<T, E>)) {
        loop {
            // ORDERING: AcqRel: Acquire to read the nodes registrars pushed with Release;
            // Release keeps this chain of RMWs a release sequence for the closing CAS.
            let mut node = self.head.swap(ptr::null_mut(), Ordering::AcqRel);
            if node.is_null() {
                // ORDERING: Release: a registrar that reads CLOSED (Acquire) happens after
                // every callback this loop ran. Failure: someone pushed; take it next round.
                if self
                    .head
                    .compare_exchange(
                        ptr::null_mut(),
                        closed(),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            // The stack is newest first; reverse the batch to run it in registration order.
            let mut ordered: *mut Node<T, E> = ptr::null_mut();
            while !node.is_null() {
                // SAFETY: the swap handed us the batch; every node is a live `Box` we own.
                let next = unsafe { (*node).next };
                // SAFETY: as above.
                unsafe { (*node).next = ordered };
                ordered = node;
                node = next;
            }
            while !ordered.is_null() {
                // SAFETY: each node came from `boxed::into_raw` in `push` and is ours alone.
                let node = unsafe { sync::boxed::take(ordered) };
                ordered = node.next;
                each(node.f);
            }
        }
    }
}

/// Runs one callback, catching and reporting a panic so that it reaches neither the setter
/// nor the other callbacks.
#[inline]
pub(crate) fn run<T, E>(f: impl FnOnce(Result<&T, &E>), result: Result<&T, &E>) {
    panics::contain("a promise callback", move || f(result));
}

impl<T, E> Drop for Callbacks<T, E> {
    /// Drops the callbacks of a promise that was never set, unrun. If dropping one panics,
    /// the rest are dropped anyway and the first panic is re-raised afterwards, as std's
    /// containers do.
    #[inline]
    fn drop(&mut self) {
        // ORDERING: Relaxed: the last handle owns the block; its Acquire on the handle count
        // ordered every registrar's push before this.
        let node = self.head.load(Ordering::Relaxed);
        if node.is_null() || node == closed() {
            return;
        }
        drop_unrun(node);
    }
}

/// Drops the callbacks of a stack from `node` on, unrun (off the hot path of a promise's
/// drop): the rest of [`Callbacks`]' `Drop`.
#[cold]
#[inline(never)]
fn drop_unrun<T, E>(mut node: *mut Node<T, E>) {
    let mut first_panic = None;
    while !node.is_null() {
        // SAFETY: nobody else can reach the stack now; each node came from
        // `boxed::into_raw` in `push` and is ours.
        let boxed = unsafe { sync::boxed::take(node) };
        node = boxed.next;
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(move || drop(boxed))) {
            first_panic.get_or_insert(payload);
        }
    }
    if let Some(payload) = first_panic {
        panic::resume_unwind(payload);
    }
}
