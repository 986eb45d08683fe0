//! Model-based randomized tests: random sequences of operations on one `Promise` or one
//! `ActionQueue`, run from several threads at once, checked against a small sequential model
//! of what every run must show, whatever the interleaving.
//!
//! Each case is generated from a 64-bit seed by a SplitMix64 generator (no dependencies).
//! The seeds are fixed, so a run is repeatable up to thread scheduling; a failing case prints
//! its seed, and
//!
//! ```text
//! ORDERSLIP_MODEL_SEED=0x1234abcd cargo test --test model_based <test name>
//! ```
//!
//! runs only that case (with its operation scripts printed). `ORDERSLIP_MODEL_CASES=N` changes
//! the number of cases (defaults below: a few seconds in debug), `ORDERSLIP_MODEL_BASE=S`
//! changes the seed of the sequence.
//!
//! What the models assert is only what the crate guarantees under *every* interleaving:
//!
//! **Promise.** The first set wins: exactly one `set_*` succeeds when any was attempted, and
//! every refused set hands its own value back. Every wait gives the winning value, or an
//! error that is legal at that point: `Timeout` only for a finite timeout and only if the
//! waiting thread could not already know the promise was set (its own set succeeded before,
//! or it saw the "set has returned" flag before the wait started); `Deadlock` only on the
//! designated setter thread, from a blocking wait; `Abandoned` only when the other handles
//! can all be gone (never while the main thread still holds its handle), and never if
//! another thread's set succeeded. Every callback runs exactly once with the winner (at once
//! if registered after the set was known) or, if nothing was set, never runs and is dropped.
//! A mapped promise agrees with the winner. Every value is dropped exactly once.
//!
//! **Queue.** Every action (put or submitted, from any producer, nested or not) runs exactly
//! once, each producer's in the order it queued them; a submitted action's promise gives its
//! value or `ActionPanicked`; once a submit's promise is done or `wait_idle` returns `true`,
//! everything that producer queued before has run; a submit waited for inside an action of
//! the same queue is a `Deadlock` and `wait_idle` there is `false`; the panic handler sees
//! exactly the panicking `put`s; every submitted value is dropped exactly once.
#![cfg(not(loom))]

mod util;

use orderslip::{ActionQueue, Promise, PromiseError};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;
use util::{block_on, quiet_intentional_panics, wait_until, DEADLINE};

// ---- seeds and the generator ----

/// SplitMix64: tiny, fast, and good enough to pick operations.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn range(&mut self, lo: usize, hi_inclusive: usize) -> usize {
        lo + self.below(hi_inclusive - lo + 1)
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

/// The seeds to run: the one in `ORDERSLIP_MODEL_SEED`, or `cases` seeds derived from
/// `ORDERSLIP_MODEL_BASE` (default: the test's own constant).
fn seeds(base: u64, cases: usize) -> (Vec<u64>, bool) {
    if let Some(seed) = env_u64("ORDERSLIP_MODEL_SEED") {
        return (vec![seed], true);
    }
    let cases = env_u64("ORDERSLIP_MODEL_CASES").map_or(cases, |n| n as usize);
    let mut rng = Rng(env_u64("ORDERSLIP_MODEL_BASE").unwrap_or(base));
    ((0..cases).map(|_| rng.next()).collect(), false)
}

/// Prints the seed of the case being run if it fails (on the thread that runs the case).
struct SeedGuard {
    test: &'static str,
    seed: u64,
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "\n*** model_based: {} failed for seed {:#x}; replay it with\n    \
                 ORDERSLIP_MODEL_SEED={:#x} cargo test --test model_based {}\n",
                self.test, self.seed, self.seed, self.test
            );
        }
    }
}

/// Joins a thread, turning its panic into ours (so the seed guard reports it).
fn join<T>(handle: thread::JoinHandle<T>, what: &str) -> T {
    match handle.join() {
        Ok(v) => v,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            panic!("{what} panicked: {msg}");
        }
    }
}

/// Counts the drops of every value a case creates, by id.
struct Ledger(Vec<AtomicU8>);

impl Ledger {
    fn new(ids: usize) -> Arc<Self> {
        Arc::new(Ledger((0..ids).map(|_| AtomicU8::new(0)).collect()))
    }
    fn drops(&self, id: usize) -> u8 {
        self.0[id].load(Ordering::SeqCst)
    }
}

