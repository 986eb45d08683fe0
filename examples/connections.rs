//! A server with ten thousand connections on a handful of threads.
//!
//! ```text
//!   client threads ── put(handle request) ──> connection 0: ActionQueue ─┐
//!   (each owns a share of the             ──> connection 1: ActionQueue ─┤ one WorkerPool
//!    connections and sends to them          …                            ├─ (max_threads:
//!    round-robin, 64 replies pending)    ──> connection n: ActionQueue ─┘  the cores)
//!          ^                                         │
//!          └──────── Resolver::set_result ───────────┘  each request handled in order
//! ```
//!
//! Every connection has its own [`ActionQueue`], built on one shared [`WorkerPool`]: a
//! connection's requests are handled one at a time and in the order they arrived, as if
//! each connection had a thread of its own, but the whole server runs on at most
//! `pool.max_threads()` threads (the machine's available parallelism), however many
//! connections there are. A queue with nothing to do holds no thread at all.
//!
//! Client threads stand for the network: each owns a share of the connections and sends
//! requests to them round-robin, `ROUNDS` per connection, with up to `IN_FLIGHT` of its
//! requests unanswered at a time (it waits for its oldest reply before it sends more). A
//! request carries the reply end of a [`Promise::channel`]; its handler, run on the
//! connection's queue, checks that it is the connection's next request and answers through
//! the channel's `Resolver`. (`queue.submit(handler)` would give the same promise; the
//! channel shows the shape a server has when the reply is produced by code that is handed
//! the resolver.)
//!
//! The example prints the throughput, the latency from `put` to the reply being set, and
//! the peak number of threads, from the pool and from the operating system, and exits
//! non-zero if a request was lost, answered wrongly or handled out of order.
//!
//! ```sh
//! cargo run --release --example connections          # 10 000 connections, 100 000 requests
//! cargo run --release --example connections -- 500   # or fewer
//! ```

use orderslip::{ActionQueue, Promise, Resolver, WorkerPool};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How many connections the server has unless told otherwise.
pub const DEFAULT_CONNECTIONS: usize = 10_000;
/// Requests each connection receives.
pub const ROUNDS: u64 = 10;
/// Client threads sending them.
pub const CLIENTS: usize = 4;
/// The most requests a client has sent and not seen answered (a window, as a client of a
/// real server has): latency then measures the server, not a queue of the whole run.
pub const IN_FLIGHT: usize = 64;
/// How long a client waits for a reply before it counts the request as lost.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection: its queue, and what its handler keeps between requests.
struct Connection {
    queue: ActionQueue,
    state: Arc<ConnectionState>,
}

/// Touched only by the connection's own handlers, which run one at a time: no lock needed
/// (an atomic only because the handlers may run on different pool threads).
struct ConnectionState {
    id: usize,
    /// The sequence number of the request the connection should see next.
    next: AtomicU64,
}

/// A reply: the answer, and when the handler set it.
struct Reply {
    value: u64,
    answered: Instant,
}

/// The service: what a connection answers to its request number `seq`.
fn answer(connection: usize, seq: u64) -> u64 {
    connection as u64 * 1_000 + seq
}

/// Handles request `seq` on its connection's queue: checks the order, answers.
fn handle(
    state: &ConnectionState,
    seq: u64,
    resolver: Resolver<Reply, String>,
    out_of_order: &AtomicU64,
) {
    // Relaxed: the queue runs this connection's handlers one after another, each after the
    // previous one's effects.
    let expected = state.next.load(Ordering::Relaxed);
    if seq != expected {
        out_of_order.fetch_add(1, Ordering::Relaxed);
    }
    state.next.store(seq + 1, Ordering::Relaxed);
    let reply = Reply {
        value: answer(state.id, seq),
        answered: Instant::now(),
    };
    // `Err` only if the client dropped its end: nobody reads the reply, so nothing is lost.
    let _ = resolver.set_result(reply);
}

