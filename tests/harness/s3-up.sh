#!/usr/bin/env bash
# s3-up.sh - start a throwaway single-node Ceph cluster (1 mon + 1 OSD + radosgw) on 127.0.0.1
# that serves S3 with Object Lock enforced, for lifeboat's S3 backend tests.
#
# The Ceph binaries come from Debian 12's packages, downloaded with
# `apt-get install --download-only` and unpacked with `dpkg -x` into a cache directory, so nothing
# is installed or started system-wide. Idempotent: if the cluster is already up it only prints
# the exports again. On success, stdout carries nothing but `export` lines, so a caller can do
#
#     eval "$(tests/harness/s3-up.sh)"
#
# Everything else (progress, errors, log tails) goes to stderr. See tests/harness/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: s3-up.sh [options]

Options (each has an environment variable; the option wins):
  --state-dir DIR    cluster state, logs, pid files   LIFEBOAT_S3_DIR       ${TMPDIR:-/tmp}/lifeboat-s3
  --port N           radosgw (S3) port on 127.0.0.1   LIFEBOAT_S3_PORT      7480
  --mon-port N       ceph-mon port on 127.0.0.1       LIFEBOAT_S3_MON_PORT  6789
  --access-key KEY   S3 access key                    LIFEBOAT_S3_ACCESS_KEY  testkey
  --secret-key KEY   S3 secret key                    LIFEBOAT_S3_SECRET_KEY  testsecret
  --store KIND       memstore (RAM, lost when the OSD stops) or
                     bluestore (4 GiB sparse file, survives restarts)
                                                      LIFEBOAT_S3_STORE     memstore
  --timeout SECS     how long to wait for each stage  LIFEBOAT_S3_TIMEOUT   120
  --nice N           niceness of the daemons          LIFEBOAT_S3_NICE      10
  -h, --help         this text

Also: LIFEBOAT_CACHE (default /var/cache/lifeboat-test) holds the unpacked packages in
$LIFEBOAT_CACHE/ceph-root; fetching them needs root (apt-get).
EOF
}

STATE_DIR=${LIFEBOAT_S3_DIR:-${TMPDIR:-/tmp}/lifeboat-s3}
PORT=${LIFEBOAT_S3_PORT:-7480}
MON_PORT=${LIFEBOAT_S3_MON_PORT:-6789}
ACCESS_KEY=${LIFEBOAT_S3_ACCESS_KEY:-testkey}
SECRET_KEY=${LIFEBOAT_S3_SECRET_KEY:-testsecret}
STORE=${LIFEBOAT_S3_STORE:-memstore}
TIMEOUT=${LIFEBOAT_S3_TIMEOUT:-120}
NICE=${LIFEBOAT_S3_NICE:-10}
CACHE=${LIFEBOAT_CACHE:-/var/cache/lifeboat-test}

while [ $# -gt 0 ]; do
  case $1 in
    --state-dir) STATE_DIR=${2:?}; shift 2 ;;
    --port) PORT=${2:?}; shift 2 ;;
    --mon-port) MON_PORT=${2:?}; shift 2 ;;
    --access-key) ACCESS_KEY=${2:?}; shift 2 ;;
    --secret-key) SECRET_KEY=${2:?}; shift 2 ;;
    --store) STORE=${2:?}; shift 2 ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --nice) NICE=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "s3-up: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

REGION=us-east-1
UID_NAME=lifeboat-test
RGW_NAME=client.rgw.lifeboat
DAEMONS="mon.a osd.0 $RGW_NAME" # start order; s3-down.sh stops them in reverse
ROOT=$CACHE/ceph-root
PACKAGES=(radosgw ceph-mon ceph-osd ceph-common)

T0=$(date +%s.%N)
elapsed() { printf '%.1f' "$(echo "$(date +%s.%N) - $T0" | bc)"; }
log() { echo "s3-up: [$(elapsed)s] $*" >&2; }

