#!/usr/bin/env bash
# Run tests against C kernels built with AddressSanitizer and UBSan.
#
#   scripts/sanitize.sh                 # the whole suite but the live tests
#   scripts/sanitize.sh tests/test_c_boundary.py tests/test_fuzz_readers.py
#
# The kernels are rebuilt in place with RUNSTATE_SANITIZE=1; the interpreter
# is not instrumented, so the ASan runtime is preloaded, and leak detection is
# off (CPython keeps objects alive until exit by design).  Any bad access
# aborts the run with a report naming the kernel and line.  On exit the
# normal kernels are built again, unless RUNSTATE_KEEP_SANITIZED=1.
set -euo pipefail
cd "$(dirname "$0")/.."

cc="${CC:-gcc}"
libasan="$("$cc" -print-file-name=libasan.so)"
if [ ! -e "$libasan" ]; then
    echo "sanitize.sh: $cc has no libasan.so" >&2
    exit 1
fi
# C++ extensions (matplotlib's) throw exceptions: ASan intercepts __cxa_throw only
# if libstdc++ is loaded when it starts
preload="$libasan $("$cc" -print-file-name=libstdc++.so.6)"

rebuild_normal() {
    python setup.py -q build_ext --inplace --force >/dev/null 2>&1
}
if [ "${RUNSTATE_KEEP_SANITIZED:-0}" != 1 ]; then
    trap rebuild_normal EXIT
fi
RUNSTATE_SANITIZE=1 python setup.py -q build_ext --inplace --force >/dev/null

if [ $# -eq 0 ]; then
    # the tests that drive the kernels; left out: live tracing and guests (external
    # programs would get the ASan runtime preloaded too), the browser and server
    # tests, and the engine's memory measurements (ASan's shadow memory counts there)
    set -- tests/test_c_boundary.py tests/test_fuzz_readers.py tests/engine tests/xen \
        tests/linux tests/core -m "not live" \
        --deselect tests/engine/test_engine_memory.py
fi
# reports go to files: pytest captures stderr, and a forked fuzz child has none
logs="$(mktemp -d /tmp/runstate-sanitize.XXXXXX)"
status=0
# the in-place kernels, whether runstate is installed editable or not
PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" \
LD_PRELOAD="$preload" \
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:log_path=$logs/asan" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan" \
    python -m pytest -q -p no:cacheprovider "$@" || status=$?
if compgen -G "$logs/*" >/dev/null; then
    cat "$logs"/* >&2
    echo "sanitize.sh: the sanitizers reported errors (above)" >&2
    status=1
fi
rm -rf "$logs"
exit "$status"
