//! # orderslip
//!
//! Lock-free concurrency primitives for latency-sensitive code, after the `promise` and
//! `action_queue` modules of the Python library quickrpc:
//!
//! - [`Promise`] — an order slip for something that is still being produced: a write-once
//!   result that threads wait for with a timeout, async tasks `.await`, and callbacks
//!   ([`then`](Promise::then)) react to. Waiting for it on its designated setter thread while
//!   it is pending fails at once with [`PromiseError::Deadlock`] instead of hanging, and a
//!   waiter learns at once when every other handle was dropped unset
//!   ([`PromiseError::Abandoned`]).
//! - [`ActionQueue`] — a serial background worker: [`put`](ActionQueue::put) returns at
//!   once; actions run in arrival order, one at a time, on a worker thread that the queue
//!   starts when work arrives and retires when it has been idle for its keep-alive.
//!
//! Use a `Promise` to hand one result from a producer to any number of consumers (threads,
//! tasks, callbacks). Use an `ActionQueue` to run work in order off the caller's thread
//! without keeping a thread around when there is none; [`ActionQueue::submit`] joins the two.
//!
//! ```
//! use orderslip::{ActionQueue, Promise, PromiseError};
//! use std::time::Duration;
//!
//! let queue = ActionQueue::new();
//! let answer = queue.submit(|| 6 * 7);
//! assert_eq!(answer.result(Duration::from_secs(5)), Ok(&42));
//!
//! let slip: Promise<String, String> = Promise::new(); // this thread will set it
//! assert_eq!(slip.result(Duration::from_secs(5)), Err(PromiseError::Deadlock)); // at once
//! ```
//!
//! Every atomic protocol is model-checked with [loom](https://docs.rs/loom):
//! `RUSTFLAGS="--cfg loom" cargo test --release --test 'loom_*'`.

#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod error;
mod promise;
mod queue;
mod state;
mod sync;
mod waiter;

pub use error::{PromiseDoneError, PromiseError};
pub use promise::{Promise, WaitAsync};

pub use queue::{ActionPanicked, ActionQueue, Builder};
