//! The [`Promise`]: a write-once result that threads wait for with a timeout, async tasks
//! `.await`, and callbacks react to.
//!
//! # How it works
//!
//! All clones of a promise share one heap block ([`Inner`]), the crate's one allocation per
//! promise, and each mechanism in it has its own module, which draws its state machine and
//! argues why nothing is lost:
//!
//! - [`state`]: one atomic word, the tag bits (CLAIMED, DONE, CALLBACKS, and a channel's
//!   ABANDONED, RESOLVER and GONE) and the head of the waiter stack; the machine
//!   EMPTY → SETTING → DONE (a channel: RESOLVER → DONE or ABANDONED);
//! - [`waiters`]: the lock-free stack of blocked threads and pending futures in that word,
//!   woken by the setter or by an orphaning drop, pruned by waiters that give up;
//! - [`callbacks`]: the `then` stack, drained in registration order and closed by the setter;
//! - [`handles`]: how many live handles exist, which detects abandonment, and the guards that
//!   keep the block alive and free it once;
//! - [`future`]: [`WaitAsync`], a waiter whose owner is a task;
//! - [`owned`]: [`PromiseFuture`], `promise.await`, the same waiter owning its handle;
//! - [`channel`]: [`Resolver`], the single-setter end of [`Promise::channel`], and who
//!   frees a channel's block;
//! - this file: the API, the result slot (written once by the setter that won the claim),
//!   and the blocking wait.
//!
//! **Progress.** Publishing is lock-free and never waits for another thread: one `fetch_or`
//! to claim, a write, one CAS that publishes DONE and takes the whole waiter stack (it retries
//! only if a waiter pushed in between). The setter then wakes the waiters it took, and, only
//! if a callback was registered before the publish, drains the callback stack: it runs every
//! callback registered until it can close an empty stack, including ones registered (by
//! other threads, or by the callbacks themselves) while it drains. So the setter's own steps
//! never block, but `set_result` returns only once it has run every callback registered
//! before the stack closed: other threads that keep registering callbacks meanwhile keep it
//! busy (each callback is theirs to run anyway, and runs once).
//!
//! Waiting first checks DONE (one Acquire load), then spins briefly, then pushes a node onto
//! the waiter stack with a CAS that fails if DONE is set, and parks until its node is woken.
//! Because "push unless DONE" and "set DONE and take the stack" are operations on the same
//! word, a waiter that registers just as the setter publishes is either taken (and woken) or
//! sees DONE: no wake-up is lost.

mod callbacks;
mod channel;
mod future;
mod handles;
mod owned;
mod state;
mod waiters;

pub use channel::{Closed, Resolver};
pub use future::WaitAsync;
pub use owned::PromiseFuture;

use crate::error::{PromiseDoneError, PromiseError};
use crate::panics;
use crate::setter::{self, Setter};
use crate::sync::{self, thread, AdaptiveSpin, Arc, AtomicUsize, Ordering, UnsafeCell};
use callbacks::Callbacks;
use handles::Handles;
use state::{State, CLAIMED, DONE, FINAL};
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::time::Duration;
use waiters::Waiter;

/// The shared block all handles of one promise point to: the crate's one allocation per
/// promise.
struct Inner<T, E> {
    /// Tags and waiter stack; see [`state`].
    state: AtomicUsize,
    /// `then` callbacks; see [`callbacks`].
    callbacks: Callbacks<T, E>,
    /// Live handles and guards; see [`handles`].
    handles: Handles,
    setter: Setter,
    /// For a `map`/`and_then` promise: the address of the block of the promise whose
    /// callback sets it (its origin's origin, for a chain), 0 for none. A wait inside that
    /// promise's callback drain could never end (see [`crate::setter`]).
    origin: usize,
    /// Made by [`Promise::channel`] (or mapped from such a promise): only its [`Resolver`]
    /// sets it, and abandonment is the resolver's drop (see [`channel`]). Never changes.
    channel: bool,
    slot: UnsafeCell<MaybeUninit<Result<T, E>>>,
}

/// Makes a type invariant in `T` and `E` (see `Promise`'s `_invariant`).
type Invariant<T, E> = (fn(T) -> T, fn(E) -> E);

/// A write-once result that is still being produced: an order slip.
///
/// A `Promise` is a cheap handle (one pointer); clones share one slot. One side fulfils it
/// with [`set_result`](Promise::set_result) or [`set_exception`](Promise::set_exception) (the
/// first set wins); any number of threads block on it with [`result`](Promise::result) or
/// [`wait`](Promise::wait), async tasks `.await` [`wait_async`](Promise::wait_async), and
/// callbacks registered with [`then`](Promise::then) run when it is done.
///
/// Waiting on a pending promise from its designated setter thread fails at once with
/// [`PromiseError::Deadlock`] instead of hanging, and a waiter gets
/// [`PromiseError::Abandoned`] at once when nobody can set the promise any more: for a
/// [`channel`](Promise::channel), when its [`Resolver`] is dropped unset (on every handle);
/// for a shared promise, when the waiter's handle is the last one left (after the others
/// were dropped unset).
///
/// # Example
///
/// ```
/// use orderslip::Promise;
/// use std::time::Duration;
///
/// let answer: Promise<u64, String> = Promise::with_setter(None);
/// let producer = answer.clone();
/// std::thread::spawn(move || producer.set_result(6 * 7).unwrap());
///
/// assert_eq!(answer.result(Duration::from_secs(5)), Ok(&42));
/// ```
///
/// # Panics
///
/// Dropping the last handle drops the result, and, for a promise never set, its unrun
/// callbacks. If one of those drops panics, the others are still dropped and the first
/// panic is re-raised afterwards, in the thread that dropped the last handle (as std's
/// collections do). Nothing else a promise does lets a foreign panic through: panicking
/// callbacks and `Waker`s are caught and logged.
///
/// # Variance
///
/// `Promise<T, E>` is invariant in `T` and `E`: a handle both takes values in and lends them
/// out, so turning a `Promise<&'static str, _>` into a `Promise<&'a str, _>` would let a
/// short-lived reference be set and then read as `'static`. The compiler refuses it:
///
/// ```compile_fail
/// use orderslip::Promise;
/// fn shorten<'a>(p: Promise<&'static str, ()>) -> Promise<&'a str, ()> {
///     p // error: lifetime may not live long enough (the type is invariant)
/// }
/// ```
pub struct Promise<T, E> {
    inner: NonNull<Inner<T, E>>,
    /// The handle owns (a share of) the block, for the drop checker.
    _owns: PhantomData<Inner<T, E>>,
    /// Invariant in `T` and `E` on purpose: a handle both gives out `&T`/`&E` and takes
    /// `T`/`E` in (`set_result`), so neither direction of variance is sound. Without this the
    /// invariance would hang on `Inner` happening to hold interior-mutable fields.
    _invariant: PhantomData<Invariant<T, E>>,
}

