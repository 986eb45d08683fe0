//! Promise benchmarks: orderslip's `Promise` beside the std baseline (`Mutex<Option<T>>` +
//! `Condvar`, in `benches/common`), `oneshot`, `std::sync::OnceLock`, `crossbeam-channel`
//! and `std::sync::mpsc`, each group doing identical work with every peer in one process.
//!
//! Run everything: `cargo bench --bench promise`. Run one group:
//!
//! ```sh
//! cargo bench --bench promise -- promise/single_thread
//! cargo bench --bench promise -- promise/ping_pong
//! cargo bench --bench promise -- promise/fan_out
//! ```
//!
//! Groups:
//! - `promise/single_thread`: one iteration creates a promise, sets it, reads it and drops it
//!   on one thread. The `two_ends/*` and `two_ends_try/*` ids compare the two-ended forms
//!   (a sending end and a receiving end, as a reply slot is used) on identical work: make
//!   the pair, set through the sending end, read through the receiving end (blocking read
//!   of a ready value for `two_ends`, non-blocking read for `two_ends_try`), drop both ends.
//!   `orderslip_channel` is `Promise::channel()` (the resolver is consumed by the set),
//!   `orderslip_shared` is `Promise::with_setter(None)` and a clone for the setter,
//!   `oneshot` is `oneshot::channel()`. All carry a `u64`.
//! - `promise/ping_pong`: one iteration is a round trip between two threads, each side
//!   waiting for a promise the other sets. The write-once kinds (orderslip's shared promise
//!   and its channel, the std baseline, oneshot) use a fresh pair per message (so two per
//!   round trip): each message carries the sending end for the reply (a clone of the
//!   promise, the channel's `Resolver`, the oneshot `Sender`). The channels (crossbeam
//!   `bounded(1)`, `mpsc`) are reused.
//! - `promise/fan_out`: one iteration sets one promise that 2 threads wait for; the second
//!   of them to see it sets an acknowledgement that the setter waits for (so one iteration
//!   is one 1→2 wake-up plus one 1→1 wake-up, the same for every peer). The value carries
//!   the next promise, so each iteration uses two fresh promises.
//!
//! Every thread-crossing bench spawns its helper threads once per sample (outside the timed
//! region, via `iter_custom`) and does one untimed round first.

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use orderslip::{Promise, Resolver};
use std::hint::black_box;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::StdPromise;

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

fn configure(group: &mut Group<'_>) {
    group
        .warm_up_time(common::WARM_UP)
        .measurement_time(common::MEASURE)
        .sample_size(common::SAMPLES);
}

// ---------------------------------------------------------------------------------------
// promise/single_thread
// ---------------------------------------------------------------------------------------

fn single_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("promise/single_thread");
    configure(&mut group);

    group.bench_function("orderslip", |b| {
        b.iter(|| {
            let p: Promise<u64, ()> = Promise::new();
            p.set_result(black_box(7)).unwrap();
            let v = *p.wait().unwrap();
            drop(p);
            v
        })
    });
    group.bench_function("orderslip_no_setter", |b| {
        b.iter(|| {
            let p: Promise<u64, ()> = Promise::with_setter(None);
            p.set_result(black_box(7)).unwrap();
            let v = *p.try_result().unwrap().unwrap();
            drop(p);
            v
        })
    });
    group.bench_function("std_mutex_condvar", |b| {
        b.iter(|| {
            let p: StdPromise<u64> = StdPromise::new();
            p.set(black_box(7));
            let v = p.wait_with(|v| *v);
            drop(p);
            v
        })
    });
    group.bench_function("oneshot", |b| {
        b.iter(|| {
            let (tx, rx) = oneshot::channel::<u64>();
            tx.send(black_box(7)).unwrap();
            rx.recv().unwrap()
        })
    });
    // Shareable like the others (one allocation)...
    group.bench_function("oncelock_arc", |b| {
        b.iter(|| {
            let p: Arc<OnceLock<u64>> = Arc::new(OnceLock::new());
            p.set(black_box(7)).unwrap();
            let v = *p.get().unwrap();
            drop(p);
            v
        })
    });
    // ...and on the stack (no allocation), for reference.
    group.bench_function("oncelock_stack", |b| {
        b.iter(|| {
            let p: OnceLock<u64> = OnceLock::new();
            p.set(black_box(7)).unwrap();
            let v = *black_box(&p).get().unwrap();
            drop(p);
            v
        })
    });
    two_ends(&mut group);
    group.finish();
}

