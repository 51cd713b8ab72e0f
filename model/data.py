"""Training data in Megatron-Core's own formats: indexed datasets (.bin/.idx) and blended mixtures.

A tokenized mixture (one per curriculum stage) is a folder:

* ``<source>.bin`` / ``<source>.idx``: one Megatron ``IndexedDataset`` per source (a corpus partition or a
  synthetic set), written by Megatron's ``IndexedDatasetBuilder``; every document ends with EOD;
* ``mixture.json``: the manifest the trainer reads: sources with their blend weights and sizes, the
  sequence length and number of samples of the stage, the seed, and the tokenizer's EOD/pad ids and
  vocabulary size.

The trainer opens it with Megatron's ``BlendedMegatronDatasetBuilder`` (``GPTDataset`` per source, a
``BlendedDataset`` over them), exactly as Megatron's ``pretrain_gpt`` would; sample ``i`` is a pure function
of (files, weights, seed), which is what makes a resumed run read the same batches as an uninterrupted one.
The index caches Megatron builds are written to a folder the caller chooses (the run's work directory), so
a finished mixture artifact is never written to.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

MIXTURE_FILE = "mixture.json"


class DataError(ValueError):
    """A mixture cannot be built or opened as asked; one line naming the problem."""


@dataclass(frozen=True)
class SourceStats:
    name: str
    weight: float  # requested share of the stage's samples
    documents: int
    tokens: int  # including one EOD per document
    max_token_id: int


@dataclass(frozen=True)
class MixtureManifest:
    stage: str
    seq_length: int
    num_samples: int  # global_batch_size x optimizer steps of the stage
    seed: int
    eod_id: int
    pad_id: int
    vocab_size: int  # the tokenizer's; the model's embedding must cover it
    sources: tuple[SourceStats, ...]
    # "blend": one indexed dataset per source, blended by Megatron at training time (pre-training);
    # "packed": one indexed dataset ``samples`` whose documents are finished samples of seq_length + 1
    # tokens, whole documents packed and padded with pad_id (context extension)
    kind: str = "blend"
    # packed only: a second indexed dataset ``loss_weights`` (uint8, aligned with ``samples``) weighs each
    # token's prediction in the loss: 0 = padding, 1 = plain text, more = an answered retrieval value
    loss_weights: bool = False

    @property
    def tokens_per_sample(self) -> int:
        return self.seq_length

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @staticmethod
    def from_json(text: str) -> "MixtureManifest":
        raw = json.loads(text)
        raw["sources"] = tuple(SourceStats(**s) for s in raw["sources"])
        return MixtureManifest(**raw)


def token_dtype(vocab_size: int) -> type:
    """Megatron's choice: uint16 while ids fit, else int32 (half the disk of int32 for <=65K vocabularies)."""
    return np.uint16 if vocab_size < 65_500 else np.int32


def write_indexed_dataset(
    prefix: str | Path, token_docs: Iterable[Sequence[int]], *, vocab_size: int, eod_id: int
) -> tuple[int, int, int]:
    """Write ``<prefix>.bin/.idx`` with Megatron's builder, appending EOD to every document.

    Returns (documents, tokens, max token id). Empty documents are skipped (they would be a bare EOD).
    """
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    prefix = Path(prefix)
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=token_dtype(vocab_size))
    docs = tokens = 0
    max_id = -1
    for ids in token_docs:
        if len(ids) == 0:
            continue
        row = np.asarray(list(ids) + [eod_id], dtype=np.int64)
        top = int(row.max())
        if top >= vocab_size or int(row.min()) < 0:
            raise DataError(f"{prefix.name}: token id {top} outside the tokenizer vocabulary of {vocab_size}")
        builder.add_document(torch.from_numpy(row), [len(row)])
        docs, tokens, max_id = docs + 1, tokens + len(row), max(max_id, top)
    builder.finalize(f"{prefix}.idx")
    return docs, tokens, max_id


