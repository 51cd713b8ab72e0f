"""Thin asset definitions (I/O, metadata, checks, lineage); the science lives in pure functions."""
