#!/usr/bin/env bash
# Scale bench: RAM per indexed chunk, and a backup into a repository whose
# index holds 10 million chunks (synthetic), within 1 GiB of RAM.
#
#   bash benches/index_scale.sh                       # N = 0, 1M, 10M; 200 MiB source tree
#   bash benches/index_scale.sh --chunks "0 100000"   # quick (the CI smoke size)
#
# For every N: `lifeboat init` a fresh repository, write a synthetic index of N
# blobs into it with the `index_scale` helper (benches/index_scale.rs, public
# library API only), time `load_index` alone (helper `load`), then run
# `lifeboat backup` of a small real tree under /usr/bin/time -v (peak RSS) --
# inside a hard memory cap when one can be set up (systemd-run scope with
# MemoryMax, or a cgroup v2 directory we may write), else peak RSS only --
# then `lifeboat snapshots`, a second (unchanged) backup, and a `restore` of
# the snapshot, compared file by file with the source.
#
# Options:
#   --chunks "N1 N2 ..."   index sizes (default "0 1000000 10000000")
#   --tree-mib N           size of the backed-up source tree (default 200)
#   --packs-per-file N     synthetic packs per index file (default 64, as backups
#                          write them; 0 = one single index file, as prune writes)
#   --mem-max SIZE         hard memory cap for the backup (default 1G; "" = none)
#   --workdir DIR          default /var/tmp/lifeboat-scale
#   --lifeboat BIN         lifeboat binary (default: build target/release/lifeboat)
#   --helper BIN           index_scale helper (default: cargo bench --no-run)
#   --no-build             use --lifeboat/--helper (or the default paths) as they are
#   --out FILE             Markdown result (default benches/out/index-scale.md; JSON next to it)
# Environment: CARGO_TARGET_DIR is honoured; BENCH_NICE=N runs under nice -n N.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
CHUNKS="0 1000000 10000000"
TREE_MIB=200
PACKS_PER_FILE=64
MEM_MAX=1G
WORKDIR=/var/tmp/lifeboat-scale
LB=""
HELPER=""
BUILD=1
OUT="$HERE/out/index-scale.md"

while [ $# -gt 0 ]; do
    case "$1" in
        --chunks) CHUNKS=${2:?}; shift ;;
        --tree-mib) TREE_MIB=${2:?}; shift ;;
        --packs-per-file) PACKS_PER_FILE=${2:?}; shift ;;
        --mem-max) MEM_MAX=${2-}; shift ;;
        --workdir) WORKDIR=${2:?}; shift ;;
        --lifeboat) LB=${2:?}; shift ;;
        --helper) HELPER=${2:?}; shift ;;
        --no-build) BUILD=0 ;;
        --out) OUT=${2:?}; shift ;;
        -h|--help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "index_scale.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[index_scale %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
NICE=()
if [ -n "${BENCH_NICE:-}" ]; then NICE=(nice -n "$BENCH_NICE"); fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

