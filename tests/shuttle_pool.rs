//! Randomized-schedule tests of the [`WorkerPool`] under [shuttle](https://docs.rs/shuttle)'s
//! PCT scheduler, at sizes loom cannot explore (loom allows at most 5 threads and explores
//! exhaustively; these run dozens of queues, producers and pool threads). The library is
//! built against shuttle's primitives (`src/sync/shuttle.rs`), so shuttle controls every
//! interleaving of the pool's own atomics, locks and parks as well as the test's.
//!
//! Run them (release: shuttle executes every step through its scheduler) with
//!
//! ```text
//! RUSTFLAGS="--cfg shuttle" CARGO_TARGET_DIR=target/shuttle \
//!     cargo test --release --test shuttle_pool -- --nocapture
//! ```
//!
//! (see `.ci/shuttle.sh`). Each test explores a fixed list of seeds ([`RUNS`]), so a run is
//! reproducible; a failure prints the test, the seed and shuttle's schedule string. To replay
//! one schedule, set `ORDERSLIP_SHUTTLE_REPLAY` to that string and run only the failing test;
//! to explore one other seed, set `SHUTTLE_RANDOM_SEED` (shuttle's own override).
//!
//! Shuttle runs every atomic access as `SeqCst`, so these tests find interleaving bugs, not
//! weak-memory ones (the loom models in `loom-tests/` cover those, on small cases). The clock
//! is frozen and a timed park yields once and reports a timeout (see `src/sync/mod.rs`): a
//! pool thread's keep-alive always runs out at its first park, unless a notifier claims the
//! slot first, and a batch ends by its action count only.

#![cfg(shuttle)]

use orderslip::{ActionQueue, WorkerPool};
use shuttle::scheduler::{PctScheduler, ReplayScheduler};
use shuttle::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use shuttle::sync::{mpsc, Mutex};
use shuttle::{thread, Config, Runner};
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The PCT runs every test makes, each `(seed, depth)`: a scheduler seeded with `seed` that
/// inserts `depth - 1` priority changes (preemptions) per schedule. Fixed, so that a run is
/// reproducible (PCT's schedules are a function of the seed); the depths differ so that both
/// schedules with a preemption or two and more shuffled ones are tried.
const RUNS: [(u64, usize); 4] = [
    (0x0005_eed1, 2),
    (0x00c0_ffee, 3),
    (0x0bad_cafe, 3),
    (0x0000_2024, 6),
];

/// The shuttle configuration of every run.
fn config() -> Config {
    let mut config = Config::new();
    // Shuttle warns once that it runs weaker orderings as SeqCst: said in the module docs.
    config.silence_warnings = true;
    config
}