/// A value with an id whose drop is recorded in the ledger. Its clones (a mapped promise
/// passes an error on cloned) carry the id but are not counted.
struct Val {
    id: usize,
    ledger: Option<Arc<Ledger>>,
}

impl Val {
    fn new(id: usize, ledger: &Arc<Ledger>) -> Self {
        Val {
            id,
            ledger: Some(ledger.clone()),
        }
    }
}

impl Clone for Val {
    fn clone(&self) -> Self {
        Val {
            id: self.id,
            ledger: None,
        }
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        if let Some(ledger) = &self.ledger {
            ledger.0[self.id].fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl fmt::Debug for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Val({})", self.id)
    }
}

// ---- the promise model ----

#[derive(Clone, Copy, Debug, PartialEq)]
enum WaitKind {
    Zero,
    Micros(u64),
    Millis(u64),
    /// `wait()`: no time limit.
    Untimed,
    /// `result(Duration::MAX)`: no time limit either.
    Max,
    /// `block_on(wait_async())`: no time limit and no deadlock check.
    Async,
    TryResult,
}

impl WaitKind {
    fn is_finite(self) -> bool {
        matches!(
            self,
            WaitKind::Zero | WaitKind::Micros(_) | WaitKind::Millis(_)
        )
    }
    fn is_blocking_sync(self) -> bool {
        !matches!(self, WaitKind::Async | WaitKind::TryResult)
    }
}

#[derive(Clone, Debug)]
enum POp {
    SetOk,
    SetErr,
    Wait(WaitKind),
    Then {
        panics: bool,
    },
    ThenElse,
    Clone,
    /// Drops one of the thread's handles (by index modulo the count).
    Drop(usize),
    Map,
    Yield,
}

#[derive(Clone, Debug)]
struct PCase {
    /// Whether the main thread keeps its handle and sets the promise at the end (`true`), or
    /// drops its handle at once so the workers may see `Abandoned` (`false`).
    main_sets: bool,
    main_sets_error: bool,
    /// Main yields this many times before its set (lets the workers get ahead).
    main_delay: usize,
    /// Which worker is the designated setter, if any.
    designated: Option<usize>,
    scripts: Vec<Vec<POp>>,
}

const MAX_OPS: usize = 14;

fn gen_promise_case(rng: &mut Rng) -> PCase {
    let main_sets = rng.chance(2, 3);
    let threads = rng.range(2, 4);
    let designated = if rng.chance(1, 2) {
        Some(rng.below(threads))
    } else {
        None
    };
    let scripts = (0..threads)
        .map(|_| {
            (0..rng.range(1, MAX_OPS))
                .map(|_| match rng.below(20) {
                    0 | 1 => POp::SetOk,
                    2 => POp::SetErr,
                    3..=9 => POp::Wait(match rng.below(9) {
                        0 => WaitKind::Zero,
                        1 => WaitKind::Micros(1),
                        2 => WaitKind::Micros(200),
                        3 => WaitKind::Millis(2),
                        4 => WaitKind::TryResult,
                        // Endless waits end only if someone surely sets the promise.
                        5 if main_sets => WaitKind::Untimed,
                        6 if main_sets => WaitKind::Max,
                        7 if main_sets => WaitKind::Async,
                        _ => WaitKind::Micros(50),
                    }),
                    10 | 11 => POp::Then {
                        panics: rng.chance(1, 4),
                    },
                    12 => POp::ThenElse,
                    13 | 14 => POp::Clone,
                    15 => POp::Drop(rng.below(4)),
                    16 => POp::Map,
                    _ => POp::Yield,
                })
                .collect()
        })
        .collect();
    PCase {
        main_sets,
        main_sets_error: rng.chance(1, 3),
        main_delay: rng.below(50),
        designated,
        scripts,
    }
}

/// What a wait observed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Seen {
    Value { id: usize, failed: bool },
    Timeout,
    Deadlock,
    Abandoned,
    Pending, // try_result: None
}

fn seen(r: Result<&Val, PromiseError<&Val>>) -> Seen {
    match r {
        Ok(v) => Seen::Value {
            id: v.id,
            failed: false,
        },
        Err(PromiseError::Failed(e)) => Seen::Value {
            id: e.id,
            failed: true,
        },
        Err(PromiseError::Timeout) => Seen::Timeout,
        Err(PromiseError::Deadlock) => Seen::Deadlock,
        Err(PromiseError::Abandoned) => Seen::Abandoned,
        Err(other) => panic!("unknown error {other:?}"),
    }
}

