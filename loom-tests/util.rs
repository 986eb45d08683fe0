//! Helpers shared by the loom models.
#![allow(dead_code)] // each model file uses a subset

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// An exhaustive model (unless `LOOM_MAX_PREEMPTIONS` is set in the environment).
pub fn model(f: impl Fn() + Sync + Send + 'static) {
    check(loom::model::Builder::new(), f);
}

/// A model bounded to `preemptions` preemptions (or fewer, if `LOOM_MAX_PREEMPTIONS` asks
/// for fewer), for races whose exhaustive run does not fit CI; each such test says why and
/// what it measured. It prints the bound it ran with, so that the CI log shows it.
/// `LOOM_FORCE_BOUND=n` runs it at exactly `n` instead, to measure another bound.
pub fn bounded(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    let bound = match std::env::var("LOOM_FORCE_BOUND") {
        Ok(n) => n
            .parse()
            .expect("LOOM_FORCE_BOUND: a number of preemptions"),
        Err(_) => builder
            .preemption_bound
            .unwrap_or(preemptions)
            .min(preemptions),
    };
    builder.preemption_bound = Some(bound);
    eprintln!("loom: bounded to {bound} preemptions");
    check(builder, f);
}

/// Runs the model and prints how many executions loom explored (a measure of the model's
/// size that, unlike its run time, does not depend on the machine's load).
fn check(builder: loom::model::Builder, f: impl Fn() + Sync + Send + 'static) {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    builder.check(move || {
        // ORDERING: Relaxed: a std counter outside the model, read after `check` returns.
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    // ORDERING: Relaxed: `check` has returned; the model's threads are done.
    eprintln!("loom: {} executions", runs.load(Ordering::Relaxed));
}