# --- build ------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
    if [ -z "$LB" ]; then
        log "cargo build --release"
        (cd "$ROOT" && "${NICE[@]}" cargo build --release --bin lifeboat)
        LB=$TARGET/release/lifeboat
    fi
    if [ -z "$HELPER" ]; then
        log "cargo bench --bench index_scale --no-run"
        HELPER=$(cd "$ROOT" && "${NICE[@]}" cargo bench --bench index_scale --no-run \
            --message-format=json 2>/dev/null | python3 -c '
import json, sys
exe = None
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "index_scale" \
            and m.get("executable"):
        exe = m["executable"]
print(exe or "")')
    fi
fi
LB=${LB:-$TARGET/release/lifeboat}
[ -x "$LB" ] || { log "lifeboat binary not found: $LB"; exit 1; }
[ -n "$HELPER" ] && [ -x "$HELPER" ] || { log "index_scale helper not found (build with cargo bench --bench index_scale --no-run)"; exit 1; }
[ -x /usr/bin/time ] || { log "/usr/bin/time missing (apt-get install time)"; exit 1; }

# --- memory cap ---------------------------------------------------------------
# prlimit --as would cap *virtual* memory, which a Rust program with large
# reserved-but-untouched mappings exceeds long before its RSS does; a cgroup
# memory limit caps what is really resident.
CAP_MODE=none
CAP_DIR=""
if [ -n "$MEM_MAX" ]; then
    if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] && \
        systemd-run --quiet --scope -p MemoryMax="$MEM_MAX" -p MemorySwapMax=0 true >/dev/null 2>&1; then
        CAP_MODE=systemd-run
    elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null \
        && mkdir -p /sys/fs/cgroup/lifeboat-scale.$$ 2>/dev/null; then
        CAP_DIR=/sys/fs/cgroup/lifeboat-scale.$$
        if echo "$MEM_MAX" > "$CAP_DIR/memory.max" 2>/dev/null; then
            echo 0 > "$CAP_DIR/memory.swap.max" 2>/dev/null || true
            CAP_MODE=cgroup2
        else
            rmdir "$CAP_DIR"; CAP_DIR=""
        fi
    fi
fi
cleanup() { if [ -n "$CAP_DIR" ]; then rmdir "$CAP_DIR" 2>/dev/null || true; fi; }
trap cleanup EXIT
log "memory cap: $CAP_MODE${MEM_MAX:+ ($MEM_MAX)}"

capped() {   # run "$@" inside the memory cap (if any)
    case "$CAP_MODE" in
        systemd-run) systemd-run --quiet --scope -p MemoryMax="$MEM_MAX" -p MemorySwapMax=0 -- "$@" ;;
        cgroup2) sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CAP_DIR" "$@" ;;
        *) "$@" ;;
    esac
}

# --- source tree ---------------------------------------------------------------
mkdir -p "$WORKDIR" "$(dirname "$OUT")"
TREE=$WORKDIR/tree-${TREE_MIB}m
if [ ! -f "$TREE.json" ]; then
    log "generating a ${TREE_MIB} MiB mixed tree in $TREE"
    rm -rf "$TREE"
    "${NICE[@]}" python3 "$HERE/corpus.py" --out "$TREE" --size-mib "$TREE_MIB" --no-digest > "$TREE.json.tmp"
    mv "$TREE.json.tmp" "$TREE.json"
fi
find "$TREE" -type f -exec cat {} + >/dev/null   # warm page cache

export LIFEBOAT_PASSWORD=index-scale-bench
unset LIFEBOAT_REPOSITORY LIFEBOAT_PASSWORD_FILE LIFEBOAT_PASSWORD_COMMAND
export XDG_CACHE_HOME=$WORKDIR/cache
RESULTS=$WORKDIR/results.jsonl
: > "$RESULTS"

