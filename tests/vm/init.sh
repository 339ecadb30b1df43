#!/bb/sh
# /init of the test guest: mounts the basics, loads modules, mounts the 9p
# share (tag "host") at /host, runs /host/run.sh under dash and prints
# "VMTEST-RC=<exit code>" on the serial console, then powers off.
export PATH=/usr/sbin:/usr/bin:/bb HOME=/root
/bb/mount -t proc proc /proc
/bb/mount -t sysfs sys /sys
/bb/mount -t devtmpfs dev /dev
/bb/mount -t tmpfs tmpfs /run
/bb/mount -t tmpfs tmpfs /tmp
/bb/mkdir -p /run/lvm /run/lock/lvm /dev/shm
/bb/ln -sf /proc/self/mounts /etc/mtab
/bb/hostname vmtest
echo /usr/sbin/modprobe >/proc/sys/kernel/modprobe
/usr/sbin/modprobe -a $(/bb/cat /etc/modules-load)
rc=125
if /bb/mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=none host /host; then
  echo "VMTEST: running /host/run.sh (uptime $(/bb/cut -d' ' -f1 /proc/uptime)s)"
  (cd /host && /usr/bin/sh -e /host/run.sh) </dev/null; rc=$?
fi
echo "VMTEST-RC=$rc"
/bb/sync
/bb/umount /host 2>/dev/null
/bb/poweroff -f
