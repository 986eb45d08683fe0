//! The tour: a small request/response system of the kind quickrpc served.
//!
//! ```text
//!   client threads ─── request + a clone of its reply promise ───> transport thread
//!   (wait with result(timeout);                                          │
//!    a then callback counts)                                             │ put(respond)
//!          ^                                                             v
//!          │                                              ActionQueue "tour-dispatch"
//!          └────────── set_result / set_exception ─────── (one worker, in order)
//! ```
//!
//! Several client threads issue requests. Each request carries a [`Promise`] for its reply;
//! the client waits for it with a timeout. A "transport" thread receives the requests and
//! hands each response to an [`ActionQueue`], whose worker resolves the promises one at a
//! time, in arrival order. What happens to a request depends only on its id, so the expected
//! number of each outcome is known up front:
//!
//! - **ok**: the transport answers; the queue sets the promise.
//! - **failed**: the transport answers with an error ([`Promise::set_exception`]).
//! - **timeout**: the transport never answers but keeps its handle (as a stuck peer would):
//!   the client gets [`PromiseError::Timeout`].
//! - **abandoned**: the transport drops its handle unanswered (a reset connection): the
//!   client learns it at once, [`PromiseError::Abandoned`], instead of waiting out its timeout.
//! - **deadlock refused**: a request the client answers itself (a local cache hit). Its promise
//!   names the client thread as its setter, and the client waits for it *before* answering:
//!   it gets [`PromiseError::Deadlock`] at once instead of hanging.
//!
//! A `then` callback on every remote request counts the promises resolved, and the queue's
//! actions check that they run in the order the transport queued them. At the end the tour
//! prints the throughput, the latency of the answered requests and the count of each outcome,
//! and exits non-zero if a request was lost or any count is wrong.
//!
//! ```sh
//! cargo run --release --example tour           # 100 000 requests, a few seconds
//! cargo run --release --example tour -- 2000   # or TOUR_REQUESTS=2000
//! ```
//!
//! A client timeout is 20 ms. On a badly overloaded machine an answered request can take
//! longer than that: the client then sees a timeout, but the tour looks at the promise again
//! at the end and counts it under its real outcome (and as settled late), so the check stays
//! exact.

use orderslip::{ActionQueue, Promise, PromiseError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// How many requests the tour issues unless told otherwise.
pub const DEFAULT_REQUESTS: u64 = 100_000;
/// How many client threads issue them.
pub const CLIENTS: usize = 4;
/// How long a client waits for a reply.
pub const TIMEOUT: Duration = Duration::from_millis(20);

/// What becomes of a request; decided by its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// The transport answers with a value.
    Answer,
    /// The transport answers with an error.
    Fail,
    /// The transport keeps the reply promise and never answers.
    Ignore,
    /// The transport drops the reply promise unanswered.
    Drop,
    /// The client answers it itself, but waits for it first.
    Loopback,
}

fn fate(id: u64, requests: u64) -> Fate {
    // One of each special fate per `period` requests: 1 in 1000 at full size, and at least
    // a few of each in a small run.
    let period = (requests / 4).clamp(50, 1000);
    match id % period {
        7 => Fate::Fail,
        17 => Fate::Ignore,
        29 => Fate::Drop,
        41 => Fate::Loopback,
        _ => Fate::Answer,
    }
}

/// The service the transport stands for.
fn answer(id: u64) -> u64 {
    id * id
}

/// How a request ended, as its client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Timeout,
    Abandoned,
    Deadlock,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Failed,
        Outcome::Timeout,
        Outcome::Abandoned,
        Outcome::Deadlock,
    ];

    fn expected_for(fate: Fate) -> Outcome {
        match fate {
            Fate::Answer => Outcome::Ok,
            Fate::Fail => Outcome::Failed,
            Fate::Ignore => Outcome::Timeout,
            Fate::Drop => Outcome::Abandoned,
            Fate::Loopback => Outcome::Deadlock,
        }
    }

    fn of<T, E>(result: Result<T, PromiseError<E>>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(PromiseError::Failed(_)) => Outcome::Failed,
            Err(PromiseError::Timeout) => Outcome::Timeout,
            Err(PromiseError::Abandoned) => Outcome::Abandoned,
            Err(PromiseError::Deadlock) => Outcome::Deadlock,
            Err(_) => unreachable!("orderslip 0.1 has no other PromiseError"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Timeout => "timeout",
            Outcome::Abandoned => "abandoned",
            Outcome::Deadlock => "deadlock refused",
        }
    }

    fn meaning(self) -> &'static str {
        match self {
            Outcome::Ok => "answered; the queue set the promise",
            Outcome::Failed => "answered with an error (set_exception)",
            Outcome::Timeout => "never answered, promise kept: the wait timed out",
            Outcome::Abandoned => "promise dropped unanswered: known at once",
            Outcome::Deadlock => "waited on a promise only it could set: told at once",
        }
    }
}