rss_of() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; }
wall_of() { awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$1" | awk -F: '{s=0; for(i=1;i<=NF;i++) s=s*60+$i; print s}'; }
cpu_of() { awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {print u+s}' "$1"; }

for N in $CHUNKS; do
    REPO=$WORKDIR/repo-$N
    LOGS=$WORKDIR/logs/$N
    rm -rf "$REPO" "$LOGS" "$WORKDIR/cache" "$WORKDIR/restore"
    mkdir -p "$LOGS"
    log "N=$N: init"
    "$LB" -r "$REPO" init >/dev/null
    wj='{"mode":"write","chunks":0,"packs":0,"index_files":0,"seconds":0}'
    if [ "$N" -gt 0 ]; then
        log "N=$N: writing the synthetic index"
        wj=$("${NICE[@]}" "$HELPER" write --repo "$REPO" --chunks "$N" --packs-per-file "$PACKS_PER_FILE")
    fi
    idx_bytes=$(du -s -B1 --apparent-size "$REPO/index" 2>/dev/null | cut -f1)
    sync
    log "N=$N: load_index alone"
    lj=$("${NICE[@]}" /usr/bin/time -v -o "$LOGS/load.time" "$HELPER" load --repo "$REPO")
    log "N=$N: $lj"
    log "N=$N: backup of $TREE (cap: $CAP_MODE)"
    set +e
    capped "${NICE[@]}" /usr/bin/time -v -o "$LOGS/backup1.time" "$LB" -r "$REPO" backup "$TREE" --host scale \
        >"$LOGS/backup1.out" 2>"$LOGS/backup1.err"
    b1=$?
    "${NICE[@]}" /usr/bin/time -v -o "$LOGS/snapshots.time" "$LB" -r "$REPO" snapshots --json \
        >"$LOGS/snapshots.out" 2>"$LOGS/snapshots.err"
    sn=$?
    nsnap=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["snapshots"] if isinstance(d, dict) else d))' "$LOGS/snapshots.out" 2>/dev/null || echo "?")
    capped "${NICE[@]}" /usr/bin/time -v -o "$LOGS/backup2.time" "$LB" -r "$REPO" backup "$TREE" --host scale \
        >"$LOGS/backup2.out" 2>"$LOGS/backup2.err"
    b2=$?
    mkdir -p "$WORKDIR/restore"
    capped "${NICE[@]}" /usr/bin/time -v -o "$LOGS/restore.time" "$LB" -r "$REPO" restore latest --target "$WORKDIR/restore" \
        >"$LOGS/restore.out" 2>"$LOGS/restore.err"
    rs=$?
    set -e
    verify=fail
    if [ $rs = 0 ] && diff -r -q "$TREE" "$WORKDIR/restore/${TREE#/}" >"$LOGS/restore.diff" 2>&1; then verify=ok; fi
    rm -rf "$WORKDIR/restore"
    python3 - "$N" "$wj" "$lj" "$idx_bytes" "$LOGS" "$b1" "$sn" "$nsnap" "$b2" "$rs" "$verify" "$CAP_MODE" "$MEM_MAX" >> "$RESULTS" <<'EOF'
import json, sys
n, wj, lj, idx, logs, b1, sn, nsnap, b2, rs, verify, cap, memmax = sys.argv[1:]
def tv(name):
    r = {}
    try:
        for line in open("%s/%s.time" % (logs, name)):
            k, _, v = line.strip().partition(": ")
            if k == "Maximum resident set size (kbytes)": r["rss_kib"] = int(v)
            elif k == "User time (seconds)": r["user_s"] = float(v)
            elif k == "System time (seconds)": r["sys_s"] = float(v)
            elif k.startswith("Elapsed (wall clock)"):
                s = 0.0
                for x in v.split(":"): s = s * 60 + float(x)
                r["wall_s"] = s
    except OSError:
        pass
    return r
print(json.dumps({"chunks": int(n), "write": json.loads(wj), "load": json.loads(lj),
                  "index_bytes": int(idx or 0), "load_time_v": tv("load"),
                  "backup1": dict(tv("backup1"), rc=int(b1)), "snapshots": dict(tv("snapshots"), rc=int(sn), count=nsnap),
                  "backup2": dict(tv("backup2"), rc=int(b2)), "restore": dict(tv("restore"), rc=int(rs), verify=verify),
                  "cap": cap, "mem_max": memmax}))
EOF
    log "N=$N: backup rc=$b1 rss=$(rss_of "$LOGS/backup1.time") KiB wall=$(wall_of "$LOGS/backup1.time") s; snapshots rc=$sn ($nsnap); 2nd backup rc=$b2 rss=$(rss_of "$LOGS/backup2.time") KiB; restore rc=$rs verify=$verify"
    if [ "$N" -ge 1000000 ]; then rm -rf "$REPO"; fi   # do not keep 0.5 GB of synthetic index around
done

