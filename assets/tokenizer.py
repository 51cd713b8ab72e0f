"""[tokenizer] group: base_tokenizer -> superbpe_tokenizer -> tokenizer_report.

All three read the eight ``deduplicated_corpus`` partitions (the same data for every tokenizer), hold
``tokenizer.held_out_fraction`` of the documents out, and train with the pure functions of
``tokenizer.recipe``. Artifacts: ``tokenizer.json`` (loads with ``tokenizers.Tokenizer.from_file`` and
``transformers.PreTrainedTokenizerFast``), the report's ``efficiency.json`` and ``bytes_per_token.png``.
"""

import json
from pathlib import Path

from dagster import AssetCheckResult, AssetCheckSpec, AssetDep, AssetExecutionContext, asset
from tokenizers import Tokenizer

from assets import keys
from assets.corpus_pipeline import deduplicated_documents
from assets.metadata import table
from assets.versioning import BuildResult, Upstream, ensure_plot, latest_upstream, materialize_versioned
from config import Preset
from kexaone_dag.automation import DOWNSTREAM_OF_DATA
from kexaone_dag.config import PresetResource
from posttrain import chat
from resources.artifact_store import ArtifactStore
from resources.warehouse import Warehouse
from tokenizer.chart import bytes_per_token_chart
from tokenizer.recipe import (
    DocStream,
    build_base_tokenizer,
    build_plain_bpe,
    build_superbpe_tokenizer,
    efficiency_rows,
    superbpe_plan,
    superword_policy_rows,
    superword_vocab_share,
)
from tokenizer.superbpe import fingerprint, is_superword, merges_of

TOKENIZER_GROUP = "tokenizer"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"  # AutoTokenizer's settings + the chat template
CORPUS_DEP = [AssetDep(keys.DEDUPLICATED_CORPUS)]  # every partition: the tokenizer sees all languages


def corpus_inputs(
    context: AssetExecutionContext, store: ArtifactStore, preset: Preset
) -> tuple[dict[str, DocStream], dict[str, Upstream]]:
    """One document stream per deduplicated_corpus partition, and the partitions' versions (for lineage)."""
    streams: dict[str, DocStream] = {}
    upstream: dict[str, Upstream] = {}
    for domain in preset.data.domains:
        name, upstream[name], streams[domain] = deduplicated_documents(context, store, domain)
    return streams, upstream


def load_tokenizer(store: ArtifactStore, version: str, asset_name: str = keys.SUPERBPE_TOKENIZER) -> Tokenizer:
    """A committed tokenizer artifact's ``tokenizer.json`` (SuperBPE unless ``asset_name`` says otherwise)."""
    with store.open(asset_name, version, TOKENIZER_FILE, "rb") as f:
        return Tokenizer.from_str(f.read().decode("utf-8"))


def eod_and_pad(tok: Tokenizer, preset: Preset) -> tuple[int, int]:
    """The ids of the end-of-document and padding tokens (the preset's first two special tokens)."""
    eod, pad = preset.tokenizer.special_tokens[:2]
    return tok.token_to_id(eod), tok.token_to_id(pad)


def _vocab_metadata(tok: Tokenizer) -> dict:
    vocab = tok.get_vocab()
    return {
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "merges": len(merges_of(tok)),
        "superword_tokens": sum(is_superword(t) for t in vocab),
        "fingerprint": fingerprint(tok),
    }