case $STORE in memstore|bluestore) ;; *) log "--store must be memstore or bluestore, not '$STORE'"; exit 2 ;; esac
for n in "$PORT" "$MON_PORT" "$TIMEOUT" "$NICE"; do
  [[ $n =~ ^-?[0-9]+$ ]] || { log "not a number: '$n'"; exit 2; }
done
for v in "$ACCESS_KEY" "$SECRET_KEY"; do
  [[ $v =~ ^[A-Za-z0-9+/=_.-]+$ ]] || { log "keys may only use [A-Za-z0-9+/=_.-]"; exit 2; }
done
mkdir -p "$STATE_DIR"
STATE_DIR=$(cd "$STATE_DIR" && pwd -P)
CONF=$STATE_DIR/ceph.conf
RUN=$STATE_DIR/run
LOGS=$STATE_DIR/log
# Unix socket paths are limited to 107 bytes.
if [ ${#RUN} -gt 70 ]; then log "state dir path too long for admin sockets: $STATE_DIR"; exit 2; fi

STARTED=() # daemons started by this invocation, stopped again if we fail
trap 'die "unexpected failure (exit $?) at line $LINENO"' ERR

stop_daemon() { # name
  local f=$RUN/$1.pid p i
  [ -f "$f" ] || return 0
  p=$(cat "$f" 2>/dev/null || true)
  if [ -n "$p" ] && is_ours "$p"; then
    kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 1 100); do is_ours "$p" || break; sleep 0.1; done
    is_ours "$p" && kill -KILL "$p" 2>/dev/null || true
  fi
  rm -f "$f"
}

fail() { log "ERROR: $*"; exit 1; } # a usage/state problem: no logs to show, nothing started

die() {
  local f i
  log "ERROR: $*"
  for f in "$LOGS"/*; do
    [ -s "$f" ] || continue
    echo "----- tail of $f -----" >&2
    tail -n 15 "$f" >&2
  done
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop_daemon "${STARTED[i]}"; done
  [ ${#STARTED[@]} -eq 0 ] || log "stopped the daemons started by this run: ${STARTED[*]}"
  log "state and logs kept in $STATE_DIR (remove with s3-down.sh --purge)"
  exit 1
}

# ---------------------------------------------------------------- binaries -------------------
apt_fetch() { # dir
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --download-only \
    -o Dir::Cache::archives="$1" -o APT::Sandbox::User=root "${PACKAGES[@]}"
}

fetch_ceph() {
  [ -f "$ROOT/.lifeboat-complete" ] && return 0
  mkdir -p "$CACHE"
  exec 8>"$CACHE/.ceph-root.lock"
  flock -w "$((TIMEOUT * 5))" 8 || die "timed out waiting for another s3-up.sh to fetch Ceph"
  if [ ! -f "$ROOT/.lifeboat-complete" ]; then
    [ "$(id -u)" = 0 ] || die "$ROOT is missing and fetching Debian packages needs root"
    log "fetching Ceph packages (${PACKAGES[*]}) into $CACHE (once)"
    local debs=$CACHE/debs tmp=$CACHE/ceph-root.tmp f
    rm -rf "$debs" "$tmp"
    mkdir -p "$debs/partial" "$tmp"
    if ! apt_fetch "$debs" >"$CACHE/apt.log" 2>&1; then
      log "download failed; running apt-get update and retrying"
      apt-get update -q >>"$CACHE/apt.log" 2>&1 || true
      apt_fetch "$debs" >>"$CACHE/apt.log" 2>&1 || { tail -n 30 "$CACHE/apt.log" >&2; die "apt-get could not download ${PACKAGES[*]}"; }
    fi
    for f in "$debs"/*.deb; do
      [ -e "$f" ] || continue
      dpkg -x "$f" "$tmp" || die "dpkg -x $f failed"
      dpkg-deb -f "$f" Package Version | paste -sd' ' >>"$tmp/.lifeboat-packages"
    done
    date -u +%FT%TZ >"$tmp/.lifeboat-complete"
    rm -rf "$ROOT"
    mv "$tmp" "$ROOT"
    rm -rf "$debs"
    log "unpacked $(wc -l <"$ROOT/.lifeboat-packages" 2>/dev/null || echo 0) packages into $ROOT at $(elapsed) s"
  fi
  exec 8>&-
}

# A package that was already installed system-wide is not downloaded, so look in both places.
find_path() { # relative path under / ; prints the first existing one
  local p
  for p in "$ROOT/$1" "/$1"; do [ -e "$p" ] && { echo "$p"; return 0; }; done
  die "cannot find $1 in $ROOT or /"
}

fetch_ceph
LIB=x86_64-linux-gnu
# (Debian 12 still ships some libraries in /lib, e.g. libnl)
export LD_LIBRARY_PATH=$ROOT/usr/lib/$LIB:$ROOT/lib/$LIB:$ROOT/usr/lib/$LIB/ceph${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
MON_BIN=$(find_path usr/bin/ceph-mon)
OSD_BIN=$(find_path usr/bin/ceph-osd)
RGW_BIN=$(find_path usr/bin/radosgw)
ADMIN_BIN=$(find_path usr/bin/radosgw-admin)
MONMAPTOOL=$(find_path usr/bin/monmaptool)
AUTHTOOL=$(find_path usr/bin/ceph-authtool)
RADOS_PY=$(find_path usr/lib/python3/dist-packages/rados.cpython-311-x86_64-linux-gnu.so)
CLS_DIR=$(find_path usr/lib/$LIB/rados-classes)
PLUGIN_DIR=$(find_path usr/lib/$LIB/ceph)
EC_DIR=$(find_path usr/lib/$LIB/ceph/erasure-code)
SYS_PY=/usr/bin/python3 # Debian's python: the rados module is built for it
[ -x $SYS_PY ] || die "$SYS_PY is needed (python3-rados from the packages is built for it)"

# Is pid $1 alive and one of our Ceph daemons (guards against pid reuse)?
is_ours() {
  local exe
  exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  case ${exe% (deleted)} in */ceph-mon|*/ceph-osd|*/radosgw) return 0 ;; *) return 1 ;; esac
}
alive() { # daemon name
  local p
  p=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
  [ -n "$p" ] && is_ours "$p"
}
rgw_answers() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/"; }

