"""The project's exceptions.  Each one renders as a single line for the CLI.

Hierarchy::

    RunstateError
    ├── UsageError        wrong options (exit 2)
    ├── InputError        a file that cannot be read as claimed (exit 1)
    │   └── UnknownFormat
    └── EnvironmentProblem  missing permission, tracefs, optional extra (exit 1)
"""

from __future__ import annotations


class RunstateError(Exception):
    """Root of every error the tool reports to its user."""

    exit_code = 1


class UsageError(RunstateError):
    """The command line or an API argument is wrong."""

    exit_code = 2


class InputError(RunstateError):
    """A trace or event file is broken or not what it claims to be.

    Args:
        path: the file (``"-"`` for stdin).
        reason: what is wrong, in a few words.
        offset: byte offset of the bad record, for binary formats.
        line: 1-based line number, for text formats.
        record: a short description of the offending record, if known.
    """

    def __init__(
        self,
        path: str,
        reason: str,
        *,
        offset: int | None = None,
        line: int | None = None,
        record: str | None = None,
    ) -> None:
        self.path = path
        self.reason = reason
        self.offset = offset
        self.line = line
        self.record = record
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
        if self.offset is not None:
            where += f": byte offset {self.offset}"
        text = f"{where}: {self.reason}"
        if self.record is not None:
            text += f" ({self.record})"
        return text


class UnknownFormat(InputError):
    """No registered reader recognises the input."""


class EnvironmentProblem(RunstateError):
    """The host lacks something: root, tracefs, an optional dependency."""