/// One callback's record: how often it ran, what it saw, and whether its captured token was
/// dropped (run or not).
#[derive(Default)]
struct CbRecord {
    runs: AtomicUsize,
    saw: Mutex<Option<(usize, bool)>>,
    dropped: AtomicUsize,
}

struct CbToken(Arc<CbRecord>);

impl Drop for CbToken {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// What one worker thread observed.
#[derive(Default, Debug)]
struct PLog {
    /// (op index, value id, succeeded)
    sets: Vec<(usize, usize, bool)>,
    /// (op index, kind, what it saw)
    waits: Vec<(usize, WaitKind, Seen)>,
    /// What each mapped promise showed when the thread finished: Some((id, failed)) or None.
    maps: Vec<Option<(usize, bool)>>,
}

/// The shared state of one promise case.
struct PWorld {
    ledger: Arc<Ledger>,
    /// Set (SeqCst) by a thread right after its set succeeded.
    set_returned: AtomicBool,
    callbacks: Mutex<Vec<Arc<CbRecord>>>,
}

fn value_id(thread: usize, op: usize) -> usize {
    // 0 is main's value.
    1 + thread * MAX_OPS + op
}

fn run_promise_worker(me: usize, case: &PCase, world: &PWorld, first: Promise<Val, Val>) -> PLog {
    let mut log = PLog::default();
    let mut handles = vec![first];
    let mut maps: Vec<Promise<usize, Val>> = Vec::new();
    let mut own_set = false;
    let designated = case.designated == Some(me);
    for (i, op) in case.scripts[me].iter().enumerate() {
        let Some(p) = handles.last() else { break };
        let known_set = own_set || world.set_returned.load(Ordering::SeqCst);
        match op {
            POp::SetOk | POp::SetErr => {
                let id = value_id(me, i);
                let v = Val::new(id, &world.ledger);
                let r = if matches!(op, POp::SetOk) {
                    p.set_result(v).map_err(|e| e.into_inner())
                } else {
                    p.set_exception(v).map_err(|e| e.into_inner())
                };
                match r {
                    Ok(()) => {
                        assert!(!known_set, "a set succeeded after one was known to");
                        own_set = true;
                        world.set_returned.store(true, Ordering::SeqCst);
                        log.sets.push((i, id, true));
                    }
                    Err(back) => {
                        assert_eq!(back.id, id, "a refused set hands back its own value");
                        log.sets.push((i, id, false));
                    }
                }
            }
            POp::Wait(kind) => {
                let s = match kind {
                    WaitKind::Zero => seen(p.result(Duration::ZERO)),
                    WaitKind::Micros(n) => seen(p.result(Duration::from_micros(*n))),
                    WaitKind::Millis(n) => seen(p.result(Duration::from_millis(*n))),
                    WaitKind::Untimed => seen(p.wait()),
                    WaitKind::Max => seen(p.result(Duration::MAX)),
                    WaitKind::Async => seen(block_on(p.wait_async())),
                    WaitKind::TryResult => {
                        let done = p.is_done();
                        match p.try_result() {
                            None => {
                                assert!(!done, "is_done, then try_result None");
                                Seen::Pending
                            }
                            Some(r) => seen(r.map_err(PromiseError::Failed)),
                        }
                    }
                };
                if known_set {
                    assert!(
                        matches!(s, Seen::Value { .. }),
                        "op {i} {kind:?}: the set was known before the wait, got {s:?}"
                    );
                }
                match s {
                    Seen::Value { .. } => {}
                    Seen::Pending => assert_eq!(*kind, WaitKind::TryResult),
                    Seen::Timeout => {
                        assert!(kind.is_finite(), "op {i}: Timeout from {kind:?}")
                    }
                    Seen::Deadlock => assert!(
                        designated && kind.is_blocking_sync(),
                        "op {i}: Deadlock from {kind:?} on a thread that is not the setter"
                    ),
                    Seen::Abandoned => assert!(
                        !case.main_sets && *kind != WaitKind::TryResult,
                        "op {i}: Abandoned from {kind:?} while main held a handle"
                    ),
                }
                log.waits.push((i, *kind, s));
            }
            POp::Then { .. } | POp::ThenElse => {
                let record = Arc::new(CbRecord::default());
                world.callbacks.lock().unwrap().push(record.clone());
                if let POp::Then { panics } = *op {
                    let token = CbToken(record.clone());
                    p.then(move |r| {
                        *token.0.saw.lock().unwrap() = Some(match r {
                            Ok(v) => (v.id, false),
                            Err(e) => (e.id, true),
                        });
                        token.0.runs.fetch_add(1, Ordering::SeqCst);
                        if panics {
                            panic!("model: intentional callback panic");
                        }
                    });
                } else {
                    // Two closures, one token each: both are dropped whichever branch runs.
                    let (ok, err) = (CbToken(record.clone()), CbToken(record.clone()));
                    p.then_else(
                        move |v| {
                            *ok.0.saw.lock().unwrap() = Some((v.id, false));
                            ok.0.runs.fetch_add(1, Ordering::SeqCst);
                        },
                        move |e| {
                            *err.0.saw.lock().unwrap() = Some((e.id, true));
                            err.0.runs.fetch_add(1, Ordering::SeqCst);
                        },
                    );
                }
                if known_set {
                    assert_eq!(
                        record.runs.load(Ordering::SeqCst),
                        1,
                        "op {i}: a callback on a promise known to be set runs at once"
                    );
                }
            }
            POp::Clone => {
                let q = p.clone();
                handles.push(q);
            }
            POp::Drop(k) => {
                let k = k % handles.len();
                drop(handles.remove(k));
            }
            POp::Map => maps.push(p.map(|v| v.id)),
            POp::Yield => thread::yield_now(),
        }
    }
    log.maps = maps
        .iter()
        .map(|m| {
            m.try_result().map(|r| match r {
                Ok(id) => (*id, false),
                Err(e) => (e.id, true),
            })
        })
        .collect();
    drop(maps);
    drop(handles);
    log
}

/// How often each outcome was seen over a run (printed, to show what the cases exercised).
#[derive(Default, Debug)]
struct Coverage {
    values: usize,
    timeouts: usize,
    deadlocks: usize,
    abandoned: usize,
    pending: usize,
    refused_sets: usize,
    callbacks_run: usize,
    callbacks_dropped_unrun: usize,
    cases_without_winner: usize,
}

fn run_promise_case(case: &PCase, cov: &mut Coverage) {
    let threads = case.scripts.len();
    let world = Arc::new(PWorld {
        ledger: Ledger::new(1 + threads * MAX_OPS),
        set_returned: AtomicBool::new(false),
        callbacks: Mutex::new(Vec::new()),
    });
    // Start the workers first, so the designated setter's id is known; hand them their
    // handles through channels, then release them together.
    let start = Arc::new(Barrier::new(threads + 1));
    let mut senders = Vec::new();
    let mut workers = Vec::new();
    for me in 0..threads {
        let (tx, rx) = mpsc::channel::<Promise<Val, Val>>();
        senders.push(tx);
        let (case, world, start) = (case.clone(), world.clone(), start.clone());
        workers.push(thread::spawn(move || {
            let first = rx.recv().unwrap();
            start.wait();
            run_promise_worker(me, &case, &world, first)
        }));
    }
    let setter = case.designated.map(|d| workers[d].thread().id());
    let main: Promise<Val, Val> = Promise::with_setter(setter);
    for tx in &senders {
        tx.send(main.clone()).unwrap();
    }
    start.wait();

    let mut main_won = false;
    if case.main_sets {
        for _ in 0..case.main_delay {
            thread::yield_now();
        }
        let v = Val::new(0, &world.ledger);
        let r = if case.main_sets_error {
            main.set_exception(v).map_err(|e| e.into_inner())
        } else {
            main.set_result(v).map_err(|e| e.into_inner())
        };
        match r {
            Ok(()) => {
                main_won = true;
                world.set_returned.store(true, Ordering::SeqCst);
            }
            Err(back) => assert_eq!(back.id, 0),
        }
    }
    // In abandon mode main lets go of its handle now (an explicit drop: a conditionally
    // moved variable would otherwise live to the end of the function).
    let main = if case.main_sets {
        Some(main)
    } else {
        drop(main);
        None
    };

    let logs: Vec<PLog> = workers
        .into_iter()
        .enumerate()
        .map(|(i, w)| join(w, &format!("promise worker {i}")))
        .collect();

    // The winner.
    let mut winners: Vec<(usize, usize, bool)> = Vec::new(); // (thread or usize::MAX, id, failed)
    let mut attempts = usize::from(case.main_sets);
    if main_won {
        winners.push((usize::MAX, 0, case.main_sets_error));
    }
    for (t, log) in logs.iter().enumerate() {
        for &(i, id, ok) in &log.sets {
            attempts += 1;
            if ok {
                let failed = matches!(case.scripts[t][i], POp::SetErr);
                winners.push((t, id, failed));
            }
        }
    }
    assert!(
        winners.len() <= 1,
        "more than one set succeeded: {winners:?}"
    );
    if attempts > 0 {
        assert_eq!(winners.len(), 1, "{attempts} sets were tried and none won");
    }
    let winner = winners.first().map(|&(_, id, failed)| (id, failed));
    cov.cases_without_winner += usize::from(winner.is_none());
    cov.refused_sets += attempts - winners.len();

    // Every observation agrees with the winner.
    for (t, log) in logs.iter().enumerate() {
        for &(i, kind, s) in &log.waits {
            match s {
                Seen::Value { .. } => cov.values += 1,
                Seen::Timeout => cov.timeouts += 1,
                Seen::Deadlock => cov.deadlocks += 1,
                Seen::Abandoned => cov.abandoned += 1,
                Seen::Pending => cov.pending += 1,
            }
            match s {
                Seen::Value { id, failed } => assert_eq!(
                    Some((id, failed)),
                    winner,
                    "thread {t} op {i} {kind:?} saw another value than the winner"
                ),
                Seen::Abandoned => {
                    // Every other handle was gone unset: only this thread can have set it,
                    // and only later.
                    if let Some(&(wt, _, _)) = winners.first() {
                        assert_eq!(wt, t, "thread {t} op {i}: Abandoned, yet another set");
                        let won_at = log.sets.iter().find(|s| s.2).unwrap().0;
                        assert!(won_at > i, "thread {t}: Abandoned after its own set");
                    }
                }
                _ => {}
            }
        }
        for m in log.maps.iter().flatten() {
            assert_eq!(Some(*m), winner, "thread {t}: a mapped promise disagrees");
        }
    }
    if let Some(main) = &main {
        // Sequential end: main's handle is live, so the promise is set (main tried).
        assert_eq!(
            seen(main.result(Duration::ZERO)),
            Seen::Value {
                id: winner.unwrap().0,
                failed: winner.unwrap().1
            }
        );
    }
    drop(main);

    // Callbacks: exactly once with the winner, or never; every one dropped.
    for (n, cb) in world.callbacks.lock().unwrap().iter().enumerate() {
        let runs = cb.runs.load(Ordering::SeqCst);
        cov.callbacks_run += runs;
        cov.callbacks_dropped_unrun += usize::from(runs == 0);
        match winner {
            Some(w) => {
                assert_eq!(runs, 1, "callback {n} ran {runs} times");
                assert_eq!(*cb.saw.lock().unwrap(), Some(w), "callback {n}");
            }
            None => assert_eq!(runs, 0, "callback {n} ran on an unset promise"),
        }
        assert!(
            cb.dropped.load(Ordering::SeqCst) >= 1,
            "callback {n} leaked"
        );
    }

    // Every value created was dropped exactly once (every handle is gone now).
    let mut created = vec![0usize];
    created.retain(|_| case.main_sets);
    for (t, log) in logs.iter().enumerate() {
        created.extend(log.sets.iter().map(|&(i, _, _)| value_id(t, i)));
    }
    for id in 0..world.ledger.0.len() {
        let expected = u8::from(created.contains(&id));
        assert_eq!(world.ledger.drops(id), expected, "value {id} drop count");
    }
}

#[test]
fn promise_operations_from_many_threads_match_the_model() {
    quiet_intentional_panics();
    let cases = if cfg!(miri) { 4 } else { 400 };
    let (seeds, single) = seeds(0x0DE5_11F0_0001, cases);
    let mut cov = Coverage::default();
    let n = seeds.len();
    for seed in seeds {
        let _guard = SeedGuard {
            test: "promise_operations_from_many_threads_match_the_model",
            seed,
        };
        let case = gen_promise_case(&mut Rng(seed));
        if single {
            println!("{case:#?}");
        }
        run_promise_case(&case, &mut cov);
    }
    println!("{n} promise cases: {cov:#?}");
}

// ---- the queue model ----

#[derive(Clone, Copy, Debug)]
enum QWait {
    Zero,
    Micros(u64),
    Deadline,
}

impl QWait {
    fn duration(self) -> Duration {
        match self {
            QWait::Zero => Duration::ZERO,
            QWait::Micros(n) => Duration::from_micros(n),
            QWait::Deadline => DEADLINE,
        }
    }
}

#[derive(Clone, Debug)]
enum QOp {
    Put {
        panics: bool,
    },
    Submit {
        panics: bool,
        keep: bool,
    },
    /// Waits for the oldest kept promise.
    WaitOldest(QWait),
    WaitIdle(QWait),
    /// An action that puts a child action into its own queue, waits (inside the queue) for a
    /// submit to its own queue (Deadlock) and calls `wait_idle` there (false).
    Nested,
    IsRunning,
    Yield,
}

#[derive(Clone, Debug)]
struct QCase {
    keep_alive: Duration,
    /// Drop the queue right after the producers finish, instead of `wait_idle` first.
    drop_early: bool,
    scripts: Vec<Vec<QOp>>,
}

fn gen_queue_case(rng: &mut Rng) -> QCase {
    let keep_alive = match rng.below(4) {
        0 => Duration::ZERO,
        1 => Duration::from_micros(20),
        2 => Duration::from_millis(1),
        _ => ActionQueue::DEFAULT_KEEP_ALIVE,
    };
    let producers = rng.range(1, 4);
    let scripts = (0..producers)
        .map(|_| {
            (0..rng.range(1, 40))
                .map(|_| match rng.below(20) {
                    0..=7 => QOp::Put {
                        panics: rng.chance(1, 8),
                    },
                    8..=11 => QOp::Submit {
                        panics: rng.chance(1, 8),
                        keep: rng.chance(2, 3),
                    },
                    12 | 13 => QOp::WaitOldest(match rng.below(3) {
                        0 => QWait::Zero,
                        1 => QWait::Micros(100),
                        _ => QWait::Deadline,
                    }),
                    14 => QOp::WaitIdle(match rng.below(3) {
                        0 => QWait::Zero,
                        1 => QWait::Micros(100),
                        _ => QWait::Deadline,
                    }),
                    15 => QOp::Nested,
                    16 => QOp::IsRunning,
                    _ => QOp::Yield,
                })
                .collect()
        })
        .collect();
    QCase {
        keep_alive,
        drop_early: rng.chance(1, 3),
        scripts,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Event {
    /// Producer p's action number seq ran.
    Ran(usize, usize),
    /// The child of producer p's nested action seq ran.
    Child(usize, usize),
    /// Inside producer p's nested action seq: (submit to own queue was Deadlock, wait_idle
    /// was false).
    Inside(usize, usize, bool, bool),
}

struct QWorld {
    log: Mutex<Vec<Event>>,
    ledger: Arc<Ledger>,
    handler_calls: AtomicUsize,
}

impl QWorld {
    /// How many of producer p's actions with a number below `upto` have run.
    fn ran_before(&self, p: usize, upto: usize) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Event::Ran(q, s) if *q == p && *s < upto))
            .count()
    }
}

