"""Tests of laerebogen.commands."""
