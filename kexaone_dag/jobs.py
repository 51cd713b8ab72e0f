"""Jobs: the whole DAG (``demo``), its data and pre-training halves, one lineage view per checkpoint
(``upstream_of_<checkpoint>``) and the observation of the raw corpus sources."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from assets import keys
from assets.context import CONTEXT_STAGES
from assets.corpus import raw_corpus_key
from assets.pretraining import PRETRAIN_STAGES
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
TRAINING_GROUPS = ("pretraining", "context", "evaluation", "post_training", "release")
# post-training's data assets (tool tasks run in the sandbox, prompts with verifiers) need no model
POST_TRAINING_DATA = AssetSelection.assets(keys.TOOL_USE_TASKS, keys.RL_PROMPTS)
DATA_SELECTION = AssetSelection.all() - AssetSelection.groups(*TRAINING_GROUPS) | POST_TRAINING_DATA
data_job = define_asset_job(
    "data",
    selection=DATA_SELECTION,
    tags=CORPUS_PARTITION_RANGE_TAGS,
    description="Materialize the corpus, tokenizer and synthetic-data assets, the tool-use tasks and the RL "
    "prompts (no training).",
)

# Through the three pre-training stages (pretrain_stage3): the data half plus the curriculum, no context stage.
pretraining_job = define_asset_job(
    "pretraining",
    selection=AssetSelection.all() - AssetSelection.groups(*TRAINING_GROUPS[1:]),
    tags=CORPUS_PARTITION_RANGE_TAGS,
    description="Materialize everything up to pretrain_stage3 (corpus, tokenizer, "
    "synthetic data, the three pre-training stages).",
)

# One ready lineage view per checkpoint: the checkpoint and everything upstream of it, down to the corpus. In
# the UI (Jobs -> upstream_of_<checkpoint>) the job's graph draws the corpus -> tokenizer -> mixture ->
# checkpoint path without typing a `+checkpoint` query; *Materialize all* there rebuilds exactly that chain
# (unchanged inputs are reused from the artifact store). The observable raw-corpus sources are left out of
# the selection (a job cannot both observe and materialize; `observe_raw_corpus` observes them), and the
# corpus partitions all run in the one run, as in `demo`.
CHECKPOINTS = (
    *(keys.pretrain(s) for s in PRETRAIN_STAGES),
    *(keys.context_ext(s) for s in CONTEXT_STAGES),
    keys.SFT_CHECKPOINT,
    keys.RL_CHECKPOINT,
    keys.PREFERENCE_CHECKPOINT,
)


def upstream_job_name(checkpoint: str) -> str:
    return f"upstream_of_{checkpoint}"


def upstream_selection(checkpoint: str) -> AssetSelection:
    return AssetSelection.assets(checkpoint).upstream().materializable()


chain_jobs = [
    define_asset_job(
        upstream_job_name(checkpoint),
        selection=upstream_selection(checkpoint),
        tags=CORPUS_PARTITION_RANGE_TAGS,
        description=f"Lineage of the `{checkpoint}` checkpoint: the checkpoint and every asset upstream of it, "
        "from the corpus through the tokenizer and the mixtures (the raw-corpus sources it reads are observed "
        "by `observe_raw_corpus`). Open it to see the corpus -> checkpoint path drawn; launch it to rebuild "
        "exactly that chain (every corpus partition in one run; unchanged inputs are reused).",
    )
    for checkpoint in CHECKPOINTS
]

observe_raw_corpus_job = define_asset_job(
    "observe_raw_corpus",
    selection=RAW_CORPUS_SELECTION,
    description="Observe the raw corpus sources (new data versions).",
)
