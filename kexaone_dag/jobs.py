"""Jobs: the whole DAG (``demo``) and the observation of the raw corpus sources."""

from __future__ import annotations

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job

from assets.corpus import raw_corpus_key
from kexaone_dag.presets import CORPUS_DOMAINS

RAW_CORPUS_SELECTION = AssetSelection.assets(*[raw_corpus_key(s) for s in CORPUS_DOMAINS])

# Every materializable asset (observable sources are excluded by AssetSelection.all()).
demo_job = define_asset_job("demo", selection=AssetSelection.all(),
                            description="Materialize every implemented asset of the DAG.")

observe_raw_corpus_job = define_asset_job("observe_raw_corpus", selection=RAW_CORPUS_SELECTION,
                                          description="Observe the raw corpus sources (new data versions).")

observe_raw_corpus_schedule = ScheduleDefinition(
    name="observe_raw_corpus_schedule", job=observe_raw_corpus_job, cron_schedule="*/15 * * * *",
    default_status=DefaultScheduleStatus.STOPPED,
)
