#!/usr/bin/env bash
# Randomized-schedule tests of the WorkerPool under shuttle's PCT scheduler
# (tests/shuttle_pool.rs, against the library built with `--cfg shuttle`: src/sync/shuttle.rs).
# Every test explores the same fixed (seed, PCT depth) runs (RUNS in the test file), so a run
# is reproducible: about 64,000 schedules in all, about a minute on the shared 2-core machine
# it was measured on, plus the build (the shuttle cfg rebuilds every dependency, hence the
# separate target dir).
#
# Only the shuttle test target is built (`--test shuttle_pool`): the other tests and the
# unit tests use std threads and would meet shuttle's types outside a shuttle execution.
#
# A failure prints the test, the seed and shuttle's schedule string; replay it with
#   ORDERSLIP_SHUTTLE_REPLAY='<schedule>' RUSTFLAGS="--cfg shuttle" CARGO_TARGET_DIR=target/shuttle \
#     cargo test --release --test shuttle_pool -- --exact <test> --nocapture
# To explore another seed, run the same with SHUTTLE_RANDOM_SEED=<u64> (shuttle's own override
# of every run's seed); this script unsets it so that CI runs the fixed seeds.
#
# Environment: SHUTTLE_TIMEOUT (seconds, default 600) bounds each test.
set -euo pipefail
cd "$(dirname "$0")/.."

export RUSTFLAGS="--cfg shuttle" CARGO_TARGET_DIR=target/shuttle
unset SHUTTLE_RANDOM_SEED
limit=${SHUTTLE_TIMEOUT:-600}
start=$SECONDS

echo "::: shuttle build: RUSTFLAGS=\"$RUSTFLAGS\" CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo test --release --test shuttle_pool --no-run"
cargo test --release --test shuttle_pool --no-run

tests=$(cargo test -q --release --test shuttle_pool -- --list 2>/dev/null | sed -n 's/: test$//p')
if [ -z "$tests" ]; then
  echo "::: shuttle: no test listed"
  exit 1
fi
for name in $tests; do
  t0=$SECONDS
  echo "::: shuttle $name: cargo test --release --test shuttle_pool -- --exact $name --nocapture"
  timeout "$limit" cargo test -q --release --test shuttle_pool -- --exact "$name" --nocapture
  echo "::: shuttle $name took $((SECONDS - t0)) s"
done
echo "::: shuttle total $((SECONDS - start)) s"
