//! A promise's state word: six tag bits and the head of its waiter stack.
//!
//! The word is a `usize`: the six low bits are tags, the rest is the address of the top
//! [`Waiter`](super::waiters::Waiter) of the waiter stack (null when nobody waits; waiters
//! are aligned to 64). One word for both is what makes "register unless done" (a CAS) and
//! "publish DONE and take every waiter" (a CAS that clears the stack) single atomic steps.
//!
//! ```text
//!             set_* claims              set_* publishes: CAS to
//!             fetch_or(CLAIMED)         CLAIMED|DONE|(old & CALLBACKS), stack taken
//!  EMPTY ─────────────────────> SETTING ─────────────────────────────────────────> DONE
//!  (no tag)                     (CLAIMED)                                   (CLAIMED|DONE,
//!   │  ^                         │  ^                                         maybe CALLBACKS)
//!   └──┘ waiters push/prune;     └──┘ the same, while the value              final: the slot
//!        `then` CASes CALLBACKS       is being written                       holds the result,
//!                                                                            the stack is empty
//! ```
//!
//! A [channel](super::channel) has no SETTING: only its resolver writes the slot, so it
//! needs no claim. Its word starts with RESOLVER, and the resolver's one CAS ends it:
//!
//! ```text
//!                  resolver sets: CAS to CLAIMED|DONE|kept
//!  RESOLVER ──────────────────────────────────────────────> DONE       kept = CALLBACKS|GONE
//!   │  ^     resolver dropped unset: CAS to                             of the old word, and
//!   └──┘ ───────────────────────────────────────────────> ABANDONED    RESOLVER if CALLBACKS
//!   push/prune/then;  CLAIMED|ABANDONED|kept, stack taken   (final)     (cleared after the
//!   last handle: CAS in GONE, stack taken                              callback drain)
//! ```
//!
//! Who owns what:
//! - the result slot is written only by the thread whose `fetch_or(CLAIMED)` saw no CLAIMED,
//!   between its claim and its publish, and read only after DONE was observed with Acquire;
//! - the waiter stack is owned by the word while the state is not final; the CAS that
//!   publishes DONE (or a channel's ABANDONED, or GONE) hands it to the thread that made it,
//!   which wakes every node (see [`super::waiters`]);
//! - CALLBACKS says a callback registration began before the promise was done, so the setter
//!   drains the separate callback stack (see [`super::callbacks`]). It is only ever set while
//!   DONE is clear (by CAS), and the publish keeps it, so once DONE is set the word says for
//!   good whether a drain is coming: a `then` that sees DONE without CALLBACKS runs its
//!   callback at once; one that sees DONE with CALLBACKS queues behind the drain.
//!
//! The channel bits (ABANDONED, RESOLVER, GONE) are never set in a shared promise's word;
//! [`super::channel`] argues their protocol.
//!
//! Every write of the word is a read-modify-write, so all of them form one release sequence:
//! whoever reads the word with Acquire sees every earlier writer's work. The waiter and
//! abandonment arguments rest on that ([`super::handles`]).

/// A setter has won the slot (SETTING or DONE). Set once, by `fetch_or`.
pub(crate) const CLAIMED: usize = 0b001;
/// The result is in the slot and published (DONE). Set once, by the publishing CAS.
pub(crate) const DONE: usize = 0b010;
/// A callback registration started before DONE: the setter drains the callback stack.
pub(crate) const CALLBACKS: usize = 0b100;
/// Channel only: the [`Resolver`](crate::Resolver) was dropped unset. Final, like DONE; set
/// by the CAS that takes the waiter stack, so no waiter misses it.
pub(crate) const ABANDONED: usize = 0b1000;
/// Channel only: the resolver may still touch the block (it is alive, or it is still running
/// or dropping the callbacks after its final CAS). Set at creation, cleared once.
pub(crate) const RESOLVER: usize = 0b1_0000;
/// Channel only: every `Promise` handle is gone (the promise side gave up its guard).
pub(crate) const GONE: usize = 0b10_0000;
/// The tag bits; the rest of the word is the waiter stack's head (waiters are aligned to 64).
pub(crate) const TAGS: usize = CLAIMED | DONE | CALLBACKS | ABANDONED | RESOLVER | GONE;
/// The states in which nothing can change any more but the channel bookkeeping: a waiter
/// that finds one of them does not push (see [`super::waiters::push`]).
pub(crate) const FINAL: usize = DONE | ABANDONED;

/// A value of the state word, read from the atomic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct State(pub(crate) usize);

impl State {
    /// The word of a new, pending promise: no tag, nobody waiting.
    pub(crate) const EMPTY: State = State(0);

    /// The word of a new channel: pending, the resolver alive.
    pub(crate) const CHANNEL: State = State(RESOLVER);

    /// Whether a setter claimed the slot (SETTING or DONE).
    #[inline]
    pub(crate) fn is_claimed(self) -> bool {
        self.0 & CLAIMED != 0
    }

    /// Whether the result is published.
    #[inline]
    pub(crate) fn is_done(self) -> bool {
        self.0 & DONE != 0
    }

    /// Whether the resolver of a channel was dropped unset (final).
    #[inline]
    pub(crate) fn is_abandoned(self) -> bool {
        self.0 & ABANDONED != 0
    }

    /// Whether the promise is done or abandoned: nothing will change it any more.
    #[inline]
    pub(crate) fn is_final(self) -> bool {
        self.0 & FINAL != 0
    }

    /// Whether a channel's resolver may still touch the block.
    #[inline]
    pub(crate) fn resolver_active(self) -> bool {
        self.0 & RESOLVER != 0
    }

    /// Whether every `Promise` handle of a channel is gone.
    #[inline]
    pub(crate) fn handles_gone(self) -> bool {
        self.0 & GONE != 0
    }

    /// Whether a callback registration began before DONE (so a drain is, or was, due).
    #[inline]
    pub(crate) fn has_callbacks(self) -> bool {
        self.0 & CALLBACKS != 0
    }

    /// The waiter stack's head (null if nobody waits).
    #[inline]
    pub(crate) fn waiters(self) -> usize {
        self.0 & !TAGS
    }

    /// The same state with CALLBACKS announced.
    #[inline]
    pub(crate) fn with_callbacks(self) -> State {
        State(self.0 | CALLBACKS)
    }

    /// What the publishing CAS writes over `self`: DONE, CALLBACKS kept, the stack taken.
    #[inline]
    pub(crate) fn published(self) -> State {
        State(CLAIMED | DONE | (self.0 & CALLBACKS))
    }

    /// What a channel resolver's final CAS writes over `self`: `outcome` (DONE or
    /// ABANDONED), CALLBACKS and GONE kept, the stack taken, and RESOLVER kept only if a
    /// callback drain follows (the resolver then clears it after the drain).
    #[inline]
    pub(crate) fn resolved(self, outcome: usize) -> State {
        let keep = self.0 & (CALLBACKS | GONE);
        let busy = if self.has_callbacks() { RESOLVER } else { 0 };
        State(CLAIMED | outcome | keep | busy)
    }
}
