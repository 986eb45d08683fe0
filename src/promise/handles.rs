//! The handle count: how many live `Promise` handles share a block, whether the promise was
//! ever cloned, and what keeps the block alive while a dropping handle still works on it.
//!
//! Two words:
//!
//! - `count` is `live_handles << 1 | CLONED`. CLONED is set by the first clone (or when the
//!   only handle moves into an owned future, which nobody can borrow) and never cleared: one live handle means "abandoned" only for a promise that had other handles (a
//!   never-cloned promise shared by reference may still be set through that reference).
//! - `guards` keeps the block alive apart from the live count: the live handles together
//!   hold one guard, and each *orphaning* drop (one that leaves a single live handle of a
//!   cloned, pending promise, and so must wake that handle's waiters) holds one more while it
//!   wakes them. Whoever gives up the last guard frees the block.
//!
//! ```text
//!  operation                   count (live << 1 | CLONED)        guards
//!  ─────────────────────────   ───────────────────────────────   ─────────────────────────
//!  new                         1 live                            1 (the live handles')
//!  clone                       +1 live, set CLONED;              ·
//!                              abort past isize::MAX
//!  drop, live > 2              -1 live (CAS)                     ·
//!  drop, live = 2, orphaning   -1 live (CAS), then wake waiters  +1 before the CAS, -1 after
//!                                                                the wake
//!  drop, live = 1              ·                                 -1 (the live handles')
//!  last guard given up         ·                                 0: free the block
//! ```
//!
//! **Why no waiter misses its abandonment.** The live count falls to one only through an
//! orphaning drop's CAS, which is followed by taking the waiter stack (an RMW on the
//! promise's state word). A waiter checks the live count after its own push, an RMW on the
//! same word: if the push came first, the take finds the node and wakes it; if the take came
//! first, the push read it (every write of the state word is an RMW, so they form one
//! release sequence), so the CAS happens before the waiter's check, which sees the live count
//! at one — or above one because of a clone, whose own drop is then the orphaning one.
//! Orphaning is decided from the live count alone, so any number of such drops may overlap.
//!
//! **Why the block is freed exactly once, and never under anyone.** Every handle is part of
//! the live handles' guard until it goes; an orphaning drop takes its own guard *before* its
//! CAS makes the other handle the last, so the last handle cannot free the block while the
//! orphaning drop still takes and wakes the waiters.

use crate::sync::{AtomicUsize, Ordering};

/// Set by the first clone, never cleared.
const CLONED: usize = 0b1;
/// One live handle in `count`.
const ONE_HANDLE: usize = 0b10;
/// A `count` above this aborts the process, as `Arc` does: so many handles can only come
/// from leaked clones, and a wrapped count would free the block under a live handle.
const MAX_COUNT: usize = isize::MAX as usize;

/// A value of the `count` word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Count(usize);

impl Count {
    /// How many live handles there are.
    fn live(self) -> usize {
        self.0 >> 1
    }

    /// Whether the promise was ever cloned.
    fn was_cloned(self) -> bool {
        self.0 & CLONED != 0
    }

    /// One live handle fewer.
    fn minus_one(self) -> Count {
        Count(self.0 - ONE_HANDLE)
    }
}

/// The handle count and guards of one promise (see the module docs).
pub(crate) struct Handles {
    /// `live_handles << 1 | CLONED`.
    count: AtomicUsize,
    /// One for the live handles together, plus one per orphaning drop under way.
    guards: AtomicUsize,
}

impl Handles {
    /// The count of a new promise: one live handle, never cloned.
    pub(crate) fn new() -> Self {
        Handles {
            count: AtomicUsize::new(ONE_HANDLE),
            guards: AtomicUsize::new(1),
        }
    }

    /// Counts a new handle, made from an existing one.
    ///
    /// # Aborts
    ///
    /// If the count would pass `isize::MAX`, as `Arc` does.
    #[inline]
    pub(crate) fn add(&self) {
        // One CAS both counts the handle and sets CLONED (a `fetch_add` would need a second
        // RMW for the bit on the first clone).
        // ORDERING: Relaxed, as for `Arc`: the new handle is made from an existing one, so
        // the block is alive; whoever receives the clone synchronises through its own means.
        // No handle can be dropped before this clone returns (the original is borrowed), so
        // every later decrement comes after this in the word's modification order and
        // carries CLONED along.
        let mut old = self.count.load(Ordering::Relaxed);
        loop {
            if old > MAX_COUNT {
                // The clones were leaked (`mem::forget`): going on would let the count wrap
                // and free the block under a live handle.
                std::process::abort();
            }
            match self.count.compare_exchange_weak(
                old,
                (old + ONE_HANDLE) | CLONED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => old = actual,
            }
        }
    }

