//! The single-setter form of a promise: [`Promise::channel`] and its [`Resolver`].
//!
//! A channel's block is a promise block with `channel` set. Only the resolver writes the
//! slot, so it needs no claim: its set is one write and one CAS. Abandonment is not read
//! from the handle count but published by the resolver's drop, which is exact however many
//! `Promise` handles exist. Three more tag bits of the state word (see [`super::state`])
//! carry the protocol:
//!
//! - ABANDONED: the resolver was dropped unset (final, like DONE);
//! - RESOLVER: the resolver may still touch the block. Set at creation; cleared by its final
//!   CAS (set or drop) when no callback drain follows, else by a `fetch_and` after the drain;
//! - GONE: every `Promise` handle is gone (the promise side gave up its guard).
//!
//! ```text
//!   resolver:   PENDING|RESOLVER ──── set: CAS ────> DONE      ─┐  (|RESOLVER while it drains
//!                       │                                        │   the callbacks, cleared
//!                       └──────── drop unset: CAS ──> ABANDONED ─┘   by a fetch_and after)
//!
//!   promise side: the last handle (handle count and guards, see [`super::handles`]):
//!                 RESOLVER clear? free the block : CAS in GONE, taking the stack
//!   resolver:     the RMW that clears RESOLVER read GONE? free the block
//! ```
//!
//! **Why the block is freed exactly once.** The block has two owners, the resolver and the
//! promise side, and both give up their share with a read-modify-write of the state word:
//! the resolver by clearing RESOLVER, the promise side by setting GONE (or, if it reads
//! RESOLVER already clear, which is final, by nothing at all). Whichever RMW comes second
//! in the word's modification order reads the other's bit and frees; the first does not.
//! On the common path, set and then the last handle dropped, that costs the resolver's one
//! CAS and the last handle's loads: no RMW.
//!
//! **Why no waiter misses abandonment.** ABANDONED is written by the same kind of CAS that
//! publishes DONE: it takes the waiter stack, and a waiter's push fails once DONE or
//! ABANDONED is set (see [`super::waiters`]), so every waiter is either woken or sees it.
//!
//! **Waiting for "closed".** [`Resolver::closed`] registers a task node on the waiter
//! stack, pushed unless DONE, ABANDONED or GONE is set. The last handle sets GONE with a CAS
//! that also takes the stack and wakes every node in it (the resolver's `closed` futures',
//! and at worst nodes of promise-side futures that were forgotten while registered: every
//! other waiter holds a handle), so the resolver's task either is woken or sees GONE: the
//! same argument as for DONE.
//!
//! **Callbacks.** A resolver dropped unset drops the queued callbacks (so a `map` of the
//! channel, whose resolver a callback holds, is abandoned at once), batch by batch as the
//! setter's drain does, and closes the stack; a `then` after that drops its callback.

use super::handles::Handles;
use super::state::{State, ABANDONED, DONE, GONE, RESOLVER, TAGS};
#[cfg(doc)]
use super::Promise;
use super::{waiters, Inner, Invariant};
use crate::panics;
use crate::setter;
use crate::sync::{self, Arc, AtomicUsize, Ordering};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// The setting end of a [`Promise::channel`]: the only handle that can fulfil the channel's
/// promise, consumed by doing so.
///
/// Dropping it unset abandons the promise: every waiter on every handle (threads and tasks,
/// however many clones) fails with [`PromiseError::Abandoned`](crate::PromiseError::Abandoned)
/// at once, and the promise's callbacks are dropped unrun. It is `Send` and `Sync` under the
/// same bounds as [`Promise`].
///
/// ```
/// use orderslip::{Promise, PromiseError};
///
/// fn fetch(id: u32, reply: orderslip::Resolver<String, String>) {
///     if reply.is_closed() {
///         return; // nobody waits for it any more: skip the work
///     }
///     let _ = reply.set_result(format!("record {id}"));
/// }
///
/// let (resolver, reply) = Promise::channel();
/// let worker = std::thread::spawn(move || fetch(7, resolver));
/// assert_eq!(reply.wait().map(String::as_str), Ok("record 7"));
/// worker.join().unwrap();
/// ```
pub struct Resolver<T, E> {
    inner: NonNull<Inner<T, E>>,
    /// The resolver owns a share of the block, for the drop checker.
    _owns: PhantomData<Inner<T, E>>,
    /// Invariant in `T` and `E`, as [`Promise`] (it takes `T`/`E` in).
    _invariant: PhantomData<Invariant<T, E>>,
}

