"""Raw corpus sources: manifests (data versions), readers per format, and bad input."""

from __future__ import annotations

import gzip
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from config import CORPUS_DOMAINS
from corpus.sources import CorpusSourceError, content_manifest, filesystem, iter_documents
from corpus.stats import source_stats
from resources.corpus_sources import DEMO_CORPUS_ROOT, CorpusSources


def read_all(uri, options=None):
    manifest = content_manifest("xx", uri, options)
    fs, _ = filesystem(uri, options)
    return [d for f in manifest.files for d in iter_documents(fs, f)]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def test_demo_corpus_has_every_source_in_mixed_formats():
    sources = CorpusSources()
    formats = set()
    for source in CORPUS_DOMAINS:
        manifest = sources.manifest(source)
        stats = source_stats(manifest)
        assert stats["documents"] >= 10, source
        formats |= set(stats["formats"])
    assert formats == {"jsonl", "parquet", "text"}
    assert sources.uri_for("ko") == f"{DEMO_CORPUS_ROOT}/ko"


def test_every_format_reads(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "d1", "text": "Xin chào thế giới", "url": "u"}])
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": "日本語のテキスト"}, ensure_ascii=False) + "\n")
    pq.write_table(pa.table({"id": ["p1"], "text": ["Grüße aus Köln"]}), tmp_path / "c.parquet")
    (tmp_path / "d.py").write_text("def f():\n\treturn 1\n")
    docs = {d.id: d for d in read_all(str(tmp_path))}
    assert docs["d1"].text == "Xin chào thế giới" and docs["d1"].meta == {"url": "u"}
    assert docs["b.jsonl.gz:1"].text == "日本語のテキスト"
    assert docs["p1"].text == "Grüße aus Köln"
    assert docs["d.py"].text == "def f():\n\treturn 1\n"


def test_manifest_version_follows_content_not_timestamps(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "one"}])
    v1 = content_manifest("en", str(tmp_path)).version
    os.utime(tmp_path / "a.jsonl", (1, 1))  # touch: same bytes
    assert content_manifest("en", str(tmp_path)).version == v1
    write_jsonl(tmp_path / "a.jsonl", [{"text": "two"}])
    v2 = content_manifest("en", str(tmp_path)).version
    write_jsonl(tmp_path / "b.jsonl", [{"text": "one"}])
    v3 = content_manifest("en", str(tmp_path)).version
    assert len({v1, v2, v3}) == 3
    (tmp_path / ".swp").write_text("editor junk")  # hidden files are not corpus
    assert content_manifest("en", str(tmp_path)).version == v3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: (p / "x.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00garbage"), "x.jsonl.gz: corrupt gzip stream"),
        (
            lambda p: (p / "x.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "\xff\xfe"}\n'),
            "x.jsonl line 2: invalid UTF-8 at byte",
        ),
        (lambda p: (p / "x.txt").write_bytes(b"caf\xe9"), "x.txt: invalid UTF-8 at byte 3"),
        (lambda p: (p / "x.jsonl").write_text('{"text": "ok"}\n{not json\n'), "x.jsonl line 2: invalid JSON"),
        (
            lambda p: (p / "x.jsonl").write_text('{"body": "no text"}\n'),
            "x.jsonl line 1: record has no string 'text' field",
        ),
        (
            lambda p: pq.write_table(pa.table({"content": ["a"]}), p / "x.parquet"),
            "x.parquet: Parquet file has no 'text' column (columns: content)",
        ),
        (lambda p: (p / "x.parquet").write_bytes(b"PAR1 not really"), "x.parquet: unreadable Parquet"),
        (lambda p: (p / "x.docx").write_bytes(b"PK"), "x.docx: unsupported file type"),
    ],
)
def test_bad_files_fail_naming_file_and_problem(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(CorpusSourceError) as err:
        read_all(str(tmp_path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(CorpusSourceError, match=r"raw_corpus_de: source folder .*/nope does not exist"):
        content_manifest("de", str(tmp_path / "nope"))
    with pytest.raises(CorpusSourceError, match="contains no corpus files"):
        content_manifest("de", str(tmp_path))
    (tmp_path / "empty.jsonl").write_text("")  # an empty file is a file with zero documents
    assert read_all(str(tmp_path)) == []


def test_sources_on_s3_through_the_real_server(s3_bucket):
    fs, bucket = s3_bucket["fs"], s3_bucket["bucket"]
    with fs.open(f"{bucket}/corpus/ko/part-0.jsonl", "wb") as f:
        f.write(json.dumps({"id": "k1", "text": "안녕하세요"}, ensure_ascii=False).encode() + b"\n")
    sources = CorpusSources(
        root=f"s3://{bucket}/corpus",
        endpoint_url=s3_bucket["endpoint"],
        access_key_id="testing-key",
        secret_access_key="testing-secret",
    )
    m1 = sources.manifest("ko")
    assert [f.relpath for f in m1.files] == ["part-0.jsonl"] and m1.files[0].fingerprint  # the ETag
    docs = read_all(m1.uri, sources.storage_options(m1.uri))
    assert [d.text for d in docs] == ["안녕하세요"]
    with fs.open(f"{bucket}/corpus/ko/part-0.jsonl", "wb") as f:
        f.write(json.dumps({"id": "k1", "text": "반갑습니다"}, ensure_ascii=False).encode() + b"\n")
    assert sources.manifest("ko").version != m1.version
    with pytest.raises(CorpusSourceError, match="no credentials are set"):
        CorpusSources(root=f"s3://{bucket}/corpus").manifest("ko")


def test_unknown_source_names():
    with pytest.raises(CorpusSourceError, match="unknown corpus source 'fr'"):
        CorpusSources().uri_for("fr")
    with pytest.raises(CorpusSourceError, match=r"overrides name unknown sources \['xx'\]"):
        CorpusSources(overrides={"xx": "/tmp"}).uri_for("en")
