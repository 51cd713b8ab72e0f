"""Every setting of both presets with its value and source, as one markdown page (``docs/settings.md``).

Regenerate with ``python -m config.settings_table > docs/settings.md`` (``tests/unit/test_docs.py`` checks
the page is current).
"""

from __future__ import annotations

import json
from typing import Any

from config import leaf_paths, preset_sources
from config.k_exaone_236b import k_exaone_236b
from config.tiny import tiny


def leaf_values(preset: Any) -> dict[str, Any]:
    tree = preset.to_dict()
    out = {}
    for path in leaf_paths(preset):
        node = tree
        for part in path.split("."):
            node = node[part]
        out[path] = node
    return out


def _cell(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    text = text if len(text) <= 60 else text[:57] + "..."
    return text.replace("|", "\\|")


def settings_markdown() -> str:
    full, small = k_exaone_236b(), tiny()
    full_values, tiny_values = leaf_values(full), leaf_values(small)
    full_sources, tiny_sources = preset_sources(full.name), preset_sources(small.name)
    lines = [
        "# Settings: every value of both presets and where it comes from",
        "",
        "Generated from `config/` by `python -m config.settings_table > docs/settings.md` (a test checks it is",
        "current). `report` = the K-EXAONE technical report; `choice:` = a project decision where the report is",
        "silent; `tiny:` = the 2-core CPU scale. A `tiny` cell is empty where tiny keeps the full preset's value.",
        "Every field is read by the code it configures or refused by validation",
        "(`tests/unit/test_settings_are_read.py`).",
    ]
    section = None
    for path in sorted(set(full_values) | set(tiny_values), key=lambda p: (p.split(".")[0], p)):
        top = path.split(".")[0]
        if top != section:
            section = top
            lines += [
                "",
                f"## {top}",
                "",
                "| setting | k-exaone-236b | source | tiny | tiny's source |",
                "|---|---|---|---|---|",
            ]
        fv = _cell(full_values[path]) if path in full_values else "(absent)"
        tv = tiny_values.get(path, "(absent)")
        same = path in full_values and tv == full_values[path]
        t_cell = "" if same else (_cell(tv) if tv != "(absent)" else tv)
        t_src = "" if same or path not in tiny_sources else tiny_sources[path].replace("|", "\\|")
        f_src = full_sources.get(path, "").replace("|", "\\|")
        lines.append(f"| `{path[len(top) + 1 :]}` | {fv} | {f_src} | {t_cell} | {t_src} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