# ---------------------------------------------------------------- state ----------------------
exec 9>"$STATE_DIR/.lock"
flock -w "$TIMEOUT" 9 || fail "another s3-up.sh/s3-down.sh holds $STATE_DIR/.lock"

SETTINGS="store=$STORE"
wipe_state() { find "$STATE_DIR" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +; }
stop_all() { local d; for d in $RGW_NAME osd.0 mon.a; do stop_daemon "$d"; done; }
if [ ! -f "$STATE_DIR/created" ]; then
  # never created, or creation was interrupted: start from a clean slate
  stop_all
  wipe_state
elif [ "$(cat "$STATE_DIR/settings" 2>/dev/null)" != "$SETTINGS" ]; then
  for d in $DAEMONS; do
    alive "$d" && fail "cluster in $STATE_DIR is running with $(cat "$STATE_DIR/settings"), not $SETTINGS; run s3-down.sh first"
  done
  log "state in $STATE_DIR was made with $(cat "$STATE_DIR/settings"); recreating it with $SETTINGS"
  wipe_state
elif [ "$STORE" = memstore ] && ! alive osd.0; then
  # memstore keeps the OSD's data in RAM: once the OSD is gone, so are the cluster's pools.
  stop_all
  log "memstore OSD is not running; recreating the cluster from scratch"
  wipe_state
fi

