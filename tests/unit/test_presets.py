"""Presets: the report's numbers, traceability of every value, and up-front validation."""

from __future__ import annotations

import pytest

from config import PRESET_NAMES, PresetError, get_preset, leaf_paths, preset_sources
from config.sourced import S, split_sources
from kexaone_dag.config import PresetResource

# report / a paper or library default it names / a project decision (choice:, tiny:) / the issue that set it
SOURCE_KINDS = ("report", "choice:", "tiny:", "issue ", "Gopher", "FineWeb", "C4", "datatrove", "SuperBPE", "EXAONE")


def test_full_preset_is_the_reports_architecture():
    p = get_preset("k-exaone-236b")
    m = p.model
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.num_query_groups, m.kv_channels) == (
        48,
        6144,
        64,
        8,
        128,
    )
    assert m.global_layers == tuple(range(3, 48, 4))  # LLLG: 12 global, 36 SWA
    assert len(m.global_layers) == 12
    assert (m.sliding_window, m.rope_theta, m.qk_layernorm, m.norm_eps) == (128, 1e6, True, 1e-5)
    assert (m.ffn_hidden_size, m.num_dense_layers) == (18432, 1)
    assert (m.num_moe_experts, m.moe_router_topk, m.moe_ffn_hidden_size, m.moe_shared_expert_intermediate_size) == (
        128,
        8,
        2048,
        2048,
    )
    assert (m.moe_router_score_function, m.moe_router_topk_scaling_factor) == ("sigmoid", 2.5)
    assert (m.moe_router_bias_update_rate, m.moe_aux_loss_coeff, m.moe_router_load_balancing_type) == (
        1e-4,
        1e-4,
        "seq_aux_loss",
    )
    assert m.moe_expert_capacity_factor is None  # dropless
    assert (m.mtp_num_layers, m.mtp_loss_scaling_factor) == (1, 0.05)
    assert m.untie_embeddings_and_output_weights and m.padded_vocab_size == 153_600
    t = p.tokenizer
    assert (t.base_vocab_size, t.vocab_size, t.keep_base_fraction, t.superword_fraction) == (100_000, 150_000, 0.7, 0.2)
    assert dict(t.superword_allocation) == {"en": 2, "ko": 3, "other": 1} and t.normalization == "NFC"
    assert (p.pretrain.total_tokens, p.pretrain.max_lr, p.pretrain.seq_length) == (11e12, 3.0e-4, 8192)
    assert (p.pretrain.optimizer, p.pretrain.lr_schedule, p.pretrain.fp8) == ("muon", "WSD", True)
    assert [s.seq_length for s in p.context.stages.values()] == [32_768, 262_144]


