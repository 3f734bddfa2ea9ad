"""Model directories: what a loadable model is, preparing the local models offline, the tiny test
model."""