/// Runs `test` under PCT, `schedules` schedules for each of [`RUNS`]; prints what it explored
/// and how long it took, and on a failure the test and the seed (shuttle prints the schedule
/// itself) before the failure goes on.
fn explore(name: &str, schedules: usize, test: fn()) {
    if let Ok(schedule) = std::env::var("ORDERSLIP_SHUTTLE_REPLAY") {
        eprintln!("shuttle: {name}: replaying the schedule of ORDERSLIP_SHUTTLE_REPLAY");
        Runner::new(ReplayScheduler::new_from_encoded(&schedule), config()).run(test);
        return;
    }
    let start = Instant::now();
    let mut total = 0;
    for (seed, depth) in RUNS {
        let run_start = Instant::now();
        let runner = Runner::new(
            PctScheduler::new_from_seed(seed, depth, schedules),
            config(),
        );
        match panic::catch_unwind(AssertUnwindSafe(|| runner.run(test))) {
            Ok(ran) => total += ran,
            Err(payload) => {
                eprintln!(
                    "shuttle: {name} FAILED with seed {seed:#x}, PCT depth {depth}, {schedules} \
                     schedules (SHUTTLE_RANDOM_SEED overrides the seed): the failing schedule \
                     is printed above"
                );
                panic::resume_unwind(payload);
            }
        }
        eprintln!(
            "shuttle: {name}: seed {seed:#x}, depth {depth}: {schedules} schedules in {:.1} s",
            run_start.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "shuttle: {name}: {total} schedules in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

/// The most seen over all the schedules of a test (std atomics: they outlive the executions
/// and order nothing), to show what the schedules reached.
struct Reached {
    running: StdAtomicUsize,
    live: StdAtomicUsize,
}

impl Reached {
    const fn new() -> Self {
        Reached {
            running: StdAtomicUsize::new(0),
            live: StdAtomicUsize::new(0),
        }
    }

    fn print(&self, name: &str, max_threads: usize) {
        let live = self.live.load(Relaxed);
        eprintln!(
            "shuttle: {name}: reached {} actions running at once and {live} pool threads alive \
             at once{} on a pool of {max_threads}",
            self.running.load(Relaxed),
            if live > max_threads {
                " (retiring ones finishing beside their slots' next threads)"
            } else {
                ""
            }
        );
    }
}

/// Counts, from inside the actions, the actions running at once and the pool threads alive.
///
/// - Actions running at once: counted in and out around each action's body. Each runs on a
///   thread that holds one of the pool's slots, so this never exceeds `max_threads`.
/// - Pool threads alive: a thread counts itself in at the first action it runs and out when
///   it ends (a thread-local guard, dropped by shuttle with the thread's thread-locals), so
///   threads that linger between actions count too. A thread that retires frees its slot
///   with its retiring CAS and then still runs its exit path, during which the slot's next
///   thread may already run: so at most one retiring thread per slot beside the slot
///   holders, `2 * max_threads` in all. (The pool's own count, `peak_threads`, counts a
///   retiring thread out before its CAS, and must never exceed `max_threads`.)
struct LiveThreads {
    live: AtomicUsize,
    most: AtomicUsize,
    running: AtomicUsize,
    most_running: AtomicUsize,
}

/// A pool thread's registration in [`LiveThreads`], dropped with its thread-locals.
struct LiveGuard(Arc<LiveThreads>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, SeqCst);
    }
}

shuttle::thread_local! {
    static REGISTERED: RefCell<Option<LiveGuard>> = RefCell::new(None);
}

impl LiveThreads {
    fn new() -> Arc<Self> {
        Arc::new(LiveThreads {
            live: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
        })
    }

    /// Runs an action's `body`: counts the calling thread in (once per thread) and the action
    /// in and out.
    fn action(self: &Arc<Self>, body: impl FnOnce()) {
        REGISTERED.with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.is_none() {
                let now = self.live.fetch_add(1, SeqCst) + 1;
                self.most.fetch_max(now, SeqCst);
                *slot = Some(LiveGuard(Arc::clone(self)));
            }
        });
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most_running.fetch_max(now, SeqCst);
        body();
        self.running.fetch_sub(1, SeqCst);
    }

    /// Checks both counts against the pool's bound, and adds them to `reached`.
    fn check(&self, max_threads: usize, reached: &Reached) {
        let running = self.most_running.load(SeqCst);
        reached.running.fetch_max(running, Relaxed);
        assert!(
            (1..=max_threads).contains(&running),
            "{running} actions ran at once on a pool of {max_threads}"
        );
        let most = self.most.load(SeqCst);
        reached.live.fetch_max(most, Relaxed);
        assert!(
            most <= 2 * max_threads,
            "{most} pool threads were alive at once on a pool of {max_threads}"
        );
    }
}

/// Per-queue checks from inside the actions: no two actions of one queue overlap, and what
/// ran, in which order.
struct QueueProbe {
    in_flight: AtomicBool,
    overlaps: AtomicUsize,
    log: Mutex<Vec<(usize, usize)>>,
}

impl QueueProbe {
    fn new() -> Self {
        QueueProbe {
            in_flight: AtomicBool::new(false),
            overlaps: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        }
    }

    /// The body of an action: raises the queue's in-flight flag (counting an overlap if it
    /// was up), logs `(producer, seq)`, lowers the flag. Every step is a shuttle scheduling
    /// point, so a second thread running the same queue would get in between.
    fn run(&self, producer: usize, seq: usize) {
        if self.in_flight.swap(true, SeqCst) {
            self.overlaps.fetch_add(1, SeqCst);
        }
        self.log.lock().unwrap().push((producer, seq));
        self.in_flight.store(false, SeqCst);
    }

    /// Checks that the log holds each of `producers` × `per_producer` entries exactly once
    /// and each producer's in order, and that no actions overlapped.
    fn check(&self, queue: usize, producers: usize, per_producer: usize) {
        assert_eq!(
            self.overlaps.load(SeqCst),
            0,
            "queue {queue}: two of its actions ran at once"
        );
        let log = self.log.lock().unwrap();
        assert_eq!(
            log.len(),
            producers * per_producer,
            "queue {queue}: ran {log:?}"
        );
        for producer in 0..producers {
            let seqs: Vec<usize> = log
                .iter()
                .filter(|(p, _)| *p == producer)
                .map(|(_, s)| *s)
                .collect();
            assert_eq!(
                seqs,
                (0..per_producer).collect::<Vec<_>>(),
                "queue {queue}: producer {producer}'s actions ran out of order or not once each"
            );
        }
    }
}

