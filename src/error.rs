//! The errors a [`Promise`](crate::Promise) reports, and the one an
//! [`ActionQueue`](crate::ActionQueue) sets a `submit`ted action's promise to when it panics.

use std::error::Error;
use std::fmt;

/// Why waiting for a [`Promise`](crate::Promise) gave no value.
///
/// `E` is the promise's own error type; the waiting methods hand out `PromiseError<&E>`,
/// borrowed from the promise.
///
/// # Propagating with `?`
///
/// `PromiseError<E>` is a [`std::error::Error`] for every `E: Display + Debug`, borrowed or
/// owned (`PromiseError<String>`, `PromiseError<&std::io::Error>`, …). Its `Display` prints
/// the setter's error itself ("the promise was fulfilled with an error: connection
/// refused"), and [`source`](std::error::Error::source) is always `None`, so that error
/// reporters that walk the chain (anyhow's `{:#}`, `eyre`) print the message once. That is
/// the convention for wrappers that show their inner error: in `Display` or in `source()`,
/// never both; `Display` is the one that works for every `E`, `String` included.
///
/// To leave a function with `?`, the error must not borrow the promise. One adapter does it:
///
/// - [`cloned`](PromiseError::cloned) for a `Clone` error: `PromiseError<E>`, typed;
/// - [`to_message`](PromiseError::to_message) for any error that displays (`std::io::Error`
///   is not `Clone`): `PromiseError<String>`, the message kept.
///
/// ```
/// use orderslip::{Promise, PromiseError};
/// use std::error::Error;
/// use std::time::Duration;
///
/// fn fetch(reply: Promise<u32, std::io::Error>) -> Result<u32, Box<dyn Error + Send + Sync>> {
///     let value = reply
///         .result(Duration::from_secs(1))
///         .map_err(PromiseError::to_message)?;
///     Ok(*value)
/// }
///
/// let reply = Promise::with_setter(None);
/// reply.set_exception(std::io::Error::other("connection reset")).unwrap();
/// let error = fetch(reply).unwrap_err();
/// assert_eq!(error.to_string(), "the promise was fulfilled with an error: connection reset");
/// assert!(error.source().is_none());
/// ```
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
    /// pending: waiting would never end. [`Promise::new`](crate::Promise::new) designates the
    /// thread that creates the promise; if another thread sets it, create it with
    /// [`Promise::with_setter(None)`](crate::Promise::with_setter) instead. Inside an action
    /// of an [`ActionQueue`](crate::ActionQueue), this is a wait for a promise that only a
    /// later action of the same queue can set.
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
    #[must_use]
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
    /// Clones the borrowed error so the `PromiseError` can outlive the promise (for `?`, for
    /// example). For an error that is not `Clone`, see [`to_message`](PromiseError::to_message).
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
    #[must_use]
    pub fn cloned(self) -> PromiseError<E> {
        self.map(Clone::clone)
    }
}

impl<E: fmt::Display + ?Sized> PromiseError<&E> {
    /// Replaces the borrowed error by its message, so the `PromiseError` can outlive the
    /// promise: the adapter for `?` when the error is not `Clone` (such as
    /// `std::io::Error`). The other variants are kept.
    ///
    /// ```
    /// use orderslip::{Promise, PromiseError};
    /// use std::time::Duration;
    ///
    /// let p: Promise<(), std::io::Error> = Promise::with_setter(None);
    /// p.set_exception(std::io::Error::other("disk unplugged")).unwrap();
    /// let owned: PromiseError<String> = p.result(Duration::ZERO).unwrap_err().to_message();
    /// assert_eq!(owned, PromiseError::Failed("disk unplugged".to_string()));
    /// ```
    #[must_use]
    pub fn to_message(self) -> PromiseError<String> {
        self.map(ToString::to_string)
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
                "waited for a pending promise on the thread (or in the queue) designated to \
                 set it, so the wait could never end; Promise::new() designates the thread \
                 that creates the promise: if another thread sets it, create it with \
                 Promise::with_setter(None)",
            ),
            PromiseError::Abandoned => f.write_str(
                "every other handle to the pending promise was dropped, so nobody can fulfil it",
            ),
        }
    }
}

/// The inner error is printed by `Display`, so `source` is `None` (see the type's docs).
impl<E: fmt::Display + fmt::Debug> Error for PromiseError<E> {}