// SAFETY: a handle moved to another thread may move a `T`/`E` in (set), hand out `&T`/`&E`
// (wait), or drop them (last handle): that needs `Send + Sync` for both. Callbacks are
// `Send`. Everything else in `Inner` is atomics.
unsafe impl<T: Send + Sync, E: Send + Sync> Send for Promise<T, E> {}
// SAFETY: as above: every method takes `&self` and synchronises through the atomics.
unsafe impl<T: Send + Sync, E: Send + Sync> Sync for Promise<T, E> {}

impl<T, E> Promise<T, E> {
    /// The default timeout of the Python quickrpc original for [`result`](Promise::result):
    /// one second. Nothing uses it implicitly; pass it where you want that behaviour.
    ///
    /// ```
    /// use orderslip::{Promise, PromiseError};
    /// let p: Promise<(), ()> = Promise::with_setter(None);
    /// # let _ = Promise::<(), ()>::DEFAULT_TIMEOUT;
    /// # assert_eq!(p.result(std::time::Duration::ZERO), Err(PromiseError::Timeout));
    /// // p.result(Promise::<(), ()>::DEFAULT_TIMEOUT) would wait up to a second.
    /// ```
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// A pending promise **that this thread is to set**: waiting for it on this thread while
    /// it is pending fails at once with [`PromiseError::Deadlock`] instead of hanging.
    ///
    /// If another thread sets the promise (the usual request/reply pattern: make a promise,
    /// hand a clone to a server thread, wait), use
    /// [`Promise::with_setter(None)`](Promise::with_setter) instead: with `new()`, the
    /// creating thread's wait fails with `Deadlock` whenever it comes before the reply,
    /// which depends on timing. Debug builds report a `new()` promise set on another thread
    /// once per process (`log::warn!`). (Designating the creating thread is the behaviour of
    /// the Python quickrpc original.)
    ///
    /// ```
    /// use orderslip::{Promise, PromiseError};
    /// use std::time::Duration;
    ///
    /// let p: Promise<i32, ()> = Promise::new();
    /// assert_eq!(p.result(Duration::from_secs(60)), Err(PromiseError::Deadlock)); // at once
    /// p.set_result(1).unwrap();
    /// assert_eq!(p.result(Duration::from_secs(60)), Ok(&1));
    /// ```
    #[allow(clippy::new_without_default)] // `new` names the setter thread; `Default` would hide that.
    #[inline]
    #[must_use]
    pub fn new() -> Self {
        Self::with_setter_kind(Setter::Thread(thread::current_id()))
    }

    /// A pending promise with an explicit designated setter thread: `Some(id)` for that
    /// thread, `None` for no deadlock check.
    ///
    /// ```
    /// use orderslip::Promise;
    /// use std::time::Duration;
    ///
    /// let server = std::thread::spawn(|| std::thread::park());
    /// let p: Promise<&str, ()> = Promise::with_setter(Some(server.thread().id()));
    /// // Waiting here is fine: this thread is not the designated setter.
    /// assert!(p.result(Duration::ZERO).is_err());
    /// server.thread().unpark();
    /// server.join().unwrap();
    /// ```
    #[inline]
    #[must_use]
    pub fn with_setter(setter: Option<thread::ThreadId>) -> Self {
        Self::with_setter_kind(match setter {
            Some(id) => Setter::Thread(id),
            None => Setter::Nobody,
        })
    }

    #[inline]
    pub(crate) fn with_setter_kind(setter: Setter) -> Self {
        Self::from_inner(Self::new_inner(setter, 0, false))
    }

    /// A new block: pending, one handle (and, for a channel, the resolver).
    #[inline]
    fn new_inner(setter: Setter, origin: usize, channel: bool) -> NonNull<Inner<T, E>> {
        let state = if channel {
            State::CHANNEL
        } else {
            State::EMPTY
        };
        let inner = sync::boxed::into_raw(Inner {
            state: AtomicUsize::new(state.0),
            callbacks: Callbacks::new(),
            handles: Handles::new(),
            setter,
            origin,
            channel,
            slot: UnsafeCell::new(MaybeUninit::uninit()),
        });
        // SAFETY: `boxed::into_raw` never returns null (it allocates, or aborts).
        unsafe { NonNull::new_unchecked(inner) }
    }

    /// The handle that owns the live handles' share of a new block.
    #[inline]
    fn from_inner(inner: NonNull<Inner<T, E>>) -> Self {
        Promise {
            inner,
            _owns: PhantomData,
            _invariant: PhantomData,
        }
    }

