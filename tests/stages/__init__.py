"""Tests of laerebogen.stages."""
