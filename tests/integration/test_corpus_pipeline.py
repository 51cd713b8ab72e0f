"""The filter pipeline of one partition without Dagster: statistics, exclusion output, bad input, executors."""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from config import get_preset
from corpus.executors import (
    CorpusExecutorError,
    ExecutorSettings,
    SequentialPipelineExecutor,
    SpawnPoolPipelineExecutor,
    Stage,
    make_executor,
    run_stages,
)
from corpus.pipeline import run_filter_partition
from corpus.sources import CorpusSourceError, content_manifest
from tests.corpus_samples import DEMO, filter_source, read_documents

PRESET = get_preset("tiny")
KEXAONE = str(Path(sys.executable).parent / "kexaone")


def test_filter_statistics_and_exclusion_output_on_parquet_and_jsonl(tmp_path):
    summary = filter_source("de", DEMO / "de", tmp_path)  # web-00.parquet + web-01.jsonl
    steps = {s["step"]: s for s in summary["steps"]}
    assert list(steps) == [
        "read",
        "url",
        "language_id",
        "gopher_repetition",
        "gopher_quality",
        "c4",
        "fineweb_quality",
        "pii",
    ]
    assert steps["read"]["docs_in"] == 31 and summary["totals"]["docs_out"] == 28
    for prev, step in zip(summary["steps"], summary["steps"][1:]):
        assert step["docs_in"] == prev["docs_out"] and step["bytes_in"] == prev["bytes_out"]
    assert summary["totals"]["all_accounted_for"] and summary["totals"]["docs_excluded"] == 3
    assert summary["language_purity"] >= PRESET.data.language_purity_threshold
    excluded = read_documents(tmp_path / "excluded" / "language_id")
    assert [(d["id"], d["metadata"]["excluded_by"], d["metadata"]["filter_reason"]) for d in excluded] == [
        ("de-0014", "language_id", "wrong_language")
    ]
    assert excluded[0]["metadata"]["language"] == "it" and "Nuova pista ciclabile" in excluded[0]["text"]
    kept = read_documents(tmp_path / "documents")
    assert len(kept) == 28 and all(d["metadata"]["url"].startswith("https://example.") for d in kept)
    written = json.loads((tmp_path / "stats.json").read_text())
    assert written["totals"] == summary["totals"]


def test_invalid_utf8_and_broken_records_are_counted_rejections(tmp_path):
    folder = tmp_path / "en"
    shutil.copytree(DEMO / "en", folder)
    good = (DEMO / "en" / "web-00.jsonl").read_bytes().splitlines(keepends=True)
    bad = [
        good[0],
        b'{"id": "bad-utf8", "text": "caf\xe9 au lait"}\n',
        b"{not json\n",
        b'{"id": "x", "body": "no text"}\n',
        b'{"id": "blank", "text": "   "}\n',
    ]
    (folder / "web-02.jsonl").write_bytes(b"".join(bad).replace(b'"en-0001"', b'"en-0001-copy"'))
    (folder / "empty.jsonl").write_bytes(b"")
    summary = filter_source("en", folder, tmp_path / "out")
    read = {(r["reason"]): r["documents"] for r in summary["rejections"] if r["step"] == "read"}
    assert read == {"unreadable": 3, "empty_text": 1}
    assert summary["totals"]["docs_in"] == 31 + 5 and summary["totals"]["all_accounted_for"]
    rejected = {d["id"]: d["metadata"] for d in read_documents(tmp_path / "out" / "excluded" / "read")}
    assert "web-02.jsonl line 2: invalid UTF-8 at byte" in rejected["web-02.jsonl:2"]["problem"]
    assert "web-02.jsonl line 3: invalid JSON" in rejected["web-02.jsonl:3"]["problem"]
    assert "no string 'text' field" in rejected["web-02.jsonl:4"]["problem"]
    assert rejected["blank"]["filter_reason"] == "empty_text"
    # the exact copy of en-0001 passes the filters (dedup removes it later)
    assert "en-0001-copy" in {d["id"] for d in read_documents(tmp_path / "out" / "documents")}


