"""Decontamination: evaluation sets read from files, and their word n-grams found in text."""
