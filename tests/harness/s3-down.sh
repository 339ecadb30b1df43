#!/usr/bin/env bash
# s3-down.sh - stop the Ceph daemons started by s3-up.sh (by their pid files).
#   --purge          also delete the state directory (cluster data, logs)
#   --state-dir DIR  same as for s3-up.sh (env LIFEBOAT_S3_DIR, default ${TMPDIR:-/tmp}/lifeboat-s3)
# The unpacked packages in $LIFEBOAT_CACHE/ceph-root are kept; delete that directory by hand.
set -uo pipefail

STATE_DIR=${LIFEBOAT_S3_DIR:-${TMPDIR:-/tmp}/lifeboat-s3}
PURGE=
while [ $# -gt 0 ]; do
  case $1 in
    --purge) PURGE=1; shift ;;
    --state-dir) STATE_DIR=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,5s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "s3-down: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
log() { echo "s3-down: $*" >&2; }

if [ ! -d "$STATE_DIR" ]; then
  log "nothing to do: $STATE_DIR does not exist"
  exit 0
fi
RUN=$STATE_DIR/run

# Wait for a running s3-up.sh to finish rather than pulling the rug from under it.
exec 9>"$STATE_DIR/.lock"
flock -w 300 9 || log "warning: $STATE_DIR/.lock is still held after 300 s; stopping anyway"

# Only signal a pid that is still one of our Ceph daemons (pid files can outlive their process).
is_ours() {
  local exe
  exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  case ${exe% (deleted)} in */ceph-mon|*/ceph-osd|*/radosgw) return 0 ;; *) return 1 ;; esac
}

rc=0
# radosgw first (it is a client of the others), the monitor last.
for name in client.rgw.lifeboat osd.0 mon.a; do
  f=$RUN/$name.pid
  [ -f "$f" ] || continue
  p=$(cat "$f" 2>/dev/null)
  if [ -n "$p" ] && is_ours "$p"; then
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 150); do is_ours "$p" || break; sleep 0.1; done
    if is_ours "$p"; then
      log "$name (pid $p) ignored SIGTERM for 15 s; sending SIGKILL"
      kill -KILL "$p" 2>/dev/null
      for _ in $(seq 1 50); do is_ours "$p" || break; sleep 0.1; done
    fi
    if is_ours "$p"; then
      log "could not stop $name (pid $p)"
      rc=1
      continue
    fi
    log "stopped $name (pid $p)"
  fi
  rm -f "$f"
done

if [ -n "$PURGE" ]; then
  if [ $rc -ne 0 ]; then
    log "not purging $STATE_DIR: some daemons are still running"
  else
    rm -rf "$STATE_DIR"
    log "removed $STATE_DIR"
  fi
fi
exit $rc
