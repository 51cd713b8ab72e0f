"""Declarative automation: a new raw-corpus data version rebuilds exactly what is downstream of it.

Two sensors, one switch (``docs/operations.md``, "Automation"):

* ``raw_corpus_watch`` (``kexaone_dag/sensors.py``) lists every raw corpus folder / S3 prefix every 30 s and,
  when a source's content changed, records an observation of exactly that source with the data version the
  observable source itself reports (the same function computes both).
* ``kexaone_automation`` evaluates the assets' conditions every 30 s and requests runs.

Every materialized asset carries ``DOWNSTREAM_OF_DATA`` (``filtered_corpus``: ``OWN_SOURCE_DATA``). It is
requested when

* a dependency has a new *data version* (an unchanged version, e.g. an artifact reused from the store,
  requests nothing), unless the run that made it also targeted this asset; or
* it is missing (also on the condition's first evaluation, i.e. when automation is first turned on:
  catch-up; Dagster's ``eager`` resets that on the same tick); or
* on the first evaluation, it is stale (materialized from dependency data versions that have since
  changed, Dagster's own staleness);

and it stays pending until it is requested, once: not while it or a dependency is in progress, a dependency
is missing or requested on the same tick in another run (the partitioned corpus before an unpartitioned
reader: it waits for the new data instead of building on the old), or a dependency's blocking check (the NIAH
gates) failed. A failed run is not retried by itself (the next new data version requests it again).

``filtered_corpus``: Dagster cannot express "unpartitioned source X -> only partition X" (an unpartitioned
upstream maps onto every partition of a partitioned child; no partition mapping applies, see
``AssetGraphView.compute_mapped_subset``), and making the sources partitioned would split the one
``observe_raw_corpus`` job (every source a different partitions definition). So the graph keeps its edges and
the condition routes instead: partition ``p`` is requested only for a new data version of
``raw_corpus_<p>`` and counts only ``raw_corpus_<p>`` as a stale cause. Both routing pieces are small custom
conditions, so ``kexaone_automation`` evaluates in the code server (``use_user_code_server``).

What is on by default: ``automation_mode()`` (``KEXAONE_AUTOMATION``).
"""

from __future__ import annotations

import os
from typing import Mapping

from dagster import (
    AssetKey,
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    AutomationResult,
    DefaultSensorStatus,
)

from assets import keys
from config import CORPUS_DOMAINS, DEFAULT_PRESET, PRESET_ENV_VAR

AUTOMATION_ENV_VAR = "KEXAONE_AUTOMATION"
AUTOMATION_MODES = ("on", "observe", "off")
SENSOR_INTERVAL_S = 30


class AutomationConfigError(ValueError):
    """A bad ``KEXAONE_AUTOMATION``; the message is one line."""


# -- the conditions -------------------------------------------------------------------------------


class _CursorFree(AutomationCondition[AssetKey]):
    """The custom conditions below: no cursor of their own; equal when their type and parameters are."""

    def _parameters(self) -> object:
        return None

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._parameters() == self._parameters()

    __hash__ = AutomationCondition.__hash__

    @property
    def requires_cursor(self) -> bool:
        return False


class InPartition(_CursorFree):
    """True for one partition key of the target (an unpartitioned target never)."""

    def __init__(self, partition_key: str):
        self.partition_key = partition_key

    def _parameters(self) -> object:
        return self.partition_key

    @property
    def name(self) -> str:
        return f"partition_is({self.partition_key})"

    @property
    def description(self) -> str:
        return f"Partition {self.partition_key}"

    def evaluate(self, context) -> AutomationResult:
        candidate = context.candidate_subset
        if not candidate.is_partitioned:
            return AutomationResult(context, context.get_empty_subset())
        true = context.asset_graph_view.compute_intersection_with_partition_keys({self.partition_key}, candidate)
        return AutomationResult(context, true)


