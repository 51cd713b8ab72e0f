"""The corpus pipeline on a real Slurm cluster (a temp-dir cluster of this machine, ``tests/slurm_cluster``):
the same output as the local executor, and a materialization whose step was killed is resumed by the next
attempt at the same artifact version, which adopts the earlier attempt's jobs instead of running them twice."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from corpus.executors import ExecutorSettings, queued_jobs
from corpus.pipeline import read_documents
from tests import slurm_cluster
from tests.corpus_samples import DEMO, filter_source

pytestmark = pytest.mark.skipif(
    not slurm_cluster.available(),
    reason="Slurm is not installed (scripts/bootstrap.sh installs it as root with apt-get)",
)

REPO = Path(__file__).resolve().parents[2]
RUN_KEY = "filtered_corpus__en-3f9c2a"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = slurm_cluster.SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    mp = pytest.MonkeyPatch()
    mp.setenv("SLURM_CONF", str(c.conf))  # what a user's login node has in /etc
    yield c
    mp.undo()
    c.stop()


def _settings(work: Path) -> ExecutorSettings:
    return ExecutorSettings(
        kind="slurm", work_dir=str(work), slurm_partition="debug", poll_interval_s=0.5, timeout_s=600
    )


ATTEMPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from corpus.executors import ExecutorSettings
    from corpus.pipeline import run_filter_partition
    from corpus.sources import content_manifest
    from config import get_preset

    settings, out, run_key = ExecutorSettings(**json.loads(sys.argv[1])), Path(sys.argv[2]), sys.argv[3]
    p = get_preset("tiny")
    manifest = content_manifest("en", sys.argv[4])
    args = p.data.filters["en"]
    run_filter_partition(partition="en", source_uri=manifest.uri, files=manifest.files, storage_options=None,
                         args=args, language_threshold=p.data.language_score_threshold["en"], pipeline=p.data.pipeline,
                         out_dir=out, settings=settings, run_key=run_key, log=lambda line: print(line, flush=True))
    print("attempt done", flush=True)
""")