/// (a) Many queues, few threads: 24 queues on a pool of at most 3 threads, 3 producer threads
/// each putting 2 actions to every queue (144 actions). Every action runs exactly once, each
/// producer's actions on a queue run in order, no two actions of a queue overlap, and the pool
/// never runs more than 3 actions at once nor counts more than 3 threads alive.
///
/// With the default keep-alive, an idle thread's timed park times out at once (see the module
/// docs), so threads retire and restart all along, racing the notifiers' claims. With an
/// endless keep-alive (`Duration::MAX`: an untimed park) they never retire until the pool
/// closes, so every wake-up counts: a notifier's missed unpark would leave work with a
/// sleeping thread forever, which shuttle reports as a deadlock.
fn many_queues_few_threads(keep_alive: Duration, reached: &Reached) {
    const QUEUES: usize = 24;
    const PRODUCERS: usize = 3;
    const PER_PRODUCER: usize = 2;
    const MAX_THREADS: usize = 3;

    let pool = WorkerPool::builder()
        .max_threads(MAX_THREADS)
        .keep_alive(keep_alive)
        .build();
    let queues: Vec<ActionQueue> = (0..QUEUES)
        .map(|_| ActionQueue::builder().pool(&pool).build())
        .collect();
    let probes: Arc<Vec<QueueProbe>> = Arc::new((0..QUEUES).map(|_| QueueProbe::new()).collect());
    let live = LiveThreads::new();

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let queues = queues.clone();
            let probes = Arc::clone(&probes);
            let live = Arc::clone(&live);
            thread::spawn(move || {
                for seq in 0..PER_PRODUCER {
                    for (index, queue) in queues.iter().enumerate() {
                        let probes = Arc::clone(&probes);
                        let live = Arc::clone(&live);
                        queue.put(move || live.action(|| probes[index].run(producer, seq)));
                    }
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    for queue in queues {
        assert!(queue.join(Duration::MAX), "join(MAX) returned false");
    }
    for (index, probe) in probes.iter().enumerate() {
        probe.check(index, PRODUCERS, PER_PRODUCER);
    }
    live.check(MAX_THREADS, reached);
    let peak = pool.peak_threads();
    assert!(peak <= MAX_THREADS, "peak_threads {peak}: {pool:?}");
}

#[test]
fn pool_many_queues_few_threads() {
    static REACHED: Reached = Reached::new();
    explore("many_queues_few_threads", 2_500, || {
        many_queues_few_threads(WorkerPool::DEFAULT_KEEP_ALIVE, &REACHED);
    });
    REACHED.print("many_queues_few_threads", 3);
}

#[test]
fn pool_many_queues_few_lingering_threads() {
    static REACHED: Reached = Reached::new();
    explore("many_queues_few_lingering_threads", 1_000, || {
        many_queues_few_threads(Duration::MAX, &REACHED);
    });
    REACHED.print("many_queues_few_lingering_threads", 3);
}

/// (b) Retire and respawn: with a zero keep-alive a pool thread retires as soon as the run
/// queue is empty, so between the waves (each: the main thread and a helper thread putting
/// to 6 queues, then `wait_idle` on every queue) the pool may drop to no thread and start
/// again; the last wave ends with `join`. Everything runs, in order, at most 2 at once.
fn retire_and_respawn() {
    const QUEUES: usize = 6;
    const WAVES: usize = 3;
    const MAX_THREADS: usize = 2;

    let pool = WorkerPool::builder()
        .max_threads(MAX_THREADS)
        .keep_alive(Duration::ZERO)
        .build();
    let queues: Vec<ActionQueue> = (0..QUEUES)
        .map(|_| ActionQueue::builder().pool(&pool).build())
        .collect();
    let probes: Arc<Vec<QueueProbe>> = Arc::new((0..QUEUES).map(|_| QueueProbe::new()).collect());
    let live = LiveThreads::new();
    let put_wave = {
        let probes = Arc::clone(&probes);
        let live = Arc::clone(&live);
        move |queues: &[ActionQueue], producer: usize, wave: usize| {
            for (index, queue) in queues.iter().enumerate() {
                let probes = Arc::clone(&probes);
                let live = Arc::clone(&live);
                queue.put(move || live.action(|| probes[index].run(producer, wave)));
            }
        }
    };
    let put_wave = Arc::new(put_wave);

    for wave in 0..WAVES {
        let helper = {
            let queues = queues.clone();
            let put_wave = Arc::clone(&put_wave);
            thread::spawn(move || put_wave(&queues, 1, wave))
        };
        put_wave(&queues, 0, wave);
        helper.join().unwrap();
        if wave + 1 < WAVES {
            for (index, queue) in queues.iter().enumerate() {
                assert!(
                    queue.wait_idle(Duration::MAX),
                    "wave {wave}: queue {index} never idle"
                );
                assert_eq!(
                    probes[index].log.lock().unwrap().len(),
                    2 * (wave + 1),
                    "wave {wave}: queue {index} idle with actions not run"
                );
            }
        }
    }
    for queue in queues {
        assert!(queue.join(Duration::MAX), "join(MAX) returned false");
    }
    for (index, probe) in probes.iter().enumerate() {
        probe.check(index, 2, WAVES);
    }
    live.check(MAX_THREADS, &RETIRE_REACHED);
    let peak = pool.peak_threads();
    assert!(peak <= MAX_THREADS, "peak_threads {peak}: {pool:?}");
}

static RETIRE_REACHED: Reached = Reached::new();

#[test]
fn pool_retire_and_respawn() {
    explore("retire_and_respawn", 2_500, retire_and_respawn);
    RETIRE_REACHED.print("retire_and_respawn", 2);
}

/// (c) Batch yield: on a single pool thread, a queue with 200 actions (more than a batch's
/// 128) and two other queues with 3 each. The long queue's first action holds the thread
/// until every action is queued, so the other two are waiting in the run queue when its first
/// batch ends: the order is exactly the long queue's first 128 actions, the other two queues'
/// actions, then the long queue's last 72. (The clock is frozen, so a batch ends on its
/// action count only.)
fn batch_yield() {
    const LONG: usize = 200;
    const BATCH: usize = 128;
    const SHORT: usize = 3;

    let pool = WorkerPool::builder().max_threads(1).build();
    let long = ActionQueue::builder().pool(&pool).build();
    let short: Vec<ActionQueue> = (0..2)
        .map(|_| ActionQueue::builder().pool(&pool).build())
        .collect();
    let log: Arc<Mutex<Vec<(usize, usize)>>> = Arc::new(Mutex::new(Vec::new()));
    let (open, gate) = mpsc::channel::<()>();

    {
        let log = Arc::clone(&log);
        long.put(move || {
            gate.recv().unwrap();
            log.lock().unwrap().push((0, 0));
        });
    }
    for seq in 1..LONG {
        let log = Arc::clone(&log);
        long.put(move || log.lock().unwrap().push((0, seq)));
    }
    for (index, queue) in short.iter().enumerate() {
        for seq in 0..SHORT {
            let log = Arc::clone(&log);
            queue.put(move || log.lock().unwrap().push((index + 1, seq)));
        }
    }
    open.send(()).unwrap();
    assert!(long.join(Duration::MAX));
    for queue in short {
        assert!(queue.join(Duration::MAX));
    }

    let log = log.lock().unwrap();
    let expected: Vec<(usize, usize)> = (0..BATCH)
        .map(|seq| (0, seq))
        .chain((0..SHORT).map(|seq| (1, seq)))
        .chain((0..SHORT).map(|seq| (2, seq)))
        .chain((BATCH..LONG).map(|seq| (0, seq)))
        .collect();
    assert_eq!(*log, expected);
    assert_eq!(pool.peak_threads(), 1);
}

#[test]
fn pool_batch_yield() {
    explore("batch_yield", 500, batch_yield);
}

/// (c') Batch yield without the gate: the long queue (150 actions, put by the main thread)
/// and two short ones (4 each, put by another thread) race freely on one pool thread; every
/// queue's actions all run, in order, one at a time.
fn batch_yield_racing() {
    const LONG: usize = 150;
    const SHORT: usize = 4;

    let pool = WorkerPool::builder().max_threads(1).build();
    let long = ActionQueue::builder().pool(&pool).build();
    let short: Vec<ActionQueue> = (0..2)
        .map(|_| ActionQueue::builder().pool(&pool).build())
        .collect();
    let probes: Arc<Vec<QueueProbe>> = Arc::new((0..3).map(|_| QueueProbe::new()).collect());

    let putter = {
        let short = short.clone();
        let probes = Arc::clone(&probes);
        thread::spawn(move || {
            for seq in 0..SHORT {
                for (index, queue) in short.iter().enumerate() {
                    let probes = Arc::clone(&probes);
                    queue.put(move || probes[index + 1].run(0, seq));
                }
            }
        })
    };
    for seq in 0..LONG {
        let probes = Arc::clone(&probes);
        long.put(move || probes[0].run(0, seq));
    }
    putter.join().unwrap();
    assert!(long.join(Duration::MAX));
    for queue in short {
        assert!(queue.join(Duration::MAX));
    }
    probes[0].check(0, 1, LONG);
    probes[1].check(1, 1, SHORT);
    probes[2].check(2, 1, SHORT);
}

#[test]
fn pool_batch_yield_racing() {
    explore("batch_yield_racing", 1_000, batch_yield_racing);
}

/// (d) Drop semantics: two producers put to 8 queues on a pool of 2 threads and drop their
/// handles (queues and pool) as soon as they are done, while the main thread drops its queue
/// handles without waiting and hands its pool handle to an action of queue 0, which drops it
/// on a pool thread (so the pool may be closed from inside itself). All the work runs (each
/// action reports to a channel the main thread reads to the end), in order, and every pool
/// thread then exits: shuttle fails an execution whose threads do not all finish (a pool
/// thread parked for good is a deadlock to it).
///
/// With an endless keep-alive (an untimed park) a thread exits only if the closing pool
/// wakes it; with the default one its park times out at once (see the module docs).
fn drop_with_work_pending(keep_alive: Duration) {
    const QUEUES: usize = 8;
    const PRODUCERS: usize = 2;
    const PER_PRODUCER: usize = 3;

    let pool = WorkerPool::builder()
        .max_threads(2)
        .keep_alive(keep_alive)
        .build();
    let queues: Vec<ActionQueue> = (0..QUEUES)
        .map(|_| ActionQueue::builder().pool(&pool).build())
        .collect();
    let (report, reports) = mpsc::channel::<(usize, usize, usize)>();

    for producer in 0..PRODUCERS {
        let queues = queues.clone();
        let pool = pool.clone();
        let report = report.clone();
        // Not joined: it must end all the same.
        thread::spawn(move || {
            for seq in 0..PER_PRODUCER {
                for (index, queue) in queues.iter().enumerate() {
                    let report = report.clone();
                    queue.put(move || report.send((index, producer, seq)).unwrap());
                }
            }
            drop(queues);
            drop(pool);
        });
    }
    drop(report);
    queues[0].put(move || drop(pool));
    drop(queues);

    // Every action reports once; the channel closes when the last action (and producer) is
    // gone, so reading to the end also checks that no action is left holding a sender.
    let mut seen = vec![vec![Vec::new(); PRODUCERS]; QUEUES];
    for (index, producer, seq) in reports.iter() {
        seen[index][producer].push(seq);
    }
    for (index, by_producer) in seen.iter().enumerate() {
        for (producer, seqs) in by_producer.iter().enumerate() {
            assert_eq!(
                *seqs,
                (0..PER_PRODUCER).collect::<Vec<_>>(),
                "queue {index}, producer {producer}"
            );
        }
    }
}

#[test]
fn pool_drop_with_work_pending() {
    explore("drop_with_work_pending", 3_000, || {
        drop_with_work_pending(WorkerPool::DEFAULT_KEEP_ALIVE);
    });
}

#[test]
fn pool_drop_with_work_pending_lingering() {
    explore("drop_with_work_pending_lingering", 3_000, || {
        drop_with_work_pending(Duration::MAX);
    });
}

/// The harness itself: a thread that never ends fails the execution, which is what (d)
/// relies on to check that every pool thread exits.
#[test]
#[should_panic(expected = "deadlock")]
fn harness_reports_a_thread_that_never_ends() {
    Runner::new(PctScheduler::new_from_seed(RUNS[0].0, 3, 10), config()).run(|| {
        thread::spawn(thread::park);
    });
}

/// The smallest case of the peak-count overlap that (b) found: a pool of one thread with a
/// zero keep-alive, one queue, two puts with a `wait_idle` between them. The first thread
/// retires (its retiring CAS frees the slot) and, while it is still on its way out, the second
/// put starts the slot's next thread: the pool must not count both as alive
/// (`peak_threads() <= max_threads()`, as its docs promise).
fn peak_threads_with_a_retiring_thread() {
    let pool = WorkerPool::builder()
        .max_threads(1)
        .keep_alive(Duration::ZERO)
        .build();
    let queue = ActionQueue::builder().pool(&pool).build();
    queue.put(|| ());
    assert!(queue.wait_idle(Duration::MAX));
    queue.put(|| ());
    assert!(queue.join(Duration::MAX));
    assert!(pool.peak_threads() <= 1, "peak {}", pool.peak_threads());
}

#[test]
fn pool_peak_threads_with_a_retiring_thread() {
    explore(
        "peak_threads_with_a_retiring_thread",
        2_500,
        peak_threads_with_a_retiring_thread,
    );
}
