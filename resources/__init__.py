"""Dagster resources: artifact store (fsspec: local or S3), DuckDB warehouse, corpus source locations."""
