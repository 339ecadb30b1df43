#!/bin/bash
# Host packages the VM harness needs: QEMU (TCG is enough), and the guest's
# userland, copied from the host into the initramfs (lvm2,
# thin-provisioning-tools, btrfs-progs, e2fsprogs, util-linux, busybox).
# Skips apt entirely when everything is there (a warm CI machine).
set -euo pipefail
need=()
for pair in qemu-system-x86_64:qemu-system-x86 lvm:lvm2 thin_delta:thin-provisioning-tools \
  mkfs.btrfs:btrfs-progs mke2fs:e2fsprogs busybox:busybox-static cpio:cpio kmod:kmod \
  xz:xz-utils zstd:zstd fsfreeze:util-linux; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ -e /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx losetup || need+=(busybox-static)
[ ${#need[@]} -eq 0 ] && exit 0
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -o DPkg::Lock::Timeout=600)
QEMU=(qemu-system-x86)
# Some images carry qemu-utils from bookworm-backports, which breaks
# bookworm's qemu-system-common: then QEMU must come from backports too.
# A private source list does that without touching /etc/apt.
if dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q bpo; then
  D=${LIFEBOAT_VM_CACHE:-/var/cache/lifeboat-vm}/apt; mkdir -p "$D/lists/partial"
  URI=$(grep -h -m1 -E '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true)
  [ -n "$URI" ] || URI=$(grep -h -m1 -E '^deb .*/debian/? ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}')
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-backports main\n' "$URI" "$URI" "$URI" >"$D/sources.list"
  APT+=(-o "Dir::State::Lists=$D/lists" -o "Dir::Etc::SourceList=$D/sources.list" -o Dir::Etc::SourceParts=/nonexistent)
  QEMU=(-t bookworm-backports qemu-system-x86)
fi
"${APT[@]}" update -qq
rest=()
for p in "${need[@]}"; do [ "$p" = qemu-system-x86 ] || rest+=("$p"); done
"${APT[@]}" install -y -qq --no-install-recommends "${QEMU[@]}" "${rest[@]}" >/dev/null