/// The two-ended forms side by side (see the module docs): `two_ends/*` read the ready
/// value with the blocking call, `two_ends_try/*` with the non-blocking one.
fn two_ends(group: &mut Group<'_>) {
    group.bench_function("two_ends/orderslip_channel", |b| {
        b.iter(|| {
            let (resolver, p) = Promise::<u64, ()>::channel();
            resolver.set_result(black_box(7)).unwrap();
            let v = *p.wait().unwrap();
            drop(p);
            v
        })
    });
    group.bench_function("two_ends/orderslip_shared", |b| {
        b.iter(|| {
            let p: Promise<u64, ()> = Promise::with_setter(None);
            let setter = p.clone();
            setter.set_result(black_box(7)).unwrap();
            drop(setter);
            let v = *p.wait().unwrap();
            drop(p);
            v
        })
    });
    group.bench_function("two_ends/oneshot", |b| {
        b.iter(|| {
            let (tx, rx) = oneshot::channel::<u64>();
            tx.send(black_box(7)).unwrap();
            rx.recv().unwrap() // consumes (drops) the receiver
        })
    });
    group.bench_function("two_ends_try/orderslip_channel", |b| {
        b.iter(|| {
            let (resolver, p) = Promise::<u64, ()>::channel();
            resolver.set_result(black_box(7)).unwrap();
            let v = *p.try_result().unwrap().unwrap();
            drop(p);
            v
        })
    });
    group.bench_function("two_ends_try/orderslip_shared", |b| {
        b.iter(|| {
            let p: Promise<u64, ()> = Promise::with_setter(None);
            let setter = p.clone();
            setter.set_result(black_box(7)).unwrap();
            drop(setter);
            let v = *p.try_result().unwrap().unwrap();
            drop(p);
            v
        })
    });
    group.bench_function("two_ends_try/oneshot", |b| {
        b.iter(|| {
            let (tx, rx) = oneshot::channel::<u64>();
            tx.send(black_box(7)).unwrap();
            let v = rx.try_recv().unwrap();
            drop(rx);
            v
        })
    });
}

// ---------------------------------------------------------------------------------------
// promise/ping_pong
// ---------------------------------------------------------------------------------------

/// Marks the last message of a chain: the echo thread stops without replying.
const STOP: u64 = u64::MAX;

/// Runs `round(0)` untimed (the partner thread is up), then times `round(1..=iters)`.
fn timed_rounds(iters: u64, mut round: impl FnMut(u64)) -> Duration {
    round(0);
    let start = Instant::now();
    for n in 1..=iters {
        round(n);
    }
    start.elapsed()
}

/// A one-shot slot that carries a number and the slot for the reply, so each round trip
/// makes a fresh pair, as an RPC client makes a promise per request.
trait Slip: 'static {
    /// The sending end (for orderslip and the std baseline, a clone of the same promise).
    type Tx: Send + 'static;
    /// The receiving end.
    type Rx: Send + 'static;
    fn pair() -> (Self::Tx, Self::Rx);
    fn send(tx: Self::Tx, n: u64, reply: Self::Tx);
    fn recv(rx: Self::Rx) -> (u64, Self::Tx);
}

/// An orderslip message: a number and the promise the receiver sets in reply.
struct Msg {
    n: u64,
    reply: Promise<Msg, ()>,
}

