//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test file uses a different subset

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long `wait_until` waits before it gives up (generous: CI machines are shared).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds or `DEADLINE` passes; returns whether it held. Yields between
/// polls: this waits for a condition, it does not sleep to synchronise.
pub fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::yield_now();
    }
    cond()
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: polls `f` on this thread, parking between wake-ups.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

/// Counts how often it was woken; its `Arc` count shows whether anything still holds it.
pub struct CountingWake {
    pub count: AtomicUsize,
}

impl Wake for CountingWake {
    fn wake(self: Arc<Self>) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }
}

/// A waker that counts wake-ups, and the counter behind it.
pub fn counting_waker() -> (Waker, Arc<CountingWake>) {
    let counter = Arc::new(CountingWake {
        count: AtomicUsize::new(0),
    });
    (Waker::from(counter.clone()), counter)
}

/// A value that counts its drops.
#[derive(Debug)]
pub struct DropCounter(pub Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A waiting method's answer with the borrows cloned away, to send it across threads.
pub fn owned<T: Clone, E: Clone>(
    r: Result<&T, orderslip::PromiseError<&E>>,
) -> Result<T, orderslip::PromiseError<E>> {
    r.cloned().map_err(orderslip::PromiseError::cloned)
}