    /// A new pending promise that only the returned [`Resolver`] can set: the
    /// single-setter form of a promise, like a one-shot channel.
    ///
    /// The [`Promise`] end keeps the whole waiting API and may be cloned freely (a map of
    /// pending requests, a fan-out); the [`Resolver`] is not `Clone` and is consumed by the
    /// set. Compared with a shared promise ([`with_setter`](Promise::with_setter) and a clone
    /// for the producer):
    ///
    /// - **Exact abandonment:** dropping the resolver unset makes every waiter on every
    ///   handle fail with [`PromiseError::Abandoned`] at once, however many clones exist.
    /// - **"Nobody waits":** [`Resolver::is_closed`] tells the producer that every handle is
    ///   gone, so it can skip work nobody will read.
    /// - **No designated setter thread:** the creating thread may wait while the resolver is
    ///   set elsewhere (the only `Deadlock` check left is the callback one, see
    ///   [`then`](Promise::then)).
    /// - **Only the resolver sets:** [`set_result`](Promise::set_result) and
    ///   [`set_exception`](Promise::set_exception) on the promise end are refused and hand
    ///   the value back ([`PromiseDoneError::is_already_set`] is `false`). That is what
    ///   makes the set cheaper: no claim is needed when nobody can compete.
    ///
    /// One allocation holds both ends, as for any promise.
    ///
    /// ```
    /// use orderslip::{Promise, PromiseError};
    /// use std::time::Duration;
    ///
    /// let (resolver, reply) = Promise::<u32, String>::channel();
    /// let pending = reply.clone(); // e.g. kept in a map of pending requests
    /// std::thread::spawn(move || resolver.set_result(42));
    /// assert_eq!(reply.result(Duration::from_secs(5)), Ok(&42));
    /// assert_eq!(pending.wait(), Ok(&42));
    ///
    /// let (resolver, reply) = Promise::<u32, String>::channel();
    /// let pending = reply.clone();
    /// drop(resolver); // the producer died
    /// assert_eq!(reply.wait(), Err(PromiseError::Abandoned));
    /// assert_eq!(pending.wait(), Err(PromiseError::Abandoned));
    /// ```
    #[inline]
    #[must_use]
    pub fn channel() -> (Resolver<T, E>, Promise<T, E>) {
        Self::channel_with(Setter::Nobody, 0)
    }

    /// A channel whose promise end records `setter` and `origin` (a map of a channel).
    #[inline]
    fn channel_with(setter: Setter, origin: usize) -> (Resolver<T, E>, Promise<T, E>) {
        let inner = Self::new_inner(setter, origin, true);
        // SAFETY: a new channel block, for its one resolver.
        (
            unsafe { Resolver::from_inner(inner) },
            Self::from_inner(inner),
        )
    }

    #[inline]
    fn inner(&self) -> &Inner<T, E> {
        // SAFETY: the block lives as long as any handle; `self` is one.
        unsafe { self.inner.as_ref() }
    }

    /// Fulfils the promise with a value. The first set wins: if it was already set, the value
    /// is handed back in the error.
    ///
    /// Setting never blocks: it claims the slot with one atomic operation, publishes with
    /// another, then wakes the waiters and runs the callbacks registered so far, and any
    /// registered while it runs them (on this thread, in registration order; see
    /// [`then`](Promise::then)). A panicking callback or `Waker` is caught and logged: it
    /// never reaches the setter.
    ///
    /// # Errors
    ///
    /// [`PromiseDoneError`] if the promise was already set (by this handle or another): the
    /// first set wins, and the error hands `value` back.
    ///
    /// ```
    /// use orderslip::Promise;
    /// let p: Promise<String, ()> = Promise::new();
    /// p.set_result("done".to_string()).unwrap();
    /// assert!(p.set_result("again".to_string()).is_err());
    /// ```
    #[inline]
    pub fn set_result(&self, value: T) -> Result<(), PromiseDoneError<T>> {
        self.set(Ok(value)).map_err(|r| match r {
            Ok(v) => self.refused(v),
            Err(_) => unreachable!("set hands back what it was given"),
        })
    }

    /// The error of a refused set: the promise was set, or it is a channel's.
    fn refused<V>(&self, value: V) -> PromiseDoneError<V> {
        if self.inner().channel {
            PromiseDoneError::resolver_only(value)
        } else {
            PromiseDoneError::already_set(value)
        }
    }

    /// Fulfils the promise with an error (named after the original's `set_exception`). Waiters get
    /// [`PromiseError::Failed`]. The first set wins, as for [`set_result`](Promise::set_result).
    ///
    /// # Errors
    ///
    /// [`PromiseDoneError`] if the promise was already set: the error hands `error` back.
    ///
    /// ```
    /// use orderslip::{Promise, PromiseError};
    /// use std::time::Duration;
    /// let p: Promise<(), &str> = Promise::new();
    /// p.set_exception("disk full").unwrap();
    /// assert_eq!(p.result(Duration::ZERO), Err(PromiseError::Failed(&"disk full")));
    /// ```
    #[inline]
    pub fn set_exception(&self, error: E) -> Result<(), PromiseDoneError<E>> {
        self.set(Err(error)).map_err(|r| match r {
            Err(e) => self.refused(e),
            Ok(_) => unreachable!("set hands back what it was given"),
        })
    }

    #[inline]
    fn set(&self, result: Result<T, E>) -> Result<(), Result<T, E>> {
        let inner = self.inner();
        if inner.channel {
            // Only the resolver sets a channel's promise.
            return Err(result);
        }
        // Claim. ORDERING: Relaxed: the claim orders nothing by itself; other claimers only
        // learn they lost, and readers wait for DONE, which the Release swap below publishes.
        if State(inner.state.fetch_or(CLAIMED, Ordering::Relaxed)).is_claimed() {
            return Err(result);
        }
        #[cfg(debug_assertions)]
        inner.setter.check_set_here();
        // SAFETY: the claim above succeeded, so this thread is the only writer of the slot,
        // and nobody reads it before DONE is published below.
        inner.slot.with_mut(|slot| unsafe { (*slot).write(result) });
        // Publish and take the waiter stack in one step, keeping CALLBACKS as it was so that
        // a `then` that sees DONE knows whether this thread will drain the callback stack.
        // ORDERING: Relaxed load: only a first guess for the CAS, which reads the word again.
        let mut old = State(inner.state.load(Ordering::Relaxed));
        loop {
            // ORDERING: Release publishes the slot to every Acquire reader of DONE; Acquire
            // lets us read the waiter nodes pushed with Release.
            match inner.state.compare_exchange_weak(
                old.0,
                old.published().0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => old = State(actual),
            }
        }
        if old.waiters() != 0 {
            // SAFETY: the CAS took the stack out of the word (it wrote no pointer bits) with
            // Acquire, so we hold every node of it.
            unsafe { waiters::wake_list(old.waiters() as *const Waiter) };
        }
        if old.has_callbacks() {
            // SAFETY: our own CAS published DONE.
            let result = unsafe { self.done_result() };
            setter::draining(self.inner.as_ptr() as usize, || {
                inner.callbacks.drain(result)
            });
        }
        Ok(())
    }