/// What one run of the tour measured and checked.
#[derive(Debug, Default)]
pub struct Report {
    /// Requests issued.
    pub requests: u64,
    /// How long each client waited for a reply.
    pub timeout: Duration,
    /// Wall time from the first request to the last outcome.
    pub elapsed: Duration,
    /// Client-side latency of every request answered within the timeout, sorted.
    pub latencies: Vec<Duration>,
    /// Outcome counts, in the order of `Outcome::ALL`.
    counts: [u64; 5],
    /// The counts the request ids call for.
    expected: [u64; 5],
    /// Requests whose outcome differs from the one their id calls for.
    pub mismatched: u64,
    /// Answers with the wrong value.
    pub wrong_values: u64,
    /// Requests settled (answered or abandoned) only after their client's wait timed out.
    pub late: u64,
    /// `then` callbacks run (one per remote promise that was set).
    pub callbacks: u64,
    /// Queue actions that ran out of order.
    pub out_of_order: u64,
    /// Whether the dispatch queue ran every action it was given.
    pub queue_drained: bool,
}

impl Report {
    /// Requests that ended with no outcome.
    #[must_use]
    pub fn lost(&self) -> u64 {
        self.requests.saturating_sub(self.counted())
    }

    /// Outcomes recorded (one per request, if all is well).
    fn counted(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Everything that went wrong; empty if the run was correct.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.lost() != 0 {
            problems.push(format!("{} requests lost", self.lost()));
        }
        if self.counted() > self.requests {
            let extra = self.counted() - self.requests;
            problems.push(format!("{extra} outcomes too many"));
        }
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            if self.counts[i] != self.expected[i] {
                problems.push(format!(
                    "{}: {} outcomes, {} expected",
                    outcome.name(),
                    self.counts[i],
                    self.expected[i]
                ));
            }
        }
        if self.mismatched != 0 {
            problems.push(format!("{} requests ended wrongly", self.mismatched));
        }
        if self.wrong_values != 0 {
            problems.push(format!("{} wrong answers", self.wrong_values));
        }
        let set = self.counts[0] + self.counts[1];
        if self.callbacks != set {
            problems.push(format!(
                "{} callbacks ran for {set} answers",
                self.callbacks
            ));
        }
        if self.out_of_order != 0 {
            problems.push(format!("{} actions ran out of order", self.out_of_order));
        }
        if !self.queue_drained {
            problems.push("the dispatch queue did not finish its actions".to_string());
        }
        problems
    }

    /// The latency at quantile `q` (0 to 1), shown; "-" if nothing was answered in time.
    fn latency(&self, q: f64) -> String {
        match self.latencies.len() {
            0 => "-".to_string(),
            n => show(self.latencies[((n - 1) as f64 * q).round() as usize]),
        }
    }

    /// The report as a compact table.
    #[must_use]
    pub fn table(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut out = format!(
            "orderslip tour: {} requests, {CLIENTS} client threads, 1 transport thread, \
             1 ActionQueue, client timeout {:?}\n\n",
            self.requests, self.timeout
        );
        out += &format!(
            "  {:>10}  {:>9}  {:>9}  {:>9}   latency of the {} requests answered in time\n",
            "requests/s",
            "p50",
            "p99",
            "max",
            self.latencies.len()
        );
        out += &format!(
            "  {:>10.0}  {:>9}  {:>9}  {:>9}\n\n",
            self.requests as f64 / secs,
            self.latency(0.50),
            self.latency(0.99),
            self.latency(1.0),
        );
        out += &format!("  {:<16}  {:>7}  {:>8}\n", "outcome", "count", "expected");
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            out += &format!(
                "  {:<16}  {:>7}  {:>8}   {}\n",
                outcome.name(),
                self.counts[i],
                self.expected[i],
                outcome.meaning()
            );
        }
        out += &format!("  {:<16}  {:>7}  {:>8}\n\n", "lost", self.lost(), 0);
        out += &format!(
            "  then callbacks run: {}; settled after the client's timeout: {}; \
             actions out of order: {}\n",
            self.callbacks, self.late, self.out_of_order
        );
        out
    }
}

