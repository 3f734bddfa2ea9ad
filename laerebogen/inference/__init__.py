"""Requests to a model and their results, the vLLM engine that answers them, and engines kept
between jobs."""
