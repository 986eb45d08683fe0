//! The [`Promise`]: a write-once result that threads wait for with a timeout, async tasks
//! `.await`, and callbacks react to.
//!
//! # How it works
//!
//! All clones of a promise share one heap block ([`Inner`]) holding:
//!
//! - `state`, one atomic word: the tag bits CLAIMED, DONE and CALLBACKS, and the head of a
//!   lock-free stack of waiting threads and tasks ([`crate::state`] draws the machine);
//! - `callbacks`, a second lock-free stack for `then` callbacks, closed by the setter;
//! - `handles`, how many handles exist (and whether the promise was ever cloned), which frees
//!   the block and detects abandonment;
//! - the result slot, written once by the setter that won the claim.
//!
//! ```text
//!  EMPTY --fetch_or(CLAIMED)--> SETTING --swap(DONE), Release--> DONE
//! ```
//!
//! Setting is wait-free: one `fetch_or` to claim, a write, one `swap` that publishes DONE and
//! takes the whole waiter stack, and (only if a callback was ever registered) one `swap` that
//! closes the callback stack. The setter then wakes the waiters and runs the callbacks.
//!
//! Waiting first checks DONE (one Acquire load), then spins briefly, then pushes a node onto
//! the waiter stack with a CAS that fails if DONE is set, and parks until its node is woken.
//! Because "push unless DONE" and "set DONE and take the stack" are operations on the same
//! word, a waiter that registers just as the setter publishes is either taken (and woken) or
//! sees DONE: no wake-up is lost.

use crate::error::{PromiseDoneError, PromiseError};
use crate::state::{live_handles, ptr_bits, CALLBACKS, CLAIMED, CLONED, DONE, LEAVING, ONE_HANDLE};
use crate::sync::{self, thread, Arc, AtomicPtr, AtomicUsize, Ordering, Spin, UnsafeCell};
use crate::waiter::{self, Waiter};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::{self, NonNull};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Which thread, if any, must not wait for the promise while it is pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Setter {
    /// No deadlock check.
    Nobody,
    /// This thread will set it.
    Thread(thread::ThreadId),
    /// An action of the [`ActionQueue`](crate::ActionQueue) with this id will set it, so
    /// waiting from inside an action of that queue can never end.
    Queue(usize),
}

impl Setter {
    fn is_current(self) -> bool {
        match self {
            Setter::Nobody => false,
            Setter::Thread(id) => thread::current_id() == id,
            Setter::Queue(id) => crate::queue::current_queue() == Some(id),
        }
    }
}

type Callback<T, E> = Box<dyn FnOnce(Result<&T, &E>) + Send>;

/// A registered `then` callback, in the callback stack.
struct CallbackNode<T, E> {
    /// Written by the registrar before the CAS that publishes the node; read by the setter
    /// after the swap that takes the stack.
    next: *mut CallbackNode<T, E>,
    f: Callback<T, E>,
}

/// The callback stack's value once the setter has taken it: registrars that see it run their
/// callback themselves. It is the address just past a node at address 0, which no heap
/// allocation can have; it is only compared, never dereferenced.
fn closed<T, E>() -> *mut CallbackNode<T, E> {
    ptr::null_mut::<CallbackNode<T, E>>().wrapping_add(1)
}

/// The shared block all handles of one promise point to: the crate's one allocation per
/// promise.
struct Inner<T, E> {
    /// Tags and waiter stack; see [`crate::state`].
    state: AtomicUsize,
    /// `then` callbacks, newest first; [`closed`] after the setter took them.
    callbacks: AtomicPtr<CallbackNode<T, E>>,
    /// `handles << 2 | LEAVING | CLONED`; see [`crate::state`].
    handles: AtomicUsize,
    setter: Setter,
    slot: UnsafeCell<MaybeUninit<Result<T, E>>>,
}

