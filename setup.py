"""Build the small C kernels that sit under the numpy layer.

Every ``src/runstate/**/_*.c`` file is one extension module named after its
path, so a new kernel needs no change here.
"""

import os
from pathlib import Path

from setuptools import Extension, setup

SRC = Path("src")
#: headers shared between kernels (a change rebuilds every kernel)
HEADERS = sorted(SRC.glob("runstate/**/*.h"))


def _extensions() -> list[Extension]:
    # RUNSTATE_EXT_ONLY=_kernel,_walk builds only those kernels (a quicker rebuild while
    # working on one of them: python setup.py build_ext --inplace)
    only = {name for name in os.environ.get("RUNSTATE_EXT_ONLY", "").split(",") if name}
    exts = []
    for path in sorted(SRC.glob("runstate/**/_*.c")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts)
        if only and path.stem not in only:
            continue
        exts.append(
            Extension(module, [str(path)], depends=[str(h) for h in HEADERS],
                      extra_compile_args=["-O2", "-std=c99", "-Wall"])
        )
    return exts


setup(ext_modules=_extensions())