def build_mixture(
    folder: str | Path,
    *,
    stage: str,
    weights: Mapping[str, float],
    texts: Mapping[str, Callable[[], Iterable[str]]],
    encode_batch: Callable[[list[str]], list[list[int]]],
    eod_id: int,
    pad_id: int,
    vocab_size: int,
    seq_length: int,
    num_samples: int,
    seed: int,
    batch_size: int = 256,
) -> MixtureManifest:
    """Tokenize every weighted source into ``<folder>/<source>.bin/.idx`` and write the manifest.

    ``texts[source]()`` yields the source's documents (already without held-out ones); ``weights`` are the
    requested shares of the stage's samples. A weighted source without text is an error, before any work.
    """
    folder = Path(folder)
    unknown = sorted(set(weights) - set(texts))
    if unknown:
        raise DataError(f"mixture {stage}: no input for sources {unknown}")
    if abs(sum(weights.values()) - 1.0) > 1e-6 or any(w < 0 for w in weights.values()):
        raise DataError(f"mixture {stage}: weights must be >= 0 and sum to 1, got {dict(weights)}")
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for name in sorted(weights):
        if weights[name] == 0:
            continue

        def encoded(name: str = name) -> Iterator[list[int]]:
            chunk: list[str] = []
            for text in texts[name]():
                chunk.append(text)
                if len(chunk) == batch_size:
                    yield from encode_batch(chunk)
                    chunk = []
            if chunk:
                yield from encode_batch(chunk)

        docs, tokens, max_id = write_indexed_dataset(folder / name, encoded(), vocab_size=vocab_size, eod_id=eod_id)
        sources.append(SourceStats(name=name, weight=weights[name], documents=docs, tokens=tokens, max_token_id=max_id))
    manifest = MixtureManifest(
        stage=stage,
        seq_length=seq_length,
        num_samples=num_samples,
        seed=seed,
        eod_id=eod_id,
        pad_id=pad_id,
        vocab_size=vocab_size,
        sources=tuple(sources),
    )
    write_manifest(folder, manifest)
    return manifest


def write_manifest(folder: str | Path, manifest: MixtureManifest) -> None:
    if not manifest.sources:
        raise DataError(f"mixture {manifest.stage}: no sources")
    empty = [s.name for s in manifest.sources if s.weight > 0 and s.documents == 0]
    if empty:
        raise DataError(f"mixture {manifest.stage}: sources {empty} have a weight but no documents")
    (Path(folder) / MIXTURE_FILE).write_text(manifest.to_json())


def read_manifest(folder: str | Path) -> MixtureManifest:
    folder = Path(folder)
    path = folder / MIXTURE_FILE
    if not path.exists():
        raise DataError(f"{folder} is not a tokenized mixture (no {MIXTURE_FILE})")
    manifest = MixtureManifest.from_json(path.read_text())
    files = [PACKED_SAMPLES] if manifest.kind == "packed" else [s.name for s in manifest.sources]
    files += [LOSS_WEIGHTS] if manifest.loss_weights else []
    missing = [f for f in files if not (folder / f"{f}.bin").exists() or not (folder / f"{f}.idx").exists()]
    if missing:
        raise DataError(f"mixture {folder}: {missing} have no .bin/.idx files")
    return manifest


class _SpecialIds:
    """The two tokenizer facts Megatron's GPTDataset reads (EOD, pad), and an identity for its cache key."""

    def __init__(self, eod: int, pad: int, vocab_size: int):
        self.eod, self.pad, self.vocab_size = eod, pad, vocab_size
        self.unique_identifiers = {"class": "kexaone-special-ids", "eod": eod, "pad": pad}


PACKED_SAMPLES = "samples"
LOSS_WEIGHTS = "loss_weights"


def _write_rows(prefix: Path, rows: np.ndarray, dtype: type) -> None:
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype)
    for row in rows:
        builder.add_document(torch.from_numpy(np.asarray(row, dtype=np.int64)), [len(row)])
    builder.finalize(f"{prefix}.idx")


def write_packed_samples(
    folder: str | Path, samples: np.ndarray, manifest: MixtureManifest, loss_weights: np.ndarray | None = None
) -> None:
    """``samples`` [n, seq_length + 1] -> ``<folder>/samples.bin/.idx`` (Megatron's builder) + the manifest;
    ``loss_weights`` (same shape, integers 0-255; ``manifest.loss_weights`` must say so) -> ``loss_weights``.
    Weight ``i`` of a row applies to predicting token ``i`` (label ``i - 1``)."""
    folder = Path(folder)
    if samples.ndim != 2 or samples.shape[1] != manifest.seq_length + 1:
        raise DataError(f"packed samples must be [n, {manifest.seq_length + 1}], got {tuple(samples.shape)}")
    if (loss_weights is not None) != manifest.loss_weights:
        raise DataError(
            f"manifest.loss_weights={manifest.loss_weights} but loss weights were "
            f"{'given' if loss_weights is not None else 'not given'}"
        )
    if loss_weights is not None and (
        loss_weights.shape != samples.shape or loss_weights.min() < 0 or loss_weights.max() > 255
    ):
        raise DataError(f"loss weights must be integers 0-255 shaped like the samples {tuple(samples.shape)}")
    folder.mkdir(parents=True, exist_ok=True)
    _write_rows(folder / PACKED_SAMPLES, samples, token_dtype(manifest.vocab_size))
    if loss_weights is not None:
        _write_rows(folder / LOSS_WEIGHTS, loss_weights, np.uint8)
    (folder / MIXTURE_FILE).write_text(manifest.to_json())


