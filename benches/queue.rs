//! ActionQueue benchmarks: orderslip's `ActionQueue` (on a thread of its own, and on a
//! `WorkerPool`) beside persistent single-worker queues on std (`Mutex<VecDeque>` +
//! `Condvar`), `crossbeam-channel` and `std::sync::mpsc`, a thread per action, and, for many
//! queues on few threads, tokio actors and a naive sequential executor (all peers in
//! `benches/common`), each group doing identical work with every peer in one process.
//!
//! Run everything: `cargo bench --bench queue`. Run one group:
//!
//! ```sh
//! cargo bench --bench queue -- queue/throughput_1p
//! cargo bench --bench queue -- queue/throughput_2p
//! cargo bench --bench queue -- queue/burst_latency
//! cargo bench --bench queue -- queue/keep_alive_sweep
//! cargo bench --bench queue -- queue/many_queues          # about 4 minutes, most in the last
//! cargo bench --bench queue -- 'queue/many_queues/(orderslip_pool|tokio|naive)'  # not it
//! ```
//!
//! Groups:
//! - `queue/throughput_1p`, `queue/throughput_2p`: one iteration puts `N` cheap actions
//!   (each bumps a counter) from 1 or 2 producers, then waits until all have run (each
//!   producer puts a marker action last and waits for it). Reported per action
//!   (`Throughput::Elements`). The 2-producer variant keeps a second producer thread per
//!   sample and starts it with a `Barrier` each iteration. Thread-per-action spawns
//!   `N_SPAWN` threads per iteration (and joins them) instead. `orderslip_pool` is a queue
//!   on a `WorkerPool` of its own with `max_threads(2)`.
//! - `queue/burst_latency`: one iteration sleeps an idle gap longer than any spin phase
//!   (2 ms), puts one action and measures the time from just before `put` to the first
//!   instruction of the action. orderslip runs with keep-alive zero (the seed: every burst
//!   starts a thread) and with `ActionQueue::DEFAULT_KEEP_ALIVE`, on a thread of its own and
//!   on a `max_threads(2)` pool (default keep-alive; "cold" there means the pool had no
//!   thread).
//! - `queue/keep_alive_sweep`: the same burst latency for keep-alives 0, 100 µs, 1 ms,
//!   10 ms and 100 ms after idle gaps of 5 ms and 20 ms.
//! - `queue/many_queues`: 10 000 serial queues and 4 producer threads; one iteration has
//!   each producer put `ROUNDS` (10) actions to every queue, round-robin (400 000 actions),
//!   and ends when all have run. Each action bumps its queue's counter (a cache line of its
//!   own); the one that completes its queue's 40 ticks a shared countdown of the queues, and
//!   the timing thread waits for that to reach zero (the same completion for every peer, one
//!   shared read-modify-write per queue and iteration). Reported per action. The queues are
//!   built once per bench, outside the timed loop, and the producers (started together by a
//!   `Barrier`) live as long as the bench. Peers: `orderslip_pool_2` (one `WorkerPool` with
//!   `max_threads(2)`, a pool-backed `ActionQueue` per queue), `tokio_actors_2` (a 2-worker
//!   multi-thread runtime, an unbounded channel and a spawned task per queue),
//!   `naive_executor_2` (`NaivePool`: a `Mutex<VecDeque>` and a "scheduled" flag per queue,
//!   a `Mutex<VecDeque>` + `Condvar` run queue, 2 threads, at most 64 actions a turn) and
//!   `orderslip_dedicated` (`ActionQueue::new()` per queue: a thread per busy queue; 10
//!   samples, criterion's minimum, as an iteration takes seconds).
//!
//! After each latency group the bench prints, for every bench, the percentiles of all the
//! bursts it timed (warm-up included) and the share of bursts that found no worker thread.
//! After `queue/many_queues` it prints the peak number of threads each implementation added:
//! the process's `Threads:` (`/proc/self/status`), sampled every millisecond by a thread of
//! the bench, less the count before the implementation was built and the bench's own
//! producers and sampler (and, for the pool, `WorkerPool::peak_threads`). The library's error
//! reports (a worker thread that could not be spawned, say) are counted and the first few
//! printed, and an iteration that has not finished after a minute stops the bench with the
//! number of queues left, rather than hanging.