    /// The result.
    ///
    /// # Safety
    ///
    /// The caller has observed DONE in the state word with Acquire (or wrote it itself), so
    /// the slot was written and published, and is never written again while `self` lives.
    #[inline]
    unsafe fn done_result(&self) -> Result<&T, &E> {
        // SAFETY: the caller's obligation (above); the slot lives as long as `self`.
        let result = self.inner().slot.with(|slot| unsafe { &*(*slot).as_ptr() });
        result.as_ref()
    }

    /// Whether the promise is done (set with a value or an error). Never blocks.
    ///
    /// ```
    /// use orderslip::Promise;
    /// let p: Promise<u8, ()> = Promise::new();
    /// assert!(!p.is_done());
    /// p.set_result(1).unwrap();
    /// assert!(p.is_done());
    /// ```
    #[inline]
    #[must_use]
    pub fn is_done(&self) -> bool {
        // ORDERING: Acquire so a `true` here lets the caller read the result next.
        State(self.inner().state.load(Ordering::Acquire)).is_done()
    }

    /// The result if the promise is done, else `None`. Never blocks.
    ///
    /// ```
    /// use orderslip::Promise;
    /// let p: Promise<u8, &str> = Promise::new();
    /// assert_eq!(p.try_result(), None);
    /// p.set_exception("no").unwrap();
    /// assert_eq!(p.try_result(), Some(Err(&"no")));
    /// ```
    #[inline]
    #[must_use]
    pub fn try_result(&self) -> Option<Result<&T, &E>> {
        if self.is_done() {
            // SAFETY: `is_done` saw DONE with Acquire.
            Some(unsafe { self.done_result() })
        } else {
            None
        }
    }

    /// Waits up to `timeout` for the result.
    ///
    /// - Done with a value: `Ok(&value)`; done with an error: `Err(PromiseError::Failed(&e))`.
    /// - Still pending after `timeout`: `Err(PromiseError::Timeout)`.
    /// - Pending and the caller is the designated setter: `Err(PromiseError::Deadlock)` at once.
    /// - Pending and nobody can set it any more: `Err(PromiseError::Abandoned)` at once. For a
    ///   [`channel`](Promise::channel): its [`Resolver`] was dropped unset. For a shared
    ///   promise: every other handle is gone (the caller's is the last).
    ///
    /// `Duration::ZERO` polls; a timeout too large for the clock (such as `Duration::MAX`)
    /// waits without limit. The caller spins for a few microseconds before it parks.
    ///
    /// # Errors
    ///
    /// As listed above: `Failed`, `Timeout`, `Deadlock` or `Abandoned`, each borrowing the
    /// promise's error; [`PromiseError::cloned`] or [`PromiseError::to_message`] make it
    /// owned, for `?`.
    ///
    /// # In async code
    ///
    /// This blocks the calling thread. Inside an async task it blocks the executor's thread
    /// with it: on a current-thread runtime the task that would set the promise cannot run
    /// meanwhile, so the wait ends only with its timeout (or never, for
    /// [`wait`](Promise::wait)). In async code, `.await` [`wait_async`](Promise::wait_async)
    /// instead, or move the blocking wait to a blocking thread (tokio's `spawn_blocking`).
    ///
    /// ```
    /// use orderslip::{Promise, PromiseError};
    /// use std::time::Duration;
    ///
    /// let p: Promise<u8, ()> = Promise::with_setter(None);
    /// assert_eq!(p.result(Duration::from_millis(1)), Err(PromiseError::Timeout));
    /// ```
    pub fn result(&self, timeout: Duration) -> Result<&T, PromiseError<&E>> {
        if let Some(result) = self.try_result() {
            return result.map_err(PromiseError::Failed);
        }
        self.wait_slow(Some(timeout))
    }

    /// Waits for the result without a time limit: [`result`](Promise::result) with an endless
    /// timeout. It still fails at once with [`PromiseError::Deadlock`] or
    /// [`PromiseError::Abandoned`].
    ///
    /// # Errors
    ///
    /// `Failed` (set with an error), `Deadlock` or `Abandoned`, as for
    /// [`result`](Promise::result); never `Timeout`.
    ///
    /// # In async code
    ///
    /// This blocks the calling thread. Inside an async task it blocks the executor's thread
    /// with it: on a current-thread runtime the task that would set the promise cannot run
    /// meanwhile, so the wait ends only with its timeout (or never, for
    /// [`wait`](Promise::wait)). In async code, `.await` [`wait_async`](Promise::wait_async)
    /// instead, or move the blocking wait to a blocking thread (tokio's `spawn_blocking`).
    ///
    /// ```
    /// use orderslip::{Promise, PromiseError};
    ///
    /// let p: Promise<u8, ()> = Promise::with_setter(None);
    /// let q = p.clone();
    /// let t = std::thread::spawn(move || q.set_result(9).unwrap());
    /// assert_eq!(p.wait(), Ok(&9));
    /// t.join().unwrap();
    ///
    /// let orphan: Promise<u8, ()> = Promise::with_setter(None);
    /// drop(orphan.clone()); // the only other handle goes away unset
    /// assert_eq!(orphan.wait(), Err(PromiseError::Abandoned));
    /// ```
    pub fn wait(&self) -> Result<&T, PromiseError<&E>> {
        if let Some(result) = self.try_result() {
            return result.map_err(PromiseError::Failed);
        }
        self.wait_slow(None)
    }