fn show(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos < 10_000 {
        format!("{:.1} µs", nanos as f64 / 1e3)
    } else if nanos < 10_000_000 {
        format!("{:.0} µs", nanos as f64 / 1e3)
    } else {
        format!("{:.1} ms", nanos as f64 / 1e6)
    }
}

/// A request on the "wire": its id and a handle to the promise its client waits for.
struct Request {
    id: u64,
    reply: Promise<u64, String>,
}

/// What a client thread brings back.
#[derive(Default)]
struct ClientLog {
    counts: [u64; 5],
    mismatched: u64,
    wrong_values: u64,
    latencies: Vec<Duration>,
    /// Requests whose wait timed out: looked at again once everything has settled.
    timed_out: Vec<(u64, Promise<u64, String>)>,
}

impl ClientLog {
    fn record(&mut self, id: u64, requests: u64, outcome: Outcome) {
        self.counts[Outcome::ALL.iter().position(|o| *o == outcome).unwrap()] += 1;
        if outcome != Outcome::expected_for(fate(id, requests)) {
            self.mismatched += 1;
        }
    }
}

/// Runs the tour with `requests` requests and reports what happened.
#[must_use]
pub fn run(requests: u64) -> Report {
    run_with_timeout(requests, TIMEOUT)
}

/// [`run`] with another client timeout. However short it is, the counts come out the same:
/// only the number of late ones changes.
#[must_use]
pub fn run_with_timeout(requests: u64, timeout: Duration) -> Report {
    let queue = ActionQueue::builder().name("tour-dispatch").build();
    let next_id = AtomicU64::new(0);
    let callbacks = Arc::new(AtomicU64::new(0));
    // The sequence number of the next action the queue should run.
    let next_action = Arc::new(AtomicU64::new(0));
    let out_of_order = Arc::new(AtomicU64::new(0));

    let start = Instant::now();
    let (logs, unanswered) = thread::scope(|scope| {
        let (wire, inbox) = mpsc::channel::<Request>();

        // The transport: receives requests and queues each response for dispatch, in order.
        let transport = scope.spawn(|| {
            let mut kept = Vec::new();
            let mut sequence = 0;
            for Request { id, reply } in inbox {
                let fate = fate(id, requests);
                match fate {
                    // A stuck peer: the promise stays pending while the transport holds it.
                    Fate::Ignore => kept.push(reply),
                    // A reset connection: the last other handle goes, the client is told.
                    Fate::Drop => drop(reply),
                    Fate::Answer | Fate::Fail => {
                        let (seq, next, misordered) =
                            (sequence, next_action.clone(), out_of_order.clone());
                        sequence += 1;
                        queue.put(move || {
                            if next.fetch_add(1, Ordering::Relaxed) != seq {
                                misordered.fetch_add(1, Ordering::Relaxed);
                            }
                            // Nobody else sets these promises, so neither set can fail.
                            if fate == Fate::Fail {
                                let error = format!("request {id}: no such method");
                                reply.set_exception(error).unwrap();
                            } else {
                                reply.set_result(answer(id)).unwrap();
                            }
                        });
                    }
                    Fate::Loopback => unreachable!("loopback requests never leave the client"),
                }
            }
            kept // keep the ignored requests' promises pending until the end
        });

        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let wire = wire.clone();
                let (next_id, callbacks) = (&next_id, &callbacks);
                scope.spawn(move || client(requests, timeout, next_id, &wire, callbacks))
            })
            .collect();
        drop(wire); // the transport stops when the last client is done

        let logs: Vec<ClientLog> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        (logs, transport.join().unwrap())
    });

    // Every response is queued by now. Actions run in order, so a submitted action runs
    // after all of them: its result says the queue has drained.
    let drained = queue.submit(|| ());
    let queue_drained = drained.result(Duration::from_secs(60)).is_ok();
    let elapsed = start.elapsed();

    let mut report = Report {
        requests,
        timeout,
        elapsed,
        queue_drained,
        ..Report::default()
    };
    for id in 0..requests {
        let expected = Outcome::expected_for(fate(id, requests));
        report.expected[Outcome::ALL.iter().position(|o| *o == expected).unwrap()] += 1;
    }
    for mut log in logs {
        // A timed-out request may have been answered (or abandoned) since: look again, without
        // waiting. The transport still holds the ignored ones, so those are still pending.
        for (id, reply) in std::mem::take(&mut log.timed_out) {
            let outcome = Outcome::of(reply.result(Duration::ZERO));
            if outcome != Outcome::Timeout {
                report.late += 1;
            }
            if let Ok(&value) = reply.result(Duration::ZERO) {
                if value != answer(id) {
                    log.wrong_values += 1;
                }
            }
            log.record(id, requests, outcome);
        }
        for i in 0..5 {
            report.counts[i] += log.counts[i];
        }
        report.mismatched += log.mismatched;
        report.wrong_values += log.wrong_values;
        report.latencies.extend(log.latencies);
    }
    drop(unanswered);
    report.latencies.sort_unstable();
    report.callbacks = callbacks.load(Ordering::Relaxed);
    report.out_of_order = out_of_order.load(Ordering::Relaxed);
    report
}

