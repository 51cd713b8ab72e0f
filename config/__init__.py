"""The recipe's configuration: every number of the DAG, as plain typed data with no Dagster in it.

Two presets ship, one module each:

* ``tiny`` (``config/tiny.py``)                    — the whole chain for real on a 2-core CPU in minutes;
* ``k-exaone-236b`` (``config/k_exaone_236b.py``)  — the K-EXAONE technical report's configuration.

Each value is written with its source beside it (``S(48, "report Table 1 / §2.1")``, ``config/sourced.py``);
``preset_sources(name)`` is the resulting {dotted path: source} table of a preset.

``config/schema.py`` is the dataclass tree (``Preset``), ``config/validation.py`` the checks run before any
compute (one error line listing every problem), ``config/corpus_filters.py`` the corpus filter chains both
presets share. Assets read a *slice* of the preset (``preset.slice("model", "tokenizer")``) and that slice is
hashed into the artifact version, so changing a number re-versions exactly what reads it.

Selection: run config of the ``preset`` resource, else env var ``KEXAONE_PRESET``, else ``tiny``; dotted
overrides from ``KEXAONE_PRESET_OVERRIDES`` (a JSON object) apply to it, and run-config overrides on top. The
science packages (model, corpus, tokenizer, synthetic, evaluation, kernels) import this package and never
the orchestration (``kexaone_dag``, ``assets``, ``resources``); ``tests/unit/test_import_directions.py`` holds
them to it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping

from config.k_exaone_236b import SOURCES, k_exaone_236b
from config.schema import (
    CORPUS_DOMAINS,
    DEFAULT_PRESET,
    LANGUAGES,
    PRESET_ENV_VAR,
    C4Args,
    CodeQualityArgs,
    ComputeArgs,
    ContextArgs,
    ContextStageArgs,
    CorpusPipelineArgs,
    DataArgs,
    DomainFilterArgs,
    EvalArgs,
    FineWebQualityArgs,
    GopherQualityArgs,
    GopherRepetitionArgs,
    MinhashArgs,
    ModelArgs,
    Preset,
    PresetError,
    PretrainArgs,
    SyntheticArgs,
    TokenizerArgs,
)
from config.tiny import TINY_SOURCES, tiny

PRESETS: dict[str, Callable[[], Preset]] = {"tiny": tiny, "k-exaone-236b": k_exaone_236b}
PRESET_NAMES = tuple(PRESETS)
_SOURCES: dict[str, dict[str, str]] = {"tiny": TINY_SOURCES, "k-exaone-236b": SOURCES}


def preset_sources(name: str) -> dict[str, str]:
    """{dotted leaf path: where the value comes from} of a named preset (before overrides)."""
    if name not in _SOURCES:
        raise PresetError(f"unknown preset {name!r} (known: {', '.join(PRESET_NAMES)})")
    return dict(_SOURCES[name])


PRESET_OVERRIDES_ENV_VAR = "KEXAONE_PRESET_OVERRIDES"


def env_overrides() -> dict[str, Any]:
    """The dotted overrides in ``$KEXAONE_PRESET_OVERRIDES`` (a JSON object; empty when unset). A value that
    is not a JSON object of dotted paths is refused in one line."""
    raw = os.environ.get(PRESET_OVERRIDES_ENV_VAR, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise PresetError(
            f"{PRESET_OVERRIDES_ENV_VAR} is not valid JSON ({exc.msg} at character {exc.pos}); expected an object "
            'of dotted overrides, e.g. {"pretrain.total_tokens": 6144}'
        ) from None
    if not isinstance(value, dict):
        raise PresetError(
            f"{PRESET_OVERRIDES_ENV_VAR} must be a JSON object of dotted overrides, "
            f'e.g. {{"pretrain.total_tokens": 6144}}; got a {type(value).__name__}'
        )
    return value


def get_preset(name: str | None = None, overrides: Mapping[str, Any] | None = None) -> Preset:
    """Look up a preset by name (default: $KEXAONE_PRESET, else tiny), apply $KEXAONE_PRESET_OVERRIDES, then
    ``overrides`` (run config), validate."""
    name = name or os.environ.get(PRESET_ENV_VAR) or DEFAULT_PRESET
    if name not in PRESETS:
        raise PresetError(f"unknown preset {name!r} (known: {', '.join(PRESET_NAMES)})")
    preset = PRESETS[name]()
    from_env = env_overrides()
    if from_env:
        try:
            preset = preset.with_overrides(from_env)
        except PresetError as exc:
            raise PresetError(f"{PRESET_OVERRIDES_ENV_VAR}: {exc}") from None
    if overrides:
        preset = preset.with_overrides(overrides)
    return preset.validate()


def leaf_paths(preset: Preset) -> list[str]:
    """Dotted paths of every leaf value (each has exactly one source, ``preset_sources``)."""
    out: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and not prefix.endswith(
            ("mixture", "mixtures", "threshold", "allocation", "fractions", "selector", "families", "conversations")
        ):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else key)
        else:
            out.append(prefix)

    walk({k: v for k, v in preset.to_dict().items() if k != "name"}, "")
    return out


__all__ = [
    "CORPUS_DOMAINS",
    "DEFAULT_PRESET",
    "LANGUAGES",
    "PRESETS",
    "PRESET_ENV_VAR",
    "PRESET_NAMES",
    "PRESET_OVERRIDES_ENV_VAR",
    "SOURCES",
    "C4Args",
    "CodeQualityArgs",
    "ComputeArgs",
    "ContextArgs",
    "ContextStageArgs",
    "CorpusPipelineArgs",
    "DataArgs",
    "DomainFilterArgs",
    "EvalArgs",
    "FineWebQualityArgs",
    "GopherQualityArgs",
    "GopherRepetitionArgs",
    "MinhashArgs",
    "ModelArgs",
    "Preset",
    "PresetError",
    "PretrainArgs",
    "SyntheticArgs",
    "TokenizerArgs",
    "env_overrides",
    "get_preset",
    "leaf_paths",
    "preset_sources",
]
