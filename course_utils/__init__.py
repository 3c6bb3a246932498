"""Helpers for the DyT compression course (see README.md)."""

__version__ = "0.1.0"
