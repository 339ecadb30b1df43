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