// SAFETY: as for `Promise`: the resolver moves a `T`/`E` into the slot, may run callbacks
// with `&T`/`&E` and may drop the block (with the result) on any thread.
unsafe impl<T: Send + Sync, E: Send + Sync> Send for Resolver<T, E> {}
// SAFETY: `&Resolver` reads the state word (`is_closed`) and, through `closed()`, pushes and
// prunes its own waiter nodes, which the lock-free stack allows from any number of threads.
unsafe impl<T: Send + Sync, E: Send + Sync> Sync for Resolver<T, E> {}

impl<T, E> Resolver<T, E> {
    /// The resolver of a new channel block.
    ///
    /// # Safety
    ///
    /// `inner` is a new block made with `channel` set (its state has RESOLVER), and no other
    /// resolver is made for it.
    #[inline]
    pub(super) unsafe fn from_inner(inner: NonNull<Inner<T, E>>) -> Self {
        Resolver {
            inner,
            _owns: PhantomData,
            _invariant: PhantomData,
        }
    }

    #[inline]
    fn inner(&self) -> &Inner<T, E> {
        // SAFETY: RESOLVER is set while the resolver exists, so the block is alive.
        unsafe { self.inner.as_ref() }
    }

    /// Fulfils the promise with a value, consuming the resolver. Never blocks: one write
    /// and one atomic operation, then it wakes the waiters and runs the callbacks registered
    /// before (on this thread, in registration order, as [`Promise::set_result`] does).
    ///
    /// # Errors
    ///
    /// If every [`Promise`] handle of the channel is gone and no callback waits for the
    /// value ([`is_closed`](Resolver::is_closed)), nobody can read it: the value is handed
    /// back in `Err` (as `std::sync::mpsc::Sender::send` does), and the channel is freed.
    ///
    /// ```
    /// use orderslip::Promise;
    ///
    /// let (resolver, reply) = Promise::<u8, ()>::channel();
    /// assert_eq!(resolver.set_result(1), Ok(()));
    /// assert_eq!(reply.wait(), Ok(&1));
    ///
    /// let (resolver, reply) = Promise::<u8, ()>::channel();
    /// drop(reply);
    /// assert_eq!(resolver.set_result(2), Err(2)); // nobody listens: handed back
    /// ```
    #[inline]
    pub fn set_result(self, value: T) -> Result<(), T> {
        self.resolve(Ok(value)).map_err(|r| match r {
            Ok(v) => v,
            Err(_) => unreachable!("resolve hands back what it was given"),
        })
    }

    /// Fails the promise with an error, consuming the resolver: waiters get
    /// [`PromiseError::Failed`](crate::PromiseError::Failed). Otherwise as
    /// [`set_result`](Resolver::set_result).
    ///
    /// # Errors
    ///
    /// As for `set_result`: the error is handed back if nobody can read it.
    ///
    /// ```
    /// use orderslip::{Promise, PromiseError};
    ///
    /// let (resolver, reply) = Promise::<u8, String>::channel();
    /// resolver.set_exception("no route".to_string()).unwrap();
    /// assert_eq!(reply.wait(), Err(PromiseError::Failed(&"no route".to_string())));
    /// ```
    #[inline]
    pub fn set_exception(self, error: E) -> Result<(), E> {
        self.resolve(Err(error)).map_err(|r| match r {
            Err(e) => e,
            Ok(_) => unreachable!("resolve hands back what it was given"),
        })
    }

    /// Whether every [`Promise`] handle of the channel is gone (dropped, including owned
    /// futures and the handles inside `map`/`and_then`s), so that nobody can read the
    /// result: a producer may skip the work. Never blocks.
    ///
    /// A callback registered with [`then`](Promise::then) (or the one inside a live or
    /// dropped [`map`](Promise::map)) counts as a reader until it has run: a channel with a
    /// registered callback is never closed, because setting it runs the callback.
    ///
    /// ```
    /// use orderslip::Promise;
    ///
    /// let (resolver, reply) = Promise::<u8, ()>::channel();
    /// let copy = reply.clone();
    /// drop(reply);
    /// assert!(!resolver.is_closed()); // `copy` still waits
    /// drop(copy);
    /// assert!(resolver.is_closed());
    /// ```
    #[inline]
    #[must_use]
    pub fn is_closed(&self) -> bool {
        // ORDERING: Acquire pairs with the last handle's AcqRel CAS that sets GONE: once closed,
        // whatever the handles did before going is visible to the producer.
        let state = State(self.inner().state.load(Ordering::Acquire));
        state.handles_gone() && !state.has_callbacks()
    }