use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};
use orderslip::{ActionQueue, WorkerPool};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::{
    process_threads, CrossbeamWorker, MpscWorker, NaivePool, NaiveQueue, StdWorker, TokioActor,
    Worker,
};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Actions per iteration for the persistent workers.
const N: u64 = 10_000;
/// Actions per iteration for thread-per-action.
const N_SPAWN: u64 = 100;

/// A counter that outlives every action (actions must be `'static`).
fn leaked_counter() -> &'static AtomicU64 {
    Box::leak(Box::new(AtomicU64::new(0)))
}

/// Puts `count` counter bumps, then a marker, and waits for the marker. FIFO order means
/// every earlier action of this producer has run by then.
fn put_batch<W: Worker>(worker: &W, counter: &'static AtomicU64, count: u64) {
    for _ in 0..count {
        worker.put(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
    }
    let (tx, rx) = oneshot::channel::<()>();
    worker.put(move || tx.send(()).unwrap());
    rx.recv().unwrap();
}

fn throughput_1p<W: Worker>(worker: &W, iters: u64) -> Duration {
    let counter = leaked_counter();
    let start = Instant::now();
    for _ in 0..iters {
        put_batch(worker, counter, N);
    }
    let elapsed = start.elapsed();
    assert_eq!(counter.load(Ordering::Relaxed), iters * N);
    elapsed
}

fn throughput_2p<W: Worker>(worker: &W, iters: u64) -> Duration {
    let counter = leaked_counter();
    let barrier = Barrier::new(2);
    let stop = AtomicBool::new(false);
    let elapsed = thread::scope(|s| {
        s.spawn(|| loop {
            barrier.wait();
            if stop.load(Ordering::Relaxed) {
                return;
            }
            put_batch(worker, counter, N / 2);
            barrier.wait();
        });
        let start = Instant::now();
        for _ in 0..iters {
            barrier.wait();
            put_batch(worker, counter, N - N / 2);
            barrier.wait();
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        barrier.wait();
        elapsed
    });
    assert_eq!(counter.load(Ordering::Relaxed), iters * N);
    elapsed
}

/// Spawns a thread per action and joins them.
fn spawn_batch(counter: &'static AtomicU64, count: u64) {
    let handles: Vec<_> = (0..count)
        .map(|_| {
            thread::spawn(move || {
                counter.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
}

fn throughput_spawn(producers: u64, iters: u64) -> Duration {
    let counter = leaked_counter();
    let start = Instant::now();
    for _ in 0..iters {
        if producers == 1 {
            spawn_batch(counter, N_SPAWN);
        } else {
            thread::scope(|s| {
                s.spawn(|| spawn_batch(counter, N_SPAWN / 2));
                spawn_batch(counter, N_SPAWN - N_SPAWN / 2);
            });
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(counter.load(Ordering::Relaxed), iters * N_SPAWN);
    elapsed
}

/// A queue on a pool of its own with at most 2 threads (the pool lives as long as the queue).
fn pool_queue() -> ActionQueue {
    ActionQueue::builder()
        .pool(&WorkerPool::builder().max_threads(2).build())
        .build()
}

fn configure(group: &mut Group<'_>) {
    group
        .warm_up_time(common::WARM_UP)
        .measurement_time(common::MEASURE)
        .sample_size(common::SAMPLES);
}

fn throughput(c: &mut Criterion, name: &str, producers: u64) {
    let mut group = c.benchmark_group(name);
    configure(&mut group);
    group.throughput(Throughput::Elements(N));
    {
        let queue = ActionQueue::new();
        group.bench_function("orderslip", |b| {
            b.iter_custom(|iters| match producers {
                1 => throughput_1p(&queue, iters),
                _ => throughput_2p(&queue, iters),
            })
        });
    }
    {
        let queue = pool_queue();
        group.bench_function("orderslip_pool", |b| {
            b.iter_custom(|iters| match producers {
                1 => throughput_1p(&queue, iters),
                _ => throughput_2p(&queue, iters),
            })
        });
    }
    {
        let worker = StdWorker::new();
        group.bench_function("std_mutex_condvar", |b| {
            b.iter_custom(|iters| match producers {
                1 => throughput_1p(&worker, iters),
                _ => throughput_2p(&worker, iters),
            })
        });
    }
    {
        let worker = CrossbeamWorker::new();
        group.bench_function("crossbeam_unbounded", |b| {
            b.iter_custom(|iters| match producers {
                1 => throughput_1p(&worker, iters),
                _ => throughput_2p(&worker, iters),
            })
        });
    }
    {
        let worker = MpscWorker::new();
        group.bench_function("std_mpsc", |b| {
            b.iter_custom(|iters| match producers {
                1 => throughput_1p(&worker, iters),
                _ => throughput_2p(&worker, iters),
            })
        });
    }
    group.throughput(Throughput::Elements(N_SPAWN));
    group.bench_function("thread_per_action", |b| {
        b.iter_custom(|iters| throughput_spawn(producers, iters))
    });
    group.finish();
}

fn throughput_1p_group(c: &mut Criterion) {
    throughput(c, "queue/throughput_1p", 1);
}

fn throughput_2p_group(c: &mut Criterion) {
    throughput(c, "queue/throughput_2p", 2);
}

// ---------------------------------------------------------------------------------------
// Burst latency
// ---------------------------------------------------------------------------------------

/// Every burst latency timed per bench id, and how many of the bursts found no worker.
#[derive(Default)]
struct Record {
    latencies: Vec<Duration>,
    cold: u64,
}

static RECORDS: Mutex<BTreeMap<String, Record>> = Mutex::new(BTreeMap::new());

/// Something a burst can be put on.
trait Burst {
    /// Queues `f`.
    fn burst<F: FnOnce() + Send + 'static>(&self, f: F);
    /// Whether there is no worker thread right now (`false` when the peer cannot tell).
    fn is_cold(&self) -> bool {
        false
    }
}

impl Burst for ActionQueue {
    fn burst<F: FnOnce() + Send + 'static>(&self, f: F) {
        self.put(f);
    }
    fn is_cold(&self) -> bool {
        !self.is_running()
    }
}

/// A queue on a pool of its own: "cold" is "the pool has no thread" (the queue itself is
/// unscheduled between bursts whether or not a pool thread lingers).
struct PoolBurst {
    pool: WorkerPool,
    queue: ActionQueue,
}

impl PoolBurst {
    fn new() -> Self {
        let pool = WorkerPool::builder().max_threads(2).build();
        let queue = ActionQueue::builder().pool(&pool).build();
        PoolBurst { pool, queue }
    }
}

impl Burst for PoolBurst {
    fn burst<F: FnOnce() + Send + 'static>(&self, f: F) {
        self.queue.put(f);
    }
    fn is_cold(&self) -> bool {
        self.pool.threads() == 0
    }
}

macro_rules! burst_via_worker {
    ($($t:ty),*) => {$(
        impl Burst for $t {
            fn burst<F: FnOnce() + Send + 'static>(&self, f: F) {
                self.put(f);
            }
        }
    )*};
}
burst_via_worker!(StdWorker, CrossbeamWorker, MpscWorker);

/// A thread per action.
struct SpawnPerAction;

impl Burst for SpawnPerAction {
    fn burst<F: FnOnce() + Send + 'static>(&self, f: F) {
        // Detached: the action signals its start, and the thread ends right after.
        drop(thread::spawn(f));
    }
    fn is_cold(&self) -> bool {
        true
    }
}

/// `iters` bursts, each after `gap` of idleness: the summed time from just before the put
/// to the start of the action.
fn bursts<B: Burst>(id: &str, target: &B, gap: Duration, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut latencies = Vec::with_capacity(iters as usize);
    let mut cold = 0;
    for _ in 0..iters {
        thread::sleep(gap);
        let (tx, rx) = oneshot::channel::<Instant>();
        cold += u64::from(target.is_cold());
        let put_at = Instant::now();
        target.burst(move || {
            let started = Instant::now();
            tx.send(started).unwrap();
        });
        let started = rx.recv().unwrap();
        let latency = started.saturating_duration_since(put_at);
        latencies.push(latency);
        total += latency;
    }
    let mut records = RECORDS.lock().unwrap();
    let record = records.entry(id.to_owned()).or_default();
    record.latencies.extend(latencies);
    record.cold += cold;
    total
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

/// Prints the percentiles of every burst recorded under `prefix`.
fn report(prefix: &str) {
    let records = RECORDS.lock().unwrap();
    println!(
        "\n{prefix}: per-burst latency over all timed bursts (warm-up included)\n{:<40} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "bench", "n", "mean", "p50", "p90", "p99", "max", "cold"
    );
    for (id, record) in records.range(prefix.to_owned()..) {
        if !id.starts_with(prefix) {
            break;
        }
        let mut sorted = record.latencies.clone();
        sorted.sort();
        let n = sorted.len();
        let mean = sorted.iter().sum::<Duration>() / n as u32;
        println!(
            "{:<40} {:>6} {:>9.1?} {:>9.1?} {:>9.1?} {:>9.1?} {:>9.1?} {:>5.0}%",
            id.trim_start_matches(prefix),
            n,
            mean,
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.9),
            percentile(&sorted, 0.99),
            sorted[n - 1],
            100.0 * record.cold as f64 / n as f64,
        );
    }
}

fn configure_latency(group: &mut Group<'_>) {
    group
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(10);
}

/// The idle gap of `queue/burst_latency`: longer than any spin phase.
const BURST_GAP: Duration = Duration::from_millis(2);

fn burst_latency(c: &mut Criterion) {
    const GROUP: &str = "queue/burst_latency";
    let mut group = c.benchmark_group(GROUP);
    configure_latency(&mut group);
    fn bench<B: Burst>(group: &mut Group<'_>, name: &str, target: &B) {
        let id = format!("{GROUP}/{name}");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| bursts(&id, target, BURST_GAP, iters))
        });
    }
    bench(
        &mut group,
        "orderslip_default_keep_alive",
        &ActionQueue::new(),
    );
    bench(
        &mut group,
        "orderslip_keep_alive_0",
        &ActionQueue::builder().keep_alive(Duration::ZERO).build(),
    );
    bench(
        &mut group,
        "orderslip_pool_default_keep_alive",
        &PoolBurst::new(),
    );
    bench(&mut group, "std_mutex_condvar", &StdWorker::new());
    bench(&mut group, "crossbeam_unbounded", &CrossbeamWorker::new());
    bench(&mut group, "std_mpsc", &MpscWorker::new());
    bench(&mut group, "thread_per_action", &SpawnPerAction);
    group.finish();
    report(&format!("{GROUP}/"));
}

fn keep_alive_sweep(c: &mut Criterion) {
    const GROUP: &str = "queue/keep_alive_sweep";
    let mut group = c.benchmark_group(GROUP);
    configure_latency(&mut group);
    let keep_alives = [
        ("0", Duration::ZERO),
        ("100us", Duration::from_micros(100)),
        ("1ms", Duration::from_millis(1)),
        ("10ms", Duration::from_millis(10)),
        ("100ms", Duration::from_millis(100)),
    ];
    for (gap_name, gap) in [
        ("gap_5ms", Duration::from_millis(5)),
        ("gap_20ms", Duration::from_millis(20)),
    ] {
        for (ka_name, keep_alive) in keep_alives {
            let queue = ActionQueue::builder().keep_alive(keep_alive).build();
            let name = format!("{gap_name}/keep_alive_{ka_name}");
            let id = format!("{GROUP}/{name}");
            group.bench_function(&name, |b| {
                b.iter_custom(|iters| bursts(&id, &queue, gap, iters))
            });
        }
    }
    group.finish();
    report(&format!("{GROUP}/"));
}

// ---------------------------------------------------------------------------------------
// Many queues
// ---------------------------------------------------------------------------------------

/// Queues in `queue/many_queues`.
const QUEUES: usize = 10_000;
/// Producer threads in `queue/many_queues`.
const PRODUCERS: usize = 4;
/// Actions each producer puts to every queue per iteration.
const ROUNDS: usize = 10;
/// Actions each queue runs per iteration.
const PER_QUEUE: u64 = (PRODUCERS * ROUNDS) as u64;
/// Actions per iteration.
const MANY_ACTIONS: u64 = (QUEUES * PRODUCERS * ROUNDS) as u64;
/// Threads the bench itself adds while it measures: the producers and the sampler.
const HARNESS_THREADS: usize = PRODUCERS + 1;
/// How often the sampler reads the process's thread count.
const SAMPLE_EVERY: Duration = Duration::from_millis(1);
/// How long an iteration may take before the bench says it is stuck.
const STUCK_AFTER: Duration = Duration::from_secs(60);

/// A queue's counter, on a cache line of its own (two pool threads run neighbouring queues).
#[repr(align(64))]
struct QueueCounter(AtomicU64);

/// Counts the queues that have run all their actions of an iteration; wakes the timing
/// thread when none is left.
struct Countdown {
    left: AtomicUsize,
    done: Mutex<bool>,
    ready: Condvar,
}

impl Countdown {
    fn arm(&self, queues: usize) {
        *self.done.lock().unwrap() = false;
        self.left.store(queues, Ordering::Relaxed);
    }

    fn tick(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.done.lock().unwrap() = true;
            self.ready.notify_one();
        }
    }

    /// Whether every queue finished within `timeout`.
    fn wait(&self, timeout: Duration) -> bool {
        let done = self.done.lock().unwrap();
        *self
            .ready
            .wait_timeout_while(done, timeout, |done| !*done)
            .unwrap()
            .0
    }
}

