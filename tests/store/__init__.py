"""Tests of laerebogen.store."""
