"""Presentation: the report model and its table, JSON and CSV renderings."""