    /// Waits until [`is_closed`](Resolver::is_closed): every [`Promise`] handle is gone and
    /// no callback is registered. Like tokio's `oneshot::Sender::closed`, for a producer
    /// that wants to stop its work as soon as nobody waits (for example in a `select!`
    /// beside the work). If a callback is registered (`then`, or a `map`), it never
    /// resolves: a callback is a reader, and the resolver, which would run it, cannot be
    /// used while this future borrows it. So await it beside the work, not alone. Dropping
    /// the future unregisters it.
    ///
    /// ```
    /// use orderslip::Promise;
    ///
    /// #[tokio::main(flavor = "current_thread")]
    /// async fn main() {
    ///     let (resolver, reply) = Promise::<u64, ()>::channel();
    ///     let producer = tokio::spawn(async move {
    ///         resolver.closed().await; // the consumer gave up: stop
    ///         resolver.is_closed()
    ///     });
    ///     drop(reply);
    ///     assert!(producer.await.unwrap());
    /// }
    /// ```
    pub fn closed(&self) -> Closed<'_, T, E> {
        Closed {
            resolver: self,
            node: None,
        }
    }

    /// Publishes `result` (DONE) and finishes, or hands it back if nobody can read it.
    #[inline]
    pub(super) fn resolve(self, result: Result<T, E>) -> Result<(), Result<T, E>> {
        let this = ManuallyDrop::new(self);
        let inner = this.inner();
        // SAFETY: only the resolver writes the slot, once (it is consumed here), and nobody
        // reads it before the DONE that the CAS below publishes.
        inner.slot.with_mut(|slot| unsafe { (*slot).write(result) });
        // The common case, in one CAS: pending, nobody waiting, no callback, handles alive.
        // Then there is nothing to wake, drain or free afterwards.
        // ORDERING: Release publishes the slot to every Acquire reader of DONE. Relaxed on
        // failure: the slow path reads the word again.
        if inner
            .state
            .compare_exchange(
                State::CHANNEL.0,
                State::CHANNEL.resolved(DONE).0,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            return Ok(());
        }
        // SAFETY: `this` is the resolver, consumed here; the slot holds `result`, unpublished.
        unsafe { resolve_slow(this.inner) }
    }
}

/// [`Resolver::resolve`] when the word is not exactly "pending, nobody waiting, no
/// callback, handles alive": publish with the waiters taken, or hand the result back.
///
/// # Safety
///
/// The caller is the consumed resolver of `inner`, which wrote the result into the slot
/// and has not published it.
#[cold]
#[inline(never)]
unsafe fn resolve_slow<T, E>(inner_ptr: NonNull<Inner<T, E>>) -> Result<(), Result<T, E>> {
    // SAFETY: RESOLVER is still set, so the block is alive.
    let inner = unsafe { inner_ptr.as_ref() };
    // ORDERING: Acquire: if it shows GONE, we free the block below, after every handle's
    // work (each gave up its share with a Release RMW).
    let mut old = State(inner.state.load(Ordering::Acquire));
    loop {
        if old.handles_gone() && !old.has_callbacks() {
            // Closed: no handle is left and no callback waits, so nobody can read the
            // result. The promise side saw RESOLVER set when it left, so the block is
            // ours to free.
            // SAFETY: we wrote the slot above and never published it.
            let result = inner
                .slot
                .with(|slot| unsafe { (*slot).assume_init_read() });
            // SAFETY: GONE with RESOLVER set: the promise side left the freeing to us,
            // and nobody else can reach the block. It came from `boxed::into_raw`.
            unsafe { sync::boxed::free(inner_ptr.as_ptr()) };
            return Err(result);
        }
        // ORDERING: Release publishes the slot to every Acquire reader of DONE; Acquire
        // lets us read the waiter nodes pushed with Release, and (on failure too) the
        // handles' work if we end up freeing.
        match inner.state.compare_exchange_weak(
            old.0,
            old.resolved(DONE).0,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => break,
            Err(actual) => old = State(actual),
        }
    }
    // SAFETY: our CAS published DONE and took the waiter stack in `old`.
    unsafe { finish(inner_ptr, old) };
    Ok(())
}

