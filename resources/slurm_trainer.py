"""The Slurm backend of ``TrainerLauncher``: one ``sbatch`` job per training stage, over as many nodes as the
stage needs, reporting to Dagster through Pipes over shared storage.

* Submit: ``sbatch --nodes N --ntasks-per-node 1`` runs a script kept in the stage's work dir (shared storage:
  the Dagster step and every node see it). Its batch step takes the work dir's lock (``model.launch_guard``,
  without ``--parent-pid``: the launching step is not its parent and may live on another machine), then
  ``srun`` starts one ``torchrun --nnodes N --nproc-per-node P --rdzv-backend c10d`` per node, all meeting at
  the first node's address (``NodeAddr``) on a port the OS reports free there when the job starts.
* Pipes: ``open_pipes_session`` with ``PipesEnvContextInjector`` (the bootstrap variables reach the job in the
  environment ``sbatch`` exports, never in a file) and ``PipesFileMessageReader`` on ``WORK_DIR/pipes.jsonl``,
  where rank 0's ``open_dagster_pipes`` appends its log lines and its materialization report.
* Wait: poll ``squeue`` (then ``scontrol show job`` for the final state), streaming the job's output file into
  the Dagster log; a job that ends other than COMPLETED is one ``SlurmTrainingError`` with its output's tail.
* Cancel: an interrupt of the step (the run is terminated) or any error while waiting ``scancel``s the job.
  A later launch on the same work dir first cancels a job left by an ended run (or an earlier attempt of this
  step) and resumes from its last periodic checkpoint (``model.train`` does that by itself); a job of another
  live run is a one-line ``TrainerBusyError``.

Every Slurm client call has a timeout: a client of an unreachable controller hangs.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from dagster import (
    AssetExecutionContext,
    PipesClientCompletedInvocation,
    PipesEnvContextInjector,
    PipesFileMessageReader,
    open_pipes_session,
)

REPO = Path(__file__).resolve().parent.parent
CLIENT_TIMEOUT_S = 60
FINAL_OK = "COMPLETED"
ENDED_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}
ENDED_STATES |= {"BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"}
MESSAGES_FILE = "pipes.jsonl"
FREE_PORT = 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'


class SlurmTrainingError(RuntimeError):
    """The training job could not be submitted or followed, or ended other than COMPLETED."""


class SlurmJobEndedError(SlurmTrainingError):
    """The job ended other than COMPLETED (nothing left to cancel)."""


@dataclass(frozen=True)
class SlurmJobSpec:
    nodes: int
    nproc_per_node: int
    gpus_per_node: int
    partition: str | None
    job_name: str
    comment: str
    work_dir: Path
    module: str
    train_args: list[str]
    python: str = sys.executable


def client(*args: str, env: Mapping[str, str] | None = None, timeout: float = CLIENT_TIMEOUT_S):
    """One Slurm client command (``SLURM_CONF`` and the rest from this process's environment)."""
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env)


