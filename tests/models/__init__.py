"""Tests of laerebogen.models."""
