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
//! full scale: 10^6 promises, 10^6 timed-out waits, 10^6 actions, 10^6 channels (most waited
//! for on two threads, resolved or abandoned by a third), and 2 * 10^5 channels waited for by
//! four threads each (the fan-out). Measured here on 2 busy cores, a round of the two channel
//! tests at full scale takes 0.2-0.5 s and 0.8-1.5 s; `.ci/stress.sh` runs only the three tests
//! it names, so they run with `--ignored` or `--include-ignored`. `ORDERSLIP_STRESS_ROUNDS`
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
//!   dropped exactly once (for channels also each callback: it ran once, or was dropped unrun
//!   when its resolver was, as the channel's fate says, and its captures were dropped once);
//! - **bounded memory** (timed-out waits): live bytes are sampled every 1024 waits and the
//!   maximum stays within a small bound of the baseline, however many waits time out.
#![cfg(not(loom))]
// Not under Miri: the stress tests are `#[ignore]`d and far too slow for it anyway, and the
// tagging allocator reads each block's header through the pointer it is handed back, which
// Stacked Borrows rejects (that pointer's tag covers only the block, not the header before
// it): Miri would fail the binary before any test runs.
#![cfg(not(miri))]

mod util;

use orderslip::{ActionQueue, Promise, PromiseError, Resolver};
use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::future::{Future, IntoFuture};
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

// ---- 10^6 channels ----

/// What the producer does with a channel's resolver, by id.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    /// `set_result(id)`: every waiter gets the value.
    Value,
    /// `set_exception(id)`: every waiter gets `Failed(id)`.
    Error,
    /// Dropped unset: every waiter on every clone gets `Abandoned`, never `Timeout`.
    Abandon,
    /// The consumer drops every handle before the producer sees the resolver: `is_closed`,
    /// and the set hands the value back.
    Closed,
    /// The consumer drops its only handle while the producer sets it: taken or handed back.
    Race,
}

fn fate(id: usize) -> Fate {
    match id % 16 {
        3 | 6 | 14 => Fate::Abandon,
        5 | 13 => Fate::Error,
        7 => Fate::Closed,
        15 => Fate::Race,
        _ => Fate::Value,
    }
}

/// A value for channels (owned futures need `Clone`): the original is counted in the
/// ledger, its clones are not, so a value moved out of the last handle shows.
struct CVal {
    id: usize,
    ledger: Option<Arc<Ledger>>,
}

impl CVal {
    fn new(id: usize, ledger: &Arc<Ledger>) -> Self {
        CVal {
            id,
            ledger: Some(ledger.clone()),
        }
    }
}

impl Clone for CVal {
    fn clone(&self) -> Self {
        CVal {
            id: self.id,
            ledger: None,
        }
    }
}

impl Drop for CVal {
    fn drop(&mut self) {
        if let Some(ledger) = &self.ledger {
            ledger.0[self.id].fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for CVal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CVal({})", self.id)
    }
}

/// Per-id counts of a callback's runs and of drops of the token it captures, and how many
/// callbacks saw a wrong result (a callback's panic would be caught and only logged).
struct CallbackLedger {
    runs: Vec<AtomicU8>,
    drops: Vec<AtomicU8>,
    wrong: AtomicUsize,
}

impl CallbackLedger {
    fn new(ids: usize) -> Arc<Self> {
        Arc::new(CallbackLedger {
            runs: (0..ids).map(|_| AtomicU8::new(0)).collect(),
            drops: (0..ids).map(|_| AtomicU8::new(0)).collect(),
            wrong: AtomicUsize::new(0),
        })
    }

