"""Every setting is read or rejected: field by field over the preset schema.

A field of the schema (``config/schema.py``) counts as *read* when code outside ``config/`` (the science
packages and the orchestration, not tests or benches) reads it: an attribute access ``x.<field>`` or
``getattr(x, "<field>")``, or, for the model, Megatron's ``TransformerConfig`` receiving it by name
(``model.architecture._passthrough_fields``). Reads inside ``config/`` (validation, hashing, ``to_dict``)
do not count. A field nothing reads must be *rejected*: listed in ``REJECTED`` with a value validation
refuses in one line naming the field, and the preset's own value must be the only one accepted. Every leaf
path of both presets belongs to one schema field, so this covers every value of every preset.
"""

from __future__ import annotations

import ast
import dataclasses
from collections import defaultdict
from pathlib import Path

import pytest

import config.schema as schema
from config import PRESET_NAMES, PresetError, get_preset, leaf_paths

REPO = Path(__file__).resolve().parents[2]
CONSUMERS = (
    "model",
    "corpus",
    "tokenizer",
    "synthetic",
    "evaluation",
    "posttrain",
    "kernels",
    "assets",
    "resources",
    "kexaone_dag",
)
# fields nothing builds from: each with a value validation refuses, naming the field
REJECTED = {("PretrainArgs", "lr_schedule"): ("pretrain.lr_schedule", "cosine")}


def schema_fields() -> list[tuple[str, str]]:
    classes = [c for c in vars(schema).values() if isinstance(c, type) and dataclasses.is_dataclass(c)]
    return [(c.__name__, f.name) for c in classes if c is not schema.Preset for f in dataclasses.fields(c)]


def attribute_reads(packages: tuple[str, ...] = CONSUMERS) -> dict[str, list[str]]:
    """attribute name -> ["path:line", ...] of every load of it in ``packages``."""
    reads: dict[str, list[str]] = defaultdict(list)
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO)
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                    reads[node.attr].append(f"{rel}:{node.lineno}")
                elif (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "getattr"
                    and len(node.args) >= 2
                    and isinstance(node.args[1], ast.Constant)
                ):
                    reads[str(node.args[1].value)].append(f"{rel}:{node.lineno}")
    return reads


def passed_to_megatron() -> set[str]:
    from model.architecture import _passthrough_fields

    return set(_passthrough_fields(get_preset("tiny").model))


def unread(fields: list[tuple[str, str]]) -> list[str]:
    reads = attribute_reads()
    megatron = passed_to_megatron()
    out = []
    for cls, name in fields:
        if reads.get(name) or (cls == "ModelArgs" and name in megatron) or (cls, name) in REJECTED:
            continue
        out.append(f"{cls}.{name}")
    return out


def test_every_schema_field_is_read_by_the_code_it_configures_or_rejected():
    assert unread(schema_fields()) == []


def test_a_field_nothing_reads_is_found():
    assert unread([("EvalArgs", "temperature_nobody_reads")]) == ["EvalArgs.temperature_nobody_reads"]
    # reads inside config/ (validation) do not count: lr_schedule is only validated, so it must be in REJECTED
    assert not attribute_reads().get("lr_schedule")
    assert attribute_reads(("config",)).get("lr_schedule")


def test_the_model_fields_megatron_receives_by_name_are_real_transformer_config_fields():
    from megatron.core.transformer import TransformerConfig

    megatron = passed_to_megatron()
    assert {"moe_router_score_function", "moe_router_bias_update_rate", "moe_expert_capacity_factor"} <= megatron
    assert megatron <= {f.name for f in dataclasses.fields(TransformerConfig)}


@pytest.mark.parametrize(("field", "bad"), REJECTED.values(), ids=[p for p, _ in REJECTED.values()])
def test_a_rejected_field_refuses_any_other_value_in_one_line_naming_it(field, bad):
    for name in PRESET_NAMES:
        with pytest.raises(PresetError) as err:
            get_preset(name, {field: bad})
        assert field in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_leaf_of_every_preset_belongs_to_a_checked_field(name):
    """Leaf paths end in a schema field, or in a key of a mapping-valued field (stages, filters, languages)."""
    fields = {f for _, f in schema_fields()}
    orphans = []
    for path in leaf_paths(get_preset(name)):
        parts = path.split(".")
        if not any(part in fields for part in parts[1:]):
            orphans.append(path)
    assert orphans == []
