# Scenario 4: a too-small classic snapshot under heavy writes: the backup
# fails with a clear error, no snapshot is recorded, no LV is left.
. /host/common.sh
make_vg
lvcreate -q -y -L 128M -n data vg0 >/dev/null
dd if=/dev/urandom of=/dev/vg0/data bs=1M count=128 status=none
$LB init -q
( while [ ! -e /tmp/stop ]; do dd if=/dev/urandom of=/dev/vg0/data bs=1M count=128 conv=notrunc status=none; done ) &
writer=$!
if $LB backup --volume vg0/data --snapshot-size 4M 2>/tmp/err; then fail "backup of an overflowed snapshot succeeded"; fi
touch /tmp/stop; wait $writer
cat /tmp/err
grep -q 'overflowed its copy-on-write area' /tmp/err || fail "no clear overflow error"
[ "$($LB snapshots --json)" = "[]" ] || fail "a snapshot was recorded: $($LB snapshots --json)"
[ -z "$(lb_snapshots)" ] || fail "snapshot LV left behind: $(lb_snapshots)"
say OK
