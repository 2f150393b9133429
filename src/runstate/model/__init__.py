"""Vocabulary shared by every layer: states, event batches, the member registry."""