const Q_MAX_OPS: usize = 40;

fn run_queue_producer(
    p: usize,
    script: &[QOp],
    queue: &Arc<ActionQueue>,
    world: &Arc<QWorld>,
) -> Vec<(
    usize,
    bool,
    orderslip::Promise<Val, orderslip::ActionPanicked>,
)> {
    let mut kept: std::collections::VecDeque<(usize, bool, Promise<Val, _>)> =
        std::collections::VecDeque::new();
    let mut seq = 0; // number of actions this producer queued
    for op in script {
        match *op {
            QOp::Put { panics } => {
                let (w, s) = (world.clone(), seq);
                queue.put(move || {
                    w.log.lock().unwrap().push(Event::Ran(p, s));
                    if panics {
                        panic!("model: intentional action panic");
                    }
                });
                seq += 1;
            }
            QOp::Submit { panics, keep } => {
                let (w, s) = (world.clone(), seq);
                let promise = queue.submit(move || {
                    w.log.lock().unwrap().push(Event::Ran(p, s));
                    if panics {
                        panic!("model: intentional submit panic");
                    }
                    Val::new(p * Q_MAX_OPS + s, &w.ledger)
                });
                if keep {
                    kept.push_back((s, panics, promise));
                }
                seq += 1;
            }
            QOp::WaitOldest(wait) => {
                if let Some((s, panics, promise)) = kept.front() {
                    match promise.result(wait.duration()) {
                        Ok(v) => {
                            assert!(!panics, "a panicking action gave a value");
                            assert_eq!(v.id, p * Q_MAX_OPS + s);
                        }
                        Err(PromiseError::Failed(e)) => {
                            assert!(panics, "a non-panicking action failed: {e}");
                            assert_eq!(e.message(), Some("model: intentional submit panic"));
                        }
                        Err(PromiseError::Timeout) => {
                            assert!(
                                !matches!(wait, QWait::Deadline),
                                "no result by the deadline"
                            );
                            continue;
                        }
                        Err(other) => panic!("submit promise: {other:?}"),
                    }
                    assert_eq!(
                        world.ran_before(p, *s),
                        *s,
                        "action {s} finished before an earlier one of its producer ran"
                    );
                    kept.pop_front();
                }
            }
            QOp::WaitIdle(wait) => {
                if queue.wait_idle(wait.duration()) {
                    assert_eq!(
                        world.ran_before(p, seq),
                        seq,
                        "wait_idle returned true before this producer's actions ran"
                    );
                } else {
                    assert!(!matches!(wait, QWait::Deadline), "not idle by the deadline");
                }
            }
            QOp::Nested => {
                let (w, s, q) = (world.clone(), seq, queue.clone());
                queue.put(move || {
                    w.log.lock().unwrap().push(Event::Ran(p, s));
                    let w2 = w.clone();
                    q.put(move || w2.log.lock().unwrap().push(Event::Child(p, s)));
                    let own = q.submit(|| 0u8);
                    let deadlock = matches!(own.result(DEADLINE), Err(PromiseError::Deadlock));
                    let not_idle = !q.wait_idle(DEADLINE);
                    w.log
                        .lock()
                        .unwrap()
                        .push(Event::Inside(p, s, deadlock, not_idle));
                });
                seq += 1;
            }
            QOp::IsRunning => {
                let _ = queue.is_running();
            }
            QOp::Yield => thread::yield_now(),
        }
    }
    kept.into_iter().collect()
}