/// What the actions of one bench of `queue/many_queues` count with (leaked: actions must be
/// `'static`).
struct ManyState {
    counters: &'static [QueueCounter],
    countdown: &'static Countdown,
}

impl ManyState {
    fn new() -> Self {
        let counters: Vec<QueueCounter> = (0..QUEUES)
            .map(|_| QueueCounter(AtomicU64::new(0)))
            .collect();
        ManyState {
            counters: Box::leak(counters.into_boxed_slice()),
            countdown: Box::leak(Box::new(Countdown {
                left: AtomicUsize::new(0),
                done: Mutex::new(false),
                ready: Condvar::new(),
            })),
        }
    }
}

/// One producer's share of an iteration: `ROUNDS` actions to every queue, round-robin. Each
/// action bumps its queue's counter; the one that completes the queue's iteration (its
/// `PER_QUEUE`-th) ticks the countdown.
fn produce<W: Worker>(queues: &[W], state: &ManyState) {
    let countdown = state.countdown;
    for _ in 0..ROUNDS {
        for (queue, counter) in queues.iter().zip(state.counters) {
            queue.put(move || {
                if counter.0.fetch_add(1, Ordering::Relaxed) % PER_QUEUE == PER_QUEUE - 1 {
                    countdown.tick();
                }
            });
        }
    }
}

