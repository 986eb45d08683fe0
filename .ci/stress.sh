#!/usr/bin/env bash
# Stress tests (tests/stress.rs) in release, at a bounded size that fits in ~3 minutes on a
# shared 2-core machine: 10 rounds of 10^6 promises, 10 rounds of 10^6 actions and 10 rounds
# of 10^6 actions on 1,000 queues of a 2-thread pool (full
# scale, under a second a round), one round of 10^6 timed-out waits (10-40 s: each
# timed-out wait spins and yields before it parks, which is slow on a loaded machine), and
# 10 rounds of each channel test (10^6 channels resolved or abandoned under two waiters;
# 2*10^5 channels with four waiting threads each). Each round checks that allocations and
# frees balance and that every value is dropped exactly once. Measured here: 42 s in all on
# 2 busy cores, plus the release build.
#
# Longer soak (not run here; the tests serialise themselves, so no --test-threads=1 needed):
#   ORDERSLIP_STRESS_SCALE=50 cargo test --release --test stress -- --ignored --nocapture
#   ORDERSLIP_STRESS_ROUNDS=100 cargo test --release --test stress -- --ignored
#
# Each test is run on its own below (--exact) so that its time is printed; --test-threads=1
# is kept for clarity, not needed.
#
# Environment: ORDERSLIP_STRESS_SCALE / ORDERSLIP_STRESS_WAIT_SCALE override the two scales,
# ORDERSLIP_STRESS_ROUNDS the rounds of all but the timed-out-waits test; STRESS_TIMEOUT (seconds,
# default 600) bounds each test.
set -euo pipefail
cd "$(dirname "$0")/.."

scale=${ORDERSLIP_STRESS_SCALE:-1}
wait_scale=${ORDERSLIP_STRESS_WAIT_SCALE:-1}
rounds=${ORDERSLIP_STRESS_ROUNDS:-10}
limit=${STRESS_TIMEOUT:-600}
start=$SECONDS

echo "::: stress build"
cargo test --release --test stress --no-run

run() {
  local s=$1 r=$2 name=$3
  local t0=$SECONDS
  ORDERSLIP_STRESS_SCALE=$s ORDERSLIP_STRESS_ROUNDS=$r timeout "$limit" \
    cargo test -q --release --test stress -- --ignored --test-threads=1 --nocapture --exact "$name"
  echo "::: stress $name (scale $s, $r rounds) took $((SECONDS - t0)) s"
}

run "$scale" "$rounds" a_million_promises_created_set_awaited_and_dropped_across_threads
run "$scale" "$rounds" a_million_actions_through_a_keep_alive_zero_queue_from_four_producers
run "$scale" "$rounds" a_million_actions_on_a_thousand_pool_queues_from_four_producers
run "$wait_scale" 1 a_million_timed_out_waits_on_one_pending_promise_leave_nothing_behind
run "$scale" "$rounds" a_million_channels_resolved_or_abandoned_while_clones_wait_across_threads
run "$scale" "$rounds" channels_with_four_waiting_threads_each_are_all_woken_by_one_set_or_drop
echo "::: stress total $((SECONDS - start)) s"