@asset(
    group_name=TOKENIZER_GROUP,
    deps=CORPUS_DEP,
    code_version="1",
    automation_condition=DOWNSTREAM_OF_DATA,
    kinds={"tokenizers"},
    description="The previous-generation byte-level BPE (NFKC, GPT-2 regex; 100K in the full preset) that "
    "the SuperBPE tokenizer inherits its most frequent tokens from and is measured against.",
)
def base_tokenizer(
    context: AssetExecutionContext, preset: PresetResource, artifact_store: ArtifactStore, warehouse: Warehouse
):
    p = preset.get()
    streams, upstream = corpus_inputs(context, artifact_store, p)

    def build(staging: Path) -> BuildResult:
        tok = build_base_tokenizer(p, streams)
        tok.save(str(staging / TOKENIZER_FILE))
        return BuildResult(metadata=_vocab_metadata(tok))

    return materialize_versioned(
        context,
        store=artifact_store,
        warehouse=warehouse,
        preset=p,
        preset_sections=(
            "tokenizer.base_vocab_size",
            "tokenizer.special_tokens",
            "tokenizer.base_domains",
            "tokenizer.held_out_fraction",
        ),
        upstream=upstream,
        build=build,
    ).materialize_result()


@asset(
    group_name=TOKENIZER_GROUP,
    deps=[*CORPUS_DEP, AssetDep(keys.BASE_TOKENIZER)],
    code_version="5",
    automation_condition=DOWNSTREAM_OF_DATA,
    kinds={"tokenizers"},
    check_specs=[
        AssetCheckSpec(
            "round_trip_exact",
            asset=keys.SUPERBPE_TOKENIZER,
            description="decode(encode(x)) == x on multilingual, emoji, code and CRLF text",
        ),
        AssetCheckSpec(
            "base_tokens_retained",
            asset=keys.SUPERBPE_TOKENIZER,
            description="at least keep_base_fraction of the base vocabulary is kept (its most frequent tokens)",
        ),
    ],
    description="The K-EXAONE SuperBPE tokenizer: stage-1 BPE (kept base merges + de/ja/vi/STEM/code, split "
    "by need or pooled: tokenizer.reallocation_split) up to the transition size, then superword merges "
    "(en:ko:other = 2:3:1), padded for the model; the chat template "
    "ships beside it in `tokenizer_config.json` (transformers' `apply_chat_template`).",
)
def superbpe_tokenizer(
    context: AssetExecutionContext, preset: PresetResource, artifact_store: ArtifactStore, warehouse: Warehouse
):
    p = preset.get()
    streams, upstream = corpus_inputs(context, artifact_store, p)
    base_up = latest_upstream(context, keys.BASE_TOKENIZER)
    upstream[keys.BASE_TOKENIZER] = base_up
    base = load_tokenizer(artifact_store, base_up.version, keys.BASE_TOKENIZER)

    def build(staging: Path) -> BuildResult:
        result = build_superbpe_tokenizer(p, base, streams)
        result.tokenizer.save(str(staging / TOKENIZER_FILE))
        # the HF way: tokenizer_config.json beside tokenizer.json carries the chat template
        (staging / TOKENIZER_CONFIG_FILE).write_text(json.dumps(chat.tokenizer_config(), indent=2))
        (staging / "stage1_merges.json").write_text(json.dumps(result.stage1_merges, ensure_ascii=False))
        metadata = {
            **_vocab_metadata(result.tokenizer),
            "stage1_merges": len(result.stage1_merges),
            "kept_base_merges": result.kept_base_merges,
            "keep_base_ancestors": p.tokenizer.keep_base_ancestors,
            "superword_merges_by_group": result.superword_merges_by_group,
            "superword_vocab_share": round(superword_vocab_share(result.tokenizer), 4),
            "fill_merges": result.fill_merges,
            "reallocation_split": p.tokenizer.reallocation_split,
            "reallocated_merges_by_domain": result.reallocated_merges_by_domain,
        }
        return BuildResult(metadata=metadata)

    result = materialize_versioned(
        context,
        store=artifact_store,
        warehouse=warehouse,
        preset=p,
        preset_sections=("tokenizer", "model.padded_vocab_size", "data.domains"),
        upstream=upstream,
        build=build,
    )
    tok = load_tokenizer(artifact_store, result.ref.version, keys.SUPERBPE_TOKENIZER)
    return result.materialize_result(
        check_results=[
            _round_trip_check(tok),
            _retention_check(tok, base, p),
        ]
    )


