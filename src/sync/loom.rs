//! The loom backend of the shim (`RUSTFLAGS="--cfg loom"`): loom's atomics, cells, threads
//! and thread-locals, and loom-visible stand-ins for what loom cannot see into. See the
//! [parent module](super) for the list of differences.

pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering,
};
pub(crate) use loom::sync::Arc;
pub(crate) use loom::sync::{Mutex, MutexGuard};

pub(crate) use loom::future::AtomicWaker;

/// Registers `waker` in `atomic` (the two `AtomicWaker`s spell it differently).
#[inline]
pub(crate) fn register_waker(atomic: &AtomicWaker, waker: &std::task::Waker) {
    atomic.register_by_ref(waker);
}

pub(crate) use loom::cell::UnsafeCell;

/// Threads: handles, identity, parking and spawning.
pub(crate) mod thread {
    pub(crate) use loom::thread::{current, park, Builder, Thread, ThreadId};

    /// The calling thread's id.
    pub(crate) fn current_id() -> ThreadId {
        current().id()
    }
}

/// Declares thread-locals: `loom::thread_local!`, whose thread-locals belong to loom's
/// threads. The initialiser is written `const { … }` for std's sake; loom, which has no
/// `const` form, gets the expression inside.
macro_rules! thread_locals {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = const { $init:expr }; $($rest:tt)*) => {
        loom::thread_local! { $(#[$attr])* $vis static $name: $t = $init; }
        $crate::sync::thread_locals!($($rest)*);
    };
}
pub(crate) use thread_locals;

/// Under loom a timed park yields once and reports a timeout (loom has no clock), so the
/// models explore the timeout path of every timed wait; an untimed park parks for real.
pub(crate) fn park_until(deadline: Option<std::time::Instant>) -> bool {
    match deadline {
        None => {
            thread::park();
            false
        }
        Some(_) => {
            loom::thread::yield_now();
            true
        }
    }
}

/// Under loom the spin phase is empty (completed from the start): a spin loop adds nothing
/// to what loom explores but states.
pub(crate) struct Spin;

impl Spin {
    #[inline]
    pub(crate) fn new() -> Self {
        Spin
    }

    /// Whether the spin phase is over and the caller should park: at once.
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        true
    }

    /// One step of the spin phase (never taken).
    #[inline]
    pub(crate) fn snooze(&self) {}
}

/// The action queue's FIFO under loom: `SegQueue`'s interface and guarantees, built from
/// loom atomics so that loom sees every step (it cannot see the plain atomics inside
/// `crossbeam_queue::SegQueue`). See [`segqueue`] for the design.
pub(crate) use segqueue::SegQueue;

mod segqueue {
    //! A loom stand-in for `crossbeam_queue::SegQueue`: an array of [`CAPACITY`] slots,
    //! each used once, and one atomic word, `state`, that holds the head index (slots
    //! popped), the tail index (slots claimed by pushes) and one *ready* bit per slot (its
    //! value is written):
    //!
    //! ```text
    //! push: claim slot `tail` (fetch_add on tail) ─> write the slot ─> set its ready bit (fetch_or)
    //! pop:  load state: head == tail → None; head's ready bit clear → a push is writing it:
    //!       yield and look again; set → CAS head → head + 1, then move the value out
    //! is_empty: load state: head == tail
    //! ```
    //!
    //! One word keeps each operation at one or two loom scheduling points (a push two, a pop
    //! that finds an element two, an empty pop and `is_empty` one), and lets loom's partial
    //! order reduction treat two loads of it as independent. Slots are never reused, so there
    //! is no ABA and no per-slot sequence number: a queue takes at most [`CAPACITY`] pushes
    //! in its life (a model puts a handful of actions; one that puts more fails with a
    //! message that says so).
    //!
    //! What the worker protocol relies on (`queue/worker.rs`, `queue/idle.rs`), and why it
    //! holds here, at least as strongly as in `SegQueue`:
    //! - MPMC: pushes claim distinct slots with an RMW; pops claim the head with a CAS, so any
    //!   number of threads may push, pop and ask `is_empty` at once.
    //! - FIFO and linearisable: every push, pop and `is_empty` reads or read-modify-writes the
    //!   one word, so they are totally ordered (its modification order). A push is in the
    //!   queue from its claim: `is_empty` then says `false` and a pop waits for the write, as
    //!   `SegQueue`'s does (it spins on the slot's WRITE bit).
    //! - orderings: every operation on the word is SeqCst (`SegQueue`: SeqCst claims and
    //!   pops, a Release WRITE bit, SeqCst loads in `is_empty`, Acquire in `pop`). A pop's CAS
    //!   is a release operation, and every later change of the word is an RMW (in its release
    //!   sequence), so an `is_empty` (or anything else) that reads the word as that pop or
    //!   any later operation left it synchronises with the pop and with everything the
    //!   popping thread did before it (the worker's `busy = true`).
    //! - the remaining elements are dropped with the queue.

    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use std::mem::MaybeUninit;

