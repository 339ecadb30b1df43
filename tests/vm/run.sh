#!/bin/bash
# Boots a guest that runs one script and reports its exit status.
# Usage: run.sh [-b BINARY] [-d SIZE]... [-m MEM] [-t SECS] GUEST_SCRIPT
#   -b BINARY  copied into the 9p share as /host/lifeboat (default: none)
#   -d SIZE    a fresh sparse scratch disk (vda, vdb, ... in order)
#   -m MEM     guest memory (default 1G); -t SECS timeout (default 900)
# The guest sees the share at /host (rw), with guest/common.sh as
# /host/common.sh. Exit status: the script's (from the VMTEST-RC marker on
# the serial console), 124 on timeout, 125 without a marker. The console
# log is kept at $CACHE/last-<script>.log.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
BIN=""; MEM=1G; TMO=900; SIZES=()
while getopts "b:d:m:t:" o; do case $o in
  b) BIN=$OPTARG ;; d) SIZES+=("$OPTARG") ;; m) MEM=$OPTARG ;; t) TMO=$OPTARG ;; *) exit 2 ;;
esac; done
shift $((OPTIND - 1)); SCRIPT=${1:?guest script}
B=$(bash "$VM_DIR/build.sh")
mkdir -p "$CACHE/runs"; RUN=$(mktemp -d "$CACHE/runs/run-XXXXXX")
trap 'rm -rf "$RUN"' EXIT
mkdir "$RUN/share"
cp "$SCRIPT" "$RUN/share/run.sh"; cp "$VM_DIR/guest/common.sh" "$RUN/share/common.sh"
[ -n "$BIN" ] && cp "$BIN" "$RUN/share/lifeboat"
DRIVES=(); i=0
for s in "${SIZES[@]}"; do
  truncate -s "$s" "$RUN/disk$i.raw"
  DRIVES+=(-drive "file=$RUN/disk$i.raw,format=raw,if=none,id=d$i,cache=unsafe,aio=threads" -device "virtio-blk-pci,drive=d$i")
  i=$((i + 1))
done
# TCG: this host's /dev/kvm (if any) may not run stock kernels; LIFEBOAT_VM_ACCEL=kvm opts in.
if [ "${LIFEBOAT_VM_ACCEL:-tcg}" = kvm ]; then ACC=(-accel kvm -cpu host); else ACC=(-accel tcg,thread=multi -cpu qemu64); fi
LOG=$CACHE/last-$(basename "$SCRIPT" .sh).log
t0=$(date +%s.%N)
set +e
timeout "$TMO" qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
  -m "$MEM" -smp 1 "${ACC[@]}" -serial stdio -device virtio-rng-pci \
  -kernel "$B/vmlinux" -initrd "$B/initramfs.cpio.gz" -append "console=ttyS0 panic=-1 quiet" \
  -virtfs "local,path=$RUN/share,mount_tag=host,security_model=none,id=host" \
  "${DRIVES[@]}" </dev/null 2>&1 | tr -d '\r' >"$LOG"
qrc=${PIPESTATUS[0]}
set -e
log "$(basename "$SCRIPT"): $(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)")s, console log $LOG"
[ "$qrc" = 124 ] && { log "timeout after ${TMO}s"; tail -n 30 "$LOG" >&2; exit 124; }
rc=$(grep -a -o 'VMTEST-RC=[0-9]*' "$LOG" | tail -n 1 | cut -d= -f2)
[ -n "$rc" ] || { log "no VMTEST-RC marker"; tail -n 30 "$LOG" >&2; exit 125; }
[ "$rc" = 0 ] || tail -n 40 "$LOG" >&2
exit "$rc"
