"""Tests of laerebogen.inference."""
