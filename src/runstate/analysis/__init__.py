"""Analyses on top of the engine: the offline pipeline, and later advice."""
