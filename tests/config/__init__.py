"""Tests of laerebogen.config."""
