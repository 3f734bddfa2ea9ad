"""Tests of laerebogen.filtering."""