struct Orderslip;

impl Slip for Orderslip {
    type Tx = Promise<Msg, ()>;
    type Rx = Promise<Msg, ()>;
    fn pair() -> (Self::Tx, Self::Rx) {
        let p = Promise::with_setter(None);
        (p.clone(), p)
    }
    fn send(tx: Self::Tx, n: u64, reply: Self::Tx) {
        tx.set_result(Msg { n, reply }).ok().unwrap();
    }
    fn recv(rx: Self::Rx) -> (u64, Self::Tx) {
        let m = rx.wait().unwrap();
        (m.n, m.reply.clone())
    }
}

/// An orderslip channel message: a number and the resolver of the reply's channel.
struct ChanMsg {
    n: u64,
    reply: Resolver<ChanMsg, ()>,
}

struct OrderslipChannel;

impl Slip for OrderslipChannel {
    type Tx = Resolver<ChanMsg, ()>;
    type Rx = Promise<ChanMsg, ()>;
    fn pair() -> (Self::Tx, Self::Rx) {
        Promise::channel()
    }
    fn send(tx: Self::Tx, n: u64, reply: Self::Tx) {
        tx.set_result(ChanMsg { n, reply }).ok().unwrap();
    }
    fn recv(rx: Self::Rx) -> (u64, Self::Tx) {
        // The resolver is not `Clone`: wait, then move the message out of the last handle
        // (as `oneshot`'s `recv` moves it out of the receiver).
        assert!(rx.wait().is_ok());
        let ChanMsg { n, reply } = rx.into_inner().unwrap().ok().unwrap();
        (n, reply)
    }
}

/// A std-baseline message.
struct StdMsg {
    n: u64,
    reply: StdPromise<StdMsg>,
}

struct StdSlip;

impl Slip for StdSlip {
    type Tx = StdPromise<StdMsg>;
    type Rx = StdPromise<StdMsg>;
    fn pair() -> (Self::Tx, Self::Rx) {
        let p = StdPromise::new();
        (p.clone(), p)
    }
    fn send(tx: Self::Tx, n: u64, reply: Self::Tx) {
        tx.set(StdMsg { n, reply });
    }
    fn recv(rx: Self::Rx) -> (u64, Self::Tx) {
        let StdMsg { n, reply } = rx.take();
        (n, reply)
    }
}

/// A oneshot message: the sender for the reply.
struct OneshotMsg {
    n: u64,
    reply: oneshot::Sender<OneshotMsg>,
}

struct Oneshot;

impl Slip for Oneshot {
    type Tx = oneshot::Sender<OneshotMsg>;
    type Rx = oneshot::Receiver<OneshotMsg>;
    fn pair() -> (Self::Tx, Self::Rx) {
        oneshot::channel()
    }
    fn send(tx: Self::Tx, n: u64, reply: Self::Tx) {
        tx.send(OneshotMsg { n, reply }).ok().unwrap();
    }
    fn recv(rx: Self::Rx) -> (u64, Self::Tx) {
        let OneshotMsg { n, reply } = rx.recv().unwrap();
        (n, reply)
    }
}

/// Runs `iters` round trips of one-shot slots `S`, a fresh pair per round trip.
fn ping_pong_slips<S: Slip>(iters: u64) -> Duration {
    let (first_tx, first_rx) = S::pair();
    let echo = thread::spawn(move || {
        let mut inbox = first_rx;
        loop {
            let (n, reply) = S::recv(inbox);
            if n == STOP {
                return;
            }
            let (tx, rx) = S::pair();
            S::send(reply, n, tx);
            inbox = rx;
        }
    });
    let mut to_echo = Some(first_tx);
    let elapsed = timed_rounds(iters, |n| {
        let (tx, rx) = S::pair();
        S::send(to_echo.take().unwrap(), n, tx);
        let (m, reply) = S::recv(rx);
        debug_assert_eq!(m, n);
        to_echo = Some(reply);
    });
    let (stop, _keep) = S::pair(); // `_keep`: a oneshot send needs a live receiver
    S::send(to_echo.take().unwrap(), STOP, stop);
    echo.join().unwrap();
    elapsed
}