class PackedSamples:
    """Finished samples read in order (sample ``i`` wraps around the stored ones); the loss skips padding."""

    def __init__(self, folder: Path, manifest: MixtureManifest):
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        self.manifest = manifest
        self.samples = IndexedDataset(str(folder / PACKED_SAMPLES))
        self.weights = IndexedDataset(str(folder / LOSS_WEIGHTS)) if manifest.loss_weights else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        row = np.asarray(self.samples[i % len(self.samples)], dtype=np.int64)
        tokens, labels = row[:-1], row[1:]
        mask = (labels != self.manifest.pad_id).astype(np.float32)
        if self.weights is not None:
            mask *= np.asarray(self.weights[i % len(self.weights)], dtype=np.float32)[1:]
        return {
            "tokens": tokens,
            "labels": labels,
            "loss_mask": mask,
            "position_ids": np.arange(len(tokens), dtype=np.int64),
        }


def open_mixture(folder: str | Path, cache_dir: str | Path, *, num_samples: int | None = None) -> Any:
    """Item ``i`` is a dict with ``tokens``, ``labels``, ``loss_mask`` and ``position_ids`` of length
    ``seq_length``. A blend is Megatron's blended GPT dataset over the sources (index caches go to
    ``cache_dir``); a packed mixture is read as stored."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    folder, manifest = Path(folder), read_manifest(folder)
    if manifest.kind == "packed":
        return PackedSamples(folder, manifest)
    used = [s for s in manifest.sources if s.weight > 0]
    config = GPTDatasetConfig(
        random_seed=manifest.seed,
        sequence_length=manifest.seq_length,
        blend=([str(folder / s.name) for s in used], [s.weight for s in used]),
        split="100,0,0",
        path_to_cache=str(cache_dir),
        tokenizer=_SpecialIds(manifest.eod_id, manifest.pad_id, manifest.vocab_size),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
        mid_level_dataset_surplus=0.005,
    )
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    wanted = manifest.num_samples if num_samples is None else num_samples
    train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [wanted, 0, 0], lambda: True, config).build()
    if train is None or len(train) < wanted:
        raise DataError(f"mixture {folder} yields {0 if train is None else len(train)} samples, {wanted} wanted")
    return train


def source_of_samples(dataset: Any, manifest: MixtureManifest, num_samples: int) -> dict[str, int]:
    """How many of the first ``num_samples`` samples each source contributes (the effective mixture)."""
    used = [s.name for s in manifest.sources if s.weight > 0]
    index = getattr(dataset, "dataset_index", None)
    if index is None:  # a single source: Megatron returns the GPTDataset itself
        return {used[0]: num_samples}
    counts = np.bincount(np.asarray(index[:num_samples]), minlength=len(used))
    return {name: int(c) for name, c in zip(used, counts)}


def mixture_report(manifest: MixtureManifest, samples_by_source: Mapping[str, int]) -> list[dict[str, Any]]:
    """Per source: requested vs effective share, tokens available and the epochs the stage reads of it."""
    total = max(1, sum(samples_by_source.values()))
    rows = []
    for s in manifest.sources:
        drawn = samples_by_source.get(s.name, 0)
        rows.append(
            {
                "source": s.name,
                "requested": round(s.weight, 4),
                "effective": round(drawn / total, 4),
                "documents": s.documents,
                "tokens": s.tokens,
                "samples": drawn,
                "epochs": round(drawn * manifest.seq_length / s.tokens, 3) if s.tokens else 0.0,
            }
        )
    return rows


__all__ = [
    "DataError",
    "LOSS_WEIGHTS",
    "MIXTURE_FILE",
    "MixtureManifest",
    "PackedSamples",
    "SourceStats",
    "build_mixture",
    "mixture_report",
    "open_mixture",
    "read_manifest",
    "source_of_samples",
    "token_dtype",
    "write_indexed_dataset",
    "write_manifest",
    "write_packed_samples",
]