ROUND_TRIP_PROBES = (
    "안녕하세요, 여러분! 반갑습니다.",
    "東京は日本の首都です。",
    "Tiếng Việt có dấu: ă, đ, ơ, ư.",
    "Emoji 😀👍🏽 🇰🇷",
    "def f(x):\n\tif x:\n\t\treturn x\r\n",
    "Grüße, señor: año 2026.",
)


def _round_trip_check(tok: Tokenizer) -> AssetCheckResult:
    failed = [t for t in ROUND_TRIP_PROBES if tok.decode(tok.encode(t).ids, skip_special_tokens=False) != t]
    return AssetCheckResult(
        check_name="round_trip_exact", passed=not failed, metadata={"failed": json.dumps(failed, ensure_ascii=False)}
    )


def _retention_check(tok: Tokenizer, base: Tokenizer, p: Preset) -> AssetCheckResult:
    new_vocab = set(tok.get_vocab())
    base_vocab = [t for t in base.get_vocab() if t not in p.tokenizer.special_tokens]
    retained = sum(t in new_vocab for t in base_vocab) / len(base_vocab)
    return AssetCheckResult(
        check_name="base_tokens_retained",
        passed=retained >= p.tokenizer.keep_base_fraction,
        metadata={"retained_share": round(retained, 4), "required": p.tokenizer.keep_base_fraction},
    )


@asset(
    group_name=TOKENIZER_GROUP,
    deps=[*CORPUS_DEP, AssetDep(keys.BASE_TOKENIZER), AssetDep(keys.SUPERBPE_TOKENIZER)],
    code_version="3",
    automation_condition=DOWNSTREAM_OF_DATA,
    kinds={"tokenizers", "duckdb"},
    description="Bytes per token on held-out text per domain and language for the base tokenizer, a plain BPE "
    "of the SuperBPE vocabulary size, and SuperBPE (all trained on the same data), plus superword usage; the "
    "superword share of the vocabulary and the en:ko:other split against the policy.",
)
def tokenizer_report(
    context: AssetExecutionContext, preset: PresetResource, artifact_store: ArtifactStore, warehouse: Warehouse
):
    p = preset.get()
    streams, upstream = corpus_inputs(context, artifact_store, p)
    for name in (keys.BASE_TOKENIZER, keys.SUPERBPE_TOKENIZER):
        upstream[name] = latest_upstream(context, name)
    base = load_tokenizer(artifact_store, upstream[keys.BASE_TOKENIZER].version, keys.BASE_TOKENIZER)
    superbpe = load_tokenizer(artifact_store, upstream[keys.SUPERBPE_TOKENIZER].version, keys.SUPERBPE_TOKENIZER)

    def build(staging: Path) -> BuildResult:
        plain = build_plain_bpe(p, streams)
        plain.save(str(staging / "plain_bpe_tokenizer.json"))
        rows = efficiency_rows(
            {"base": base, "plain_bpe": plain, "superbpe": superbpe}, streams, p.tokenizer.held_out_fraction
        )
        (staging / "efficiency.json").write_text(json.dumps(rows, indent=2))
        bytes_per_token_chart(
            rows, staging / "bytes_per_token.png", title=f"Bytes per token on held-out text ({p.name} preset)"
        )
        trained = artifact_store.read_provenance(keys.SUPERBPE_TOKENIZER, upstream[keys.SUPERBPE_TOKENIZER].version)
        by_group = trained["build"]["metadata"]["superword_merges_by_group"]
        policy = superword_policy_rows(superbpe, superbpe_plan(p), by_group)
        (staging / "superword_policy.json").write_text(json.dumps(policy, indent=2))
        return BuildResult(
            metadata={**_gains(rows), **_policy_metadata(policy)},
            tables={"bytes_per_token": _efficiency_table(rows), "superword_policy": _policy_table(policy)},
            plots={"chart": "bytes_per_token.png"},
        )

    result = materialize_versioned(
        context,
        store=artifact_store,
        warehouse=warehouse,
        preset=p,
        preset_sections=("tokenizer", "model.padded_vocab_size", "data.domains"),
        upstream=upstream,
        build=build,
    )
    ensure_plot(result, artifact_store, "chart", "bytes_per_token.png")  # (artifacts built before plots)
    version = result.ref.version
    rows = artifact_store.read_json(keys.TOKENIZER_REPORT, version, "efficiency.json")
    warehouse.insert(
        "tokenizer_efficiency", [{"report_version": version, **r} for r in rows], replace_keys=("report_version",)
    )
    return result.materialize_result()