def _attempt(settings: ExecutorSettings, out: Path, run_key: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", ATTEMPT, json.dumps(settings.__dict__), str(out), run_key, str(DEMO / "en")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _lines_until(proc: subprocess.Popen, text: str, timeout_s: float = 120) -> list[str]:
    """The process's output lines up to the first that contains ``text`` (which it must print in time)."""
    lines: list[str] = []
    timer = threading.Timer(timeout_s, proc.kill)  # a missing line fails the test instead of hanging it
    timer.start()
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if text in line:
                return lines
    finally:
        timer.cancel()
    raise AssertionError(f"never printed {text!r} (exit {proc.wait()}): " + "\n".join(lines[-20:]))


def _kept(folder: Path) -> list[tuple[str, str]]:
    return sorted((d["id"], d["text"]) for d in read_documents(str(folder / "documents")))


def test_a_killed_attempt_is_adopted_by_the_next_one_with_the_same_version(cluster, tmp_path):
    settings = _settings(tmp_path / "shared")
    prefix = f"kexaone-filter-en-{hashlib.sha256(RUN_KEY.encode()).hexdigest()[:16]}"
    cluster.drain()  # the earlier attempt's jobs stay queued until the node comes back
    first = _attempt(settings, tmp_path / "staging-1", RUN_KEY)
    deadline = time.monotonic() + 120
    while not queued_jobs(prefix):
        assert first.poll() is None, first.stdout.read()
        assert time.monotonic() < deadline, "the first attempt submitted nothing within 120 s"
        time.sleep(0.2)
    earlier = queued_jobs(prefix)
    first.send_signal(signal.SIGKILL)  # the Dagster step dies; its Slurm jobs do not
    first.wait(30)
    assert queued_jobs(prefix) == earlier

    second = _attempt(settings, tmp_path / "staging-2", RUN_KEY)
    said = _lines_until(second, "of an earlier attempt")  # it waits on the queued jobs of the first...
    cluster.resume()  # ...which now run
    said += second.communicate(timeout=300)[0].splitlines()
    adopted = [line for line in said if "of an earlier attempt" in line]
    assert adopted and all(job in adopted[0] for job in earlier), said
    assert "nothing to submit to Slurm: every task of every stage has completed" in said, said  # none ran twice
    assert "attempt done" in said
    assert not queued_jobs(prefix)
    local = filter_source("en", DEMO / "en", tmp_path / "local")  # the same partition on the local executor
    assert _kept(tmp_path / "staging-2") == _kept(tmp_path / "local")
    assert json.loads((tmp_path / "staging-2" / "stats.json").read_text())["steps"] == local["steps"]
    assert not (tmp_path / "shared" / f"run-{prefix.rsplit('-', 1)[1]}").exists()  # moved into the artifact


def test_a_new_version_does_not_wait_for_other_versions_jobs(cluster, tmp_path):
    settings = _settings(tmp_path / "shared")
    cluster.drain()
    other = _attempt(settings, tmp_path / "staging-other", "filtered_corpus__en-other-version")
    try:
        deadline = time.monotonic() + 120
        while not queued_jobs("kexaone-filter-en"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        proc = _attempt(settings, tmp_path / "staging-new", RUN_KEY + "-new")
        said = _lines_until(proc, "submitted Slurm jobs")  # submitted while the other version's jobs are queued
        cluster.resume()
        said += proc.communicate(timeout=300)[0].splitlines()
        assert not any("of an earlier attempt" in line for line in said), said
        assert "attempt done" in said
    finally:
        cluster.resume()
        other.communicate(timeout=300)


@pytest.mark.slow  # ~2.5 min on 2 cores: MinHash buckets are 60 one-task jobs, each a fresh interpreter
def test_the_corpus_assets_on_slurm_give_the_local_artifacts_at_the_same_versions(cluster, kexaone_env, monkeypatch):
    """filtered_corpus and deduplicated_corpus (partition code) materialized through Dagster with the
    ``corpus_pipeline`` resource on Slurm: same artifact versions and the same kept documents as locally."""
    from dagster import DagsterInstance, materialize

    from assets.corpus import raw_corpus_sources
    from assets.corpus_pipeline import deduplicated_corpus, filtered_corpus
    from kexaone_dag.definitions import build_definitions
    from resources.corpus_pipeline import CorpusPipeline

    assets = [*raw_corpus_sources, filtered_corpus, deduplicated_corpus]
    built = {}
    for executor in ("local", "slurm"):
        home = kexaone_env["tmp"] / f"home-{executor}"
        monkeypatch.setenv("KEXAONE_HOME", str(home))
        defs = build_definitions()
        resources = dict(defs.resources)
        if executor == "slurm":
            resources["corpus_pipeline"] = CorpusPipeline(
                executor="slurm",
                slurm_partition="debug",
                work_dir=str(kexaone_env["tmp"] / "shared"),
                poll_interval_s=0.5,
            )
        with DagsterInstance.ephemeral() as instance:
            result = materialize(
                assets,
                partition_key="code",
                instance=instance,
                resources=resources,
                selection=["filtered_corpus", "deduplicated_corpus"],
            )
        assert result.success
        versions = {
            m.asset_key.to_user_string(): m.metadata["artifact_version"].value
            for m in result.asset_materializations_for_node("deduplicated_corpus")
            + result.asset_materializations_for_node("filtered_corpus")
        }
        built[executor] = (
            versions,
            _kept(home / "artifacts" / "deduplicated_corpus__code" / versions["deduplicated_corpus"]),
        )
        checks = {
            e.event_specific_data.check_name: e.event_specific_data.passed
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        }
        assert checks and all(checks.values()), checks
    assert built["slurm"][0] == built["local"][0]  # where it runs is not part of the version
    assert built["slurm"][1] == built["local"][1] and built["local"][1]
    assert not queued_jobs("kexaone-")


def test_an_earlier_job_whose_dependency_failed_is_cancelled_not_waited_for(tmp_path, monkeypatch):
    """On a cluster without ``kill_invalid_depend`` such a job stays pending forever (squeue reason
    DependencyNeverSatisfied); adopting it must not mean waiting for it."""
    from corpus.executors import _adopt_earlier_jobs

    c = slurm_cluster.SlurmCluster(tmp_path / "slurm", kill_invalid_depend=False).start()
    try:
        monkeypatch.setenv("SLURM_CONF", str(c.conf))
        failed = c.run("sbatch", "--parsable", "--job-name=kexaone-dedup-en-abc-exact_signatures", "--wrap", "false")
        first = failed.stdout.strip()
        c.run(
            "sbatch",
            "--parsable",
            f"--dependency=afterok:{first}",
            "--job-name=kexaone-dedup-en-abc-exact_find",
            "--wrap",
            "true",
        )
        deadline = time.monotonic() + 60
        while set(queued_jobs("kexaone-dedup-en-abc").values()) != {"DependencyNeverSatisfied"}:
            assert time.monotonic() < deadline, queued_jobs("kexaone-dedup-en-abc")
            time.sleep(0.2)
        said: list[str] = []
        _adopt_earlier_jobs(_settings(tmp_path), said.append, "kexaone-dedup-en-abc")
        assert any("their dependency failed, so they would never run" in line for line in said), said
        assert not queued_jobs("kexaone-dedup-en-abc")
    finally:
        c.stop()
