"""``kexaone``: the command line of the code location.

    kexaone demo                       # observe sources, materialize every asset (tiny, embedded)
    kexaone validate [--preset NAME]   # check preset, resources and corpus folders; no compute
    kexaone preset [--preset NAME]     # print the resolved preset as JSON
    kexaone plan [--preset NAME] [--json]  # parameters, FLOPs, KV cache of the preset (no model built)
    kexaone plan --layout [--gpu h200] [--gpus N] [--all]  # per-GPU memory of each stage's layout; what fits
    kexaone sql "select * from artifacts"
    kexaone lineage ASSET [--partition P] [--version V] [--json]  # exact artifact versions back to the raw corpus
    kexaone serve ARTIFACT [--version V] [--port 8000]  # OpenAI-compatible chat endpoint over a checkpoint

Errors in configuration print one line (``error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from config import PRESET_ENV_VAR, PRESET_NAMES, PresetError, get_preset
from corpus.sources import CorpusSourceError
from kexaone_dag.executors import ExecutorConfigError
from resources.artifact_store import ArtifactStoreError
from resources.lineage import LineageError
from resources.trainer import TrainerConfigError
from resources.warehouse import WarehouseError


class ServeError(ValueError):
    """``kexaone serve`` cannot start as asked; one line."""


class LaunchError(ValueError):
    """The training stages cannot launch as configured (layout, backend); one line."""


CONFIG_ERRORS = (
    PresetError,
    ArtifactStoreError,
    CorpusSourceError,
    ExecutorConfigError,
    WarehouseError,
    LineageError,
    ServeError,
    LaunchError,
    TrainerConfigError,
)
REPO_ROOT = Path(__file__).resolve().parent.parent


def _prepare_dagster_home() -> Path:
    """The embedded instance: $DAGSTER_HOME or .kexaone/dagster_home with the local dagster.yaml."""
    from kexaone_dag.resources_by_env import kexaone_home

    home = Path(os.environ.get("DAGSTER_HOME") or kexaone_home() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(REPO_ROOT / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def preflight() -> dict:
    """Everything that can be checked without compute: preset, executor, stores, corpus folders."""
    from config import CORPUS_DOMAINS
    from kexaone_dag.definitions import build_definitions

    preset = get_preset()
    defs = build_definitions()
    resources = defs.resources
    resources["artifact_store"].check_config()
    corpus = resources["corpus_sources"]
    manifests = {s: corpus.manifest(s) for s in CORPUS_DOMAINS}
    return {"preset": preset.name, "defs": defs, "manifests": manifests}


def cmd_validate(args: argparse.Namespace) -> int:
    info = preflight()
    if problems := info["defs"].resources["trainer"].launch_problems(get_preset()):
        raise LaunchError(f"preset {info['preset']} cannot train as configured: {'; '.join(problems)}")
    files = sum(len(m.files) for m in info["manifests"].values())
    print(f"ok: preset {info['preset']}, {len(info['manifests'])} corpus sources ({files} files), definitions load")
    return 0


def cmd_preset(args: argparse.Namespace) -> int:
    print(json.dumps(get_preset().to_dict(), indent=2))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    # Arithmetic only: model.plan imports neither torch nor Megatron, so this answers in a second.
    from model.plan import format_plan, plan

    if args.layout:
        from model.layout import GPUS, format_layout_report, layout_report

        if args.gpu and args.gpu not in GPUS:
            raise LaunchError(f"--gpu {args.gpu!r} is not one of {', '.join(GPUS)}")
        report = layout_report(get_preset(), gpu_type=args.gpu, world=args.gpus)
        print(json.dumps(report, indent=2) if args.json else format_layout_report(report, all_rows=args.all))
        return 0
    figures = plan(get_preset())
    print(json.dumps(figures, indent=2) if args.json else format_plan(figures))
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from kexaone_dag.resources_by_env import build_resources

    rows = build_resources()["warehouse"].query(args.sql)
    print(json.dumps(rows, indent=2, default=str))
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    """The exact artifact versions an artifact was built from, back to the raw corpus data versions, from the
    provenance records. Without ``--version``: the asset's latest materialization in the Dagster instance."""
    from kexaone_dag.resources_by_env import build_resources
    from resources.lineage import format_lineage, lineage

    store = build_resources()["artifact_store"]
    name = f"{args.asset}__{args.partition}" if args.partition else args.asset
    version = args.version or _latest_artifact_version(args.asset, args.partition)
    nodes = lineage(store, name, version)
    if args.json:
        print(json.dumps([{**n.row(), "uri": n.uri, "inputs": [list(i) for i in n.inputs]} for n in nodes], indent=2))
    else:
        print(format_lineage(nodes))
    return 0


