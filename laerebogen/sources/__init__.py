"""Readers of task sources that need no model: corpora of texts and imported datasets."""
