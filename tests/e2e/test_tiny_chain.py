"""The whole tiny DAG end to end, trained once and tested from every side, in two fixtures so that one
failure stays one failure:

* ``trained`` (the ``pretraining`` job): the three curriculum stages through Dagster Pipes (torchrun
  subprocesses), then kill-and-resume, 2-process expert parallelism, bad input and run termination
  against its artifacts;
* ``context`` (the context and evaluation groups on top of it): whole-document mixtures, both stages pass
  their own NIAH gate over the configured grid (a failed gate is reported with its cells and scores, and only
  the tests that need the whole chain fail with it), an under-trained stage fails it and blocks downstream;
  short-context eval;
* ``posttrained`` (the post_training and release groups and the evaluation summary on top of it): SFT, AGAPO,
  GROUPER, their evaluation and the summary of the whole chain, the HF export checked against transformers and
  ``kexaone serve`` answering the teacher client from the final checkpoint; ``kexaone demo`` (what
  ``make demo`` runs) over the same artifacts reuses every one of them; a killed or stopped demo leaves no
  trainer and resumes.

The chain is the expensive part of the suite, so each fixture runs once per module."""

from __future__ import annotations

import base64
import dataclasses
import getpass
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from dagster import AssetKey, AssetSelection, DagsterInstance, materialize

from config import CORPUS_DOMAINS, get_preset
from kexaone_dag.cli import failure_lines
from kexaone_dag.config import PresetResource
from kexaone_dag.definitions import build_definitions
from model.stages import stage_plan
from resources.trainer import StageLaunch, TrainerLauncher
from resources.warehouse import Warehouse
from tests import slurm_cluster
from tests.conftest import private_demo_env

# the first test of each fixture pays for its training: pre-training about 4 minutes, context stages about 7
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
STAGES = ("stage1", "stage2", "stage3")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pretrain")
    with private_demo_env(tmp):
        defs = build_definitions()
        with DagsterInstance.ephemeral() as instance:
            result = defs.resolve_job_def("pretraining").execute_in_process(instance=instance)
            assert result.success
            yield {"defs": defs, "instance": instance, "result": result, "home": tmp / "home", "tmp": tmp}


@pytest.fixture(scope="module")
def context(trained):
    """The context-extension and evaluation assets on top of ``trained`` (same instance and stores). Not
    asserted here: a failed gate is reported by the tests, with its cells."""
    defs = trained["defs"]
    result = materialize(
        list(defs.assets),
        instance=trained["instance"],
        resources=defs.resources,
        # the summary waits for post-training (its last section): built by ``posttrained``
        selection=AssetSelection.groups("context", "evaluation") - AssetSelection.assets("evaluation_summary"),
        raise_on_error=False,
    )
    return {**trained, "result": result, "pretraining_result": trained["result"]}


def chain_failures(run) -> str:
    """Why a run failed, as the user would read it: failed steps' errors and failed checks' descriptions."""
    return "\n".join(failure_lines(run["result"])) or "(the run reports no failed step or check)"


def require_whole_chain(run) -> None:
    if not run["result"].success:
        pytest.fail(f"the context chain did not complete:\n{chain_failures(run)}", pytrace=False)


def mat(result, name):
    return result.asset_materializations_for_node(name)[0]


def artifact(trained, name) -> Path:
    result = trained.get("posttrain_result") if name in POST_TRAINING_ASSETS else trained["result"]
    return Path(mat(result, name).metadata["dagster/uri"].value)


POST_TRAINING_ASSETS = {
    "tool_use_tasks",
    "rl_prompts",
    "sft_data",
    "sft_checkpoint",
    "rl_checkpoint",
    "preference_checkpoint",
    "post_training_eval",
    "evaluation_summary",
    "hf_checkpoint",
}


def inline_png(value) -> bytes:
    """The PNG behind an inline plot: markdown ``![...](data:image/png;base64,...)``, small."""
    prefix, data = value.value.split("(data:image/png;base64,", 1)
    assert prefix.startswith("![") and data.endswith(")")
    png = base64.b64decode(data[:-1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 60_000
    return png


def records(value) -> list[dict]:
    """The rows of a native table metadata value."""
    return [dict(r.data) for r in value.records]


def metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_cli(*args: str, nproc: int = 1, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "model.train",
        *args,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})}
    )


def test_three_stages_chain_and_each_lowers_the_loss(trained):
    previous = None
    steps_seen = []
    for stage in STAGES:
        folder = artifact(trained, f"pretrain_{stage}")
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["loss_final"] < summary["loss_first"] - 0.2, summary
        assert (folder / "checkpoint" / "metadata.json").exists() and (folder / "loss_curve.png").stat().st_size > 0
        md = mat(trained["result"], f"pretrain_{stage}").metadata
        (final,) = records(md["final_metrics"])  # one typed row: the stage's summary.json
        assert (final["steps"], final["loss_final"]) == (summary["steps"], summary["loss_final"])
        assert inline_png(md["loss_curve"]) == (folder / "loss_curves.png").read_bytes()
        provenance = json.loads((folder / "provenance.json").read_text())
        assert (
            provenance["upstream"]["mixture"]["version"]
            == mat(trained["result"], f"tokenized_mixture_{stage}").metadata["artifact_version"].value
        )
        if previous:  # stage N starts from stage N-1's checkpoint and continues its schedule
            assert provenance["upstream"]["init"]["version"] == previous
        previous = provenance["version"]
        steps_seen += [r["step"] for r in metrics(folder / "metrics.jsonl")]
    assert steps_seen == list(range(1, len(steps_seen) + 1))  # one global step count across the curriculum
    # the WSD schedule ends in its decay: stage 3's last LR is near min_lr, below the plateau
    final = json.loads((artifact(trained, "pretrain_stage3") / "summary.json").read_text())
    assert final["lr_final"] < 0.5 * get_preset("tiny").pretrain.max_lr


