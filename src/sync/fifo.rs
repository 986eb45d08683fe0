//! [`Fifo`]: the action queue's lock-free FIFO, many producers and **one consumer** at a
//! time, sized for ten thousand mostly idle queues (std backend only; under loom the shim's
//! `Mutex<VecDeque>` stand-in takes its place, as it does for `SegQueue`).
//!
//! Why not `crossbeam_queue::SegQueue`, which the queue used before: it is many-consumer,
//! pads its head and tail to 128 bytes each (256 bytes, which also make the whole queue block
//! 128-aligned), and keeps a block of 31 slots (1,248 bytes for an action) after use: 1.9 KB
//! for an idle queue that has run work. Here the head and tail share a line (the consumer is
//! one thread; contention between it and the producers is what a serial queue has anyway),
//! and a block holds [`BLOCK_CAP`] = 15 slots (608 bytes for an action), so an idle queue
//! costs about 0.8 KB. One consumer also makes popping simpler than `SegQueue`'s: no reader
//! can still be inside a block the consumer has finished, so the consumer frees it at once.
//!
//! # Layout and protocol
//!
//! Positions count up from 0; position `p` is offset `p % LAP` of block number `p / LAP`,
//! and the offset `BLOCK_CAP` (= `LAP - 1`) is no slot: it marks a tail whose block is full
//! while the next block is being installed.
//!
//! - **push**: read `tail` and `tail_block`; claim position `tail` with a CAS to `tail + 1`.
//!   The producer that claims a block's last slot installs the next block (allocated before
//!   its CAS, so nothing allocates while others wait): it stores `tail_block`, moves `tail`
//!   past the marker, links `block.next`, then writes its value. Every producer publishes
//!   its value by setting its slot's `written` flag (Release), its last access to the block.
//!   The very first push installs the first block in `tail_block` (CAS from null) and
//!   `head_block`.
//! - **pop** (the one consumer): empty if `head` equals `tail` (a `tail` at the marker
//!   counts as the next block's start); else wait for the slot's `written` flag (a producer
//!   that claimed it may still be writing: a brief spin), read the value, and advance
//!   `head`. After a block's last slot, wait for `next`, move there and free the old block:
//!   the consumer has waited for every slot's `written` store and for the `next` store, the
//!   last accesses any producer makes to that block, and a producer that still holds a
//!   pointer to it from before its CAS failed never dereferences it (it only dereferences
//!   the block after a successful CAS, which pins the position to that very block).
//! - **is_empty / len**: snapshots from any thread, read with SeqCst as `SegQueue`'s are.

use crossbeam_utils::Backoff;
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// Positions per block, the marker included.
const LAP: usize = 16;
/// Slots per block.
pub(crate) const BLOCK_CAP: usize = LAP - 1;

struct Slot<T> {
    value: UnsafeCell<MaybeUninit<T>>,
    /// Set (Release) by the producer once `value` is written.
    written: AtomicBool,
}

struct Block<T> {
    /// The next block, linked by the producer that claimed this block's last slot.
    next: AtomicPtr<Block<T>>,
    slots: [Slot<T>; BLOCK_CAP],
}

impl<T> Block<T> {
    fn alloc() -> *mut Block<T> {
        Box::into_raw(Box::new(Block {
            next: AtomicPtr::new(ptr::null_mut()),
            slots: std::array::from_fn(|_| Slot {
                value: UnsafeCell::new(MaybeUninit::uninit()),
                written: AtomicBool::new(false),
            }),
        }))
    }
}

/// A lock-free unbounded FIFO with many producers and one consumer at a time (see the
/// module docs).
pub(crate) struct Fifo<T> {
    /// The next position to pop; written by the consumer only.
    head: AtomicUsize,
    /// The block `head` is in (null until the first push installs one); written by the
    /// consumer, and once by the first push.
    head_block: AtomicPtr<Block<T>>,
    /// The next position to claim.
    tail: AtomicUsize,
    /// The block `tail` is in (null before the first push).
    tail_block: AtomicPtr<Block<T>>,
}

// SAFETY: values move from producer threads to the consumer thread (so `T: Send`); the slots
// are handed over through the `written` flags and positions as argued in the module docs.
unsafe impl<T: Send> Send for Fifo<T> {}
// SAFETY: as above: shared use hands each value from one producer to the one consumer.
unsafe impl<T: Send> Sync for Fifo<T> {}

/// The position after the marker, if `pos` is one; else `pos`.
#[inline]
fn past_marker(pos: usize) -> usize {
    if pos % LAP == BLOCK_CAP {
        pos + 1
    } else {
        pos
    }
}

/// How many slots come before position `pos` (markers not counted).
#[inline]
fn slots_before(pos: usize) -> usize {
    (pos / LAP) * BLOCK_CAP + (pos % LAP).min(BLOCK_CAP)
}