fn run_queue_case(case: &QCase) -> usize {
    let producers = case.scripts.len();
    let world = Arc::new(QWorld {
        log: Mutex::new(Vec::new()),
        ledger: Ledger::new(producers * Q_MAX_OPS),
        handler_calls: AtomicUsize::new(0),
    });
    let w = world.clone();
    let queue = Arc::new(
        ActionQueue::builder()
            .name("model")
            .keep_alive(case.keep_alive)
            .panic_handler(move |payload| {
                assert_eq!(
                    payload.downcast_ref::<&str>(),
                    Some(&"model: intentional action panic")
                );
                w.handler_calls.fetch_add(1, Ordering::SeqCst);
            })
            .build(),
    );
    let start = Arc::new(Barrier::new(producers));
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let (script, queue, world, start) = (
                case.scripts[p].clone(),
                queue.clone(),
                world.clone(),
                start.clone(),
            );
            thread::spawn(move || {
                start.wait();
                run_queue_producer(p, &script, &queue, &world)
            })
        })
        .collect();
    let kept: Vec<_> = handles
        .into_iter()
        .enumerate()
        .flat_map(|(p, h)| join(h, &format!("queue producer {p}")))
        .collect();

    // Expected events.
    let mut expected_runs = vec![0usize; producers];
    let mut nested = Vec::new();
    let mut panicking_puts = 0;
    let mut submitted = Vec::new();
    for (p, script) in case.scripts.iter().enumerate() {
        for op in script {
            match op {
                QOp::Put { panics } => panicking_puts += usize::from(*panics),
                QOp::Submit { panics, .. } => {
                    if !panics {
                        submitted.push(p * Q_MAX_OPS + expected_runs[p]);
                    }
                }
                QOp::Nested => nested.push((p, expected_runs[p])),
                _ => continue,
            }
            expected_runs[p] += 1;
        }
    }
    let total = expected_runs.iter().sum::<usize>() + 2 * nested.len();

    if case.drop_early {
        drop(queue);
    } else {
        assert!(queue.wait_idle(DEADLINE), "the queue never became idle");
        assert_eq!(
            world.log.lock().unwrap().len(),
            total,
            "idle, yet events missing"
        );
        drop(queue);
    }
    assert!(
        wait_until(|| world.log.lock().unwrap().len() >= total
            && world.handler_calls.load(Ordering::SeqCst) >= panicking_puts),
        "not every action ran"
    );
    for (s, panics, promise) in kept {
        match promise.result(DEADLINE) {
            Ok(v) => assert!(!panics && v.id % Q_MAX_OPS == s),
            Err(PromiseError::Failed(_)) => assert!(panics),
            Err(other) => panic!("kept submit {s}: {other:?}"),
        }
    }

    let log = world.log.lock().unwrap().clone();
    assert_eq!(log.len(), total, "an action ran more than once: {log:?}");
    for (p, &expected) in expected_runs.iter().enumerate() {
        let ran: Vec<usize> = log
            .iter()
            .filter_map(|e| match e {
                Event::Ran(q, s) if *q == p => Some(*s),
                _ => None,
            })
            .collect();
        assert_eq!(
            ran,
            (0..expected).collect::<Vec<_>>(),
            "producer {p}: every action exactly once, in order"
        );
    }
    for &(p, s) in &nested {
        let at = |e: Event| log.iter().position(|x| *x == e);
        let parent = at(Event::Ran(p, s)).unwrap();
        let child = at(Event::Child(p, s)).expect("the child action ran");
        let inside = at(Event::Inside(p, s, true, true))
            .expect("inside an action: Deadlock for its own queue's submit, wait_idle false");
        assert!(
            parent < inside && inside < child,
            "the child ran after its parent"
        );
    }
    assert_eq!(
        world.handler_calls.load(Ordering::SeqCst),
        panicking_puts,
        "the panic handler sees exactly the panicking puts"
    );
    // Submitted values: each dropped exactly once, once every handle is gone (the worker
    // drops its handle at the end of the action).
    assert!(
        wait_until(|| submitted.iter().all(|&id| world.ledger.drops(id) == 1)),
        "a submitted value was not dropped"
    );
    for id in 0..world.ledger.0.len() {
        let expected = u8::from(submitted.contains(&id));
        assert_eq!(world.ledger.drops(id), expected, "submitted value {id}");
    }
    total
}

