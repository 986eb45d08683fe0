#!/usr/bin/env bash
# ThreadSanitizer: the unit and integration tests built with -Zsanitizer=thread, std included
# (-Zbuild-std, so std's own atomics are instrumented too). Needs a nightly toolchain with the
# rust-src component on x86_64 Linux; when that cannot be had, prints "TSAN skipped: <why>"
# and exits 0.
#
# TSAN_OPTIONS: halt_on_error=1 makes the first report fail the run. No suppressions are
# needed today; add them to .ci/tsan.supp and they are picked up.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLCHAIN=${TSAN_TOOLCHAIN:-nightly}
INSTALL_TIMEOUT=${TSAN_INSTALL_TIMEOUT:-300}
TARGET=x86_64-unknown-linux-gnu
start=$SECONDS

skip() { echo "TSAN skipped: $*"; exit 0; }

[ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ] || skip "needs x86_64 Linux (this is $(uname -sm))"
command -v rustup >/dev/null 2>&1 || skip "rustup is not installed"
if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
  timeout "$INSTALL_TIMEOUT" rustup toolchain install "$TOOLCHAIN" --profile minimal --component rust-src \
    || skip "no $TOOLCHAIN toolchain and it could not be installed within ${INSTALL_TIMEOUT} s (offline?)"
fi
if ! rustup component list --toolchain "$TOOLCHAIN" --installed 2>/dev/null | grep -q '^rust-src'; then
  timeout "$INSTALL_TIMEOUT" rustup component add --toolchain "$TOOLCHAIN" rust-src \
    || skip "the rust-src component (needed by -Zbuild-std) could not be installed for $TOOLCHAIN"
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/tsan}
export RUSTFLAGS="-Zsanitizer=thread ${RUSTFLAGS:-}"
export RUSTDOCFLAGS="-Zsanitizer=thread ${RUSTDOCFLAGS:-}"
supp=""
[ -f .ci/tsan.supp ] && supp=" suppressions=$PWD/.ci/tsan.supp"
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1${supp} ${TSAN_OPTIONS:-}"

echo "::: tsan build ($TOOLCHAIN, $TARGET)"
cargo +"$TOOLCHAIN" test -Zbuild-std --target "$TARGET" --tests --no-run
echo "::: tsan build took $((SECONDS - start)) s"
t0=$SECONDS
cargo +"$TOOLCHAIN" test -Zbuild-std --target "$TARGET" --tests
echo "::: tsan tests took $((SECONDS - t0)) s; total $((SECONDS - start)) s"
