#!/bin/sh
# Build xenalyze from a Xen source tree, the binary bench/xentrace_bench.py
# times runstate against (--xenalyze PATH):
#
#   git clone https://xenbits.xen.org/git-http/xen.git
#   bench/build_xenalyze.sh xen [bench/out/xenalyze]
#
# Only xenalyze's own sources and the three headers they include are taken
# from the tree (no configure step): tools/xentrace/{xenalyze.c, analyze.h,
# mread.c, mread.h, pv.h}, tools/include/xen-tools/common-macros.h and
# xen/include/public/trace.h, compiled with gcc -O2 as a packaged build is.
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 XEN_SOURCE_DIR [OUT]" >&2
    exit 2
fi
src=$1
out=${2:-bench/out/xenalyze}
case $out in
    /*) ;;
    *) out=$PWD/$out ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/xenalyze-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/inc/xen" "$work/inc/xen-tools"
for f in xenalyze.c analyze.h mread.c mread.h pv.h; do
    cp "$src/tools/xentrace/$f" "$work/"
done
cp "$src/tools/include/xen-tools/common-macros.h" "$work/inc/xen-tools/"
cp "$src/xen/include/public/trace.h" "$work/inc/xen/trace.h"

mkdir -p "$(dirname "$out")"
(cd "$work" && "${CC:-gcc}" -O2 -Iinc -I. -D__XEN_TOOLS__ -o xenalyze xenalyze.c mread.c -lm)
cp "$work/xenalyze" "$out"
echo "built $out"