/// The peak thread count of every `queue/many_queues` bench that ran, less its baseline.
static PEAKS: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

/// Benches `queue/many_queues` on `queues`; `baseline` is the process's thread count before
/// the implementation was built. The producers and the sampler live as long as the bench
/// (not one `iter_custom` call), so that no harness thread starts or exits while the
/// sampler counts.
fn many_queues_bench<W: Worker>(group: &mut Group<'_>, name: &str, queues: &[W], baseline: usize) {
    let id = format!("{GROUP_MANY}/{name}");
    let state = ManyState::new();
    let barrier = Barrier::new(PRODUCERS + 1);
    let stop = AtomicBool::new(false);
    let sampling = AtomicBool::new(true);
    let peak = AtomicUsize::new(0);
    thread::scope(|s| {
        s.spawn(|| {
            while sampling.load(Ordering::Relaxed) {
                if let Some(threads) = process_threads() {
                    peak.fetch_max(threads, Ordering::Relaxed);
                }
                thread::sleep(SAMPLE_EVERY);
            }
        });
        for _ in 0..PRODUCERS {
            s.spawn(|| loop {
                barrier.wait();
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                produce(queues, &state);
            });
        }
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    state.countdown.arm(QUEUES);
                    let start = Instant::now();
                    barrier.wait();
                    if !state.countdown.wait(STUCK_AFTER) {
                        let left = state.countdown.left.load(Ordering::Relaxed);
                        panic!(
                            "{id}: stuck: {left} of {QUEUES} queues had not run all their \
                             actions after {STUCK_AFTER:?} ({} errors logged so far)",
                            LOGGER.errors.load(Ordering::Relaxed)
                        );
                    }
                    total += start.elapsed();
                }
                total
            })
        });
        stop.store(true, Ordering::Relaxed);
        barrier.wait();
        sampling.store(false, Ordering::Relaxed);
    });
    let runs = state.counters[0].0.load(Ordering::Relaxed) / PER_QUEUE;
    for (i, counter) in state.counters.iter().enumerate() {
        assert_eq!(
            counter.0.load(Ordering::Relaxed),
            runs * PER_QUEUE,
            "{id}: queue {i}"
        );
    }
    if runs > 0 {
        let added = peak
            .load(Ordering::Relaxed)
            .saturating_sub(baseline + HARNESS_THREADS);
        PEAKS.lock().unwrap().insert(id, added);
    }
}

