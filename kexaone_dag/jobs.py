"""Jobs: the whole DAG (``demo``) and the observation of the raw corpus sources."""

from __future__ import annotations

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job

from assets.corpus import raw_corpus_key
from config import CORPUS_DOMAINS

RAW_CORPUS_SELECTION = AssetSelection.assets(*[raw_corpus_key(s) for s in CORPUS_DOMAINS])

# Every materializable asset (observable sources are excluded by AssetSelection.all()). The corpus
# partitions (en ... stem) all run in this one run: the job's tags make it a run over the whole partition
# range, which the partitioned assets (BackfillPolicy.single_run) process partition by partition.
CORPUS_PARTITION_RANGE_TAGS = {
    "dagster/asset_partition_range_start": CORPUS_DOMAINS[0],
    "dagster/asset_partition_range_end": CORPUS_DOMAINS[-1],
}
demo_job = define_asset_job(
    "demo",
    selection=AssetSelection.all(),
    tags=CORPUS_PARTITION_RANGE_TAGS,
    description="Materialize every implemented asset of the DAG (every corpus partition in one run).",
)

# Everything before training (corpus, tokenizer, synthetic data): the DAG's data half, minutes on a laptop.
TRAINING_GROUPS = ("pretraining", "context", "evaluation")
data_job = define_asset_job(
    "data",
    selection=AssetSelection.all() - AssetSelection.groups(*TRAINING_GROUPS),
    tags=CORPUS_PARTITION_RANGE_TAGS,
    description="Materialize the corpus, tokenizer and synthetic-data assets (no training).",
)

# Through the three pre-training stages (pretrain_stage3): the data half plus the curriculum, no context stage.
pretraining_job = define_asset_job(
    "pretraining",
    selection=AssetSelection.all() - AssetSelection.groups(*TRAINING_GROUPS[1:]),
    tags=CORPUS_PARTITION_RANGE_TAGS,
    description="Materialize everything up to pretrain_stage3 (corpus, tokenizer, "
    "synthetic data, the three pre-training stages).",
)

observe_raw_corpus_job = define_asset_job(
    "observe_raw_corpus",
    selection=RAW_CORPUS_SELECTION,
    description="Observe the raw corpus sources (new data versions).",
)

observe_raw_corpus_schedule = ScheduleDefinition(
    name="observe_raw_corpus_schedule",
    job=observe_raw_corpus_job,
    cron_schedule="*/15 * * * *",
    default_status=DefaultScheduleStatus.STOPPED,
)
