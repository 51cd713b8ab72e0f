"""The Dagster code location: ``dagster dev -w workspace.yaml`` loads ``defs`` from here."""

from __future__ import annotations

from dagster import Definitions

from assets.context import context_assets
from assets.corpus import raw_corpus_sources, raw_corpus_stats
from assets.corpus_pipeline import corpus_pipeline_assets
from assets.evaluation import evaluation_assets
from assets.posttrain import posttrain_assets
from assets.pretraining import pretraining_assets
from assets.release import release_assets
from assets.synthetic import synthetic_assets
from assets.tokenizer import base_tokenizer, superbpe_tokenizer, tokenizer_report
from config import get_preset
from kexaone_dag.automation import build_automation_sensor
from kexaone_dag.executors import executor_for_env
from kexaone_dag.jobs import (
    chain_jobs,
    data_job,
    demo_job,
    observe_raw_corpus_job,
    pretraining_job,
)
from kexaone_dag.resources_by_env import build_resources
from kexaone_dag.sensors import build_raw_corpus_watch


def build_definitions() -> Definitions:
    get_preset()  # a bad $KEXAONE_PRESET fails the load with one clear line, before anything runs
    return Definitions(
        assets=[
            *raw_corpus_sources,
            raw_corpus_stats,
            *corpus_pipeline_assets,
            base_tokenizer,
            superbpe_tokenizer,
            tokenizer_report,
            *synthetic_assets,
            *pretraining_assets,
            *context_assets,
            *evaluation_assets,
            *posttrain_assets,
            *release_assets,
        ],
        jobs=[demo_job, data_job, pretraining_job, *chain_jobs, observe_raw_corpus_job],
        # raw_corpus_watch observes the corpus folders (it replaced the 15-minute observation schedule);
        # kexaone_automation requests the runs. Their default status: KEXAONE_AUTOMATION (automation.py).
        sensors=[build_automation_sensor(), build_raw_corpus_watch()],
        resources=build_resources(),
        executor=executor_for_env(),
    )


defs = build_definitions()
