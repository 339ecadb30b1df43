# Scenario 3: a thin volume backed up three times with about 2% of its
# blocks changed in between (and a range discarded before the third): the
# second and third backups read at most 10% of the volume (thin_delta
# against the kept thin snapshot), and each snapshot restores equal to the
# volume at its time.
. /host/common.sh
make_vg
mkfs.ext4 -q /dev/vdb && mkdir -p /work && mount /dev/vdb /work
export LIFEBOAT_REPOSITORY=/work/repo
lvcreate -q -y -T -L 400M vg0/pool >/dev/null
lvcreate -q -y -V 512M -T vg0/pool -n thin >/dev/null 2>&1
SIZE=536870912
dd if=/dev/urandom of=/dev/vg0/thin bs=1M count=128 status=none
$LB init -q
# change N: five 2 MiB runs of new data at offsets inside the written part (10 MiB: ~2%).
change() { for k in 1 2 3 4 5; do
  dd if=/dev/urandom of=/dev/vg0/thin bs=1M count=2 seek=$(( (k * 23 + $1 * 13) % 126 )) conv=notrunc status=none; done; sync; }
backup() {
  $LB backup --volume vg0/thin --json >/tmp/b$1.json 2>/tmp/e$1 || fail "backup $1: $(cat /tmp/e$1)"
  tail -n 1 /tmp/b$1.json; cat /tmp/e$1
  sha256sum </dev/vg0/thin | cut -d' ' -f1 >/work/sum$1
  tail -n 1 /tmp/b$1.json | json_field snapshot_id >/work/id$1
}
read_bytes() { tail -n 1 /tmp/b$1.json | json_field bytes_read; }
backup 1
[ "$(read_bytes 1)" -eq $SIZE ] || fail "the first backup must read everything"
change 1; backup 2
change 2; blkdiscard -o $((64 << 20)) -l $((8 << 20)) /dev/vg0/thin; sync; backup 3
for i in 2 3; do
  r=$(read_bytes $i)
  say "backup $i read $r of $SIZE bytes ($(( r * 100 / SIZE ))%)"
  [ "$r" -le $((SIZE / 10)) ] || fail "backup $i read more than 10% of the volume"
  tail -n 1 /tmp/b$i.json | grep -q '"parent_reuse":"thin_delta against vg0/lbbase-thin' || fail "backup $i did not use thin_delta"
done
for i in 1 2 3; do
  $LB restore "$(cat /work/id$i)" --target /work/r$i.img -q || fail "restore $i"
  [ "$(sha256sum </work/r$i.img | cut -d' ' -f1)" = "$(cat /work/sum$i)" ] || fail "snapshot $i does not restore to the volume at its time"
  rm /work/r$i.img
done
[ -z "$(lb_snapshots)" ] || fail "snapshots left: $(lb_snapshots)"
lvs --reportformat json -o lv_name,lv_tags vg0 | grep -q '"lv_name":"lbbase-thin"' || fail "no kept base"
say OK
