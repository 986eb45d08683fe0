//! The examples, run small as tests: the tour's request/response system with a few hundred
//! requests, the many-connections server with a few hundred connections, every step of the
//! async interop example in a tokio runtime, and a check that the README's examples are the
//! crate documentation's doctests.
//!
//! The examples' files are compiled into this test (`#[path]`), so the test calls their
//! logic directly instead of building and spawning the example binaries. Their checks do not
//! depend on timing: the tour re-examines every request whose wait timed out once everything
//! has settled, so a slow machine can only make a request settle late, never make the check
//! fail (one test runs the tour with a zero timeout to show it).

#![cfg(not(loom))]
// tokio does not build under `--cfg loom`, and the examples need real threads
// Each example is a program of its own that includes `examples/support/stderr_logger.rs`;
// compiling both into this one test loads that small file twice, on purpose.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)] // the example's `main` and the fields only `main` reads
#[path = "../examples/tour.rs"]
mod tour;

#[allow(dead_code)]
#[path = "../examples/async_interop.rs"]
mod async_interop;

#[allow(dead_code)]
#[path = "../examples/connections.rs"]
mod connections;

#[test]
#[cfg_attr(miri, ignore = "whole example programs: too slow under Miri")]
fn the_tour_accounts_for_every_request() {
    let report = tour::run(200);
    println!("{}", report.table());
    assert_eq!(report.requests, 200);
    assert_eq!(report.lost(), 0);
    assert!(report.problems().is_empty(), "{:#?}", report.problems());
}

#[test]
#[cfg_attr(miri, ignore = "whole example programs: too slow under Miri")]
fn the_tour_accounts_for_every_request_when_the_size_is_tiny() {
    // Fewer requests than clients, and too few for every kind of outcome.
    for requests in [0, 1, 3, 30] {
        let report = tour::run(requests);
        assert!(
            report.problems().is_empty(),
            "{requests}: {:#?}",
            report.problems()
        );
    }
}

#[test]
#[cfg_attr(miri, ignore = "whole example programs: too slow under Miri")]
fn the_tour_stays_exact_when_every_wait_times_out_at_once() {
    // A zero timeout makes a client give up on nearly every request before it is answered:
    // the tour must still count each one under its real outcome, once it has settled.
    let report = tour::run_with_timeout(300, std::time::Duration::ZERO);
    println!("{}", report.table());
    assert!(report.problems().is_empty(), "{:#?}", report.problems());
}

#[test]
#[cfg_attr(miri, ignore = "whole example programs: too slow under Miri")]
fn the_connections_example_answers_every_request_in_order() {
    // Fewer connections than clients, then a few hundred.
    for size in [0, 3, 300] {
        let report = connections::run(size);
        println!("{}", report.table());
        assert_eq!(report.requests, size as u64 * connections::ROUNDS);
        assert_eq!(report.lost(), 0);
        assert_eq!(report.answered, report.requests);
        assert_eq!(report.out_of_order, 0);
        assert!(report.peak_pool_threads <= report.max_threads);
        assert!(report.problems().is_empty(), "{:#?}", report.problems());
    }
}

#[test]
#[cfg_attr(miri, ignore = "whole example programs: too slow under Miri")]
fn the_async_interop_example_passes() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async_interop::run());
}

/// The README's Rust examples are copies of the crate documentation's, which run as
/// doctests: this keeps the copies from drifting.
#[test]
fn the_readme_examples_are_the_crate_docs_examples() {
    let readme = include_str!("../README.md");
    let crate_docs = include_str!("../src/lib.rs")
        .lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");

    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in readme.lines() {
        match (&mut current, line) {
            (None, "```rust") => current = Some(Vec::new()),
            (Some(block), "```") => {
                blocks.push(block.join("\n"));
                current = None;
            }
            (Some(block), line) => block.push(line),
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```rust block in README.md");
    assert_eq!(
        blocks.len(),
        7,
        "README.md should have its seven Rust examples"
    );
    for block in blocks {
        assert!(
            crate_docs.contains(&format!("```\n{block}\n```")),
            "this README example is not a crate-docs doctest (src/lib.rs):\n{block}"
        );
    }
}
