"""datatrove pipeline steps of the corpus pipeline (no Dagster): reader, filters, meters, writers.

* ``SourceReader`` reads a raw corpus source through ``corpus.sources`` (JSONL[.gz], Parquet, text/code
  files; local or any fsspec URL), so a bad file fails with the same one-line error as everywhere else,
  and a bad record is written to the exclusion output with its problem instead of stopping the run.
* ``RankFileReader`` reads back exactly the file a task of the same rank wrote (``00003.jsonl.gz``), which
  keeps document indices aligned between dedup stages even when some task wrote nothing.
* ``ExclusionWriter`` is datatrove's JsonlWriter for rejected documents; it records which step rejected a
  document (``excluded_by``) and why (``filter_reason``), so nothing is dropped without a trace.
* ``Meter`` counts documents and UTF-8 bytes flowing past a point of the pipeline (docs/bytes in and out
  of every filter); ``PurityMeter`` measures language purity of what is kept, inside the tasks.
* ``OfflineURLFilter``, ``CodeQualityFilter``: datatrove ``BaseFilter``s (see their docstrings).
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any, Mapping, Sequence

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.filters.url_filter import URLFilter, get_list
from datatrove.pipeline.readers.jsonl import JsonlReader
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.pipeline.writers.jsonl import JsonlWriter
from datatrove.utils._import_utils import ASSETS_PATH

from corpus.lid import Py3LangidLID
from corpus.sources import BadRecord, SourceFile, filesystem, iter_documents


class Secret:
    """Holds storage options (S3 keys) so that datatrove's executor.json and logs print ``<redacted>``."""

    def __init__(self, value: Mapping[str, Any] | None):
        self.value = dict(value or {})

    def __repr__(self) -> str:
        return "<redacted>" if self.value else "{}"

    __str__ = __repr__