    /// Whether the promise can no longer be set. A shared promise: by anyone but the caller's
    /// handle (it had other handles and they are all gone; a promise that was never cloned
    /// may be shared by reference with its setter, so it never counts as abandoned, see
    /// [`handles`]). A channel: its resolver was dropped unset (see [`channel`]).
    fn is_abandoned(&self) -> bool {
        let inner = self.inner();
        if inner.channel {
            // ORDERING: Acquire, as for the handle count below (ABANDONED is published by the
            // resolver's AcqRel CAS).
            State(inner.state.load(Ordering::Acquire)).is_abandoned()
        } else {
            inner.handles.is_abandoned()
        }
    }

    /// The answer of a wait that found the promise final (DONE or, for a channel,
    /// ABANDONED) with an Acquire read of the state word.
    ///
    /// # Safety
    ///
    /// The caller observed DONE or ABANDONED with Acquire.
    #[inline]
    unsafe fn final_result(&self) -> Result<&T, PromiseError<&E>> {
        match self.try_result() {
            Some(result) => result.map_err(PromiseError::Failed),
            None => Err(PromiseError::Abandoned),
        }
    }

    /// The error for a pending promise that a waiter gave up on: the promise may have been
    /// set in the meantime, so look once more.
    fn pending_error<'a>(
        &'a self,
        otherwise: PromiseError<&'a E>,
    ) -> Result<&'a T, PromiseError<&'a E>> {
        match self.try_result() {
            Some(result) => result.map_err(PromiseError::Failed),
            None => Err(otherwise),
        }
    }

    #[cold]
    fn wait_slow(&self, timeout: Option<Duration>) -> Result<&T, PromiseError<&E>> {
        let inner = self.inner();
        if inner.setter.is_current() {
            return self.pending_error(PromiseError::Deadlock);
        }
        if self.is_abandoned() {
            return self.pending_error(PromiseError::Abandoned);
        }
        // Checked after abandonment: an origin dropped unset abandons this promise, and its
        // address may since be another promise's.
        if inner.origin != 0 && setter::is_draining(inner.origin) {
            return self.pending_error(PromiseError::Deadlock);
        }
        if timeout == Some(Duration::ZERO) {
            return self.pending_error(PromiseError::Timeout);
        }
        // A deadline the clock cannot represent is no deadline.
        let deadline = timeout.and_then(|t| sync::now().checked_add(t));

        // Spin briefly, unless a recent spin of this thread found the machine oversubscribed
        // (see `AdaptiveSpin`).
        let spin = AdaptiveSpin::new();
        while !spin.is_completed() {
            // ORDERING: Acquire, so that a final state lets us read the result.
            if State(inner.state.load(Ordering::Acquire)).is_final() {
                spin.won();
                // SAFETY: the load above saw DONE or ABANDONED with Acquire.
                return unsafe { self.final_result() };
            }
            spin.snooze();
        }
        spin.missed();

        let node = Waiter::for_thread(thread::current());
        loop {
            // SAFETY: the node is new (first round) or was WOKEN and rearmed below (later
            // rounds): no stack holds it, and only this thread, its owner, pushes it.
            if !unsafe { waiters::push(&inner.state, &node, FINAL) } {
                break; // DONE or ABANDONED (the failed CAS read it with Acquire).
            }
            // ORDERING: the push was an RMW on `state`; a dropper that made us the last handle
            // does its RMW on `state` after its Release decrement, so either it takes (and
            // wakes) our node or our push read its write and this load sees the decrement.
            if self.is_abandoned() {
                self.give_up(&node);
                return self.pending_error(PromiseError::Abandoned);
            }
            // Park until a holder takes our node out of the stack and wakes it.
            loop {
                if node.is_woken() {
                    break;
                }
                let timed_out = sync::park_until(deadline);
                if node.is_woken() {
                    break;
                }
                if timed_out {
                    self.give_up(&node);
                    return self.pending_error(PromiseError::Timeout);
                }
            }
            // Woken: by the setter (DONE), by a drop that made us the last handle, or by a
            // channel's resolver dropped unset (ABANDONED).
            if self.is_done() {
                break;
            }
            if self.is_abandoned() {
                return self.pending_error(PromiseError::Abandoned);
            }
            if sync::deadline_passed(deadline) {
                return self.pending_error(PromiseError::Timeout);
            }
            node.rearm();
        }
        // SAFETY: we left the loop on a failed push (it read DONE or ABANDONED with Acquire)
        // or after `is_done` saw DONE with Acquire.
        unsafe { self.final_result() }
    }

    /// Withdraws a waiter's node: marks it cancelled and, if it is still in the stack, prunes
    /// the stack so that giving up leaves nothing behind.
    fn give_up(&self, node: &Arc<Waiter>) {
        if node.cancel() {
            self.prune();
        }
    }

    /// Frees the cancelled nodes of the waiter stack (see [`waiters::prune`]).
    fn prune(&self) {
        let inner = self.inner();
        // SAFETY: `state` is this promise's word, whose stack holds only pushed nodes.
        if unsafe { waiters::prune(&inner.state, FINAL) } && self.is_abandoned() {
            // While we had the stack out, a drop may have made the promise abandoned and found
            // the stack empty: wake what we put back so those waiters see it.
            // ORDERING: the splice was an RMW on `state` after which we read `handles` with
            // Acquire: the same argument as for a fresh push in `wait_slow`.
            let list = waiters::take(&inner.state);
            // SAFETY: `take` emptied the stack with an acquiring RMW: we hold every node.
            unsafe { waiters::wake_list(list) };
        }
    }

    /// A future that resolves to the result; any number of tasks (and threads) may wait at
    /// once, and all are woken. It resolves to [`PromiseError::Abandoned`] when nobody can set
    /// the promise any more (as for [`result`](Promise::result)). Dropping it before it
    /// resolves unregisters it.
    ///
    /// There is no deadlock check: an async task that awaits does not block its thread.
    /// Put a timeout around it with your runtime's timer if you need one.
    ///
    /// ```
    /// use orderslip::Promise;
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     use std::task::{Context, Poll, Wake, Waker};
    /// #     struct T(std::thread::Thread);
    /// #     impl Wake for T { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
    /// #     let waker = Waker::from(std::sync::Arc::new(T(std::thread::current())));
    /// #     let mut cx = Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } std::thread::park(); }
    /// # }
    ///
    /// let p: Promise<u8, ()> = Promise::with_setter(None);
    /// let q = p.clone();
    /// std::thread::spawn(move || q.set_result(5).unwrap());
    /// assert_eq!(block_on(p.wait_async()), Ok(&5));
    /// ```
    pub fn wait_async(&self) -> WaitAsync<'_, T, E> {
        WaitAsync::new(self)
    }

    /// Runs `f` once with the result when the promise is done. Any number of callbacks may
    /// be registered, and **they start in registration order**: a callback registered after
    /// another one (on the same thread, or after learning that the other was registered)
    /// starts after it, and, when both run on the setter's thread, after it returned.
    ///
    /// - Registered while the promise is pending: `f` runs on the setting thread, after the
    ///   setter has woken the waiters (or, if the setter finished its callbacks just before
    ///   `f` got in, at once on this thread).
    /// - Registered once the promise is done: if callbacks registered earlier are still
    ///   being run by the setter, `f` is queued behind them and the setter runs it too, so
    ///   `f` may not have run yet when `then` returns; otherwise `f` runs at once, on this
    ///   thread, before `then` returns. (A `then` called inside a callback that runs at once
    ///   runs nested, before the outer callback returns; callbacks registered by unrelated
    ///   threads at once may run at the same time.)
    ///
    /// Because of that order, a callback must not wait for a later callback of the same
    /// promise: waiting inside a callback for a [`map`](Promise::map) or
    /// [`and_then`](Promise::and_then) made from its own promise, or for a thread that
    /// waits for one, can never end (the later callback runs after this one returns).
    /// Such a wait on the callback's own thread fails at once with
    /// [`PromiseError::Deadlock`].
    ///
    /// A waiter may rely on this when `wait()` returns: the promise is done, but callbacks
    /// registered before may still be running on the setter's thread; a `then` it registers
    /// now runs after all of them. A panicking callback is caught and reported with
    /// `log::error!`; the others still run, and the panic never reaches the setter or the
    /// registering thread.
    ///
    /// If the promise is dropped without being set, its callbacks are dropped unrun (see
    /// *Panics* on [`Promise`] for a callback whose drop panics).
    ///
    /// ```
    /// use orderslip::Promise;
    /// use std::sync::mpsc;
    ///
    /// let p: Promise<u32, String> = Promise::new();
    /// let (tx, rx) = mpsc::channel();
    /// p.then(move |result| tx.send(result.map(|v| *v).map_err(|e| e.clone())).unwrap());
    /// p.set_result(3).unwrap();
    /// assert_eq!(rx.recv().unwrap(), Ok(3));
    /// ```
    pub fn then<F>(&self, f: F)
    where
        F: FnOnce(Result<&T, &E>) + Send + 'static,
    {
        let inner = self.inner();
        // Announce the registration while the promise is pending, so that the setter drains
        // the callback stack; never after DONE (see [`state`]).
        // ORDERING: Acquire so that seeing DONE lets us read the result.
        let mut state = State(inner.state.load(Ordering::Acquire));
        while !state.is_final() && !state.has_callbacks() {
            // ORDERING: Acquire on both outcomes, as for the load; the announcement itself
            // publishes nothing (the node is published by its own Release CAS).
            match inner.state.compare_exchange_weak(
                state.0,
                state.with_callbacks().0,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => state = state.with_callbacks(),
                Err(actual) => state = State(actual),
            }
        }
        if !state.has_callbacks() || inner.callbacks.is_closed() {
            // Final with no drain due (CALLBACKS is never set after DONE or ABANDONED), or the
            // drain is over and every earlier callback has run: run at once, on this thread,
            // unboxed.
            // SAFETY: `state` is final (read with Acquire), or the setter closed the stack
            // after publishing DONE or ABANDONED and `is_closed` read that with Acquire.
            unsafe { self.run_now(f) };
            return;
        }
        // A drain is coming or under way (or the promise is pending): queue behind it.
        if let Err(f) = inner.callbacks.push(Box::new(f)) {
            // The setter closed the stack meanwhile: every earlier callback has run.
            // SAFETY: as above, `push` read the closed stack with Acquire.
            unsafe { self.run_now(f) };
        }
    }

    /// A callback that no drain will take: runs it with the result, or, for a channel whose
    /// resolver was dropped unset, drops it unrun (as a drain would have).
    ///
    /// # Safety
    ///
    /// The caller observed, with Acquire, DONE or ABANDONED in the state word or the closed
    /// callback stack (which is closed only after one of them was published).
    #[inline]
    unsafe fn run_now(&self, f: impl FnOnce(Result<&T, &E>)) {
        match self.try_result() {
            Some(result) => callbacks::run(f, result),
            // Abandoned: dropped unrun, as the resolver's drop does with the queued ones; a
            // panicking `Drop` is contained the same way.
            None => {
                panics::contain("dropping an unrun promise callback", move || drop(f));
            }
        }
    }

    /// The two-callback form of [`then`](Promise::then): `on_value` runs with the value,
    /// or `on_error` with the error. Same rules as `then`.
    ///
    /// ```
    /// use orderslip::Promise;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    ///
    /// let seen = Arc::new(AtomicU32::new(0));
    /// let p: Promise<u32, String> = Promise::new();
    /// let (ok, err) = (seen.clone(), seen.clone());
    /// p.then_else(move |v| ok.store(*v, Ordering::SeqCst), move |_| err.store(999, Ordering::SeqCst));
    /// p.set_result(8).unwrap();
    /// assert_eq!(seen.load(Ordering::SeqCst), 8);
    /// ```
    pub fn then_else<F, G>(&self, on_value: F, on_error: G)
    where
        F: FnOnce(&T) + Send + 'static,
        G: FnOnce(&E) + Send + 'static,
    {
        self.then(move |result| match result {
            Ok(value) => on_value(value),
            Err(error) => on_error(error),
        });
    }

    /// A promise for `f` applied to this promise's value; an error is passed on cloned. The
    /// new promise is set on the thread that sets this one (`f` runs there), and is abandoned
    /// if this one is dropped unset. It keeps this promise's designated setter.
    ///
    /// ```
    /// use orderslip::Promise;
    /// use std::time::Duration;
    ///
    /// let p: Promise<u32, String> = Promise::with_setter(None);
    /// let doubled = p.map(|v| v * 2);
    /// p.set_result(21).unwrap();
    /// assert_eq!(doubled.result(Duration::from_secs(1)), Ok(&42));
    /// ```
    #[must_use = "the mapped promise is the only way to get the mapped value"]
    pub fn map<U, F>(&self, f: F) -> Promise<U, E>
    where
        F: FnOnce(&T) -> U + Send + 'static,
        U: Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
    {
        self.and_then(move |value| Ok(f(value)))
    }

    /// A promise for `f` applied to this promise's value, where `f` may fail: its `Err`
    /// fails the new promise, as does an error of this one (cloned). Otherwise as
    /// [`map`](Promise::map).
    ///
    /// ```
    /// use orderslip::{Promise, PromiseError};
    /// use std::time::Duration;
    ///
    /// let p: Promise<&str, String> = Promise::with_setter(None);
    /// let parsed = p.and_then(|s| s.parse::<u8>().map_err(|e| e.to_string()));
    /// p.set_result("300").unwrap();
    /// assert!(matches!(parsed.result(Duration::from_secs(1)), Err(PromiseError::Failed(_))));
    /// ```
    #[must_use = "the mapped promise is the only way to get the mapped value"]
    pub fn and_then<U, F>(&self, f: F) -> Promise<U, E>
    where
        F: FnOnce(&T) -> Result<U, E> + Send + 'static,
        U: Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
    {
        // The new promise is set by a callback of this one, or, for a chain, of this one's
        // origin: the drain that must not be waited in (see `crate::setter`).
        let origin = match self.inner().origin {
            0 => self.inner.as_ptr() as usize,
            origin => origin,
        };
        let setter = self.inner().setter;
        if self.inner().channel {
            // A map of a channel is a channel: its resolver lives in the callback, so a
            // resolver of this one dropped unset (which drops the callbacks unrun) abandons
            // it at once, and nobody else can set it.
            let (resolver, next) = Promise::channel_with(setter, origin);
            self.then(move |result| {
                let _ = resolver.resolve(match result {
                    Ok(value) => f(value),
                    Err(error) => Err(error.clone()),
                });
            });
            return next;
        }
        let next = Promise::from_inner(Promise::new_inner(setter, origin, false));
        let writer = next.clone();
        self.then(move |result| {
            let _ = writer.set(match result {
                Ok(value) => f(value),
                Err(error) => Err(error.clone()),
            });
        });
        next
    }
}