def test_pipes_reports_reach_the_materialization_and_the_log(trained):
    event = mat(trained["result"], "pretrain_stage1")
    md = {k: getattr(v, "value", v) for k, v in event.metadata.items()}
    # reported by the training process itself through Pipes, with the data version it was handed
    assert md["trainer/data_version"] == md["artifact_version"]
    steps = stage_plan(get_preset("tiny"), "stage1").steps
    assert md["trainer/steps"] == steps and md["trainer/loss_final"] == md["loss_final"]
    assert event.tags["dagster/data_version"] == md["artifact_version"]
    logs = [e.user_message for e in trained["instance"].all_logs(trained["result"].run_id)]
    assert any(f"stage1 step {steps}/{steps}: loss" in m for m in logs)


def test_each_checkpoint_shows_the_exact_versions_it_was_built_from_back_to_the_raw_corpus(trained):
    from resources.artifact_store import ArtifactStore
    from resources.lineage import lineage

    store = ArtifactStore(root=str(trained["home"] / "artifacts"))
    for stage in STAGES:
        md = mat(trained["result"], f"pretrain_{stage}").metadata
        rows = records(md["lineage"])
        nodes = lineage(store, f"pretrain_{stage}", md["artifact_version"].value)
        assert rows == [n.row() for n in nodes]  # what `kexaone lineage` prints, as a table
        assert rows[0]["artifact"] == f"pretrain_{stage}" and rows[0]["version"] == md["artifact_version"].value
        names = {r["artifact"] for r in rows}
        assert {f"pretrain_stage{i}" for i in range(1, int(stage[-1]) + 1)} <= names
        assert {f"raw_corpus_{d}" for d in CORPUS_DOMAINS} <= names and "superbpe_tokenizer" in names


def test_mixtures_and_training_metrics_land_in_the_warehouse(trained):
    wh = Warehouse(path=str(trained["home"] / "warehouse.duckdb"))
    for stage in STAGES:
        name = f"tokenized_mixture_{stage}"
        rows = wh.query("select source, requested, effective, tokens from mixture_composition where asset = ?", [name])
        assert rows and all(r["tokens"] > 0 for r in rows)
        assert all(abs(r["requested"] - r["effective"]) < 0.02 for r in rows), rows
        composition = records(mat(trained["result"], name).metadata["composition"])
        assert {r["source"]: r["tokens"] for r in composition} == {r["source"]: r["tokens"] for r in rows}
        curve = wh.query(
            "select step, value from metrics where asset = ? and metric = 'lm_loss' order by step",
            [f"pretrain_{stage}"],
        )
        assert len(curve) == stage_plan(get_preset("tiny"), stage).steps and curve[0]["value"] > curve[-1]["value"]
    stage3 = {
        r["source"] for r in wh.query("select source from mixture_composition where asset = 'tokenized_mixture_stage3'")
    }
    assert {"thinking_augmented", "multilingual_synthetic", "code", "stem"} <= stage3
    names = {r["metric"] for r in wh.query("select distinct metric from metrics where asset = 'pretrain_stage2'")}
    assert {"lm_loss", "lr", "tokens_per_s", "seq_aux_loss", "expert_load_imbalance"} <= names


def _kill_training_when(work_glob: str, home: Path, min_rows: int, killed: dict) -> None:
    """Watch for a periodic checkpoint and a few more steps, then SIGKILL every training process."""
    deadline = time.time() + 600
    while time.time() < deadline:
        for work in home.glob(work_glob):
            rows = work / "metrics.jsonl"
            if (
                (work / "checkpoints" / "step_000020").exists()
                and rows.exists()
                and len(rows.read_text().splitlines()) >= min_rows
            ):
                victims = [
                    p for p in psutil.Process().children(recursive=True) if "model.train" in " ".join(p.cmdline())
                ]
                for p in victims:
                    p.send_signal(signal.SIGKILL)
                killed.update(rows=len(rows.read_text().splitlines()), processes=len(victims), work=work)
                return
        time.sleep(0.2)


