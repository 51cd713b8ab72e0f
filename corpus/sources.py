"""Raw corpus sources: a folder or prefix (local or s3://) of JSONL / Parquet / plain-text files.

* ``list_source_files`` + ``content_manifest``: what is there and a hash of it (the source's data
  version). Local files are hashed by content; S3 objects by their ETag, which the server computes
  from the content, so terabytes are never re-read just to notice that nothing changed.
* ``iter_documents``: documents out of one file, with errors that name the file and the problem.

Formats (by suffix): ``.jsonl``/``.json`` (+``.gz``) with a ``text`` field; ``.parquet`` with a
``text`` column; ``.txt`` and source-code suffixes (+``.gz``): one document per file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import fsspec

JSONL_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet",)
TEXT_SUFFIXES = (
    ".txt",
    ".md",
    ".py",
    ".js",
    ".ts",
    ".rs",
    ".go",
    ".c",
    ".h",
    ".cc",
    ".cpp",
    ".java",
    ".sh",
    ".sql",
    ".rb",
    ".kt",
    ".swift",
    ".toml",
    ".yaml",
    ".yml",
)
TEXT_FIELD = "text"


class CorpusSourceError(ValueError):
    """A raw corpus source or file is unusable; the message names the source/file and the problem."""


@dataclass(frozen=True)
class SourceFile:
    path: str  # filesystem path without scheme
    relpath: str
    size: int
    fingerprint: str  # content sha256 (local) or ETag (s3)
    format: str  # jsonl | parquet | text


@dataclass(frozen=True)
class Manifest:
    source: str
    uri: str
    files: tuple[SourceFile, ...]
    version: str = field(default="")

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "uri": self.uri,
            "version": self.version,
            "files": [
                {"relpath": f.relpath, "size": f.size, "fingerprint": f.fingerprint, "format": f.format}
                for f in self.files
            ],
        }


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    source_file: str
    meta: Mapping[str, Any]


def file_format(path: str) -> str | None:
    name = path.lower().removesuffix(".gz")
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if path.lower().endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    return None


def filesystem(uri: str, storage_options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
    return fs, path.rstrip("/")


def list_source_files(source: str, uri: str, storage_options: Mapping[str, Any] | None = None) -> list[SourceFile]:
    fs, root = filesystem(uri, storage_options)
    if not fs.exists(root):
        raise CorpusSourceError(f"raw_corpus_{source}: source folder {uri} does not exist")
    if not fs.isdir(root):
        raise CorpusSourceError(f"raw_corpus_{source}: {uri} is a file, expected a folder or prefix")
    files = []
    for path, info in sorted(fs.find(root, detail=True).items()):
        rel = path[len(root) :].lstrip("/")
        if any(part.startswith(".") for part in rel.split("/")):
            continue  # hidden files and folders (editor swap files, .DS_Store) are not corpus
        fmt = file_format(path)
        if fmt is None:
            raise CorpusSourceError(
                f"raw_corpus_{source}: {path}: unsupported file type (expected .jsonl/.json[.gz], "
                ".parquet, .txt or source code)"
            )
        etag = info.get("ETag") or info.get("etag")
        fingerprint = etag.strip('"') if etag else _sha256(fs, path)
        files.append(
            SourceFile(path=path, relpath=rel, size=int(info.get("size") or 0), fingerprint=fingerprint, format=fmt)
        )
    if not files:
        raise CorpusSourceError(f"raw_corpus_{source}: source folder {uri} contains no corpus files")
    return files


def content_manifest(source: str, uri: str, storage_options: Mapping[str, Any] | None = None) -> Manifest:
    files = tuple(list_source_files(source, uri, storage_options))
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.relpath}\0{f.size}\0{f.fingerprint}\n".encode())
    return Manifest(source=source, uri=uri, files=files, version=digest.hexdigest()[:16])


@dataclass(frozen=True)
class BadRecord:
    """One unreadable record (a JSONL line, a Parquet row, a text file): where it is and what is wrong."""

    id: str  # <relpath>:<line or row>, or the relpath of a one-document text file
    source_file: str
    problem: str  # one line naming the file, the position and the problem
    raw: str  # the record's bytes decoded with replacement characters, so it can be kept for review


def iter_documents(
    fs: fsspec.AbstractFileSystem, file: SourceFile, on_bad_record: Callable[[BadRecord], None] | None = None
) -> Iterator[Document]:
    """Yield the documents of one file. Raises CorpusSourceError naming the file on bad input.

    With ``on_bad_record``, a bad *record* (invalid JSON or UTF-8 on a JSONL line, no string ``text`` in
    a record or Parquet row, invalid UTF-8 in a one-document text file) is passed to it and skipped
    instead; a bad *file* (corrupt gzip, unreadable Parquet, a Parquet file without a ``text`` column)
    still raises, since nothing in it can be read.
    """
    try:
        if file.format == "parquet":
            yield from _iter_parquet(fs, file, on_bad_record)
            return
        raw = _read_bytes(fs, file)
        if file.format == "jsonl":
            yield from _iter_jsonl(raw, file, on_bad_record)
        else:
            try:
                text = _decode(raw, file, where="")
            except CorpusSourceError as exc:
                if on_bad_record is None:
                    raise
                on_bad_record(BadRecord(file.relpath, file.relpath, str(exc), raw.decode("utf-8", "replace")))
                return
            if text.strip():
                yield Document(id=file.relpath, text=text, source_file=file.relpath, meta={})
    except CorpusSourceError:
        raise
    except Exception as exc:  # pragma: no cover - a last resort that still names the file
        raise CorpusSourceError(f"{file.path}: unreadable ({type(exc).__name__}: {exc})") from exc


# -- helpers -----------------------------------------------------------------------------------


def _sha256(fs: fsspec.AbstractFileSystem, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_bytes(fs: fsspec.AbstractFileSystem, file: SourceFile) -> bytes:
    with fs.open(file.path, "rb") as f:
        raw = f.read()
    if file.path.lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise CorpusSourceError(f"{file.path}: corrupt gzip stream ({exc})") from exc
    return raw


def _decode(raw: bytes, file: SourceFile, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusSourceError(f"{file.path}{where}: invalid UTF-8 at byte {exc.start}") from exc


def _iter_jsonl(
    raw: bytes, file: SourceFile, on_bad_record: Callable[[BadRecord], None] | None = None
) -> Iterator[Document]:
    for lineno, line in enumerate(io.BytesIO(raw), start=1):
        if not line.strip():
            continue
        try:
            text_line = _decode(line, file, where=f" line {lineno}")
            try:
                record = json.loads(text_line)
            except json.JSONDecodeError as exc:
                raise CorpusSourceError(f"{file.path} line {lineno}: invalid JSON ({exc.msg})") from exc
            if not isinstance(record, dict) or not isinstance(record.get(TEXT_FIELD), str):
                raise CorpusSourceError(f"{file.path} line {lineno}: record has no string '{TEXT_FIELD}' field")
        except CorpusSourceError as exc:
            if on_bad_record is None:
                raise
            on_bad_record(
                BadRecord(
                    f"{file.relpath}:{lineno}", file.relpath, str(exc), line.decode("utf-8", "replace").rstrip("\n")
                )
            )
            continue
        doc_id = str(record.get("id") or f"{file.relpath}:{lineno}")
        meta = {k: v for k, v in record.items() if k not in ("id", TEXT_FIELD)}
        yield Document(id=doc_id, text=record[TEXT_FIELD], source_file=file.relpath, meta=meta)


def _iter_parquet(
    fs: fsspec.AbstractFileSystem, file: SourceFile, on_bad_record: Callable[[BadRecord], None] | None = None
) -> Iterator[Document]:
    import pyarrow.parquet as pq

    try:
        with fs.open(file.path, "rb") as f:
            pf = pq.ParquetFile(f)
            names = pf.schema_arrow.names
            if TEXT_FIELD not in names:
                raise CorpusSourceError(
                    f"{file.path}: Parquet file has no '{TEXT_FIELD}' column (columns: {', '.join(names)})"
                )
            row = 0
            for batch in pf.iter_batches(batch_size=1024):
                for record in batch.to_pylist():
                    row += 1
                    text = record.get(TEXT_FIELD)
                    if not isinstance(text, str):
                        problem = f"{file.path} row {row}: '{TEXT_FIELD}' is not a string"
                        if on_bad_record is None:
                            raise CorpusSourceError(problem)
                        on_bad_record(
                            BadRecord(
                                f"{file.relpath}:{row}",
                                file.relpath,
                                problem,
                                json.dumps(record, default=str, ensure_ascii=False),
                            )
                        )
                        continue
                    meta = {k: v for k, v in record.items() if k not in ("id", TEXT_FIELD)}
                    yield Document(
                        id=str(record.get("id") or f"{file.relpath}:{row}"),
                        text=text,
                        source_file=file.relpath,
                        meta=meta,
                    )
    except CorpusSourceError:
        raise
    except Exception as exc:  # pyarrow raises ArrowInvalid & co. for corrupt files
        raise CorpusSourceError(f"{file.path}: unreadable Parquet ({exc})") from exc