def test_parquet_rows_without_text_are_rejected_and_files_without_a_text_column_fail(tmp_path):
    folder = tmp_path / "de"
    folder.mkdir()
    pq.write_table(pa.table({"id": ["de-a", "de-b"], "text": [None, "Kurz."]}), folder / "rows.parquet")
    summary = filter_source("de", folder, tmp_path / "out")
    assert {r["reason"]: r["documents"] for r in summary["rejections"] if r["step"] == "read"} == {"unreadable": 1}

    pq.write_table(pa.table({"id": ["de-c"], "body": ["Kein Textfeld."]}), folder / "rows.parquet")
    with pytest.raises(
        CorpusSourceError, match=r"rows\.parquet: Parquet file has no 'text' column \(columns: id, body\)"
    ):
        filter_source("de", folder, tmp_path / "out2")


def test_corrupt_gzip_and_a_vanished_file_fail_naming_the_file(tmp_path):
    folder = tmp_path / "ja"
    shutil.copytree(DEMO / "ja", folder)
    (folder / "web-01.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00 truncated")
    with pytest.raises(CorpusSourceError, match=r"web-01\.jsonl\.gz: corrupt gzip stream"):
        filter_source("ja", folder, tmp_path / "out")

    manifest = content_manifest("ja", str(DEMO / "ja"))
    gone = tmp_path / "gone"
    shutil.copytree(DEMO / "ja", gone)
    manifest = content_manifest("ja", str(gone))
    (gone / "web-00.jsonl").unlink()  # listed in the manifest, deleted before the run
    with pytest.raises(CorpusSourceError, match=r"web-00\.jsonl: unreadable \(FileNotFoundError"):
        run_filter_partition(
            partition="ja",
            source_uri=manifest.uri,
            files=manifest.files,
            storage_options=None,
            args=PRESET.data.filters["ja"],
            language_threshold=0.65,
            pipeline=PRESET.data.pipeline,
            out_dir=tmp_path / "out2",
            settings=ExecutorSettings(),
        )
    with pytest.raises(CorpusSourceError, match="raw_corpus_ja: source folder .* does not exist"):
        content_manifest("ja", str(tmp_path / "missing"))


@pytest.mark.slow
def test_a_process_pool_gives_the_same_output_as_one_worker(tmp_path):
    one = filter_source("es", DEMO / "es", tmp_path / "one")
    two = filter_source("es", DEMO / "es", tmp_path / "two", ExecutorSettings(workers=2))
    assert one["steps"] == two["steps"] and one["rejections"] == two["rejections"]
    assert read_documents(tmp_path / "one" / "documents") == read_documents(tmp_path / "two" / "documents")
    assert isinstance(
        make_executor(ExecutorSettings(workers=2), Stage("s", [], 2, str(tmp_path / "l"))), SpawnPoolPipelineExecutor
    )


POOL_RUNS = 20


@contextlib.contextmanager
def _busy_threads():
    """The threads a Dagster step process has when the corpus pool starts: torch's intra-op pool at work,
    a DuckDB connection running queries, and threads taking the logging locks (stdlib and loguru)."""
    import duckdb
    import torch
    from loguru import logger as loguru_logger

    stop = threading.Event()
    quiet = logging.getLogger("kexaone.test.busy")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False

    def torch_work():
        a = torch.randn(128, 128)
        while not stop.is_set():
            a = torch.tanh(a @ a)

    def duckdb_work():
        con = duckdb.connect()
        while not stop.is_set():
            con.execute("select sum(range) from range(200000)").fetchall()
        con.close()

    def logging_work():
        while not stop.is_set():
            quiet.info("busy")
            loguru_logger.trace("busy")

    threads = [threading.Thread(target=f, daemon=True) for f in (torch_work, duckdb_work, logging_work)]
    for t in threads:
        t.start()
    try:
        yield threads
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_two_worker_pool_never_hangs_when_started_from_a_threaded_dagster_step(tmp_path):
    """The deadlock of the forked pool: run the 2-worker path POOL_RUNS times from inside a Dagster step,
    in a process whose torch, DuckDB and logging threads are busy at every start. Each run must finish and
    give the single-worker output."""
    from dagster import asset, materialize

    expected = filter_source("es", DEMO / "es", tmp_path / "one")
    expected_docs = read_documents(tmp_path / "one" / "documents")

    @asset
    def pool_runs(context) -> None:
        with _busy_threads() as threads:
            assert all(t.is_alive() for t in threads)
            for i in range(POOL_RUNS):
                out = tmp_path / f"two-{i}"
                summary = filter_source("es", DEMO / "es", out, ExecutorSettings(workers=2))
                assert summary["steps"] == expected["steps"], i
                assert read_documents(out / "documents") == expected_docs, i
                shutil.rmtree(out)
                context.log.info(f"pool run {i + 1}/{POOL_RUNS} done")

    assert materialize([pool_runs]).success


