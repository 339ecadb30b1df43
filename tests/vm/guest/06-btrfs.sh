# Scenario 6: files mode on a btrfs read-only subvolume snapshot: what is
# restored is the subvolume at the snapshot's time (changes made after the
# backup are absent), recorded under the real paths; the snapshot is gone.
. /host/common.sh
mkfs.btrfs -q -f /dev/vda
mkdir -p /srv/b && mount /dev/vda /srv/b
mkdir /srv/b/dir && seq 1 50000 >/srv/b/dir/numbers && dd if=/dev/urandom of=/srv/b/blob bs=1M count=4 status=none
ln -s dir/numbers /srv/b/link
(cd /srv/b && sha256sum dir/numbers blob >/tmp/sums)
$LB init -q
$LB backup /srv/b --snapshot btrfs --json >/tmp/summary.json || fail "backup failed"
tail -n 1 /tmp/summary.json
grep -q '"provider":"btrfs"' /tmp/summary.json || fail "no btrfs snapshot reported"
echo changed >>/srv/b/dir/numbers; rm /srv/b/blob
ls -a /srv/b | grep -q lbsnap && fail "snapshot subvolume left behind"
$LB restore latest --target /tmp/r -q
(cd /tmp/r/srv/b && sha256sum -c /tmp/sums) || fail "restored files differ from the snapshot"
[ "$(readlink /tmp/r/srv/b/link)" = dir/numbers ] || fail "symlink not restored"
# The next backup finds its parent as for any file backup.
$LB backup /srv/b --snapshot btrfs --json | tail -n 1 | grep -q '"parent":"' || fail "no parent on the second run"
say OK
