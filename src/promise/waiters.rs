//! Waiter nodes and the lock-free stack of them that lives in a promise's state word.
//!
//! A blocked thread or a pending `wait_async` future owns one [`Waiter`], shared through an
//! `Arc` with the stack it is linked into. The stack's head pointer shares one `AtomicUsize`
//! with the promise's tag bits (see [`super::state`]), so "push unless done" and "take every
//! waiter and publish DONE" are each a single atomic operation and no wake-up can be lost
//! between them.
//!
//! A node's `status`:
//!
//! ```text
//!            push (waiter)            take + wake (setter, abandoning drop, pruner)
//!  (new) ───────────────────> WAITING ─────────────────────────────> WOKEN ──┐
//!                               │  ^                                          │
//!                   give up     │  └──────── re-push (waiter) ────────────────┘
//!              (timeout, drop)  v
//!                           CANCELLED ── unlinked and freed by the next prune
//! ```
//!
//! Whoever holds a node in a stack (the stack itself, or a thread that took the whole stack
//! out) holds one `Arc` reference to it, and is the only one who reads or writes its `next`.
//!
//! **Bounded memory.** A waiter that gives up (timeout, dropped future) marks its node
//! CANCELLED and prunes: it takes the whole stack out in one `fetch_and`, drops the cancelled
//! nodes and splices the rest back. So the stack holds the live waiters plus, at most, nodes
//! cancelled while another prune had the stack out, which the next prune frees: a million
//! timed-out waits leave nothing behind.

use super::state::{State, TAGS};
use crate::panics;
use crate::sync::{
    self, thread::Thread, Arc, AtomicU8, AtomicUsize, AtomicWaker, Ordering, UnsafeCell,
};
use std::ptr;
use std::task::Waker;

/// The node is linked into a stack (or held by someone who took the stack out).
pub(crate) const WAITING: u8 = 0;
/// Someone took the node out of the stack and woke it; the stack's reference is gone.
pub(crate) const WOKEN: u8 = 1;
/// The owner gave up waiting; the stack still holds a reference until a prune unlinks it.
pub(crate) const CANCELLED: u8 = 2;

/// How to wake the owner of a node.
enum Wake {
    Thread(Thread),
    Task(AtomicWaker),
}

/// One waiting thread or task. Aligned to 64 so the low six bits of its address are free for
/// the promise's tag bits.
#[repr(align(64))]
pub(crate) struct Waiter {
    status: AtomicU8,
    /// The next node down the stack. Only the holder of the node (see the module docs) touches
    /// it, and a holder learns of the node through an acquiring read of the state word, which
    /// orders it after the previous holder's writes.
    next: UnsafeCell<*const Waiter>,
    wake: Wake,
}

// The tag bits must fit below the alignment of a node's address.
const _: () = assert!(std::mem::align_of::<Waiter>() > TAGS);

// SAFETY: `next` is a raw pointer that only the node's current holder reads or writes, and
// holders hand nodes over through Release/Acquire operations on the state word (module
// docs); `status` is atomic, and `Thread` and `AtomicWaker` are `Send + Sync`.
unsafe impl Send for Waiter {}
// SAFETY: as above.
unsafe impl Sync for Waiter {}

impl Waiter {
    /// A node for the calling thread, woken by `unpark`.
    pub(crate) fn for_thread(thread: Thread) -> Arc<Waiter> {
        Arc::new(Waiter {
            status: AtomicU8::new(WAITING),
            next: UnsafeCell::new(ptr::null()),
            wake: Wake::Thread(thread),
        })
    }

    /// A node for an async task, woken through its `Waker`.
    pub(crate) fn for_task(waker: &Waker) -> Arc<Waiter> {
        let atomic = AtomicWaker::new();
        sync::register_waker(&atomic, waker);
        Arc::new(Waiter {
            status: AtomicU8::new(WAITING),
            next: UnsafeCell::new(ptr::null()),
            wake: Wake::Task(atomic),
        })
    }

    /// Replaces the task's waker (a future may be polled with a new one each time).
    pub(crate) fn register(&self, waker: &Waker) {
        if let Wake::Task(atomic) = &self.wake {
            sync::register_waker(atomic, waker);
        }
    }

    /// Whether a holder took this node out of its stack and woke it.
    pub(crate) fn is_woken(&self) -> bool {
        // ORDERING: Acquire pairs with the Release in `wake_list`; the waiter then re-reads the
        // promise state with Acquire anyway, so this only decides whether to look.
        self.status.load(Ordering::Acquire) == WOKEN
    }