#[test]
fn queue_operations_from_many_producers_match_the_model() {
    quiet_intentional_panics();
    let cases = if cfg!(miri) { 3 } else { 200 };
    let (seeds, single) = seeds(0x0DE5_11F0_0002, cases);
    let n = seeds.len();
    let mut actions = 0;
    for seed in seeds {
        let _guard = SeedGuard {
            test: "queue_operations_from_many_producers_match_the_model",
            seed,
        };
        let case = gen_queue_case(&mut Rng(seed));
        if single {
            println!("{case:#?}");
        }
        actions += run_queue_case(&case);
    }
    println!("{n} queue cases, {actions} actions run and checked");
}

// ---- the generator itself ----

#[test]
#[cfg_attr(
    miri,
    ignore = "pure computation over 300 generated cases: slow under Miri, nothing for it to check"
)]
fn the_generator_is_deterministic_and_covers_every_operation() {
    let a: Vec<u64> = {
        let mut r = Rng(7);
        (0..5).map(|_| r.next()).collect()
    };
    let b: Vec<u64> = {
        let mut r = Rng(7);
        (0..5).map(|_| r.next()).collect()
    };
    assert_eq!(a, b);
    // Over the default seeds, every promise and queue operation is generated.
    let mut rng = Rng(0x0DE5_11F0_0001);
    let mut seen_ops = std::collections::HashSet::new();
    for _ in 0..300 {
        let case = gen_promise_case(&mut Rng(rng.next()));
        for op in case.scripts.iter().flatten() {
            seen_ops.insert(
                format!("{op:?}")
                    .split(['(', ' '])
                    .next()
                    .unwrap()
                    .to_owned(),
            );
            if let POp::Wait(k) = op {
                seen_ops.insert(format!("{k:?}").split('(').next().unwrap().to_owned());
            }
        }
    }
    for name in [
        "SetOk",
        "SetErr",
        "Wait",
        "Then",
        "ThenElse",
        "Clone",
        "Drop",
        "Map",
        "Zero",
        "Micros",
        "Millis",
        "Untimed",
        "Max",
        "Async",
        "TryResult",
    ] {
        assert!(
            seen_ops.contains(name),
            "{name} never generated: {seen_ops:?}"
        );
    }
}
