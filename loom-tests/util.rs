//! Helpers shared by the loom models.
#![allow(dead_code)] // each model file uses a subset

/// An exhaustive model (unless `LOOM_MAX_PREEMPTIONS` is set in the environment).
pub fn model(f: impl Fn() + Sync + Send + 'static) {
    loom::model::Builder::new().check(f);
}

/// A model bounded to `preemptions` preemptions (or fewer, if `LOOM_MAX_PREEMPTIONS` asks
/// for fewer), for races whose exhaustive run does not fit CI; each such test says why and
/// what it measured. It prints the bound it ran with, so that the CI log shows it.
pub fn bounded(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    let bound = builder
        .preemption_bound
        .unwrap_or(preemptions)
        .min(preemptions);
    builder.preemption_bound = Some(bound);
    eprintln!("loom: bounded to {bound} preemptions");
    builder.check(f);
}
