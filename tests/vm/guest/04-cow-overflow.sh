# Scenario 4: a too-small classic snapshot under heavy writes: the backup
# fails with a clear error, no snapshot is recorded, no LV is left; the same
# in files mode, where the removed snapshot must not look like a rollback.
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

# Files mode: the walk reads a file that a writer keeps rewriting.
lvcreate -q -y -L 96M -n files vg0 >/dev/null
mkfs.ext4 -q /dev/vg0/files
mkdir -p /srv/files && mount /dev/vg0/files /srv/files
dd if=/dev/urandom of=/srv/files/big bs=1M count=48 status=none
rm -f /tmp/stop
( while [ ! -e /tmp/stop ]; do dd if=/dev/urandom of=/srv/files/big bs=1M count=48 conv=notrunc,fsync status=none; done ) &
writer=$!
if $LB backup /srv/files --snapshot lvm --snapshot-size 4M 2>/tmp/err2; then fail "files backup of an overflowed snapshot succeeded"; fi
touch /tmp/stop; wait $writer
cat /tmp/err2
grep -q 'overflowed its copy-on-write area' /tmp/err2 || fail "no clear overflow error (files mode)"
[ -z "$(lb_snapshots)" ] || fail "snapshot LV left behind (files mode): $(lb_snapshots)"
# The next command opens the repository without a rollback alarm, and no
# snapshot read from the invalid COW is left.
$LB snapshots --json >/tmp/snaps 2>/tmp/err3 || { cat /tmp/err3; fail "repository refused after the files-mode overflow"; }
[ "$(cat /tmp/snaps)" = "[]" ] || fail "a snapshot was recorded (files mode): $(cat /tmp/snaps)"
say OK
