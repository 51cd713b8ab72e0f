"""Synthetic data logic without Dagster: templates, the offline programmatic teacher, verification,
filters and balancing. ``assets/synthetic.py`` only orchestrates these functions."""