impl<T, E> Clone for Promise<T, E> {
    /// Another handle to the same promise (no allocation).
    ///
    /// # Aborts
    ///
    /// Like `Arc`, it aborts the process if the handle count would overflow (which takes
    /// `isize::MAX / 2` handles, so only leaked clones can get there).
    #[inline]
    fn clone(&self) -> Self {
        self.inner().handles.add();
        Promise {
            inner: self.inner,
            _owns: PhantomData,
            _invariant: PhantomData,
        }
    }
}

impl<T, E> Drop for Promise<T, E> {
    #[inline]
    fn drop(&mut self) {
        let inner = self.inner();
        if inner.channel && inner.handles.is_only_live() {
            // The last handle of a channel (which never has orphaning guards): if the
            // resolver set it and left, with no callback and no waiter ever left behind,
            // the block holds nothing but the result. Drop that and free the block, without
            // the general path's checks.
            // ORDERING: Acquire: RESOLVER clear (final) orders the resolver's work before
            // the free, as in `channel::release_promise`.
            if State(inner.state.load(Ordering::Acquire)).0 == State::CHANNEL.resolved(DONE).0 {
                // SAFETY: DONE: the slot holds the result. Nobody else can reach the block:
                // this is the only live handle and the resolver is gone. Nothing else in the
                // block needs dropping: no callback was registered (no CALLBACKS) and the
                // waiter stack is empty. The block came from `boxed::into_raw`.
                unsafe {
                    inner.slot.with_mut(|slot| (*slot).assume_init_drop());
                    sync::boxed::dealloc(self.inner.as_ptr());
                }
                return;
            }
        }
        if self.release() {
            // SAFETY: `release` says we gave up the last guard: no other handle, guard or
            // resolver can reach the block, and `self` is never used again. The block came
            // from `boxed::into_raw` in `new_inner`.
            unsafe { sync::boxed::free(self.inner.as_ptr()) };
        }
    }
}