write_conf() { # fsid
  cat >"$CONF.tmp" <<EOF
# Written by lifeboat's tests/harness/s3-up.sh; regenerated on every start.
[global]
fsid = $1
mon host = v1:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
keyring = $STATE_DIR/keyring
run dir = $RUN
pid file = $RUN/\$name.pid
admin socket = $RUN/\$name.asok
log file = $LOGS/\$name.log
crash dir = $STATE_DIR/crash
osd class dir = $CLS_DIR
erasure code dir = $EC_DIR
plugin dir = $PLUGIN_DIR
mon data = $STATE_DIR/mon/\$name
osd data = $STATE_DIR/osd/\$name
# one OSD, one copy
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail crit = 1
mon data avail warn = 1
mon cluster log to file = false
# commit map changes quickly (radosgw creates its pools one by one on first start)
paxos propose interval = 0.1
paxos min wait = 0.01
# s3-up.sh puts osd.0 into the CRUSH map itself (see register_osd)
osd crush update on start = false
osd class update on start = false
osd objectstore = $STORE
# fewer threads, less RAM
osd op num shards = 1
osd op num threads per shard = 2
osd memory target = 536870912
osd min pg log entries = 100
osd max pg log entries = 500
osd pg log dups tracked = 100
# memstore: data lives in the OSD's RAM; plain bufferlists rather than 64 KiB page sets
# (with page sets the OSD used ~320 MB instead of ~200 MB after one s3-smoke.py run)
memstore device bytes = 4294967296
memstore page set = false
# bluestore: a sparse 4 GiB file (needs O_DIRECT, so not on tmpfs)
bluestore block path = $STATE_DIR/osd/\$name/block.file
bluestore block create = true
bluestore block size = 4294967296
bluestore cache autotune = false
bluestore cache size = 134217728

[$RGW_NAME]
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $STATE_DIR/rgw
rgw thread pool size = 64
rgw dynamic resharding = false
rgw enable usage log = false
# Deleted data goes to the garbage collector, which by default waits 2 h: a
# test server would fill its memstore with deleted objects. Collect quickly.
rgw gc obj min wait = 60
rgw gc processor period = 60
rgw gc processor max time = 30
EOF
  mv "$CONF.tmp" "$CONF"
}

print_exports() {
  printf 'export AWS_ACCESS_KEY_ID=%q\n' "$ACCESS_KEY"
  printf 'export AWS_SECRET_ACCESS_KEY=%q\n' "$SECRET_KEY"
  printf 'export AWS_ENDPOINT_URL=%q\n' "http://127.0.0.1:$PORT"
  printf 'export AWS_REGION=%q\n' "$REGION"
  printf 'export AWS_DEFAULT_REGION=%q\n' "$REGION"
  # Current AWS SDKs add a CRC32 checksum to every upload by default, and the Rust SDK sends
  # streaming bodies as aws-chunked with a trailing checksum, which radosgw 16.2 rejects
  # (XAmzContentSHA256Mismatch). These standard settings limit checksums to the operations
  # that require one (see README.md).
  echo 'export AWS_REQUEST_CHECKSUM_CALCULATION=when_required'
  echo 'export AWS_RESPONSE_CHECKSUM_VALIDATION=when_required'
  echo 'export AWS_EC2_METADATA_DISABLED=true'
}

ensure_user() {
  local want info
  want="$ACCESS_KEY:$(printf %s "$SECRET_KEY" | sha256sum | cut -c1-16)"
  [ "$(cat "$STATE_DIR/user" 2>/dev/null)" = "$want" ] && return 0
  if info=$("$ADMIN_BIN" -c "$CONF" -n client.admin user info --uid="$UID_NAME" 2>/dev/null); then
    if ! printf %s "$info" | grep -qF "\"access_key\": \"$ACCESS_KEY\""; then
      "$ADMIN_BIN" -c "$CONF" -n client.admin key create --uid="$UID_NAME" --key-type=s3 \
        --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null 2>>"$LOGS/admin.log" \
        || die "radosgw-admin key create failed"
    else
      "$ADMIN_BIN" -c "$CONF" -n client.admin key rm --uid="$UID_NAME" --key-type=s3 \
        --access-key="$ACCESS_KEY" >/dev/null 2>>"$LOGS/admin.log" || true
      "$ADMIN_BIN" -c "$CONF" -n client.admin key create --uid="$UID_NAME" --key-type=s3 \
        --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null 2>>"$LOGS/admin.log" \
        || die "radosgw-admin key create failed"
    fi
  else
    "$ADMIN_BIN" -c "$CONF" -n client.admin user create --uid="$UID_NAME" --display-name="lifeboat tests" \
      --max-buckets=0 --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null 2>>"$LOGS/admin.log" \
      || die "radosgw-admin user create failed"
  fi
  echo "$want" >"$STATE_DIR/user"
}

