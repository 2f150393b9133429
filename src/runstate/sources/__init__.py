"""Readers: one per input format, behind one protocol (see ``base``) and one registry."""
