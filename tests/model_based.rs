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
//! **Channel** (`Promise::channel`). On one thread, every operation has exactly one right
//! answer, so a sequential model predicts each one (waits, `try_result`, `is_closed`, the
//! resolver's set handed back iff closed, `into_inner`, owned futures moving or cloning the
//! value) and, after every operation, every callback's run and drop count, every value's drop
//! count and every registered owned future's wake count. From several threads: a wait gives
//! the resolver's value, `Abandoned` only if it was dropped, `Timeout` only for a finite
//! timeout and never once the waiter knew the resolver had acted; a set on the promise end is
//! always refused as "resolver only"; callbacks registered before the resolver acts have run
//! (set) or been dropped unrun (dropped) when it returns; a set is handed back only if nobody
//! could read it; at most one `into_inner` gets the value; maps agree; every value is dropped
//! exactly once.
//!
//! **Queue.** Every action (put or submitted, from any producer, nested or not) runs exactly
//! once, each producer's in the order it queued them; a submitted action's promise gives its
//! value or `ActionPanicked`; once a submit's promise is done or `wait_idle` returns `true`,
//! everything that producer queued before has run; a submit waited for inside an action of
//! the same queue is a `Deadlock` and `wait_idle` there is `false`; the panic handler sees
//! exactly the panicking `put`s; every submitted value is dropped exactly once.
// Not under shuttle either: `with_setter` takes the backend's `ThreadId`, shuttle's there.
#![cfg(not(any(loom, shuttle)))]

mod util;

use orderslip::{ActionQueue, Promise, PromiseError, PromiseFuture, Resolver};
use std::fmt;
use std::future::IntoFuture;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::task::{Poll, Waker};
use std::thread;
use std::time::Duration;
use util::{
    block_on, counting_waker, poll_once, quiet_intentional_panics, wait_until, CountingWake,
    DEADLINE, LONG,
};

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