# One signed request end to end (also makes radosgw create its bucket index/data pools now rather
# than during the first test). curl's SigV4 needs x-amz-content-sha256 spelled out.
s3_curl() { # method path [body]
  local hash
  hash=$(printf %s "${3:-}" | sha256sum | cut -d' ' -f1)
  curl -sS -o /dev/null -w '%{http_code}' --max-time 30 -H "x-amz-content-sha256: $hash" \
    --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" -X "$1" \
    ${3:+--data-binary "$3"} "http://127.0.0.1:$PORT$2" 2>>"$LOGS/admin.log" || true
}
warm_up() {
  local b=lifeboat-warmup-$$ code method path want body
  code=$(s3_curl GET /)
  [ "$code" = 200 ] || die "signed ListBuckets as $ACCESS_KEY gave HTTP $code"
  for step in "PUT /$b 200" "PUT /$b/o 200 x" "DELETE /$b/o 204" "DELETE /$b 204"; do
    read -r method path want body <<<"$step"
    code=$(s3_curl "$method" "$path" "$body")
    [ "$code" = "$want" ] || die "warm-up $method $path gave HTTP $code, expected $want"
  done
}

# Already fully up? Then this is cheap.
all_up=1
for d in $DAEMONS; do alive "$d" || all_up=; done
if [ -n "$all_up" ] && [ -f "$CONF" ] && grep -q "endpoint=127.0.0.1:$PORT\$" "$CONF" && rgw_answers; then
  ensure_user
  log "already running ($STORE) on http://127.0.0.1:$PORT (state $STATE_DIR)"
  print_exports
  exit 0
fi

# ---------------------------------------------------------------- start ----------------------
mkdir -p "$RUN" "$LOGS" "$STATE_DIR/crash" "$STATE_DIR/rgw"
if ! alive $RGW_NAME && rgw_answers; then
  fail "something else already answers on 127.0.0.1:$PORT; pick another --port"
fi
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! alive mon.a && port_open "$MON_PORT"; then
  fail "something else listens on 127.0.0.1:$MON_PORT (another Ceph?); pick another --mon-port"
fi
if alive $RGW_NAME && ! grep -q "endpoint=127.0.0.1:$PORT\$" "$CONF" 2>/dev/null; then
  fail "radosgw in $STATE_DIR is running on another port; run s3-down.sh first"
fi

NEW=
if [ ! -f "$STATE_DIR/created" ]; then
  NEW=1
  mkdir -p "$STATE_DIR/mon" "$STATE_DIR/osd/osd.0"
  cat /proc/sys/kernel/random/uuid >"$STATE_DIR/fsid"
fi
FSID=$(cat "$STATE_DIR/fsid")
write_conf "$FSID"
echo "$SETTINGS" >"$STATE_DIR/settings"

# Daemons fork into the background. Give them no inherited fds (a caller's $(...) pipe or our
# lock would otherwise stay open as long as they run), their own session, a lower priority and
# fewer malloc arenas (less RSS). The foreground process returns once the daemon has initialised
# (Ceph's own daemonize).
launch() { # name, args...
  local name=$1 rc=0; shift
  STARTED+=("$name")
  MALLOC_ARENA_MAX=2 timeout "$TIMEOUT" setsid -w nice -n "$NICE" "$@" \
    </dev/null >>"$LOGS/$name.out" 2>&1 8>&- 9>&- || rc=$?
  [ $rc -ne 124 ] || die "$name did not finish starting within ${TIMEOUT}s"
  [ $rc -eq 0 ] || die "$name failed to start (exit $rc)"
}