# --- report -------------------------------------------------------------------
python3 - "$RESULTS" "$OUT" "$TREE_MIB" "$PACKS_PER_FILE" "$LB" <<'EOF'
import json, os, platform, sys
res_path, out, tree_mib, ppf, lb = sys.argv[1:]
rows = [json.loads(l) for l in open(res_path) if l.strip()]
base = next((r for r in rows if r["chunks"] == 0), None)
L = ["# lifeboat index scale bench", ""]
cpu = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip(); break
mem = int(open("/proc/meminfo").readline().split()[1]) / 2**20
L.append("%s, %d cores, %.1f GiB RAM, kernel %s; source tree %s MiB; %s packs per index file; memory cap: %s%s." % (
    cpu, os.cpu_count(), mem, platform.release(), tree_mib, ppf if ppf != "0" else "all",
    rows[0]["cap"] if rows else "?", (" " + rows[0]["mem_max"]) if rows and rows[0]["cap"] != "none" else
    " (none could be set up: peak RSS only)"))
L.append("")
L.append("| indexed chunks | index files | index MiB | load_index s | RSS after load MiB | peak RSS during load MiB | backup wall s | backup CPU s | backup peak RSS MiB | unchanged re-backup wall s / peak RSS MiB | snapshots | restore |")
L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
def mib(k): return "%.0f" % (k / 1024) if k else "–"
for r in rows:
    b1, b2, ld = r["backup1"], r["backup2"], r["load"]
    L.append("| {:,} | {} | {:.0f} | {:.2f} | {} | {} | {} | {} | {}{} | {} / {} | {} | {} |".format(
        r["chunks"], r["write"].get("index_files", 0), r["index_bytes"] / 2**20, ld["seconds"],
        mib(ld.get("rss_kib_after")), mib(ld.get("peak_rss_kib_during")),
        "%.1f" % b1["wall_s"] if "wall_s" in b1 else "–",
        "%.1f" % (b1.get("user_s", 0) + b1.get("sys_s", 0)), mib(b1.get("rss_kib")),
        "" if b1["rc"] == 0 else " (rc %d)" % b1["rc"],
        "%.1f" % b2["wall_s"] if "wall_s" in b2 else "–", mib(b2.get("rss_kib")),
        "ok (%s)" % r["snapshots"]["count"] if r["snapshots"]["rc"] == 0 else "rc %d" % r["snapshots"]["rc"],
        r["restore"]["verify"]))
L.append("")
if base:
    for r in rows:
        if r["chunks"] >= 100000 and base["backup1"].get("rss_kib") and r["backup1"].get("rss_kib"):
            n = r["chunks"]
            d = (r["backup1"]["rss_kib"] - base["backup1"]["rss_kib"]) * 1024 / n
            ld, lb = r["load"], base["load"]
            steady = ((ld["rss_kib_after"] - ld["rss_kib_before"]) - (lb["rss_kib_after"] - lb["rss_kib_before"])) * 1024 / n
            peak = (ld["peak_rss_kib_during"] - ld["rss_kib_before"]) * 1024 / n
            noisy = abs(r["backup1"]["rss_kib"] - base["backup1"]["rss_kib"]) < 64 * 1024
            L.append("- N = {:,}: (backup peak RSS − backup peak RSS at N = 0) / N = **{:.1f} bytes per indexed "
                     "chunk**{}; the loaded index alone: {:.1f} bytes per chunk resident after `load_index`, "
                     "{:.1f} bytes per chunk at the peak during it.".format(
                         n, d, " (not meaningful: the difference is within the baseline's run-to-run noise, "
                         "and the password KDF's 64 MiB can be the peak; use N ≥ 10 M)" if noisy else "",
                         steady, peak))
L.append("")
open(out, "w").write("\n".join(L))
json.dump(rows, open(os.path.splitext(out)[0] + ".json", "w"), indent=2)
print("\n".join(L))
EOF
log "wrote $OUT"