/// Runs the cases of one test: `cases` seeded ones (or the one `ORDERSLIP_MODEL_SEED`
/// names, printed first), each generated by `gen` from its seed and checked by `run` under
/// a [`SeedGuard`]. Returns how many ran and whether it was a single replayed seed.
fn run_cases<C: fmt::Debug>(
    test: &'static str,
    base: u64,
    cases: usize,
    gen: impl Fn(&mut Rng) -> C,
    mut run: impl FnMut(&C),
) -> (usize, bool) {
    quiet_intentional_panics();
    let (seeds, single) = seeds(base, cases);
    let n = seeds.len();
    for seed in seeds {
        let _guard = SeedGuard { test, seed };
        let case = gen(&mut Rng(seed));
        if single {
            println!("{case:#?}");
        }
        run(&case);
    }
    (n, single)
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

/// Registers a callback that records what it saw in `record`: `then` (panicking after it
/// recorded, if `panics` says so) for `Some`, `then_else` for `None` (two closures, one
/// token each: both are dropped whichever branch runs).
fn register_callback(p: &Promise<Val, Val>, record: &Arc<CbRecord>, panics: Option<bool>) {
    match panics {
        Some(panics) => {
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
        }
        None => {
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
                let panics = match *op {
                    POp::Then { panics } => Some(panics),
                    _ => None,
                };
                register_callback(p, &record, panics);
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
    let mut cov = Coverage::default();
    let (n, _) = run_cases(
        "promise_operations_from_many_threads_match_the_model",
        0x0DE5_11F0_0001,
        if cfg!(miri) { 4 } else { 400 },
        gen_promise_case,
        |case| run_promise_case(case, &mut cov),
    );
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
    let mut actions = 0;
    let (n, _) = run_cases(
        "queue_operations_from_many_producers_match_the_model",
        0x0DE5_11F0_0002,
        if cfg!(miri) { 3 } else { 200 },
        gen_queue_case,
        |case| actions += run_queue_case(case),
    );
    println!("{n} queue cases, {actions} actions run and checked");
}

// ---- the channel model: one thread, exact ----
//
// A channel (`Promise::channel`) is set only by its resolver, so on one thread every
// operation has exactly one right answer. The model tracks each promise block of a case:
// the channel itself (node 0) and every `map` made from it or from another map (a map of a
// channel is a channel whose resolver sits in a callback of its origin), with its status,
// whether a callback was registered while it was pending, its queued callbacks and maps,
// and the counted value it holds. Handles are held in a list (plain handles and the owned
// futures of `IntoFuture`, which hold one too). After every operation the test checks,
// besides the operation's own answer: every callback's run and drop counts, every value's
// drop count (a value lives exactly as long as a handle of its done block), and every
// registered owned future's wake count.

/// A wait on a handle of the sequential channel model. Whether a wait may block is decided
/// when it runs: the model knows whether the promise is final.
#[derive(Clone, Copy, Debug, PartialEq)]
enum SWait {
    Zero,
    Micros(u64),
    /// Final: `wait()` (`true`) or `result(Duration::MAX)` (`false`), which must return at
    /// once; pending: `result(100 µs)`, which must time out.
    Blocking(bool),
    /// Final: `block_on(wait_async())`; pending: one poll (pending, its waker never woken)
    /// and a drop (which unregisters it).
    Async,
    /// `is_done`, `try_result` and the `Debug` state.
    TryResult,
}

/// An operation of the sequential channel model. `at` picks a plain handle (modulo their
/// number; no-op without one), `Drop` any held entry, `PollFuture` an owned future.
#[derive(Clone, Debug)]
enum SOp {
    Clone(usize),
    Drop(usize),
    Wait(SWait, usize),
    Then {
        panics: bool,
        at: usize,
    },
    ThenElse(usize),
    Map(usize),
    /// Turns the handle into its owned future (`IntoFuture`) and polls it once.
    IntoFuture(usize),
    PollFuture(usize),
    IntoInner(usize),
    /// `set_result`/`set_exception` on the promise end: always refused.
    SetOnPromise {
        err: bool,
        at: usize,
    },
    ResolverSet {
        err: bool,
    },
    ResolverDrop,
    IsClosed,
}

const S_MAX_OPS: usize = 40;

fn gen_sequential_channel_case(rng: &mut Rng) -> Vec<SOp> {
    (0..rng.range(4, S_MAX_OPS))
        .map(|_| {
            let at = rng.below(8);
            match rng.below(25) {
                0..=2 => SOp::Clone(at),
                3 | 4 => SOp::Drop(at),
                5..=9 => SOp::Wait(
                    match rng.below(6) {
                        0 => SWait::Zero,
                        1 => SWait::Micros(if rng.chance(1, 2) { 1 } else { 50 }),
                        2 => SWait::Blocking(rng.chance(1, 2)),
                        3 => SWait::Async,
                        _ => SWait::TryResult,
                    },
                    at,
                ),
                10 | 11 => SOp::Then {
                    panics: rng.chance(1, 4),
                    at,
                },
                12 => SOp::ThenElse(at),
                13 | 14 => SOp::Map(at),
                15 => SOp::IntoFuture(at),
                16 => SOp::PollFuture(at),
                17 => SOp::IntoInner(at),
                18 => SOp::SetOnPromise {
                    err: rng.chance(1, 2),
                    at,
                },
                19 | 20 => SOp::ResolverSet {
                    err: rng.chance(1, 3),
                },
                21 => SOp::ResolverDrop,
                _ => SOp::IsClosed,
            }
        })
        .collect()
}

/// The state of one promise block of a channel case.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Status {
    Pending,
    /// Done with the value (`failed: false`) or error with this id.
    Done {
        id: usize,
        failed: bool,
    },
    Abandoned,
}

impl Status {
    fn is_final(self) -> bool {
        self != Status::Pending
    }

    /// What a wait that cannot block any more (or a zero timeout) must return.
    fn seen(self) -> Seen {
        match self {
            Status::Pending => Seen::Timeout,
            Status::Done { id, failed } => Seen::Value { id, failed },
            Status::Abandoned => Seen::Abandoned,
        }
    }
}

/// Something queued on a pending block, run (or dropped) when it is resolved.
#[derive(Clone, Copy, Debug)]
enum Queued {
    Callback(usize),
    /// The map whose resolver the callback holds.
    Map(usize),
}

#[derive(Debug)]
struct SNode {
    status: Status,
    /// A callback (or map) was registered while it was pending: the channel is never
    /// closed, and its resolver's set is never handed back.
    callbacks: bool,
    queued: Vec<Queued>,
    /// The counted value the block holds once done (`None` before, for a map's error, which
    /// is a clone, and when the value was handed back).
    value: Option<usize>,
    /// For a map: the id of the value its function makes.
    map_value: usize,
}

/// A callback of the sequential model and what it must show by now.
struct SCallback {
    record: Arc<CbRecord>,
    tokens: usize,
    runs: usize,
    dropped: usize,
    saw: Option<(usize, bool)>,
}

enum Entry {
    Handle(Promise<Val, Val>),
    /// An owned future, polled pending once (so registered), and its waker's counter.
    Future(PromiseFuture<Val, Val>, Waker, Arc<CountingWake>),
}

struct Held {
    node: usize,
    entry: Entry,
}

/// How often each outcome was seen over a run of the channel models (printed).
#[derive(Default, Debug)]
struct ChannelCoverage {
    values: usize,
    timeouts: usize,
    abandoned: usize,
    pending: usize,
    refused_promise_end_sets: usize,
    resolver_sets: usize,
    handed_back: usize,
    resolver_drops: usize,
    closed_seen: usize,
    into_inner_some: usize,
    into_inner_none: usize,
    futures_moved: usize,
    futures_cloned: usize,
    futures_woken: usize,
    callbacks_run: usize,
    callbacks_dropped_unrun: usize,
    maps: usize,
}

struct SModel {
    ledger: Arc<Ledger>,
    nodes: Vec<SNode>,
    held: Vec<Held>,
    callbacks: Vec<SCallback>,
    /// Every counted value created (handed back or not).
    created: Vec<usize>,
    resolver: Option<Resolver<Val, Val>>,
}

impl SModel {
    fn handles(&self, node: usize) -> usize {
        self.held.iter().filter(|h| h.node == node).count()
    }

    /// `Resolver::is_closed` of the block: no handle left, no callback registered.
    fn closed(&self, node: usize) -> bool {
        self.handles(node) == 0 && !self.nodes[node].callbacks
    }

    fn new_node(&mut self, map_value: usize) -> usize {
        self.nodes.push(SNode {
            status: Status::Pending,
            callbacks: false,
            queued: Vec::new(),
            value: None,
            map_value,
        });
        self.nodes.len() - 1
    }

    /// The resolver of `node` sets it (`Done`) or is dropped (`Abandoned`): runs or drops
    /// what was queued, resolving the maps in turn. Returns whether a set was handed back
    /// (the channel was closed).
    fn resolve(&mut self, node: usize, outcome: Status, value: Option<usize>) -> bool {
        if let Status::Done { .. } = outcome {
            if self.closed(node) {
                self.nodes[node].status = outcome;
                return true;
            }
            self.nodes[node].value = value;
        }
        self.nodes[node].status = outcome;
        for q in std::mem::take(&mut self.nodes[node].queued) {
            match q {
                Queued::Callback(c) => self.finish_callback(c, outcome),
                Queued::Map(child) => self.resolve_map(child, outcome),
            }
        }
        false
    }

    /// What the callback inside a map does when its origin is resolved with `outcome`.
    fn resolve_map(&mut self, child: usize, origin: Status) {
        match origin {
            Status::Done { failed: false, .. } => {
                let id = self.nodes[child].map_value;
                self.created.push(id);
                let done = Status::Done { id, failed: false };
                // Handed back (nobody listens): the callback drops it.
                let _ = self.resolve(child, done, Some(id));
            }
            // The error is passed on cloned (uncounted).
            Status::Done { id, failed: true } => {
                let _ = self.resolve(child, Status::Done { id, failed: true }, None);
            }
            Status::Abandoned => {
                let _ = self.resolve(child, Status::Abandoned, None);
            }
            Status::Pending => unreachable!(),
        }
    }

    fn finish_callback(&mut self, c: usize, outcome: Status) {
        let cb = &mut self.callbacks[c];
        if let Status::Done { id, failed } = outcome {
            cb.runs = 1;
            cb.saw = Some((id, failed));
        }
        cb.dropped = cb.tokens;
    }

    /// Registers callback `c` (or the map `Queued::Map`) on `node`, as `then` does.
    fn register(&mut self, node: usize, q: Queued) {
        let status = self.nodes[node].status;
        if status == Status::Pending {
            self.nodes[node].callbacks = true;
            self.nodes[node].queued.push(q);
            return;
        }
        match q {
            Queued::Callback(c) => self.finish_callback(c, status),
            Queued::Map(child) => self.resolve_map(child, status),
        }
    }

    /// The index in `held` of the `at`-th plain handle (modulo), if any.
    fn pick_handle(&self, at: usize) -> Option<usize> {
        let handles: Vec<usize> = (0..self.held.len())
            .filter(|&i| matches!(self.held[i].entry, Entry::Handle(_)))
            .collect();
        (!handles.is_empty()).then(|| handles[at % handles.len()])
    }

    fn pick_future(&self, at: usize) -> Option<usize> {
        let futures: Vec<usize> = (0..self.held.len())
            .filter(|&i| matches!(self.held[i].entry, Entry::Future(..)))
            .collect();
        (!futures.is_empty()).then(|| futures[at % futures.len()])
    }

    /// Whether value `id` must still be alive: held by a done block that has a handle.
    fn alive(&self, id: usize) -> bool {
        self.nodes
            .iter()
            .enumerate()
            .any(|(n, node)| node.value == Some(id) && self.handles(n) > 0)
    }

    /// Checks everything observable that the model predicts, after each operation.
    fn check(&self, step: &str) {
        for (n, cb) in self.callbacks.iter().enumerate() {
            let runs = cb.record.runs.load(Ordering::SeqCst);
            let dropped = cb.record.dropped.load(Ordering::SeqCst);
            assert_eq!(
                (runs, dropped),
                (cb.runs, cb.dropped),
                "{step}: callback {n}: (runs, drops of its {} token(s))",
                cb.tokens
            );
            assert_eq!(
                *cb.record.saw.lock().unwrap(),
                cb.saw,
                "{step}: callback {n}"
            );
        }
        for &id in &self.created {
            let expected = u8::from(!self.alive(id));
            assert_eq!(self.ledger.drops(id), expected, "{step}: value {id} drops");
        }
        for h in &self.held {
            if let Entry::Future(_, _, wakes) = &h.entry {
                let expected = usize::from(self.nodes[h.node].status.is_final());
                assert_eq!(
                    wakes.count.load(Ordering::SeqCst),
                    expected,
                    "{step}: a registered owned future of block {} is woken once when it \
                     is resolved",
                    h.node
                );
            }
        }
    }
}

/// The answer of a ready owned future, checked against the model. `counted`: the block
/// holds a counted value (not a map's cloned error); `last`: the future held the block's
/// last handle, so the value is moved out, not cloned (a clone is uncounted).
fn check_owned_output(
    out: Result<Val, PromiseError<Val>>,
    status: Status,
    counted: bool,
    last: bool,
    cov: &mut ChannelCoverage,
    step: &str,
) {
    let (got, moved) = match &out {
        Ok(v) => (
            Seen::Value {
                id: v.id,
                failed: false,
            },
            v.ledger.is_some(),
        ),
        Err(PromiseError::Failed(e)) => (
            Seen::Value {
                id: e.id,
                failed: true,
            },
            e.ledger.is_some(),
        ),
        Err(PromiseError::Abandoned) => (Seen::Abandoned, false),
        Err(other) => panic!("{step}: owned future gave {other:?}"),
    };
    assert_eq!(got, status.seen(), "{step}: owned future");
    if let Seen::Value { .. } = got {
        assert_eq!(
            moved,
            counted && last,
            "{step}: moved out iff the future held the last handle"
        );
        if last {
            cov.futures_moved += 1;
        } else {
            cov.futures_cloned += 1;
        }
    }
}

fn run_sequential_channel_case(ops: &[SOp], cov: &mut ChannelCoverage) {
    let ledger = Ledger::new(1 + 2 * S_MAX_OPS);
    let (resolver, p) = Promise::<Val, Val>::channel();
    let mut m = SModel {
        ledger: ledger.clone(),
        nodes: Vec::new(),
        held: vec![Held {
            node: 0,
            entry: Entry::Handle(p),
        }],
        callbacks: Vec::new(),
        created: Vec::new(),
        resolver: Some(resolver),
    };
    m.new_node(0);
    for (i, op) in ops.iter().enumerate() {
        let step = format!("op {i} {op:?}");
        run_sequential_op(&mut m, i, op, cov, &step);
        m.check(&step);
    }
    // The end: the resolver (if still there) is dropped, then every held entry.
    if m.resolver.is_some() {
        run_sequential_op(&mut m, usize::MAX, &SOp::ResolverDrop, cov, "end");
        m.check("end: resolver dropped");
    }
    while !m.held.is_empty() {
        run_sequential_op(&mut m, usize::MAX, &SOp::Drop(0), cov, "end");
        m.check("end: a handle dropped");
    }
    for (n, cb) in m.callbacks.iter().enumerate() {
        assert_eq!(cb.dropped, cb.tokens, "callback {n} in the model");
        cov.callbacks_run += cb.runs;
        cov.callbacks_dropped_unrun += usize::from(cb.runs == 0);
    }
    for &id in &m.created {
        assert_eq!(ledger.drops(id), 1, "end: value {id}");
    }
}

fn run_sequential_op(m: &mut SModel, i: usize, op: &SOp, cov: &mut ChannelCoverage, step: &str) {
    match *op {
        SOp::Clone(at) => {
            if let Some(h) = m.pick_handle(at) {
                let Entry::Handle(p) = &m.held[h].entry else {
                    unreachable!()
                };
                let q = p.clone();
                let node = m.held[h].node;
                m.held.push(Held {
                    node,
                    entry: Entry::Handle(q),
                });
            }
        }
        SOp::Drop(at) => {
            if !m.held.is_empty() {
                let k = at % m.held.len();
                drop(m.held.remove(k));
            }
        }
        SOp::Wait(kind, at) => {
            let Some(h) = m.pick_handle(at) else { return };
            let status = m.nodes[m.held[h].node].status;
            let Entry::Handle(p) = &m.held[h].entry else {
                unreachable!()
            };
            let got = match kind {
                SWait::Zero => seen(p.result(Duration::ZERO)),
                SWait::Micros(n) => seen(p.result(Duration::from_micros(n))),
                SWait::Blocking(untimed) if status.is_final() => {
                    if untimed {
                        seen(p.wait())
                    } else {
                        seen(p.result(Duration::MAX))
                    }
                }
                SWait::Blocking(_) => seen(p.result(Duration::from_micros(100))),
                SWait::Async if status.is_final() => seen(block_on(p.wait_async())),
                SWait::Async => {
                    let (waker, wakes) = counting_waker();
                    let mut fut = Box::pin(p.wait_async());
                    assert!(
                        poll_once(fut.as_mut(), &waker).is_pending(),
                        "{step}: wait_async on a pending channel"
                    );
                    drop(fut);
                    assert_eq!(wakes.count.load(Ordering::SeqCst), 0, "{step}: woken");
                    Seen::Timeout
                }
                SWait::TryResult => {
                    let state = match status {
                        Status::Pending => "pending",
                        Status::Abandoned => "abandoned",
                        Status::Done { failed: false, .. } => "fulfilled",
                        Status::Done { failed: true, .. } => "failed",
                    };
                    let debug = format!("{p:?}");
                    assert!(debug.contains(state), "{step}: {debug} is not {state}");
                    assert_eq!(
                        p.is_done(),
                        matches!(status, Status::Done { .. }),
                        "{step}: is_done"
                    );
                    match p.try_result() {
                        None => Seen::Pending,
                        Some(r) => seen(r.map_err(PromiseError::Failed)),
                    }
                }
            };
            let expected = match (kind, status) {
                (SWait::TryResult, Status::Pending | Status::Abandoned) => Seen::Pending,
                _ => status.seen(),
            };
            assert_eq!(got, expected, "{step}: block {}", m.held[h].node);
            match got {
                Seen::Value { .. } => cov.values += 1,
                Seen::Timeout => cov.timeouts += 1,
                Seen::Abandoned => cov.abandoned += 1,
                Seen::Pending => cov.pending += 1,
                Seen::Deadlock => unreachable!(),
            }
        }
        SOp::Then { at, .. } | SOp::ThenElse(at) => {
            let Some(h) = m.pick_handle(at) else { return };
            let record = Arc::new(CbRecord::default());
            let Entry::Handle(p) = &m.held[h].entry else {
                unreachable!()
            };
            let tokens = if let SOp::Then { panics, .. } = *op {
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
                1
            } else {
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
                2
            };
            m.callbacks.push(SCallback {
                record,
                tokens,
                runs: 0,
                dropped: 0,
                saw: None,
            });
            let node = m.held[h].node;
            m.register(node, Queued::Callback(m.callbacks.len() - 1));
        }
        SOp::Map(at) => {
            let Some(h) = m.pick_handle(at) else { return };
            let node = m.held[h].node;
            let id = 1 + S_MAX_OPS + i;
            let ledger = m.ledger.clone();
            // The new block is in the model (with its handle) before the origin's callback
            // can run: a map of a done promise is resolved inside `map`, and is not closed.
            let child = m.new_node(id);
            let Entry::Handle(p) = &m.held[h].entry else {
                unreachable!()
            };
            let mapped = p.map(move |_| Val::new(id, &ledger));
            m.held.push(Held {
                node: child,
                entry: Entry::Handle(mapped),
            });
            m.register(node, Queued::Map(child));
            cov.maps += 1;
        }
        SOp::IntoFuture(at) => {
            let Some(h) = m.pick_handle(at) else { return };
            let last = m.handles(m.held[h].node) == 1;
            let Held { node, entry } = m.held.remove(h);
            let Entry::Handle(p) = entry else {
                unreachable!()
            };
            let (status, counted) = (m.nodes[node].status, m.nodes[node].value.is_some());
            let (waker, wakes) = counting_waker();
            let mut fut = p.into_future();
            match poll_once(Pin::new(&mut fut), &waker) {
                Poll::Ready(out) => {
                    assert!(status.is_final(), "{step}: ready while pending");
                    check_owned_output(out, status, counted, last, cov, step);
                }
                Poll::Pending => {
                    assert!(!status.is_final(), "{step}: pending while {status:?}");
                    m.held.push(Held {
                        node,
                        entry: Entry::Future(fut, waker, wakes),
                    });
                }
            }
        }
        SOp::PollFuture(at) => {
            let Some(h) = m.pick_future(at) else { return };
            let node = m.held[h].node;
            let (status, counted) = (m.nodes[node].status, m.nodes[node].value.is_some());
            let last = m.handles(node) == 1;
            let Entry::Future(fut, waker, _) = &mut m.held[h].entry else {
                unreachable!()
            };
            match poll_once(Pin::new(fut), &*waker) {
                Poll::Ready(out) => {
                    assert!(status.is_final(), "{step}: ready while pending");
                    cov.futures_woken += 1;
                    m.held.remove(h);
                    check_owned_output(out, status, counted, last, cov, step);
                }
                Poll::Pending => assert!(!status.is_final(), "{step}: pending while {status:?}"),
            }
        }
        SOp::IntoInner(at) => {
            let Some(h) = m.pick_handle(at) else { return };
            let last = m.handles(m.held[h].node) == 1;
            let Held { node, entry } = m.held.remove(h);
            let Entry::Handle(p) = entry else {
                unreachable!()
            };
            let status = m.nodes[node].status;
            let got = p.into_inner();
            match (status, got) {
                (Status::Done { id, failed }, Some(r)) if last => {
                    let v = match &r {
                        Ok(v) => v,
                        Err(e) => e,
                    };
                    assert_eq!((v.id, r.is_err()), (id, failed), "{step}");
                    cov.into_inner_some += 1;
                }
                (_, None) if !last || !matches!(status, Status::Done { .. }) => {
                    cov.into_inner_none += 1;
                }
                (status, got) => panic!(
                    "{step}: into_inner of {} handle of a {status:?} block gave {got:?}",
                    if last { "the last" } else { "a" }
                ),
            }
        }
        SOp::SetOnPromise { err, at } => {
            let Some(h) = m.pick_handle(at) else { return };
            let Entry::Handle(p) = &m.held[h].entry else {
                unreachable!()
            };
            let id = 1 + i;
            m.created.push(id);
            let v = Val::new(id, &m.ledger);
            let refused = if err {
                p.set_exception(v).unwrap_err()
            } else {
                p.set_result(v).unwrap_err()
            };
            assert!(!refused.is_already_set(), "{step}: a channel's refusal");
            assert_eq!(refused.into_inner().id, id, "{step}: handed back");
            cov.refused_promise_end_sets += 1;
        }
        SOp::ResolverSet { err } => {
            let Some(resolver) = m.resolver.take() else {
                return;
            };
            let closed = m.closed(0);
            m.created.push(0);
            let v = Val::new(0, &m.ledger);
            let back = if err {
                resolver.set_exception(v).err()
            } else {
                resolver.set_result(v).err()
            };
            let handed_back = m.resolve(0, Status::Done { id: 0, failed: err }, Some(0));
            assert_eq!(handed_back, closed);
            assert_eq!(
                back.as_ref().map(|v| v.id),
                handed_back.then_some(0),
                "{step}: handed back iff closed ({closed})"
            );
            cov.resolver_sets += 1;
            cov.handed_back += usize::from(handed_back);
        }
        SOp::ResolverDrop => {
            if let Some(resolver) = m.resolver.take() {
                drop(resolver);
                m.resolve(0, Status::Abandoned, None);
                cov.resolver_drops += 1;
            }
        }
        SOp::IsClosed => {
            if let Some(resolver) = &m.resolver {
                let closed = m.closed(0);
                assert_eq!(resolver.is_closed(), closed, "{step}");
                let debug = format!("{resolver:?}");
                assert!(
                    debug.contains(&format!("closed: {closed}")),
                    "{step}: {debug}"
                );
                cov.closed_seen += usize::from(closed);
            }
        }
    }
}

#[test]
fn channel_operations_in_sequence_match_the_model_exactly() {
    let mut cov = ChannelCoverage::default();
    let (n, single) = run_cases(
        "channel_operations_in_sequence_match_the_model_exactly",
        0x0DE5_11F0_0003,
        if cfg!(miri) { 24 } else { 3_000 },
        gen_sequential_channel_case,
        |ops| run_sequential_channel_case(ops, &mut cov),
    );
    println!("{n} sequential channel cases: {cov:#?}");
    if !single && n >= 1_000 {
        // One thread: the cases are deterministic, and the default ones reach every outcome.
        let ChannelCoverage {
            values,
            timeouts,
            abandoned,
            pending,
            refused_promise_end_sets,
            resolver_sets,
            handed_back,
            resolver_drops,
            closed_seen,
            into_inner_some,
            into_inner_none,
            futures_moved,
            futures_cloned,
            futures_woken,
            callbacks_run,
            callbacks_dropped_unrun,
            maps,
        } = cov;
        for (what, count) in [
            ("values", values),
            ("timeouts", timeouts),
            ("abandoned", abandoned),
            ("pending", pending),
            ("refused promise-end sets", refused_promise_end_sets),
            ("resolver sets", resolver_sets),
            ("handed back", handed_back),
            ("resolver drops", resolver_drops),
            ("closed seen", closed_seen),
            ("into_inner Some", into_inner_some),
            ("into_inner None", into_inner_none),
            ("futures moved", futures_moved),
            ("futures cloned", futures_cloned),
            ("futures woken", futures_woken),
            ("callbacks run", callbacks_run),
            ("callbacks dropped unrun", callbacks_dropped_unrun),
            ("maps", maps),
        ] {
            assert!(count > 0, "no case reached: {what}");
        }
    }
}

// ---- the channel model: many threads ----
//
// Worker threads run random scripts on clones of one channel's promise end while main holds
// the resolver and, after a random delay (or, in some cases, only once every worker has
// finished and dropped its handles), sets it or drops it. What every interleaving must show:
// a wait gives main's value, or `Abandoned` only if main dropped the resolver, or `Timeout`
// only for a finite timeout and only if the waiter could not know the resolver had acted
// (main raises a flag right after); never `Deadlock`; a set on the promise end is always
// refused as "resolver only" and hands its value back; the resolver's set is handed back
// iff nobody could read it (and then no callback or map was ever registered, no handle was
// left, and a `true` from `is_closed` before it says so in advance); each callback runs
// once with the value if the resolver set it, else is dropped unrun, and those registered
// before the resolver acted have run (or been dropped) when it returns; every map agrees;
// at most one `into_inner` gets the value; every value is dropped exactly once.

#[derive(Clone, Copy, Debug, PartialEq)]
enum CWait {
    Zero,
    Micros(u64),
    Millis(u64),
    TryResult,
    /// `wait()`.
    Untimed,
    /// `result(Duration::MAX)`.
    Max,
    /// `block_on(wait_async())`.
    Async,
    /// `block_on` of a clone's owned future (`IntoFuture`).
    Owned,
}

impl CWait {
    fn is_finite(self) -> bool {
        matches!(self, CWait::Zero | CWait::Micros(_) | CWait::Millis(_))
    }
}

#[derive(Clone, Debug)]
enum COp {
    /// On the thread's newest handle.
    Wait(CWait),
    Then {
        panics: bool,
    },
    ThenElse,
    Clone,
    /// Drops one of the thread's handles (by index modulo the count).
    Drop(usize),
    Map,
    SetOnPromise {
        err: bool,
    },
    /// `into_inner` of the thread's newest handle.
    IntoInner,
    /// `block_on` of the newest handle's own owned future (it may move the value out).
    AwaitOwned,
    Yield,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    SetOk,
    SetErr,
    DropResolver,
}

#[derive(Clone, Debug)]
struct CCase {
    outcome: Outcome,
    /// Main keeps a handle of its own until the end.
    main_keeps: bool,
    /// Main acts on the resolver only after every worker finished and dropped its handles,
    /// so whether the channel is closed is known exactly. No endless waits then.
    after_workers: bool,
    /// Main yields this many times (polling `is_closed`) before it acts.
    main_delay: usize,
    scripts: Vec<Vec<COp>>,
}

fn gen_channel_case(rng: &mut Rng) -> CCase {
    let after_workers = rng.chance(1, 4);
    // Some cases register no callback, so that the channel can close.
    let callbacks = rng.chance(2, 3);
    let threads = rng.range(2, 4);
    let scripts = (0..threads)
        .map(|_| {
            (0..rng.range(1, MAX_OPS))
                .map(|_| match rng.below(20) {
                    0..=6 => COp::Wait(match rng.below(10) {
                        0 => CWait::Zero,
                        1 => CWait::Micros(1),
                        2 => CWait::Micros(200),
                        3 => CWait::Millis(2),
                        4 => CWait::TryResult,
                        // Endless waits end only if the resolver acts while they wait.
                        5 if !after_workers => CWait::Untimed,
                        6 if !after_workers => CWait::Max,
                        7 if !after_workers => CWait::Async,
                        8 if !after_workers => CWait::Owned,
                        _ => CWait::Micros(50),
                    }),
                    7 | 8 if callbacks => COp::Then {
                        panics: rng.chance(1, 4),
                    },
                    9 if callbacks => COp::ThenElse,
                    10..=12 => COp::Clone,
                    13 => COp::Drop(rng.below(4)),
                    14 if callbacks => COp::Map,
                    15 => COp::SetOnPromise {
                        err: rng.chance(1, 2),
                    },
                    16 => COp::IntoInner,
                    17 if !after_workers => COp::AwaitOwned,
                    _ => COp::Yield,
                })
                .collect()
        })
        .collect();
    CCase {
        outcome: match rng.below(3) {
            0 => Outcome::SetOk,
            1 => Outcome::SetErr,
            _ => Outcome::DropResolver,
        },
        main_keeps: rng.chance(1, 3),
        after_workers,
        main_delay: rng.below(50),
        scripts,
    }
}

/// A callback of the concurrent channel model: its record, how many tokens its closures
/// hold, and whether its `then` has returned.
struct CCallback {
    record: Arc<CbRecord>,
    tokens: usize,
    registered: AtomicBool,
}

struct CWorld {
    ledger: Arc<Ledger>,
    /// Set (SeqCst) by main right after the resolver's set or drop returned.
    resolved: AtomicBool,
    callbacks: Mutex<Vec<Arc<CCallback>>>,
}

/// What one worker of the concurrent channel model observed.
#[derive(Default, Debug)]
struct CLog {
    /// Ids of the values it tried to set on the promise end (all refused).
    refused: Vec<usize>,
    /// (op index, kind, what it saw)
    waits: Vec<(usize, CWait, Seen)>,
    /// It registered a callback or a map on the channel.
    registered: bool,
    /// What each `into_inner` gave: `Some((id, failed))` or `None`.
    into_inner: Vec<Option<(usize, bool)>>,
}

/// The owned answer of an owned future, as a `Seen`.
fn seen_owned(r: Result<Val, PromiseError<Val>>) -> Seen {
    match r {
        Ok(v) => seen(Ok(&v)),
        Err(PromiseError::Failed(e)) => seen(Err(PromiseError::Failed(&e))),
        Err(PromiseError::Timeout) => Seen::Timeout,
        Err(PromiseError::Deadlock) => Seen::Deadlock,
        Err(PromiseError::Abandoned) => Seen::Abandoned,
        Err(other) => panic!("unknown error {other:?}"),
    }
}

/// Whether `s`, seen by a wait of `kind`, is legal for a case resolved with `outcome`;
/// `known`: the waiter knew the resolver had acted before the wait began.
fn check_channel_wait(i: usize, kind: CWait, s: Seen, outcome: Outcome, known: bool) {
    let winner = match outcome {
        Outcome::SetOk => Some((0, false)),
        Outcome::SetErr => Some((0, true)),
        Outcome::DropResolver => None,
    };
    match s {
        Seen::Value { id, failed } => assert_eq!(
            Some((id, failed)),
            winner,
            "op {i} {kind:?}: another value than the resolver's"
        ),
        Seen::Timeout => assert!(
            kind.is_finite() && !known,
            "op {i}: Timeout from {kind:?} (the resolver's act known before: {known})"
        ),
        Seen::Abandoned => assert!(
            winner.is_none() && kind != CWait::TryResult,
            "op {i}: Abandoned from {kind:?} with {outcome:?}"
        ),
        Seen::Pending => assert!(
            kind == CWait::TryResult && !(known && winner.is_some()),
            "op {i}: try_result None from {kind:?}, known set: {known}"
        ),
        Seen::Deadlock => panic!("op {i}: Deadlock from {kind:?} on a channel"),
    }
}

/// What a worker of the concurrent channel model returns: its log, and the handles and maps
/// it still holds (none when main acts only after the workers).
type CWorkerEnd = (CLog, Vec<Promise<Val, Val>>, Vec<Promise<usize, Val>>);

fn run_channel_worker(
    me: usize,
    case: &CCase,
    world: &CWorld,
    first: Promise<Val, Val>,
) -> CWorkerEnd {
    let mut log = CLog::default();
    let mut handles = vec![first];
    let mut maps: Vec<Promise<usize, Val>> = Vec::new();
    let winner = match case.outcome {
        Outcome::SetOk => Some((0, false)),
        Outcome::SetErr => Some((0, true)),
        Outcome::DropResolver => None,
    };
    for (i, op) in case.scripts[me].iter().enumerate() {
        let Some(p) = handles.last() else { break };
        let known = world.resolved.load(Ordering::SeqCst);
        match *op {
            COp::Wait(kind) => {
                let s = match kind {
                    CWait::Zero => seen(p.result(Duration::ZERO)),
                    CWait::Micros(n) => seen(p.result(Duration::from_micros(n))),
                    CWait::Millis(n) => seen(p.result(Duration::from_millis(n))),
                    CWait::Untimed => seen(p.wait()),
                    CWait::Max => seen(p.result(Duration::MAX)),
                    CWait::Async => seen(block_on(p.wait_async())),
                    CWait::Owned => seen_owned(block_on(p.clone().into_future())),
                    CWait::TryResult => {
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
                check_channel_wait(i, kind, s, case.outcome, known);
                log.waits.push((i, kind, s));
            }
            COp::Then { .. } | COp::ThenElse => {
                let record = Arc::new(CbRecord::default());
                let tokens = if matches!(op, COp::ThenElse) { 2 } else { 1 };
                let cb = Arc::new(CCallback {
                    record: record.clone(),
                    tokens,
                    registered: AtomicBool::new(false),
                });
                world.callbacks.lock().unwrap().push(cb.clone());
                let panics = match *op {
                    COp::Then { panics } => Some(panics),
                    _ => None,
                };
                register_callback(p, &record, panics);
                cb.registered.store(true, Ordering::SeqCst);
                log.registered = true;
                if known {
                    // The resolver has returned: the callback ran (or was dropped) at once.
                    let runs = record.runs.load(Ordering::SeqCst);
                    assert_eq!(
                        (runs, record.dropped.load(Ordering::SeqCst)),
                        (usize::from(winner.is_some()), tokens),
                        "op {i}: a callback on a resolved channel runs or is dropped at once"
                    );
                    assert_eq!(*record.saw.lock().unwrap(), winner, "op {i}");
                }
            }
            COp::Clone => {
                let q = p.clone();
                handles.push(q);
            }
            COp::Drop(k) => {
                let k = k % handles.len();
                drop(handles.remove(k));
            }
            COp::Map => {
                maps.push(p.map(|v| v.id));
                log.registered = true;
            }
            COp::SetOnPromise { err } => {
                let id = value_id(me, i);
                let v = Val::new(id, &world.ledger);
                let refused = if err {
                    p.set_exception(v).unwrap_err()
                } else {
                    p.set_result(v).unwrap_err()
                };
                assert!(!refused.is_already_set(), "op {i}: a channel's refusal");
                assert_eq!(refused.into_inner().id, id, "op {i}: its own value back");
                log.refused.push(id);
            }
            COp::IntoInner => {
                let p = handles.pop().unwrap();
                let got = p.into_inner().map(|r| match r {
                    Ok(v) => (v.id, false),
                    Err(e) => (e.id, true),
                });
                if let Some(got) = got {
                    assert_eq!(Some(got), winner, "op {i}: into_inner gave another value");
                }
                log.into_inner.push(got);
            }
            COp::AwaitOwned => {
                let p = handles.pop().unwrap();
                let s = seen_owned(block_on(p.into_future()));
                check_channel_wait(i, CWait::Owned, s, case.outcome, known);
                log.waits.push((i, CWait::Owned, s));
            }
            COp::Yield => thread::yield_now(),
        }
    }
    if case.after_workers {
        // Main acts only after this: it must know exactly who is left.
        drop(maps);
        drop(handles);
        return (log, Vec::new(), Vec::new());
    }
    (log, handles, maps)
}

fn run_channel_case(case: &CCase, cov: &mut ChannelCoverage) {
    let threads = case.scripts.len();
    let world = Arc::new(CWorld {
        ledger: Ledger::new(1 + threads * MAX_OPS),
        resolved: AtomicBool::new(false),
        callbacks: Mutex::new(Vec::new()),
    });
    let (resolver, main) = Promise::<Val, Val>::channel();
    let start = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|me| {
            let (case, world, start, first) =
                (case.clone(), world.clone(), start.clone(), main.clone());
            thread::spawn(move || {
                start.wait();
                run_channel_worker(me, &case, &world, first)
            })
        })
        .collect();
    // An explicit drop: a conditionally moved variable would live to the end.
    let main = if case.main_keeps {
        Some(main)
    } else {
        drop(main);
        None
    };
    start.wait();

    let join_all = |workers: Vec<thread::JoinHandle<_>>| -> Vec<_> {
        workers
            .into_iter()
            .enumerate()
            .map(|(i, w)| join(w, &format!("channel worker {i}")))
            .collect()
    };
    let mut workers = Some(workers);
    let mut results = Vec::new();
    let mut saw_closed = false;
    if case.after_workers {
        results = join_all(workers.take().unwrap());
        let registered = results
            .iter()
            .any(|(log, _, _): &(CLog, _, _)| log.registered);
        let closed = !case.main_keeps && !registered;
        assert_eq!(
            resolver.is_closed(),
            closed,
            "every worker is gone; main keeps a handle: {}, callbacks registered: {registered}",
            case.main_keeps
        );
        saw_closed = closed;
    } else {
        for _ in 0..case.main_delay {
            let closed = resolver.is_closed();
            assert!(closed || !saw_closed, "is_closed went back to false");
            saw_closed = closed;
            thread::yield_now();
        }
    }

    // The callbacks whose `then` returned before the resolver acts.
    let before: Vec<Arc<CCallback>> = world
        .callbacks
        .lock()
        .unwrap()
        .iter()
        .filter(|cb| cb.registered.load(Ordering::SeqCst))
        .cloned()
        .collect();
    let handed_back = match case.outcome {
        Outcome::SetOk | Outcome::SetErr => {
            let v = Val::new(0, &world.ledger);
            let back = if case.outcome == Outcome::SetErr {
                resolver.set_exception(v).err()
            } else {
                resolver.set_result(v).err()
            };
            if let Some(back) = &back {
                assert_eq!(back.id, 0, "the resolver's own value is handed back");
            }
            cov.resolver_sets += 1;
            back.is_some()
        }
        Outcome::DropResolver => {
            drop(resolver);
            cov.resolver_drops += 1;
            false
        }
    };
    world.resolved.store(true, Ordering::SeqCst);
    if saw_closed && case.outcome != Outcome::DropResolver {
        assert!(handed_back, "is_closed was true, yet the set was taken");
    }
    cov.closed_seen += usize::from(saw_closed);
    cov.handed_back += usize::from(handed_back);
    let winner = match case.outcome {
        Outcome::SetOk if !handed_back => Some((0, false)),
        Outcome::SetErr if !handed_back => Some((0, true)),
        _ => None,
    };
    for cb in &before {
        let (runs, dropped) = (
            cb.record.runs.load(Ordering::SeqCst),
            cb.record.dropped.load(Ordering::SeqCst),
        );
        match case.outcome {
            Outcome::DropResolver => assert_eq!(
                (runs, dropped),
                (0, cb.tokens),
                "a callback registered before the resolver's drop was dropped unrun by it"
            ),
            _ => {
                assert_eq!(runs, 1, "a callback registered before the set ran in it");
                assert_eq!(*cb.record.saw.lock().unwrap(), winner);
            }
        }
    }

    if let Some(workers) = workers {
        results = join_all(workers);
    }
    let registered = results.iter().any(|(log, _, _)| log.registered);
    if handed_back {
        assert!(
            !case.main_keeps && !registered,
            "the set was handed back, yet a handle or callback was there"
        );
        assert!(results.iter().all(|(_, h, m)| h.is_empty() && m.is_empty()));
    } else if case.after_workers && case.outcome != Outcome::DropResolver {
        assert!(
            case.main_keeps || registered,
            "nobody could read the value, yet the set took it"
        );
    }

    // Every observation agrees with the outcome (checked in the workers), and at most one
    // `into_inner` got the value: the one of the last handle, if it went last.
    let mut somes = 0;
    for (log, _, _) in &results {
        for &(_, _, s) in &log.waits {
            match s {
                Seen::Value { .. } => cov.values += 1,
                Seen::Timeout => cov.timeouts += 1,
                Seen::Abandoned => cov.abandoned += 1,
                Seen::Pending => cov.pending += 1,
                Seen::Deadlock => unreachable!(),
            }
        }
        for got in log.into_inner.iter().flatten() {
            assert_eq!(Some(*got), winner, "into_inner gave another value");
            somes += 1;
        }
        cov.into_inner_some += log.into_inner.iter().flatten().count();
        cov.into_inner_none += log.into_inner.iter().filter(|g| g.is_none()).count();
        cov.refused_promise_end_sets += log.refused.len();
    }
    assert!(somes <= 1, "{somes} into_inner calls got the value");
    if main.is_some() || case.after_workers {
        assert_eq!(
            somes, 0,
            "into_inner got the value while main held a handle"
        );
    }

    // What the workers left: every handle and map shows the outcome.
    let expected = match winner {
        Some((id, failed)) => Seen::Value { id, failed },
        None => Seen::Abandoned,
    };
    for (t, (_, handles, maps)) in results.iter().enumerate() {
        for h in handles {
            assert_eq!(
                seen(h.result(Duration::ZERO)),
                expected,
                "thread {t}'s handle"
            );
        }
        for m in maps {
            let got = match m.result(LONG) {
                Ok(&id) => Seen::Value { id, failed: false },
                Err(PromiseError::Failed(e)) => Seen::Value {
                    id: e.id,
                    failed: true,
                },
                Err(e) => seen(Err(e)),
            };
            assert_eq!(got, expected, "thread {t}'s map");
            cov.maps += 1;
        }
    }
    let logs: Vec<CLog> = results.into_iter().map(|(log, _, _)| log).collect();
    if let Some(main) = main {
        // The last handle now: it holds the value, if there is one.
        let got = main.into_inner().map(|r| match r {
            Ok(v) => (v.id, false),
            Err(e) => (e.id, true),
        });
        assert_eq!(got, winner, "main's into_inner of the last handle");
    }

    // Callbacks: each ran once with the value, or never; each dropped (all tokens).
    for (n, cb) in world.callbacks.lock().unwrap().iter().enumerate() {
        let runs = cb.record.runs.load(Ordering::SeqCst);
        cov.callbacks_run += runs;
        cov.callbacks_dropped_unrun += usize::from(runs == 0);
        assert_eq!(runs, usize::from(winner.is_some()), "callback {n} runs");
        assert_eq!(*cb.record.saw.lock().unwrap(), winner, "callback {n}");
        assert_eq!(
            cb.record.dropped.load(Ordering::SeqCst),
            cb.tokens,
            "callback {n} dropped"
        );
    }

    // Every value created was dropped exactly once (every handle is gone now).
    let mut created: Vec<usize> = logs.iter().flat_map(|l| l.refused.clone()).collect();
    if case.outcome != Outcome::DropResolver {
        created.push(0);
    }
    for id in 0..world.ledger.0.len() {
        let expected = u8::from(created.contains(&id));
        assert_eq!(world.ledger.drops(id), expected, "value {id} drop count");
    }
}

#[test]
fn channel_operations_from_many_threads_match_the_model() {
    let mut cov = ChannelCoverage::default();
    let (n, _) = run_cases(
        "channel_operations_from_many_threads_match_the_model",
        0x0DE5_11F0_0004,
        if cfg!(miri) { 4 } else { 400 },
        gen_channel_case,
        |case| run_channel_case(case, &mut cov),
    );
    println!("{n} concurrent channel cases: {cov:#?}");
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

#[test]
#[cfg_attr(
    miri,
    ignore = "pure computation over 600 generated cases: slow under Miri, nothing for it to check"
)]
fn the_channel_generators_cover_every_operation() {
    fn name(debug: String) -> String {
        debug.split(['(', ' ']).next().unwrap().to_owned()
    }
    let mut seen_ops = std::collections::HashSet::new();
    let mut rng = Rng(0x0DE5_11F0_0003);
    for _ in 0..300 {
        for op in gen_sequential_channel_case(&mut Rng(rng.next())) {
            seen_ops.insert(name(format!("{op:?}")));
            if let SOp::Wait(k, _) = op {
                seen_ops.insert(name(format!("{k:?}")));
            }
        }
    }
    let mut rng = Rng(0x0DE5_11F0_0004);
    let mut outcomes = std::collections::HashSet::new();
    for _ in 0..300 {
        let case = gen_channel_case(&mut Rng(rng.next()));
        outcomes.insert(format!("{:?}", case.outcome));
        outcomes.insert(format!("after_workers {}", case.after_workers));
        outcomes.insert(format!("main_keeps {}", case.main_keeps));
        for op in case.scripts.iter().flatten() {
            seen_ops.insert(format!("c {}", name(format!("{op:?}"))));
            if let COp::Wait(k) = op {
                seen_ops.insert(format!("c {}", name(format!("{k:?}"))));
            }
        }
    }
    for name in [
        "Clone",
        "Drop",
        "Wait",
        "Then",
        "ThenElse",
        "Map",
        "IntoFuture",
        "PollFuture",
        "IntoInner",
        "SetOnPromise",
        "ResolverSet",
        "ResolverDrop",
        "IsClosed",
        "Zero",
        "Micros",
        "Blocking",
        "Async",
        "TryResult",
        "c Wait",
        "c Then",
        "c ThenElse",
        "c Clone",
        "c Drop",
        "c Map",
        "c SetOnPromise",
        "c IntoInner",
        "c AwaitOwned",
        "c Yield",
        "c Zero",
        "c Micros",
        "c Millis",
        "c TryResult",
        "c Untimed",
        "c Max",
        "c Async",
        "c Owned",
    ] {
        assert!(
            seen_ops.contains(name),
            "{name} never generated: {seen_ops:?}"
        );
    }
    for outcome in [
        "SetOk",
        "SetErr",
        "DropResolver",
        "after_workers true",
        "after_workers false",
        "main_keeps true",
        "main_keeps false",
    ] {
        assert!(outcomes.contains(outcome), "{outcome}: {outcomes:?}");
    }
}
