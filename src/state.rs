//! The bits of a promise's state word.
//!
//! The word is a `usize`: the three low bits are tags, the rest is the address of the top
//! [`Waiter`](crate::waiter::Waiter) of the waiter stack (null when nobody waits; waiters are
//! aligned to 8). One word for both is what makes "register unless done" (a CAS) and "publish
//! DONE and take every waiter" (a swap) single atomic steps.
//!
//! ```text
//!             set_* claims                set_* publishes
//!             fetch_or(CLAIMED)           swap(CLAIMED|DONE|CALLBACKS)
//!  EMPTY ───────────────────────> SETTING ─────────────────────────────> DONE
//!  (tags 0)                       (CLAIMED)                             (CLAIMED|DONE)
//!   │  ^                           │  ^                                  final: the slot
//!   └──┘ waiters push/prune,       └──┘ same, while the value           holds the result,
//!        callbacks set CALLBACKS        is being written                 the stack is empty
//! ```
//!
//! Who owns what:
//! - the result slot is written only by the thread whose `fetch_or(CLAIMED)` saw no CLAIMED,
//!   between its claim and its publish, and read only after DONE was observed with Acquire;
//! - the waiter stack is owned by the word while the state is not DONE; the publishing swap
//!   hands it to the setter, which wakes every node;
//! - CALLBACKS says a callback registration has begun, so the setter must close the separate
//!   callback stack; it is never cleared.

/// A setter has won the slot (SETTING or DONE). Set once, by `fetch_or`.
pub(crate) const CLAIMED: usize = 0b001;
/// The result is in the slot and published (DONE). Set once, by the publishing swap.
pub(crate) const DONE: usize = 0b010;
/// A callback registration has started: the setter must close the callback stack.
pub(crate) const CALLBACKS: usize = 0b100;
/// The tag bits; the rest of the word is the waiter stack's head.
pub(crate) const TAGS: usize = CLAIMED | DONE | CALLBACKS;

/// The waiter stack's head held in a state word.
#[inline]
pub(crate) const fn ptr_bits(word: usize) -> usize {
    word & !TAGS
}

/// The handle-count word is `handles << 2 | LEAVING | CLONED`.
///
/// CLONED is set by the first clone and never cleared: a count of one means "abandoned" only
/// for a promise that had other handles (a never-cloned promise shared by reference may still
/// be set through that reference).
pub(crate) const CLONED: usize = 0b01;
/// Set while the second-to-last handle of a pending promise is being dropped: that handle
/// wakes the waiters before it gives up its count (so the block cannot be freed under it),
/// and waiters count it as gone already.
pub(crate) const LEAVING: usize = 0b10;
/// One handle in the handle-count word.
pub(crate) const ONE_HANDLE: usize = 0b100;

/// How many handles a handle-count word says are live (not counting one that is LEAVING).
#[inline]
pub(crate) const fn live_handles(word: usize) -> usize {
    (word >> 2) - ((word & LEAVING) >> 1)
}
