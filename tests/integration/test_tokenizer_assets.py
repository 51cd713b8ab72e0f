"""The tokenizer assets in the DAG: trained from deduplicated_corpus, loadable by tokenizers and
transformers, a report with a chart and warehouse rows, reuse on re-materialization."""

from __future__ import annotations

import base64
import json

import pytest
from dagster import AssetKey, DagsterInstance
from tokenizers import Tokenizer

from kexaone_dag.definitions import build_definitions
from resources.warehouse import Warehouse
from tests.conftest import private_demo_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tok")
    with private_demo_env(tmp):
        defs = build_definitions()
        with DagsterInstance.ephemeral() as instance:
            first = defs.resolve_job_def("data").execute_in_process(instance=instance)
            second = defs.resolve_job_def("data").execute_in_process(instance=instance)
        yield {"defs": defs, "first": first, "second": second, "home": tmp / "home"}


def mat(result, name):
    return result.asset_materializations_for_node(name)[0]


def test_tokenizer_json_loads_everywhere_and_round_trips(materialized):
    from transformers import PreTrainedTokenizerFast

    uri = mat(materialized["first"], "superbpe_tokenizer").metadata["dagster/uri"].value
    path = f"{uri}/tokenizer.json"
    tok = Tokenizer.from_file(path)
    hf = PreTrainedTokenizerFast(tokenizer_file=path)
    text = "안녕하세요! Xin chào.\tdef f():\r\n    return 1 😀"
    assert tok.decode(tok.encode(text).ids) == text
    assert hf.decode(hf(text)["input_ids"]) == text
    assert len(hf) == 2048  # padded to the model's vocabulary
    assert hf.convert_tokens_to_ids("<think>") == tok.token_to_id("<think>")


def test_checks_pass_and_lineage_reaches_the_corpus(materialized):
    first = materialized["first"]
    checks = {
        c.check_name: c.passed
        for c in first.get_asset_check_evaluations()
        if c.asset_key == AssetKey("superbpe_tokenizer")
    }
    assert checks == {"round_trip_exact": True, "base_tokens_retained": True}
    superbpe = mat(first, "superbpe_tokenizer")
    assert superbpe.metadata["keep_base_ancestors"].value == "extra"  # the tiny preset's kept base
    uri = superbpe.metadata["dagster/uri"].value
    provenance = json.loads(open(f"{uri}/provenance.json").read())
    assert "base_tokenizer" in provenance["upstream"]
    assert {f"deduplicated_corpus__{d}" for d in ("en", "ko", "es", "de", "ja", "vi", "code", "stem")} <= set(
        provenance["upstream"]
    )


def inline_png(value) -> bytes:
    """The PNG behind an inline plot: markdown ``![...](data:image/png;base64,...)``."""
    prefix, data = value.value.split("(data:image/png;base64,", 1)
    assert prefix.startswith("![") and data.endswith(")")
    png = base64.b64decode(data[:-1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return png


def test_report_has_table_chart_and_warehouse_rows(materialized):
    report = mat(materialized["first"], "tokenizer_report")
    table = report.metadata["bytes_per_token"]  # a native table, one row per domain
    by_domain = {r.data["domain"]: r.data for r in table.records}
    assert set(by_domain) == {"en", "ko", "es", "de", "ja", "vi", "multilingual", "stem", "code"}
    assert all(isinstance(r["superbpe"], float) and r["superbpe"] > 1.0 for r in by_domain.values())
    assert {c.name: c.type for c in table.schema.columns}["documents"] == "int"
    png = inline_png(report.metadata["chart"])
    assert len(png) < 60_000
    uri = report.metadata["dagster/uri"].value
    with open(f"{uri}/bytes_per_token.png", "rb") as f:
        assert f.read() == png
    rows = Warehouse(path=str(materialized["home"] / "warehouse.duckdb")).query(
        "select tokenizer, domain, bytes_per_token from tokenizer_efficiency where report_version = ?",
        [report.metadata["artifact_version"].value],
    )
    assert {r["tokenizer"] for r in rows} == {"base", "plain_bpe", "superbpe"}
    assert {r["domain"] for r in rows} == {"en", "ko", "es", "de", "ja", "vi", "multilingual", "stem", "code"}
    assert all(r["bytes_per_token"] > 1.0 for r in rows)
    # the superword policy against what training achieved, from the trained tokenizer's own record
    policy = {r.data["group"]: r.data for r in report.metadata["superword_policy"].records}
    assert set(policy) == {"en", "ko", "other", "vocabulary"}
    assert [policy[g]["policy_pct"] for g in ("en", "ko", "other", "vocabulary")] == [33.3, 50.0, 16.7, 20.0]
    trained = mat(materialized["first"], "superbpe_tokenizer").metadata
    by_group = trained["superword_merges_by_group"].value
    assert report.metadata["superword_split_en_ko_other"].value == "/".join(
        str(by_group[g]) for g in ("en", "ko", "other")
    )
    assert 0 < report.metadata["superword_vocab_share_pct"].value <= 25


def test_second_materialization_reuses_every_tokenizer_artifact(materialized):
    for name in ("base_tokenizer", "superbpe_tokenizer", "tokenizer_report"):
        a, b = mat(materialized["first"], name), mat(materialized["second"], name)
        assert a.metadata["artifact_version"].value == b.metadata["artifact_version"].value
        assert a.metadata["reused"].value is False and b.metadata["reused"].value is True
    first, second = mat(materialized["first"], "tokenizer_report"), mat(materialized["second"], "tokenizer_report")
    assert second.metadata["bytes_per_token"] == first.metadata["bytes_per_token"]  # kept in provenance.json
    assert second.metadata["chart"] == first.metadata["chart"]  # read back from the artifact
