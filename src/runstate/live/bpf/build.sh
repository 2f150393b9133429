#!/bin/sh
# Rebuild the shipped CO-RE object runstate.bpf.o from runstate.bpf.c.
#
#   sh src/runstate/live/bpf/build.sh [OUTPUT]
#
# Needs clang (any version with the BPF target), llvm-strip and the libbpf
# headers (Debian: clang llvm libbpf-dev).  The object carries its BTF and CO-RE
# relocations, so it loads on any kernel with /sys/kernel/btf/vmlinux; users of
# the package need none of these tools.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/runstate.bpf.o}
arch=$(uname -m)
case $arch in
    x86_64) target=x86; multiarch=x86_64-linux-gnu ;;
    aarch64) target=arm64; multiarch=aarch64-linux-gnu ;;
    *) target=$arch; multiarch=$arch-linux-gnu ;;
esac
tmp=$out.tmp.$$
clang -g -O2 -Wall -Werror -target bpf -D__TARGET_ARCH_$target \
    -I/usr/include/$multiarch -c "$here/runstate.bpf.c" -o "$tmp"
llvm-strip -g "$tmp"
mv "$tmp" "$out"
