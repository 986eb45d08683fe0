//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test file uses a different subset

pub mod alloc;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long `wait_until` waits before it gives up (generous: CI machines are shared).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A timeout no test should reach: a wait given it that returns with an error shows the error
/// came at once, not from the timeout.
pub const LONG: Duration = Duration::from_secs(60);

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

/// A waker that, when woken, says so and then blocks inside `wake` until released: it
/// freezes whoever wakes it (a setter, an orphaning drop) at a known point of its protocol.
#[derive(Default)]
pub struct GateWake {
    state: std::sync::Mutex<(bool, bool)>, // (entered, released)
    changed: std::sync::Condvar,
}

impl GateWake {
    /// A gate and a waker for it.
    pub fn new() -> (Waker, Arc<GateWake>) {
        let gate = Arc::new(GateWake::default());
        (Waker::from(gate.clone()), gate)
    }

    /// Waits (up to `DEADLINE`) until some thread is blocked inside `wake`; returns whether
    /// one is.
    pub fn wait_entered(&self) -> bool {
        let guard = self.state.lock().unwrap();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, DEADLINE, |s| !s.0)
            .unwrap();
        guard.0
    }

    /// Lets the thread blocked in `wake` (and any later one) go on.
    pub fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

impl Wake for GateWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let mut guard = self.state.lock().unwrap();
        guard.0 = true;
        self.changed.notify_all();
        while !guard.1 {
            guard = self.changed.wait(guard).unwrap();
        }
    }
}

/// A waker whose `wake` panics with a message containing "intentional".
pub struct PanickingWake;

impl Wake for PanickingWake {
    fn wake(self: Arc<Self>) {
        panic!("intentional: a panicking Waker::wake");
    }
    fn wake_by_ref(self: &Arc<Self>) {
        panic!("intentional: a panicking Waker::wake_by_ref");
    }
}

/// Polls `f` once with `waker`.
pub fn poll_once<F: Future + ?Sized>(f: std::pin::Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(waker))
}

/// Installs (once per process) a panic hook that stays silent for panics whose message
/// contains "intentional" (and non-string payloads), and reports every other panic as usual.
pub fn quiet_intentional_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if message.is_some_and(|m| !m.contains("intentional")) {
                default(info);
            }
        }));
    });
}

/// A fresh counter for a test to share with the closures and values it hands out.
pub fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// A counter's current value.
pub fn load(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}

/// A value whose `Drop` counts and then panics (unless the thread is already unwinding,
/// which would abort the process).
#[derive(Debug)]
pub struct Bomb(pub Arc<AtomicUsize>);

impl Drop for Bomb {
    fn drop(&mut self) {
        count_then_panic(&self.0, "intentional: Bomb::drop");
    }
}

/// A panic payload whose `Drop` panics.
pub struct PayloadBomb(pub Arc<AtomicUsize>);

impl Drop for PayloadBomb {
    fn drop(&mut self) {
        count_then_panic(&self.0, "intentional: PayloadBomb::drop");
    }
}

/// The `Drop` of the bombs: counts, then panics with `message` unless the thread is already
/// unwinding (a second panic would abort the process).
fn count_then_panic(drops: &AtomicUsize, message: &'static str) {
    drops.fetch_add(1, Ordering::SeqCst);
    if !thread::panicking() {
        std::panic::panic_any(message);
    }
}

/// A gate that actions block on until the test lets them through, one at a time
/// ([`release`](Gate::release)) or all for good ([`open`](Gate::open)). A [`pass`](Gate::pass)
/// gives up after `DEADLINE`, so a test that fails before it opens the gate does not leave
/// threads blocked for ever.
#[derive(Default)]
pub struct Gate {
    state: std::sync::Mutex<(usize, bool)>, // (permits, open)
    changed: std::sync::Condvar,
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    /// Lets `n` more callers of `pass` through.
    pub fn release(&self, n: usize) {
        self.state.lock().unwrap().0 += n;
        self.changed.notify_all();
    }

    /// Lets every caller of `pass` through, now and later.
    pub fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }

    /// Waits (up to `DEADLINE`) until the gate lets this caller through; returns whether it
    /// did.
    pub fn pass(&self) -> bool {
        let guard = self.state.lock().unwrap();
        let (mut guard, _) = self
            .changed
            .wait_timeout_while(guard, DEADLINE, |(permits, open)| *permits == 0 && !*open)
            .unwrap();
        if guard.1 {
            return true;
        }
        if guard.0 > 0 {
            guard.0 -= 1;
            return true;
        }
        false
    }
}

/// A `std::sync::Barrier` that gives up after `DEADLINE`: `wait` returns whether all `n`
/// parties arrived (so a test can assert that `n` threads ran at once, and fail instead of
/// hanging when they did not).
pub struct DeadlineBarrier {
    arrived: std::sync::Mutex<usize>,
    changed: std::sync::Condvar,
    n: usize,
}

impl DeadlineBarrier {
    /// A barrier for `n` parties.
    pub fn new(n: usize) -> Arc<DeadlineBarrier> {
        Arc::new(DeadlineBarrier {
            arrived: std::sync::Mutex::new(0),
            changed: std::sync::Condvar::new(),
            n,
        })
    }

    /// Arrives, and waits (up to `DEADLINE`) until all `n` parties have; returns whether they
    /// did.
    pub fn wait(&self) -> bool {
        let mut arrived = self.arrived.lock().unwrap();
        *arrived += 1;
        self.changed.notify_all();
        let (arrived, _) = self
            .changed
            .wait_timeout_while(arrived, DEADLINE, |arrived| *arrived < self.n)
            .unwrap();
        *arrived >= self.n
    }
}