def contiguous_shard(items: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    """Rank r of n gets the r-th contiguous block, so rank order is input order (dedup keeps the first)."""
    n = len(items)
    return list(items[rank * n // world_size : (rank + 1) * n // world_size])


class SourceReader(PipelineStep):
    """Documents of a raw corpus source (its manifest's files), sharded into contiguous blocks by rank.

    Metadata of each document: the record's own fields (``url``, ``planted``, ...), ``source_file`` and,
    when given, ``labels[doc_id]`` (the demo's PLANTED_CODE.json sidecar for files without metadata).
    Empty documents and unreadable records go to ``exclusion_writer`` with the reason.
    """

    type = "📖 - READER"
    name = "📂 raw corpus source"

    def __init__(
        self,
        source: str,
        uri: str,
        files: Sequence[SourceFile],
        storage_options: Secret | None = None,
        exclusion_writer: DiskWriter | None = None,
        labels: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        super().__init__()
        self.source = source
        self.uri = uri
        self.files = list(files)
        self.storage_options = storage_options or Secret(None)
        self.exclusion_writer = exclusion_writer
        self.labels = dict(labels or {})

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        fs, _ = filesystem(self.uri, self.storage_options.value)
        shard = contiguous_shard(self.files, rank, world_size)
        with self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext() as writer:

            def reject(doc: Document, reason: str) -> None:
                self.stat_update("dropped", f"dropped_{reason}")
                if writer:
                    doc.metadata.update({"filter_reason": reason, "excluded_by": "read"})
                    writer.write(doc, rank)

            def on_bad_record(bad: BadRecord) -> None:
                reject(
                    Document(
                        text=bad.raw, id=bad.id, metadata={"source_file": bad.source_file, "problem": bad.problem}
                    ),
                    "unreadable",
                )

            for file in shard:
                self.stat_update("input_files")
                for doc in iter_documents(fs, file, on_bad_record=on_bad_record):
                    metadata = {**doc.meta, **self.labels.get(doc.id, {}), "source_file": doc.source_file}
                    out = Document(text=doc.text, id=doc.id, metadata=metadata)
                    if not doc.text.strip():
                        reject(out, "empty_text")
                        continue
                    self.stat_update("documents")
                    if metadata.get("planted"):
                        self.stat_update("planted_labels")
                    yield out


class RankFileReader(JsonlReader):
    """datatrove's JsonlReader restricted to ``{rank:05d}.jsonl.gz``: the output of the same rank upstream."""

    name = "🐿 Jsonl (same rank)"

    def __init__(self, data_folder, **kwargs):
        super().__init__(data_folder, add_file_path=False, **kwargs)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        name = f"{rank:05d}.jsonl.gz"
        shard = [name] if self.data_folder.exists(name) else []
        for doc in self.read_files_shard(shard):
            self.update_doc_stats(doc)
            yield doc


class ExclusionWriter(JsonlWriter):
    """JsonlWriter for rejected documents: stamps ``excluded_by`` and a default ``filter_reason``."""

    name = "🗑 Exclusions"

    def __init__(self, output_folder, step: str, default_reason: str | None = None):
        super().__init__(output_folder)
        self.step = step
        self.default_reason = default_reason or step

    def write(self, document: Document, rank: int = 0, **kwargs):
        document.metadata.setdefault("filter_reason", self.default_reason)
        document.metadata.setdefault("excluded_by", self.step)
        super().write(document, rank, **kwargs)


class Meter(PipelineStep):
    """Counts the documents and UTF-8 bytes that flow past this point (stats ``documents`` and ``bytes``,
    and ``planted`` for documents carrying a demo label)."""

    type = "📏 - METER"

    def __init__(self, point: str):
        self.point = point
        self.name = f"after {point}"  # set before PipelineStep.__init__, which names the stats after it
        super().__init__()

    @classmethod
    def stats_name(cls, point: str) -> str:
        """The name under which datatrove saves this meter's stats."""
        return f"{cls.type}: after {point}"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            self.stat_update("documents")
            self.stat_update("bytes", value=len(doc.text.encode("utf-8")), unit="doc")
            if doc.metadata.get("planted"):
                self.stat_update("planted")
            yield doc


class PurityMeter(PipelineStep):
    """Language purity of the documents flowing past: paragraphs of >= ``min_chars`` characters are
    identified one by one; stats ``purity_chars`` (all measured characters) and ``purity_matched_chars``
    (those identified as ``language``)."""

    type = "📏 - METER"
    name = "language purity"

    def __init__(self, language: str, min_chars: int):
        super().__init__()
        self.language = language
        self.min_chars = min_chars
        self.lid = Py3LangidLID()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from corpus.lid import language_purity

        for doc in data:
            result = language_purity([doc.text], self.language, self.lid, self.min_chars)
            self.stat_update("purity_chars", value=result["characters"], unit="doc")
            matched = round(result["purity"] * result["characters"]) if result["purity"] is not None else 0
            self.stat_update("purity_matched_chars", value=matched, unit="doc")
            yield doc


class OfflineURLFilter(URLFilter):
    """datatrove's URLFilter without network access, for documents that have a ``url``.

    * the public-suffix list is tldextract's bundled snapshot (``suffix_list_urls=()``), never fetched;
    * the block lists are the ones datatrove ships in its wheel; the 4.6M-domain list can be switched off
      (``domain_blocklist=False``) where its ~0.7 GB and ~3 s load per task is not worth it (the word and
      sub-word lists still apply);
    * documents without a ``url`` (code files, plain-text notes) pass untouched (stat ``no_url``).
    """

    name = "😈 Url-filter (offline)"

    def __init__(self, domain_blocklist: bool = True, exclusion_writer: DiskWriter | None = None, **kwargs):
        super().__init__(exclusion_writer=exclusion_writer, **kwargs)
        from tldextract import TLDExtract

        self.domain_blocklist = domain_blocklist
        self.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)

    def download_data(self):
        if self._downloaded or not self.use_integrated_lists:
            return
        if self.domain_blocklist:
            super().download_data()
            return
        self.banned_words = get_list(ASSETS_PATH, "banned_words.txt", self.banned_words)
        self.banned_subwords = get_list(ASSETS_PATH, "banned_subwords.txt", self.banned_subwords)
        self.soft_banned_words = get_list(ASSETS_PATH, "soft_banned_words.txt", self.soft_banned_words)
        for word in self.banned_subwords:
            self.banned_subwords_automaton.add_word(word, len(self.banned_subwords_automaton))
        self.banned_subwords_automaton.make_automaton()
        self._downloaded = True

    def filter(self, document: Document) -> bool | tuple[bool, str]:
        if not document.metadata.get("url"):
            self.stat_update("no_url")
            return True
        result = super().filter(document)
        return result if result is True else (False, f"url_{result[1]}")


class CodeQualityFilter(BaseFilter):
    """Source-file heuristics in the style of The Stack / StarCoder: drops files that are huge, tiny,
    have minified/data-like lines (a very long line, a long mean line), are mostly non-alphanumeric, or
    announce that they were generated. Reasons: ``code_too_large``, ``code_too_few_lines``,
    ``code_long_line``, ``code_long_mean_line``, ``code_low_alphanum``, ``code_autogenerated``."""

    name = "🧑‍💻 Code quality"

    def __init__(
        self,
        max_line_length: int,
        max_mean_line_length: float,
        min_alphanum_fraction: float,
        min_lines: int,
        max_bytes: int,
        autogenerated_markers: Sequence[str],
        autogenerated_header_lines: int,
        exclusion_writer: DiskWriter | None = None,
    ):
        super().__init__(exclusion_writer)
        self.max_line_length = max_line_length
        self.max_mean_line_length = max_mean_line_length
        self.min_alphanum_fraction = min_alphanum_fraction
        self.min_lines = min_lines
        self.max_bytes = max_bytes
        self.markers = tuple(m.lower() for m in autogenerated_markers)
        self.header_lines = autogenerated_header_lines

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text
        if len(text.encode("utf-8")) > self.max_bytes:
            return False, "code_too_large"
        lines = text.splitlines()
        if sum(1 for line in lines if line.strip()) < self.min_lines:
            return False, "code_too_few_lines"
        if max(len(line) for line in lines) > self.max_line_length:
            return False, "code_long_line"
        if sum(len(line) for line in lines) / len(lines) > self.max_mean_line_length:
            return False, "code_long_mean_line"
        if sum(ch.isalnum() for ch in text) / len(text) < self.min_alphanum_fraction:
            return False, "code_low_alphanum"
        header = "\n".join(lines[: self.header_lines]).lower()
        if any(marker in header for marker in self.markers):
            return False, "code_autogenerated"
        return True


class MinhashCandidateCheck(PipelineStep):
    """Between datatrove's ``MinhashDedupBuckets`` and ``MinhashDedupCluster``: keeps a candidate pair only
    when the share of equal minhashes over the *whole* signature (every bucket) reaches ``threshold``.

    LSH banding alone merges any pair that collides in one bucket. A loose banding (to find copies with
    10 % of their words edited, Jaccard ~0.5-0.6) then also merges distinct pages that share a header and
    footer (Jaccard ~0.1-0.2). The full signature estimates Jaccard with a standard error of
    sqrt(J(1-J)/num_hashes) (~0.045 at 0.4 with 120 hashes), which separates the two. Reads every signature
    of the partition into memory (one task), so it suits partitions of up to tens of millions of documents.
    Writes the kept pairs in the same ``.dups`` files (same names) for the cluster step.
    """

    type = "🫂 - DEDUP"
    name = "🎯 MinHash candidate check"

    def __init__(self, signatures_folder, candidates_folder, output_folder, config, threshold: float):
        from datatrove.io import get_datafolder

        super().__init__()
        self.signatures_folder = get_datafolder(signatures_folder)
        self.candidates_folder = get_datafolder(candidates_folder)
        self.output_folder = get_datafolder(output_folder)
        self.config = config
        self.threshold = threshold

    def _signatures(self) -> dict[int, Any]:
        """rank -> array [doc, bucket, hash] of every document's full signature."""
        import numpy as np

        c = self.config
        record = np.dtype([("h", c.hash_config.np_descr, (c.hashes_per_bucket,)), ("doc", "<u4")])
        per_rank: dict[int, list[tuple[int, Any]]] = {}
        for bucket in range(c.num_buckets):
            for name in self.signatures_folder.list_files(subdirectory=f"bucket_{bucket:03d}"):
                rank = int(name.rsplit("/", 1)[-1].removesuffix(".minhash.sig"))
                with self.signatures_folder.open(name, "rb") as f:
                    per_rank.setdefault(rank, []).append((bucket, np.frombuffer(f.read(), dtype=record)))
        out = {}
        for rank, parts in per_rank.items():
            n_docs = 1 + max((int(p["doc"].max()) for _, p in parts if len(p)), default=-1)
            sig = np.zeros((n_docs, c.num_buckets, c.hashes_per_bucket), dtype=c.hash_config.np_dtype)
            for bucket, p in parts:
                sig[p["doc"], bucket] = p["h"]
            out[rank] = sig
        return out

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> None:
        """Produces no documents (like datatrove's MinhashDedupCluster): it rewrites the .dups files."""
        import numpy as np
        from datatrove.pipeline.dedup.minhash import SENTINEL

        assert world_size == 1, "the candidate check runs as one task"
        with self.track_time():
            signatures = self._signatures()
            for name in self.candidates_folder.list_files(glob_pattern="*.dups"):
                with self.candidates_folder.open(name, "rb") as f:
                    pairs = np.frombuffer(f.read(), dtype="<u4").reshape(-1, 4)
                keep = np.zeros(len(pairs), dtype=bool)
                for i, (f1, d1, f2, d2) in enumerate(pairs.tolist()):
                    if f1 == SENTINEL:  # a match against a dedup index: nothing to compare it with
                        keep[i] = True
                        continue
                    similarity = float(np.mean(signatures[f1][d1] == signatures[f2][d2]))
                    keep[i] = similarity >= self.threshold
                self.stat_update("candidates", value=len(pairs))
                self.stat_update("kept", value=int(keep.sum()))
                self.stat_update("rejected", value=int((~keep).sum()))
                with self.output_folder.open(name, "wb") as out:
                    out.write(pairs[keep].astype("<u4").tobytes())


def read_labels(text: str, source: str) -> dict[str, dict[str, Any]]:
    """A planted-labels sidecar (the demo's ``PLANTED_CODE.json``): ``{"code/x.py": {"planted": ...,
    "duplicate_of": "code/y.py"}}``, keys and targets prefixed with the source folder. Returned keyed by
    document id (the path inside the source), with ``duplicate_of`` likewise."""
    prefix = re.compile(rf"^{re.escape(source)}/")

    def strip(value: Any) -> Any:
        return prefix.sub("", value) if isinstance(value, str) else value

    return {strip(key): {k: strip(v) for k, v in value.items()} for key, value in json.loads(text).items()}