/// A write-once result that is still being produced: an order slip.
///
/// A `Promise` is a cheap handle (one pointer); clones share one slot. One side fulfils it
/// with [`set_result`](Promise::set_result) or [`set_exception`](Promise::set_exception) (the
/// first set wins); any number of threads block on it with [`result`](Promise::result) or
/// [`wait`](Promise::wait), async tasks `.await` [`wait_async`](Promise::wait_async), and
/// callbacks registered with [`then`](Promise::then) run when it is done.
///
/// Waiting on a pending promise from its designated setter thread fails at once with
/// [`PromiseError::Deadlock`] instead of hanging, and a waiter whose handle is the last one
/// left (after the others were dropped unset) gets [`PromiseError::Abandoned`] at once.
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
pub struct Promise<T, E> {
    inner: NonNull<Inner<T, E>>,
    _owns: PhantomData<Inner<T, E>>,
}

// SAFETY: a handle moved to another thread may move a `T`/`E` in (set), hand out `&T`/`&E`
// (wait), or drop them (last handle): that needs `Send + Sync` for both. Callbacks are
// `Send`. Everything else in `Inner` is atomics.
unsafe impl<T: Send + Sync, E: Send + Sync> Send for Promise<T, E> {}
// SAFETY: as above: every method takes `&self` and synchronises through the atomics.
unsafe impl<T: Send + Sync, E: Send + Sync> Sync for Promise<T, E> {}

impl<T, E> Promise<T, E> {
    /// The seed's default timeout for [`result`](Promise::result): one second. Nothing uses it
    /// implicitly; pass it where you want the seed's behaviour.
    ///
    /// ```
    /// use orderslip::{Promise, PromiseError};
    /// let p: Promise<(), ()> = Promise::with_setter(None);
    /// # let _ = Promise::<(), ()>::DEFAULT_TIMEOUT;
    /// # assert_eq!(p.result(std::time::Duration::ZERO), Err(PromiseError::Timeout));
    /// // p.result(Promise::<(), ()>::DEFAULT_TIMEOUT) would wait up to a second.
    /// ```
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// A pending promise whose designated setter is the current thread (the seed's default):
    /// waiting for it on this thread while it is pending fails with
    /// [`PromiseError::Deadlock`].
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
    pub fn with_setter(setter: Option<thread::ThreadId>) -> Self {
        Self::with_setter_kind(match setter {
            Some(id) => Setter::Thread(id),
            None => Setter::Nobody,
        })
    }