def _latest_artifact_version(asset: str, partition: str | None) -> str:
    from dagster import AssetKey, DagsterInstance

    _prepare_dagster_home()
    with DagsterInstance.get() as instance:
        record = instance.get_latest_data_version_record(AssetKey(asset), is_source=False, partition_key=partition)
    where = asset + (f" partition {partition!r}" if partition else "")
    if record is None or record.event_log_entry.asset_materialization is None:
        raise LineageError(f"{where} has no materialization in {os.environ['DAGSTER_HOME']}; pass --version")
    metadata = record.event_log_entry.asset_materialization.metadata
    if "artifact_version" not in metadata:
        raise LineageError(f"{where}: its latest materialization carries no artifact_version")
    return metadata["artifact_version"].value


def cmd_serve(args: argparse.Namespace) -> int:
    """An OpenAI-compatible endpoint (chat and token-id completions, ``model.serve``) over a checkpoint artifact
    of the store, with the tokenizer it was trained with (found through its lineage). Local generation: the
    tiny preset answers on CPU. Without ``--version``: the asset's latest materialization in the instance."""
    from assets import keys
    from kexaone_dag.jobs import CHECKPOINTS
    from kexaone_dag.resources_by_env import build_resources
    from model.checkpoint import CheckpointError
    from model.serve import CheckpointServer, serve
    from resources.lineage import lineage

    if args.artifact not in CHECKPOINTS:
        raise ServeError(f"{args.artifact!r} is not a checkpoint asset (one of: {', '.join(CHECKPOINTS)})")
    preset = get_preset()
    store = build_resources()["artifact_store"]
    version = args.version or _latest_artifact_version(args.artifact, None)
    tokenizers = [n for n in lineage(store, args.artifact, version) if n.artifact == keys.SUPERBPE_TOKENIZER]
    if not tokenizers:
        raise ServeError(f"{args.artifact}@{version}: its lineage names no {keys.SUPERBPE_TOKENIZER}")
    with (
        store.local_copy(args.artifact, version) as checkpoint_dir,
        store.local_copy(keys.SUPERBPE_TOKENIZER, tokenizers[0].version) as tokenizer_dir,
    ):
        try:
            state = CheckpointServer(
                preset.name,
                checkpoint_dir / "checkpoint",
                None,
                args.served_model_name or args.artifact,
                tokenizer_dir=tokenizer_dir,
                num_speculative_tokens=preset.release.num_speculative_tokens,
            )
        except (CheckpointError, ValueError) as exc:
            raise ServeError(f"{args.artifact}@{version}: {str(exc).splitlines()[0]}") from None
        return serve(state, args.host, args.port)


