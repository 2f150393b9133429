"""Mutation fuzzing of every input reader.

Each reader in ``runstate.sources.registry.READERS`` gets seed inputs
(``corpus``); mutants are seeds plus a list of byte edits (``mutate``), so any
mutant can be written down in a few lines and replayed exactly; each mutant
runs in a forked child under an address-space limit and a time limit
(``runner``), which must end with a valid report or one clean error line.
``python -m tests.fuzz --help`` runs it for longer.
"""
