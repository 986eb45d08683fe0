//! # orderslip
//!
//! Two lock-free concurrency primitives for latency-sensitive code, after the `promise` and
//! `action_queue` modules of the Python library quickrpc:
//!
//! - [`Promise`]: an order slip for something that is still being produced. A write-once
//!   result that threads wait for with a timeout ([`result`](Promise::result)), async tasks
//!   `.await` ([`wait_async`](Promise::wait_async)), and any number of callbacks react to
//!   ([`then`](Promise::then)). Two mistakes that would otherwise hang a program are reported
//!   at once instead: waiting on the very thread that is to set the promise
//!   ([`PromiseError::Deadlock`]), and waiting for a promise whose every other handle was
//!   dropped unset ([`PromiseError::Abandoned`]).
//! - [`ActionQueue`]: a serial background worker. [`put`](ActionQueue::put) returns at once;
//!   the actions run one at a time, in the order they were put, on a worker thread that the
//!   queue starts when work arrives and retires once it has been idle for its keep-alive.
//!   [`submit`](ActionQueue::submit) does the same and returns a `Promise` for the result.
//!
//! # Which one to use
//!
//! - You have **one result** that one or more threads, tasks or callbacks wait for: a
//!   [`Promise`]. With **one producer** (a request and its reply), make it with
//!   [`Promise::channel`]: the producer gets a [`Resolver`], the only thing that can set it,
//!   and everyone else gets `Promise` handles. When **any of several holders may set it**
//!   (the first set wins), share one promise ([`Promise::with_setter`]) and give each
//!   producer a clone. The README's "Which to use" section compares the two.
//! - You have **work that must run in order, off the caller's thread**, and do not want a
//!   thread sitting there when there is none: an [`ActionQueue`].
//! - You have such work **and someone waits for its result**: [`ActionQueue::submit`].
//! - You have **many such queues** (one per connection, session or actor), more than you
//!   want threads: build them on one [`WorkerPool`] ([`Builder::pool`]). Each queue stays
//!   strictly serial; the pool runs them on at most `max_threads` threads, a batch at a time.
//!   To use a thread pool you already have instead, implement [`Executor`] (adapters for
//!   rayon and tokio's blocking pool behind the `rayon` and `tokio` features).
//!
//! They are not meant for a stream of values (use a channel), for running work in parallel
//! (an `ActionQueue` runs one action at a time: use a thread pool), or for a value computed
//! once on first use (use [`std::sync::OnceLock`]).
//!
//! # Waiting with a timeout
//!
//! ```
//! use orderslip::{Promise, PromiseError};
//! use std::time::Duration;
//!
//! let reply: Promise<u32, String> = Promise::with_setter(None); // no designated setter thread
//! let server = reply.clone(); // the producer's handle
//! std::thread::spawn(move || server.set_result(42).unwrap());
//!
//! match reply.result(Duration::from_secs(1)) {
//!     Ok(value) => assert_eq!(*value, 42),
//!     Err(PromiseError::Timeout) => eprintln!("no answer within a second"),
//!     Err(other) => panic!("{other}"),
//! }
//! ```
//!
//! A wait gives the value by reference (every waiter sees the same one), or a
//! [`PromiseError`]: `Failed(&e)` when the producer set an error with
//! [`set_exception`](Promise::set_exception), `Timeout`, `Deadlock` or `Abandoned`. The first
//! set wins; a second one is refused with [`PromiseDoneError`].
//!
//! # One producer: a channel
//!
//! ```
//! use orderslip::{Promise, PromiseError};
//!
//! let (resolver, reply) = Promise::<u32, String>::channel();
//! let pending = reply.clone(); // say, kept in a map of pending requests by call id
//! std::thread::spawn(move || {
//!     if !resolver.is_closed() { // false once every `Promise` handle is gone
//!         resolver.set_result(42).unwrap();
//!     }
//! });
//! assert_eq!(reply.wait(), Ok(&42));
//! assert_eq!(pending.wait(), Ok(&42));
//!
//! // The producer is gone without answering: every waiter on every handle is told at once.
//! let (resolver, reply) = Promise::<u32, String>::channel();
//! let pending = reply.clone();
//! drop(resolver);
//! assert_eq!(reply.wait(), Err(PromiseError::Abandoned));
//! assert_eq!(pending.wait(), Err(PromiseError::Abandoned));
//! ```
//!
//! # Callbacks
//!
//! ```
//! use orderslip::Promise;
//! use std::sync::mpsc;
//!
//! let price: Promise<f64, String> = Promise::new();
//! let (log, lines) = mpsc::channel();
//! let log2 = log.clone();
//! price.then(move |result| log.send(format!("first: {result:?}")).unwrap());
//! price.then(move |result| log2.send(format!("second: {result:?}")).unwrap());
//! price.set_result(9.5).unwrap(); // runs both callbacks, in order, on this thread
//! assert_eq!(lines.try_iter().collect::<Vec<_>>(), ["first: Ok(9.5)", "second: Ok(9.5)"]);
//! ```
//!
//! Callbacks run in registration order. Those registered before the promise is set run on the
//! setting thread; one registered afterwards runs at once on the registering thread, unless
//! the setter is still running earlier callbacks, in which case it queues behind them (so
//! the order holds). A callback that
//! panics is caught and logged (`log::error!`): the other callbacks still run and the setter
//! never sees the panic.
//!
//! # Awaiting in async code
//!
//! ```
//! use orderslip::Promise;
//!
//! #[tokio::main]
//! async fn main() {
//!     let greeting: Promise<String, ()> = Promise::with_setter(None);
//!     let producer = greeting.clone();
//!     std::thread::spawn(move || producer.set_result("hello".to_string()).unwrap());
//!     assert_eq!(greeting.wait_async().await.unwrap(), "hello");
//! }
//! ```
//!
//! A promise can also be awaited by value: `promise.await` ([`IntoFuture`](std::future::IntoFuture),
//! with `T` and `E: Clone`) owns its handle, so it can move into a spawned task, and yields
//! an owned `Result<T, PromiseError<E>>` (moving the value out when its handle is the last):
//!
//! ```
//! use orderslip::Promise;
//!
//! #[tokio::main]
//! async fn main() {
//!     let (resolver, reply) = Promise::<String, String>::channel();
//!     let task = tokio::spawn(async move { reply.await }); // the task owns the promise
//!     resolver.set_result("pong".to_string()).unwrap();
//!     assert_eq!(task.await.unwrap(), Ok("pong".to_string()));
//! }
//! ```
//!
//! [`wait_async`](Promise::wait_async) is a plain `Future`: it works on any executor, and the
//! promise can be set from any thread, async or not. It has no timeout of its own (wrap it in
//! your runtime's, such as `tokio::time::timeout`) and no deadlock check (a task that awaits
//! does not block its thread). `examples/async_interop.rs` shows a thousand tasks awaiting one
//! promise, a timeout around a wait, and `submit` awaited from a task.
//!
//! # A serial worker
//!
//! ```
//! use orderslip::ActionQueue;
//! use std::sync::{Arc, Mutex};
//!
//! let journal = Arc::new(Mutex::new(Vec::new()));
//! let writer = ActionQueue::new(); // no thread until there is work
//! for entry in ["open", "write", "close"] {
//!     let journal = journal.clone();
//!     writer.put(move || journal.lock().unwrap().push(entry)); // returns at once
//! }
//! // One action at a time, in order: this one runs after the three above.
//! let count = writer.submit(move || journal.lock().unwrap().len());
//! assert_eq!(count.wait(), Ok(&3));
//! ```
//!
//! The worker thread lingers, parked, for the keep-alive ([`ActionQueue::DEFAULT_KEEP_ALIVE`],
//! or [`Builder::keep_alive`]) so that a burst of work after a short pause does not pay for a
//! thread start; then it exits, and the next `put` starts a new one. Dropping the queue lets
//! the actions already queued run to completion.
//!
//! # Many queues on a few threads
//!
//! ```
//! use orderslip::{ActionQueue, WorkerPool};
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let pool = WorkerPool::builder().max_threads(2).name("conn").build();
//! let handled = Arc::new(AtomicUsize::new(0));
//! // One ordered queue per connection: a thousand queues, at most two threads.
//! let connections: Vec<ActionQueue> =
//!     (0..1000).map(|_| ActionQueue::builder().pool(&pool).build()).collect();
//! for connection in &connections {
//!     let handled = handled.clone();
//!     connection.put(move || { handled.fetch_add(1, Ordering::Relaxed); });
//! }
//! for connection in connections {
//!     assert!(connection.join(Duration::from_secs(5))); // its work has run
//! }
//! assert_eq!(handled.load(Ordering::Relaxed), 1000);
//! assert!(pool.peak_threads() <= 2);
//! ```
//!
//! A queue runs at most a batch (128 actions or about a millisecond) before its thread moves
//! on to the next queue with work, so one busy queue cannot starve the others. An action that
//! blocks holds its pool thread: see [`WorkerPool`] for the rule that keeps that safe.
//!
//! # Mistakes reported at once
//!
//! ```
//! use orderslip::{ActionQueue, Promise, PromiseError};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! // Waiting on the thread that is to set the promise: the wait could never end.
//! let mine: Promise<u32, ()> = Promise::new(); // designates this thread as the setter
//! assert_eq!(mine.result(Duration::from_secs(60)), Err(PromiseError::Deadlock)); // at once
//!
//! // The same inside an action, for a promise that only this queue's worker can set.
//! let queue = Arc::new(ActionQueue::new());
//! let same_queue = Arc::clone(&queue);
//! let nested = queue.submit(move || {
//!     matches!(same_queue.submit(|| 1).wait(), Err(PromiseError::Deadlock))
//! });
//! assert_eq!(nested.wait(), Ok(&true));
//!
//! // Every other handle dropped unset (say, the server thread exited without answering).
//! let reply: Promise<u32, ()> = Promise::with_setter(None);
//! drop(reply.clone());
//! assert_eq!(reply.result(Duration::from_secs(60)), Err(PromiseError::Abandoned)); // at once
//! ```
//!
//! For a shared promise, "abandoned" means the waiter's handle is the last one: a waiter
//! whose promise still has another handle somewhere (a map of pending requests) waits until
//! its timeout. A promise that was never cloned is never "abandoned": it may be shared by
//! reference with the thread that sets it. A [`channel`](Promise::channel) has neither
//! caveat: dropping its [`Resolver`] unset abandons every handle.
//!
//! # Panics
//!
//! A panicking action is caught, and the queue runs the next one. The panic of a `put`
//! action is reported (`log::error!`, or the [`Builder::panic_handler`]); that of a
//! `submit`ted action goes to its promise, which fails with [`ActionPanicked`] instead of
//! leaving its waiters hanging:
//!
//! ```
//! use orderslip::{ActionQueue, PromiseError};
//!
//! let queue = ActionQueue::new();
//! let broken = queue.submit(|| -> u32 { panic!("bad input") });
//! let next = queue.submit(|| 2 + 2);
//! match broken.wait() {
//!     Err(PromiseError::Failed(e)) => assert_eq!(e.message(), Some("bad input")),
//!     other => panic!("expected the action's panic, got {other:?}"),
//! }
//! assert_eq!(next.wait(), Ok(&4)); // the queue went on
//! ```
//!
//! # Examples and verification
//!
//! - `cargo run --release --example tour`: a request/response system of the kind quickrpc
//!   served, with client threads, a transport thread and an `ActionQueue` resolving promises;
//!   it prints throughput, latency and the count of each outcome.
//! - `cargo run --example async_interop`: promises and tokio.
//! - `cargo run --release --example connections`: ten thousand connections, each with its
//!   own ordered queue, on one [`WorkerPool`].
//!
//! Every atomic protocol is model-checked with [loom](https://docs.rs/loom):
//! `RUSTFLAGS="--cfg loom" cargo test --release --test loom_promise --test loom_channel --test loom_queue --test loom_pool`.

// Lints are set once, in Cargo.toml's `[lints]`.

mod error;
mod panics;
mod promise;
mod queue;
mod setter;
mod sync;

pub use error::{ActionPanicked, PromiseDoneError, PromiseError};
pub use promise::{Closed, Promise, PromiseFuture, Resolver, WaitAsync};
#[cfg(feature = "tokio")]
pub use queue::TokioBlocking;
pub use queue::{ActionQueue, Builder, Executor, PoolBuilder, Task, WorkerPool};