/// Runs `iters` round trips over a pair of long-lived channels made by `channel`.
fn ping_pong_channels<Tx, Rx>(
    iters: u64,
    channel: impl Fn() -> (Tx, Rx),
    send: fn(&Tx, u64) -> bool,
    recv: fn(&Rx) -> Option<u64>,
) -> Duration
where
    Tx: Send + 'static,
    Rx: Send + 'static,
{
    let (req_tx, req_rx) = channel();
    let (resp_tx, resp_rx) = channel();
    let echo = thread::spawn(move || {
        while let Some(n) = recv(&req_rx) {
            send(&resp_tx, n);
        }
    });
    let elapsed = timed_rounds(iters, |n| {
        assert!(send(&req_tx, n));
        let m = recv(&resp_rx).unwrap();
        debug_assert_eq!(m, n);
    });
    drop(req_tx);
    echo.join().unwrap();
    elapsed
}

fn ping_pong_crossbeam(iters: u64) -> Duration {
    ping_pong_channels(
        iters,
        || crossbeam_channel::bounded::<u64>(1),
        |tx, n| tx.send(n).is_ok(),
        |rx| rx.recv().ok(),
    )
}

fn ping_pong_mpsc(iters: u64) -> Duration {
    ping_pong_channels(
        iters,
        mpsc::channel::<u64>,
        |tx, n| tx.send(n).is_ok(),
        |rx| rx.recv().ok(),
    )
}

fn ping_pong(c: &mut Criterion) {
    let mut group = c.benchmark_group("promise/ping_pong");
    configure(&mut group);
    group.bench_function("orderslip", |b| b.iter_custom(ping_pong_slips::<Orderslip>));
    group.bench_function("orderslip_channel", |b| {
        b.iter_custom(ping_pong_slips::<OrderslipChannel>)
    });
    group.bench_function("std_mutex_condvar", |b| {
        b.iter_custom(ping_pong_slips::<StdSlip>)
    });
    group.bench_function("oneshot", |b| b.iter_custom(ping_pong_slips::<Oneshot>));
    group.bench_function("crossbeam_bounded1", |b| b.iter_custom(ping_pong_crossbeam));
    group.bench_function("std_mpsc", |b| b.iter_custom(ping_pong_mpsc));
    group.finish();
}

// ---------------------------------------------------------------------------------------
// promise/fan_out
// ---------------------------------------------------------------------------------------

/// How many threads wait for each promise.
const WAITERS: usize = 2;

/// One fan-out round, orderslip: the next round's promise, the acknowledgement, and how
/// many waiters have seen this round.
struct FanMsg {
    stop: bool,
    next: Promise<FanMsg, ()>,
    ack: Promise<(), ()>,
    seen: AtomicU8,
}

fn fan_out_orderslip(iters: u64) -> Duration {
    let first: Promise<FanMsg, ()> = Promise::with_setter(None);
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let mut cur = first.clone();
            thread::spawn(move || loop {
                let next = {
                    let m = cur.wait().unwrap();
                    if m.stop {
                        return;
                    }
                    let next = m.next.clone();
                    if m.seen.fetch_add(1, Ordering::AcqRel) as usize == WAITERS - 1 {
                        m.ack.set_result(()).unwrap();
                    }
                    next
                };
                cur = next;
            })
        })
        .collect();
    let mut cur = first;
    let mut round = |stop: bool| {
        let next: Promise<FanMsg, ()> = Promise::with_setter(None);
        let ack: Promise<(), ()> = Promise::with_setter(None);
        cur.set_result(FanMsg {
            stop,
            next: next.clone(),
            ack: ack.clone(),
            seen: AtomicU8::new(0),
        })
        .ok()
        .unwrap();
        if !stop {
            ack.wait().unwrap();
        }
        cur = next;
    };
    round(false);
    let start = Instant::now();
    for _ in 0..iters {
        round(false);
    }
    let elapsed = start.elapsed();
    round(true);
    for w in waiters {
        w.join().unwrap();
    }
    elapsed
}