    #[inline]
    pub(crate) fn with_setter_kind(setter: Setter) -> Self {
        let inner = Box::new(Inner {
            state: AtomicUsize::new(0),
            callbacks: AtomicPtr::new(ptr::null_mut()),
            handles: AtomicUsize::new(ONE_HANDLE),
            setter,
            slot: UnsafeCell::new(MaybeUninit::uninit()),
        });
        Promise {
            // SAFETY: `Box::into_raw` never returns null.
            inner: unsafe { NonNull::new_unchecked(Box::into_raw(inner)) },
            _owns: PhantomData,
        }
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
    /// another, then wakes the waiters and runs the callbacks registered so far (on this
    /// thread; a panicking callback is caught and logged).
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
            Ok(v) => PromiseDoneError(v),
            Err(_) => unreachable!("set hands back what it was given"),
        })
    }

    /// Fulfils the promise with an error (the seed's `set_exception`). Waiters get
    /// [`PromiseError::Failed`]. The first set wins, as for [`set_result`](Promise::set_result).
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
            Err(e) => PromiseDoneError(e),
            Ok(_) => unreachable!("set hands back what it was given"),
        })
    }

    #[inline]
    fn set(&self, result: Result<T, E>) -> Result<(), Result<T, E>> {
        let inner = self.inner();
        // Claim. ORDERING: Relaxed: the claim orders nothing by itself; other claimers only
        // learn they lost, and readers wait for DONE, which the Release swap below publishes.
        if inner.state.fetch_or(CLAIMED, Ordering::Relaxed) & CLAIMED != 0 {
            return Err(result);
        }
        // SAFETY: the claim above succeeded, so this thread is the only writer of the slot,
        // and nobody reads it before DONE is published below.
        inner.slot.with_mut(|slot| unsafe { (*slot).write(result) });
        // Publish and take the waiter stack in one step. ORDERING: Release publishes the slot
        // to every Acquire reader of DONE; Acquire lets us read the waiter nodes pushed with
        // Release. CALLBACKS is set too so the word stays uniform; it means nothing once DONE.
        let old = inner
            .state
            .swap(CLAIMED | DONE | CALLBACKS, Ordering::AcqRel);
        if ptr_bits(old) != 0 {
            waiter::wake_list(ptr_bits(old) as *const Waiter);
        }
        if old & CALLBACKS != 0 {
            self.run_callbacks();
        }
        Ok(())
    }

    /// Takes the callback stack (closing it) and runs the callbacks in registration order.
    /// Called once, by the setter, after publishing DONE.
    #[cold]
    #[inline(never)]
    fn run_callbacks(&self) {
        // ORDERING: AcqRel: Acquire to read the nodes registrars pushed with Release;
        // Release so a registrar that reads `closed` also sees the slot (written before).
        let mut node = self.inner().callbacks.swap(closed(), Ordering::AcqRel);
        // The stack is newest first; reverse it to run in registration order.
        let mut ordered: *mut CallbackNode<T, E> = ptr::null_mut();
        while !node.is_null() {
            // SAFETY: the swap handed us the stack; every node is a live `Box` we now own.
            let next = unsafe { (*node).next };
            // SAFETY: as above.
            unsafe { (*node).next = ordered };
            ordered = node;
            node = next;
        }
        let result = self.done_result();
        while !ordered.is_null() {
            // SAFETY: each node came from `Box::into_raw` in `then` and is ours alone.
            let node = unsafe { Box::from_raw(ordered) };
            ordered = node.next;
            run_callback(node.f, result);
        }
    }

    /// The result, once DONE has been observed with Acquire.
    #[inline]
    fn done_result(&self) -> Result<&T, &E> {
        // SAFETY: the caller saw DONE with Acquire, so the slot was written and published and
        // is never written again; it lives as long as `self`.
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
    pub fn is_done(&self) -> bool {
        // ORDERING: Acquire so a `true` here lets the caller read the result next.
        self.inner().state.load(Ordering::Acquire) & DONE != 0
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
    pub fn try_result(&self) -> Option<Result<&T, &E>> {
        if self.is_done() {
            Some(self.done_result())
        } else {
            None
        }
    }

    /// Waits up to `timeout` for the result.
    ///
    /// - Done with a value: `Ok(&value)`; done with an error: `Err(PromiseError::Failed(&e))`.
    /// - Still pending after `timeout`: `Err(PromiseError::Timeout)`.
    /// - Pending and the caller is the designated setter: `Err(PromiseError::Deadlock)` at once.
    /// - Pending and every other handle is gone: `Err(PromiseError::Abandoned)` at once.
    ///
    /// `Duration::ZERO` polls; a timeout too large for the clock (such as `Duration::MAX`)
    /// waits without limit. The caller spins for a few microseconds before it parks.
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

    /// Whether the promise can no longer be set by anyone but the caller's handle: it had
    /// other handles and they are all gone. (A promise that was never cloned may be shared by
    /// reference with its setter, so it never counts as abandoned.)
    fn is_abandoned(&self) -> bool {
        // ORDERING: Acquire pairs with the Release of the handle that went away, so if it set
        // the promise first, the caller's next DONE check sees it.
        let handles = self.inner().handles.load(Ordering::Acquire);
        live_handles(handles) == 1 && handles & CLONED != 0
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
        if timeout == Some(Duration::ZERO) {
            return self.pending_error(PromiseError::Timeout);
        }
        // A deadline the clock cannot represent is no deadline.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));

        let spin = Spin::new();
        while !spin.is_completed() {
            if let Some(result) = self.try_result() {
                return result.map_err(PromiseError::Failed);
            }
            spin.snooze();
        }

        let node = Waiter::for_thread(thread::current());
        loop {
            if !waiter::push(&inner.state, &node, DONE) {
                break; // DONE: the result is there (the failed CAS read it with Acquire).
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
            // Woken: by the setter (DONE), or by a drop that made us the last handle.
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
        self.done_result().map_err(PromiseError::Failed)
    }

    /// Withdraws a waiter's node: marks it cancelled and, if it is still in the stack, prunes
    /// the stack so that giving up leaves nothing behind.
    fn give_up(&self, node: &Arc<Waiter>) {
        if node.cancel() {
            self.prune();
        }
    }

    /// Frees the cancelled nodes of the waiter stack (see [`waiter::prune`]).
    fn prune(&self) {
        let inner = self.inner();
        if waiter::prune(&inner.state, DONE) && self.is_abandoned() {
            // While we had the stack out, a drop may have made the promise abandoned and found
            // the stack empty: wake what we put back so those waiters see it.
            // ORDERING: the splice was an RMW on `state` after which we read `handles` with
            // Acquire: the same argument as for a fresh push in `wait_slow`.
            waiter::wake_list(waiter::take(&inner.state));
        }
    }

    /// A future that resolves to the result; any number of tasks (and threads) may wait at
    /// once, and all are woken. It resolves to [`PromiseError::Abandoned`] when every other
    /// handle is gone unset. Dropping it before it resolves unregisters it.
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
        WaitAsync {
            promise: self,
            node: None,
        }
    }

    /// Runs `f` once with the result when the promise is done: on the setting thread, or at
    /// once on this thread if it is already done. Any number of callbacks may be registered;
    /// those registered before the promise is done run in registration order. A panicking
    /// callback is caught and reported with `log::error!`; the others still run, and the
    /// panic never reaches the setter.
    ///
    /// If the promise is dropped without being set, its callbacks are dropped unrun.
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
        // ORDERING: Acquire so that seeing DONE lets us read the result.
        let mut state = inner.state.load(Ordering::Acquire);
        if state & (DONE | CALLBACKS) == 0 {
            // Announce the registration before pushing, so the setter knows to close the
            // callback stack. ORDERING: AcqRel: Acquire to read the result if this returns
            // DONE; the announcement itself orders nothing else.
            state = inner.state.fetch_or(CALLBACKS, Ordering::AcqRel);
        }
        if state & DONE != 0 {
            run_callback(Box::new(f), self.done_result());
            return;
        }
        let node = Box::into_raw(Box::new(CallbackNode {
            next: ptr::null_mut(),
            f: Box::new(f),
        }));
        // ORDERING: Acquire: a `closed` head lets us read the result (the setter closed the
        // stack with Release after publishing).
        let mut head = inner.callbacks.load(Ordering::Acquire);
        loop {
            if head == closed() {
                // The setter took the stack before we got in: run it ourselves.
                // SAFETY: the node was never published; we still own the box.
                let node = unsafe { Box::from_raw(node) };
                run_callback(node.f, self.done_result());
                return;
            }
            // SAFETY: the node is not published yet; we are its only user.
            unsafe { (*node).next = head };
            // ORDERING: Release publishes the node's contents to the setter's Acquire swap.
            match inner.callbacks.compare_exchange_weak(
                head,
                node,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    /// The seed's two-callback form of [`then`](Promise::then): `on_value` runs with the value,
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
    pub fn and_then<U, F>(&self, f: F) -> Promise<U, E>
    where
        F: FnOnce(&T) -> Result<U, E> + Send + 'static,
        U: Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
    {
        let next = Promise::with_setter_kind(self.inner().setter);
        let setter = next.clone();
        self.then(move |result| {
            let _ = setter.set(match result {
                Ok(value) => f(value),
                Err(error) => Err(error.clone()),
            });
        });
        next
    }
}

/// Runs one callback, catching and logging a panic so it reaches neither the setter nor the
/// other callbacks.
fn run_callback<T, E>(f: Callback<T, E>, result: Result<&T, &E>) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(move || f(result))) {
        log::error!(
            "orderslip: a promise callback panicked: {}",
            panic_message(&*payload).unwrap_or("(non-string panic payload)")
        );
        drop_payload(payload);
    }
}

/// Drops a panic payload, catching (and logging) a panic from its own `Drop`, so that not
/// even that reaches the setter or the worker.
pub(crate) fn drop_payload(payload: Box<dyn std::any::Any + Send>) {
    if panic::catch_unwind(AssertUnwindSafe(move || drop(payload))).is_err() {
        log::error!("orderslip: dropping a panic payload panicked");
    }
}

/// The message of a panic payload, when it is a string.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

impl<T, E> Clone for Promise<T, E> {
    /// Another handle to the same promise (no allocation).
    fn clone(&self) -> Self {
        let handles = &self.inner().handles;
        // ORDERING: Relaxed, as for `Arc`: the new handle is created from an existing one, so
        // the block is alive; whoever receives the clone synchronises through its own means.
        let old = handles.fetch_add(ONE_HANDLE, Ordering::Relaxed);
        if old & CLONED == 0 {
            // ORDERING: Relaxed: no handle can be dropped before this clone returns (the
            // original is borrowed, the clone not yet handed out), so every later decrement
            // comes after this in the word's modification order and carries the bit along.
            handles.fetch_or(CLONED, Ordering::Relaxed);
        }
        Promise {
            inner: self.inner,
            _owns: PhantomData,
        }
    }
}

impl<T, E> Drop for Promise<T, E> {
    #[inline]
    fn drop(&mut self) {
        // ORDERING: Acquire: if this is the only handle, no other can appear (cloning needs
        // one) and we free the block; Acquire orders that after every other handle's Release
        // decrement, like `Arc`'s fence.
        if self.inner().handles.load(Ordering::Acquire) >> 2 == 1 {
            self.free();
        } else {
            self.drop_shared();
        }
    }
}

impl<T, E> Promise<T, E> {
    /// Frees the block. Only the last handle calls this, once.
    #[inline]
    fn free(&mut self) {
        // SAFETY: this is the last handle; the block came from `Box::into_raw`.
        drop(unsafe { Box::from_raw(self.inner.as_ptr()) });
    }

    /// Drops a handle while others may exist: decrements the count, wakes the waiters of the
    /// one handle left if this makes a pending promise abandoned, frees if it was the last.
    #[inline(never)]
    fn drop_shared(&mut self) {
        let inner = self.inner();
        // ORDERING: Acquire, as in `drop`.
        let mut handles = inner.handles.load(Ordering::Acquire);
        loop {
            if handles >> 2 == 1 {
                break; // the last handle: free the block
            }
            // ORDERING: Acquire: seeing DONE means no waiter needs to hear of abandonment.
            let orphaning = handles >> 2 == 2
                && handles & LEAVING == 0
                && inner.state.load(Ordering::Acquire) & DONE == 0;
            let new = if orphaning {
                // Keep our count while we wake the waiters, so the other handle cannot free
                // the block under us; LEAVING tells waiters we are as good as gone.
                handles | LEAVING
            } else {
                handles - ONE_HANDLE
            };
            // ORDERING: AcqRel: Release so whoever ends up last (and frees, or reads the slot)
            // sees what this handle did; Acquire so we can free if it turns out to be us.
            match inner.handles.compare_exchange_weak(
                handles,
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Err(actual) => handles = actual,
                Ok(_) if !orphaning => return,
                Ok(_) => {
                    // The take is an RMW on `state` after our Release CAS: a waiter whose push
                    // came before it is taken and woken; one whose push came after read our
                    // write, and its check of `handles` sees LEAVING (see `wait_slow`).
                    waiter::wake_list(waiter::take(&inner.state));
                    // ORDERING: AcqRel, as for the CAS above.
                    let old = inner
                        .handles
                        .fetch_sub(ONE_HANDLE | LEAVING, Ordering::AcqRel);
                    if old >> 2 == 1 {
                        break; // the other handle went away meanwhile: we are last
                    }
                    return;
                }
            }
        }
        self.free();
    }
}

impl<T, E> Drop for Inner<T, E> {
    fn drop(&mut self) {
        // We are the last handle: nobody else touches the block, so Relaxed suffices (the
        // handle count's Acquire ordered every other handle's work before this).
        let state = self.state.load(Ordering::Relaxed);
        if state & DONE != 0 {
            // SAFETY: DONE means the slot holds a value, written once and dropped only here.
            self.slot
                .with_mut(|slot| unsafe { (*slot).assume_init_drop() });
        }
        // Leftover cancelled waiter nodes (nobody can be waiting: waiters hold a handle).
        if ptr_bits(state) != 0 {
            waiter::drop_list(ptr_bits(state) as *const Waiter);
        }
        let mut node = self.callbacks.load(Ordering::Relaxed);
        if !node.is_null() && node != closed() {
            // Never set: drop the callbacks unrun. If dropping one panics, drop the rest
            // anyway and re-raise the first panic afterwards, as std's containers do.
            let mut first_panic = None;
            while !node.is_null() {
                // SAFETY: unpublished to anyone else now; each node is a `Box` we own.
                let boxed = unsafe { Box::from_raw(node) };
                node = boxed.next;
                if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(move || drop(boxed))) {
                    first_panic.get_or_insert(payload);
                }
            }
            if let Some(payload) = first_panic {
                panic::resume_unwind(payload);
            }
        }
    }
}

impl<T, E> fmt::Debug for Promise<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.try_result() {
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

/// The future returned by [`Promise::wait_async`].
///
/// It resolves to the promise's result, or to [`PromiseError::Abandoned`]. Dropping it before
/// it resolves removes its registration from the promise.
#[must_use = "futures do nothing unless polled"]
pub struct WaitAsync<'a, T, E> {
    promise: &'a Promise<T, E>,
    node: Option<Arc<Waiter>>,
}

impl<'a, T, E> Future for WaitAsync<'a, T, E> {
    type Output = Result<&'a T, PromiseError<&'a E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let promise = self.promise;
        if let Some(result) = promise.try_result() {
            return Poll::Ready(result.map_err(PromiseError::Failed));
        }
        let registered = match &self.node {
            None => {
                let node = Waiter::for_task(cx.waker());
                let pushed = waiter::push(&promise.inner().state, &node, DONE);
                self.node = Some(node);
                pushed
            }
            Some(node) => {
                node.register(cx.waker());
                if node.is_woken() {
                    node.rearm();
                    waiter::push(&promise.inner().state, node, DONE)
                } else {
                    true
                }
            }
        };
        if !registered {
            // The push found DONE (and read it with Acquire).
            return Poll::Ready(promise.done_result().map_err(PromiseError::Failed));
        }
        // ORDERING: as in `wait_slow`: checked after the push, an RMW on `state`.
        if promise.is_abandoned() {
            if let Some(node) = self.node.take() {
                promise.give_up(&node);
            }
            return Poll::Ready(promise.pending_error(PromiseError::Abandoned));
        }
        Poll::Pending
    }
}

impl<T, E> Drop for WaitAsync<'_, T, E> {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            self.promise.give_up(&node);
        }
    }
}

impl<T, E> fmt::Debug for WaitAsync<'_, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitAsync")
            .field("promise", self.promise)
            .field("registered", &self.node.is_some())
            .finish()
    }
}