def _gains(rows: list[dict]) -> dict:
    by = {(r["tokenizer"], r["domain"]): r["bytes_per_token"] for r in rows}
    domains = sorted({r["domain"] for r in rows})
    out = {}
    for d in domains:
        out[f"gain_vs_base_{d}_pct"] = round(100 * (by[("superbpe", d)] / by[("base", d)] - 1), 2)
        out[f"gain_vs_plain_bpe_{d}_pct"] = round(100 * (by[("superbpe", d)] / by[("plain_bpe", d)] - 1), 2)
    usage = [r["superword_token_share"] for r in rows if r["tokenizer"] == "superbpe"]
    out["superword_token_share_mean"] = round(sum(usage) / len(usage), 4)
    return out


def _efficiency_table(rows: list[dict]) -> dict:
    """One row per domain: bytes per token of each tokenizer, SuperBPE's gains, superword usage."""
    tokenizers = ["base", "plain_bpe", "superbpe"]
    by = {(r["tokenizer"], r["domain"]): r for r in rows}
    out = []
    for d in dict.fromkeys(r["domain"] for r in rows):
        base, plain, sup = (by[(t, d)]["bytes_per_token"] for t in tokenizers)
        out.append(
            {
                "domain": d,
                "documents": by[("superbpe", d)]["documents"],
                **{t: round(by[(t, d)]["bytes_per_token"], 3) for t in tokenizers},
                "superbpe_vs_base_pct": round(100 * (sup / base - 1), 1),
                "superbpe_vs_plain_bpe_pct": round(100 * (sup / plain - 1), 1),
                "superword_tokens_pct": round(100 * by[("superbpe", d)]["superword_token_share"], 1),
            }
        )
    bpt = "held-out bytes per token (higher is better)"
    return table(
        out,
        [
            ("domain", "string"),
            ("documents", "int", "held-out documents"),
            ("base", "float", f"base tokenizer: {bpt}"),
            ("plain_bpe", "float", f"plain BPE of the SuperBPE vocabulary size: {bpt}"),
            ("superbpe", "float", f"SuperBPE: {bpt}"),
            ("superbpe_vs_base_pct", "float", "SuperBPE vs base, % more bytes per token"),
            ("superbpe_vs_plain_bpe_pct", "float", "SuperBPE vs plain BPE, % more bytes per token"),
            ("superword_tokens_pct", "float", "% of SuperBPE's tokens on the text that are superwords"),
        ],
    )


def _policy_metadata(policy: list[dict]) -> dict:
    vocab = next(r for r in policy if r["group"] == "vocabulary")
    out = {"superword_vocab_share_pct": vocab["achieved_pct"], "superword_policy_pct": vocab["policy_pct"]}
    out["superword_split_en_ko_other"] = "/".join(str(r["learned_merges"]) for r in policy[:3])
    return out


def _policy_table(policy: list[dict]) -> dict:
    return table(
        policy,
        [
            ("group", "string", "en / ko / other: a stage-2 language group; vocabulary: all superwords"),
            ("policy_pct", "float", "the policy: % of the superword merges (2:3:1), or of the vocabulary (20 %)"),
            ("budget_merges", "int", "superword merges the policy gives the group"),
            ("learned_merges", "int", "superword merges training found (before groups' duplicates are removed)"),
            ("achieved_pct", "float", "achieved: % of the learned superword merges, or of the vocabulary"),
        ],
    )
