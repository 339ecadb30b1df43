# Scenario 2: files mode on a classic LVM snapshot while a writer appends
# fsynced records: the files are read from the snapshot (mounted only in
# lifeboat's private namespace) and recorded under their real paths; the
# restored files equal the snapshot's: static files equal, the log a
# prefix of the writer's records, between the counts before and after.
. /host/common.sh
make_vg
lvcreate -q -y -L 64M -n data vg0 >/dev/null
mkfs.ext4 -q /dev/vg0/data
mkdir -p /srv/data && mount /dev/vg0/data /srv/data
mkdir /srv/data/docs && seq 1 20000 >/srv/data/docs/numbers && dd if=/dev/urandom of=/srv/data/docs/blob bs=1M count=3 status=none
$LB init -q
with_writer /srv/data/log sh -c '/host/lifeboat backup /srv/data --snapshot lvm --snapshot-size 32M --json >/tmp/summary.json'
tail -n 1 /tmp/summary.json
grep -q '"provider":"lvm-classic"' /tmp/summary.json || fail "no snapshot reported"
[ -z "$(lb_snapshots)" ] || fail "snapshot LV left behind: $(lb_snapshots)"
[ "$(findmnt -n -o SOURCE /srv/data)" = /dev/mapper/vg0-data ] || fail "the live mount changed"
$LB ls latest | grep -qx /srv/data/log || fail "not recorded under the real path"
$LB restore latest --target /tmp/r -q
cmp /tmp/r/srv/data/docs/numbers /srv/data/docs/numbers && cmp /tmp/r/srv/data/docs/blob /srv/data/docs/blob || fail "static files differ"
check_prefix /tmp/r/srv/data/log
say OK
