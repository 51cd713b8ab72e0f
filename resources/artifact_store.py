"""Version-addressed, atomically committed artifact store on fsspec (local folder or S3 via s3fs).

Layout::

    <root>/<asset>/<version>/...files...
    <root>/<asset>/<version>/provenance.json      <- written last; its presence *is* the commit
    <root>/.staging/<asset>/<version>.<nonce>/     <- local builds happen here first

An artifact is visible (``has()``) only once ``provenance.json`` exists. Locally the whole staged
directory is moved into place with one ``rename`` (atomic on POSIX, and it refuses a non-empty target,
so a finished artifact is never overwritten). On S3 there is no rename: the data files are uploaded
first and ``provenance.json`` last, so a crash mid-upload leaves objects that no reader will treat as
an artifact; the next commit of the same version clears them before uploading.

The version is a content hash of what determines the artifact (see ``compute_version``), so the same
inputs always map to the same path and a second materialization reuses the first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

import fsspec
from dagster import ConfigurableResource
from pydantic import PrivateAttr

PROVENANCE_FILE = "provenance.json"
STAGING_DIR = ".staging"
VERSION_LENGTH = 16


class ArtifactStoreError(RuntimeError):
    """Misconfiguration or misuse of the artifact store; one line naming the problem."""


@dataclass(frozen=True)
class ArtifactRef:
    asset: str
    version: str
    uri: str
    reused: bool


def compute_version(
    asset: str, code_version: str | None, upstream_versions: Mapping[str, str], preset_slice: Mapping[str, Any]
) -> str:
    """Hash of everything that determines an artifact: its code, its inputs' versions, its config."""
    if code_version is None:
        raise ArtifactStoreError(f"asset {asset!r} has no code_version; versioned assets need one")
    payload = json.dumps(
        {
            "asset": asset,
            "code_version": code_version,
            "upstream": dict(sorted(upstream_versions.items())),
            "preset": preset_slice,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:VERSION_LENGTH]


def git_commit() -> str:
    """The checkout's commit (with '-dirty' when the tree has changes), or 'unknown' outside git."""
    repo = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class ArtifactStore(ConfigurableResource):
    """Where every artifact of the DAG lives.

    ``root`` is a local folder (default ``.kexaone/artifacts``) or ``s3://bucket/prefix``. For S3 the
    credentials come only from environment variables, passed in as Dagster ``EnvVar``s (see
    ``kexaone_dag.resources_by_env``); ``endpoint_url`` points at any S3-compatible server.
    """

    root: str
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region_name: str | None = None

    _fs: Any = PrivateAttr(default=None)

    # -- filesystem ----------------------------------------------------------------------------
    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def check_config(self) -> None:
        if self.is_s3:
            if not self.root[len("s3://") :].strip("/"):
                raise ArtifactStoreError(f"artifact store root {self.root!r} names no bucket")
            if not (self.access_key_id and self.secret_access_key):
                raise ArtifactStoreError(
                    f"artifact store {self.root} has no S3 credentials: set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY in the environment"
                )
        elif "://" in self.root and not self.root.startswith("file://"):
            raise ArtifactStoreError(f"artifact store root {self.root!r}: only local paths and s3:// are supported")

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            self.check_config()
            if self.is_s3:
                client_kwargs = {}
                if self.endpoint_url:
                    client_kwargs["endpoint_url"] = self.endpoint_url
                if self.region_name:
                    client_kwargs["region_name"] = self.region_name
                self._fs = fsspec.filesystem(
                    "s3",
                    key=self.access_key_id,
                    secret=self.secret_access_key,
                    client_kwargs=client_kwargs,
                    skip_instance_cache=True,
                )
            else:
                self._fs = fsspec.filesystem("file")
        return self._fs

    @property
    def _base(self) -> str:
        if self.is_s3:
            return self.root[len("s3://") :].rstrip("/")
        return str(Path(self.root.removeprefix("file://")).expanduser().resolve())

    def path(self, asset: str, version: str, *parts: str) -> str:
        """Filesystem path (no scheme) of an artifact directory or a file inside it."""
        _check_name(asset, "asset")
        _check_name(version, "version")
        return "/".join([self._base, asset, version, *parts])

    def uri(self, asset: str, version: str, *parts: str) -> str:
        p = self.path(asset, version, *parts)
        return f"s3://{p}" if self.is_s3 else p

    # -- reading -------------------------------------------------------------------------------
    def has(self, asset: str, version: str) -> bool:
        return self.fs.exists(self.path(asset, version, PROVENANCE_FILE))

    def read_provenance(self, asset: str, version: str) -> dict[str, Any]:
        if not self.has(asset, version):
            raise ArtifactStoreError(f"no committed artifact {asset}/{version} in {self.root}")
        with self.fs.open(self.path(asset, version, PROVENANCE_FILE), "rb") as f:
            return json.load(f)

    def open(self, asset: str, version: str, relpath: str, mode: str = "rb"):
        if "w" in mode or "a" in mode:
            raise ArtifactStoreError("artifacts are immutable; write through stage()/commit()")
        if not self.has(asset, version):
            raise ArtifactStoreError(f"no committed artifact {asset}/{version} in {self.root}")
        return self.fs.open(self.path(asset, version, relpath), mode)

    def read_json(self, asset: str, version: str, relpath: str) -> Any:
        with self.open(asset, version, relpath) as f:
            return json.load(f)

    def versions(self, asset: str) -> list[str]:
        """Committed versions of an asset (uncommitted leftovers are ignored)."""
        base = f"{self._base}/{asset}"
        if not self.fs.exists(base):
            return []
        out = []
        for entry in self.fs.ls(base, detail=False):
            version = entry.rstrip("/").rsplit("/", 1)[-1]
            if self.has(asset, version):
                out.append(version)
        return sorted(out)

    @contextlib.contextmanager
    def local_copy(self, asset: str, version: str) -> Iterator[Path]:
        """A local directory with the artifact's files while the ``with`` block runs: the artifact itself
        when the store is local, else a temporary download that is removed afterwards."""
        if not self.has(asset, version):
            raise ArtifactStoreError(f"no committed artifact {asset}/{version} in {self.root}")
        if not self.is_s3:
            yield Path(self.path(asset, version))
            return
        target = Path(tempfile.mkdtemp(prefix=f"kexaone-{asset}-"))
        try:
            self.fs.get(self.path(asset, version) + "/", str(target), recursive=True)
            yield target
        finally:
            shutil.rmtree(target, ignore_errors=True)

    # -- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def stage(self, asset: str, version: str) -> Iterator[Path]:
        """A fresh local directory to build the artifact in; removed if the build raises."""
        if self.is_s3:
            staging = Path(tempfile.mkdtemp(prefix=f"kexaone-stage-{asset}-"))
        else:
            parent = Path(self._base, STAGING_DIR, asset)
            parent.mkdir(parents=True, exist_ok=True)
            staging = parent / f"{version}.{uuid.uuid4().hex[:8]}"
            staging.mkdir()
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def commit(self, staging: Path, asset: str, version: str, provenance: Mapping[str, Any]) -> ArtifactRef:
        """Publish a staged build. Never overwrites: if the version already exists, it is reused."""
        if self.has(asset, version):
            return ArtifactRef(asset, version, self.uri(asset, version), reused=True)
        if (staging / PROVENANCE_FILE).exists():
            raise ArtifactStoreError(f"{PROVENANCE_FILE} is reserved; the store writes it on commit")
        record = dict(provenance)
        record["files"] = _file_inventory(staging)
        (staging / PROVENANCE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
        target = self.path(asset, version)
        if self.is_s3:
            # Clear leftovers of an earlier crashed upload (never a committed artifact: checked above).
            if self.fs.exists(target):
                self.fs.rm(target, recursive=True)
            for f in sorted(staging.rglob("*")):
                if f.is_file() and f.name != PROVENANCE_FILE:
                    self.fs.put_file(str(f), f"{target}/{f.relative_to(staging).as_posix()}")
            self.fs.put_file(str(staging / PROVENANCE_FILE), f"{target}/{PROVENANCE_FILE}")
        else:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staging, target)
            except OSError:
                if self.has(asset, version):  # a concurrent writer won the race: keep theirs
                    return ArtifactRef(asset, version, self.uri(asset, version), reused=True)
                if Path(target).exists():  # a stray directory without provenance: not an artifact
                    shutil.rmtree(target)
                    os.rename(staging, target)
                else:
                    raise
            staging.mkdir()  # so stage()'s cleanup has something to remove
        return ArtifactRef(asset, version, self.uri(asset, version), reused=False)


def base_provenance(
    *,
    asset: str,
    version: str,
    code_version: str,
    preset_name: str,
    preset_slice: Mapping[str, Any],
    upstream: Mapping[str, Mapping[str, str]],
) -> dict[str, Any]:
    """The provenance.json record: what was built, from what, by which code, where and when."""
    return {
        "asset": asset,
        "version": version,
        "code_version": code_version,
        "preset": preset_name,
        "preset_slice": preset_slice,
        "upstream": upstream,  # key -> {"version": ..., "uri": ...}
        "git_commit": git_commit(),
        "created_at": datetime.now(timezone.utc).isoformat(),
        "host": socket.gethostname(),
    }


def _file_inventory(directory: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for f in sorted(directory.rglob("*")):
        if f.is_file():
            digest = hashlib.sha256()
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            out[f.relative_to(directory).as_posix()] = {"bytes": f.stat().st_size, "sha256": digest.hexdigest()}
    return out


def _check_name(value: str, what: str) -> None:
    if not value or "/" in value or value.startswith(".") or value != value.strip():
        raise ArtifactStoreError(f"invalid {what} name {value!r} for an artifact path")
