#!/usr/bin/env bash
# lifeboat side-by-side benchmarks -- the one command to run.
#
#   benches/run.sh                 full run: 2 GiB "mixed" and 2 GiB "image" corpora, 3 reps
#   benches/run.sh --smoke         tiny CI run (64 MiB mixed corpus, 1 rep, well under a minute)
#
# Options handled here (everything else is passed to benches/compare.py):
#   --kinds "mixed image"   corpus kinds to run (space or comma separated)
#   --workdir DIR           corpora/repos/restores/logs (default /var/tmp/lifeboat-bench)
#   --no-install            do not apt-get install missing tools
#   --no-build              do not run cargo build --release
#   --smoke                 see above (also passed to compare.py)
# Useful compare.py options: --reps N, --size-mib N, --lifeboat PATH, --tools LIST,
#   --strict (exit 1 if a lifeboat step fails), --keep, --no-verify.
# Environment: BENCH_NICE=N runs the benchmark under nice -n N (default: not niced).
#
# Results: benches/out/results-<kind>.md and .json
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
OUT="$HERE/out"
SMOKE=0
KINDS=""
WORKDIR=/var/tmp/lifeboat-bench
NO_INSTALL=0
NO_BUILD=0
PASS=()

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1; PASS+=("--smoke") ;;
        --kinds|--kind) KINDS=${2:?--kinds needs a value}; shift ;;
        --kinds=*|--kind=*) KINDS=${1#*=} ;;
        --workdir) WORKDIR=${2:?--workdir needs a value}; shift ;;
        --workdir=*) WORKDIR=${1#*=} ;;
        --no-install) NO_INSTALL=1 ;;
        --no-build) NO_BUILD=1 ;;
        -h|--help) usage; exit 0 ;;
        *) PASS+=("$1") ;;
    esac
    shift
done
if [ -z "$KINDS" ]; then
    if [ "$SMOKE" = 1 ]; then KINDS="mixed"; else KINDS="mixed image"; fi
fi
KINDS=${KINDS//,/ }

log() { printf '[run.sh] %s\n' "$*" >&2; }

# --- 1. tools -------------------------------------------------------------
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/sbin/$1" ] || [ -x "/usr/sbin/$1" ]; }
missing=()
[ -x /usr/bin/time ] || missing+=(time)
have python3 || missing+=(python3)
if [[ " $KINDS " == *" image "* ]]; then
    { have mkfs.ext4 && have debugfs && have dumpe2fs; } || missing+=(e2fsprogs)
fi
if [ "$SMOKE" = 0 ]; then          # smoke runs use peers only if already installed
    have restic || missing+=(restic)
    have borg || missing+=(borgbackup)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$NO_INSTALL" = 1 ]; then
        log "missing (not installing, --no-install): ${missing[*]}"
    else
        SUDO=()
        if [ "$(id -u)" != 0 ]; then
            if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); else log "not root and no sudo: cannot install ${missing[*]}"; fi
        fi
        log "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        if ! "${SUDO[@]}" apt-get install -y "${missing[@]}"; then
            log "apt-get install failed; running apt-get update and retrying"
            "${SUDO[@]}" apt-get update && "${SUDO[@]}" apt-get install -y "${missing[@]}" \
                || log "WARNING: could not install ${missing[*]} -- continuing without"
        fi
    fi
fi
command -v rustic >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/rustic" ] \
    || log "rustic not found (optional; cargo install rustic-rs to include it)"

# --- 2. build lifeboat ----------------------------------------------------
if [ "$NO_BUILD" = 0 ]; then
    log "cargo build --release"
    if ! (cd "$ROOT" && cargo build --release); then
        log "WARNING: cargo build --release failed -- lifeboat steps will be recorded as failed/n/a"
    fi
fi

NICE=()
if [ -n "${BENCH_NICE:-}" ]; then NICE=(nice -n "$BENCH_NICE"); fi

# --- 3. corpora (cached in the work dir, generated only if missing) -------
mkdir -p "$OUT" "$WORKDIR"
for kind in $KINDS; do
    log "preparing corpus: $kind"
    "${NICE[@]}" python3 "$HERE/compare.py" --kind "$kind" --workdir "$WORKDIR" \
        --prepare-only ${PASS[@]+"${PASS[@]}"}
done

# --- 4. benchmark -----------------------------------------------------------
rc=0
for kind in $KINDS; do
    log "benchmark: $kind"
    if ! "${NICE[@]}" python3 "$HERE/compare.py" --kind "$kind" --workdir "$WORKDIR" \
        --out "$OUT/results-$kind.md" ${PASS[@]+"${PASS[@]}"}; then
        rc=1
        log "compare.py failed for $kind"
    fi
    [ -f "$OUT/results-$kind.md" ] && log "wrote $OUT/results-$kind.md"
done
exit $rc
