"""Tests of laerebogen.outputs."""
