//! Stress and soak tests, with a counting global allocator that proves nothing leaks.
//!
//! Every test here is `#[ignore]`d: run them in release. The allocator's counters are
//! process-wide, so a concurrently running test would disturb them: each test first takes a
//! shared lock ([`serialised`]), so they run one at a time however they are invoked (the
//! default parallel harness, `--include-ignored`, any `--test-threads`):
//!
//! ```text
//! # full scale (10^6 operations per test; about a minute on 2 busy cores, most of it the waits):
//! cargo test --release --test stress -- --ignored --nocapture
//! # CI (.ci/stress.sh): promises and actions at full scale for 10 rounds, waits at full scale
//! .ci/stress.sh
//! # a quick run at a tenth of the size, with the rest of the binary's tests:
//! ORDERSLIP_STRESS_SCALE=0.1 cargo test --release --test stress -- --include-ignored
//! # soak: 50x full scale (5 * 10^7 operations per test), or the full scale 100 times over:
//! ORDERSLIP_STRESS_SCALE=50 cargo test --release --test stress -- --ignored --nocapture
//! ORDERSLIP_STRESS_ROUNDS=100 cargo test --release --test stress -- --ignored --nocapture
//! ```
//!
//! `ORDERSLIP_STRESS_SCALE` (a float, default 1) multiplies every operation count; 1 is the
//! full scale: 10^6 promises, 10^6 timed-out waits, 10^6 actions. `ORDERSLIP_STRESS_ROUNDS`
//! (default 1) repeats each test's workload, checking the balance after every round.
//! `ORDERSLIP_STRESS_SETTLE_SECS` (default 30) bounds the wait for the counters to settle.
//!
//! What each test proves, besides its own functional checks:
//! - **no leak**: after joining every thread and dropping everything, the live bytes and live
//!   blocks allocated by the workload's threads (the test's own, those it spawns and the
//!   queue's workers; see `Counting`) are back to the baseline measured before the workload
//!   (after a small warm-up run of the same workload, so one-time lazy allocations of std are
//!   not counted). Threads that the queue retires exit on their own, so the test waits (with
//!   a deadline) for the counters to come back rather than reading them once;
//! - **exactly-once destruction**: every value has an id and a drop ledger, and each id is
//!   dropped exactly once;
//! - **bounded memory** (timed-out waits): live bytes are sampled every 1024 waits and the
//!   maximum stays within a small bound of the baseline, however many waits time out.
#![cfg(not(loom))]
// Not under Miri: the stress tests are `#[ignore]`d and far too slow for it anyway, and the
// tagging allocator reads each block's header through the pointer it is handed back, which
// Stacked Borrows rejects (that pointer's tag covers only the block, not the header before
// it): Miri would fail the binary before any test runs.
#![cfg(not(miri))]

mod util;

use orderslip::{ActionQueue, Promise, PromiseError};
use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicIsize, AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};
use util::{block_on, DEADLINE};

// ---- the counting allocator ----

/// Counts the live bytes and blocks allocated by the threads that take part in a workload:
/// the test's own thread while it holds the `serialised` lock, the threads it spawns
/// (`spawn`), and the queue's worker threads once they run one of its actions
/// (`count_worker_thread`). A block is counted, or not, for its whole life: a header before
/// it records whether its allocation was, and its reallocations and its free (by whatever
/// thread) follow that record. So the threads that take no part (the test harness's main
/// thread recording a finished test, the threads of tests waiting for the lock) leave the
/// counters alone, and a stress test passes however the harness runs it.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

std::thread_local! {
    /// Whether this thread's allocations are counted (a const thread-local without
    /// destructor: reading it never allocates).
    static TAKES_PART: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Counts the calling thread's allocations from now on (or, with `false`, no longer).
fn take_part(yes: bool) {
    TAKES_PART.with(|t| t.set(yes));
}

/// `thread::spawn` for a thread that takes part in the workload.
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
    thread::spawn(move || {
        take_part(true);
        f()
    })
}

