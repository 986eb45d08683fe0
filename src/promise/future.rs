//! [`WaitAsync`], the future of [`Promise::wait_async`]: a waiter-stack node whose owner is
//! a task, woken through its `Waker`.
//!
//! A poll that finds the promise pending pushes the task's node (or re-pushes it after a
//! wake-up) and then checks abandonment, exactly as a blocked thread does in
//! `Promise::wait_slow`; dropping the future unregisters the node (marks it cancelled and
//! prunes), so a dropped future leaves nothing behind.

use super::state::FINAL;
use super::waiters::{self, Waiter};
use super::Promise;
use crate::error::PromiseError;
use crate::sync::Arc;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The future returned by [`Promise::wait_async`].
///
/// It resolves to the promise's result, or to [`PromiseError::Abandoned`]. Dropping it before
/// it resolves removes its registration from the promise. Being a named type, it can be
/// stored in a struct or returned from a function.
///
/// ```
/// use orderslip::{Promise, WaitAsync};
///
/// struct Pending<'a> {
///     reply: WaitAsync<'a, u32, String>,
/// }
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() {
///     let promise: Promise<u32, String> = Promise::with_setter(None);
///     let pending = Pending { reply: promise.wait_async() };
///     let setter = promise.clone();
///     tokio::spawn(async move { setter.set_result(7).unwrap() });
///     assert_eq!(pending.reply.await, Ok(&7));
/// }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct WaitAsync<'a, T, E> {
    promise: &'a Promise<T, E>,
    node: Option<Arc<Waiter>>,
}

impl<'a, T, E> WaitAsync<'a, T, E> {
    /// A future for `promise`, not registered until first polled.
    pub(super) fn new(promise: &'a Promise<T, E>) -> Self {
        WaitAsync {
            promise,
            node: None,
        }
    }
}

impl<'a, T, E> Future for WaitAsync<'a, T, E> {
    type Output = Result<&'a T, PromiseError<&'a E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let promise = self.promise;
        poll_wait(promise, &mut self.node, cx)
    }
}

/// One poll of a task waiting for `promise` with the node in `node` (registered on the
/// first pending poll): the body of [`WaitAsync`] and of the owned
/// [`PromiseFuture`](super::PromiseFuture).
pub(super) fn poll_wait<'a, T, E>(
    promise: &'a Promise<T, E>,
    node: &mut Option<Arc<Waiter>>,
    cx: &mut Context<'_>,
) -> Poll<Result<&'a T, PromiseError<&'a E>>> {
    if let Some(result) = promise.try_result() {
        return Poll::Ready(result.map_err(PromiseError::Failed));
    }
    let registered = match node {
        None => {
            let new = Waiter::for_task(cx.waker());
            // SAFETY: the node is new, so in no stack; `state` is the promise's word.
            let pushed = unsafe { waiters::push(&promise.inner().state, &new, FINAL) };
            if pushed {
                *node = Some(new);
            }
            pushed
        }
        Some(node) => {
            node.register(cx.waker());
            if node.is_woken() {
                node.rearm();
                // SAFETY: the node was WOKEN: its holder took it out of the stack and let go
                // of it, and only this future (its owner) pushes it again.
                unsafe { waiters::push(&promise.inner().state, node, FINAL) }
            } else {
                true
            }
        }
    };
    if !registered {
        // A node that no stack holds needs no unregistering.
        *node = None;
        // SAFETY: the push found DONE or ABANDONED (and read it with Acquire).
        return Poll::Ready(unsafe { promise.final_result() });
    }
    // ORDERING: as in `wait_slow`: checked after the push, an RMW on `state`.
    if promise.is_abandoned() {
        if let Some(node) = node.take() {
            promise.give_up(&node);
        }
        return Poll::Ready(promise.pending_error(PromiseError::Abandoned));
    }
    Poll::Pending
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