    /// Makes a woken node pushable again. Only the owner calls this, after it saw WOKEN, when
    /// no stack holds the node.
    pub(crate) fn rearm(&self) {
        // ORDERING: Relaxed: the push that follows publishes the node with a Release CAS.
        self.status.store(WAITING, Ordering::Relaxed);
    }

    /// The owner gives up waiting. Returns `false` if a holder woke the node first (then the
    /// stack no longer holds it and there is nothing to prune).
    pub(crate) fn cancel(&self) -> bool {
        // ORDERING: AcqRel decides the WAITING node's fate against a concurrent `wake_list`;
        // Acquire on failure pairs with its Release so the woken owner sees the promise state.
        self.status
            .compare_exchange(WAITING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Pushes `node` onto the stack in `state` unless `state` has any bit of `closed` set.
/// Returns `false` (and keeps the node unlinked) when it is closed.
///
/// # Safety
///
/// - `node` is in no stack and nobody holds it: it is new, or its owner saw it WOKEN (the
///   holder that woke it let go of it) and rearmed it. Pushing a node that a stack still
///   holds would rewrite the `next` that the stack's holder reads.
/// - `state` is a promise's state word: its pointer bits are null or the head of a stack of
///   nodes pushed by `push`, each holding the `Arc` reference the stack owns.
pub(crate) unsafe fn push(state: &AtomicUsize, node: &Arc<Waiter>, closed: usize) -> bool {
    let raw = Arc::into_raw(node.clone());
    // SAFETY: the node is in no stack and nobody else holds it (the caller's obligation), so
    // as a one-node list it is ours to link; `state` is as `link` requires.
    if unsafe { link(state, raw, raw, closed) } {
        return true;
    }
    // SAFETY: `raw` came from `Arc::into_raw` above and was never published.
    drop(unsafe { Arc::from_raw(raw) });
    false
}

/// Links the list from `head` to `tail` in front of the stack in `state` with a CAS, unless
/// `state` has any bit of `closed` set; returns whether it did (if not, the list is still the
/// caller's). The load that sees `closed` is an Acquire one, so the caller may read what the
/// closing write published (the promise's result) without another load.
///
/// # Safety
///
/// The caller holds the list (nobody else can reach its nodes or their `next`), `tail` is
/// its last node, and `state` is a promise's state word whose pointer bits are null or the
/// head of a stack of such nodes, each holding the `Arc` reference the stack owns.
unsafe fn link(
    state: &AtomicUsize,
    head: *const Waiter,
    tail: *const Waiter,
    closed: usize,
) -> bool {
    // ORDERING: Acquire: see the doc comment.
    let mut cur = state.load(Ordering::Acquire);
    loop {
        if cur & closed != 0 {
            return false;
        }
        // SAFETY: we hold the list, so `tail` is alive, and until the CAS publishes it
        // nobody else reads or writes its `next`.
        unsafe { &*tail }
            .next
            .with_mut(|next| unsafe { *next = State(cur).waiters() as *const Waiter });
        // ORDERING: Release publishes the nodes' `next` to whoever takes the stack; Acquire
        // on both outcomes makes the caller's later reads of the state word current.
        match state.compare_exchange_weak(
            cur,
            head as usize | (cur & TAGS),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return true,
            Err(actual) => cur = actual,
        }
    }
}

/// Takes the whole stack out of `state`, leaving the tag bits as they are. The caller now
/// holds every node of the returned list.
pub(crate) fn take(state: &AtomicUsize) -> *const Waiter {
    // ORDERING: AcqRel: Acquire to read the nodes' `next` written before their pushes; Release
    // so a later pusher that reads this value is ordered after what the caller did before.
    State(state.fetch_and(TAGS, Ordering::AcqRel)).waiters() as *const Waiter
}

/// Wakes every node of a list the caller holds and drops the list's references.
///
/// A task's `Waker` is foreign code and may panic in `wake` or in its `Drop`: each such panic
/// is contained and reported (see [`crate::panics`]), and the walk goes on, so every other
/// node is still woken and released and the caller's protocol step (publishing a result,
/// giving up a handle) still completes.
///
/// # Safety
///
/// The caller holds `node` and every node after it: it took them out of a stack with an
/// acquiring read-modify-write (so each `next` written before the node's push is visible),
/// and nobody else can reach them any more. Each node carries one `Arc` reference that the
/// list owns and that this call consumes.
pub(crate) unsafe fn wake_list(mut node: *const Waiter) {
    while !node.is_null() {
        // SAFETY: the caller holds the list (see `# Safety`), so each node is alive (the list
        // owns one `Arc` reference to it) and nobody else touches its `next`.
        let waiter = unsafe { Arc::from_raw(node) };
        // Read `next` before waking: once WOKEN, the owner may re-push the node and rewrite it.
        // SAFETY: as above, the caller holds the node.
        node = waiter.next.with(|next| unsafe { *next });
        // ORDERING: Release pairs with the owner's Acquire in `is_woken`/`cancel`; the owner
        // re-reads the state word to learn why it was woken.
        if waiter
            .status
            .compare_exchange(WAITING, WOKEN, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            match &waiter.wake {
                Wake::Thread(thread) => thread.unpark(),
                Wake::Task(atomic) => {
                    panics::contain("a task's Waker::wake", || atomic.wake());
                }
            }
        }
        release(waiter);
    }
}

/// Drops the list's reference to a node. If it was the last one, a task node's `Waker` is
/// dropped with it, and that foreign `Drop` may panic: contained.
#[inline]
fn release(waiter: Arc<Waiter>) {
    panics::contain("dropping a task's Waker", move || drop(waiter));
}

/// Drops a list without waking anyone (the promise itself is being freed).
///
/// # Safety
///
/// As for [`wake_list`]: the caller holds every node of the list.
pub(crate) unsafe fn drop_list(mut node: *const Waiter) {
    while !node.is_null() {
        // SAFETY: the caller holds every node of the list (`# Safety`).
        let waiter = unsafe { Arc::from_raw(node) };
        // SAFETY: as above.
        node = waiter.next.with(|next| unsafe { *next });
        release(waiter);
    }
}

/// Unlinks and frees the CANCELLED nodes of the stack in `state`. Live nodes go back on the
/// stack; if `state` was closed meanwhile (any bit of `closed`), they are woken instead,
/// because whoever closed it found the stack empty. Returns whether live nodes were put back.
///
/// # Safety
///
/// `state` is a promise's state word: its pointer bits are null or the head of a stack of
/// nodes pushed by [`push`], each holding the `Arc` reference the stack owns (the list that
/// [`take`] hands this call is then one it may walk, free and relink).
pub(crate) unsafe fn prune(state: &AtomicUsize, closed: usize) -> bool {
    let mut node = take(state);
    let mut keep_head: *const Waiter = ptr::null();
    let mut keep_tail: *const Waiter = ptr::null();
    while !node.is_null() {
        // SAFETY: `take` handed this list to us; each node is alive and ours to relink.
        let next = unsafe { &*node }.next.with(|next| unsafe { *next });
        // SAFETY: as above.
        let status = unsafe { &*node }.status.load(Ordering::Relaxed);
        // ORDERING: Relaxed: a stale WAITING only keeps a node one prune longer.
        if status == CANCELLED {
            // SAFETY: drops the stack's reference to a node we hold.
            release(unsafe { Arc::from_raw(node) });
        } else {
            if keep_head.is_null() {
                keep_head = node;
            } else {
                // SAFETY: `keep_tail` is a node we hold.
                unsafe { &*keep_tail }
                    .next
                    .with_mut(|next| unsafe { *next = node });
            }
            keep_tail = node;
        }
        node = next;
    }
    if keep_head.is_null() {
        return false;
    }
    // The kept tail may still point at a node we just freed: end the list here.
    // SAFETY: `keep_tail` is a node we hold.
    unsafe { &*keep_tail }
        .next
        .with_mut(|next| unsafe { *next = ptr::null() });
    // SAFETY: we hold the list from `keep_head` to `keep_tail` (taken above, relinked by us,
    // ended at `keep_tail`), and `state` is a promise's state word (our caller's obligation).
    unsafe { splice(state, keep_head, keep_tail, closed) }
}

/// Puts a held list back on the stack in `state`, in front of what was pushed meanwhile, or
/// wakes it if `state` was closed. Returns whether it was put back.
///
/// # Safety
///
/// The caller holds the list from `head` to `tail` as [`wake_list`] requires (taken out of
/// `state` with an acquiring read-modify-write, nobody else can reach it), `tail` is its last
/// node, and `state` is a promise's state word as for [`push`].
unsafe fn splice(
    state: &AtomicUsize,
    head: *const Waiter,
    tail: *const Waiter,
    closed: usize,
) -> bool {
    // SAFETY: the caller holds the list from `head` to `tail`, and `state` is as `link`
    // requires.
    if unsafe { link(state, head, tail, closed) } {
        return true;
    }
    // Closed meanwhile: whoever closed it found the stack without our list; wake it here.
    // SAFETY: the list is still ours (`link` did not publish it), taken as `wake_list` needs.
    unsafe { wake_list(head) };
    false
}
