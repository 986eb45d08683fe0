//! The errors a [`Promise`](crate::Promise) reports.

use std::error::Error;
use std::fmt;

/// Why waiting for a [`Promise`](crate::Promise) gave no value.
///
/// `E` is the promise's own error type; the waiting methods hand out `PromiseError<&E>`,
/// which [`cloned`](PromiseError::cloned) turns into an owned `PromiseError<E>` (for `?` into
/// a `Box<dyn Error>`, for example).
///
/// # Example
///
/// ```
/// use orderslip::{Promise, PromiseError};
/// use std::time::Duration;
///
/// let promise: Promise<u32, String> = Promise::with_setter(None);
/// assert_eq!(promise.result(Duration::ZERO), Err(PromiseError::Timeout));
///
/// promise.set_exception("no route to host".to_string()).unwrap();
/// match promise.result(Duration::from_secs(1)) {
///     Err(PromiseError::Failed(e)) => assert_eq!(e, "no route to host"),
///     other => panic!("unexpected: {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PromiseError<E> {
    /// The promise was fulfilled with an error ([`set_exception`](crate::Promise::set_exception)).
    /// The error is the setter's own: handle it as the operation's failure.
    Failed(E),
    /// The promise was still pending when the timeout ran out. It may still be fulfilled
    /// later: wait again, or give up on it.
    Timeout,
    /// The calling thread is the one designated to fulfil the promise, and it is still
    /// pending: waiting would never end. Set the promise before waiting for it on that
    /// thread, or designate another setter ([`Promise::with_setter`](crate::Promise::with_setter)).
    Deadlock,
    /// The promise is pending and every other handle to it has been dropped, so nobody can
    /// fulfil it any more. Usually the producing side failed or exited without answering.
    Abandoned,
}

impl<E> PromiseError<E> {
    /// Changes the error carried by [`Failed`](PromiseError::Failed) with `f`; the other
    /// variants are kept.
    ///
    /// ```
    /// use orderslip::PromiseError;
    /// let e: PromiseError<i32> = PromiseError::Failed(7);
    /// assert_eq!(e.map(|n| n * 2), PromiseError::Failed(14));
    /// ```
    pub fn map<F, U>(self, f: F) -> PromiseError<U>
    where
        F: FnOnce(E) -> U,
    {
        match self {
            PromiseError::Failed(e) => PromiseError::Failed(f(e)),
            PromiseError::Timeout => PromiseError::Timeout,
            PromiseError::Deadlock => PromiseError::Deadlock,
            PromiseError::Abandoned => PromiseError::Abandoned,
        }
    }
}

impl<E: Clone> PromiseError<&E> {
    /// Clones the borrowed error so the `PromiseError` can outlive the promise.
    ///
    /// ```
    /// use orderslip::{Promise, PromiseError};
    /// use std::time::Duration;
    ///
    /// fn fetch() -> Result<u32, PromiseError<String>> {
    ///     let p: Promise<u32, String> = Promise::with_setter(None);
    ///     p.set_exception("refused".into()).unwrap();
    ///     let value = p.result(Duration::from_secs(1)).map_err(PromiseError::cloned)?;
    ///     Ok(*value)
    /// }
    /// assert_eq!(fetch(), Err(PromiseError::Failed("refused".to_string())));
    /// ```
    pub fn cloned(self) -> PromiseError<E> {
        self.map(Clone::clone)
    }
}

impl<E: fmt::Display> fmt::Display for PromiseError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PromiseError::Failed(e) => write!(f, "the promise was fulfilled with an error: {e}"),
            PromiseError::Timeout => {
                f.write_str("timed out waiting for the promise to be fulfilled")
            }
            PromiseError::Deadlock => f.write_str(
                "waited for a pending promise on the thread designated to fulfil it; \
                 the wait could never end",
            ),
            PromiseError::Abandoned => f.write_str(
                "every other handle to the pending promise was dropped, so nobody can fulfil it",
            ),
        }
    }
}

impl<E: Error + 'static> Error for PromiseError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            PromiseError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// A second [`set_result`](crate::Promise::set_result) or
/// [`set_exception`](crate::Promise::set_exception) on a promise that was already set (the
/// seed's `PromiseDoneError`). The first set wins; this error hands back the value that was
/// refused.
///
/// # Example
///
/// ```
/// use orderslip::Promise;
///
/// let p: Promise<&str, ()> = Promise::new();
/// p.set_result("first").unwrap();
/// let refused = p.set_result("second").unwrap_err();
/// assert_eq!(refused.into_inner(), "second");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PromiseDoneError<V>(pub V);

impl<V> PromiseDoneError<V> {
    /// The value that was refused.
    pub fn into_inner(self) -> V {
        self.0
    }
}

impl<V> fmt::Debug for PromiseDoneError<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PromiseDoneError(..)")
    }
}

impl<V> fmt::Display for PromiseDoneError<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the promise was already set; the first result stands")
    }
}

impl<V> Error for PromiseDoneError<V> {}