def batch_script(spec: SlurmJobSpec) -> str:
    """The job script: the work dir's lock on the batch step, then one torchrun per node (c10d rendezvous)."""
    from resources.trainer import multi_node_torchrun

    rendezvous = ["--rdzv-backend=c10d", '--rdzv-endpoint="$addr:$port"', '--rdzv-id="$SLURM_JOB_ID"']
    torchrun, guard = multi_node_torchrun(
        spec.python, spec.nodes, spec.nproc_per_node, rendezvous, spec.module, spec.train_args, spec.work_dir
    )
    srun = ["srun", f"--nodes={spec.nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    q = shlex.quote
    return "\n".join(
        [
            "#!/bin/bash",
            "set -eu",
            "export PYTHONUNBUFFERED=1",
            'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            'addr=$(scontrol show node "$head" | grep -o "NodeAddr=[^ ]*" | cut -d= -f2)',
            # a port the OS says is free on this host (the batch step runs on the allocation's first node, where
            # torchrun's c10d store will listen); a port derived from the job id could be taken
            "port=$(" + q(spec.python) + " -c " + q(FREE_PORT) + ")",
            'echo "kexaone: job $SLURM_JOB_ID on $SLURM_JOB_NUM_NODES node(s) ($SLURM_JOB_NODELIST), '
            f'{spec.nproc_per_node} process(es) each, rendezvous at $addr:$port"',
            f"cd {q(str(REPO))}",
            # the guard execs srun: the lock is held for as long as the batch step lives
            "exec " + " ".join([*guard, *srun, *torchrun]),
            "",
        ]
    )


def submit(spec: SlurmJobSpec, env: Mapping[str, str]) -> str:
    """``sbatch`` the stage; returns the job id. ``env`` is exported to the job (``--export=ALL``)."""
    spec.work_dir.mkdir(parents=True, exist_ok=True)
    script = spec.work_dir / "train.sbatch"
    script.write_text(batch_script(spec))
    args = [
        "sbatch",
        "--parsable",
        f"--nodes={spec.nodes}",
        "--ntasks-per-node=1",
        f"--job-name={spec.job_name}",
        f"--comment={spec.comment}",
        f"--output={spec.work_dir}/slurm-%j.out",
        f"--chdir={REPO}",
        "--export=ALL",
        *([f"--partition={spec.partition}"] if spec.partition else []),
        *([f"--gpus-per-node={spec.gpus_per_node}"] if spec.gpus_per_node else []),
        str(script),
    ]
    try:
        done = client(*args, env=env)
    except FileNotFoundError:
        raise SlurmTrainingError("trainer backend 'slurm': sbatch is not on PATH on this machine") from None
    except subprocess.TimeoutExpired:
        raise SlurmTrainingError(f"sbatch did not answer within {CLIENT_TIMEOUT_S} s (is slurmctld up?)") from None
    if done.returncode != 0:
        raise SlurmTrainingError(f"sbatch failed: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip().split(";")[0]


def queue_state(job_id: str) -> str | None:
    """The job's state while ``squeue`` lists it, None once it has left the queue."""
    done = client("squeue", "-h", "-j", job_id, "-o", "%T")
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:
            return None
        raise SlurmTrainingError(f"squeue -j {job_id} failed: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip() or None


def final_state(job_id: str) -> tuple[str, str]:
    """(state, exit code) of an ended job: ``scontrol show job`` (kept ``MinJobAge`` seconds), then ``sacct``."""
    try:
        shown = client("scontrol", "show", "job", "-o", job_id)
        if shown.returncode == 0 and (state := re.search(r"\bJobState=(\S+)", shown.stdout)):
            code = re.search(r"\bExitCode=(\S+)", shown.stdout)
            return state.group(1), code.group(1) if code else "?"
        acct = client("sacct", "-j", job_id, "-X", "-n", "-P", "-o", "State,ExitCode")
        if acct.returncode == 0 and acct.stdout.strip():
            state, _, code = acct.stdout.strip().splitlines()[0].partition("|")
            return state.split()[0], code
    except (subprocess.TimeoutExpired, FileNotFoundError):
        pass
    return "UNKNOWN", "?"


class OutputTail:
    """Follows the job's output file: new complete lines to ``log``, the last lines kept for an error."""

    def __init__(self, path: Path, log: Callable[[str], None], keep: int = 40):
        self.path, self.log, self.keep = path, log, keep
        self.offset, self.partial, self.last = 0, b"", []

    def poll(self, final: bool = False) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = b"" if final else lines.pop()
        for raw in lines:
            if line := raw.decode(errors="replace").rstrip():
                self.log(line)
                self.last = [*self.last[-(self.keep - 1) :], line]


def cancel(job_id: str, log: Callable[[str], None], timeout_s: float = 60, poll_s: float = 0.5) -> None:
    """``scancel`` the job and wait until ``squeue`` no longer lists it (or ``timeout_s``)."""
    try:
        client("scancel", job_id)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and queue_state(job_id) is not None:
            time.sleep(poll_s)
        log(f"Slurm job {job_id} cancelled")
    except (subprocess.TimeoutExpired, SlurmTrainingError) as exc:
        log(f"could not confirm that Slurm job {job_id} was cancelled ({exc}); check `squeue -j {job_id}`")


def wait(job_id: str, output: Path, log: Callable[[str], None], poll_s: float = 2.0, max_errors: int = 10) -> None:
    """Until the job leaves the queue, streaming its output; raise ``SlurmTrainingError`` unless it COMPLETED."""
    tail, errors = OutputTail(output, lambda line: log(f"[slurm {job_id}] {line}")), 0
    while True:
        tail.poll()
        try:
            state = queue_state(job_id)
            errors = 0
        except (subprocess.TimeoutExpired, SlurmTrainingError) as exc:
            errors += 1
            if errors >= max_errors:
                raise SlurmTrainingError(f"lost track of Slurm job {job_id}: {exc}") from None
            state = "UNREACHABLE"
        if state is None or state in ENDED_STATES:
            break
        time.sleep(poll_s)
    state, code = final_state(job_id)
    tail.poll(final=True)
    if state != FINAL_OK:
        last = "\n".join(tail.last[-20:]) or "(no output)"
        raise SlurmJobEndedError(f"Slurm job {job_id} ended {state} (exit {code}); last lines of {output}:\n{last}")


def clear_previous_jobs(
    job_name: str, run_id: str, run_state: Callable[[str], str | None], log: Callable[[str], None]
) -> list[str]:
    """Cancel (and wait out) this user's live jobs named ``job_name`` (one work dir) whose Dagster run has ended
    or is this run; raise ``TrainerBusyError`` if one belongs to another live run. Returns the jobs cancelled."""
    from resources.trainer import FINISHED_RUN_STATES, TrainerBusyError

    listed = client("squeue", "-h", "-u", getpass.getuser(), "-n", job_name, "-o", "%i|%k|%T")
    if listed.returncode != 0:
        raise SlurmTrainingError(f"squeue failed: {listed.stderr.strip() or listed.returncode}")
    cancelled = []
    for line in listed.stdout.splitlines():
        job_id, owner, state = (line.split("|") + ["", ""])[:3]
        owner_state = run_state(owner) if owner and owner != run_id else None
        if owner_state is not None and owner_state not in FINISHED_RUN_STATES:
            raise TrainerBusyError(
                f"Slurm job {job_id} ({state}) of run {owner} ({owner_state}) trains the same work dir; wait for "
                "that run or terminate it, then materialize again"
            )
        log(f"Slurm job {job_id} of run {owner or 'unknown'} still trains this work dir: cancelling it")
        cancel(job_id, log)
        cancelled.append(job_id)
    return cancelled


def run_slurm_stage(
    context: AssetExecutionContext,
    spec: SlurmJobSpec,
    *,
    extras: Mapping[str, Any],
    env: Mapping[str, str],
    poll_s: float = 2.0,
) -> PipesClientCompletedInvocation:
    """Submit the stage, wait for it inside a Pipes session, cancel it if the step is interrupted."""

    def run_state(run_id: str) -> str | None:
        run = context.instance.get_run_by_id(run_id)
        return run.status.value if run else None

    clear_previous_jobs(spec.job_name, context.run_id, run_state, context.log.info)
    spec.work_dir.mkdir(parents=True, exist_ok=True)
    reader = PipesFileMessageReader(str(spec.work_dir / MESSAGES_FILE))
    with open_pipes_session(
        context=context, context_injector=PipesEnvContextInjector(), message_reader=reader, extras=dict(extras)
    ) as session:
        job_env = {**os.environ, "PYTHONUNBUFFERED": "1", **dict(env), **session.get_bootstrap_env_vars()}
        job_id = submit(spec, job_env)
        output = spec.work_dir / f"slurm-{job_id}.out"
        context.log.info(
            f"Slurm job {job_id} submitted: {spec.nodes} node(s) x {spec.nproc_per_node} process(es); output {output}"
        )
        try:
            wait(job_id, output, context.log.info, poll_s=poll_s)
        except SlurmJobEndedError:
            raise
        except BaseException:  # the run was terminated (interrupt) or waiting failed: nobody watches the job
            cancel(job_id, context.log.warning)
            raise
    return PipesClientCompletedInvocation(session, metadata={"slurm_job_id": job_id})


__all__ = [
    "SlurmJobEndedError",
    "SlurmJobSpec",
    "SlurmTrainingError",
    "batch_script",
    "cancel",
    "clear_previous_jobs",
    "final_state",
    "queue_state",
    "run_slurm_stage",
    "submit",
    "wait",
]