    /// How many pushes a queue takes in its life (slots are not reused).
    pub(super) const CAPACITY: usize = 8;

    /// Bits 8..16 of `state`: the head, the number of slots popped.
    const HEAD_SHIFT: u32 = 8;
    /// Bits 16.. of `state`: the tail, the number of slots claimed by pushes (it may pass
    /// `CAPACITY` in a model that overflows the queue, which then panics).
    const TAIL_SHIFT: u32 = 16;
    const ONE_HEAD: usize = 1 << HEAD_SHIFT;
    const ONE_TAIL: usize = 1 << TAIL_SHIFT;

    fn head(state: usize) -> usize {
        (state >> HEAD_SHIFT) & 0xff
    }

    fn tail(state: usize) -> usize {
        state >> TAIL_SHIFT
    }

    fn ready(state: usize, slot: usize) -> bool {
        state & (1 << slot) != 0
    }

    pub(crate) struct SegQueue<T> {
        /// Head, tail and ready bits; see the module docs.
        state: AtomicUsize,
        /// Slot `i` holds a value from its ready bit until a pop moves head past `i`.
        slots: [UnsafeCell<MaybeUninit<T>>; CAPACITY],
    }

    // SAFETY: a value is moved in by one thread (its pusher) and out by another (its popper
    // or the queue's drop), as in `crossbeam_queue::SegQueue`, which is `Send + Sync` for
    // `T: Send`; the hand-over goes through `state` (see `push` and `pop`).
    unsafe impl<T: Send> Send for SegQueue<T> {}
    // SAFETY: as above; every shared access to a slot is ordered by `state`.
    unsafe impl<T: Send> Sync for SegQueue<T> {}

    impl<T> SegQueue<T> {
        pub(crate) fn new() -> Self {
            SegQueue {
                state: AtomicUsize::new(0),
                slots: std::array::from_fn(|_| UnsafeCell::new(MaybeUninit::uninit())),
            }
        }

        pub(crate) fn push(&self, value: T) {
            // Claim the slot at the tail. ORDERING: SeqCst, as `SegQueue`'s claim: the
            // push is in the queue from here (`is_empty` says `false`, a pop waits for the
            // write). The value is published by the fetch_or below, not here.
            let slot = tail(self.state.fetch_add(ONE_TAIL, Ordering::SeqCst));
            assert!(
                slot < CAPACITY,
                "loom stand-in for SegQueue: more than {CAPACITY} pushes in one queue's life; \
                 raise CAPACITY in src/sync/loom.rs or put fewer actions in the model"
            );
            self.slots[slot].with_mut(|cell| {
                // SAFETY: the claim gave this slot to us alone: no pop touches it before its
                // ready bit is set below, and slots are never reused.
                unsafe { (*cell).write(value) };
            });
            // Publish the value. ORDERING: SeqCst (Release would do, as `SegQueue`'s WRITE
            // bit): a pop that reads this bit (Acquire or stronger) sees the write above.
            self.state.fetch_or(1 << slot, Ordering::SeqCst);
        }

        pub(crate) fn pop(&self) -> Option<T> {
            // ORDERING: SeqCst (`SegQueue`: Acquire): reading a ready bit set by a push (or
            // any later RMW of the word, all in that push's release sequence) makes the
            // push's write of the slot visible.
            let mut state = self.state.load(Ordering::SeqCst);
            loop {
                let slot = head(state);
                if slot == tail(state) {
                    return None;
                }
                if !ready(state, slot) {
                    // Claimed, not written yet: wait for the push, as `SegQueue` does.
                    loom::thread::yield_now();
                    // ORDERING: SeqCst, as the first load.
                    state = self.state.load(Ordering::SeqCst);
                    continue;
                }
                // Take the slot. ORDERING: SeqCst (as `SegQueue`'s pop), so the pop is a
                // release operation: whoever reads the word as we leave it (or later) sees
                // what this thread did before; Acquire, as the load above.
                match self.state.compare_exchange(
                    state,
                    state + ONE_HEAD,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => {
                        return Some(self.slots[slot].with_mut(|cell| {
                            // SAFETY: the slot's ready bit was set (the value is written,
                            // and our Acquire made the write visible), and our CAS moved
                            // the head past it: no other pop, and not the drop, reads it
                            // again, and no push writes it again (slots are not reused).
                            unsafe { (*cell).assume_init_read() }
                        }));
                    }
                    // Another pop or a push changed the word: look again at what it holds.
                    Err(now) => state = now,
                }
            }
        }

