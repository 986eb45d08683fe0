//! ActionQueue benchmarks: orderslip's `ActionQueue` beside persistent single-worker queues
//! on std (`Mutex<VecDeque>` + `Condvar`), `crossbeam-channel` and `std::sync::mpsc` (all in
//! `benches/common`), and a thread per action, each group doing identical work with every
//! peer in one process.
//!
//! Run everything: `cargo bench --bench queue`. Run one group:
//!
//! ```sh
//! cargo bench --bench queue -- queue/throughput_1p
//! cargo bench --bench queue -- queue/throughput_2p
//! cargo bench --bench queue -- queue/burst_latency
//! cargo bench --bench queue -- queue/keep_alive_sweep
//! ```
//!
//! Groups:
//! - `queue/throughput_1p`, `queue/throughput_2p`: one iteration puts `N` cheap actions
//!   (each bumps a counter) from 1 or 2 producers, then waits until all have run (each
//!   producer puts a marker action last and waits for it). Reported per action
//!   (`Throughput::Elements`). The 2-producer variant keeps a second producer thread per
//!   sample and starts it with a `Barrier` each iteration. Thread-per-action spawns
//!   `N_SPAWN` threads per iteration (and joins them) instead.
//! - `queue/burst_latency`: one iteration sleeps an idle gap longer than any spin phase
//!   (2 ms), puts one action and measures the time from just before `put` to the first
//!   instruction of the action. orderslip runs with keep-alive zero (the seed: every burst
//!   starts a thread) and with `ActionQueue::DEFAULT_KEEP_ALIVE`.
//! - `queue/keep_alive_sweep`: the same burst latency for keep-alives 0, 100 µs, 1 ms,
//!   10 ms and 100 ms after idle gaps of 5 ms and 20 ms.
//!
//! After each latency group the bench prints, for every bench, the percentiles of all the
//! bursts it timed (warm-up included) and the share of bursts that found no worker thread.

use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};
use orderslip::ActionQueue;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::{CrossbeamWorker, MpscWorker, StdWorker, Worker};

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

criterion_group!(
    benches,
    throughput_1p_group,
    throughput_2p_group,
    burst_latency,
    keep_alive_sweep
);
criterion_main!(benches);
