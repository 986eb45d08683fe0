//! Containing foreign panics: the one place where the crate catches a panic from code it
//! does not own (a callback, a `Waker`, a logger, a panic payload's or a value's `Drop`) and
//! reports it, so that the panic never unwinds through a half-finished protocol step.
//!
//! Every report goes through [`report`], which itself runs the logger under
//! `catch_unwind`: a logger that panics is the one thing we cannot report, so its panic is
//! swallowed (its payload dropped under `catch_unwind` too).
//!
//! Two flavours of containment, used by the promise and the queue alike:
//! - [`contain`] reports the panic it catches (`"orderslip: {what} panicked: {message}"`);
//! - [`contain_silently`] only catches it, for callers that report in their own words (the
//!   queue's panic handler) or that have nowhere left to report to.

use std::any::Any;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

/// A caught panic's payload.
pub(crate) type Payload = Box<dyn Any + Send>;

/// Logs `message` with `log::error!`. A panic raised by the logger is caught and dropped:
/// a report must never unwind into the code that makes it.
#[cold]
pub(crate) fn report(message: fmt::Arguments<'_>) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| log::error!("{message}"))) {
        forget_payload(payload);
    }
}

/// Logs `message` with `log::warn!`, contained like [`report`]. For advice to the
/// programmer, such as a promise set from a thread other than its designated setter (a
/// debug-build check, hence the `cfg`).
#[cfg(debug_assertions)]
#[cold]
pub(crate) fn warn(message: fmt::Arguments<'_>) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| log::warn!("{message}"))) {
        forget_payload(payload);
    }
}

/// Drops a panic payload, catching (and reporting) a panic from its own `Drop`, so that not
/// even that reaches the setter or the worker.
pub(crate) fn drop_payload(payload: Payload) {
    if let Err(inner) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        // The `Drop` panicked: its own payload is foreign too.
        forget_payload(inner);
        report(format_args!("orderslip: dropping a panic payload panicked"));
    }
}

/// Drops a payload without reporting anything (used where the report itself failed).
fn forget_payload(payload: Payload) {
    if let Err(inner) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        // A payload whose drop panics with a payload whose drop panics: leak that one rather
        // than recurse without end.
        std::mem::forget(inner);
    }
}

/// The message of a panic payload, when it is a string.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

/// Runs foreign code that may panic (a logger, a panic handler, a destructor) and contains
/// the panic without reporting it; returns whether `f` returned normally. The panic's
/// payload is dropped under `catch_unwind` too, and a payload whose `Drop` panics in turn is
/// leaked (forgotten) rather than let anything unwind further.
pub(crate) fn contain_silently(f: impl FnOnce()) -> bool {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => true,
        Err(payload) => {
            forget_payload(payload);
            false
        }
    }
}

/// Runs `f`; if it panics, reports the panic as `what` (with its message when it has one)
/// and drops the payload, all contained. Returns whether `f` completed.
pub(crate) fn contain(what: &str, f: impl FnOnce()) -> bool {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => true,
        Err(payload) => {
            report(format_args!(
                "orderslip: {what} panicked: {}",
                panic_message(&*payload).unwrap_or("(non-string panic payload)")
            ));
            drop_payload(payload);
            false
        }
    }
}
