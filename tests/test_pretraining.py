"""Pre-training as assets, end to end on the tiny preset: the demo job trains the three curriculum stages
through Dagster Pipes (torchrun subprocesses); then kill-and-resume, 2-process expert parallelism and bad
input, all against the artifacts that run produced."""

from __future__ import annotations

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
from dagster import AssetKey, DagsterInstance, materialize

from kexaone_dag.config import PresetResource
from kexaone_dag.definitions import build_definitions
from resources.warehouse import Warehouse
from tests.conftest import private_demo_env

pytestmark = pytest.mark.slow
STAGES = ("stage1", "stage2", "stage3")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pretrain")
    with private_demo_env(tmp):
        defs = build_definitions()
        with DagsterInstance.ephemeral() as instance:
            result = defs.resolve_job_def("demo").execute_in_process(instance=instance)
            assert result.success
            yield {"defs": defs, "instance": instance, "result": result, "home": tmp / "home", "tmp": tmp}


def mat(result, name):
    return result.asset_materializations_for_node(name)[0]


def artifact(trained, name) -> Path:
    return Path(mat(trained["result"], name).metadata["dagster/uri"].value)


def metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_cli(*args: str, nproc: int = 1, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "model.train", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})})


def test_three_stages_chain_and_each_lowers_the_loss(trained):
    previous = None
    steps_seen = []
    for stage in STAGES:
        folder = artifact(trained, f"pretrain_{stage}")
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["loss_final"] < summary["loss_first"] - 0.2, summary
        assert (folder / "checkpoint" / "metadata.json").exists() and (folder / "loss_curve.png").stat().st_size > 0
        provenance = json.loads((folder / "provenance.json").read_text())
        assert provenance["upstream"]["mixture"]["version"] == \
            mat(trained["result"], f"tokenized_mixture_{stage}").metadata["artifact_version"].value
        if previous:  # stage N starts from stage N-1's checkpoint and continues its schedule
            assert provenance["upstream"]["init"]["version"] == previous
        previous = provenance["version"]
        steps_seen += [r["step"] for r in metrics(folder / "metrics.jsonl")]
    assert steps_seen == list(range(1, len(steps_seen) + 1))  # one global step count across the curriculum
    # the WSD schedule ends in its decay: stage 3's last LR is near min_lr, below the plateau
    final = json.loads((artifact(trained, "pretrain_stage3") / "summary.json").read_text())
    assert final["lr_final"] < 0.5 * 3.0e-4


def test_pipes_reports_reach_the_materialization_and_the_log(trained):
    event = mat(trained["result"], "pretrain_stage1")
    md = {k: getattr(v, "value", v) for k, v in event.metadata.items()}
    # reported by the training process itself through Pipes, with the data version it was handed
    assert md["trainer/data_version"] == md["artifact_version"]
    assert md["trainer/steps"] == 64 and md["trainer/loss_final"] == md["loss_final"]
    assert event.tags["dagster/data_version"] == md["artifact_version"]
    logs = [e.user_message for e in trained["instance"].all_logs(trained["result"].run_id)]
    assert any("stage1 step 64/64: loss" in m for m in logs)


def test_mixtures_and_training_metrics_land_in_the_warehouse(trained):
    wh = Warehouse(path=str(trained["home"] / "warehouse.duckdb"))
    for stage in STAGES:
        name = f"tokenized_mixture_{stage}"
        rows = wh.query("select source, requested, effective, tokens from mixture_composition where asset = ?", [name])
        assert rows and all(r["tokens"] > 0 for r in rows)
        assert all(abs(r["requested"] - r["effective"]) < 0.02 for r in rows), rows
        curve = wh.query("select step, value from metrics where asset = ? and metric = 'lm_loss' order by step",
                         [f"pretrain_{stage}"])
        assert len(curve) == 64 and curve[0]["value"] > curve[-1]["value"]
    stage3 = {r["source"] for r in wh.query("select source from mixture_composition where asset = "
                                             "'tokenized_mixture_stage3'")}
    assert {"thinking_augmented", "multilingual_synthetic", "code", "stem"} <= stage3
    names = {r["metric"] for r in wh.query("select distinct metric from metrics where asset = 'pretrain_stage2'")}
    assert {"lm_loss", "lr", "tokens_per_s", "seq_aux_loss", "expert_load_imbalance"} <= names