wait_for() { # description, command...
  local what=$1 deadline=$(( $(date +%s) + TIMEOUT )); shift
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.2
  done
}

# Register osd.0 and put it into the CRUSH map with monitor commands sent through python3-rados
# (one process instead of several runs of the ceph CLI). A client's first monitor command can
# race the arrival of the monmap and is then refused with "wrong fsid" (it is sent with fsid 0):
# retry those. (Seen as "handle_command on fsid 00000000-... != <fsid>" in the mon log.) The
# OSD is told not to send such commands itself on start (osd crush/class update
# on start = false), because when that race hits it, the OSD exits.
register_osd() { # uuid
  PYTHONPATH=$(dirname "$RADOS_PY") timeout "$TIMEOUT" $SYS_PY - "$CONF" "$1" <<'PY'
import json, sys, time
import rados
conf, uuid = sys.argv[1:3]
r = rados.Rados(conffile=conf, name="client.admin")
r.connect(timeout=30)
def cmd(**kw):
    for _ in range(100):
        ret, out, err = r.mon_command(json.dumps(kw), b"")
        if ret == 0:
            return out
        if "wrong fsid" not in err:
            break
        time.sleep(0.1)
    sys.exit(f"mon command {kw} failed: {ret} {err}")
osd_id = json.loads(cmd(prefix="osd new", uuid=uuid, format="json"))["osdid"]
if osd_id != 0:
    sys.exit(f"osd new gave id {osd_id}, expected 0")
cmd(prefix="osd crush add", id=0, weight=1.0, args=["host=localhost", "root=default"])
r.shutdown()
PY
}

if [ -n "$NEW" ]; then
  log "creating a new cluster in $STATE_DIR ($STORE)"
  "$MONMAPTOOL" --create --addv a "[v1:127.0.0.1:$MON_PORT]" --fsid "$FSID" "$STATE_DIR/monmap" \
    >>"$LOGS/mkfs.log" 2>&1 || die "monmaptool failed"
  "$AUTHTOOL" --create-keyring "$STATE_DIR/keyring" --gen-key -n mon. --cap mon 'allow *' \
    >>"$LOGS/mkfs.log" 2>&1 || die "ceph-authtool failed"
  "$MON_BIN" -c "$CONF" --mkfs -i a --monmap "$STATE_DIR/monmap" --keyring "$STATE_DIR/keyring" \
    >>"$LOGS/mkfs.log" 2>&1 || die "ceph-mon --mkfs failed"
fi

alive mon.a || launch mon.a "$MON_BIN" -c "$CONF" -i a
if [ -n "$NEW" ]; then
  OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
  register_osd "$OSD_UUID" >>"$LOGS/mkfs.log" 2>&1 || die "registering osd.0 with the monitor failed"
  "$OSD_BIN" -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >>"$LOGS/mkfs.log" 2>&1 \
    || die "ceph-osd --mkfs failed"
  date -u +%FT%TZ >"$STATE_DIR/created"
fi
alive osd.0 || launch osd.0 "$OSD_BIN" -c "$CONF" -i 0
log "mon and osd started; starting radosgw"
alive $RGW_NAME || launch $RGW_NAME "$RGW_BIN" -c "$CONF" -n $RGW_NAME

rgw_up() {
  for d in $DAEMONS; do alive "$d" || die "$d exited during start-up"; done
  rgw_answers
}
wait_for "radosgw to answer on 127.0.0.1:$PORT" rgw_up
log "radosgw answers; checking the S3 user and a signed round trip"
ensure_user
warm_up
log "ready ($STORE) on http://127.0.0.1:$PORT (state $STATE_DIR)"
print_exports
