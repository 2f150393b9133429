"""Build the small C kernels that sit under the numpy layer.

Every ``src/runstate/**/_*.c`` file is one extension module named after its
path, so a new kernel needs no change here.  Warnings are errors: a kernel
that indexes memory must compile cleanly.  ``RUNSTATE_SANITIZE=1`` builds the
kernels with AddressSanitizer and UBSan for the sanitizer test run
(``scripts/sanitize.sh``); that build aborts on the first bad access.
"""

import os
from pathlib import Path

from setuptools import Extension, setup

SRC = Path("src")
#: headers shared between kernels (a change rebuilds every kernel)
HEADERS = sorted(SRC.glob("runstate/**/*.h"))
WARNINGS = ["-Wall", "-Wextra", "-Werror"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=all"]


#: the xentrace fast path (_job, _merge) uses a second thread
THREADS = ["-pthread"]


def _flags() -> tuple[list[str], list[str]]:
    """Compile and link flags: optimized, or instrumented with RUNSTATE_SANITIZE=1."""
    if os.environ.get("RUNSTATE_SANITIZE", "") not in ("", "0"):
        return ["-O1", "-g", "-std=c99", *WARNINGS, *SANITIZE, *THREADS], [*SANITIZE, *THREADS]
    return ["-O2", "-std=c99", *WARNINGS, *THREADS], THREADS


def _extensions() -> list[Extension]:
    # RUNSTATE_EXT_ONLY=_kernel,_walk builds only those kernels (a quicker rebuild while
    # working on one of them: python setup.py build_ext --inplace)
    only = {name for name in os.environ.get("RUNSTATE_EXT_ONLY", "").split(",") if name}
    compile_args, link_args = _flags()
    exts = []
    for path in sorted(SRC.glob("runstate/**/_*.c")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts)
        if only and path.stem not in only:
            continue
        exts.append(
            Extension(module, [str(path)], depends=[str(h) for h in HEADERS],
                      extra_compile_args=compile_args, extra_link_args=link_args)
        )
    return exts


setup(ext_modules=_extensions())