impl<T> Fifo<T> {
    pub(crate) const fn new() -> Self {
        Fifo {
            head: AtomicUsize::new(0),
            head_block: AtomicPtr::new(ptr::null_mut()),
            tail: AtomicUsize::new(0),
            tail_block: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Appends `value`. Lock-free; allocates one block per [`BLOCK_CAP`] pushes.
    pub(crate) fn push(&self, value: T) {
        let backoff = Backoff::new();
        // ORDERING: Acquire: reads the `tail` written after the `tail_block` store of the
        // current block (see below), so the block loaded next is at least that one.
        let mut tail = self.tail.load(Ordering::Acquire);
        // ORDERING: Acquire: the block's initialisation (its allocation) is visible.
        let mut block = self.tail_block.load(Ordering::Acquire);
        let mut next_block: *mut Block<T> = ptr::null_mut();
        loop {
            let offset = tail % LAP;
            if offset == BLOCK_CAP {
                // Another producer is installing the next block: wait for it.
                backoff.snooze();
                // ORDERING: Acquire, as above.
                tail = self.tail.load(Ordering::Acquire);
                // ORDERING: Acquire, as above.
                block = self.tail_block.load(Ordering::Acquire);
                continue;
            }
            // Claiming the last slot: allocate the next block before the CAS, so that the
            // others wait for no allocation.
            if offset + 1 == BLOCK_CAP && next_block.is_null() {
                next_block = Block::alloc();
            }
            if block.is_null() {
                // The very first push: install the first block.
                let first = Block::<T>::alloc();
                // ORDERING: Release publishes the block's initialisation; Acquire on failure
                // reads the winner's block.
                match self.tail_block.compare_exchange(
                    ptr::null_mut(),
                    first,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        // ORDERING: Release: the consumer's Acquire load sees the block.
                        self.head_block.store(first, Ordering::Release);
                        block = first;
                    }
                    Err(winner) => {
                        // SAFETY: `first` came from `Block::alloc` and was never shared.
                        drop(unsafe { Box::from_raw(first) });
                        block = winner;
                    }
                }
            }
            // ORDERING: SeqCst on success (as `SegQueue`): the claim is the push's point in
            // the order that `is_empty`'s SeqCst loads read; Acquire on failure, as the load.
            match self.tail.compare_exchange_weak(
                tail,
                tail + 1,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // SAFETY: the CAS claimed position `tail`, which lies in `block`: a
                    // position's block is installed (tail_block stored) before `tail` can
                    // reach the position, and we read `block` after reading `tail` (so it is
                    // that block or a later one, and a later one would have moved `tail`
                    // past our position, failing the CAS). The consumer frees a block only
                    // after every slot of it is written, ours included, so it is alive.
                    let block_ref = unsafe { &*block };
                    if offset + 1 == BLOCK_CAP {
                        // We claimed the last slot: install the next block.
                        let next = next_block;
                        next_block = ptr::null_mut();
                        // ORDERING: Release: producers that read the `tail` below (Acquire)
                        // see the new block's pointer and initialisation.
                        self.tail_block.store(next, Ordering::Release);
                        // Past the marker. ORDERING: Release, as the store above.
                        self.tail.fetch_add(1, Ordering::Release);
                        // ORDERING: Release: the consumer's Acquire load sees the block.
                        block_ref.next.store(next, Ordering::Release);
                    }
                    let slot = &block_ref.slots[offset];
                    // SAFETY: position `tail` is ours alone (the CAS), and the consumer reads
                    // the slot only after `written`, which we set below.
                    unsafe { slot.value.get().write(MaybeUninit::new(value)) };
                    // ORDERING: Release: the consumer's Acquire load of `written` sees the
                    // value. Our last access to this block.
                    slot.written.store(true, Ordering::Release);
                    break;
                }
                Err(current) => {
                    tail = current;
                    // ORDERING: Acquire, as above.
                    block = self.tail_block.load(Ordering::Acquire);
                    backoff.spin();
                }
            }
        }
        if !next_block.is_null() {
            // Allocated for a last slot that another producer claimed.
            // SAFETY: `next_block` came from `Block::alloc` and was never shared.
            drop(unsafe { Box::from_raw(next_block) });
        }
    }