/// One client thread: takes request ids until there are none left.
fn client(
    requests: u64,
    timeout: Duration,
    next_id: &AtomicU64,
    wire: &mpsc::Sender<Request>,
    callbacks: &Arc<AtomicU64>,
) -> ClientLog {
    let mut log = ClientLog::default();
    loop {
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        if id >= requests {
            return log;
        }

        if fate(id, requests) == Fate::Loopback {
            // Answered from this client's own cache, so this thread is the setter
            // (`Promise::new` designates the current thread). Waiting before answering is
            // the classic self-deadlock; the promise refuses it at once.
            let local: Promise<u64, String> = Promise::new();
            let outcome = Outcome::of(local.result(timeout));
            // What the client should have done first: answer, then read.
            local.set_result(answer(id)).unwrap();
            if local.result(timeout) != Ok(&answer(id)) {
                log.wrong_values += 1;
            }
            log.record(id, requests, outcome);
            continue;
        }

        // The reply is set by the queue's worker thread, which comes and goes with the
        // keep-alive, so no thread is designated: no deadlock check for this promise.
        let reply: Promise<u64, String> = Promise::with_setter(None);
        let counter = Arc::clone(callbacks);
        reply.then(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let issued = Instant::now();
        wire.send(Request {
            id,
            reply: reply.clone(),
        })
        .expect("the transport is down");

        match reply.result(timeout) {
            Err(PromiseError::Timeout) => log.timed_out.push((id, reply)),
            result => {
                if result.is_ok() || matches!(result, Err(PromiseError::Failed(_))) {
                    log.latencies.push(issued.elapsed());
                }
                if let Ok(&value) = result {
                    if value != answer(id) {
                        log.wrong_values += 1;
                    }
                }
                log.record(id, requests, Outcome::of(result));
            }
        }
    }
}

/// The size from the first argument or `TOUR_REQUESTS`, else [`DEFAULT_REQUESTS`].
fn requested_size() -> Result<u64, String> {
    let raw = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("TOUR_REQUESTS").ok());
    match raw {
        None => Ok(DEFAULT_REQUESTS),
        Some(raw) => raw
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|_| format!("not a number of requests: {raw:?}")),
    }
}

fn main() {
    install_logger();
    let requests = match requested_size() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}\nusage: tour [REQUESTS]   (or TOUR_REQUESTS=N)");
            std::process::exit(2);
        }
    };
    let report = run(requests);
    print!("{}", report.table());
    let problems = report.problems();
    if problems.is_empty() {
        println!("\nall {requests} requests accounted for: OK");
    } else {
        for problem in &problems {
            eprintln!("FAILED: {problem}");
        }
        std::process::exit(1);
    }
}

#[path = "support/stderr_logger.rs"]
mod stderr_logger;
use stderr_logger::install_logger;