    /// Each id in `0..ids` for which `registered` ran `runs(id)` times and was dropped once;
    /// the others neither.
    fn check(&self, registered: impl Fn(usize) -> bool, runs: impl Fn(usize) -> u8) {
        let mut wrong = Vec::new();
        for id in 0..self.runs.len() {
            let got = (
                self.runs[id].load(Ordering::SeqCst),
                self.drops[id].load(Ordering::SeqCst),
            );
            let expected = if registered(id) {
                (runs(id), 1)
            } else {
                (0, 0)
            };
            if got != expected && wrong.len() < 10 {
                wrong.push((id, got, expected));
            }
        }
        assert!(
            wrong.is_empty(),
            "callbacks (id, (runs, drops), expected): {wrong:?}"
        );
        assert_eq!(
            self.wrong.load(Ordering::SeqCst),
            0,
            "callbacks saw another result than their channel's"
        );
    }
}

/// Captured by a callback: counts its drop, whether the callback ran or was dropped unrun.
struct CallbackToken {
    id: usize,
    ledger: Arc<CallbackLedger>,
}

impl CallbackToken {
    /// Records a run of the callback, which saw the `right` result or not.
    fn ran(&self, right: bool) {
        self.ledger.runs[self.id].fetch_add(1, Ordering::Relaxed);
        if !right {
            self.ledger.wrong.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for CallbackToken {
    fn drop(&mut self) {
        self.ledger.drops[self.id].fetch_add(1, Ordering::Relaxed);
    }
}

/// What a wait on channel `id` must give, by its fate (`None`: it cannot be waited for).
fn channel_expected(id: usize) -> Option<Result<usize, PromiseError<usize>>> {
    match fate(id) {
        Fate::Value => Some(Ok(id)),
        Fate::Error => Some(Err(PromiseError::Failed(id))),
        Fate::Abandon => Some(Err(PromiseError::Abandoned)),
        Fate::Closed | Fate::Race => None,
    }
}

/// A blocking wait's answer, owned, as ids.
fn ids(r: Result<&CVal, PromiseError<&CVal>>) -> Result<usize, PromiseError<usize>> {
    r.map(|v| v.id).map_err(|e| e.map(|v| v.id))
}

/// An owned future's answer as ids, and whether a counted value was moved out (the future
/// held the last handle) rather than cloned.
fn owned_ids(r: Result<CVal, PromiseError<CVal>>) -> (Result<usize, PromiseError<usize>>, bool) {
    let moved = match &r {
        Ok(v) | Err(PromiseError::Failed(v)) => v.ledger.is_some(),
        Err(_) => false,
    };
    (r.map(|v| v.id).map_err(|e| e.map(|v| v.id)), moved)
}

/// Counters of what the channel workload saw (relaxed; read after joining).
#[derive(Default)]
struct ChannelCounts {
    /// Waits with a short timeout that timed out (the channel was still pending).
    short_timeouts: AtomicUsize,
    /// Owned futures that moved the value out of the last handle.
    moved: AtomicUsize,
    /// `into_inner` calls that got the value.
    into_inner: AtomicUsize,
    /// Resolver sets handed back (nobody could read them).
    handed_back: AtomicUsize,
    /// Race channels whose consumer handle was still there when the set came.
    race_taken: AtomicUsize,
    /// Consumer waits that found the channel still pending.
    pending: AtomicUsize,
}

#[test]
#[ignore = "stress: run with --release --ignored"]
fn a_million_channels_resolved_or_abandoned_while_clones_wait_across_threads() {
    with_balance("channels", |warm_up, report| {
        let total = if warm_up {
            2_048
        } else {
            scaled(1_000_000, 4_096)
        };
        channel_churn(total, report)
    });
}

/// `GROUPS` groups of three threads. The consumer creates batches of channels; of each
/// channel it keeps two handles (and sometimes a callback and a map), sends a third handle
/// to the watcher and the resolver to the producer. The producer sets, fails or drops the
/// resolvers (every other batch back to front, so that many waits find the channel pending
/// and park) and checks `is_closed` and the handed-back values of the channels the consumer
/// let go of. Consumer and watcher wait with a rotating mix of blocking, timed, short-timeout,
/// async and owned waits, drop their handles or take the value with `into_inner`. Every wait
/// must give the channel's value, its error or `Abandoned` (a wait with the 30 s deadline
/// never times out); every callback runs once or is dropped unrun, exactly as the fate says;
/// every value is dropped exactly once.
fn channel_churn(total: usize, report: &mut String) {
    const GROUPS: usize = 2;
    const BATCH: usize = 256;
    type Handle = Promise<CVal, CVal>;
    /// A channel the consumer waits for: its id, its handles, its map if it has one.
    type Mine = (usize, Vec<Handle>, Option<Promise<usize, CVal>>);
    let per_group = total / GROUPS / BATCH * BATCH;
    let total = per_group * GROUPS;
    let ledger = Ledger::new(total);
    let callbacks = CallbackLedger::new(total);
    let counts = Arc::new(ChannelCounts::default());
    let mut threads = Vec::new();
    for group in 0..GROUPS {
        let (to_producer, resolvers) = mpsc::sync_channel::<Vec<(usize, Resolver<CVal, CVal>)>>(4);
        let (to_watcher, watched) = mpsc::sync_channel::<Vec<(usize, Handle)>>(4);
        // How many batches the consumer and the watcher have begun to wait for (together):
        // the producer resolves a batch only once both have, so that the waits race with the
        // resolvers instead of finding them all resolved.
        let begun = Arc::new(AtomicUsize::new(0));
        // The producer.
        let (l, c, b) = (ledger.clone(), counts.clone(), begun.clone());
        threads.push(spawn(move || {
            for (n, batch) in resolvers.into_iter().enumerate() {
                let deadline = Instant::now() + DEADLINE;
                while b.load(Ordering::Acquire) < 2 * (n + 1) {
                    // A consumer or watcher that failed never begins: fail, do not hang.
                    assert!(Instant::now() < deadline, "batch {n} was never waited for");
                    thread::yield_now();
                }
                let order: Box<dyn Iterator<Item = (usize, Resolver<CVal, CVal>)>> = if n % 2 == 1 {
                    Box::new(batch.into_iter().rev())
                } else {
                    Box::new(batch.into_iter())
                };
                for (id, resolver) in order {
                    if fate(id) == Fate::Abandon {
                        assert!(!resolver.is_closed(), "channel {id}: its waiters are there");
                        drop(resolver);
                        continue;
                    }
                    let v = CVal::new(id, &l);
                    match fate(id) {
                        Fate::Value => {
                            assert!(!resolver.is_closed(), "channel {id}: its waiters are there");
                            resolver.set_result(v).unwrap();
                        }
                        Fate::Error => resolver.set_exception(v).unwrap(),
                        Fate::Abandon => unreachable!(),
                        Fate::Closed => {
                            assert!(resolver.is_closed(), "channel {id}: every handle is gone");
                            let back = resolver.set_result(v).unwrap_err();
                            assert_eq!(back.id, id);
                            c.handed_back.fetch_add(1, Ordering::Relaxed);
                        }
                        Fate::Race => match resolver.set_result(v) {
                            Ok(()) => {
                                c.race_taken.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(back) => {
                                assert_eq!(back.id, id);
                                c.handed_back.fetch_add(1, Ordering::Relaxed);
                            }
                        },
                    }
                }
            }
        }));
        // The watcher: a third handle of each waitable channel, on another thread.
        let (c, b) = (counts.clone(), begun.clone());
        threads.push(spawn(move || {
            for batch in watched {
                b.fetch_add(1, Ordering::Release);
                for (id, h) in batch {
                    let expected = channel_expected(id).unwrap();
                    let got = match id % 3 {
                        0 => ids(h.result(DEADLINE)),
                        1 => {
                            let (got, moved) = owned_ids(block_on(h.into_future()));
                            if moved {
                                c.moved.fetch_add(1, Ordering::Relaxed);
                            }
                            got
                        }
                        _ => {
                            // Short timeouts until it is resolved: registers, times out and
                            // prunes while the producer sets or abandons it.
                            let deadline = Instant::now() + DEADLINE;
                            loop {
                                match ids(h.result(Duration::from_micros(2))) {
                                    Err(PromiseError::Timeout) if Instant::now() < deadline => {
                                        c.short_timeouts.fetch_add(1, Ordering::Relaxed);
                                    }
                                    other => break other,
                                }
                            }
                        }
                    };
                    assert_eq!(got, expected, "watcher, channel {id}");
                }
            }
        }));
        // The consumer.
        let (l, cl, c) = (ledger.clone(), callbacks.clone(), counts.clone());
        threads.push(spawn(move || {
            let first = group * per_group;
            for start in (first..first + per_group).step_by(BATCH) {
                let mut resolvers = Vec::with_capacity(BATCH);
                let mut theirs = Vec::with_capacity(BATCH);
                // (id, two handles, a map) of each channel this thread waits for; race
                // channels keep one handle, closed ones none.
                let mut mine: Vec<Mine> = Vec::with_capacity(BATCH);
                for id in start..start + BATCH {
                    let (resolver, p) = Promise::<CVal, CVal>::channel();
                    resolvers.push((id, resolver));
                    match fate(id) {
                        Fate::Closed => drop(p),
                        Fate::Race => mine.push((id, vec![p], None)),
                        _ => {
                            if id % 3 == 0 {
                                let token = CallbackToken {
                                    id,
                                    ledger: cl.clone(),
                                };
                                p.then(move |r| {
                                    let right = channel_expected(token.id).unwrap();
                                    token.ran(ids(r.map_err(PromiseError::Failed)) == right);
                                });
                            }
                            let map = (id % 5 == 1).then(|| p.map(|v| v.id));
                            theirs.push((id, p.clone()));
                            let q = p.clone();
                            mine.push((id, vec![p, q], map));
                        }
                    }
                }
                to_producer.send(resolvers).unwrap();
                to_watcher.send(theirs).unwrap();
                begun.fetch_add(1, Ordering::Release);
                // Half the race channels are let go of at once, while the producer starts on
                // the batch, the other half in order, between the waits.
                mine.retain(|(id, _, _)| id % 32 != 15);
                for (id, mut handles, map) in mine {
                    if fate(id) == Fate::Race {
                        drop(handles); // while the producer may be setting it
                        continue;
                    }
                    let expected = channel_expected(id).unwrap();
                    let q = handles.pop().unwrap();
                    let p = handles.pop().unwrap();
                    if !p.is_done() {
                        c.pending.fetch_add(1, Ordering::Relaxed);
                    }
                    let got = match id % 5 {
                        0 => match ids(p.result(Duration::from_micros(20))) {
                            Err(PromiseError::Timeout) => {
                                c.short_timeouts.fetch_add(1, Ordering::Relaxed);
                                drop(q);
                                ids(p.result(DEADLINE))
                            }
                            got => got,
                        },
                        1 => {
                            let (got, moved) = owned_ids(block_on(q.into_future()));
                            if moved {
                                c.moved.fetch_add(1, Ordering::Relaxed);
                            }
                            assert_eq!(ids(p.wait()), got, "channel {id}: both handles agree");
                            got
                        }
                        2 => ids(block_on(p.wait_async())),
                        3 => ids(p.wait()),
                        _ => ids(q.result(DEADLINE)),
                    };
                    assert_eq!(got, expected, "consumer, channel {id}");
                    if let Some(map) = map {
                        let mapped = match map.result(DEADLINE) {
                            Ok(v) => Ok(*v),
                            Err(e) => Err(e.map(|v| v.id)),
                        };
                        assert_eq!(mapped, expected, "map of channel {id}");
                    }
                    if id % 4 == 0 {
                        // The value, if this is the last handle (the others may be gone).
                        if let Some(r) = p.into_inner() {
                            let got = r.map(|v| v.id).map_err(|e| PromiseError::Failed(e.id));
                            assert_eq!(got, expected, "into_inner of channel {id}");
                            c.into_inner.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            drop(l);
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    // Every channel's value (or error), except the abandoned ones', was created once and
    // dropped once: with its last handle, by the owner of an owned future's output or of
    // `into_inner`'s, or by the producer that got it handed back.
    let wrong: Vec<(usize, u8)> = (0..total)
        .map(|id| (id, ledger.0[id].load(Ordering::SeqCst)))
        .filter(|&(id, drops)| drops != u8::from(fate(id) != Fate::Abandon))
        .take(10)
        .collect();
    assert!(wrong.is_empty(), "(id, drops) of channel values: {wrong:?}");
    callbacks.check(
        |id| id % 3 == 0 && channel_expected(id).is_some(),
        |id| u8::from(matches!(fate(id), Fate::Value | Fate::Error)),
    );
    let abandoned = (0..total).filter(|&id| fate(id) == Fate::Abandon).count();
    let closed = (0..total).filter(|&id| fate(id) == Fate::Closed).count();
    let handed_back = counts.handed_back.load(Ordering::SeqCst);
    assert!(
        handed_back >= closed,
        "every closed channel's set is handed back"
    );
    let _ = write!(
        report,
        "{total} channels ({abandoned} abandoned), {} consumer waits found one pending, {} \
         short timeouts, {} values moved out by owned futures, {} by into_inner, \
         {handed_back} handed back ({} race sets taken)",
        counts.pending.load(Ordering::SeqCst),
        counts.short_timeouts.load(Ordering::SeqCst),
        counts.moved.load(Ordering::SeqCst),
        counts.into_inner.load(Ordering::SeqCst),
        counts.race_taken.load(Ordering::SeqCst),
    );
}

// ---- one resolver, many waiters on many clones ----

#[test]
#[ignore = "stress: run with --release --ignored"]
fn channels_with_four_waiting_threads_each_are_all_woken_by_one_set_or_drop() {
    with_balance("channel fan-out", |warm_up, report| {
        let total = if warm_up {
            1_024
        } else {
            scaled(200_000, 2_048)
        };
        channel_fan_out(total, report)
    });
}

/// The test's thread makes `total` channels; each of `WAITERS` threads gets a clone of every
/// one and waits for it (each thread with its own kind of wait, rotating per channel), while
/// the test's thread, a few channels ahead, sets, fails or drops each resolver (a third
/// abandoned). Every waiter on every clone must get the value or `Abandoned` from the one
/// resolver; a callback registered on some channels runs once or is dropped unrun.
fn channel_fan_out(total: usize, report: &mut String) {
    const WAITERS: usize = 4;
    let ledger = Ledger::new(total);
    let callbacks = CallbackLedger::new(total);
    let expected = |id: usize| -> Result<usize, PromiseError<usize>> {
        match id % 3 {
            0 => Err(PromiseError::Abandoned),
            1 => Ok(id),
            _ => Err(PromiseError::Failed(id)),
        }
    };
    let parked = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    let mut waiters = Vec::new();
    for w in 0..WAITERS {
        let (tx, rx) = mpsc::sync_channel::<(usize, Promise<CVal, CVal>)>(16);
        senders.push(tx);
        let parked = parked.clone();
        waiters.push(spawn(move || {
            for (id, h) in rx {
                if !h.is_done() {
                    parked.fetch_add(1, Ordering::Relaxed);
                }
                let got = match (id + w) % 4 {
                    0 => ids(h.result(DEADLINE)),
                    1 => ids(h.wait()),
                    2 => ids(block_on(h.wait_async())),
                    _ => owned_ids(block_on(h.into_future())).0,
                };
                assert_eq!(got, expected(id), "waiter {w}, channel {id}");
            }
        }));
    }
    for id in 0..total {
        let (resolver, p) = Promise::<CVal, CVal>::channel();
        if id % 4 == 0 {
            let token = CallbackToken {
                id,
                ledger: callbacks.clone(),
            };
            p.then(move |r| {
                token.ran(ids(r.map_err(PromiseError::Failed)) == expected(token.id));
            });
        }
        for tx in &senders {
            tx.send((id, p.clone())).unwrap();
        }
        drop(p);
        let v = CVal::new(id, &ledger);
        match id % 3 {
            0 => {
                drop(v);
                drop(resolver);
            }
            1 => resolver.set_result(v).unwrap(),
            _ => resolver.set_exception(v).unwrap(),
        }
    }
    drop(senders);
    for w in waiters {
        w.join().unwrap();
    }
    ledger.check_exactly_once(total);
    callbacks.check(|id| id % 4 == 0, |id| u8::from(id % 3 != 0));
    let _ = write!(
        report,
        "{total} channels, {WAITERS} waiting threads each ({} waits found the channel pending)",
        parked.load(Ordering::SeqCst)
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

/// A million actions (at scale 1) from four producers onto a thousand queues on one
/// two-thread pool with keep-alive zero (so pool threads retire and restart whenever the
/// pool runs dry): every action runs exactly once (the ledger), each producer's actions run
/// in order on each queue, no two actions of one queue ever overlap, and the pool never has
/// more than two threads.
#[test]
#[ignore = "stress: run by .ci/stress.sh"]
fn a_million_actions_on_a_thousand_pool_queues_from_four_producers() {
    with_balance("pool", |warm_up, report| {
        let total = if warm_up {
            4_096
        } else {
            scaled(1_000_000, 8_192)
        };
        pool_flood(total, report)
    });
}

fn pool_flood(total: usize, report: &mut String) {
    const PRODUCERS: usize = 4;
    const QUEUES: usize = 1_000;
    const THREADS: usize = 2;
    let per_producer = total / PRODUCERS;
    let total = per_producer * PRODUCERS;
    let ledger = Ledger::new(total);
    let pool = orderslip::WorkerPool::builder()
        .max_threads(THREADS)
        .keep_alive(Duration::ZERO)
        .build();
    let queues: Arc<Vec<ActionQueue>> = Arc::new(
        (0..QUEUES)
            .map(|_| ActionQueue::builder().pool(&pool).build())
            .collect(),
    );
    // next[q * PRODUCERS + p]: how many of producer p's actions ran on queue q.
    let next: Arc<Vec<AtomicUsize>> = Arc::new(
        (0..QUEUES * PRODUCERS)
            .map(|_| AtomicUsize::new(0))
            .collect(),
    );
    let busy: Arc<Vec<AtomicU8>> = Arc::new((0..QUEUES).map(|_| AtomicU8::new(0)).collect());
    let bad = Arc::new(AtomicUsize::new(0));
    let incarnations = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(PRODUCERS));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (queues, next, busy, bad, ledger, start, incarnations) = (
                queues.clone(),
                next.clone(),
                busy.clone(),
                bad.clone(),
                ledger.clone(),
                start.clone(),
                incarnations.clone(),
            );
            spawn(move || {
                start.wait();
                for i in 0..per_producer {
                    let q = (i + p * 7) % QUEUES;
                    let nth = i / QUEUES; // this producer's nth action on queue q
                    let token = Val {
                        id: p * per_producer + i,
                        ledger: ledger.clone(),
                    };
                    let (next, busy, bad) = (next.clone(), busy.clone(), bad.clone());
                    let incarnations = incarnations.clone();
                    queues[q].put(move || {
                        let _token = token;
                        count_worker_thread(&incarnations);
                        if busy[q].swap(1, Ordering::Relaxed) != 0 {
                            bad.fetch_add(1, Ordering::Relaxed); // two at once on one queue
                        }
                        let slot = &next[q * PRODUCERS + p];
                        if slot.load(Ordering::Relaxed) != nth {
                            bad.fetch_add(1, Ordering::Relaxed); // out of order, or repeated
                        }
                        slot.store(nth + 1, Ordering::Relaxed);
                        busy[q].store(0, Ordering::Relaxed);
                    });
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let queues = Arc::into_inner(queues).expect("the producers are done");
    for queue in queues {
        assert!(queue.join(DEADLINE), "every queue drained");
    }
    assert_eq!(
        bad.load(Ordering::SeqCst),
        0,
        "out of order, repeated or overlapping"
    );
    let ran: usize = next.iter().map(|n| n.load(Ordering::SeqCst)).sum();
    assert_eq!(ran, total, "every action ran once");
    assert!(
        pool.peak_threads() <= THREADS,
        "at most {THREADS} pool threads"
    );
    let peak = pool.peak_threads();
    drop(pool);
    ledger.check_exactly_once(total);
    let _ = write!(
        report,
        "{total} actions from {PRODUCERS} producers on {QUEUES} queues of a {THREADS}-thread pool \
         (peak {peak}; {} pool thread incarnations, keep-alive zero)",
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
