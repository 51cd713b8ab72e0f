"""The multi-node Kubernetes trainer (``KEXAONE_TRAINER=k8s-multinode``, ``resources/k8s_trainer.py``): one
Kubeflow Trainer v2 ``TrainJob`` per stage.

The manifests of both presets are validated against the operator's published schema: the
``kubeflow_trainer_api`` models (generated from Kubeflow Trainer's OpenAPI spec, on PyPI), read back field for
field, plus the CRD's own limits (names, env count). The command every node pod runs is executed by a real
``/bin/sh`` after the kubelet's ``$(VAR)`` / ``$$`` expansion, with the variables the operator's torch plugin
sets. No Kubernetes engine runs on these machines (no Docker engine), so submit / wait / delete run the real
``kubernetes`` client against a small in-process HTTP stand-in for the API server's TrainJob and pod
endpoints; its "operator" runs a real Pipes rank 0 (``open_dagster_pipes``) with the TrainJob's environment,
so the report reaches Dagster through the file on the (here: temporary) shared volume."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from dagster_pipes import decode_param
from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob, TrainerV1alpha1TrainJobStatus
from kubernetes import client as k8s

from config import get_preset
from resources.k8s_trainer import (
    API_VERSION,
    OPERATOR,
    RESERVED_ENV,
    K8sTrainingError,
    clear_previous_trainjobs,
    launch_problems,
    manifest_problems,
    run_trainjob_stage,
    trainjob_manifest,
    trainjob_name,
    trainjob_spec,
)
from resources.trainer import (
    RUN_ANNOTATION,
    WORK_DIR_LABEL,
    StageLaunch,
    TrainerBusyError,
    TrainerConfigError,
    TrainerLauncher,
)

pytestmark = pytest.mark.timeout(120)

FULL, TINY = get_preset("k-exaone-236b"), get_preset("tiny")
WORK = Path("/data/training/pretrain_stage1/3f9c2a41")


def launcher(**kw) -> TrainerLauncher:
    settings = dict(
        backend="k8s-multinode",
        work_root="/data/training",
        image="registry.example/kexaone:1",
        namespace="kexaone",
        pvc_claim="kexaone-data",
        service_account="kexaone-trainer",
    )
    return TrainerLauncher(**{**settings, **kw})


def stage(work: Path = WORK, root: Path = Path("/data"), **kw) -> StageLaunch:
    settings = dict(
        preset_name="k-exaone-236b",
        overrides={"pretrain.max_lr": 2.0e-4, "note": "it's $(HOME) and $$"},
        stage="stage1",
        data=root / "artifacts" / "tokenized_mixture_stage1" / "v1",
        work_dir=work,
        output=root / "artifacts" / ".staging" / "pretrain_stage1" / "v1.ab12cd34",
        init_from=None,
        tensor_parallel=4,
        expert_parallel=32,
        env={"OMP_NUM_THREADS": "8"},
    )
    return StageLaunch(**{**settings, **kw})


def manifest_for(preset, launch: StageLaunch | None = None, **kw) -> dict:
    return trainjob_manifest(
        trainjob_spec(launcher(**kw), preset, launch or stage(), run_id="run-1", namespace="kexaone")
    )


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """What the kubelet does to a command or env value: ``$$`` -> ``$``, ``$(VAR)`` -> its value when defined."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        text,
    )


# -- the manifest against the published schema -------------------------------------------------------------