class Stale(_CursorFree):
    """True for the target partitions Dagster reports as stale (the UI's *Stale*: a new code version, or a
    dependency with a data version other than the one it was built from). ``partition_sources`` routes
    unpartitioned dependencies to one partition each: partition ``p`` counts only ``partition_sources[p]``
    among them as a cause."""

    def __init__(self, partition_sources: Mapping[str, AssetKey] | None = None):
        self.partition_sources = dict(partition_sources or {})

    def _parameters(self) -> object:
        return self.partition_sources

    @property
    def name(self) -> str:
        return "stale_own_source" if self.partition_sources else "stale"

    @property
    def description(self) -> str:
        own = " (of the raw sources, only the partition's own)" if self.partition_sources else ""
        return f"Stale: a new code version or dependency data version since it was built{own}"

    def _counts(self, cause, partition_key: str | None) -> bool:
        dep = cause.dependency_asset_key
        routed = set(self.partition_sources.values())
        return dep is None or dep not in routed or dep == self.partition_sources.get(partition_key or "")

    def evaluate(self, context) -> AutomationResult:
        from dagster._core.definitions.data_version import CachingStaleStatusResolver

        candidate = context.candidate_subset
        if candidate.is_empty:
            return AutomationResult(context, candidate)
        view = context.asset_graph_view
        resolver = CachingStaleStatusResolver(view.instance, context.asset_graph, loading_context=view)
        key = context.key
        if not candidate.is_partitioned:
            stale = any(self._counts(c, None) for c in resolver.get_stale_causes(key))
            return AutomationResult(context, candidate if stale else context.get_empty_subset())
        stale_keys = {
            pk
            for pk in candidate.expensively_compute_partition_keys()
            if any(self._counts(c, pk) for c in resolver.get_stale_causes(key, pk))
        }
        return AutomationResult(context, view.compute_intersection_with_partition_keys(stale_keys, candidate))


class AnyDepRequestedInAnotherRun(_CursorFree):
    """True where a dependency is requested on this tick in a run that cannot also include this asset (a
    partitioned parent of an unpartitioned child): wait for its new data instead of building on the old."""

    @property
    def name(self) -> str:
        return "any_dep_requested_in_another_run"

    @property
    def description(self) -> str:
        return "A dependency is requested on this tick in another run"

    def evaluate(self, context) -> AutomationResult:
        from dagster._core.definitions.assets.graph.asset_graph import executable_in_same_run

        true = context.get_empty_subset()
        for parent in context.asset_graph.get(context.key).parent_entity_keys:
            requested = context.request_subsets_by_key.get(parent)
            if requested is None or requested.is_empty:
                continue
            if executable_in_same_run(asset_graph=context.asset_graph, child_key=context.key, parent_key=parent):
                continue
            true = true.compute_union(requested.compute_mapped_subset(context.key, direction="down"))
        return AutomationResult(context, context.candidate_subset.compute_intersection(true))


def _new_data() -> AutomationCondition:
    """Over a dependency: a new data version not made by a run that also targeted this asset, or requested on
    this tick in a run that can include this asset."""
    return (AutomationCondition.data_version_changed() & ~AutomationCondition.executed_with_root_target()).with_label(
        "new_data_version_from_another_run"
    ) | AutomationCondition.will_be_requested()


