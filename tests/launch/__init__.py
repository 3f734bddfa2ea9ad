"""Tests of laerebogen.launch."""