impl<T, E> Promise<T, E> {
    /// Moves the result out of the promise if this is its last handle and it is done, like
    /// [`Arc::into_inner`](std::sync::Arc::into_inner): the way to take a large value
    /// without cloning it.
    ///
    /// Returns `None` (and drops this handle, as a drop would) if another handle, or a
    /// future or callback that holds one, still exists, if the promise is not done, or if
    /// a channel's resolver is still running the promise's callbacks. When several threads
    /// call `into_inner` on the last handles of a done promise at once, at most one of them
    /// gets the result (the one whose handle goes last), as for `Arc::into_inner`; it is
    /// exactly one unless another handle's drop is still waking the waiters of a shared
    /// promise it left with one handle (an orphaning drop, see `Promise`'s abandonment):
    /// then `into_inner` returns `None` and that drop frees the block, with the value.
    ///
    /// ```
    /// use orderslip::Promise;
    ///
    /// let (resolver, reply) = Promise::<Vec<u8>, String>::channel();
    /// let other = reply.clone();
    /// resolver.set_result(vec![0; 1 << 20]).unwrap();
    /// assert_eq!(other.into_inner(), None); // `reply` still exists
    /// let bytes: Vec<u8> = reply.into_inner().unwrap().unwrap(); // moved, not cloned
    /// assert_eq!(bytes.len(), 1 << 20);
    /// ```
    #[must_use = "the result is dropped if unused; drop the promise instead"]
    pub fn into_inner(self) -> Option<Result<T, E>> {
        let this = std::mem::ManuallyDrop::new(self);
        if !this.release() {
            return None;
        }
        let inner = this.inner();
        // ORDERING: Relaxed: `release` gave us the last guard with Acquire; the block is ours.
        let state = State(inner.state.load(Ordering::Relaxed));
        let result = if state.is_done() {
            // The slot is moved out below, so the block's `Drop` must not drop it too.
            // ORDERING: Relaxed: the block is ours alone.
            inner.state.store(state.0 & !state::DONE, Ordering::Relaxed);
            // SAFETY: DONE: the slot holds the result, and nobody else can reach the block.
            Some(
                inner
                    .slot
                    .with(|slot| unsafe { (*slot).assume_init_read() }),
            )
        } else {
            None
        };
        // SAFETY: as in `drop`: we gave up the last guard, and `this` is never used again.
        unsafe { sync::boxed::free(this.inner.as_ptr()) };
        result
    }

