"""The version of the C kernels' calling conventions this Python code expects.

The kernels are compiled once and the Python modules around them may change
afterwards (an editable install, a checkout of another revision).  A kernel
built from other sources would read its arrays with the wrong layout, so every
module that loads a kernel checks the version the kernel was built with
(``KERNEL_ABI_VERSION`` in ``kernel_abi.h``) and refuses a stale build with
instructions instead.
"""

from __future__ import annotations

from types import ModuleType

#: must equal KERNEL_ABI_VERSION in src/runstate/kernel_abi.h
ABI_VERSION = 1


class StaleKernelError(ImportError):
    """A compiled kernel does not match the Python code that loads it."""


def check_kernel(module: ModuleType) -> None:
    """Raise :class:`StaleKernelError` unless ``module`` was built for this code."""
    built = getattr(module, "ABI_VERSION", None)
    if built != ABI_VERSION:
        raise StaleKernelError(
            f"{module.__name__} was built for kernel ABI {built}, this code needs "
            f"{ABI_VERSION}: rebuild the C kernels (pip install . , or "
            f"python setup.py build_ext --inplace for an editable checkout)")


def check_constants(module: ModuleType, expected: dict[str, int]) -> None:
    """Raise :class:`StaleKernelError` if a kernel's constants differ from Python's."""
    wrong = {name: (getattr(module, name, None), value) for name, value in expected.items()
             if getattr(module, name, None) != value}
    if wrong:
        detail = ", ".join(f"{name} is {got} in C, {want} in Python"
                           for name, (got, want) in sorted(wrong.items()))
        raise StaleKernelError(f"{module.__name__}: constants disagree ({detail}); "
                               "rebuild the C kernels or fix the definitions")