    /// Removes the oldest value, if any.
    ///
    /// # Safety
    ///
    /// Only one thread at a time may pop: the caller must be the queue's one consumer (the
    /// worker or batch that owns the queue's scheduled state, or its drop).
    pub(crate) unsafe fn pop(&self) -> Option<T> {
        // ORDERING: Relaxed: only the consumer writes `head`, and the caller is it (or was
        // ordered after the previous one by the queue's state hand-over).
        let head = self.head.load(Ordering::Relaxed);
        // ORDERING: SeqCst, as `is_empty` (and Acquire: a claimed position's block is
        // installed, see `push`).
        let tail = self.tail.load(Ordering::SeqCst);
        if head == past_marker(tail) {
            return None;
        }
        let offset = head % LAP;
        let backoff = Backoff::new();
        let mut block = self.head_block.load(Ordering::Acquire);
        while block.is_null() {
            // The first push is between its two stores.
            backoff.snooze();
            // ORDERING: Acquire: the block's initialisation is visible.
            block = self.head_block.load(Ordering::Acquire);
        }
        // SAFETY: `block` is the head block: installed by a producer, freed only by us.
        let block_ref = unsafe { &*block };
        let slot = &block_ref.slots[offset];
        // ORDERING: Acquire pairs with the producer's Release store: its value is visible.
        while !slot.written.load(Ordering::Acquire) {
            backoff.snooze();
        }
        // SAFETY: the slot was written (the flag) and is read once, by us, the consumer.
        let value = unsafe { slot.value.get().read().assume_init() };
        if offset + 1 == BLOCK_CAP {
            // The block's last slot: move to the next block and free this one.
            // ORDERING: Acquire pairs with the installing producer's Release store.
            let mut next = block_ref.next.load(Ordering::Acquire);
            while next.is_null() {
                backoff.snooze();
                // ORDERING: Acquire, as above.
                next = block_ref.next.load(Ordering::Acquire);
            }
            // ORDERING: Relaxed: only the consumer reads `head_block` after the first push.
            self.head_block.store(next, Ordering::Relaxed);
            // ORDERING: SeqCst, as every `head` store (for `is_empty`'s reads).
            self.head.store(head + 2, Ordering::SeqCst);
            // SAFETY: every slot of the block was written and read (we waited for each
            // flag), `next` was stored: no producer touches the block any more (see the
            // module docs), and we are the only consumer.
            drop(unsafe { Box::from_raw(block) });
        } else {
            // ORDERING: SeqCst: a release write of the head that an `is_empty` acquires
            // (the idle check relies on it, see `queue::worker`).
            self.head.store(head + 1, Ordering::SeqCst);
        }
        Some(value)
    }

    /// Whether the FIFO is empty (a snapshot).
    pub(crate) fn is_empty(&self) -> bool {
        // ORDERING: SeqCst loads, as `SegQueue::is_empty`: see `pop` and `push`.
        let head = self.head.load(Ordering::SeqCst);
        // ORDERING: as above.
        let tail = self.tail.load(Ordering::SeqCst);
        head == past_marker(tail)
    }

    /// How many values are in the FIFO (a consistent snapshot of head and tail).
    pub(crate) fn len(&self) -> usize {
        loop {
            // ORDERING: SeqCst loads, as `is_empty`; re-read until `tail` is stable.
            let tail = self.tail.load(Ordering::SeqCst);
            // ORDERING: as above.
            let head = self.head.load(Ordering::SeqCst);
            // ORDERING: as above.
            if self.tail.load(Ordering::SeqCst) == tail {
                return slots_before(past_marker(tail)).saturating_sub(slots_before(head));
            }
        }
    }
}

impl<T> Drop for Fifo<T> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: we are the only thread left, so the one consumer.
        while let Some(value) = unsafe { self.pop() } {
            drop(value);
        }
        let block = *self.head_block.get_mut();
        if !block.is_null() {
            // SAFETY: the remaining (head) block has no live values (all popped) and nobody
            // else can reach it.
            drop(unsafe { Box::from_raw(block) });
        }
    }
}

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::{Fifo, BLOCK_CAP};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn values_come_out_in_order_across_blocks_and_len_counts_them() {
        let fifo = Fifo::new();
        assert!(fifo.is_empty());
        // SAFETY: this thread is the only consumer.
        assert_eq!(unsafe { fifo.pop() }, None::<usize>);
        let n = BLOCK_CAP * 5 + 3;
        for i in 0..n {
            fifo.push(i);
            assert_eq!(fifo.len(), i + 1);
        }
        for i in 0..n {
            assert!(!fifo.is_empty());
            // SAFETY: as above.
            assert_eq!(unsafe { fifo.pop() }, Some(i));
            assert_eq!(fifo.len(), n - i - 1);
        }
        assert!(fifo.is_empty());
        // SAFETY: as above.
        assert_eq!(unsafe { fifo.pop() }, None);
    }

    #[test]
    fn a_fifo_dropped_with_values_drops_each_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        struct D(Arc<AtomicUsize>);
        impl Drop for D {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let fifo = Fifo::new();
        for _ in 0..BLOCK_CAP * 2 + 1 {
            fifo.push(D(drops.clone()));
        }
        // SAFETY: this thread is the only consumer.
        drop(unsafe { fifo.pop() });
        drop(fifo);
        assert_eq!(drops.load(Ordering::SeqCst), BLOCK_CAP * 2 + 1);
    }

    #[test]
    fn four_producers_and_one_consumer_lose_nothing_and_keep_each_producers_order() {
        let per = if cfg!(miri) { 40 } else { 50_000 };
        let fifo = Arc::new(Fifo::new());
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let fifo = fifo.clone();
                thread::spawn(move || {
                    for i in 0..per {
                        fifo.push((p, i));
                    }
                })
            })
            .collect();
        let mut next = [0; 4];
        let mut got = 0;
        while got < 4 * per {
            // SAFETY: this thread is the only consumer.
            match unsafe { fifo.pop() } {
                Some((p, i)) => {
                    assert_eq!(i, next[p], "producer {p}'s values in order");
                    next[p] += 1;
                    got += 1;
                }
                None => thread::yield_now(),
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        assert!(fifo.is_empty());
        assert_eq!(next, [per; 4]);
    }
}