/// What one run measured and checked.
#[derive(Debug, Default)]
pub struct Report {
    /// Connections (queues) the server had.
    pub connections: usize,
    /// Requests sent.
    pub requests: u64,
    /// Requests answered with the right value.
    pub answered: u64,
    /// Requests answered with a wrong value.
    pub wrong_values: u64,
    /// Requests whose handler ran out of its connection's order.
    pub out_of_order: u64,
    /// Connections whose handlers did not see all `ROUNDS` requests by the end.
    pub incomplete_connections: usize,
    /// Connections whose queue did not finish its work in time (`join`).
    pub undrained_connections: usize,
    /// Wall time from the first request to the last reply.
    pub elapsed: Duration,
    /// Time from `put` to the reply being set, for every answered request, sorted.
    pub latencies: Vec<Duration>,
    /// The pool's bound, and the most pool threads alive at once.
    pub max_threads: usize,
    /// See `max_threads`.
    pub peak_pool_threads: usize,
    /// The process's thread count before the server started, and its peak while it ran
    /// (the example's own client and sampler threads included); `None` where the count
    /// cannot be read (it comes from `/proc/self/status`).
    pub process_threads: Option<(usize, usize)>,
}

impl Report {
    /// Requests that got no reply at all (timed out, or abandoned).
    #[must_use]
    pub fn lost(&self) -> u64 {
        self.requests
            .saturating_sub(self.answered + self.wrong_values)
    }

