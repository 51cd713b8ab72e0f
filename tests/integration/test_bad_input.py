"""Bad configuration fails before any compute with one line naming the problem, and loses nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from kexaone_dag.definitions import build_definitions

KEXAONE = str(Path(sys.executable).parent / "kexaone")


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    full_env.update(env)
    return subprocess.run([KEXAONE, *args], capture_output=True, text=True, timeout=300, env=full_env)


def assert_one_line_error(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: ") and expected in lines[0], proc.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"KEXAONE_PRESET": "k-exaone-7b"}, "unknown preset 'k-exaone-7b' (known: tiny, k-exaone-236b)"),
        (
            {"KEXAONE_CORPUS_ROOT": "/nonexistent/corpus"},
            "raw_corpus_en: source folder /nonexistent/corpus/en does not exist",
        ),
        (
            {"KEXAONE_ARTIFACT_ROOT": "s3://kexaone-artifacts/prod"},
            "artifact store s3://kexaone-artifacts/prod is on S3 but AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "are not set",
        ),
        ({"KEXAONE_EXECUTOR": "slurm"}, "KEXAONE_EXECUTOR='slurm' is not one of multiprocess, in_process, k8s"),
        ({"KEXAONE_TRAINER": "k8s"}, "trainer backend 'k8s' needs an image (KEXAONE_TRAINER_IMAGE)"),
    ],
)
def test_cli_validate_reports_one_clear_line(kexaone_env, env, expected):
    assert_one_line_error(run_cli("validate", **env), expected)


def test_cli_validate_refuses_the_full_preset_on_a_one_node_trainer(kexaone_env):
    """Its layouts fit (kexaone plan --layout), and the stages need 8 nodes: a multi-node trainer backend."""
    proc = run_cli("validate", KEXAONE_PRESET="k-exaone-236b")
    assert_one_line_error(
        proc,
        "preset k-exaone-236b cannot train as configured: the stages need 8 nodes x 8 GPUs; trainer backend "
        "'subprocess' launches one node (multi-node: KEXAONE_TRAINER=slurm or k8s-multinode)",
    )


def test_cli_validate_on_a_multi_node_trainer_names_what_the_full_preset_still_lacks(kexaone_env):
    """Nodes, pipeline and context parallelism launch; the NIAH gate after a context stage does not yet."""
    proc = run_cli("validate", KEXAONE_PRESET="k-exaone-236b", KEXAONE_TRAINER="slurm")
    assert_one_line_error(
        proc,
        "preset k-exaone-236b cannot train as configured: the context stages' NIAH gate generates with the whole "
        "model on rank 0 after training, which their layout (PP 2, CP 2 (stage1), CP 8 (stage2)) does not allow",
    )


def test_cli_validate_passes_on_the_embedded_default(kexaone_env):
    proc = run_cli("validate")
    assert proc.returncode == 0 and proc.stdout.startswith("ok: preset tiny, 8 corpus sources"), proc.stderr


def test_invalid_shapes_in_run_config_fail_before_the_asset_computes(kexaone_env):
    defs = build_definitions()
    run_config = {"resources": {"preset": {"config": {"overrides": {"model.moe_router_topk": 64}}}}}
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("data").execute_in_process(
            instance=instance, run_config=run_config, raise_on_error=False
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE")
    assert failure.event_specific_data.error.message.strip() == (
        "config.schema.PresetError: preset 'tiny' is invalid: "
        "model.moe_router_topk=64 must be between 1 and model.num_moe_experts=8"
    )
    assert not any(e.event_type_value == "STEP_START" for e in result.all_events)  # nothing computed
    assert not (kexaone_env["home"] / "artifacts").exists()


def test_missing_corpus_folder_fails_the_step_before_writing(kexaone_env):
    shutil.rmtree(kexaone_env["corpus"] / "vi")
    defs = build_definitions()
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("data").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "raw_corpus_vi: source folder" in str(failure.event_specific_data.error.cause.message)
    assert not (kexaone_env["home"] / "artifacts" / "raw_corpus_stats").exists()


def test_a_corrupt_file_fails_the_step_naming_it_and_keeps_the_previous_artifact(kexaone_env):
    defs = build_definitions()
    stats = [AssetKey("raw_corpus_stats")]  # the first reader of every raw file; the rest of `data` adds nothing here
    with DagsterInstance.ephemeral() as instance:
        assert defs.resolve_job_def("data").execute_in_process(instance=instance, asset_selection=stats).success
        before = sorted(p.name for p in (kexaone_env["home"] / "artifacts" / "raw_corpus_stats").iterdir())
        (kexaone_env["corpus"] / "es" / "broken.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00not gzip at all")
        result = defs.resolve_job_def("data").execute_in_process(
            instance=instance, asset_selection=stats, raise_on_error=False
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "broken.jsonl.gz: corrupt gzip stream" in failure.event_specific_data.error.cause.message
    after = sorted(p.name for p in (kexaone_env["home"] / "artifacts" / "raw_corpus_stats").iterdir())
    assert after == before  # the finished artifact is untouched and nothing half-written appeared


def test_a_tokenizer_without_its_corpus_fails_before_training_naming_the_missing_input(kexaone_env):
    from dagster import AssetSelection, Definitions, define_asset_job

    job = define_asset_job("only_base_tokenizer", selection=AssetSelection.assets("base_tokenizer"))
    single = Definitions.merge(build_definitions(), Definitions(jobs=[job]))
    with DagsterInstance.ephemeral() as instance:
        result = single.resolve_job_def("only_base_tokenizer").execute_in_process(
            instance=instance, raise_on_error=False
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert (
        "deduplicated_corpus partition 'en' has not been materialized yet; materialize it first"
        in failure.event_specific_data.error.cause.message
    )
    assert not (kexaone_env["home"] / "artifacts" / "base_tokenizer").exists()


def test_a_policy_stage_layout_that_cannot_run_is_refused_before_reading_anything(kexaone_env):
    """AGAPO / GROUPER run on several processes as pre-training does (TP x DP, EP splitting DP); a trainer
    layout that does not divide is refused in one line before any upstream is read."""
    from dagster import materialize

    from resources.trainer import TrainerLauncher

    defs = build_definitions()
    trainer = TrainerLauncher(work_root=defs.resources["trainer"].work_root, nproc_per_node=2, expert_parallel=3)
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [defs.get_assets_def(AssetKey("rl_checkpoint"))],
            instance=instance,
            resources={**defs.resources, "trainer": trainer},
            raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.cause.message
    assert (
        "rl_checkpoint: the trainer's layout cannot run the stage: 2 processes do not divide into TP=1 x EP=3"
        in message
    )
    assert "\n" not in message.strip() and not (kexaone_env["home"] / "training").exists()