/// The resolver's work after its final CAS (which read `old`): wake the waiters it took,
/// drain or drop the callbacks if a drain is due (then clear RESOLVER), and free the block
/// if the promise side is gone. Never unwinds: wakers and callbacks are contained.
///
/// # Safety
///
/// The caller is the resolver of `inner`, and its final CAS (DONE or ABANDONED, with
/// [`State::resolved`]) succeeded on `old`: it holds the waiter stack of `old`.
unsafe fn finish<T, E>(inner: NonNull<Inner<T, E>>, old: State) {
    if old.waiters() != 0 {
        // SAFETY: the CAS took the stack out of the word with Acquire: we hold every node.
        // Waking touches only the nodes, not the block.
        unsafe { waiters::wake_list(old.waiters() as *const waiters::Waiter) };
    }
    if !old.has_callbacks() {
        // The CAS cleared RESOLVER. If the promise side had gone, it left the freeing to us.
        if old.handles_gone() {
            // SAFETY: GONE was set while RESOLVER was, and we cleared RESOLVER: nobody else
            // can reach the block.
            unsafe { free_contained(inner) };
        }
        return;
    }
    // SAFETY: RESOLVER is still set: the block stays alive until we clear it below.
    let block = unsafe { inner.as_ref() };
    // ORDERING: Relaxed: our own CAS wrote the outcome.
    let state = State(block.state.load(Ordering::Relaxed));
    if state.is_done() {
        // SAFETY: our CAS published DONE; the slot was written before it.
        let result = block
            .slot
            .with(|slot| unsafe { &*(*slot).as_ptr() })
            .as_ref();
        setter::draining(inner.as_ptr() as usize, || block.callbacks.drain(result));
    } else {
        // A drain frame here too: a callback's `Drop` that waits for a `map` registered
        // after it would wait for this very loop (see `crate::setter`).
        setter::draining(inner.as_ptr() as usize, || block.callbacks.discard());
    }
    // ORDERING: AcqRel: Release so that a last handle that reads RESOLVER clear (and frees)
    // sees the drain's work; Acquire so that, if we free, we see the handles' work.
    let before = State(block.state.fetch_and(!RESOLVER, Ordering::AcqRel));
    if before.handles_gone() {
        // SAFETY: as above: the promise side left the freeing to us. `block` is not used
        // again.
        unsafe { free_contained(inner) };
    }
}

/// Frees the block on the resolver's side, containing (and reporting) a panic of the
/// result's `Drop`: it must not escape `set_result` after a successful set, nor the
/// resolver's `Drop`, which may run while its thread unwinds.
///
/// # Safety
///
/// The caller may free the block (nobody else can reach it), and it came from
/// `boxed::into_raw`.
unsafe fn free_contained<T, E>(inner: NonNull<Inner<T, E>>) {
    panics::contain("dropping a promise's result", move || {
        // SAFETY: the caller's obligation.
        unsafe { sync::boxed::free(inner.as_ptr()) }
    });
}

impl<T, E> Drop for Resolver<T, E> {
    /// Abandons the promise: publishes ABANDONED, wakes every waiter, drops the callbacks.
    fn drop(&mut self) {
        let inner = self.inner();
        // ORDERING: Acquire, as in `resolve`.
        let mut old = State(inner.state.load(Ordering::Acquire));
        loop {
            // ORDERING: AcqRel: Release publishes ABANDONED to the waiters' Acquire reads;
            // Acquire to read the waiter nodes and, if we free, the handles' work.
            match inner.state.compare_exchange_weak(
                old.0,
                old.resolved(ABANDONED).0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => old = State(actual),
            }
        }
        // SAFETY: our CAS published ABANDONED and took the waiter stack in `old`.
        unsafe { finish(self.inner, old) };
    }
}