def cmd_demo(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance
    from dagster._core.utils import make_new_run_id
    from dagster._utils.interrupts import setup_interrupt_handlers

    from kexaone_dag.run_health import PoolWatcher, reap_dead_runs, run_tags

    setup_interrupt_handlers()  # SIGTERM stops the run like Ctrl-C: steps interrupted, trainers terminated
    os.environ.setdefault(PRESET_ENV_VAR, "tiny")
    dagster_home = _prepare_dagster_home()
    started = time.monotonic()
    info = preflight()
    defs = info["defs"]
    instance = DagsterInstance.get()
    print(f"kexaone demo: preset {info['preset']}, DAGSTER_HOME={dagster_home}", flush=True)
    for line in reap_dead_runs(instance):
        print(f"recovered: {line}", flush=True)
    for job_name in ("observe_raw_corpus", "demo"):
        run_id = make_new_run_id()
        watcher = PoolWatcher(instance, run_id, emit=lambda line: print(line, flush=True))
        watcher.start()
        try:
            result = defs.resolve_job_def(job_name).execute_in_process(
                instance=instance,
                raise_on_error=False,
                run_id=run_id,
                tags=run_tags(),
                run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            )
        finally:
            watcher.stop()
        if not result.success:
            for line in failure_lines(result):
                print(line)
            print(f"error: job {job_name} failed (run {result.run_id}); see `make ui` for the logs")
            return 1
    print_summary(defs, instance, time.monotonic() - started)
    return 0


def failure_lines(result) -> list[str]:
    """Why a run failed, where the user looks: each failed step's own error (its first lines, not Dagster's
    stack) and each failed asset check's description (e.g. the NIAH cells below the gate, with scores)."""
    lines = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            while error is not None and error.cause is not None and not error.message.strip():
                error = error.cause
            message = error.message.strip() if error else "(no message)"
            if event.step_failure_data.user_failure_data and event.step_failure_data.user_failure_data.description:
                message = event.step_failure_data.user_failure_data.description
            lines.append(f"failed: {event.step_key}: " + " ".join(message.splitlines()[:6]))
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            lines.append(
                f"check failed: {evaluation.asset_key.to_user_string()}.{evaluation.check_name}: "
                f"{evaluation.description or '(no description)'}"
            )
    return lines


def print_summary(defs, instance, seconds: float) -> None:
    from dagster._core.definitions.data_version import extract_data_version_from_entry

    from kexaone_dag.resources_by_env import kexaone_home

    graph = defs.resolve_asset_graph()
    store = defs.resources["artifact_store"]
    rows = []

    def latest(key, partition=None):
        record = instance.get_latest_data_version_record(key, partition_key=partition)
        if record is None:
            return "-", {}
        entry = record.event_log_entry
        event = entry.asset_materialization or entry.asset_observation
        data_version = extract_data_version_from_entry(entry)
        return (data_version.value if data_version else "-"), (event.metadata if event else {})

    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def.get_partition_keys() if node.partitions_def else [None]
        for partition in partitions:
            version, metadata = latest(key, partition)
            if "artifact_version" in metadata:  # a partition's own artifact version, not the run's
                version = metadata["artifact_version"].value
            if node.is_observable:
                status, where = "observed", metadata.get("uri")
            else:
                status = "reused" if metadata.get("reused") and metadata["reused"].value else "built"
                where = metadata.get("dagster/uri")
            name = key.to_user_string() + (f"[{partition}]" if partition else "")
            rows.append((name, status, version, where.value if where else ""))
    width = max(len(r[0]) for r in rows)
    print(
        f"\nkexaone demo finished in {seconds:.0f}s: {len(graph.get_all_asset_keys())} assets, "
        f"{len(rows)} artifacts and sources"
    )
    print(f"{'asset'.ljust(width)}  {'status':<8}  {'version':<16}  location")
    for name, status, version, where in rows:
        print(f"{name.ljust(width)}  {status:<8}  {version:<16}  {where}")
    print(f"\nartifacts: {store.root}")
    print(f'warehouse: {defs.resources["warehouse"].path}  (query: .venv/bin/kexaone sql "select * from artifacts")')
    print(f"state:     {kexaone_home()}")
    print("open the UI: make ui   (or: DAGSTER_HOME=.kexaone/dagster_home .venv/bin/dagster dev -w workspace.yaml)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kexaone", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--preset", choices=None, help=f"preset name ({', '.join(PRESET_NAMES)}); default ${PRESET_ENV_VAR} or tiny"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="materialize the whole DAG on embedded storage").set_defaults(fn=cmd_demo)
    sub.add_parser("validate", help="check configuration without compute").set_defaults(fn=cmd_validate)
    sub.add_parser("preset", help="print the resolved preset").set_defaults(fn=cmd_preset)
    plan = sub.add_parser("plan", help="parameters, FLOPs and KV cache of the preset (no model is built)")
    plan.add_argument("--preset", dest="plan_preset", help="preset name (same as the global --preset)")
    plan.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    plan.add_argument(
        "--layout", action="store_true", help="per-GPU memory of each training stage's parallel layout, and which fit"
    )
    plan.add_argument("--gpu", help="--layout: GPU type (default compute.gpu_type)")
    plan.add_argument("--gpus", type=int, help="--layout: GPUs of a stage (default: nodes x GPUs per node)")
    plan.add_argument("--all", action="store_true", help="--layout: every candidate layout, with why it does not fit")
    plan.set_defaults(fn=cmd_plan)
    sql = sub.add_parser("sql", help="query the DuckDB warehouse")
    sql.add_argument("sql")
    sql.set_defaults(fn=cmd_sql)
    lin = sub.add_parser("lineage", help="the exact artifact versions behind an artifact, back to the raw corpus")
    lin.add_argument("asset", help="asset name, e.g. context_ext_stage2")
    lin.add_argument("--partition", help="partition of a partitioned asset (filtered_corpus, deduplicated_corpus)")
    lin.add_argument("--version", help="artifact version (default: the latest materialization in the instance)")
    lin.add_argument("--json", action="store_true", help="one JSON list instead of lines")
    lin.set_defaults(fn=cmd_lineage)
    srv = sub.add_parser("serve", help="OpenAI-compatible chat endpoint over a checkpoint artifact (local generation)")
    srv.add_argument("artifact", help="checkpoint asset, e.g. preference_checkpoint")
    srv.add_argument("--version", help="artifact version (default: the latest materialization in the instance)")
    srv.add_argument("--served-model-name", help="the model name clients send (default: the asset name)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000, help="0: any free port (printed on the first line)")
    srv.set_defaults(fn=cmd_serve)
    args = parser.parse_args(argv)
    from kexaone_dag.run_health import interrupts_as_interactive

    interrupts_as_interactive()
    preset = getattr(args, "plan_preset", None) or args.preset
    if preset:
        os.environ[PRESET_ENV_VAR] = preset
    try:
        return args.fn(args)
    except CONFIG_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