    /// Everything that went wrong; empty if the run was correct.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.lost() != 0 {
            problems.push(format!("{} requests lost", self.lost()));
        }
        if self.wrong_values != 0 {
            problems.push(format!("{} wrong answers", self.wrong_values));
        }
        if self.out_of_order != 0 {
            problems.push(format!(
                "{} requests handled out of order",
                self.out_of_order
            ));
        }
        if self.incomplete_connections != 0 {
            problems.push(format!(
                "{} connections did not see all their requests",
                self.incomplete_connections
            ));
        }
        if self.undrained_connections != 0 {
            problems.push(format!(
                "{} connection queues did not finish",
                self.undrained_connections
            ));
        }
        if self.peak_pool_threads > self.max_threads {
            problems.push(format!(
                "the pool ran {} threads, over its bound of {}",
                self.peak_pool_threads, self.max_threads
            ));
        }
        problems
    }

    /// The latency at quantile `q` (0 to 1), shown; "-" if nothing was answered.
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
            "orderslip connections: {} connections (one ActionQueue each) on one WorkerPool \
             of at most {} threads; {CLIENTS} client threads, {} requests\n\n",
            self.connections, self.max_threads, self.requests
        );
        out += &format!(
            "  {:>10}  {:>9}  {:>9}  {:>9}   put → reply set, {} replies\n",
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
        out += &format!(
            "  threads: pool peak {} (max_threads {}); ",
            self.peak_pool_threads, self.max_threads
        );
        out += &match self.process_threads {
            Some((before, peak)) => format!(
                "process {before} before the server, peak {peak} while it ran \
                 ({} beyond the example's {} clients and sampler)\n",
                peak.saturating_sub(before + CLIENTS + 1),
                CLIENTS + 1
            ),
            None => "process count not available on this platform\n".to_string(),
        };
        out += &format!(
            "  answered {}, wrong {}, lost {}, out of order {}, connections incomplete {}\n",
            self.answered,
            self.wrong_values,
            self.lost(),
            self.out_of_order,
            self.incomplete_connections
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

/// The process's thread count (`Threads:` in `/proc/self/status`); `None` off Linux.
fn process_threads() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Threads:"))?;
    line.trim().parse().ok()
}

/// What a client thread brings back.
#[derive(Default)]
struct ClientLog {
    answered: u64,
    wrong_values: u64,
    latencies: Vec<Duration>,
}

/// Runs the server with `connections` connections and reports what happened.
#[must_use]
pub fn run(connections: usize) -> Report {
    let threads_before = process_threads();
    let pool = WorkerPool::new();
    let server: Vec<Connection> = (0..connections)
        .map(|id| Connection {
            queue: ActionQueue::builder()
                .pool(&pool)
                .name(format!("connection-{id}"))
                .build(),
            state: Arc::new(ConnectionState {
                id,
                next: AtomicU64::new(0),
            }),
        })
        .collect();
    let out_of_order = Arc::new(AtomicU64::new(0));

    // Samples the process's thread count while the clients run.
    let sampling = AtomicBool::new(true);
    let peak_threads = AtomicUsize::new(0);

    let start = Instant::now();
    let logs: Vec<ClientLog> = thread::scope(|scope| {
        scope.spawn(|| loop {
            if let Some(n) = process_threads() {
                peak_threads.fetch_max(n, Ordering::Relaxed);
            }
            if !sampling.load(Ordering::Relaxed) {
                return;
            }
            thread::sleep(Duration::from_millis(1));
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                // Client `c` owns connections c, c + CLIENTS, c + 2·CLIENTS, …
                let mine: Vec<&Connection> = server.iter().skip(client).step_by(CLIENTS).collect();
                let out_of_order = &out_of_order;
                scope.spawn(move || client_thread(&mine, out_of_order))
            })
            .collect();
        let logs = clients.into_iter().map(|c| c.join().unwrap()).collect();
        sampling.store(false, Ordering::Relaxed);
        logs
    });
    let elapsed = start.elapsed();

    let mut report = Report {
        connections,
        requests: connections as u64 * ROUNDS,
        elapsed,
        max_threads: pool.max_threads(),
        ..Report::default()
    };
    for log in logs {
        report.answered += log.answered;
        report.wrong_values += log.wrong_values;
        report.latencies.extend(log.latencies);
    }
    report.latencies.sort_unstable();
    report.out_of_order = out_of_order.load(Ordering::Relaxed);
    for connection in server {
        // Every reply is in, so only a lost request could still be queued: `join` waits for
        // it (and gives the queue up).
        if !connection.queue.join(REPLY_TIMEOUT) {
            report.undrained_connections += 1;
        }
        if connection.state.next.load(Ordering::Relaxed) != ROUNDS {
            report.incomplete_connections += 1;
        }
    }
    report.peak_pool_threads = pool.peak_threads();
    report.process_threads = threads_before.zip(Some(peak_threads.load(Ordering::Relaxed)));
    report
}

/// One client: sends `ROUNDS` requests to each of its connections, round-robin, with at
/// most [`IN_FLIGHT`] unanswered: before sending more it waits for its oldest reply, and
/// checks it.
fn client_thread(connections: &[&Connection], out_of_order: &Arc<AtomicU64>) -> ClientLog {
    let mut log = ClientLog::default();
    let mut pending = VecDeque::with_capacity(IN_FLIGHT);
    for seq in 0..ROUNDS {
        for connection in connections {
            if pending.len() == IN_FLIGHT {
                log.check(pending.pop_front().unwrap());
            }
            let (resolver, reply) = Promise::<Reply, String>::channel();
            let state = Arc::clone(&connection.state);
            let out_of_order = Arc::clone(out_of_order);
            let sent = Instant::now();
            connection
                .queue
                .put(move || handle(&state, seq, resolver, &out_of_order));
            pending.push_back((answer(connection.state.id, seq), sent, reply));
        }
    }
    for request in pending {
        log.check(request);
    }
    log
}

impl ClientLog {
    /// Waits for a request's reply and checks it: `(expected value, sent at, reply)`.
    fn check(&mut self, (expected, sent, reply): (u64, Instant, Promise<Reply, String>)) {
        // A lost request: `Timeout`, or `Abandoned` if its handler was dropped unrun.
        if let Ok(reply) = reply.result(REPLY_TIMEOUT) {
            if reply.value == expected {
                self.answered += 1;
                self.latencies
                    .push(reply.answered.saturating_duration_since(sent));
            } else {
                self.wrong_values += 1;
            }
        }
    }
}

/// The number of connections from the first argument, else [`DEFAULT_CONNECTIONS`].
fn requested_size() -> Result<usize, String> {
    match std::env::args().nth(1) {
        None => Ok(DEFAULT_CONNECTIONS),
        Some(raw) => raw
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|_| format!("not a number of connections: {raw:?}")),
    }
}

fn main() {
    install_logger();
    let connections = match requested_size() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}\nusage: connections [CONNECTIONS]");
            std::process::exit(2);
        }
    };
    let report = run(connections);
    print!("{}", report.table());
    let problems = report.problems();
    if problems.is_empty() {
        println!(
            "\nall {} requests answered, each connection's in order: OK",
            report.requests
        );
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
