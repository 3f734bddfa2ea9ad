"""Tests of laerebogen.pipeline."""