@pytest.mark.parametrize("preset", [TINY, FULL], ids=["tiny", "k-exaone-236b"])
def test_the_manifest_of_each_preset_is_a_valid_trainjob_of_the_published_schema(preset):
    manifest = manifest_for(preset, stage(preset_name=preset.name))
    model = TrainerV1alpha1TrainJob.from_dict(manifest)  # raises on a wrong type or a missing required field
    assert model.to_dict() == manifest  # every field is one the schema knows: nothing dropped, nothing coerced
    assert manifest_problems(manifest) == []
    assert manifest["apiVersion"] == API_VERSION == "trainer.kubeflow.org/v1alpha1"
    assert manifest["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }


def test_the_full_preset_asks_for_eight_h200_nodes_of_eight_gpus_each():
    trainer = manifest_for(FULL)["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (8, 8)
    assert launcher().node_count(FULL) == 8 and launcher().layout(FULL)[0] == 8
    assert trainer["resourcesPerNode"] == {
        "requests": {"cpu": "64", "memory": "1600Gi", "nvidia.com/gpu": "8"},
        "limits": {"memory": "1600Gi", "nvidia.com/gpu": "8"},
    }
    pod = manifest_for(FULL)["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]
    pod = pod["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H200"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["serviceAccountName"] == "kexaone-trainer"
    assert pod["containers"] == [
        {
            "name": "node",
            "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "kexaone-data", "mountPath": "/data"}],
        }
    ]
    assert {"name": "kexaone-data", "persistentVolumeClaim": {"claimName": "kexaone-data"}} in pod["volumes"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]


def test_the_tiny_preset_is_one_cpu_node_without_gpu_requests_or_tolerations():
    manifest = manifest_for(TINY, stage(preset_name="tiny", tensor_parallel=1, expert_parallel=1))
    trainer = manifest["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (1, 1)
    assert "nvidia.com/gpu" not in json.dumps(trainer["resourcesPerNode"])
    assert "tolerations" not in json.dumps(manifest["spec"]["runtimePatches"])
    assert launcher().launch_problems(TINY) == []


def test_names_and_labels_fit_kubernetes_limits_and_name_one_work_dir():
    manifest = manifest_for(FULL)
    name = manifest["metadata"]["name"]
    assert name == trainjob_name(WORK) and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name)
    assert len(f"{name}-node-0-0") <= 63  # node pods' hostnames (RFC 1035 labels)
    assert all(len(v) <= 63 for v in manifest["metadata"]["labels"].values())
    assert manifest["metadata"]["annotations"] == {RUN_ANNOTATION: "run-1", "kexaone/work-dir": str(WORK)}
    assert trainjob_name(WORK) == trainjob_name(str(WORK)) != trainjob_name(WORK.parent / "other")
    long = Path("/data/training") / ("x" * 300) / ("y" * 300)
    assert len(trainjob_name(long)) == len(name)


def test_env_carries_the_home_the_preset_overrides_and_the_stage_env_but_no_torchrun_reserved_variable(monkeypatch):
    monkeypatch.setenv("KEXAONE_PRESET_OVERRIDES", '{"pretrain.total_tokens": 6144}')
    monkeypatch.delenv("KEXAONE_HOME", raising=False)
    env = {e["name"]: e["value"] for e in manifest_for(FULL)["spec"]["trainer"]["env"]}
    assert env["KEXAONE_HOME"] == "/data" and env["OMP_NUM_THREADS"] == "8" and env["PYTHONUNBUFFERED"] == "1"
    assert env["KEXAONE_PRESET_OVERRIDES"] == '{"pretrain.total_tokens": 6144}'
    assert not set(env) & set(RESERVED_ENV)


@pytest.mark.parametrize("node_rank", ["0", "3"])
def test_every_node_runs_one_torchrun_at_node_0_and_node_0_holds_the_work_dir_lock(tmp_path, node_rank):
    """The pod command after the kubelet's expansion, run by /bin/sh with the torch plugin's variables and a
    ``python`` that prints its arguments: the stage's arguments arrive byte for byte (JSON, quotes, ``$``)."""
    manifest = manifest_for(FULL)
    command = manifest["spec"]["trainer"]["command"]
    pet = {
        "PET_NNODES": "8",
        "PET_NPROC_PER_NODE": "8",
        "PET_NODE_RANK": node_rank,
        "PET_MASTER_ADDR": f"{manifest['metadata']['name']}-node-0-0.{manifest['metadata']['name']}",
        "PET_MASTER_PORT": "29400",
    }
    expanded = [kubelet_expand(part, pet) for part in command]
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(0o755)
    done = subprocess.run(
        expanded, env={"PATH": f"{fake.parent}:/usr/bin:/bin", **pet}, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"kexaone: TrainJob {manifest['metadata']['name']}: node {node_rank} of 8")
    argv = lines[1:]
    guard = ["-m", "model.launch_guard", "--work-dir", str(WORK), "--", "python"]
    if node_rank == "0":
        assert argv[: len(guard)] == guard
        argv = argv[len(guard) :]
    else:
        assert "model.launch_guard" not in argv
    assert argv[:9] == [
        "-m",
        "torch.distributed.run",
        "--nnodes=8",
        "--nproc-per-node=8",
        f"--node-rank={node_rank}",
        f"--master-addr={pet['PET_MASTER_ADDR']}",
        "--master-port=29400",
        "-m",
        "model.train",
    ]
    assert argv[9:] == stage().train_args()


# -- refused before anything reaches the cluster: one line ------------------------------------------------


def test_unknown_fields_wrong_types_and_crd_limits_are_refused_in_one_line_each():
    good = manifest_for(FULL)
    typo = json.loads(json.dumps(good))
    typo["spec"]["trainer"]["numNode"] = typo["spec"]["trainer"].pop("numNodes")
    assert any("does not know" in p for p in manifest_problems(typo))
    wrong = json.loads(json.dumps(good))
    wrong["spec"]["trainer"]["numNodes"] = "8"
    assert any(OPERATOR in p for p in manifest_problems(wrong))
    long = json.loads(json.dumps(good))
    long["metadata"]["name"] = "k" * 56
    assert any("hostnames" in p for p in manifest_problems(long))
    reserved = json.loads(json.dumps(good))
    reserved["spec"]["trainer"]["env"].append({"name": "PET_NODE_RANK", "value": "0"})
    assert any("PET_NODE_RANK" in p for p in manifest_problems(reserved))
    quantity = json.loads(json.dumps(good))
    quantity["spec"]["trainer"]["resourcesPerNode"]["requests"]["memory"] = "1600 GB"
    assert any("not a Kubernetes quantity" in p for p in manifest_problems(quantity))
    for bad in (typo, wrong, long, reserved, quantity):
        assert all("\n" not in p for p in manifest_problems(bad))


def test_settings_are_checked_when_the_code_location_loads(monkeypatch, tmp_path):
    from kexaone_dag.resources_by_env import trainer_from_env

    monkeypatch.setenv("KEXAONE_TRAINER", "k8s-multinode")
    for var in ("KEXAONE_TRAINER_IMAGE", "KEXAONE_TRAINER_PVC", "KEXAONE_TRAINER_NAMESPACE", "KEXAONE_TRAIN_WORK_ROOT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(TrainerConfigError) as refused:
        trainer_from_env(tmp_path)
    message = str(refused.value)
    assert "needs an image (KEXAONE_TRAINER_IMAGE)" in message and "KEXAONE_TRAINER_PVC" in message
    assert "\n" not in message
    monkeypatch.setenv("KEXAONE_TRAINER_IMAGE", "registry.example/kexaone:1")
    monkeypatch.setenv("KEXAONE_TRAINER_PVC", "kexaone-data")
    with pytest.raises(TrainerConfigError, match="is not on the shared volume mounted at /data"):
        trainer_from_env(tmp_path)  # the work root is under tmp_path, the pods mount the claim at /data
    monkeypatch.setenv("KEXAONE_TRAIN_WORK_ROOT", "/data/training")
    monkeypatch.setenv("KEXAONE_TRAINER_NAMESPACE", "Kexaone_Prod")
    with pytest.raises(TrainerConfigError, match="not a Kubernetes namespace name"):
        trainer_from_env(tmp_path)
    monkeypatch.setenv("KEXAONE_TRAINER_NAMESPACE", "kexaone")
    monkeypatch.setenv("KEXAONE_TRAIN_NODES", "4")
    trained = trainer_from_env(tmp_path)
    assert trained.backend == "k8s-multinode" and trained.node_count(FULL) == 4


def test_the_full_preset_is_no_longer_refused_for_its_nodes_only_for_what_model_train_lacks():
    problems = launcher().launch_problems(FULL)
    assert problems == [
        "the context stages' NIAH gate generates with the whole model on rank 0 after training, which their layout "
        "(PP 2, CP 2 (stage1), CP 8 (stage2)) does not allow (a gate through an inference server is not built yet)"
    ]
    assert any("launches one node" in p for p in launcher(backend="k8s").launch_problems(FULL))


def test_a_stage_whose_paths_are_off_the_shared_volume_is_refused_before_submitting():
    s3_staged = stage(output=Path("/tmp/kexaone-stage-pretrain_stage1-x1y2"))  # an S3 store stages locally
    spec = trainjob_spec(launcher(), FULL, s3_staged, run_id="run-1", namespace="kexaone")
    problems = launch_problems(spec, s3_staged)
    assert len(problems) == 1 and "output /tmp/kexaone-stage-pretrain_stage1-x1y2" in problems[0]
    assert launch_problems(spec, stage()) == []


# -- the cluster: the real kubernetes client against an in-process API server -------------------------------


RANK0 = """
import os
from dagster_pipes import open_dagster_pipes
with open_dagster_pipes() as pipes:
    pipes.log.info(f"rank 0 of {os.environ['PET_NNODES']} nodes: stage {pipes.extras['stage']}")
    pipes.report_asset_materialization(metadata={"nodes": int(os.environ["PET_NNODES"]), "loss": 2.5})
"""


def ended(state: str, message: str) -> dict:
    """A TrainJob status with the operator's final condition (``Complete`` or ``Failed``)."""
    condition = {"type": state, "status": "True", "reason": state, "message": message}
    return {"conditions": [{**condition, "lastTransitionTime": "2026-12-05T00:00:00Z"}]}


class FakeApiServer:
    """The TrainJob and pod endpoints the launcher uses, over HTTP. ``operator`` decides what a created TrainJob
    does: ``"pipes"`` runs a real rank 0 with the TrainJob's environment and completes when it exits 0,
    ``"fail"`` fails it, ``"hang"`` leaves it running. A deleted TrainJob lingers for ``grace_reads`` reads."""

    def __init__(self, operator: str = "pipes", grace_reads: int = 2):
        self.jobs: dict[str, dict] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.deleting: dict[str, int] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.operator, self.grace_reads = operator, grace_reads
        self.has_crd = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body, content_type: str = "application/json"):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                server.handle(self, "GET")

            def do_POST(self):
                server.handle(self, "POST")

            def do_DELETE(self):
                server.handle(self, "DELETE")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def apis(self):
        config = k8s.Configuration()
        config.host = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        api = k8s.ApiClient(config)
        return k8s.CustomObjectsApi(api), k8s.CoreV1Api(api)

    def close(self):
        self.httpd.shutdown()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()

    def add(self, name: str, work_dir: Path, run_id: str) -> None:
        """A TrainJob some earlier launch created for ``work_dir`` (still running)."""
        manifest = manifest_for(FULL, stage(work=work_dir))
        manifest["metadata"].update(name=name, annotations={RUN_ANNOTATION: run_id})
        self.jobs[name] = manifest

    def _status(self, name: str) -> None:
        job, proc = self.jobs[name], self.procs.get(name)
        if self.operator == "fail" and not job.get("status"):
            job["status"] = ended("Failed", "jobset failed: node-0 exited 1")
        if proc is not None and proc.poll() is not None and not job.get("status"):
            job["status"] = ended("Complete" if proc.returncode == 0 else "Failed", f"rc {proc.returncode}")
        # what this stand-in answers is a TrainJob of the schema, its status too
        assert manifest_problems({k: v for k, v in job.items() if k != "status"}) == []
        TrainerV1alpha1TrainJobStatus.from_dict(job.get("status"))

    def _start_rank0(self, job: dict) -> None:
        trainer = job["spec"]["trainer"]
        pet = {"PET_NNODES": str(trainer["numNodes"]), "PET_NODE_RANK": "0", "RANK": "0"}
        env = {**os.environ, **pet, **{e["name"]: kubelet_expand(e["value"], pet) for e in trainer["env"]}}
        self.procs[job["metadata"]["name"]] = subprocess.Popen([sys.executable, "-c", RANK0], env=env)

    def handle(self, h, method: str) -> None:
        url = urlparse(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = json.loads(h.rfile.read(int(h.headers.get("Content-Length") or 0)) or b"null")
        self.requests.append((method, url.path, {**query, **({"body": body} if body else {})}))
        parts = url.path.strip("/").split("/")
        if parts[:3] == ["apis", "trainer.kubeflow.org", "v1alpha1"] and parts[5] == "trainjobs":
            if not self.has_crd:
                return h._send(
                    404, {"kind": "Status", "code": 404, "message": "the server could not find the requested resource"}
                )
            name = parts[6] if len(parts) > 6 else None
            if method == "POST":
                if body["metadata"]["name"] in self.jobs:
                    return h._send(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
                self.jobs[body["metadata"]["name"]] = json.loads(json.dumps(body))
                if self.operator == "pipes":
                    self._start_rank0(body)
                return h._send(201, body)
            if method == "GET" and name is None:
                key, _, value = query.get("labelSelector", "=").partition("=")
                items = [j for j in self.jobs.values() if j["metadata"].get("labels", {}).get(key) == value]
                return h._send(200, {"apiVersion": API_VERSION, "kind": "TrainJobList", "items": items})
            if name not in self.jobs:
                return h._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            if method == "DELETE":
                self.deleting.setdefault(name, self.grace_reads)
                return h._send(200, {"kind": "Status", "status": "Success"})
            if name in self.deleting:
                self.deleting[name] -= 1
                if self.deleting[name] < 0:
                    del self.jobs[name], self.deleting[name]
                    return h._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            self._status(name)
            return h._send(200, self.jobs[name])
        if parts[:2] == ["api", "v1"] and parts[3:5] == ["kexaone", "pods"]:
            if len(parts) == 5:
                pod = {"metadata": {"name": "job-node-0-0-abcde", "creationTimestamp": "2026-01-01T00:00:00Z"}}
                return h._send(200, {"kind": "PodList", "apiVersion": "v1", "items": [pod]})
            return h._send(200, "step 41 loss 2.5\nTraceback: NCCL error: unhandled system error\n", "text/plain")
        return h._send(404, {"kind": "Status", "code": 404})


@pytest.fixture
def api_server():
    servers = []

    def make(**kw) -> FakeApiServer:
        servers.append(FakeApiServer(**kw))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def _materialize(tmp_path: Path, server: FakeApiServer, *, poll_s: float = 0.05):
    from dagster import DagsterInstance, asset, materialize

    trainer = launcher(work_root=str(tmp_path / "training"), mount_path=str(tmp_path))
    launch = stage(work=tmp_path / "training" / "pretrain_stage1" / "v1", root=tmp_path, preset_name="tiny")

    @asset(name="pretrain_stage1_on_trainjob")
    def trained(context):
        invocation = run_trainjob_stage(
            context, trainer, TINY, launch, extras={"stage": "stage1"}, apis=server.apis(), poll_s=poll_s
        )
        return invocation.get_materialize_result()

    instance = DagsterInstance.ephemeral()
    result = materialize([trained], instance=instance, raise_on_error=False)
    return result, launch, [entry.user_message for entry in instance.all_logs(result.run_id)]


def test_a_submitted_trainjob_reports_through_pipes_over_the_shared_volume_and_completes(tmp_path, api_server):
    server = api_server(operator="pipes")
    result, launch, logs = _materialize(tmp_path, server)
    assert result.success
    (mat,) = result.get_asset_materialization_events()
    metadata = mat.materialization.metadata
    assert metadata["nodes"].value == 1 and metadata["loss"].value == 2.5  # rank 0's report
    assert any("rank 0 of 1 nodes: stage stage1" in m for m in logs)  # rank 0's Pipes log line
    assert any(re.search(r"TrainJob kexaone-train-\w+ submitted in kexaone", m) for m in logs)
    (created,) = [r for r in server.requests if r[0] == "POST"]
    assert manifest_problems(created[2]["body"]) == []
    # the channel: every pod gets the bootstrap variables; they name a file in the work dir on the shared volume
    env = {e["name"]: e["value"] for e in created[2]["body"]["spec"]["trainer"]["env"]}
    assert decode_param(env["DAGSTER_PIPES_MESSAGES"])["path"] == str(launch.work_dir / "pipes.jsonl")


def test_a_failed_trainjob_is_one_error_with_the_operators_message_and_node_0s_last_lines(tmp_path, api_server):
    server = api_server(operator="fail")
    result, _, _ = _materialize(tmp_path, server)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.step_failure_data.error
    message = error.cause.message if error.cause else error.message  # the step's error, then what raised it
    assert "TrainJob kexaone-train-" in message and "jobset failed: node-0 exited 1" in message
    assert "NCCL error" in message
    assert not [r for r in server.requests if r[0] == "DELETE"]  # kept for `kubectl describe`


def test_a_cluster_without_the_operator_is_one_line_naming_it(tmp_path, api_server):
    server = api_server(operator="hang")
    server.has_crd = False
    with pytest.raises(K8sTrainingError, match="install Kubeflow Trainer v2.3"):
        from resources.k8s_trainer import submit

        submit(server.apis()[0], manifest_for(FULL))


INTERRUPTED_SCRIPT = """
import sys
from pathlib import Path
from dagster import asset, materialize
from kubernetes import client as k8s
from config import get_preset
from resources.k8s_trainer import run_trainjob_stage
from tests.unit.test_k8s_trainer import launcher, stage

root, config = Path(sys.argv[1]), k8s.Configuration()
config.host = sys.argv[2]
api = k8s.ApiClient(config)
trainer = launcher(work_root=str(root / "training"), mount_path=str(root))
launch = stage(work=root / "training" / "s" / "v1", root=root, preset_name="tiny")

@asset
def interrupted_stage(context):
    apis = (k8s.CustomObjectsApi(api), k8s.CoreV1Api(api))
    invocation = run_trainjob_stage(context, trainer, get_preset("tiny"), launch, extras={}, apis=apis, poll_s=0.1)
    return invocation.get_materialize_result()

print("run", "succeeded" if materialize([interrupted_stage], raise_on_error=False).success else "failed", flush=True)
"""


def test_terminating_the_run_deletes_its_trainjob_with_everything_it_owns(tmp_path, api_server):
    """What terminating a run does to its step (an interrupt, SIGINT, while it waits for the TrainJob) deletes
    the TrainJob with foreground propagation: its JobSet, Jobs and pods go with it."""
    import signal
    import time

    server = api_server(operator="hang")
    host = server.apis()[0].api_client.configuration.host
    script = tmp_path / "run_stage.py"
    script.write_text(INTERRUPTED_SCRIPT)
    repo = Path(__file__).resolve().parents[2]
    run = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), host], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 90
        while not server.jobs or not [r for r in server.requests if r[0] == "GET" and "/trainjobs/" in r[1]]:
            assert run.poll() is None and time.monotonic() < deadline, run.stdout.read().decode()[-3000:]
            time.sleep(0.1)
        run.send_signal(signal.SIGINT)
        output = run.communicate(timeout=60)[0].decode()
    finally:
        if run.poll() is None:
            run.kill()
    assert "run failed" in output, output[-3000:]
    (name,) = server.jobs or [trainjob_name(tmp_path / "training" / "s" / "v1")]
    (deleted,) = [r for r in server.requests if r[0] == "DELETE"]
    assert deleted[1] == f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/kexaone/trainjobs/{name}"
    options = {**deleted[2], **(deleted[2].get("body") or {})}
    assert options.get("propagationPolicy") == "Foreground", options
    assert "deleted (its pods stop" in output


def test_a_relaunch_deletes_the_trainjob_of_an_ended_run_and_refuses_one_of_a_live_run(api_server):
    server = api_server(operator="hang")
    custom, _ = server.apis()
    name = trainjob_name(WORK)
    server.add(name, WORK, "old-run")
    server.add("kexaone-train-other", WORK.parent / "other", "old-run")  # another work dir: left alone
    log: list[str] = []
    states = {"old-run": "FAILURE"}
    assert clear_previous_trainjobs(custom, "kexaone", WORK, "new-run", states.get, log.append, poll_s=0.01) == [name]
    assert name not in server.jobs and "kexaone-train-other" in server.jobs
    assert "resumes from its last checkpoint" in log[0]

    server.add(name, WORK, "live-run")
    with pytest.raises(TrainerBusyError, match="TrainJob kexaone-train-.* of run live-run \\(STARTED\\)"):
        clear_previous_trainjobs(custom, "kexaone", WORK, "new-run", {"live-run": "STARTED"}.get, log.append)
    assert name in server.jobs

    server.jobs[name]["status"] = ended("Complete", "")  # ended: its name is free
    assert clear_previous_trainjobs(
        custom, "kexaone", WORK, "new-run", {"live-run": "STARTED"}.get, log.append, poll_s=0.01
    ) == [name]
    server.add(name, WORK, "new-run")  # an earlier attempt of this run's step
    assert clear_previous_trainjobs(
        custom, "kexaone", WORK, "new-run", {"new-run": "STARTED"}.get, log.append, poll_s=0.01
    ) == [name]
    assert [r[2].get("labelSelector") for r in server.requests if r[0] == "GET" and r[1].endswith("/trainjobs")][0] == (
        f"{WORK_DIR_LABEL}={manifest_for(FULL)['metadata']['labels'][WORK_DIR_LABEL]}"
    )


def test_the_rbac_manifest_grants_the_step_pods_every_call_the_launcher_makes_and_no_more(api_server, tmp_path):
    """``deploy/k8s/trainjob-rbac.yaml`` against the requests a whole launch makes (clear, submit, wait, fail, log)
    and the service account and namespace of ``deploy/k8s/executor.yaml``."""
    import yaml

    from kexaone_dag.executors import load_k8s_executor_config

    repo = Path(__file__).resolve().parents[2]
    role, binding = yaml.safe_load_all((repo / "deploy" / "k8s" / "trainjob-rbac.yaml").read_text())
    executor = load_k8s_executor_config()
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": executor["service_account_name"], "namespace": executor["job_namespace"]}
    ]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == executor["job_namespace"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    granted = {
        (g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }

    server = api_server(operator="fail")
    server.add(
        trainjob_name(tmp_path / "training" / "pretrain_stage1" / "v1"),
        tmp_path / "training" / "pretrain_stage1" / "v1",
        "ended-run",
    )
    _materialize(tmp_path, server)
    verbs = {"POST": "create", "DELETE": "delete"}
    used = set()
    for method, path, _ in server.requests:
        parts = path.strip("/").split("/")
        group, resource_at = ("", 4) if parts[0] == "api" else (parts[1], 5)
        resource = "/".join([parts[resource_at], *parts[resource_at + 2 :]])
        named = len(parts) > resource_at + 1
        used.add((group, resource, verbs.get(method, "get" if named else "list")))
    assert used == granted
