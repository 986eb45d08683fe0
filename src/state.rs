//! The bits of a promise's state word.
//!
//! The word is a `usize`: the three low bits are tags, the rest is the address of the top
//! [`Waiter`](crate::waiter::Waiter) of the waiter stack (null when nobody waits; waiters are
//! aligned to 8). One word for both is what makes "register unless done" (a CAS) and "publish
//! DONE and take every waiter" (a CAS that clears the stack) single atomic steps.
//!
//! ```text
//!             set_* claims                set_* publishes: CAS to
//!             fetch_or(CLAIMED)           CLAIMED|DONE|(old & CALLBACKS), stack taken
//!  EMPTY ───────────────────────> SETTING ─────────────────────────────> DONE
//!  (tags 0)                       (CLAIMED)                             (CLAIMED|DONE)
//!   │  ^                           │  ^                                  final: the slot
//!   └──┘ waiters push/prune,       └──┘ same, while the value           holds the result,
//!        `then` CASes CALLBACKS         is being written                 the stack is empty
//! ```
//!
//! The publishing step keeps CALLBACKS as it was (a CAS from the value it read), so once DONE
//! is set the word says for good whether a callback drain by the setter is coming.
//!
//! Who owns what:
//! - the result slot is written only by the thread whose `fetch_or(CLAIMED)` saw no CLAIMED,
//!   between its claim and its publish, and read only after DONE was observed with Acquire;
//! - the waiter stack is owned by the word while the state is not DONE; the publishing CAS
//!   hands it to the setter, which wakes every node;
//! - CALLBACKS says a callback registration began before the promise was done, so the setter
//!   must drain the separate callback stack (see `Promise::then`). It is only ever set while
//!   DONE is clear (by CAS), and never cleared: a `then` that sees DONE without CALLBACKS
//!   knows no drain is coming and runs its callback at once; one that sees DONE with
//!   CALLBACKS queues behind the drain.

/// A setter has won the slot (SETTING or DONE). Set once, by `fetch_or`.
pub(crate) const CLAIMED: usize = 0b001;
/// The result is in the slot and published (DONE). Set once, by the publishing swap.
pub(crate) const DONE: usize = 0b010;
/// A callback registration started before DONE: the setter drains the callback stack.
pub(crate) const CALLBACKS: usize = 0b100;
/// The tag bits; the rest of the word is the waiter stack's head.
pub(crate) const TAGS: usize = CLAIMED | DONE | CALLBACKS;

/// The waiter stack's head held in a state word.
#[inline]
pub(crate) const fn ptr_bits(word: usize) -> usize {
    word & !TAGS
}

/// The handle-count word is `live_handles << 1 | CLONED`.
///
/// CLONED is set by the first clone and never cleared: a count of one means "abandoned" only
/// for a promise that had other handles (a never-cloned promise shared by reference may still
/// be set through that reference).
///
/// A second word, `guards`, keeps the block alive apart from the live count: the live
/// handles together hold one guard, and each drop that leaves a single live handle behind
/// (an *orphaning* drop) holds one more while it wakes that handle's waiters. The block is
/// freed by whoever releases the last guard.
///
/// ```text
///  handles (live << 1 | CLONED)              guards
///   clone:        +1 live (abort on overflow)
///   drop, live>2: -1 live                    
///   drop, live=2: +1 guard, -1 live, take and wake the waiters, -1 guard (orphaning)
///   drop, live=1: -1 guard (the live handles' one); the last guard frees the block
/// ```
///
/// Orphaning is decided from the *live* count alone, so drops may overlap: every transition
/// of the live count to one is made by an orphaning drop, which wakes the waiters after it.
pub(crate) const CLONED: usize = 0b1;
/// One live handle in the handle-count word.
pub(crate) const ONE_HANDLE: usize = 0b10;
/// A handle-count word above this aborts the process, as `Arc` does: so many handles can only
/// come from leaked clones, and wrapping the count would free the block under a live handle.
pub(crate) const MAX_HANDLES_WORD: usize = isize::MAX as usize;

/// How many live handles a handle-count word counts.
#[inline]
pub(crate) const fn live_handles(word: usize) -> usize {
    word >> 1
}
