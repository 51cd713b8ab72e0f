"""The code location as stock Dagster tools see it: validate, asset-graph snapshot, executors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dagster import AssetKey
from dagster._config import validate_config

from config import get_preset
from kexaone_dag.definitions import build_definitions
from kexaone_dag.executors import (
    GPU_POOL,
    ExecutorConfigError,
    executor_for_env,
    gpu_step_tags,
    load_k8s_executor_config,
    training_asset_kwargs,
)

REPO = Path(__file__).resolve().parents[2]
CORPUS_SOURCES = ("en", "ko", "es", "de", "ja", "vi", "code", "stem")
SNAPSHOT = Path(__file__).resolve().parents[1] / "snapshots" / "asset_graph.json"


def asset_graph_snapshot(defs) -> dict:
    graph = defs.resolve_asset_graph()
    out = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        out[key.to_user_string()] = {
            "kind": "observable_source" if node.is_observable else "asset",
            "group": node.group_name,
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "code_version": node.code_version,
            "partitions": sorted(node.partitions_def.get_partition_keys()) if node.partitions_def else None,
            "automation_condition": node.automation_condition.get_label() if node.automation_condition else None,
            "checks": sorted(c.name for c in node.check_keys),
            "pool": node.pools and sorted(node.pools) or None,
        }
    return out


def test_dagster_definitions_validate_succeeds(kexaone_env):
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful for code location kexaone_dag" in proc.stdout + proc.stderr


def test_definitions_validate_fails_on_a_bad_preset(kexaone_env):
    env = {**os.environ, "KEXAONE_PRESET": "k-exaone-7b"}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode != 0
    assert "unknown preset 'k-exaone-7b' (known: tiny, k-exaone-236b)" in proc.stdout + proc.stderr


def test_asset_graph_matches_snapshot(kexaone_env):
    current = asset_graph_snapshot(build_definitions())
    if os.environ.get("KEXAONE_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert current == expected, "asset graph changed: review, then rerun with KEXAONE_UPDATE_SNAPSHOTS=1"


def test_graph_shape_that_the_design_requires(kexaone_env):
    graph = build_definitions().resolve_asset_graph()
    sources = [f"raw_corpus_{s}" for s in ("en", "ko", "es", "de", "ja", "vi", "code", "stem")]
    for name in sources:
        assert graph.get(AssetKey(name)).is_observable
    stats = graph.get(AssetKey("raw_corpus_stats"))
    assert {p.to_user_string() for p in stats.parent_keys} == set(sources)
    assert stats.automation_condition is not None and stats.code_version

    # raw_corpus_{lang} -> filtered_corpus{lang} -> deduplicated_corpus{lang}, partitioned by language/domain
    from kexaone_dag.automation import DOWNSTREAM_OF_DATA, OWN_SOURCE_DATA

    languages = {"en", "ko", "es", "de", "ja", "vi", "code", "stem"}
    filtered, dedup = graph.get(AssetKey("filtered_corpus")), graph.get(AssetKey("deduplicated_corpus"))
    for node in (filtered, dedup):
        assert node.group_name == "corpus" and node.code_version
        assert set(node.partitions_def.get_partition_keys()) == languages
        assert {"non_empty_output", "language_purity"} <= {c.name for c in node.check_keys}
    # partition p of filtered_corpus is requested for a new version of raw_corpus_<p> only (tests/integration/
    # test_automation.py); deduplicated_corpus p follows filtered_corpus p (same partitions)
    assert filtered.automation_condition == OWN_SOURCE_DATA and dedup.automation_condition == DOWNSTREAM_OF_DATA
    assert {p.to_user_string() for p in filtered.parent_keys} == set(sources)
    assert {p.to_user_string() for p in dedup.parent_keys} == {"filtered_corpus"}
    assert "planted_duplicates_removed" in {c.name for c in dedup.check_keys}
    assert filtered.partitions_def == dedup.partitions_def  # partition p of dedup reads partition p

    # deduplicated_corpus -> base_tokenizer -> superbpe_tokenizer -> tokenizer_report
    parents = {
        n: {p.to_user_string() for p in graph.get(AssetKey(n)).parent_keys}
        for n in ("base_tokenizer", "superbpe_tokenizer", "tokenizer_report")
    }
    assert parents == {
        "base_tokenizer": {"deduplicated_corpus"},
        "superbpe_tokenizer": {"deduplicated_corpus", "base_tokenizer"},
        "tokenizer_report": {"deduplicated_corpus", "base_tokenizer", "superbpe_tokenizer"},
    }
    for name in parents:
        node = graph.get(AssetKey(name))
        assert node.group_name == "tokenizer" and node.partitions_def is None
        assert node.automation_condition == DOWNSTREAM_OF_DATA and node.code_version

    # [pretraining] mixtures from corpus + tokenizer (+ synthetic sets), checkpoints chained stage to stage,
    # each checkpoint a GPU step in the gpu pool
    def parents_of(name: str) -> set[str]:
        return {p.to_user_string() for p in graph.get(AssetKey(name)).parent_keys}

    corpus_and_tokenizer = {"deduplicated_corpus", "superbpe_tokenizer"}
    assert parents_of("tokenized_mixture_stage1") == corpus_and_tokenizer
    assert parents_of("tokenized_mixture_stage2") == corpus_and_tokenizer | {"multilingual_synthetic_data"}
    assert parents_of("tokenized_mixture_stage3") == corpus_and_tokenizer | {
        "multilingual_synthetic_data",
        "thinking_augmented_data",
    }
    assert parents_of("pretrain_stage1") == {"tokenized_mixture_stage1"}
    assert parents_of("pretrain_stage2") == {"tokenized_mixture_stage2", "pretrain_stage1"}
    assert parents_of("pretrain_stage3") == {"tokenized_mixture_stage3", "pretrain_stage2"}
    for stage in ("stage1", "stage2", "stage3"):
        node = graph.get(AssetKey(f"pretrain_{stage}"))
        assert node.group_name == "pretraining" and node.pools == {GPU_POOL} and node.partitions_def is None

    # [post_training] tool_use_tasks, sft_data -> sft_checkpoint (from context_ext_stage2); rl_prompts ->
    # rl_checkpoint (AGAPO) -> preference_checkpoint (GROUPER) -> post_training_eval (blocking NIAH check)
    assert parents_of("rl_prompts") == {"tool_use_tasks"}
    assert parents_of("sft_data") == {
        "thinking_augmented_data",
        "multilingual_synthetic_data",
        "tool_use_tasks",
        "rl_prompts",
        "superbpe_tokenizer",
    }
    assert parents_of("sft_checkpoint") == {"sft_data", "context_ext_stage2", "superbpe_tokenizer"}
    assert parents_of("rl_checkpoint") == {"rl_prompts", "sft_checkpoint", "superbpe_tokenizer"}
    assert parents_of("preference_checkpoint") == {"rl_prompts", "rl_checkpoint", "superbpe_tokenizer"}
    assert {"context_ext_stage2", "sft_checkpoint", "rl_checkpoint", "preference_checkpoint"} <= parents_of(
        "post_training_eval"
    )
    for name in ("sft_checkpoint", "rl_checkpoint", "preference_checkpoint", "post_training_eval"):
        node = graph.get(AssetKey(name))
        assert node.group_name == "post_training" and node.pools == {GPU_POOL}
    eval_checks = {c.name: c for c in graph.get(AssetKey("post_training_eval")).check_keys}
    assert "niah_survives_post_training" in eval_checks


CHECKPOINTS = [
    "pretrain_stage1",
    "pretrain_stage2",
    "pretrain_stage3",
    "context_ext_stage1",
    "context_ext_stage2",
    "sft_checkpoint",
    "rl_checkpoint",
    "preference_checkpoint",
]


def test_jobs_and_automation_ship_stopped(kexaone_env):
    defs = build_definitions()
    chain = {f"upstream_of_{c}" for c in CHECKPOINTS}
    assert {j.name for j in defs.resolve_all_job_defs()} - {"__ASSET_JOB"} == {
        "demo",
        "data",
        "pretraining",
        "observe_raw_corpus",
        *chain,
    }
    # under the suite's KEXAONE_AUTOMATION=off (tests/conftest.py); the defaults per deployment:
    # tests/integration/test_automation.py
    assert {s.name: s.default_status.value for s in defs.sensors} == {
        "kexaone_automation": "STOPPED",
        "raw_corpus_watch": "STOPPED",
    }
    assert not defs.schedules  # raw_corpus_watch replaced the 15-minute observation schedule


@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
def test_each_checkpoint_has_a_lineage_job_of_exactly_its_upstream_closure(checkpoint, kexaone_env):
    """`upstream_of_<checkpoint>` selects the checkpoint and every materializable asset it transitively reads
    (walked here over the asset graph's parent keys), with those assets' checks and nothing else; the
    observable sources stay out (observed by `observe_raw_corpus`); the corpus partitions run in one run."""
    from kexaone_dag.jobs import CORPUS_PARTITION_RANGE_TAGS

    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    closure, todo = set(), [AssetKey(checkpoint)]
    while todo:
        key = todo.pop()
        if key not in closure:
            closure.add(key)
            todo.extend(graph.get(key).parent_keys)
    sources = {k for k in closure if graph.get(k).is_observable}
    assert {k.to_user_string() for k in sources} == {f"raw_corpus_{s}" for s in CORPUS_SOURCES}
    expected = closure - sources
    assert {"filtered_corpus", "deduplicated_corpus", "superbpe_tokenizer"} <= {k.to_user_string() for k in expected}

    job = defs.resolve_job_def(f"upstream_of_{checkpoint}")
    assert job.asset_layer.selected_asset_keys == expected
    assert set(job.asset_layer.asset_graph.asset_check_keys) == {
        c for c in graph.asset_check_keys if c.asset_key in expected
    }
    assert dict(job.tags) == CORPUS_PARTITION_RANGE_TAGS  # the partitioned corpus assets: all in one run
    assert checkpoint in job.description


def test_gpu_steps_request_gpus_from_the_preset_and_join_the_gpu_pool():
    full = training_asset_kwargs(get_preset("k-exaone-236b"))
    assert full["pool"] == GPU_POOL == "gpu"
    resources = full["op_tags"]["dagster-k8s/config"]["container_config"]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "8" == resources["requests"]["nvidia.com/gpu"]
    pod = full["op_tags"]["dagster-k8s/config"]["pod_spec_config"]
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    tiny = gpu_step_tags(get_preset("tiny").compute)["dagster-k8s/config"]["container_config"]["resources"]
    assert "nvidia.com/gpu" not in tiny["limits"]


@pytest.mark.parametrize("backend", ["k8s", "k8s-multinode", "slurm"])
def test_a_step_that_launches_its_trainer_elsewhere_requests_no_gpus(monkeypatch, backend):
    """The trainer's own pod(s) or Slurm job hold the stage's GPUs; the waiting step pod holds none."""
    monkeypatch.setenv("KEXAONE_TRAINER", backend)
    kwargs = training_asset_kwargs(get_preset("k-exaone-236b"))
    assert kwargs["op_tags"] == {} and kwargs["pool"] == GPU_POOL
    evaluation = training_asset_kwargs(get_preset("k-exaone-236b"), launches_trainer=False)
    limits = evaluation["op_tags"]["dagster-k8s/config"]["container_config"]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "8"


def test_gpu_tags_apply_to_a_real_asset_definition():
    """A training-type asset built with the kwargs carries the tags and pool Dagster reads."""
    from dagster import asset

    @asset(**training_asset_kwargs(get_preset("k-exaone-236b")))
    def some_training_step():
        return None

    k8s_config = json.loads(some_training_step.op.tags["dagster-k8s/config"])  # Dagster stores tags as JSON
    assert k8s_config["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert some_training_step.op.pool == "gpu"


def test_k8s_executor_config_file_is_valid_for_dagster_k8s():
    from dagster_k8s import k8s_job_executor

    config = load_k8s_executor_config()
    result = validate_config(k8s_job_executor.config_schema.config_type, config)
    assert result.success, [e.message for e in result.errors]
    assert executor_for_env("k8s").name == "k8s"
    assert executor_for_env("multiprocess").name == "multiprocess"
    with pytest.raises(ExecutorConfigError, match="KEXAONE_EXECUTOR='slurm' is not one of"):
        executor_for_env("slurm")


GPU_COUNT = textwrap.dedent("""
    import json, os
    from kexaone_dag.definitions import build_definitions
    from resources.trainer import k8s_pod_spec
    from config import get_preset

    defs = build_definitions()
    preset = get_preset()
    trainer = defs.resources["trainer"]
    nproc, _, _ = trainer.layout(preset)
    counts = {}
    for key in ("pretrain_stage1", "pretrain_stage2", "pretrain_stage3", "context_ext_stage1",
                "context_ext_stage2", "short_context_eval"):
        tags = defs.resolve_assets_def(key).op.tags
        step = json.loads(tags["dagster-k8s/config"])["container_config"]["resources"]["limits"] \\
            .get("nvidia.com/gpu", "0") if "dagster-k8s/config" in tags else "0"
        launches = key != "short_context_eval"
        pod = (k8s_pod_spec(preset, nproc_per_node=nproc, pvc_claim=None, mount_path="/data")["containers"][0]
               ["resources"]["limits"].get("nvidia.com/gpu", "0")) if launches and trainer.backend == "k8s" else "0"
        counts[key] = [int(step), int(pod)]
    print(json.dumps(counts))
""")


@pytest.mark.parametrize("trainer", ["subprocess", "k8s"])
def test_exactly_one_pod_holds_a_stages_gpus(trainer, tmp_path):
    """Full preset on Kubernetes (``KEXAONE_EXECUTOR=k8s``): with the trainer inside the step the step pod
    asks for the 8 GPUs; with ``KEXAONE_TRAINER=k8s`` the Pipes trainer pod does and the step pod asks for
    none (it launches and waits). Evaluation computes in its step pod either way."""
    env = {
        **os.environ,
        "KEXAONE_PRESET": "k-exaone-236b",
        "KEXAONE_EXECUTOR": "k8s",
        "KEXAONE_TRAINER": trainer,
        "KEXAONE_TRAINER_IMAGE": "kexaone:test",
        "KEXAONE_HOME": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-c", GPU_COUNT], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-3000:]
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    gpus = get_preset("k-exaone-236b").compute.gpus_per_training_step
    for key, (step, pod) in counts.items():
        assert step + pod == gpus, (key, step, pod)
        if key == "short_context_eval" or trainer == "subprocess":
            assert (step, pod) == (gpus, 0), key
        else:
            assert (step, pod) == (0, gpus), key


def test_descriptions_render_intact_in_the_ui():
    """The UI renders descriptions as Markdown, where a bare <think> or <step> is an HTML tag and vanishes:
    every angle-bracketed word of an asset's or a check's description sits in backticks."""
    import re

    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    texts = {key.to_user_string(): graph.get(key).description or "" for key in graph.get_all_asset_keys()}
    checks = graph.asset_check_keys
    assert len(checks) >= 10
    for check_key in checks:
        texts[check_key.to_user_string()] = graph.get_check_spec(check_key).description or ""
    outside_code = {name: re.findall(r"<[^>\s]+>", re.sub(r"`[^`]*`", "", text)) for name, text in texts.items()}
    assert {name: tags for name, tags in outside_code.items() if tags} == {}
    assert any("`<think>`" in t for t in texts.values())  # the synthetic description still says it
