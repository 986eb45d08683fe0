#!/usr/bin/env bash
# Miri: the unit and integration tests under the Miri interpreter, which reports undefined
# behaviour, data races, leaks and use of uninitialised memory, and explores weak-memory
# outcomes and thread interleavings. Then the concurrency-heavy test files again with more
# seeds (each seed is another interleaving, weak-memory choice and allocation layout).
#
# - Installs the nightly `miri` component if it can (bounded by MIRI_INSTALL_TIMEOUT);
#   otherwise prints "Miri skipped: <why>" and exits 0.
# - Doctests are not run (`--lib --tests`): each one is a separate crate to interpret and
#   they add minutes while testing little concurrency. `cargo +nightly miri test --doc` runs
#   them when wanted.
# - Tests too slow for Miri are shrunk with `cfg(miri)` or ignored with
#   `#[cfg_attr(miri, ignore = ...)]` in the test files themselves; the #[ignore]d stress
#   tests are not run.
# - `-Zmiri-permissive-provenance`: the waiter stack keeps a pointer in an `AtomicUsize`
#   next to tag bits (src/promise/state.rs) and casts it back, which strict provenance rejects;
#   see docs/LIMITATIONS.md.
#
# Environment: MIRI_TOOLCHAIN (default nightly), MIRI_SEEDS (extra seeds for the second pass,
# a range a..b, default 1..4; empty to skip the pass), MIRI_SEED_TESTS (the test files of the
# second pass), MIRI_INSTALL_TIMEOUT (s, default 300), MIRI_TIMEOUT (s per pass, default 900).
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLCHAIN=${MIRI_TOOLCHAIN:-nightly}
SEEDS=${MIRI_SEEDS-1..4}
SEED_TESTS=${MIRI_SEED_TESTS:-model_based promise_set_and_wait promise_deadlock promise_abandon promise_callbacks promise_async promise_channel memory queue_panics}
INSTALL_TIMEOUT=${MIRI_INSTALL_TIMEOUT:-300}
PASS_TIMEOUT=${MIRI_TIMEOUT:-900}
FLAGS="-Zmiri-permissive-provenance"
start=$SECONDS

skip() {
  echo "Miri skipped: $*"
  exit 0
}

command -v rustup >/dev/null 2>&1 || skip "rustup is not installed"
if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
  echo "::: installing the $TOOLCHAIN toolchain with miri"
  timeout "$INSTALL_TIMEOUT" rustup toolchain install "$TOOLCHAIN" --profile minimal \
    --component miri --component rust-src \
    || skip "no $TOOLCHAIN toolchain, and it could not be installed within ${INSTALL_TIMEOUT} s (offline?)"
fi
installed=$(rustup component list --toolchain "$TOOLCHAIN" --installed 2>/dev/null || true)
if ! grep -q '^miri' <<<"$installed" || ! grep -q '^rust-src' <<<"$installed"; then
  echo "::: adding the miri and rust-src components to $TOOLCHAIN"
  timeout "$INSTALL_TIMEOUT" rustup component add --toolchain "$TOOLCHAIN" miri rust-src \
    || skip "the miri component could not be installed for $TOOLCHAIN within ${INSTALL_TIMEOUT} s (offline, or missing from this nightly)"
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/miri}
timeout "$INSTALL_TIMEOUT" cargo +"$TOOLCHAIN" miri setup \
  || skip "cargo miri setup (building Miri's std) failed or took over ${INSTALL_TIMEOUT} s"
cargo +"$TOOLCHAIN" miri --version

t0=$SECONDS
echo "::: miri: every unit and integration test (default seed)"
MIRIFLAGS="$FLAGS ${MIRIFLAGS:-}" timeout "$PASS_TIMEOUT" \
  cargo +"$TOOLCHAIN" miri test --lib --tests
echo "::: miri: first pass took $((SECONDS - t0)) s"

if [ -n "$SEEDS" ]; then
  t0=$SECONDS
  targets=()
  for t in $SEED_TESTS; do targets+=(--test "$t"); done
  echo "::: miri: ${SEED_TESTS} with seeds $SEEDS"
  MIRIFLAGS="$FLAGS -Zmiri-many-seeds=$SEEDS ${MIRIFLAGS:-}" timeout "$PASS_TIMEOUT" \
    cargo +"$TOOLCHAIN" miri test "${targets[@]}"
  echo "::: miri: seeds pass took $((SECONDS - t0)) s"
fi
echo "::: miri total $((SECONDS - start)) s"
