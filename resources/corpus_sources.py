"""Where the raw corpus sources live: one folder/prefix per language or domain (local or s3://)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster import ConfigurableResource

from config import CORPUS_DOMAINS
from corpus.sources import CorpusSourceError, Manifest, content_manifest

DEMO_CORPUS_ROOT = str(Path(__file__).resolve().parent.parent / "corpus" / "demo_data")


class CorpusSources(ConfigurableResource):
    """``root/<source>/`` for each of en, ko, es, de, ja, vi, code, stem; ``overrides`` points single
    sources elsewhere (e.g. ``{"en": "s3://corpora/fineweb-en/"}``). S3 credentials come from env vars
    through Dagster ``EnvVar`` like the artifact store's."""

    root: str = DEMO_CORPUS_ROOT
    overrides: dict[str, str] = {}
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None

    def uri_for(self, source: str) -> str:
        if source not in CORPUS_DOMAINS:
            raise CorpusSourceError(f"unknown corpus source {source!r} (known: {', '.join(CORPUS_DOMAINS)})")
        unknown = set(self.overrides) - set(CORPUS_DOMAINS)
        if unknown:
            raise CorpusSourceError(f"corpus source overrides name unknown sources {sorted(unknown)}")
        return self.overrides.get(source) or f"{self.root.rstrip('/')}/{source}"

    def storage_options(self, uri: str) -> dict[str, Any]:
        if not uri.startswith("s3://"):
            return {}
        if not (self.access_key_id and self.secret_access_key):
            raise CorpusSourceError(
                f"corpus source {uri} is on S3 but no credentials are set: set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"
            )
        opts: dict[str, Any] = {
            "key": self.access_key_id,
            "secret": self.secret_access_key,
            "skip_instance_cache": True,
        }
        if self.endpoint_url:
            opts["client_kwargs"] = {"endpoint_url": self.endpoint_url}
        return opts

    def manifest(self, source: str) -> Manifest:
        uri = self.uri_for(source)
        return content_manifest(source, uri, self.storage_options(uri))
