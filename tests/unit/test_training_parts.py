"""The pieces of pre-training without Dagster: Megatron mixtures, the stage plan, Muon + AdamW (and its
explicit fallback), checkpoints with both optimizers, the trainer launch specs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from config import get_preset
from model import data, stages, training
from model.stages import TrainingSetupError, stage_plan
from model.train import validate_inputs
from resources.trainer import StageLaunch, TrainerLauncher, k8s_pod_spec, torchrun_command
from tests.model_support import MEGATRON_QUIET

pytestmark = MEGATRON_QUIET

TINY = get_preset("tiny")


def _docs(seed: int, n: int, low: int = 5, high: int = 60) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [list(rng.integers(10, 1000, int(rng.integers(low, high)))) for _ in range(n)]


def _mixture(tmp_path, weights, docs_by_source, num_samples=64, seq_length=32):
    texts = {k: (lambda k=k: iter([" ".join(map(str, d)) for d in docs_by_source[k]])) for k in docs_by_source}
    return data.build_mixture(
        tmp_path,
        stage="stage1",
        weights=weights,
        texts=texts,
        encode_batch=lambda batch: [[int(t) for t in s.split()] for s in batch],
        eod_id=1,
        pad_id=2,
        vocab_size=1024,
        seq_length=seq_length,
        num_samples=num_samples,
        seed=7,
    )


def test_mixture_is_megatron_indexed_data_and_blends_as_requested(tmp_path):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    docs = {"en": _docs(0, 80), "code": _docs(1, 40), "stem": _docs(2, 20)}
    manifest = _mixture(tmp_path, {"en": 0.5, "code": 0.3, "stem": 0.2}, docs, num_samples=200)
    stored = IndexedDataset(str(tmp_path / "code"))
    assert len(stored) == 40 and list(stored[0]) == docs["code"][0] + [1]  # documents end with EOD
    assert {s.name: s.tokens for s in manifest.sources}["code"] == sum(len(d) + 1 for d in docs["code"])

    blend = data.open_mixture(tmp_path, tmp_path / "cache")
    sample = blend[0]
    assert sample["tokens"].shape == (32,) and torch.equal(
        torch.as_tensor(sample["labels"][:-1]), torch.as_tensor(sample["tokens"][1:])
    )
    rows = {r["source"]: r for r in data.mixture_report(manifest, data.source_of_samples(blend, manifest, 200))}
    for name, weight in {"en": 0.5, "code": 0.3, "stem": 0.2}.items():
        assert abs(rows[name]["effective"] - weight) <= 0.01
    assert rows["stem"]["epochs"] > rows["en"]["epochs"]  # the small source is repeated more

    again = data.open_mixture(tmp_path, tmp_path / "cache2")  # the same order from the same files and seed
    assert all(np.array_equal(again[i]["tokens"], blend[i]["tokens"]) for i in range(0, 200, 17))


def test_mixture_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(data.DataError, match=r"no input for sources \['ko'\]"):
        _mixture(tmp_path / "a", {"en": 0.5, "ko": 0.5}, {"en": _docs(0, 5)})
    with pytest.raises(data.DataError, match="sum to 1"):
        _mixture(tmp_path / "b", {"en": 0.7}, {"en": _docs(0, 5)})
    with pytest.raises(data.DataError, match=r"\['ko'\] have a weight but no documents"):
        _mixture(tmp_path / "c", {"en": 0.5, "ko": 0.5}, {"en": _docs(0, 5), "ko": []})
    with pytest.raises(data.DataError, match="outside the tokenizer vocabulary"):
        _mixture(tmp_path / "d", {"en": 1.0}, {"en": [[5, 4000]]})
    with pytest.raises(data.DataError, match="not a tokenized mixture"):
        data.read_manifest(tmp_path / "nothing")


def test_stage_plan_splits_one_schedule_over_three_stages():
    plans = [stage_plan(TINY, s) for s in ("stage1", "stage2", "stage3")]
    assert [p.first_step for p in plans] == [0, 64, 128] and {p.steps for p in plans} == {64}
    assert sum(p.tokens for p in plans) == TINY.pretrain.total_tokens
    full = get_preset("k-exaone-236b")
    bounds = stages.stage_steps(full)
    total = stages.schedule(full).total_steps
    assert bounds["stage3"][1] == total and bounds["stage2"][0] == bounds["stage1"][1]
    assert abs((bounds["stage1"][1] - bounds["stage1"][0]) / total - 0.6) < 1e-3
    with pytest.raises(TrainingSetupError, match="unknown stage"):
        stage_plan(TINY, "stage4")


def test_validation_lists_every_problem_before_any_compute(tmp_path):
    manifest = data.MixtureManifest(
        stage="stage1",
        seq_length=64,
        num_samples=10,
        seed=0,
        eod_id=1,
        pad_id=2,
        vocab_size=4096,
        sources=(data.SourceStats("en", 1.0, 3, 100, 4095),),
    )
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old").write_text("x")
    with pytest.raises(TrainingSetupError) as err:
        validate_inputs(
            TINY,
            stage_plan(TINY, "stage2"),
            manifest,
            output=tmp_path / "out",
            init_from=None,
            world_size=2,
            tensor_parallel=1,
            expert_parallel=3,
        )
    message = str(err.value)
    for expected in (
        "vocabulary mismatch",
        "sequence length 64",
        "needs 512",
        "never overwritten",
        "needs --init-from",
        "does not divide 8 experts",
    ):
        assert expected in message, message


def test_muon_on_matrices_adamw_on_the_rest(tiny):
    _, model = tiny
    optimizer = training.build_optimizer(model, TINY)
    assert TINY.pretrain.optimizer == "muon" and isinstance(optimizer, training.MuonWithAdamW)
    muon_opt, adam_opt = optimizer.optimizers
    muon_params = {id(p) for g in muon_opt.param_groups for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim == 2 for g in muon_opt.param_groups for p in g["params"])
    assert not any("embedding" in names[i] or "output_layer" in names[i] for i in muon_params)
    adam_names = {names[id(p)] for g in adam_opt.param_groups for p in g["params"]}
    assert any("embedding" in n for n in adam_names) and any("layernorm" in n or "norm" in n for n in adam_names)
    assert len(muon_params) + len(adam_names) == sum(1 for p in model.parameters() if p.requires_grad)
    # the WSD scheduler drives both optimizers' learning rates
    scheduler = training.wsd_scheduler(optimizer, TINY)
    scheduler.step(increment=10)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([TINY.pretrain.max_lr] * 3)


def test_fallback_is_explicit(tiny, monkeypatch):
    _, tiny_model = tiny
    adam = dataclasses.replace(TINY, pretrain=dataclasses.replace(TINY.pretrain, optimizer="adam"))
    assert isinstance(training.build_optimizer(tiny_model, adam), torch.optim.AdamW)
    import megatron.core.optimizer.emerging_optimizers as eo

    monkeypatch.setattr(eo, "HAVE_EMERGING_OPTIMIZERS", False)
    with pytest.raises(training.OptimizerUnavailableError, match="pretrain.optimizer='adam'"):
        training.build_optimizer(tiny_model, TINY)


def test_torchrun_and_k8s_launch_specs(tmp_path):
    launch = StageLaunch(
        preset_name="k-exaone-236b",
        overrides={"pretrain.max_lr": 2e-4},
        stage="stage2",
        data=tmp_path / "mix",
        work_dir=tmp_path / "work",
        output=tmp_path / "out",
        init_from=tmp_path / "prev",
        tensor_parallel=8,
        expert_parallel=8,
    )
    command = torchrun_command(8, launch.train_args(), python="python")
    assert command[:5] == ["python", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=8"]
    args = command[command.index("model.train") + 1 :]
    assert args[args.index("--init-from") + 1] == str(tmp_path / "prev")
    assert json.loads(args[args.index("--overrides") + 1]) == {"pretrain.max_lr": 2e-4}
    assert args[args.index("--context-parallel") + 1] == "1"
    # the full preset's 256K stage carries its context parallelism into the launch
    long = StageLaunch(
        preset_name="k-exaone-236b",
        overrides={},
        stage="context_stage2",
        data=tmp_path / "mix",
        work_dir=tmp_path / "work",
        output=tmp_path / "out",
        init_from=tmp_path / "prev",
        tensor_parallel=8,
        expert_parallel=8,
        context_parallel=get_preset("k-exaone-236b").context.stages["stage2"].context_parallel,
    )
    assert long.train_args()[long.train_args().index("--context-parallel") + 1] == "8"

    full = get_preset("k-exaone-236b")
    spec = k8s_pod_spec(full, nproc_per_node=8, pvc_claim="kexaone-data", mount_path="/data")
    limits = spec["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "8" and spec["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-H200"}
    assert {"name": "kexaone-data", "persistent_volume_claim": {"claim_name": "kexaone-data"}} in spec["volumes"]
    assert (
        "nvidia.com/gpu"
        not in k8s_pod_spec(TINY, nproc_per_node=1, pvc_claim=None, mount_path="/data")["containers"][0]["resources"][
            "limits"
        ]
    )


def test_context_stage_plans_follow_pretraining_at_constant_tokens_per_step():
    pretrain_total = stages.schedule(TINY).total_steps
    plans = [stage_plan(TINY, f"context_{s}") for s in ("stage1", "stage2")]
    assert plans[0].first_step == pretrain_total and plans[1].first_step == pretrain_total + plans[0].steps
    for plan, key in zip(plans, ("stage1", "stage2")):
        cs = TINY.context.stages[key]
        assert plan.seq_length == cs.seq_length and plan.peak_lr == cs.lr
        # the same tokens per step as pre-training, at least one sequence
        assert plan.global_batch_size == max(
            1, TINY.pretrain.global_batch_size * TINY.pretrain.seq_length // cs.seq_length
        )
        assert plan.tokens >= cs.tokens


def test_packed_samples_mask_padding_out_of_the_loss(tmp_path):
    samples = np.array([[5, 6, 1, 7, 1, 2, 2, 2, 2], [8, 9, 10, 11, 12, 13, 14, 1, 2]])
    manifest = data.MixtureManifest(
        stage="context_stage1",
        seq_length=8,
        num_samples=2,
        seed=0,
        eod_id=1,
        pad_id=2,
        vocab_size=64,
        sources=(data.SourceStats("long_documents", 1.0, 3, 13, 14),),
        kind="packed",
    )
    data.write_packed_samples(tmp_path, samples, manifest)
    packed = data.open_mixture(tmp_path, tmp_path / "cache")
    first = packed[0]
    assert list(first["tokens"]) == [5, 6, 1, 7, 1, 2, 2, 2] and list(first["labels"]) == [6, 1, 7, 1, 2, 2, 2, 2]
    assert list(first["loss_mask"]) == [1, 1, 1, 1, 0, 0, 0, 0]
    assert list(packed[3]["tokens"]) == list(samples[1][:-1])  # reading past the end wraps around
    with pytest.raises(data.DataError, match=r"must be \[n, 9\]"):
        data.write_packed_samples(tmp_path / "bad", samples[:, :5], manifest)


def test_packed_loss_weights_scale_the_answer_tokens_and_still_skip_padding(tmp_path):
    samples = np.array([[5, 6, 1, 7, 8, 1, 2, 2, 2]])
    weights = np.array([[1, 1, 1, 1, 30, 1, 0, 0, 0]])  # predicting token 4 (label 3) is an answer
    manifest = data.MixtureManifest(
        stage="context_stage1",
        seq_length=8,
        num_samples=1,
        seed=0,
        eod_id=1,
        pad_id=2,
        vocab_size=64,
        sources=(data.SourceStats("long_documents", 1.0, 2, 6, 8),),
        kind="packed",
        loss_weights=True,
    )
    data.write_packed_samples(tmp_path, samples, manifest, loss_weights=weights)
    item = data.open_mixture(tmp_path, tmp_path / "cache")[0]
    assert list(item["labels"]) == [6, 1, 7, 8, 1, 2, 2, 2]
    assert list(item["loss_mask"]) == [1, 1, 1, 30, 1, 0, 0, 0]
    with pytest.raises(data.DataError, match="loss weights were not given"):
        data.write_packed_samples(tmp_path / "a", samples, manifest)
    with pytest.raises(data.DataError, match="integers 0-255"):
        data.write_packed_samples(tmp_path / "b", samples, manifest, loss_weights=weights * 10)
    (tmp_path / "loss_weights.bin").unlink()
    with pytest.raises(data.DataError, match="loss_weights"):
        data.read_manifest(tmp_path)


def test_context_stage_lr_warms_up_holds_and_decays_within_the_stage():
    plan = stage_plan(TINY, "context_stage1")
    lrs = [plan.lr_at(i) for i in range(plan.steps)]
    assert plan.warmup_steps > 0 and plan.decay_steps > 0
    assert lrs[0] == pytest.approx(plan.peak_lr / plan.warmup_steps)
    assert lrs[plan.warmup_steps - 1] == pytest.approx(plan.peak_lr)
    assert set(lrs[plan.warmup_steps : plan.steps - plan.decay_steps]) == {plan.peak_lr}
    assert lrs[-1] == pytest.approx(plan.min_lr) and plan.min_lr < plan.peak_lr
    assert all(a >= b for a, b in zip(lrs[plan.warmup_steps - 1 :], lrs[plan.warmup_steps :]))
    assert stage_plan(TINY, "stage1").lr_at(0) is None  # pre-training follows the global WSD schedule


def test_trainer_settings_are_checked_when_the_code_location_loads(monkeypatch, tmp_path):
    from kexaone_dag.resources_by_env import trainer_from_env
    from resources.trainer import TrainerConfigError

    monkeypatch.setenv("KEXAONE_TRAINER", "ray")
    with pytest.raises(TrainerConfigError, match="'ray' is not one of subprocess, k8s, slurm"):
        trainer_from_env(tmp_path)
    monkeypatch.setenv("KEXAONE_TRAINER", "k8s")
    monkeypatch.delenv("KEXAONE_TRAINER_IMAGE", raising=False)
    with pytest.raises(TrainerConfigError, match="needs an image"):
        trainer_from_env(tmp_path)
    monkeypatch.setenv("KEXAONE_TRAINER_IMAGE", "registry/kexaone:1")
    monkeypatch.setenv("KEXAONE_TRAIN_NPROC", "8")
    launcher = trainer_from_env(tmp_path)
    assert launcher.layout(get_preset("k-exaone-236b")) == (8, 4, 32)  # per node: 8 processes, TP 4, EP 32
    assert launcher.work_dir("pretrain_stage1", "abc") == tmp_path / "training" / "pretrain_stage1" / "abc"


def test_policy_stage_layouts_divide_like_pretraining_and_split_each_round():
    from posttrain.launch import layout_problems

    assert layout_problems(TINY, "agapo", 1, 1, 1) == []
    assert layout_problems(TINY, "agapo", 2, 1, 2) == []  # EP 2 over DP 2 (tested on 2 processes)
    assert layout_problems(TINY, "agapo", 4, 2, 2) == []  # TP 2 x DP 2, EP 2 over the DP ranks
    assert layout_problems(TINY, "agapo", 2, 1, 3) == [
        "2 processes do not divide into TP=1 x EP=3 (EP splits the TP x DP ranks)"
    ]
    full = get_preset("k-exaone-236b")  # 8 nodes x 8 GPUs, the policy layout TP 8, EP 64 (whole experts)
    assert TrainerLauncher(work_root="w").layout(full, policy=True) == (8, 8, 64)
    assert layout_problems(full, "agapo", 64, 8, 64) == [] == layout_problems(full, "grouper", 64, 8, 64)
    assert layout_problems(full, "agapo", 8, 8, 64) == [
        "8 processes do not divide into TP=8 x EP=64 (EP splits the TP x DP ranks)"
    ]
    rl = TINY.posttrain.rl.prompts_per_step
    odd = layout_problems(TINY, "agapo", rl + 1, 1, 1)
    assert odd == [
        f"{rl} prompts per round do not split over {rl + 1} data-parallel ranks (set posttrain.rl.prompts_per_step)"
    ]
    assert layout_problems(TINY, "agapo", 2, 1, 1, train_prompts=3) == [
        "3 prompts per round do not split over 2 data-parallel ranks (set posttrain.rl.prompts_per_step)"
    ]