def test_local_executor_is_sequential_in_process_for_one_worker(tmp_path):
    stage = Stage("s", [lambda data, rank, world_size: iter(())], 3, str(tmp_path / "logs"))
    assert isinstance(make_executor(ExecutorSettings(), stage), SequentialPipelineExecutor)
    run_stages(ExecutorSettings(), [stage], log=lambda _: None)
    assert sorted(p.name for p in (tmp_path / "logs" / "completions").iterdir()) == ["00000", "00001", "00002"]


def test_slurm_executors_are_built_as_a_dependent_chain_of_job_arrays(tmp_path):
    from datatrove.executor.slurm import SlurmPipelineExecutor

    settings = ExecutorSettings(
        kind="slurm",
        workers=32,
        work_dir=str(tmp_path),
        slurm_partition="cpu",
        slurm_time="02:00:00",
        slurm_cpus_per_task=2,
        slurm_qos="high",
        slurm_sbatch_args={"account": "kexaone"},
    )
    first = make_executor(
        settings, Stage("exact_signatures", [], 1000, str(tmp_path / "logs" / "a")), job_prefix="kexaone-dedup-en"
    )
    second = make_executor(
        settings, Stage("exact_find", [], 1, str(tmp_path / "logs" / "b")), depends=first, job_prefix="kexaone-dedup-en"
    )
    assert isinstance(first, SlurmPipelineExecutor) and second.depends is first and first.world_size == 1000
    args = first.get_sbatch_args(max_array=1000)
    assert (args["partition"], args["cpus-per-task"], args["time"], args["qos"], args["account"]) == (
        "cpu",
        2,
        "02:00:00",
        "high",
        "kexaone",
    )
    assert args["array"] == "0-999%32" and args["job-name"] == "kexaone-dedup-en-exact_signatures"
    script = first.get_launch_file_contents(args, "launch_pickled_pipeline /x/executor.pik")
    assert "#SBATCH --partition=cpu" in script and f"source {sys.prefix}/bin/activate" in script
    if shutil.which("sbatch") is None:
        with pytest.raises(CorpusExecutorError, match="sbatch is not on PATH"):
            run_stages(settings, [Stage("x", [], 1, str(tmp_path / "logs" / "c"))])


def test_executor_settings_are_validated_with_one_clear_line():
    with pytest.raises(CorpusExecutorError, match="corpus executor 'dask' is not one of local, slurm, ray"):
        ExecutorSettings(kind="dask").validate()
    with pytest.raises(CorpusExecutorError, match="'slurm' needs slurm_partition; .* needs work_dir"):
        ExecutorSettings(kind="slurm").validate()
    with pytest.raises(CorpusExecutorError, match="'ray' needs work_dir on storage the Ray workers share"):
        ExecutorSettings(kind="ray").validate()


def test_ray_executor_is_built_without_a_cluster(tmp_path):
    from datatrove.executor.ray import RayPipelineExecutor

    settings = ExecutorSettings(
        kind="ray", work_dir=str(tmp_path / "shared"), workers=4, ray_cpus_per_task=2, ray_mem_per_cpu_gb=3.0
    )
    assert settings.problems() == []
    executor = make_executor(settings, Stage("minhash_signatures", [], 16, str(tmp_path / "shared" / "logs")))
    assert isinstance(executor, RayPipelineExecutor)
    assert (executor.tasks, executor.workers, executor.cpus_per_task, executor.mem_per_cpu_gb) == (16, 4, 2, 3.0)


def test_cli_rejects_a_wrong_corpus_executor_in_one_line(kexaone_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.run(
        [KEXAONE, "validate"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "KEXAONE_CORPUS_EXECUTOR": "slurm"},
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0] == (
        "error: corpus executor 'slurm' needs slurm_partition; corpus executor 'slurm' needs "
        "work_dir on storage the compute nodes share"
    )


def test_filtered_output_is_what_datatrove_readers_read(tmp_path):
    from datatrove.pipeline.readers import JsonlReader

    filter_source("vi", DEMO / "vi", tmp_path)
    docs = list(JsonlReader(str(tmp_path / "documents"))())
    assert len(docs) == 28 and all(d.metadata["language"] == "vi" for d in docs)
    first_file = sorted((tmp_path / "documents").glob("*.jsonl.gz"))[0]
    raw = gzip.decompress(first_file.read_bytes()).splitlines()[0]
    assert set(json.loads(raw)) == {"text", "id", "metadata"}