        pub(crate) fn is_empty(&self) -> bool {
            // ORDERING: SeqCst, as `SegQueue`'s `is_empty`: reads the word as the last push
            // or pop left it (loom may serve an older value where the memory model allows),
            // and synchronises with that pop (see the module docs).
            let state = self.state.load(Ordering::SeqCst);
            head(state) == tail(state)
        }
    }

    impl<T> Drop for SegQueue<T> {
        fn drop(&mut self) {
            let state = self.state.with_mut(|state| *state);
            for slot in head(state)..tail(state).min(CAPACITY) {
                if ready(state, slot) {
                    self.slots[slot].with_mut(|cell| {
                        // SAFETY: `&mut self`: no push or pop runs. The slot is between the
                        // head and the tail and its ready bit is set, so it holds a value that
                        // no pop moved out; it is dropped once, here.
                        unsafe { (*cell).assume_init_drop() };
                    });
                }
            }
        }
    }
}

/// A parking spot that outlives any one thread, as `crossbeam_utils::sync::Parker`: a
/// `loom::sync::Notify` (one loom scheduling point per park or unpark; its token is loom's
/// `notified` flag, and an unpark synchronises with the park it ends). Loom lets a park on it
/// return spuriously once, which the worker's park loop must survive (it re-checks the
/// state). The `Arc` is std's: it only shares the loom object between the parker and its
/// unparkers, and publishes nothing.
type ParkSpot = std::sync::Arc<loom::sync::Notify>;

pub(crate) struct Parker(ParkSpot);

#[derive(Clone)]
pub(crate) struct Unparker(ParkSpot);

impl Parker {
    pub(crate) fn new() -> Self {
        Parker(std::sync::Arc::new(loom::sync::Notify::new()))
    }

    pub(crate) fn unparker(&self) -> Unparker {
        Unparker(self.0.clone())
    }

    /// Takes the token, or waits for one (or returns spuriously, once per parker).
    pub(crate) fn park(&self) {
        self.0.wait();
    }

    /// Under loom: yields once and returns (loom has no clock). A token stays for the next
    /// untimed park, as when a real timed park returns just before an unpark lands; the
    /// worker treats a spare token as a spurious wake-up.
    pub(crate) fn park_deadline(&self, _deadline: std::time::Instant) {
        loom::thread::yield_now();
    }
}

impl Unparker {
    /// Leaves the token and wakes the parked thread, if any.
    pub(crate) fn unpark(&self) {
        self.0.notify();
    }
}

/// Under loom: yields once and reports a timeout (loom has no clock).
pub(crate) fn park_on(parker: &Parker, deadline: std::time::Instant) -> bool {
    parker.park_deadline(deadline);
    true
}

/// Heap blocks handed around as raw pointers, allocated through `loom::alloc` so that loom's
/// leak check sees them: a model that ends with a promise block or a callback node still
/// allocated fails.
pub(crate) mod boxed {
    use std::alloc::Layout;

    /// Moves `value` to a loom-tracked heap block and gives up ownership of it as a raw
    /// pointer.
    pub(crate) fn into_raw<T>(value: T) -> *mut T {
        let layout = Layout::new::<T>();
        assert!(layout.size() != 0, "no zero-sized blocks: none is needed");
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { loom::alloc::alloc(layout) }.cast::<T>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: `ptr` is a fresh allocation with `T`'s layout, so valid and aligned for a
        // write of a `T`.
        unsafe { ptr.write(value) };
        ptr
    }

    /// Moves the value out of a block made by [`into_raw`] and frees the block.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`into_raw`] and the caller owns it: nobody else uses it, and it is
    /// never used again after this call.
    pub(crate) unsafe fn take<T>(ptr: *mut T) -> T {
        // SAFETY: `ptr` came from `into_raw`, so it holds an initialised `T`, and the caller
        // owns it (above), so this read moves it out exactly once.
        let value = unsafe { ptr.read() };
        // SAFETY: `ptr` was allocated by `loom::alloc::alloc` with this very layout and is
        // freed once, here.
        unsafe { loom::alloc::dealloc(ptr.cast::<u8>(), Layout::new::<T>()) };
        value
    }
}