/// Room before each block for the "counted" byte: at least 16 bytes and the block's
/// alignment (so the block stays aligned when the allocation is).
fn header(layout: Layout) -> usize {
    layout.align().max(16)
}

/// The layout of the whole allocation (header and block), if it fits.
fn outer(layout: Layout) -> Option<Layout> {
    Layout::from_size_align(layout.size().checked_add(header(layout))?, header(layout)).ok()
}

/// Counts a block of `bytes` that was (`sign` 1) allocated or (-1) freed.
fn count(bytes: usize, sign: isize) {
    LIVE_BYTES.fetch_add(sign * bytes as isize, Ordering::Relaxed);
    LIVE_BLOCKS.fetch_add(sign, Ordering::Relaxed);
    if sign > 0 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

impl Counting {
    /// # Safety
    ///
    /// As `GlobalAlloc::alloc`; `zeroed` picks `alloc_zeroed`.
    unsafe fn allocate(layout: Layout, zeroed: bool) -> *mut u8 {
        let Some(outer) = outer(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: forwarded, with a layout of non-zero size (the header).
        let base = unsafe {
            if zeroed {
                System.alloc_zeroed(outer)
            } else {
                System.alloc(outer)
            }
        };
        if base.is_null() {
            return base;
        }
        // `try_with`: during thread teardown the slot may be gone (then: not counted).
        let counted = TAKES_PART.try_with(|t| t.get()).unwrap_or(false);
        // SAFETY: the header lies inside the allocation, before the block; the block starts
        // `header(layout)` bytes in, a multiple of its alignment from an address aligned to it.
        unsafe {
            let block = base.add(header(layout));
            block.sub(1).write(u8::from(counted));
            if counted {
                count(layout.size(), 1);
            }
            block
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments widened by the
// header (the same widening for a block's allocation, reallocation and free, since it
// depends only on the alignment, which `realloc` keeps); the accounting uses only atomics
// and a const thread-local without destructor, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { Counting::allocate(layout, false) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { Counting::allocate(layout, true) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(new_outer) = outer(Layout::from_size_align(new_size, layout.align()).unwrap())
        else {
            return std::ptr::null_mut();
        };
        // SAFETY: `ptr` came from `allocate` with this layout: its header precedes it, and
        // the whole allocation starts `header(layout)` bytes before it, with layout
        // `outer(layout)` (which fitted then). `realloc` copies the header along.
        unsafe {
            let counted = ptr.sub(1).read() != 0;
            let old_outer = outer(layout).unwrap();
            let base = System.realloc(ptr.sub(header(layout)), old_outer, new_outer.size());
            if base.is_null() {
                return base;
            }
            if counted {
                LIVE_BYTES.fetch_add(
                    new_size as isize - layout.size() as isize,
                    Ordering::Relaxed,
                );
                ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            }
            base.add(header(layout))
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `realloc`.
        unsafe {
            if ptr.sub(1).read() != 0 {
                count(layout.size(), -1);
            }
            System.dealloc(ptr.sub(header(layout)), outer(layout).unwrap());
        }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Live {
    bytes: isize,
    blocks: isize,
}

fn live() -> Live {
    Live {
        bytes: LIVE_BYTES.load(Ordering::SeqCst),
        blocks: LIVE_BLOCKS.load(Ordering::SeqCst),
    }
}

/// Waits (with the deadline) until the live counters are back at `baseline`; threads that
/// retired on their own may still be tearing down. Returns the last reading.
fn settle_to(baseline: Live) -> Live {
    let deadline = Instant::now() + settle_deadline();
    while Instant::now() < deadline && live() != baseline {
        thread::yield_now();
    }
    live()
}

fn settle_deadline() -> Duration {
    std::env::var("ORDERSLIP_STRESS_SETTLE_SECS")
        .ok()
        .map_or(DEADLINE, |s| Duration::from_secs(s.parse().unwrap()))
}

/// Runs the tests of this file one at a time: each holds this lock for its whole measurement,
/// since each measures the whole process's live memory and would see the others'
/// allocations. Poison-tolerant: a test that failed while holding it must not fail the
/// others.
///
/// What the lock cannot cover is the test harness's own bookkeeping when a test ends and the
/// next one starts (recording the result, spawning the next test's thread). That happens
/// within microseconds of the lock changing hands, while the next test runs its warm-up,
/// before it takes its first baseline; each round takes its own baseline and waits for the
/// counters to settle back to it.
fn serialised() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---- sizes ----

fn scale() -> f64 {
    std::env::var("ORDERSLIP_STRESS_SCALE")
        .ok()
        .map(|s| s.parse().expect("ORDERSLIP_STRESS_SCALE is a number"))
        .unwrap_or(1.0)
}

fn rounds() -> usize {
    std::env::var("ORDERSLIP_STRESS_ROUNDS")
        .ok()
        .map(|s| s.parse().expect("ORDERSLIP_STRESS_ROUNDS is a number"))
        .unwrap_or(1)
}

/// `full` scaled, at least `min`.
fn scaled(full: usize, min: usize) -> usize {
    ((full as f64 * scale()) as usize).max(min)
}

// ---- values with a drop ledger ----

/// One drop counter per value id.
struct Ledger(Vec<AtomicU8>);

impl Ledger {
    fn new(ids: usize) -> Arc<Self> {
        Arc::new(Ledger((0..ids).map(|_| AtomicU8::new(0)).collect()))
    }

    /// Ids `0..created` were each dropped once; the rest never existed.
    fn check_exactly_once(&self, created: usize) {
        let mut wrong = Vec::new();
        for (id, d) in self.0.iter().enumerate() {
            let expected = u8::from(id < created);
            let got = d.load(Ordering::SeqCst);
            if got != expected && wrong.len() < 10 {
                wrong.push((id, got, expected));
            }
        }
        assert!(wrong.is_empty(), "(id, drops, expected): {wrong:?}");
    }
}

struct Val {
    id: usize,
    ledger: Arc<Ledger>,
}

impl std::fmt::Debug for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Val({})", self.id)
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        self.ledger.0[self.id].fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `workload` once small (warm-up), then `rounds()` times at size. Each round measures
/// the live counters just before the workload and waits for them to come back to exactly
/// that after it. The workload writes its report into a buffer allocated beforehand, which is
/// printed only after the measurement (printing may grow the test harness's capture buffer,
/// which is why each round takes its own baseline).
fn with_balance(name: &str, mut workload: impl FnMut(bool, &mut String)) {
    let _serial = serialised();
    // Counted from here on; no longer once the lock is released (the harness's allocations
    // on this thread after the test are not the workload's).
    struct TakingPart;
    impl Drop for TakingPart {
        fn drop(&mut self) {
            take_part(false);
        }
    }
    take_part(true);
    let _taking_part = TakingPart;
    println!("stress {name}: scale {}, rounds {}", scale(), rounds());
    let mut report = String::with_capacity(1024);
    workload(true, &mut report);
    let mut unbalanced = Vec::with_capacity(rounds());
    let mut line = String::with_capacity(1024);
    for round in 0..rounds() {
        report.clear();
        line.clear();
        let baseline = settle_to(live());
        let allocations = ALLOCATIONS.load(Ordering::SeqCst);
        let start = Instant::now();
        workload(false, &mut report);
        let took = start.elapsed();
        let allocations = ALLOCATIONS.load(Ordering::SeqCst) - allocations;
        let after = settle_to(baseline);
        assert!(report.capacity() <= 1024 && unbalanced.capacity() >= rounds());
        let _ = write!(
            line,
            "stress {name} round {round}: {report}; {allocations} allocations; {took:.2?}; \
             live after {} bytes in {} blocks, before {} bytes in {} blocks",
            after.bytes, after.blocks, baseline.bytes, baseline.blocks
        );
        println!("{line}");
        if after != baseline {
            unbalanced.push((
                round,
                after.bytes - baseline.bytes,
                after.blocks - baseline.blocks,
            ));
        }
    }
    assert!(
        unbalanced.is_empty(),
        "{name}: allocations and frees do not balance (round, bytes, blocks): {unbalanced:?}"
    );
}

// ---- 10^6 promises ----

#[test]
#[ignore = "stress: run with --release --ignored"]
fn a_million_promises_created_set_awaited_and_dropped_across_threads() {
    with_balance("promises", |warm_up, report| {
        let total = if warm_up {
            2_048
        } else {
            scaled(1_000_000, 4_096)
        };
        promise_churn(total, report)
    });
}

/// `pairs` waiter/setter pairs. Each waiter creates batches of promises, sends one clone of
/// each to its setter, and waits for them in order with a rotating mix of waits while the
/// setter sets them (a tenth refused on a second set, a fifth with an error) and drops its
/// clones. Every value is checked and dropped exactly once.
fn promise_churn(total: usize, report: &mut String) {
    const PAIRS: usize = 2;
    const BATCH: usize = 256;
    let per_pair = total / PAIRS / BATCH * BATCH;
    let total = per_pair * PAIRS;
    // Ids: 0..total for the values set, total..2*total for refused second sets.
    let ledger = Ledger::new(2 * total);
    let refused = Arc::new(AtomicUsize::new(0));
    let parked_waits = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for pair in 0..PAIRS {
        let (tx, rx) = mpsc::sync_channel::<Vec<(usize, Promise<Val, Val>)>>(4);
        let (l, r) = (ledger.clone(), refused.clone());
        threads.push(spawn(move || {
            for (n, batch) in rx.into_iter().enumerate() {
                // Every other batch is set back to front, so the waiter (which goes front to
                // back) finds most of those promises pending and parks or registers.
                let order: Box<dyn Iterator<Item = &(usize, Promise<Val, Val>)>> = if n % 2 == 1 {
                    Box::new(batch.iter().rev())
                } else {
                    Box::new(batch.iter())
                };
                for (id, p) in order {
                    let v = Val {
                        id: *id,
                        ledger: l.clone(),
                    };
                    if id % 5 == 0 {
                        p.set_exception(v).unwrap();
                    } else {
                        p.set_result(v).unwrap();
                    }
                    if id % 10 == 3 {
                        let again = Val {
                            id: total + *id,
                            ledger: l.clone(),
                        };
                        let back = p.set_result(again).unwrap_err().into_inner();
                        assert_eq!(back.id, total + *id);
                        r.fetch_add(1, Ordering::Relaxed);
                    }
                }
                drop(batch);
            }
        }));
        let parked = parked_waits.clone();
        threads.push(spawn(move || {
            let first = pair * per_pair;
            for start in (first..first + per_pair).step_by(BATCH) {
                let mine: Vec<(usize, Promise<Val, Val>)> = (start..start + BATCH)
                    .map(|id| (id, Promise::with_setter(None)))
                    .collect();
                let theirs = mine.iter().map(|(id, p)| (*id, p.clone())).collect();
                tx.send(theirs).unwrap();
                for (id, p) in &mine {
                    if !p.is_done() {
                        parked.fetch_add(1, Ordering::Relaxed);
                    }
                    let r = match id % 4 {
                        0 => p.wait(),
                        1 => p.result(DEADLINE),
                        2 => block_on(p.wait_async()),
                        _ => {
                            let (ctx, crx) = mpsc::channel();
                            p.then(move |r| {
                                ctx.send(match r {
                                    Ok(v) => (v.id, false),
                                    Err(e) => (e.id, true),
                                })
                                .unwrap()
                            });
                            let (seen, failed) = crx.recv().unwrap();
                            assert_eq!((seen, failed), (*id, id % 5 == 0));
                            p.wait()
                        }
                    };
                    match r {
                        Ok(v) => assert!(v.id == *id && id % 5 != 0),
                        Err(PromiseError::Failed(e)) => assert!(e.id == *id && id % 5 == 0),
                        Err(other) => panic!("promise {id}: {other:?}"),
                    }
                }
                drop(mine);
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let refused = refused.load(Ordering::SeqCst);
    let created_refused = (0..total).filter(|id| id % 10 == 3).count();
    assert_eq!(refused, created_refused);
    // Every value set (ids 0..total) and every refused one (total + id for id % 10 == 3)
    // was dropped exactly once.
    for (id, d) in ledger.0.iter().enumerate() {
        let expected = u8::from(id < total || (id - total) % 10 == 3);
        assert_eq!(d.load(Ordering::SeqCst), expected, "value {id}");
    }
    let _ = write!(
        report,
        "{total} promises set and awaited, {refused} second sets refused, {} waits found the \
         promise pending",
        parked_waits.load(Ordering::SeqCst)
    );
}

// ---- 10^6 timed-out waits ----

#[test]
#[ignore = "stress: run with --release --ignored"]
fn a_million_timed_out_waits_on_one_pending_promise_leave_nothing_behind() {
    with_balance("timed-out waits", |warm_up, report| {
        let total = if warm_up {
            4_096
        } else {
            scaled(1_000_000, 8_192)
        };
        timed_out_waits(total, report)
    });
}

/// Bound on how far live memory may rise above its level at the start of the waits, however
/// many of them time out: a few waiter nodes in flight per thread, nothing per wait.
const WAIT_MEMORY_BOUND: isize = 64 * 1024;

fn timed_out_waits(total: usize, report: &mut String) {
    const THREADS: usize = 4;
    const SAMPLE_EVERY: usize = 1024;
    let per_thread = total / THREADS;
    let total = per_thread * THREADS;
    let ledger = Ledger::new(1);
    let p: Promise<Val, ()> = Promise::with_setter(None);
    let setter = p.clone();
    // A long-lived waiter thread and a registered async waiter stay in the stack the whole
    // time, so every prune has live nodes to put back.
    let parked = {
        let p = p.clone();
        spawn(move || p.wait().map(|v| v.id).map_err(|e| e.cloned()))
    };
    let (waker, wakes) = util::counting_waker();
    let mut registered = Box::pin(p.wait_async());
    assert!(registered
        .as_mut()
        .poll(&mut std::task::Context::from_waker(&waker))
        .is_pending());

    let start = Arc::new(Barrier::new(THREADS + 1));
    let timeouts = Arc::new(AtomicUsize::new(0));
    let max_live = Arc::new(AtomicIsize::new(isize::MIN));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (p, start, timeouts, max_live) =
                (p.clone(), start.clone(), timeouts.clone(), max_live.clone());
            spawn(move || {
                start.wait();
                let mut mine = 0;
                for i in 0..per_thread {
                    // Mostly 1 µs (registers a node, times out, prunes); every 16th a zero
                    // timeout (never registers); every 64th a longer one.
                    let timeout = match (i + t) % 64 {
                        0 => Duration::from_micros(50),
                        n if n % 16 == 0 => Duration::ZERO,
                        _ => Duration::from_micros(1),
                    };
                    match p.result(timeout) {
                        Err(PromiseError::Timeout) => mine += 1,
                        other => panic!("wait {i}: {:?}", other.map(|v| v.id)),
                    }
                    if i % SAMPLE_EVERY == 0 {
                        max_live.fetch_max(LIVE_BYTES.load(Ordering::SeqCst), Ordering::SeqCst);
                    }
                }
                timeouts.fetch_add(mine, Ordering::SeqCst);
            })
        })
        .collect();
    start.wait();
    let at_start = LIVE_BYTES.load(Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let max_rise = max_live.load(Ordering::SeqCst) - at_start;
    assert_eq!(
        timeouts.load(Ordering::SeqCst),
        total,
        "every wait timed out"
    );
    assert!(
        max_rise < WAIT_MEMORY_BOUND,
        "live memory rose by {max_rise} bytes during {total} timed-out waits"
    );
    // The waiters that stayed registered through all the pruning are still woken.
    setter
        .set_result(Val {
            id: 0,
            ledger: ledger.clone(),
        })
        .unwrap();
    assert_eq!(parked.join().unwrap(), Ok(0));
    assert_eq!(
        wakes.count.load(Ordering::SeqCst),
        1,
        "the async waiter was woken"
    );
    assert!(matches!(
        registered
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker)),
        std::task::Poll::Ready(Ok(_))
    ));
    drop(registered);
    drop((p, setter));
    ledger.check_exactly_once(1);
    let _ = write!(
        report,
        "{total} timed-out waits on {THREADS} threads, max live rise {max_rise} bytes"
    );
}

// ---- 10^6 actions ----

#[test]
#[ignore = "stress: run with --release --ignored"]
fn a_million_actions_through_a_keep_alive_zero_queue_from_four_producers() {
    with_balance("actions", |warm_up, report| {
        let total = if warm_up {
            4_096
        } else {
            scaled(1_000_000, 8_192)
        };
        action_flood(total, report)
    });
}

fn action_flood(total: usize, report: &mut String) {
    const PRODUCERS: usize = 4;
    const SUBMIT_EVERY: usize = 1_000;
    let per_producer = total / PRODUCERS;
    let total = per_producer * PRODUCERS;
    let ledger = Ledger::new(total);
    let queue = Arc::new(ActionQueue::builder().keep_alive(Duration::ZERO).build());
    let next: Arc<Vec<AtomicUsize>> =
        Arc::new((0..PRODUCERS).map(|_| AtomicUsize::new(0)).collect());
    let out_of_order = Arc::new(AtomicUsize::new(0));
    let awaited = Arc::new(AtomicUsize::new(0));
    let incarnations = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(PRODUCERS));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (queue, next, bad, ledger, start, awaited, incarnations) = (
                queue.clone(),
                next.clone(),
                out_of_order.clone(),
                ledger.clone(),
                start.clone(),
                awaited.clone(),
                incarnations.clone(),
            );
            spawn(move || {
                start.wait();
                for i in 0..per_producer {
                    let id = p * per_producer + i;
                    let token = Val {
                        id,
                        ledger: ledger.clone(),
                    };
                    let (next, bad) = (next.clone(), bad.clone());
                    let incarnations = incarnations.clone();
                    let action = move || {
                        let _token = token; // dropped when the action has run
                        count_worker_thread(&incarnations);
                        // Only the worker touches next[p], one action at a time.
                        if next[p].load(Ordering::Relaxed) != i {
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                        next[p].store(i + 1, Ordering::Relaxed);
                    };
                    if i % SUBMIT_EVERY == SUBMIT_EVERY - 1 {
                        // Now and then wait for our own action: everything we put before it
                        // has run by then.
                        let awaited = awaited.clone();
                        let reply = queue.submit(move || {
                            action();
                            awaited.fetch_add(1, Ordering::Relaxed);
                            i
                        });
                        assert_eq!(reply.result(DEADLINE), Ok(&i));
                    } else {
                        queue.put(action);
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    assert!(queue.wait_idle(DEADLINE), "the queue drained");
    assert_eq!(
        out_of_order.load(Ordering::SeqCst),
        0,
        "out of order or repeated"
    );
    for n in next.iter() {
        assert_eq!(
            n.load(Ordering::SeqCst),
            per_producer,
            "every action ran once"
        );
    }
    drop(queue);
    ledger.check_exactly_once(total);
    let _ = write!(
        report,
        "{total} actions from {PRODUCERS} producers ({} submitted and awaited) on {} worker \
         threads (keep-alive zero: one per retire/restart)",
        awaited.load(Ordering::SeqCst),
        incarnations.load(Ordering::SeqCst)
    );
}

/// Counts each worker thread once, and its allocations from its first action on (a const
/// thread-local without destructor: no allocation).
fn count_worker_thread(incarnations: &AtomicUsize) {
    TAKES_PART.with(|c| {
        if !c.replace(true) {
            incarnations.fetch_add(1, Ordering::Relaxed);
        }
    });
}