struct StdFanMsg {
    stop: bool,
    next: StdPromise<StdFanMsg>,
    ack: StdPromise<()>,
    seen: AtomicU8,
}

fn fan_out_std(iters: u64) -> Duration {
    let first: StdPromise<StdFanMsg> = StdPromise::new();
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let mut cur = first.clone();
            thread::spawn(move || loop {
                let (next, ack) = cur.wait_with(|m| {
                    if m.stop {
                        return (None, None);
                    }
                    let last = m.seen.fetch_add(1, Ordering::AcqRel) as usize == WAITERS - 1;
                    (Some(m.next.clone()), last.then(|| m.ack.clone()))
                });
                let Some(next) = next else { return };
                if let Some(ack) = ack {
                    ack.set(());
                }
                cur = next;
            })
        })
        .collect();
    let mut cur = first;
    let mut round = |stop: bool| {
        let next = StdPromise::new();
        let ack = StdPromise::new();
        cur.set(StdFanMsg {
            stop,
            next: next.clone(),
            ack: ack.clone(),
            seen: AtomicU8::new(0),
        });
        if !stop {
            ack.wait_with(|_| ());
        }
        cur = next;
    };
    round(false);
    let start = Instant::now();
    for _ in 0..iters {
        round(false);
    }
    let elapsed = start.elapsed();
    round(true);
    for w in waiters {
        w.join().unwrap();
    }
    elapsed
}

struct LockFanMsg {
    stop: bool,
    next: Arc<OnceLock<LockFanMsg>>,
    ack: Arc<OnceLock<()>>,
    seen: AtomicU8,
}

// `OnceLock::wait` is stable since Rust 1.86 (this crate's MSRV is older; the benches are
// not part of the library).
#[allow(clippy::incompatible_msrv)]
fn fan_out_oncelock(iters: u64) -> Duration {
    let first: Arc<OnceLock<LockFanMsg>> = Arc::new(OnceLock::new());
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let mut cur = first.clone();
            thread::spawn(move || loop {
                let next = {
                    let m = cur.wait();
                    if m.stop {
                        return;
                    }
                    if m.seen.fetch_add(1, Ordering::AcqRel) as usize == WAITERS - 1 {
                        m.ack.set(()).unwrap();
                    }
                    m.next.clone()
                };
                cur = next;
            })
        })
        .collect();
    let mut cur = first;
    let mut round = |stop: bool| {
        let next = Arc::new(OnceLock::new());
        let ack = Arc::new(OnceLock::new());
        cur.set(LockFanMsg {
            stop,
            next: next.clone(),
            ack: ack.clone(),
            seen: AtomicU8::new(0),
        })
        .ok()
        .unwrap();
        if !stop {
            ack.wait();
        }
        cur = next;
    };
    round(false);
    let start = Instant::now();
    for _ in 0..iters {
        round(false);
    }
    let elapsed = start.elapsed();
    round(true);
    for w in waiters {
        w.join().unwrap();
    }
    elapsed
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("promise/fan_out");
    configure(&mut group);
    group.bench_function("orderslip", |b| b.iter_custom(fan_out_orderslip));
    group.bench_function("std_mutex_condvar", |b| b.iter_custom(fan_out_std));
    group.bench_function("oncelock_wait", |b| b.iter_custom(fan_out_oncelock));
    group.finish();
}

criterion_group!(benches, single_thread, ping_pong, fan_out);
criterion_main!(benches);
