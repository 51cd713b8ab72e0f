"""The tables each asset shows in the UI (assets/*: built from the numbers the science packages return),
checked on small inputs of the real shapes; the e2e chain shows them on real runs."""

from __future__ import annotations

import json

from assets.context import composition_table, niah_build, niah_grid_table
from assets.corpus import sources_table
from assets.evaluation import perplexity_table
from assets.metadata import PNG_MAGIC, table_value
from assets.pretraining import final_metrics_table, mixture_table
from assets.synthetic import balance_table
from assets.tokenizer import _efficiency_table
from evaluation import niah
from evaluation.summary import CHAIN_ORDER


def records(spec: dict) -> list[dict]:
    return [dict(r.data) for r in table_value(json.loads(json.dumps(spec))).records]


def types(spec: dict) -> dict[str, str]:
    return {c.name: c.type for c in table_value(spec).schema.columns}


def test_corpus_and_tokenizer_tables():
    stats = [
        {
            "source": "en",
            "source_version": "abc",
            "uri": "/corpus/en",
            "files": 2,
            "file_bytes": 900,
            "documents": 10,
            "text_bytes": 800,
            "characters": 790,
            "mean_document_chars": 79.04,
            "formats": {"jsonl": 1, "parquet": 1},
        }
    ]
    t = sources_table(stats)
    assert records(t) == [
        {
            "source": "en",
            "files": 2,
            "documents": 10,
            "text_bytes": 800,
            "characters": 790,
            "mean_document_chars": 79.0,
            "formats": "jsonl:1, parquet:1",
            "source_version": "abc",
        }
    ]
    rows = [
        {"tokenizer": t, "domain": "en", "documents": 5, "bytes_per_token": b, "superword_token_share": 0.25}
        for t, b in (("base", 4.0), ("plain_bpe", 4.2), ("superbpe", 5.0))
    ]
    eff = _efficiency_table(rows)
    assert records(eff) == [
        {
            "domain": "en",
            "documents": 5,
            "base": 4.0,
            "plain_bpe": 4.2,
            "superbpe": 5.0,
            "superbpe_vs_base_pct": 25.0,
            "superbpe_vs_plain_bpe_pct": 19.0,
            "superword_tokens_pct": 25.0,
        }
    ]
    assert types(eff)["superbpe"] == "float" and types(eff)["documents"] == "int"


def test_synthetic_and_pretraining_tables():
    balance = [
        {
            "language": "de",
            "target_chars": 3000,
            "achieved_chars": 3100,
            "documents": 4,
            "rejected": 1,
            "achieved_share": 1.0333,
        }
    ]
    assert records(balance_table(balance))[0]["achieved_chars"] == 3100
    mixture = [
        {
            "source": "en",
            "requested": 0.6,
            "effective": 0.59375,
            "documents": 40,
            "tokens": 9000,
            "samples": 19,
            "epochs": 1.0811,
        }
    ]
    assert records(mixture_table(mixture)) == [
        {
            "source": "en",
            "requested": 0.6,
            "effective": 0.5938,
            "documents": 40,
            "tokens": 9000,
            "samples": 19,
            "epochs": 1.08,
        }
    ]
    summary = {
        "stage": "stage1",
        "steps": 64,
        "tokens": 65536,
        "loss_first": 7.9,
        "loss_final": 4.1,
        "mtp_loss_final": 4.5,
        "lr_final": 3e-5,
        "expert_load_imbalance_final": 1.2,
        "tokens_per_s": 900.5,
        "world_size": 1,
        "resumed_from": None,
    }
    final = final_metrics_table(summary)
    assert records(final) == [{k: summary[k] for k in summary if k != "stage"}]
    assert types(final)["steps"] == "int" and types(final)["loss_final"] == "float"


def _niah_results() -> niah.NiahResults:
    cases = [
        niah.CaseResult(
            length=n,
            depth=d,
            trial=t,
            language="en",
            key="Zor",
            value="12345",
            generated="12345",
            correct=not (n == 256 and d == 1.0 and t == 0),
        )
        for n in (128, 256)
        for d in (0.0, 0.5, 1.0)
        for t in range(2)
    ]
    return niah.results_from_cases(cases)


def test_context_tables_and_the_niah_grid(tmp_path):
    stats = {
        "pools": {
            "rehearsal": {
                "share": 0.5,
                "effective_share": 0.51234,
                "effective_tokens": 1000,
                "documents_used": 9,
                "epochs": 1,
                "skipped_too_long": [{"document": 3, "length": 99}],
            }
        }
    }
    assert records(composition_table(stats)) == [
        {
            "pool": "rehearsal",
            "requested": 0.5,
            "effective": 0.5123,
            "tokens": 1000,
            "documents": 9,
            "epochs": 1,
            "skipped_too_long": 1,
        }
    ]
    results = _niah_results()
    grid = niah_grid_table(results)
    assert [c["name"] for c in grid["columns"]] == ["depth", "len_128", "len_256"]
    assert records(grid) == [
        {"depth": 0.0, "len_128": 1.0, "len_256": 1.0},
        {"depth": 0.5, "len_128": 1.0, "len_256": 1.0},
        {"depth": 1.0, "len_128": 1.0, "len_256": 0.5},
    ]
    assert "2 trials per cell" in grid["columns"][1]["description"]
    (tmp_path / "niah.json").write_text(json.dumps([c.__dict__ for c in results.cases]))
    built = niah_build(tmp_path, "context_ext_stage1 NIAH exact match", 0.95)
    assert built.tables == {"niah_grid": grid}
    png = (tmp_path / built.plots["niah_heatmap"]).read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) < 60_000


def test_perplexity_table_has_every_checkpoint_in_chain_order():
    rows = [{"checkpoint": "pretrain_stage1", "domain": d, "perplexity": p} for d, p in (("en", 30.123), ("ko", 41.0))]
    t = perplexity_table(rows)
    got = records(t)
    assert [r["checkpoint"] for r in got] == list(CHAIN_ORDER)
    assert got[0] == {"checkpoint": "pretrain_stage1", "en": 30.12, "ko": 41.0}
    assert got[1] == {"checkpoint": CHAIN_ORDER[1], "en": None, "ko": None}  # not evaluated: empty cells
    assert types(t) == {"checkpoint": "string", "en": "float", "ko": "float"}
