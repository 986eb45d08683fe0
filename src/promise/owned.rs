//! [`PromiseFuture`]: `.await` on a `Promise` itself ([`IntoFuture`]), a future that owns
//! its handle, so that it can be moved into a spawned task and its output borrows nothing.
//!
//! It is [`WaitAsync`](super::WaitAsync)'s waiter (the same node and the same poll, see
//! [`super::future`]) plus the handle; when ready it hands out an owned copy of the result,
//! moving it out instead of cloning when its handle is the last one.

use super::future::poll_wait;
use super::waiters::Waiter;
use super::Promise;
use crate::error::PromiseError;
use crate::sync::Arc;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The future of `promise.await` (the [`IntoFuture`] of [`Promise`]): it owns the handle,
/// so it is `Send + 'static` when `T` and `E` are `Send + Sync + 'static` (it can be moved
/// into `tokio::spawn`), and its output is owned: `Result<T, PromiseError<E>>`.
///
/// The value (or error) is cloned out of the promise, or moved out without a clone when the
/// future's handle is the last one (every other handle, and a channel's resolver, gone).
/// Otherwise it behaves as [`wait_async`](Promise::wait_async): any number of tasks may
/// wait, it resolves to [`PromiseError::Abandoned`] when nobody can set the promise any
/// more, and dropping it unregisters it and drops its handle.
///
/// ```
/// use orderslip::{Promise, PromiseError};
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() {
///     let (resolver, reply) = Promise::<String, String>::channel();
///     // The task owns the promise: no borrow of a local outlives this function.
///     let task = tokio::spawn(async move { reply.await });
///     resolver.set_result("pong".to_string()).unwrap();
///     assert_eq!(task.await.unwrap(), Ok("pong".to_string()));
///
///     let (resolver, reply) = Promise::<String, String>::channel();
///     drop(resolver);
///     assert_eq!(reply.await, Err(PromiseError::Abandoned));
/// }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct PromiseFuture<T, E> {
    /// `None` once the future has completed.
    promise: Option<Promise<T, E>>,
    /// The task's waiter node, once registered.
    node: Option<Arc<Waiter>>,
}

// The future holds no self-reference: the handle and the node are pointers to heap blocks.
impl<T, E> Unpin for PromiseFuture<T, E> {}

impl<T: Clone, E: Clone> IntoFuture for Promise<T, E> {
    type Output = Result<T, PromiseError<E>>;
    type IntoFuture = PromiseFuture<T, E>;

    /// A future that owns this handle (see [`PromiseFuture`]).
    fn into_future(self) -> PromiseFuture<T, E> {
        // Nobody can borrow the handle inside the future, so once it is the last one nobody
        // else can set the promise: make it count as abandoned then, even if it was never
        // cloned (a never-cloned promise only counts as settable through a reference).
        self.mark_cloned();
        PromiseFuture {
            promise: Some(self),
            node: None,
        }
    }
}

impl<T: Clone, E: Clone> Future for PromiseFuture<T, E> {
    type Output = Result<T, PromiseError<E>>;

    /// # Panics
    ///
    /// If polled again after it returned `Ready`, as futures may.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let promise = this
            .promise
            .as_ref()
            .expect("PromiseFuture polled after it completed");
        let copied = match poll_wait(promise, &mut this.node, cx) {
            Poll::Pending => return Poll::Pending,
            // The last handle of a done promise: move the result out below.
            Poll::Ready(Ok(_) | Err(PromiseError::Failed(_))) if promise.is_unique() => None,
            Poll::Ready(result) => Some(match result {
                Ok(value) => Ok(value.clone()),
                Err(error) => Err(error.cloned()),
            }),
        };
        this.node = None; // a ready poll leaves no node in the stack
        let promise = this.promise.take().expect("checked above");
        Poll::Ready(match copied {
            Some(result) => result,
            None => promise
                .into_inner()
                .expect("a unique handle of a done promise holds the result")
                .map_err(PromiseError::Failed),
        })
    }
}

impl<T, E> Drop for PromiseFuture<T, E> {
    fn drop(&mut self) {
        if let (Some(promise), Some(node)) = (&self.promise, self.node.take()) {
            promise.give_up(&node);
        }
    }
}

impl<T, E> fmt::Debug for PromiseFuture<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromiseFuture")
            .field("promise", &self.promise)
            .field("registered", &self.node.is_some())
            .finish()
    }
}
