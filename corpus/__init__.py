"""Corpus logic without Dagster: raw source manifests and readers, statistics (filters and dedup next)."""