def test_killed_stage_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(trained, tmp_path):
    overrides = {"model.norm_eps": 2e-5}  # a new pretrain_stage1 version; its mixture is reused
    mixture = artifact(trained, "tokenized_mixture_stage1")
    reference = train_cli(
        "--preset",
        "tiny",
        "--overrides",
        json.dumps(overrides),
        "--stage",
        "stage1",
        "--data",
        str(mixture),
        "--work-dir",
        str(tmp_path / "ref-work"),
        "--output",
        str(tmp_path / "ref-out"),
    )
    assert reference.returncode == 0, reference.stderr[-3000:]

    defs, instance = trained["defs"], trained["instance"]
    resources = {**defs.resources, "preset": PresetResource(overrides=overrides)}
    stage1 = defs.get_assets_def(AssetKey("pretrain_stage1"))
    killed: dict = {}
    watcher = threading.Thread(
        target=_kill_training_when, args=("training/pretrain_stage1/*", trained["home"], 26, killed)
    )
    watcher.start()
    first = materialize([stage1], instance=instance, resources=resources, raise_on_error=False)
    watcher.join()
    assert not first.success and killed["processes"] >= 2 and killed["rows"] >= 26

    try:
        second = materialize([stage1], instance=instance, resources=resources)
    finally:  # the instance's latest pretrain_stage1 is the chain's again (reused, seconds): `context` reads it
        restored = materialize([stage1], instance=instance, resources=defs.resources)
    assert artifact({"result": restored}, "pretrain_stage1") == artifact(trained, "pretrain_stage1")
    folder = Path(mat(second, "pretrain_stage1").metadata["dagster/uri"].value)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["resumed_from"].endswith("step_000020")
    resumed, uninterrupted = metrics(folder / "metrics.jsonl"), metrics(tmp_path / "ref-out" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [r["step"] for r in uninterrupted] == list(range(1, 65))
    for a, b in zip(resumed, uninterrupted):
        assert abs(a["lm_loss"] - b["lm_loss"]) <= 1e-5 and abs(a["lr"] - b["lr"]) <= 1e-12, (a, b)
    assert not killed["work"].exists()  # scratch removed once the stage committed


@pytest.mark.timeout(600)
def test_two_process_expert_and_pipeline_parallel_match_one_process(trained, tmp_path):
    """Same stage-2 start (stage 1's checkpoint, re-sharded by dist_checkpointing) on 1 process, on 2 processes
    with expert parallelism 2 over gloo (experts split 4 + 4, data parallel 2), and on 2 processes with pipeline
    parallelism 2 (layers 1-2 with the embedding | layers 3-4 with the head and MTP; Megatron's 1F1B schedule
    over 8 micro-batches of compute.micro_batch_size)."""
    mixture = artifact(trained, "tokenized_mixture_stage2")
    init = artifact(trained, "pretrain_stage1") / "checkpoint"
    layouts = {"one": (1, []), "ep2": (2, ["--expert-parallel", "2"]), "pp2": (2, ["--pipeline-parallel", "2"])}
    curves = {}
    for name, (nproc, layout) in layouts.items():
        run = train_cli(
            "--preset",
            "tiny",
            "--stage",
            "stage2",
            "--data",
            str(mixture),
            "--init-from",
            str(init),
            "--work-dir",
            str(tmp_path / f"w-{name}"),
            "--output",
            str(tmp_path / f"o-{name}"),
            *layout,
            "--max-steps",
            "8",
            nproc=nproc,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        curves[name] = metrics(tmp_path / f"o-{name}" / "metrics.jsonl")
    assert json.loads((tmp_path / "o-ep2" / "summary.json").read_text())["expert_parallel"] == 2
    assert json.loads((tmp_path / "o-pp2" / "summary.json").read_text())["pipeline_parallel"] == 2
    for name in ("ep2", "pp2"):
        for one, two in zip(curves["one"], curves[name], strict=True):
            assert abs(one["lm_loss"] - two["lm_loss"]) <= 1e-4, (name, one, two)
            assert abs(one["grad_norm"] - two["grad_norm"]) <= 1e-4 * max(1.0, one["grad_norm"]), (name, one, two)


# -- the slurm trainer backend: a 2-node job on a temp-dir Slurm of this machine ------------------------------

needs_slurm = pytest.mark.skipif(
    not slurm_cluster.available(),
    reason="Slurm is not installed (scripts/bootstrap.sh installs it as root with apt-get)",
)


@pytest.fixture
def two_node_slurm(tmp_path, monkeypatch):
    """Two Slurm "nodes" of this host (1 CPU each); clients find it through SLURM_CONF, as on a login node."""
    cluster = slurm_cluster.SlurmCluster(tmp_path / "slurm", cpus=1, nodes=2).start()
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    yield cluster
    cluster.stop()


@dataclasses.dataclass(frozen=True)
class ShortStage(StageLaunch):
    """A stage cut to its first ``max_steps`` steps (``model.train --max-steps``), as the EP2 parity test runs."""

    max_steps: int = 8

    def train_args(self) -> list[str]:
        return [*super().train_args(), "--max-steps", str(self.max_steps)]


def _slurm_stage_asset(launch: StageLaunch):
    from dagster import asset

    @asset(name="stage2_on_slurm", required_resource_keys={"trainer"})
    def stage2_on_slurm(context):  # (string annotations here: Dagster could not resolve them)
        trainer: TrainerLauncher = context.resources.trainer
        invocation = trainer.launch(context, get_preset("tiny"), launch, extras={"artifact_version": "slurm-v1"})
        return invocation.get_materialize_result()

    return stage2_on_slurm


def _slurm_launcher(work_root: Path) -> TrainerLauncher:
    return TrainerLauncher(
        backend="slurm", work_root=str(work_root), nodes=2, slurm_partition="debug", slurm_poll_s=0.5
    )


@needs_slurm
@pytest.mark.timeout(900)
def test_two_node_slurm_job_matches_one_process_and_reports_through_pipes(trained, tmp_path, two_node_slurm):
    """Stage 2's first 8 steps as a 2-node Slurm job (one torchrun per node, c10d rendezvous, EP 2 over gloo)
    launched by the slurm backend inside a Dagster materialization: the same losses as one process, and rank 0's
    Pipes report (over a file in the work dir) is the materialization's metadata."""
    mixture = artifact(trained, "tokenized_mixture_stage2")
    init = artifact(trained, "pretrain_stage1") / "checkpoint"
    launcher = _slurm_launcher(tmp_path)
    multi_node = get_preset("k-exaone-236b")
    assert multi_node.compute.nodes_per_training_step > 1
    assert not [p for p in launcher.launch_problems(multi_node) if "node" in p]
    assert any("launches one node" in p for p in TrainerLauncher(work_root="w").launch_problems(multi_node))

    one = train_cli(
        *("--preset", "tiny", "--stage", "stage2", "--data", str(mixture), "--init-from", str(init)),
        *("--work-dir", str(tmp_path / "w1"), "--output", str(tmp_path / "o1"), "--max-steps", "8"),
    )
    assert one.returncode == 0, one.stderr[-3000:]

    launch = _slurm_stage2(mixture, init, tmp_path / "slurm-work", tmp_path / "o-slurm", max_steps=8)
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [_slurm_stage_asset(launch)], instance=instance, resources={"trainer": launcher}, raise_on_error=False
        )
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert result.success, "\n".join(failure_lines(result))
    event = mat(result, "stage2_on_slurm")
    md = {k: getattr(v, "value", v) for k, v in event.metadata.items()}
    # reported by rank 0 through Pipes: a 2-process world split over the two nodes, with the version it was handed
    assert (md["world_size"], md["expert_parallel"], md["steps"]) == (2, 2, 8), md
    assert event.tags["dagster/data_version"] == "slurm-v1" and md["slurm_job_id"]
    job = md["slurm_job_id"]
    assert any(f"[slurm {job}] kexaone: job {job} on 2 node(s)" in m for m in logs)
    assert any("stage2 step 8/8" in m for m in logs)  # rank 0's Pipes log lines
    assert not (tmp_path / "slurm-work" / "pipes.jsonl").exists()  # the message file is the session's

    curves = {1: metrics(tmp_path / "o1" / "metrics.jsonl"), 2: metrics(tmp_path / "o-slurm" / "metrics.jsonl")}
    for a, b in zip(curves[1], curves[2], strict=True):
        assert abs(a["lm_loss"] - b["lm_loss"]) <= 1e-4, (a, b)
        assert abs(a["grad_norm"] - b["grad_norm"]) <= 1e-4 * max(1.0, a["grad_norm"]), (a, b)


SLURM_CANCEL_SCRIPT = """
import sys
from pathlib import Path
from dagster import materialize
from tests.e2e.test_tiny_chain import _slurm_launcher, _slurm_stage_asset, _slurm_stage2

mixture, init, work, out = map(Path, sys.argv[1:5])
launch = _slurm_stage2(mixture, init, work, out, max_steps=30)
materialize([_slurm_stage_asset(launch)], resources={"trainer": _slurm_launcher(work.parent)}, raise_on_error=False)
"""


def _slurm_stage2(mixture: Path, init: Path, work: Path, out: Path, max_steps: int) -> ShortStage:
    return ShortStage(
        preset_name="tiny",
        overrides={},
        stage="stage2",
        data=mixture,
        work_dir=work,
        output=out,
        init_from=init,
        tensor_parallel=1,
        expert_parallel=2,
        env={"OMP_NUM_THREADS": "1"},  # one CPU per node
        max_steps=max_steps,
    )


def _processes_on(path: Path) -> list[list[str]]:
    return [
        p.info["cmdline"] for p in psutil.process_iter(["cmdline"]) if str(path) in " ".join(p.info["cmdline"] or [])
    ]


@needs_slurm
@pytest.mark.timeout(900)
def test_terminating_the_dagster_run_cancels_the_slurm_job_and_a_new_launch_resumes(trained, tmp_path, two_node_slurm):
    """Interrupting the step (what terminating the run does) scancels the 2-node job: it leaves the queue and its
    processes end; a new materialization on the same work dir resumes from the job's periodic checkpoint."""
    script = tmp_path / "run_slurm_stage.py"
    script.write_text(SLURM_CANCEL_SCRIPT)
    work, out = tmp_path / "work", tmp_path / "out"
    mixture = artifact(trained, "tokenized_mixture_stage2")
    init = artifact(trained, "pretrain_stage1") / "checkpoint"
    user = getpass.getuser()
    with open(tmp_path / "run.log", "w") as log:
        run = subprocess.Popen(
            [sys.executable, str(script), str(mixture), str(init), str(work), str(out)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.time() + 400
        while not (
            (work / "checkpoints" / "step_000020").exists()
            and (work / "metrics.jsonl").exists()
            and len((work / "metrics.jsonl").read_text().splitlines()) >= 21
        ):
            jobs_out = "".join(p.read_text()[-2000:] for p in work.glob("slurm-*.out"))
            assert run.poll() is None and time.time() < deadline, (tmp_path / "run.log").read_text()[-3000:] + jobs_out
            time.sleep(0.2)
        queued = two_node_slurm.run("squeue", "-h", "-u", user, "-o", "%i %T").stdout.split()
        assert len(queued) == 2 and queued[1] == "RUNNING", queued
        run.send_signal(signal.SIGINT)  # what terminating a run does to the step: an interrupt
        run.wait(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert two_node_slurm.run("squeue", "-h", "-u", user).stdout.strip() == ""  # scancel'ed
    state = two_node_slurm.run("scontrol", "show", "job", "-o", queued[0]).stdout
    assert "JobState=CANCELLED" in state, state
    deadline = time.time() + 60  # the job's processes (torchrun, model.train on both nodes) end with it
    while _processes_on(work) and time.time() < deadline:
        time.sleep(0.5)
    assert not _processes_on(work)
    assert not (out / "summary.json").exists()

    again = tmp_path / "out-again"
    launch = _slurm_stage2(mixture, init, work, again, max_steps=30)
    result = materialize([_slurm_stage_asset(launch)], resources={"trainer": _slurm_launcher(tmp_path)})
    assert result.success
    summary = json.loads((again / "summary.json").read_text())
    assert summary["resumed_from"].endswith("step_000020"), summary
    steps = [r["step"] for r in metrics(again / "metrics.jsonl")]
    assert steps == list(range(steps[0], steps[0] + 30)), steps


def test_bad_inputs_fail_before_the_first_step(trained, tmp_path):
    mixture = artifact(trained, "tokenized_mixture_stage2")
    init = artifact(trained, "pretrain_stage1") / "checkpoint"
    base = ["--preset", "tiny", "--stage", "stage2", "--data", str(mixture), "--init-from", str(init)]

    vocab = train_cli(
        *base,
        "--overrides",
        json.dumps({"model.padded_vocab_size": 1920}),
        "--work-dir",
        str(tmp_path / "w1"),
        "--output",
        str(tmp_path / "o1"),
    )
    assert vocab.returncode != 0 and "tokenizer/model vocabulary mismatch" in vocab.stderr
    shape = train_cli(
        *base,
        "--overrides",
        json.dumps({"model.ffn_hidden_size": 256}),
        "--work-dir",
        str(tmp_path / "w2"),
        "--output",
        str(tmp_path / "o2"),
    )
    assert shape.returncode != 0 and "differently-shaped model" in shape.stderr
    cp = train_cli(
        *base, "--context-parallel", "2", "--work-dir", str(tmp_path / "w4"), "--output", str(tmp_path / "o4")
    )
    assert cp.returncode != 0 and "context parallelism 2 is not supported" in cp.stderr
    for run in (vocab, shape, cp):
        assert "step 1/" not in run.stdout
    assert not (tmp_path / "w1" / "metrics.jsonl").exists() and not (tmp_path / "w2" / "metrics.jsonl").exists()

    done = artifact(trained, "pretrain_stage2")
    overwrite = train_cli(*base, "--work-dir", str(tmp_path / "w3"), "--output", str(done))
    assert overwrite.returncode != 0 and "never overwritten" in overwrite.stderr


def test_mixture_without_its_corpus_partition_names_it(kexaone_env):
    defs = build_definitions()
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [defs.get_assets_def(AssetKey("tokenized_mixture_stage1"))],
            instance=instance,
            resources=defs.resources,
            raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = (
        failure.step_failure_data.error.cause.message
        if failure.step_failure_data.error.cause
        else failure.step_failure_data.error.message
    )
    assert "deduplicated_corpus partition 'code' has not been materialized" in message


TERMINATION_SCRIPT = """
import sys
from pathlib import Path
from dagster import AssetExecutionContext, asset, materialize
from config import get_preset
from resources.trainer import StageLaunch, TrainerLauncher

mixture, work, out = map(Path, sys.argv[1:4])

@asset
def training_stage(context: AssetExecutionContext):
    launch = StageLaunch(preset_name="tiny", overrides={}, stage="stage1", data=mixture, work_dir=work, output=out,
                         init_from=None, tensor_parallel=1, expert_parallel=1)
    TrainerLauncher(work_root=str(work.parent)).launch(context, get_preset("tiny"), launch, extras={})

materialize([training_stage], raise_on_error=False)
"""


def test_terminating_the_dagster_run_stops_the_training_processes(trained, tmp_path):
    script = tmp_path / "run_stage.py"
    script.write_text(TERMINATION_SCRIPT)
    work, out = tmp_path / "work", tmp_path / "out"
    run = subprocess.Popen(
        [sys.executable, str(script), str(artifact(trained, "tokenized_mixture_stage1")), str(work), str(out)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (
        (work / "metrics.jsonl").exists() and len((work / "metrics.jsonl").read_text().splitlines()) >= 2
    ):
        time.sleep(0.2)
    trainers = [p for p in psutil.Process(run.pid).children(recursive=True) if "model.train" in " ".join(p.cmdline())]
    assert len(trainers) >= 2  # torchrun and its worker
    run.send_signal(signal.SIGINT)  # what terminating a run does to the step: an interrupt
    run.wait(timeout=120)
    gone, alive = psutil.wait_procs(trainers, timeout=60)
    assert not alive, [p.cmdline() for p in alive]
    assert (
        len((work / "metrics.jsonl").read_text().splitlines()) < stage_plan(get_preset("tiny"), "stage1").steps
        and not (out / "summary.json").exists()
    )


# -- context extension, NIAH gate, evaluation ------------------------------------------------------------


def test_context_stages_pass_their_niah_gate_over_the_configured_grid(context):
    from config import get_preset
    from evaluation.niah import grid_depths, stage_lengths

    p = get_preset("tiny")
    wh = Warehouse(path=str(context["home"] / "warehouse.duckdb"))
    previous = p.pretrain.seq_length
    for stage in ("stage1", "stage2"):
        name = f"context_ext_{stage}"
        checks = [e for e in context["result"].get_asset_check_evaluations() if e.asset_key == AssetKey(name)]
        assert checks, f"{name} was not evaluated:\n{chain_failures(context)}"
        assert [(c.check_name, c.passed) for c in checks] == [("niah_green_light", True)], (
            f"{name}: {checks[0].description}"
        )
        cs = p.context.stages[stage]
        rows = wh.query("select length, depth, trials, accuracy from niah_results where checkpoint = ?", [name])
        assert sorted({r["length"] for r in rows}) == stage_lengths(cs.seq_length, p.eval.niah_num_lengths, previous)
        assert sorted({r["depth"] for r in rows}) == grid_depths(p.eval.niah_num_depths)
        assert len(rows) == p.eval.niah_num_lengths * p.eval.niah_num_depths
        assert all(r["trials"] == p.eval.niah_trials and r["accuracy"] >= p.eval.niah_threshold for r in rows)
        assert (artifact(context, f"niah_report_{stage}") / "heatmap.png").stat().st_size > 0
        md = mat(context["result"], name).metadata
        grid = records(md["niah_grid"])  # depths down, one exact-match column per length
        assert [g["depth"] for g in grid] == [round(d, 4) for d in grid_depths(p.eval.niah_num_depths)]
        assert all(v >= p.eval.niah_threshold for g in grid for k, v in g.items() if k != "depth")
        assert checks[0].metadata["grid"] == md["niah_grid"]
        assert inline_png(md["niah_heatmap"]) == (artifact(context, name) / "niah_heatmap.png").read_bytes()
        report = mat(context["result"], f"niah_report_{stage}").metadata
        assert report["grid"] == md["niah_grid"]  # the same answers, the same table
        assert inline_png(report["heatmap"]) == (artifact(context, f"niah_report_{stage}") / "heatmap.png").read_bytes()
        summary = json.loads((artifact(context, name) / "summary.json").read_text())
        assert summary["seq_length"] == cs.seq_length
        previous = cs.seq_length


def test_context_mixtures_pack_whole_documents(context):
    stages = ["stage1"] + (["stage2"] if context["result"].success else [])  # stage 2's waits for stage 1's gate
    for stage in stages:
        event = mat(context["result"], f"context_mixture_{stage}")
        checks = [
            e
            for e in context["result"].get_asset_check_evaluations()
            if e.asset_key == AssetKey(f"context_mixture_{stage}")
        ]
        assert [(c.check_name, c.passed) for c in checks] == [("documents_whole", True)]
        folder = artifact(context, f"context_mixture_{stage}")
        stats = json.loads((folder / "stats.json").read_text())
        for pool, s in stats["pools"].items():  # documents too long for the stage are skipped, never cut
            assert all(x["length"] > stats["seq_length"] + 1 for x in s["skipped_too_long"]), pool
        pools = {r["pool"]: r for r in records(event.metadata["composition"])}
        assert {k: v["tokens"] for k, v in pools.items()} == {
            k: v["effective_tokens"] for k, v in stats["pools"].items()
        }
        effective = event.metadata["effective_mixture"].value
        requested = event.metadata["requested_mixture"].value
        assert all(abs(effective[k] - requested[k]) < 0.05 for k in requested), (effective, requested)


def test_short_context_eval_covers_the_chain(context):
    from evaluation.summary import CHAIN_ORDER

    require_whole_chain(context)
    wh = Warehouse(path=str(context["home"] / "warehouse.duckdb"))
    rows = wh.query("select checkpoint, domain, perplexity from short_context_perplexity")
    assert {r["checkpoint"] for r in rows} == set(CHAIN_ORDER)
    assert {r["domain"] for r in rows} == {"en", "ko", "es", "de", "ja", "vi", "code", "stem"}
    by = {(r["checkpoint"], r["domain"]): r["perplexity"] for r in rows}
    assert all(0 < v < float("inf") for v in by.values())  # (code can exceed the vocabulary size: confidently wrong)
    assert by[("pretrain_stage3", "en")] < by[("pretrain_stage1", "en")]  # training lowered held-out perplexity
    checks = [
        e for e in context["result"].get_asset_check_evaluations() if e.asset_key == AssetKey("short_context_eval")
    ]
    assert [c.check_name for c in checks] == ["short_context_drift"]
    assert (artifact(context, "short_context_eval") / "perplexity.png").stat().st_size > 0
    md = mat(context["result"], "short_context_eval").metadata
    table = {r["checkpoint"]: r for r in records(md["perplexity"])}  # checkpoints down, domains across
    assert list(table) == list(CHAIN_ORDER)
    assert all(table[c][d] == round(v, 2) for (c, d), v in by.items())
    assert inline_png(md["plot"]) == (artifact(context, "short_context_eval") / "perplexity.png").read_bytes()


def test_an_under_trained_stage_fails_its_gate_and_blocks_downstream(context):
    overrides = {"context.stages.stage1.tokens": 2 * 2 * 512}  # two optimizer steps at 512 tokens
    defs, instance = context["defs"], context["instance"]
    resources = {**defs.resources, "preset": PresetResource(overrides=overrides)}
    chain = [
        defs.get_assets_def(AssetKey(n))
        for n in ("context_mixture_stage1", "context_ext_stage1", "context_mixture_stage2", "context_ext_stage2")
    ]
    result = materialize(chain, instance=instance, resources=resources, raise_on_error=False)
    assert not result.success
    gate = [e for e in result.get_asset_check_evaluations() if e.asset_key == AssetKey("context_ext_stage1")]
    assert len(gate) == 1 and not gate[0].passed
    assert gate[0].metadata["failing_cells"].value  # the failed gate names its cells
    # ... and so does the step's own error, the first thing a user reads of the failed run
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "context_ext_stage1"
    error = failure.step_failure_data.user_failure_data.description
    assert "niah_green_light failed" in error and "NIAH cell(s) below 95%" in error and "length 128 depth" in error
    assert "context.stages.stage1.tokens" in error  # and what to try
    assert any("check failed: context_ext_stage1.niah_green_light" in line for line in failure_lines(result))
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "context_ext_stage1" in materialized
    assert "context_mixture_stage2" not in materialized and "context_ext_stage2" not in materialized


# -- post-training on top of the chain -------------------------------------------------------------------


@pytest.fixture(scope="module")
def posttrained(context):
    """The post_training and release groups on top of ``context`` (same instance and stores)."""
    require_whole_chain(context)
    defs = context["defs"]
    result = materialize(
        list(defs.assets),
        instance=context["instance"],
        resources=defs.resources,
        selection=AssetSelection.groups("post_training", "release") | AssetSelection.assets("evaluation_summary"),
        raise_on_error=False,
    )
    return {**context, "posttrain_result": result}


def require_post_training(run) -> None:
    if not run["posttrain_result"].success:
        pytest.fail("the post-training chain failed:\n" + chain_failures({"result": run["posttrain_result"]}))


def test_sft_trains_on_assistant_tokens_in_both_modes_and_never_sees_held_out_prompts(posttrained):
    require_post_training(posttrained)
    sft_md = mat(posttrained["posttrain_result"], "sft_data").metadata
    assert 0 < sft_md["trained_token_share"].value < 1 and sft_md["samples"].value > 0
    modes = records(sft_md["mode_balance"])
    assert sum(r["reasoning"] for r in modes) > 0 and sum(r["non_reasoning"] for r in modes) > 0
    wh = Warehouse(path=str(posttrained["home"] / "warehouse.duckdb"))
    assert {r["source"] for r in wh.query("select source from sft_mode_balance")} >= {"thinking", "tool"}
    prompts = metrics(artifact(posttrained, "rl_prompts") / "prompts.jsonl")
    held_out = {r["id"] for r in prompts if r["split"] == "held_out"}
    assert held_out and {r["id"] for r in prompts if r["split"] == "train"}
    conversations = metrics(artifact(posttrained, "sft_data") / "conversations.jsonl")
    assert not {c["id"].rsplit("/", 1)[0] for c in conversations} & held_out
    summary = json.loads((artifact(posttrained, "sft_checkpoint") / "summary.json").read_text())
    assert summary["stage"] == "sft" and summary["steps"] == get_preset("tiny").posttrain.sft.steps
    assert summary["loss_final"] < summary["loss_first"]


def _router_tensors(checkpoint_dir: Path) -> dict:
    from model import checkpoint as ckpt
    from model import parallel
    from model.architecture import build_model

    parallel.initialize()
    preset = get_preset("tiny")
    model = build_model(preset)
    ckpt.load_model(checkpoint_dir, model)
    state = model.state_dict()
    return {k: v.clone() for k, v in state.items() if v is not None and hasattr(v, "clone")}


def test_rl_and_preference_stages_keep_the_router_frozen_and_record_their_metrics(posttrained):
    import torch

    require_post_training(posttrained)
    before = _router_tensors(artifact(posttrained, "sft_checkpoint") / "checkpoint")
    after = _router_tensors(artifact(posttrained, "rl_checkpoint") / "checkpoint")
    router = [k for k in before if ".router." in k]
    assert router and any("expert_bias" in k for k in router)
    assert all(torch.equal(before[k], after[k]) for k in router)  # bit-identical: no KL, no router updates
    assert any(
        not torch.equal(before[k], after[k]) for k in before if k not in router and before[k].is_floating_point()
    )
    wh = Warehouse(path=str(posttrained["home"] / "warehouse.duckdb"))
    for asset in ("rl_checkpoint", "preference_checkpoint"):
        names = {r["metric"] for r in wh.query("select distinct metric from metrics where asset = ?", [asset])}
        assert {"mean_reward", "share_filtered", "mean_response_length", "entropy"} <= names, (asset, names)
    assert "is_truncated_share" in {
        r["metric"] for r in wh.query("select distinct metric from metrics where asset = 'rl_checkpoint'")
    }


def test_post_training_eval_compares_the_checkpoints_and_long_context_survives(posttrained):
    require_post_training(posttrained)
    md = mat(posttrained["posttrain_result"], "post_training_eval").metadata
    rows = records(md["pass_at_1"])
    checkpoints = ["context_ext_stage2", "sft_checkpoint", "rl_checkpoint", "preference_checkpoint"]
    assert {r["checkpoint"] for r in rows} == set(checkpoints)
    assert {r["mode"] for r in rows} == {"reasoning", "non_reasoning"}
    assert all(0 <= r["pass_at_1"] <= 1 and r["samples"] == r["prompts"] * 4 for r in rows)
    wh = Warehouse(path=str(posttrained["home"] / "warehouse.duckdb"))
    assert len(wh.query("select * from post_training_eval")) == len(rows)
    checks = [
        e
        for e in posttrained["posttrain_result"].get_asset_check_evaluations()
        if e.asset_key == AssetKey("post_training_eval")
    ]
    assert [(c.check_name, c.passed) for c in checks] == [("niah_survives_post_training", True)]
    assert all(0 <= r["rubric_score"] <= 1 for r in rows)


def test_the_evaluation_summary_covers_the_whole_chain_post_training_included(posttrained):
    require_post_training(posttrained)
    page = (artifact(posttrained, "evaluation_summary") / "evaluation_summary.md").read_text()
    images = artifact(posttrained, "evaluation_summary") / "images"
    links = ("pretrain_stage1_loss.png", "niah_report_stage1.png", "niah_report_stage2.png", "short_context.png")
    for link in (*links, "post_training_pass_at_1.png"):
        assert f"images/{link}" in page and (images / link).stat().st_size > 0
    post = page[page.index("## Post-training") :]
    for checkpoint in ("context_ext_stage2", "sft_checkpoint", "rl_checkpoint", "preference_checkpoint"):
        assert checkpoint in post
    assert "| math | non_reasoning |" in post and "every cell >= 0.95: **PASS**" in post


def test_the_hf_export_of_the_final_checkpoint_matches_megatron_in_transformers(posttrained):
    require_post_training(posttrained)
    result = posttrained["posttrain_result"]
    checks = [e for e in result.get_asset_check_evaluations() if e.asset_key == AssetKey("hf_checkpoint")]
    assert [(c.check_name, c.passed) for c in checks] == [("hf_matches_megatron", True)], checks
    md = mat(result, "hf_checkpoint").metadata
    assert md["max_abs_logit_diff"].value <= 1e-4 and md["greedy_identical"].value == "4/4"
    hf = artifact(posttrained, "hf_checkpoint") / "hf"
    assert (hf / "model.safetensors.index.json").exists() and (hf / "tokenizer_config.json").exists()
    provenance = json.loads((hf.parent / "provenance.json").read_text())
    assert (
        provenance["upstream"]["checkpoint"]["version"]
        == mat(result, "preference_checkpoint").metadata["artifact_version"].value
    )


def test_kexaone_serve_answers_the_teacher_client_from_the_final_checkpoint(posttrained, tmp_path):
    """``kexaone serve preference_checkpoint --version V`` over the chain's store (the tokenizer found through
    the checkpoint's lineage); the project's teacher client asks it arithmetic questions, greedily, twice."""
    from synthetic.http_teacher import HttpTeacher
    from synthetic.teacher import TeacherRequest

    require_post_training(posttrained)
    version = mat(posttrained["posttrain_result"], "preference_checkpoint").metadata["artifact_version"].value
    env = {**os.environ, "KEXAONE_HOME": str(posttrained["home"]), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    env.pop("KEXAONE_PRESET", None)
    server = subprocess.Popen(
        [KEXAONE, "serve", "preference_checkpoint", "--version", version, "--port", "0"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = server.stdout.readline()
        assert line.startswith("serving "), line + server.stderr.read()[-2000:]
        url = line.split(" on ")[-1].strip() + "/v1"
        requests = [TeacherRequest("judge", (("user", f"What is {a} + {b}?"),), "v1") for a, b in ((12, 7), (30, 41))]
        answers = []
        for attempt in range(2):
            teacher = HttpTeacher(
                base_url=url, model="preference_checkpoint", api_key="unused",
                cache_path=tmp_path / f"cache{attempt}.sqlite", max_tokens=16, temperature=0.0,
            )  # fmt: skip
            answers.append([c.text for c in teacher.complete_many(requests)])
            teacher.close()
        assert answers[0] == answers[1] and all(text.strip() for text in answers[0])
    finally:
        server.terminate()
        server.wait(timeout=60)


# -- `kexaone demo` over the same artifacts ---------------------------------------------------------------

KEXAONE = str(Path(sys.executable).parent / "kexaone")


def summary_rows(stdout: str) -> dict[str, list[str]]:
    lines = stdout[stdout.index("kexaone demo finished") :].splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("asset"))
    rows = {}
    for line in lines[header + 1 :]:
        if not line.strip():
            break
        name, status, version, *where = line.split()
        rows[name] = [status, version, *where]
    return rows


def test_kexaone_demo_reuses_every_artifact_the_run_built(posttrained, tmp_path):
    """The CLI on a fresh Dagster instance over the runs' artifacts: nothing is rebuilt or retrained."""
    context = posttrained
    require_whole_chain(context)
    require_post_training(context)
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    env.pop("KEXAONE_PRESET", None)
    proc = subprocess.run([KEXAONE, "demo"], capture_output=True, text=True, timeout=1200, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = summary_rows(proc.stdout)
    assert sum(1 for r in rows.values() if r[0] == "observed") == 8
    events = [
        e.step_materialization_data.materialization
        for run in (context["pretraining_result"], context["result"], context["posttrain_result"])
        for e in run.get_asset_materialization_events()
    ]
    built = {str(m.metadata["dagster/uri"].value) for m in events if "dagster/uri" in m.metadata}
    for name, (status, version, *where) in rows.items():
        if status != "observed":
            assert status == "reused" and where and where[0] in built, (name, status, where)
    assert "make ui" in proc.stdout and "warehouse:" in proc.stdout
    stats_uri = Path(rows["raw_corpus_stats"][2])
    assert stats_uri.parent == context["home"] / "artifacts" / "raw_corpus_stats"
    provenance = json.loads((stats_uri / "provenance.json").read_text())
    assert provenance["version"] == rows["raw_corpus_stats"][1]
    assert set(provenance["upstream"]) == {
        f"raw_corpus_{s}" for s in ("en", "ko", "es", "de", "ja", "vi", "code", "stem")
    }
    wh = Warehouse(path=str(context["home"] / "warehouse.duckdb"))
    assert wh.query("select count(*) as n from artifacts where asset = 'raw_corpus_stats'") == [{"n": 1}]
    assert "context_ext_stage2" in rows and "evaluation_summary" in rows and "post_training_eval" in rows


# -- crash safety: a killed or stopped `kexaone demo` leaves no trainer, no wedged slot, and resumes ---------

TRAINER_GONE_S = 15  # bound for the trainer to stop after its launcher dies (the kernel signals at once)
CRASH_STAGE = "sft_checkpoint"  # the stage a crash_home retrains (model.train --stage sft)
DEMO_STOPS_S = 90  # bound for `kexaone demo` to stop after SIGTERM (Pipes terminates torchrun, which stops its worker)


@pytest.fixture(scope="module")
def crash_home(posttrained, tmp_path_factory):
    """A copy of the chain's home without the sft_checkpoint: `kexaone demo` retrains it (and reuses everything
    downstream: versions address inputs, not bytes). A short ``model.train`` stage with room between its
    checkpoints (300 steps, one every 100); what these tests show does not depend on which stage it is."""
    context = posttrained
    require_whole_chain(context)
    import shutil

    home = tmp_path_factory.mktemp("crash") / "home"
    shutil.copytree(context["home"], home, ignore=shutil.ignore_patterns("training", "dagster_home"))
    for folder in (home / "artifacts" / CRASH_STAGE).iterdir():
        shutil.rmtree(folder)
    return home


def _demo(home: Path, dagster_home: Path) -> subprocess.Popen:
    env = {**os.environ, "KEXAONE_HOME": str(home), "DAGSTER_HOME": str(dagster_home)}
    env.pop("KEXAONE_PRESET", None)
    return subprocess.Popen(
        [KEXAONE, "demo"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _trainers(work_root: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "model.train" in cmd and str(work_root) in cmd:
            found.append(p)
    return found


def _wait_for(path_fn, timeout: float, proc: subprocess.Popen):
    deadline = time.time() + timeout
    while time.time() < deadline:
        hit = path_fn()
        if hit:
            return hit
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"not reached within {timeout}s")


def _complete_checkpoints(work: Path) -> list[Path]:
    """Periodic checkpoints written to the end (``step_000100``; a ``step_000100.partial`` is being written)."""
    return [c for c in work.glob("*/checkpoints/step_*") if c.name.removeprefix("step_").isdigit()]


def _claimed_gpu_slots(dagster_home: Path) -> list:
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        return list(instance.event_log_storage.get_concurrency_info("gpu").claimed_slots)


def test_sigterm_stops_kexaone_demo_its_trainer_and_frees_the_slot(crash_home, tmp_path):
    dagster_home = tmp_path / "dagster_home"
    demo = _demo(crash_home, dagster_home)
    work = crash_home / "training" / CRASH_STAGE
    _wait_for(lambda: any(len(m.read_text().splitlines()) >= 2 for m in work.glob("*/metrics.jsonl")), 600, demo)
    trainers = _trainers(work)
    assert trainers
    stopped_at = time.monotonic()
    demo.send_signal(signal.SIGTERM)
    out, _ = demo.communicate(timeout=DEMO_STOPS_S)
    assert time.monotonic() - stopped_at < DEMO_STOPS_S and demo.returncode != 0, out[-2000:]
    _, alive = psutil.wait_procs(trainers, timeout=TRAINER_GONE_S)
    assert not alive, [p.cmdline() for p in alive]
    assert not _trainers(work) and _claimed_gpu_slots(dagster_home) == []


def test_a_sigkilled_demo_leaves_no_trainer_and_the_next_demo_resumes_and_frees_the_slot(crash_home, tmp_path):
    dagster_home = tmp_path / "dagster_home"
    work = crash_home / "training" / CRASH_STAGE
    before = set(_complete_checkpoints(work))  # what the SIGTERM test's run may have left
    demo = _demo(crash_home, dagster_home)
    checkpoint = _wait_for(lambda: next((c for c in _complete_checkpoints(work) if c not in before), None), 900, demo)
    trainers = _trainers(work)
    assert len(trainers) >= 2  # torchrun and its worker
    demo.send_signal(signal.SIGKILL)  # `kexaone demo` is the run worker and the step process (in-process run)
    demo.wait(timeout=60)
    killed_at = time.monotonic()
    _, alive = psutil.wait_procs(trainers, timeout=TRAINER_GONE_S)
    assert not alive, f"trainers outlived the killed demo by {TRAINER_GONE_S}s: {[p.cmdline() for p in alive]}"
    assert time.monotonic() - killed_at < TRAINER_GONE_S
    assert len(_claimed_gpu_slots(dagster_home)) == 1  # what used to wedge every later run

    again = _demo(crash_home, dagster_home)
    out, _ = again.communicate(timeout=1200)
    assert again.returncode == 0, out[-3000:]
    assert "recovered: run " in out and "had lost its process: marked failed, its pool slots freed" in out
    rows = summary_rows(out)
    assert rows[CRASH_STAGE][0] == "built"
    summary = json.loads((Path(rows[CRASH_STAGE][2]) / "summary.json").read_text())
    assert summary["resumed_from"] == str(checkpoint)  # lost at most one checkpoint interval of training
    assert _claimed_gpu_slots(dagster_home) == [] and not _trainers(work)
