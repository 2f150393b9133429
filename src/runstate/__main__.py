"""``python -m runstate`` is the ``runstate`` command."""

from runstate.cli.main import entry

entry()
