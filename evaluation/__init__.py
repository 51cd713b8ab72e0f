"""Evaluation logic with no Dagster in it: ``niah`` (the Needle-In-A-Haystack suite: cases, scoring, gate,
report, and the synthetic retrieval documents the context-extension stages train on), ``perplexity``
(held-out short-context perplexity and drift) and ``summary`` (the evaluation summary page)."""
