#!/usr/bin/env bash
# Build a tiny QEMU test guest: Debian's kernel and a busybox initramfs whose /init runs
# CPU phases given on the kernel command line (p1 = seconds with 4 burners, p2 = seconds
# with 1 burner, p3 = seconds idle), then powers off.
#   scripts/guest/build.sh [DIR]      (default: ~/.cache/runstate-guest)
# Needs: qemu-system-x86 busybox-static cpio (apt), network access to Debian's archive.
set -euo pipefail
DIR="${1:-${HOME}/.cache/runstate-guest}"
mkdir -p "$DIR"
cd "$DIR"
if [ ! -f vmlinuz ]; then
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$pkg" ] || { echo "cannot resolve the Debian kernel package" >&2; exit 1; }
    rm -rf dl && mkdir dl && (cd dl && apt-get download "$pkg" >/dev/null)
    dpkg-deb --fsys-tarfile dl/*.deb | tar -x -C dl ./boot
    cp dl/boot/vmlinuz-* vmlinuz
    rm -rf dl
fi
if [ ! -f initramfs.cpio.gz ]; then
    rm -rf ir && mkdir -p ir/bin ir/proc ir/sys ir/dev
    cp /bin/busybox ir/bin/
    for a in sh mount cat sleep timeout poweroff nproc; do ln -s busybox "ir/bin/$a"; done
    cat > ir/init <<'INIT'
#!/bin/sh
/bin/busybox mount -t proc proc /proc; /bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
echo "GUEST: booted, cpus $(nproc)"
burn() { timeout "$1" sh -c 'while :; do :; done'; }
P1=${p1:-5}; P2=${p2:-3}; P3=${p3:-2}
echo "GUEST: phase1 4 burners ${P1}s"; for i in 1 2 3 4; do burn "$P1" & done; wait
echo "GUEST: phase2 1 burner ${P2}s"; burn "$P2"
echo "GUEST: phase3 idle ${P3}s"; sleep "$P3"
echo "GUEST: done"; poweroff -f
INIT
    chmod +x ir/init
    (cd ir && find . | cpio -o -H newc 2>/dev/null | gzip -1) > initramfs.cpio.gz
    rm -rf ir
fi
echo "$DIR"