impl<T, E> fmt::Debug for Resolver<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Gives up one `Promise` handle of a channel. Returns `true` when the caller must free the
/// block: it gave up the promise side's last guard and the resolver can no longer touch
/// the block. (Arguments are the block's atomics only, as in `Promise::drop`.)
#[inline]
pub(super) fn release_promise(handles: &Handles, state: &AtomicUsize) -> bool {
    // A channel's promise is never abandoned by its handles: nothing to orphan.
    if !handles.remove(|| false, || ()) {
        return false;
    }
    // We gave up the promise side's last guard.
    // ORDERING: Acquire: RESOLVER is cleared once, by the resolver's last RMW after its last
    // touch of the block; reading it clear orders all of that before our free.
    let mut old = State(state.load(Ordering::Acquire));
    loop {
        if !old.resolver_active() {
            return true;
        }
        // Set GONE and take the waiter stack (for a resolver awaiting `closed`).
        // ORDERING: AcqRel: Release hands this side's work to the resolver, which frees;
        // Acquire to read the nodes, and (on failure too) the resolver's work if we free.
        match state.compare_exchange_weak(
            old.0,
            (old.0 & TAGS) | GONE,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => break,
            Err(actual) => old = State(actual),
        }
    }
    if old.waiters() != 0 {
        // SAFETY: the CAS took the stack with Acquire: we hold every node. Waking touches
        // the nodes only, not the block (which the resolver may free meanwhile).
        unsafe { waiters::wake_list(old.waiters() as *const waiters::Waiter) };
    }
    false
}

/// The future of [`Resolver::closed`]: resolves once every [`Promise`] handle of the
/// channel is gone (see there). A named type, so a producer can keep it beside its work.
///
/// ```
/// use orderslip::{Closed, Promise, Resolver};
///
/// /// Works on `job` unless the consumer goes away first.
/// async fn produce(resolver: Resolver<u64, ()>, job: impl std::future::Future<Output = u64>) {
///     let closed: Closed<'_, u64, ()> = resolver.closed();
///     tokio::select! {
///         _ = closed => {} // nobody waits any more: drop the work
///         value = job => { let _ = resolver.set_result(value); }
///     }
/// }
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() {
///     let (resolver, reply) = Promise::channel();
///     drop(reply); // the consumer gave up
///     produce(resolver, std::future::pending()).await; // returns: the channel is closed
/// }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Closed<'a, T, E> {
    resolver: &'a Resolver<T, E>,
    /// The task's node on the waiter stack, once registered.
    node: Option<Arc<waiters::Waiter>>,
}

impl<T, E> Future for Closed<'_, T, E> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let resolver = self.resolver;
        if resolver.is_closed() {
            return Poll::Ready(());
        }
        let state = &resolver.inner().state;
        let registered = match &self.node {
            None => {
                let node = waiters::Waiter::for_task(cx.waker());
                // SAFETY: the node is new, so in no stack; `state` is the channel's word.
                let pushed = unsafe { waiters::push(state, &node, NOT_CLOSING) };
                if pushed {
                    self.node = Some(node);
                }
                pushed
            }
            Some(node) => {
                node.register(cx.waker());
                if node.is_woken() {
                    node.rearm();
                    // SAFETY: the node was WOKEN: its holder took it out of the stack and
                    // let go of it, and only this future (its owner) pushes it again.
                    let pushed = unsafe { waiters::push(state, node, NOT_CLOSING) };
                    if !pushed {
                        self.node = None;
                    }
                    pushed
                } else {
                    true
                }
            }
        };
        if !registered && resolver.is_closed() {
            return Poll::Ready(());
        }
        // Registered: the last handle's CAS takes and wakes the node. Or not registered and
        // not closed: GONE with a callback registered, which never closes while the resolver
        // lives (nothing will wake us, as nothing will change).
        Poll::Pending
    }
}

impl<T, E> Drop for Closed<'_, T, E> {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            if node.cancel() {
                // SAFETY: the channel's word, whose stack holds only pushed nodes.
                let _ = unsafe { waiters::prune(&self.resolver.inner().state, NOT_CLOSING) };
            }
        }
    }
}

impl<T, E> fmt::Debug for Closed<'_, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Closed")
            .field("resolver", self.resolver)
            .field("registered", &self.node.is_some())
            .finish()
    }
}

/// The bits that close the waiter stack to the resolver's `closed` node: GONE (it closed),
/// or the final states (the resolver was used; unreachable while a `Closed` borrows it).
const NOT_CLOSING: usize = DONE | ABANDONED | GONE;
