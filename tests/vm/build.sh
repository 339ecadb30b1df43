#!/bin/bash
# Builds (once) what a guest boots: a Debian 12 kernel (package downloaded,
# not installed) and an initramfs with busybox, lvm2, thin-provisioning-tools,
# btrfs-progs, e2fsprogs and util-linux copied from the host with their
# libraries, plus the kernel modules they need. Prints the build directory.
# Cached under $CACHE/build-<hash of build.sh and init.sh>.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
if [ -f "$BUILD/ready" ]; then echo "$BUILD"; exit 0; fi
bash "$VM_DIR/install-host.sh"
t0=$SECONDS
mkdir -p "$CACHE/debs"
rm -rf "$BUILD.tmp"; mkdir -p "$BUILD.tmp"; cd "$BUILD.tmp"

# Kernel: the Debian 12 package linux-image-amd64 points at.
PKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$PKG" ] || { apt-get update -qq && PKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'); }
KVER=${PKG#linux-image-}
ls "$CACHE/debs/${PKG}"_*.deb >/dev/null 2>&1 || (cd "$CACHE/debs" && apt-get download -q "$PKG" >&2)
dpkg -x "$CACHE/debs/${PKG}"_*.deb kroot
depmod -b kroot "$KVER" # the package ships no modules.dep (its postinst makes it)
cp "kroot/boot/vmlinuz-$KVER" vmlinuz
# The ELF inside the bzImage boots through PVH and skips the guest's own
# decompression, which is slow under TCG.
for sig in '\xfd7zXZ\x00:xz -dc' '\x28\xb5\x2f\xfd:zstd -dc' '\x1f\x8b\x08:gzip -dc'; do
  for pos in $(LC_ALL=C grep -abo -P "${sig%%:*}" vmlinuz | cut -d: -f1); do
    tail -c +$((pos + 1)) vmlinuz | ${sig#*:} >vmlinux 2>/dev/null || true
    [ "$(head -c 4 vmlinux 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ] && break 2
  done
done
[ "$(head -c 4 vmlinux 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ] || { log "no ELF in vmlinuz; booting the bzImage"; cp vmlinuz vmlinux; }

R=$PWD/root
mkdir -p "$R"/{usr/bin,usr/sbin,usr/lib,usr/lib64,bb,proc,sys,dev,run,tmp,mnt,host,etc/lvm,root}
ln -s usr/bin "$R/bin"; ln -s usr/sbin "$R/sbin"; ln -s usr/lib "$R/lib"; ln -s usr/lib64 "$R/lib64"
# Busybox (static) only as a fallback in /bb: Debian builds it with
# standalone shell applets, so scripts run under dash and the real tools win.
BB=$(command -v busybox); cp "$BB" "$R/bb/busybox"
for a in $("$BB" --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bb/$a"; done
copy_file() { # host file (symlinks followed) to the same path in the image
  local src=$1 real; real=$(readlink -f "$src")
  mkdir -p "$R$(dirname "$real")"; cp -n "$real" "$R$real" 2>/dev/null || true
  if [ "$real" != "$src" ] && [ ! -e "$R$src" ]; then mkdir -p "$R$(dirname "$src")"; ln -sf "$real" "$R$src"; fi
}
copy_bin() {
  local b; b=$(command -v "$1") || { log "missing host tool $1"; return 1; }
  copy_file "$b"
  for l in $(ldd "$b" 2>/dev/null | grep -o '/[^ ]*'); do copy_file "$l"; done
}
for b in lvm dmsetup mke2fs e2fsck debugfs dumpe2fs resize2fs blkid fsfreeze wipefs blockdev findmnt \
  losetup blkdiscard mount umount pdata_tools btrfs mkfs.btrfs sha256sum cmp dd stat env kmod dash bash \
  sync timeout unshare nsenter truncate du sleep seq head tail cat cut grep sed awk; do copy_bin "$b"; done
copy_file /lib/x86_64-linux-gnu/libgcc_s.so.1 # glibc-linked Rust binaries need it
copy_file /lib64/ld-linux-x86-64.so.2
for l in pvcreate pvs vgcreate vgs vgremove vgchange lvcreate lvs lvremove lvchange lvconvert lvextend lvrename; do
  ln -sf lvm "$R/usr/sbin/$l"
done
for l in thin_check thin_delta thin_dump thin_repair thin_restore; do ln -sf pdata_tools "$R/usr/sbin/$l"; done
ln -sf mke2fs "$R/usr/sbin/mkfs.ext4"
for l in modprobe insmod lsmod depmod; do ln -sf ../bin/kmod "$R/usr/sbin/$l"; done
ln -sf dash "$R/usr/bin/sh"
# LVM without udev: it makes its own /dev nodes and waits for no cookies.
cat >"$R/etc/lvm/lvm.conf" <<'EOC'
devices { obtain_device_list_from_udev = 0 external_device_info_source = "none" use_devicesfile = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
global { thin_check_executable = "/usr/sbin/thin_check" }
EOC
echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"; echo 'root:x:0:' >"$R/etc/group"
echo 'localhost' >"$R/etc/hostname"
# Kernel modules: the closure kmod resolves against the unpacked tree.
# crc32c_generic explicitly: crc32c_intel does not load under TCG.
MODS="crc32c_generic virtio_pci virtio_blk virtio-rng 9pnet_virtio 9p loop ext4 btrfs dm-mod dm-snapshot dm-thin-pool"
for m in $MODS; do modprobe -d kroot -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}'; done |
  sort -u | while read -r ko; do
    rel=${ko#"$PWD"/kroot/}; rel=${rel#kroot/}; mkdir -p "$R/$(dirname "$rel")"; cp "$ko" "$R/$rel"
  done
cp kroot/lib/modules/"$KVER"/modules.{order,builtin,builtin.modinfo} "$R/lib/modules/$KVER/"
depmod -b "$R" "$KVER"
echo "$MODS" >"$R/etc/modules-load"
cp "$VM_DIR/init.sh" "$R/init"; chmod +x "$R/init"
(cd "$R" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 >initramfs.cpio.gz
rm -rf kroot root
echo "$KVER" >KVER
touch ready
for old in "$CACHE"/build-*; do [ "$old" = "$BUILD.tmp" ] || rm -rf "$old"; done
cd /; rm -rf "$BUILD"; mv "$BUILD.tmp" "$BUILD"
log "built $BUILD (kernel $KVER) in $((SECONDS - t0))s"
echo "$BUILD"