def _kill_training_when(work_glob: str, home: Path, min_rows: int, killed: dict) -> None:
    """Watch for a periodic checkpoint and a few more steps, then SIGKILL every training process."""
    deadline = time.time() + 600
    while time.time() < deadline:
        for work in home.glob(work_glob):
            rows = work / "metrics.jsonl"
            if (work / "checkpoints" / "step_000020").exists() and rows.exists() and \
                    len(rows.read_text().splitlines()) >= min_rows:
                victims = [p for p in psutil.Process().children(recursive=True)
                           if "model.train" in " ".join(p.cmdline())]
                for p in victims:
                    p.send_signal(signal.SIGKILL)
                killed.update(rows=len(rows.read_text().splitlines()), processes=len(victims), work=work)
                return
        time.sleep(0.2)


def test_killed_stage_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(trained, tmp_path):
    overrides = {"model.norm_eps": 2e-5}  # a new pretrain_stage1 version; its mixture is reused
    mixture = artifact(trained, "tokenized_mixture_stage1")
    reference = train_cli("--preset", "tiny", "--overrides", json.dumps(overrides), "--stage", "stage1",
                          "--data", str(mixture), "--work-dir", str(tmp_path / "ref-work"),
                          "--output", str(tmp_path / "ref-out"))
    assert reference.returncode == 0, reference.stderr[-3000:]

    defs, instance = trained["defs"], trained["instance"]
    resources = {**defs.resources, "preset": PresetResource(overrides=overrides)}
    stage1 = defs.get_assets_def(AssetKey("pretrain_stage1"))
    killed: dict = {}
    watcher = threading.Thread(target=_kill_training_when,
                               args=("training/pretrain_stage1/*", trained["home"], 26, killed))
    watcher.start()
    first = materialize([stage1], instance=instance, resources=resources, raise_on_error=False)
    watcher.join()
    assert not first.success and killed["processes"] >= 2 and killed["rows"] >= 26

    second = materialize([stage1], instance=instance, resources=resources)
    folder = Path(mat(second, "pretrain_stage1").metadata["dagster/uri"].value)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["resumed_from"].endswith("step_000020")
    resumed, uninterrupted = metrics(folder / "metrics.jsonl"), metrics(tmp_path / "ref-out" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [r["step"] for r in uninterrupted] == list(range(1, 65))
    for a, b in zip(resumed, uninterrupted):
        assert abs(a["lm_loss"] - b["lm_loss"]) <= 1e-5 and abs(a["lr"] - b["lr"]) <= 1e-12, (a, b)
    assert not killed["work"].exists()  # scratch removed once the stage committed


def test_two_process_expert_parallel_matches_one_process(trained, tmp_path):
    """Same stage-2 start (stage 1's checkpoint, re-sharded by dist_checkpointing) on 1 process and on 2
    processes with expert parallelism 2 over gloo: experts split 4 + 4, data parallel 2."""
    mixture = artifact(trained, "tokenized_mixture_stage2")
    init = artifact(trained, "pretrain_stage1") / "checkpoint"
    curves = {}
    for nproc in (1, 2):
        run = train_cli("--preset", "tiny", "--stage", "stage2", "--data", str(mixture), "--init-from", str(init),
                        "--work-dir", str(tmp_path / f"w{nproc}"), "--output", str(tmp_path / f"o{nproc}"),
                        "--expert-parallel", str(nproc), "--max-steps", "8", nproc=nproc)
        assert run.returncode == 0, run.stderr[-3000:]
        curves[nproc] = metrics(tmp_path / f"o{nproc}" / "metrics.jsonl")
    assert json.loads((tmp_path / "o2" / "summary.json").read_text())["expert_parallel"] == 2
    for one, two in zip(curves[1], curves[2], strict=True):
        assert abs(one["lm_loss"] - two["lm_loss"]) <= 2e-3, (one, two)
        assert abs(one["grad_norm"] - two["grad_norm"]) <= 2e-3 * max(1.0, one["grad_norm"]), (one, two)


def test_bad_inputs_fail_before_the_first_step(trained, tmp_path):
    mixture = artifact(trained, "tokenized_mixture_stage2")
    init = artifact(trained, "pretrain_stage1") / "checkpoint"
    base = ["--preset", "tiny", "--stage", "stage2", "--data", str(mixture), "--init-from", str(init)]

    vocab = train_cli(*base, "--overrides", json.dumps({"model.padded_vocab_size": 1920}),
                      "--work-dir", str(tmp_path / "w1"), "--output", str(tmp_path / "o1"))
    assert vocab.returncode != 0 and "tokenizer/model vocabulary mismatch" in vocab.stderr
    shape = train_cli(*base, "--overrides", json.dumps({"model.ffn_hidden_size": 256}),
                      "--work-dir", str(tmp_path / "w2"), "--output", str(tmp_path / "o2"))
    assert shape.returncode != 0 and "differently-shaped model" in shape.stderr
    for run in (vocab, shape):
        assert "step 1/" not in run.stdout
    assert not (tmp_path / "w1" / "metrics.jsonl").exists() and not (tmp_path / "w2" / "metrics.jsonl").exists()

    done = artifact(trained, "pretrain_stage2")
    overwrite = train_cli(*base, "--work-dir", str(tmp_path / "w3"), "--output", str(done))
    assert overwrite.returncode != 0 and "never overwritten" in overwrite.stderr


def test_mixture_without_its_corpus_partition_names_it(kexaone_env):
    defs = build_definitions()
    with DagsterInstance.ephemeral() as instance:
        result = materialize([defs.get_assets_def(AssetKey("tokenized_mixture_stage1"))], instance=instance,
                             resources=defs.resources, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.cause.message if failure.step_failure_data.error.cause else \
        failure.step_failure_data.error.message
    assert "deduplicated_corpus partition 'code' has not been materialized" in message


TERMINATION_SCRIPT = '''
import sys
from pathlib import Path
from dagster import AssetExecutionContext, asset, materialize
from kexaone_dag.presets import get_preset
from resources.trainer import StageLaunch, TrainerLauncher

mixture, work, out = map(Path, sys.argv[1:4])

@asset
def training_stage(context: AssetExecutionContext):
    launch = StageLaunch(preset_name="tiny", overrides={}, stage="stage1", data=mixture, work_dir=work, output=out,
                         init_from=None, tensor_parallel=1, expert_parallel=1)
    TrainerLauncher(work_root=str(work.parent)).launch(context, get_preset("tiny"), launch, extras={})

materialize([training_stage], raise_on_error=False)
'''


def test_terminating_the_dagster_run_stops_the_training_processes(trained, tmp_path):
    script = tmp_path / "run_stage.py"
    script.write_text(TERMINATION_SCRIPT)
    work, out = tmp_path / "work", tmp_path / "out"
    run = subprocess.Popen([sys.executable, str(script), str(artifact(trained, "tokenized_mixture_stage1")),
                            str(work), str(out)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not ((work / "metrics.jsonl").exists() and
                                          len((work / "metrics.jsonl").read_text().splitlines()) >= 2):
        time.sleep(0.2)
    trainers = [p for p in psutil.Process(run.pid).children(recursive=True) if "model.train" in " ".join(p.cmdline())]
    assert len(trainers) >= 2  # torchrun and its worker
    run.send_signal(signal.SIGINT)  # what terminating a run does to the step: an interrupt
    run.wait(timeout=120)
    gone, alive = psutil.wait_procs(trainers, timeout=60)
    assert not alive, [p.cmdline() for p in alive]
    assert len((work / "metrics.jsonl").read_text().splitlines()) < 64 and not (out / "summary.json").exists()