    /// Marks the promise as cloned (see `Handles::mark_cloned`).
    fn mark_cloned(&self) {
        let inner = self.inner();
        if !inner.channel {
            inner.handles.mark_cloned();
        }
    }

    /// Whether this handle is the only way to reach the block: no other handle, no
    /// orphaning drop under way, no resolver that may still touch it. Then
    /// [`into_inner`](Promise::into_inner) on it succeeds if the promise is done.
    fn is_unique(&self) -> bool {
        let inner = self.inner();
        // ORDERING: Acquire, as in `release`'s fast path.
        inner.handles.is_unique()
            && (!inner.channel || !State(inner.state.load(Ordering::Acquire)).resolver_active())
    }

    /// Gives up this handle; `true` when the caller must free the block (it gave up the last
    /// guard, and no resolver can touch the block any more).
    #[inline]
    fn release(&self) -> bool {
        let inner = self.inner();
        if inner.channel {
            return channel::release_promise(&inner.handles, &inner.state);
        }
        // The closures capture the state word alone, not `inner`: they are arguments of
        // `remove`, which may return after another handle has freed the block, and a
        // reference held by an argument must not outlive its memory unless it is to
        // interior-mutable data, as an atomic is (the same reason `Arc::drop` only touches
        // its counts through `&AtomicUsize`). Miri's Stacked Borrows checks this.
        let state = &inner.state;
        let pending = || {
            // ORDERING: Acquire: seeing DONE means no waiter needs to hear of abandonment.
            !State(state.load(Ordering::Acquire)).is_done()
        };
        let orphan = || {
            // The take is an RMW on `state` after the orphaning CAS on the count; see
            // [`handles`] for why no waiter is missed.
            let list = waiters::take(state);
            // SAFETY: `take` emptied the stack with an acquiring RMW: we hold every node.
            unsafe { waiters::wake_list(list) };
        };
        inner.handles.remove(pending, orphan)
    }
}

impl<T, E> Drop for Inner<T, E> {
    /// Drops the result (if set) and any leftover cancelled waiter nodes. The callbacks of a
    /// promise never set are dropped unrun by [`Callbacks`]' own `Drop`, after this.
    #[inline]
    fn drop(&mut self) {
        // We are the last guard: nobody else touches the block, so Relaxed suffices (the
        // guard count's Acquire ordered every other handle's work before this).
        let state = State(self.state.load(Ordering::Relaxed));
        if state.is_done() {
            // SAFETY: DONE means the slot holds a value, written once and dropped only here.
            self.slot
                .with_mut(|slot| unsafe { (*slot).assume_init_drop() });
        }
        // Leftover cancelled waiter nodes (nobody can be waiting: waiters hold a handle).
        if state.waiters() != 0 {
            drop_leftover_waiters(state);
        }
    }
}

/// Drops the cancelled waiter nodes left in a freed block's word (off the hot path).
#[cold]
#[inline(never)]
fn drop_leftover_waiters(state: State) {
    // SAFETY: only called from `Inner::drop`: we own the block, so the stack is ours alone.
    unsafe { waiters::drop_list(state.waiters() as *const Waiter) };
}

impl<T, E> fmt::Debug for Promise<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.try_result() {
            None if self.inner().channel && self.is_abandoned() => "abandoned",
            None => "pending",
            Some(Ok(_)) => "fulfilled",
            Some(Err(_)) => "failed",
        };
        f.debug_struct("Promise")
            .field("state", &state)
            .field("setter", &self.inner().setter)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10, defect 7: cloning unchecked let the handle count wrap (on a 32-bit target,
    /// after about 2^30 leaked clones), and a later clone + drop freed the block under a live
    /// handle. The count is set near the limit by hand (no test can leak 2^62 clones), in a
    /// child process, which must abort on the next clone. Before the fix the child's clone
    /// returned and the child exited normally.
    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot spawn processes")]
    fn cloning_past_the_handle_limit_aborts_the_process() {
        const CHILD: &str = "ORDERSLIP_HANDLE_OVERFLOW_CHILD";
        if std::env::var_os(CHILD).is_some() {
            let p: Promise<(), ()> = Promise::with_setter(None);
            p.inner()
                .handles
                .set_count_for_test(handles::Handles::MAX_LIVE + 1);
            let q = p.clone(); // must abort
            std::mem::forget((p, q));
            std::process::exit(0);
        }
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "promise::tests::cloning_past_the_handle_limit_aborts_the_process",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert!(
            !output.status.success(),
            "the child's clone past the limit returned: {output:?}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(output.status.signal(), Some(6), "SIGABRT: {output:?}");
        }
    }
}