def on_new_data(partition_sources: Mapping[str, AssetKey] | None = None) -> AutomationCondition:
    """The condition of every materialized asset (module docstring). ``partition_sources`` (partition key ->
    unpartitioned dependency) routes those dependencies to their own partition only."""
    updated = AutomationCondition.any_deps_match(_new_data())
    if partition_sources:
        updated = updated.ignore(AssetSelection.assets(*partition_sources.values()))
        for p, dep in sorted(partition_sources.items()):
            updated = updated | (
                InPartition(p) & AutomationCondition.asset_matches(dep, AutomationCondition.data_version_changed())
            )
    updated = updated.with_label("own_source_or_other_dep_has_new_data" if partition_sources else "dep_has_new_data")
    handled = (AutomationCondition.newly_requested() | AutomationCondition.newly_updated()).with_label("handled")
    catch_up = (AutomationCondition.initial_evaluation() & Stale(partition_sources)).with_label("stale_when_turned_on")
    trigger = (AutomationCondition.newly_missing() | updated | catch_up).since(handled)
    return (
        trigger.with_label("new_data_or_missing_since_handled")
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
        & ~AnyDepRequestedInAnotherRun()
        & AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("on_new_data_of_own_source" if partition_sources else "on_new_data")


RAW_SOURCE_OF_PARTITION = {s: AssetKey(keys.raw_corpus(s)) for s in CORPUS_DOMAINS}
DOWNSTREAM_OF_DATA = on_new_data()
OWN_SOURCE_DATA = on_new_data(RAW_SOURCE_OF_PARTITION)


# -- what is on by default ------------------------------------------------------------------------


def local_deployment(env: Mapping[str, str] | None = None) -> bool:
    """The local deployment: the tiny preset on local storage, no Kubernetes (``make ui``, ``make demo``)."""
    env = os.environ if env is None else env
    s3 = any((env.get(v) or "").startswith("s3://") for v in ("KEXAONE_ARTIFACT_ROOT", "KEXAONE_CORPUS_ROOT"))
    k8s = any((env.get(v) or "").startswith("k8s") for v in ("KEXAONE_EXECUTOR", "KEXAONE_TRAINER"))
    return (env.get(PRESET_ENV_VAR) or DEFAULT_PRESET) == "tiny" and not s3 and not k8s


def automation_mode(env: Mapping[str, str] | None = None) -> str:
    """``KEXAONE_AUTOMATION``: ``on`` (both sensors run), ``observe`` (only ``raw_corpus_watch``: new data
    versions are recorded and shown as stale, nothing is launched) or ``off`` (neither). Default: ``on`` in the
    local deployment, ``observe`` otherwise (training on the full preset is expensive: a person turns
    ``kexaone_automation`` on). Only the *default* status: a toggle in the UI or the CLI is kept by the
    instance and wins."""
    env = os.environ if env is None else env
    value = (env.get(AUTOMATION_ENV_VAR) or "").strip().lower()
    if not value:
        return "on" if local_deployment(env) else "observe"
    if value not in AUTOMATION_MODES:
        raise AutomationConfigError(f"{AUTOMATION_ENV_VAR}={value!r} is not one of {', '.join(AUTOMATION_MODES)}")
    return value


def default_status(running: bool) -> DefaultSensorStatus:
    return DefaultSensorStatus.RUNNING if running else DefaultSensorStatus.STOPPED


def default_note(mode: str, running: bool) -> str:
    return (
        f"Default here: {'on' if running else 'off'} (`{AUTOMATION_ENV_VAR}`={mode}; `on` by default in the local "
        "deployment: tiny preset, local storage, no k8s; `observe` elsewhere). A toggle here is kept by the instance."
    )


def build_automation_sensor(mode: str | None = None) -> AutomationConditionSensorDefinition:
    mode = mode or automation_mode()
    running = mode == "on"
    return AutomationConditionSensorDefinition(
        "kexaone_automation",
        target=AssetSelection.all(include_sources=True),
        default_status=default_status(running),
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        use_user_code_server=True,  # the partition routing of filtered_corpus is a custom condition
        description="The one switch for rebuilding on new data: every 30 s it requests the assets downstream of "
        "a new data version (raw_corpus_watch records those of the raw sources), each once, in dependency "
        "order, up to the checkpoints; a change in `raw_corpus_<p>` rebuilds only partition p of the corpus "
        "assets. Turned on, it also catches up: missing and stale assets are requested. It waits while a "
        "run is in flight and never passes a failed NIAH gate. " + default_note(mode, running),
    )
