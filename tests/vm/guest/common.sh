# Sourced by guest scripts (runs under dash inside the guest).
# LB runs the binary under test against a repository in guest RAM.
export LIFEBOAT_REPOSITORY=${LIFEBOAT_REPOSITORY:-/tmp/repo}
export LIFEBOAT_PASSWORD_FILE=/tmp/password
printf 'vm-test-password' >/tmp/password
LB=/host/lifeboat
say() { echo "GUEST: $*"; }
fail() { echo "GUEST-FAIL: $*"; exit 1; }
# json_field FIELD: the first value of "FIELD": in the JSON on stdin (numbers and strings).
json_field() { grep -o "\"$1\":[^,}]*" | head -n 1 | cut -d: -f2- | tr -d '"'; }
# vg0 on the first scratch disk.
make_vg() { pvcreate -q -ff -y /dev/vda >/dev/null && vgcreate -q vg0 /dev/vda >/dev/null; }
# lvs field of one LV (JSON report, no human output parsed).
lv_field() { lvs --reportformat json --units b --nosuffix -o "$2" "$1" | json_field "$2"; }
# Snapshot LVs lifeboat made (name prefix), one per line.
lb_snapshots() { lvs --reportformat json -o lv_name vg0 | grep -o '"lv_name":"lbsnap-[^"]*"' || true; }
# with_writer LOG CMD...: runs CMD while a writer appends numbered, fsynced
# records to LOG; sets $before/$after to the record counts around CMD.
with_writer() {
  log=$1; shift; rm -f /tmp/stop /tmp/count
  ( i=0; while [ ! -e /tmp/stop ]; do i=$((i + 1))
      printf 'record %08d\n' $i | dd of="$log" bs=16 oflag=append conv=notrunc,fsync status=none
      echo $i >/tmp/count; done ) &
  writer=$!
  while [ ! -s /tmp/count ] || [ "$(cat /tmp/count)" -lt 20 ]; do sleep 0.2; done
  before=$(cat /tmp/count)
  "$@" || { touch /tmp/stop; wait $writer; fail "$* failed"; }
  after=$(cat /tmp/count)
  touch /tmp/stop; wait $writer
}
# check_prefix FILE: FILE holds records 1..n, n within [$before, $after].
check_prefix() {
  n=$(wc -l <"$1")
  say "writer: $before records before the backup, $after after; snapshot holds $n"
  [ "$n" -ge "$before" ] && [ "$n" -le "$after" ] || fail "$n records outside [$before, $after]"
  seq 1 "$n" | awk '{printf "record %08d\n", $1}' | cmp - "$1" || fail "records are not a prefix of the writer's"
}