def test_tiny_keeps_the_recipes_shape_and_ratios():
    tiny, full = get_preset("tiny"), get_preset("k-exaone-236b")
    assert tiny.model.global_layers == (3,)  # 3 SWA : 1 global
    assert tiny.model.global_attn_every == full.model.global_attn_every
    assert tiny.model.num_dense_layers == 1 and tiny.model.mtp_num_layers == 1
    assert tiny.model.moe_router_score_function == "sigmoid"
    lengths = [tiny.pretrain.seq_length] + [s.seq_length for s in tiny.context.stages.values()]
    full_lengths = [full.pretrain.seq_length] + [s.seq_length for s in full.context.stages.values()]
    assert [b // a for a, b in zip(lengths, lengths[1:])] == [b // a for a, b in zip(full_lengths, full_lengths[1:])]
    assert tiny.compute.gpus_per_training_step == 0


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_value_traces_to_a_source_and_every_source_to_a_value(name):
    sources = preset_sources(name)
    leaves = set(leaf_paths(get_preset(name)))
    assert sorted(leaves - set(sources)) == []  # a value without a source
    assert sorted(set(sources) - leaves) == []  # a source of no value (a stale or false row)
    assert all(v.startswith(SOURCE_KINDS) for v in sources.values()), {
        k: v for k, v in sources.items() if not v.startswith(SOURCE_KINDS)
    }
    report_rows = [k for k, v in sources.items() if v.startswith("report")]
    assert len(report_rows) > 30  # the architecture, tokenizer and training rows of k-exaone.md


def test_tiny_names_its_own_source_for_each_value_it_changes_and_keeps_the_reports_for_the_rest():
    full, tiny = preset_sources("k-exaone-236b"), preset_sources("tiny")
    full_values, tiny_values = _leaf_values(get_preset("k-exaone-236b")), _leaf_values(get_preset("tiny"))
    for path, value in tiny_values.items():
        if path in full_values and full_values[path] == value:
            continue
        assert not tiny[path].startswith("report") or path.startswith("synthetic.multilingual_directions"), path
    assert tiny["model.num_layers"].startswith("tiny:") and full["model.num_layers"].startswith("report")
    assert tiny["model.moe_router_score_function"] == full["model.moe_router_score_function"]  # kept from the report


def test_a_value_written_with_its_source_splits_into_the_plain_value_and_a_table_row():
    tree = {"a": S(1, "report x"), "b": {"c": S((1, 2), "choice: y")}, "d": 3}
    assert split_sources(tree) == ({"a": 1, "b": {"c": (1, 2)}, "d": 3}, {"a": "report x", "b.c": "choice: y"})
    with pytest.raises(ValueError, match="sourced value holds sourced values"):
        split_sources({"a": S({"b": S(1, "x")}, "y")})
    with pytest.raises(ValueError, match="empty source"):
        S(1, " ")


def test_a_filter_section_that_is_off_says_so_and_one_that_is_on_names_its_fields_sources():
    sources = preset_sources("k-exaone-236b")
    assert sources["data.filters.code.gopher_quality"].startswith("choice:")  # off for code, with the reason
    assert "data.filters.en.gopher_quality" not in sources  # on for en: its fields carry the sources
    assert sources["data.filters.en.gopher_quality.min_doc_words"].startswith("Gopher")
    assert sources["data.filters.ko.gopher_quality.min_stop_words"].startswith("choice: off for Korean")


def _leaf_values(preset) -> dict:
    values = {}
    for path in leaf_paths(preset):
        node = preset.to_dict()
        for part in path.split("."):
            node = node[part]
        values[path] = node
    return values


def test_settings_that_nothing_builds_are_refused_in_one_line():
    with pytest.raises(PresetError, match=r"pretrain.lr_schedule='cosine': only WSD"):
        get_preset("tiny", {"pretrain.lr_schedule": "cosine"})
    for gone in ("eval.temperature", "eval.top_p", "compute.context_parallel"):
        with pytest.raises(PresetError, match=f"override '{gone}': no field"):
            get_preset("k-exaone-236b", {gone: 1})


def test_preset_comes_from_env_then_default(monkeypatch):
    monkeypatch.delenv("KEXAONE_PRESET", raising=False)
    assert get_preset().name == "tiny"
    monkeypatch.setenv("KEXAONE_PRESET", "k-exaone-236b")
    assert get_preset().name == "k-exaone-236b"
    assert get_preset("tiny").name == "tiny"  # an explicit name (run config) wins


def test_slice_is_what_gets_hashed():
    p = get_preset("tiny")
    s = p.slice("model.sliding_window", "tokenizer")
    assert s["model.sliding_window"] == 16 and s["tokenizer"]["vocab_size"] == 1536
    with pytest.raises(PresetError, match="no section 'model.nope'"):
        p.slice("model.nope")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model.num_attention_heads": 5}, "model.num_attention_heads=5 does not divide model.hidden_size=64"),
        ({"model.moe_router_topk": 9}, "model.moe_router_topk=9 must be between 1 and model.num_moe_experts=8"),
        ({"model.sliding_window": 128}, "model.sliding_window=128 must be smaller than the pre-training sequence"),
        ({"model.num_query_groups": 3}, "model.num_query_groups=3 does not divide model.num_attention_heads=4"),
        ({"model.num_layers": 6}, "model.num_layers=6 is not a multiple of model.global_attn_every=4"),
        ({"model.padded_vocab_size": 1024}, "model.padded_vocab_size=1024 is smaller than tokenizer.vocab_size"),
        ({"data.stage_mixtures.stage1.en": 0.9}, "data.stage_mixtures.stage1 weights must be >= 0 and sum to 1"),
        ({"context.stages.stage1.seq_length": 64}, "context.stages.stage1.seq_length=64 must exceed"),
        (
            {"context.stages.stage1.retrieval_min_length": 1024},
            "context.stages.stage1.retrieval_min_length=1024 must be within (0, seq_length=512]",
        ),
        (
            {"context.stages.stage2.answer_loss_weight": 0},
            "context.stages.stage2.answer_loss_weight=0 must be an integer within [1, 255]",
        ),
        ({"compute.policy_tensor_parallel": 0}, "compute.policy_tensor_parallel must be >= 1"),
        (
            {"compute.policy_tensor_parallel": 3},
            "compute.policy_tensor_parallel=3 does not divide model.num_query_groups=2",
        ),
        (
            {"compute.policy_expert_parallel": 3},
            "compute.policy_expert_parallel=3 does not divide model.num_moe_experts=8",
        ),
        ({"tokenizer.reallocation_split": "even"}, "tokenizer.reallocation_split='even' is not pooled or by_need"),
        ({"tokenizer.keep_base_ancestors": "all"}, "tokenizer.keep_base_ancestors='all' is not counted or extra"),
    ],
)
def test_invalid_values_fail_with_one_line_naming_the_problem(overrides, message):
    with pytest.raises(PresetError) as err:
        get_preset("tiny", overrides)
    text = str(err.value)
    assert message in text and "\n" not in text and text.startswith("preset 'tiny' is invalid:")


def test_all_problems_are_reported_together():
    with pytest.raises(PresetError) as err:
        get_preset("tiny", {"model.moe_router_topk": 99, "model.sliding_window": 500})
    assert "moe_router_topk=99" in str(err.value) and "sliding_window=500" in str(err.value)


def test_unknown_preset_and_bad_overrides():
    with pytest.raises(PresetError, match=r"unknown preset 'k-exaone-7b' \(known: tiny, k-exaone-236b\)"):
        get_preset("k-exaone-7b")
    with pytest.raises(PresetError, match="no field 'num_layer'"):
        get_preset("tiny", {"model.num_layer": 4})
    with pytest.raises(PresetError, match="expected an integer"):
        get_preset("tiny", {"model.num_layers": 4.5})
    with pytest.raises(PresetError, match="expected true/false"):
        get_preset("tiny", {"model.qk_layernorm": "yes"})


def test_run_config_resource_selects_and_overrides():
    res = PresetResource(name="k-exaone-236b", overrides={"pretrain.max_lr": 2e-4})
    assert res.get().name == "k-exaone-236b" and res.get().pretrain.max_lr == 2e-4
    with pytest.raises(PresetError, match="unknown preset 'nope'"):
        PresetResource(name="nope").get()
