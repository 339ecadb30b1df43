# Scenario 1 (and 7): a classic LVM snapshot of a mounted ext4 LV while a
# writer appends numbered, fsynced records. The backup succeeds; the
# restored volume passes e2fsck -fn and its records are a prefix of what the
# writer wrote. Then the volume is restored to a new LV, which mounts clean.
. /host/common.sh
make_vg
lvcreate -q -y -L 64M -n data vg0 >/dev/null
mkfs.ext4 -q /dev/vg0/data
mkdir -p /mnt/data && mount /dev/vg0/data /mnt/data
$LB init -q
with_writer /mnt/data/log sh -c '/host/lifeboat backup --volume vg0/data --snapshot-size 32M --json >/tmp/summary.json'
cat /tmp/summary.json
grep -q '"provider":"lvm-classic"' /tmp/summary.json || fail "no classic snapshot reported"
grep -q '"freeze_window_ms"' /tmp/summary.json || fail "no freeze window reported"
[ -z "$(lb_snapshots)" ] || fail "snapshot LV left behind: $(lb_snapshots)"
$LB restore latest --target /tmp/restored.img -q
e2fsck -fn /tmp/restored.img || fail "restored volume is not clean"
debugfs -R 'cat /log' /tmp/restored.img >/tmp/log 2>/dev/null
check_prefix /tmp/log
# Scenario 7: restore to a new LV of the right size; it mounts and checks clean.
$LB restore latest --target vg0/copy -q || fail "restore to a new LV failed"
[ "$(lv_field vg0/copy lv_size)" -ge 67108864 ] || fail "new LV too small"
e2fsck -fn /dev/vg0/copy || fail "restored LV is not clean"
mkdir -p /mnt/copy && mount -o ro /dev/vg0/copy /mnt/copy
cmp /mnt/copy/log /tmp/log || fail "restored LV differs"
umount /mnt/copy
# A mounted LV is never overwritten.
if $LB restore latest --target vg0/data --force -q 2>/tmp/err; then fail "overwrote a mounted LV"; fi
grep -q mounted /tmp/err || fail "unclear refusal: $(cat /tmp/err)"
say OK