/// A refused [`set_result`](crate::Promise::set_result) or
/// [`set_exception`](crate::Promise::set_exception): the promise was already set (the
/// original's `PromiseDoneError`; the first set wins), or it is the promise end of a
/// [`channel`](crate::Promise::channel), which only its [`Resolver`](crate::Resolver) sets.
/// Either way the error hands back the value that was refused, and
/// [`is_already_set`](PromiseDoneError::is_already_set) and `Display` say which.
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
pub struct PromiseDoneError<V>(pub V, Refusal);

/// Why a set was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Refusal {
    /// The promise was set before.
    AlreadySet,
    /// The promise is a channel's: only its resolver sets it.
    ResolverOnly,
}

impl<V> PromiseDoneError<V> {
    /// The promise was already set.
    pub(crate) fn already_set(value: V) -> Self {
        PromiseDoneError(value, Refusal::AlreadySet)
    }

    /// The promise is a channel's, set only by its resolver.
    pub(crate) fn resolver_only(value: V) -> Self {
        PromiseDoneError(value, Refusal::ResolverOnly)
    }

    /// `true` if the promise was already set (the first set wins); `false` if it is the
    /// promise end of a [`channel`](crate::Promise::channel), which only its
    /// [`Resolver`](crate::Resolver) may set.
    ///
    /// ```
    /// use orderslip::Promise;
    ///
    /// let shared: Promise<u8, ()> = Promise::with_setter(None);
    /// shared.set_result(1).unwrap();
    /// assert!(shared.set_result(2).unwrap_err().is_already_set());
    ///
    /// let (_resolver, reply) = Promise::<u8, ()>::channel();
    /// let refused = reply.set_result(3).unwrap_err();
    /// assert!(!refused.is_already_set());
    /// assert_eq!(refused.into_inner(), 3);
    /// ```
    #[must_use]
    pub fn is_already_set(&self) -> bool {
        self.1 == Refusal::AlreadySet
    }

    /// The value that was refused.
    ///
    /// ```
    /// use orderslip::Promise;
    ///
    /// let p: Promise<Vec<u8>, ()> = Promise::with_setter(None);
    /// p.set_result(vec![1]).unwrap();
    /// let refused: Vec<u8> = p.set_result(vec![2, 3]).unwrap_err().into_inner();
    /// assert_eq!(refused, [2, 3]); // handed back, not dropped
    /// ```
    #[must_use]
    pub fn into_inner(self) -> V {
        self.0
    }
}

impl<V> fmt::Debug for PromiseDoneError<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PromiseDoneError({:?}, ..)", self.1)
    }
}

impl<V> fmt::Display for PromiseDoneError<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.1 {
            Refusal::AlreadySet => "the promise was already set; the first result stands",
            Refusal::ResolverOnly => {
                "the promise is a channel's: only its Resolver can set it (keep the Resolver \
                 and set through it, or use a shared promise, Promise::with_setter)"
            }
        })
    }
}

impl<V> Error for PromiseDoneError<V> {}

/// Why a [`submit`](crate::ActionQueue::submit)ted action produced no value: it panicked.
/// Carries the panic message when the panic payload was a string.
///
/// Like the other errors, its `Display` prints the message itself ("the action panicked:
/// sensor offline") and it has no [`source`](std::error::Error::source).
///
/// ```
/// use orderslip::{ActionQueue, PromiseError};
/// use std::time::Duration;
///
/// let queue = ActionQueue::new();
/// let p = queue.submit(|| -> u8 { panic!("sensor offline") });
/// match p.result(Duration::from_secs(5)) {
///     Err(PromiseError::Failed(e)) => assert_eq!(e.message(), Some("sensor offline")),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionPanicked {
    message: Option<String>,
}

impl ActionPanicked {
    pub(crate) fn from_payload(payload: &(dyn std::any::Any + Send)) -> Self {
        ActionPanicked {
            message: crate::panics::panic_message(payload).map(str::to_owned),
        }
    }

    /// The panic message, if the action panicked with a string (`panic!("...")`, with or
    /// without formatting); `None` for other payloads (`std::panic::panic_any(42)`).
    ///
    /// ```
    /// use orderslip::{ActionQueue, PromiseError};
    ///
    /// let queue = ActionQueue::new();
    /// let failed = queue.submit(|| -> u8 { panic!("row {} is corrupt", 7) });
    /// match failed.wait() {
    ///     Err(PromiseError::Failed(e)) => assert_eq!(e.message(), Some("row 7 is corrupt")),
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// ```
    #[must_use]
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
}

impl fmt::Display for ActionPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(message) => write!(f, "the action panicked: {message}"),
            None => f.write_str("the action panicked"),
        }
    }
}

/// The panic message is printed by `Display`; there is no source.
impl Error for ActionPanicked {}
