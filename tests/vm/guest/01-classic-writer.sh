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
( i=0; while [ ! -e /tmp/stop ]; do i=$((i + 1))
    printf 'record %08d\n' $i | dd of=/mnt/data/log bs=16 oflag=append conv=notrunc,fsync status=none
    echo $i >/tmp/count; done ) &
writer=$!
while [ ! -s /tmp/count ] || [ "$(cat /tmp/count)" -lt 20 ]; do sleep 0.2; done
before=$(cat /tmp/count)
$LB backup --volume vg0/data --snapshot-size 32M --json >/tmp/summary.json || fail "backup failed"
after=$(cat /tmp/count)
touch /tmp/stop; wait $writer
cat /tmp/summary.json
grep -q '"provider":"lvm-classic"' /tmp/summary.json || fail "no classic snapshot reported"
grep -q '"freeze_window_ms"' /tmp/summary.json || fail "no freeze window reported"
[ -z "$(lb_snapshots)" ] || fail "snapshot LV left behind: $(lb_snapshots)"
$LB restore latest --target /tmp/restored.img -q
e2fsck -fn /tmp/restored.img || fail "restored volume is not clean"
debugfs -R 'cat /log' /tmp/restored.img >/tmp/log 2>/dev/null
n=$(wc -l </tmp/log)
say "writer: $before records before the backup, $after after; snapshot holds $n"
[ "$n" -ge "$before" ] && [ "$n" -le "$after" ] || fail "$n records outside [$before, $after]"
seq 1 "$n" | awk '{printf "record %08d\n", $1}' | cmp - /tmp/log || fail "records are not a prefix of the writer's"
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