    /// Whether the promise can no longer be set by anyone but the caller's handle: it had
    /// other handles and they are all gone.
    #[inline]
    pub(crate) fn is_abandoned(&self) -> bool {
        // ORDERING: Acquire pairs with the Release of the handle that went away, so if it set
        // the promise first, the caller's next DONE check sees it.
        let count = Count(self.count.load(Ordering::Acquire));
        count.live() == 1 && count.was_cloned()
    }

    /// Marks the promise as cloned without adding a handle: for a handle that moves into a
    /// place (an owned future) from which no reference to it can be lent, so that its being
    /// the last live handle means nobody else can set the promise.
    #[inline]
    pub(crate) fn mark_cloned(&self) {
        // ORDERING: Relaxed, as the bit in `add`: it is read with the count by the handle
        // that set it, or carried along by every later RMW of the count.
        self.count.fetch_or(CLONED, Ordering::Relaxed);
    }

    /// Whether the caller's handle is the only live one, by the count alone (for a channel,
    /// which never takes orphaning guards).
    #[inline]
    pub(crate) fn is_only_live(&self) -> bool {
        // ORDERING: Acquire, as in `is_unique`.
        Count(self.count.load(Ordering::Acquire)).live() == 1
    }

    /// Whether the caller's handle is the only live one and no orphaning drop holds a guard:
    /// then nobody else can reach the block through the handles.
    #[inline]
    pub(crate) fn is_unique(&self) -> bool {
        // ORDERING: Acquire, as in `remove`'s fast path: orders every other handle's work
        // before the caller's use of the block.
        Count(self.count.load(Ordering::Acquire)).live() == 1
            && self.guards.load(Ordering::Acquire) == 1
    }

    /// Gives up one handle. (`self` is all atomics, so another handle may free the block
    /// while this call returns, as with `Arc`'s counts; the closures must capture nothing
    /// but atomics of the block either.) `pending` says whether the promise is still unset;
    /// if this drop
    /// leaves one live handle of a cloned, pending promise, `orphan` runs (it wakes the
    /// waiters) while the block is kept alive. Returns `true` when the caller gave up the
    /// last guard and must free the block.
    #[inline]
    pub(crate) fn remove(&self, pending: impl Fn() -> bool, orphan: impl FnOnce()) -> bool {
        // ORDERING: Acquire on both: if this is the only live handle and no orphaning drop
        // still holds a guard, no other handle or guard can appear (both need a handle), and
        // the caller frees the block; Acquire orders that after every other handle's Release
        // decrement and every guard's Release, like `Arc`'s fence.
        if self.is_unique() {
            return true;
        }
        self.remove_shared(pending, orphan)
    }

    #[inline(never)]
    fn remove_shared(&self, pending: impl Fn() -> bool, orphan: impl FnOnce()) -> bool {
        let mut guarded = false;
        // ORDERING: Acquire, as in `remove`.
        let mut count = Count(self.count.load(Ordering::Acquire));
        let orphaning = loop {
            if count.live() == 1 {
                // The last live handle: below, give up the live handles' guard. If we took a
                // guard to orphan and the other handle went first, give that one up too; it
                // cannot be the last, as we still hold the live handles' one.
                if guarded {
                    let last = self.release_guard();
                    debug_assert!(!last, "the live handles' guard is still held");
                }
                break false;
            }
            let orphaning = count.live() == 2 && count.was_cloned() && pending();
            if orphaning && !guarded {
                // Keep the block alive while we wake the waiters, whatever the other handle
                // does. ORDERING: Relaxed: the Release CAS below carries it to whoever reads
                // the live count we leave, before they can give up the live handles' guard.
                self.guards.fetch_add(1, Ordering::Relaxed);
                guarded = true;
            }
            // ORDERING: AcqRel: Release so whoever ends up last (and frees, or reads the slot)
            // sees what this handle did; Acquire to re-read a current count on failure.
            match self.count.compare_exchange_weak(
                count.0,
                count.minus_one().0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) if !guarded => return false,
                Ok(_) => break orphaning,
                Err(actual) => count = Count(actual),
            }
        };
        if orphaning {
            orphan();
        }
        // Either our orphaning guard (also when the count moved on and we did not orphan
        // after all), or the live handles' guard: we were the last live handle.
        self.release_guard()
    }

    /// Gives up one guard; `true` if it was the last.
    #[inline]
    fn release_guard(&self) -> bool {
        // ORDERING: AcqRel, as for `Arc`'s decrement: Release so the freeing thread sees what
        // this one did; Acquire so, if we free, we see what every other guard holder did.
        self.guards.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Sets the count word by hand, for the overflow test.
    #[cfg(test)]
    pub(crate) fn set_count_for_test(&self, live: usize) {
        // ORDERING: Relaxed: test set-up on a promise no other thread can see yet.
        self.count.store(live << 1 | CLONED, Ordering::Relaxed);
    }

    /// The count word's limit in live handles, for the overflow test.
    #[cfg(test)]
    pub(crate) const MAX_LIVE: usize = MAX_COUNT >> 1;
}
