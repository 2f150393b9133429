"""Xen ``xentrace`` binary traces: reading (exact mode), writing, synthetic scenarios.

Modules: ``constants`` (TRC ids, ``parse_frequency``), ``walk`` (+ the C
walker ``_walk``: windows and records -> columns), ``reader`` (the Reader /
Source: pcpu streams merged by TSC into member event batches), ``fastpath``
(+ ``_job``, ``_merge``: exact mode's two passes over a file in C; ``prefetch``
starts them before the analysis loads),
``writer`` (xentrace files from records), ``synth`` (random
scheduler-consistent scenarios), ``convert`` (generic CSV -> xentrace).  The
xenalyze-compatible semantics live in ``runstate.analysis.xenalyze``.
"""
