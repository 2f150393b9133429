"""The ``runstate`` command: argument parsing, wiring and exit codes, no analysis logic."""
