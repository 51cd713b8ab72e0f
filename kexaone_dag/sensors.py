"""``raw_corpus_watch``: a changed corpus folder or S3 prefix becomes a new observation within 30 s.

Every 30 s the sensor lists each raw source (``CorpusSources``: a local folder or an S3 prefix). When the
listing (paths, sizes, modification times / ETags) differs from the last tick, or the instance's latest
observation is not the one the sensor last saw, it computes the source's observation with
``assets.corpus.observe_source`` (the function the observable source itself returns: the content-manifest
hash as data version) and records it as a runless ``AssetObservation`` for exactly that source when the data
version differs from the latest one recorded. A listing that did not change costs no re-hashing of local
files; S3 objects are never re-read (their ETags are the fingerprints). An unchanged folder records nothing,
so nothing downstream is requested. A broken source (missing folder, unsupported file) is named in the
tick's skip reason and the other sources are still watched.

Observation only: the runs are requested by ``kexaone_automation`` (``kexaone_dag/automation.py``).
"""

from __future__ import annotations

import hashlib
import json

from dagster import (
    AssetObservation,
    DagsterInstance,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from dagster._core.definitions.data_version import DATA_VERSION_TAG, extract_data_version_from_entry

from assets.corpus import observe_source, raw_corpus_key
from config import CORPUS_DOMAINS
from corpus.sources import CorpusSourceError, filesystem
from kexaone_dag.automation import SENSOR_INTERVAL_S, automation_mode, default_note, default_status
from resources.corpus_sources import CorpusSources


def listing_signature(corpus_sources: CorpusSources, source: str) -> str:
    """A hash of what a listing of the source says about each file (path, size, modification time or ETag):
    cheap, and different whenever a file is added, removed, rewritten or touched."""
    uri = corpus_sources.uri_for(source)
    fs, root = filesystem(uri, corpus_sources.storage_options(uri))
    digest = hashlib.sha256(uri.encode())
    for path, info in sorted(fs.find(root, detail=True).items()):
        stamp = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or ""
        digest.update(f"{path}\0{info.get('size')}\0{stamp}\n".encode())
    return digest.hexdigest()[:16]


def latest_observed_version(instance: DagsterInstance, source: str) -> str | None:
    record = instance.get_latest_data_version_record(raw_corpus_key(source), is_source=True)
    version = extract_data_version_from_entry(record.event_log_entry) if record else None
    return version.value if version else None


def watch_raw_corpus(
    instance: DagsterInstance, corpus_sources: CorpusSources, cursor: str | None, log=None
) -> SensorResult:
    """One tick of ``raw_corpus_watch`` (module docstring). The cursor maps each source to the listing
    signature and data version of the last tick."""
    seen = json.loads(cursor) if cursor else {}
    events, problems, state = [], [], {}
    for source in CORPUS_DOMAINS:
        recorded = latest_observed_version(instance, source)
        try:
            signature = listing_signature(corpus_sources, source)  # before the manifest: no change slips between
            if seen.get(source) == [signature, recorded]:
                state[source] = seen[source]
                continue
            observed = observe_source(corpus_sources, source)
        except CorpusSourceError as exc:
            problems.append(str(exc))
            continue
        version = observed.data_version.value
        state[source] = [signature, version]
        if version != recorded:
            events.append(
                AssetObservation(
                    asset_key=raw_corpus_key(source),
                    metadata=observed.metadata,
                    tags={DATA_VERSION_TAG: version},  # exactly what the observable source's observation carries
                )
            )
            if log is not None:
                log.info(f"raw_corpus_{source}: new data version {version} (was {recorded or 'never observed'})")
    if problems and log is not None:
        for problem in problems:
            log.warning(problem)
    return SensorResult(
        asset_events=events,
        cursor=json.dumps(state, sort_keys=True),
        skip_reason="; ".join(problems) if problems else None,
    )


def build_raw_corpus_watch(mode: str | None = None):
    mode = mode or automation_mode()
    running = mode in ("on", "observe")

    @sensor(
        name="raw_corpus_watch",
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=default_status(running),
        description="Every 30 s: lists each raw corpus folder / S3 prefix and, when one changed, records a new "
        "observation of exactly that source (the data version its observable source reports). Launches "
        "nothing itself: `kexaone_automation` rebuilds what is downstream. " + default_note(mode, running),
    )
    def raw_corpus_watch(context: SensorEvaluationContext, corpus_sources: CorpusSources) -> SensorResult:
        return watch_raw_corpus(context.instance, corpus_sources, context.cursor, log=context.log)

    return raw_corpus_watch
