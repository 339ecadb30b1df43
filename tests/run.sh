#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine, as root.
# Installs what the tests need, then runs: formatting and lint checks, unit,
# property and end-to-end tests, and a benchmark smoke run (no timings judged).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# No incremental caches: a CI build runs once, and they double the target size.
export CARGO_INCREMENTAL=0

log() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }

log "installing test dependencies"
need=()
command -v setpriv >/dev/null || need+=(util-linux)
[ -x /usr/bin/time ] || need+=(time)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${need[@]}"; }
fi
# QEMU and the guest userland for the volume scenarios (tests/vm.rs).
bash tests/vm/install-host.sh
if [ "$(id -u)" != 0 ]; then
  echo "warning: not root: tests that need root (owners, device nodes) will fail" >&2
fi

log "starting the S3 test server (Ceph radosgw on 127.0.0.1)"
# A real S3 server with Object Lock for the S3 tests; stopped on exit.
s3_exports=$(bash tests/harness/s3-up.sh)
eval "$s3_exports"
export LIFEBOAT_TEST_REQUIRE_S3=1
trap 'bash tests/harness/s3-down.sh --purge >/dev/null 2>&1 || true' EXIT

# Free space, for reading a failed run (a full disk shows up as a linker crash).
df -h . /tmp 2>/dev/null || true

log "cargo fmt --check"
cargo fmt --check

log "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

log "cargo test"
# Thread count through the environment: criterion benches (run once each in
# test mode) do not accept libtest's --test-threads flag.
RUST_TEST_THREADS="${LIFEBOAT_TEST_THREADS:-2}" cargo test --all-targets --locked --no-fail-fast

log "benchmark smoke run"
bash benches/run.sh --smoke

log "all tests passed"
