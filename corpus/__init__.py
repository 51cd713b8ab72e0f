"""Corpus logic without Dagster: raw source manifests and readers, statistics, offline language ID and
tokenizers, datatrove pipeline steps, the filter and dedup pipelines and their executors."""
