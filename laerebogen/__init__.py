"""Lærebogen: a multi-turn Danish instruction-tuning dataset made with offline vLLM on SLURM."""

__version__ = "0.1.0"
