# Scenario 5: lifeboat killed with SIGKILL while it holds a snapshot; the
# next run removes the stale snapshot, says so, and succeeds.
. /host/common.sh
make_vg
lvcreate -q -y -L 128M -n data vg0 >/dev/null
dd if=/dev/urandom of=/dev/vg0/data bs=1M count=128 status=none
$LB init -q
$LB backup --volume vg0/data -q &
pid=$!
i=0; while [ -z "$(lb_snapshots)" ]; do i=$((i + 1)); [ $i -lt 300 ] || fail "no snapshot appeared"; sleep 0.1; done
kill -9 $pid; wait $pid || true
stale=$(lb_snapshots)
[ -n "$stale" ] || fail "the killed run left no snapshot (test premise)"
say "left behind: $stale"
$LB backup --volume vg0/data --json >/tmp/summary.json 2>/tmp/err || fail "second run failed: $(cat /tmp/err)"
cat /tmp/err
grep -q 'removing stale snapshot' /tmp/err || fail "the stale snapshot was removed silently"
grep -q '"stale_removed":\["vg0/lbsnap-' /tmp/summary.json || fail "stale removal not reported"
[ -z "$(lb_snapshots)" ] || fail "snapshots left: $(lb_snapshots)"
$LB restore latest --target /tmp/r.img -q
cmp /tmp/r.img /dev/vg0/data || fail "restored volume differs"
say OK