/// Waits (up to 10 s) until the threads of the previous bench are gone, so that the next
/// bench's baseline is not inflated by them; returns the process's thread count.
fn settled_threads(idle: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = process_threads().unwrap_or(0);
        if now <= idle || Instant::now() >= deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Counts the library's error reports (a worker thread that could not be spawned, say) and
/// prints the first few, so that a failure at this scale is seen rather than hidden.
struct CountingLogger {
    errors: AtomicU64,
}

static LOGGER: CountingLogger = CountingLogger {
    errors: AtomicU64::new(0),
};

impl log::Log for CountingLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let n = self.errors.fetch_add(1, Ordering::Relaxed);
            if n < 5 {
                eprintln!("[{}] {}", record.level(), record.args());
            }
        }
    }

    fn flush(&self) {}
}

/// The name of the many-queues group.
const GROUP_MANY: &str = "queue/many_queues";

fn many_queues(c: &mut Criterion) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
    let idle = process_threads().unwrap_or(0);
    let mut group = c.benchmark_group(GROUP_MANY);
    group
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(common::WARM_UP)
        .measurement_time(common::MEASURE)
        .sample_size(common::SAMPLES)
        .throughput(Throughput::Elements(MANY_ACTIONS));
    let mut notes = BTreeMap::new();
    {
        let baseline = settled_threads(idle);
        let pool = WorkerPool::builder().max_threads(2).build();
        let queues: Vec<ActionQueue> = (0..QUEUES)
            .map(|_| ActionQueue::builder().pool(&pool).build())
            .collect();
        many_queues_bench(&mut group, "orderslip_pool_2", &queues, baseline);
        notes.insert(
            "orderslip_pool_2",
            format!("pool.peak_threads() = {}", pool.peak_threads()),
        );
    }
    {
        let baseline = settled_threads(idle);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let queues: Vec<TokioActor> = (0..QUEUES).map(|_| TokioActor::spawn(&runtime)).collect();
        many_queues_bench(&mut group, "tokio_actors_2", &queues, baseline);
        drop(queues);
        drop(runtime);
    }
    {
        let baseline = settled_threads(idle);
        let pool = NaivePool::new(2);
        let queues: Vec<NaiveQueue> = (0..QUEUES).map(|_| pool.queue()).collect();
        many_queues_bench(&mut group, "naive_executor_2", &queues, baseline);
        drop(queues);
    }
    {
        // One thread per busy queue: slow, so the fewest samples criterion takes.
        group.sample_size(10);
        let baseline = settled_threads(idle);
        let before = LOGGER.errors.load(Ordering::Relaxed);
        let queues: Vec<ActionQueue> = (0..QUEUES).map(|_| ActionQueue::new()).collect();
        many_queues_bench(&mut group, "orderslip_dedicated", &queues, baseline);
        let failed = LOGGER.errors.load(Ordering::Relaxed) - before;
        notes.insert(
            "orderslip_dedicated",
            format!("10 samples; {failed} spawn failures (or other errors) logged"),
        );
    }
    group.finish();
    let peaks = PEAKS.lock().unwrap();
    if peaks.is_empty() {
        return;
    }
    println!(
        "\n{GROUP_MANY}: peak threads each implementation added (the process's `Threads:`, sampled \
         every {SAMPLE_EVERY:?} over all iterations, warm-up included, less the count before it \
         was built and the bench's {HARNESS_THREADS} own threads)"
    );
    for (id, added) in peaks.iter() {
        let name = id.trim_start_matches(GROUP_MANY).trim_start_matches('/');
        let note = notes.get(name).map_or("", String::as_str);
        println!("{name:<40} {added:>6}   {note}");
    }
}

criterion_group!(
    benches,
    throughput_1p_group,
    throughput_2p_group,
    burst_latency,
    keep_alive_sweep,
    many_queues
);
criterion_main!(benches);
