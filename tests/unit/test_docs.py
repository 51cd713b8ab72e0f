"""The README's promises about the code: its one environment-variable table matches the variables the code
reads (both ways), it stays short, and nothing links outside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from config import get_preset

REPO = Path(__file__).resolve().parents[2]
CODE = (
    "config",
    "kexaone_dag",
    "assets",
    "resources",
    "model",
    "corpus",
    "tokenizer",
    "synthetic",
    "evaluation",
    "kernels",
    "posttrain",
)
VAR = re.compile(r"KEXAONE_[A-Z0-9_]+")


def variables_in_code() -> set[str]:
    found = set()
    for package in CODE:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and VAR.fullmatch(node.value):
                    found.add(node.value)
    return found


def table_rows() -> list[tuple[str, str]]:
    """(variable cell, default cell) of each row of the README's configuration table."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Configuration (environment variables)", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| `KEXAONE_")]
    return [(cells[1], cells[2]) for cells in rows]


def test_the_readme_names_every_variable_the_code_reads_and_no_other():
    rows = table_rows()
    named = {v for cell, _ in rows for v in VAR.findall(cell)}
    mentioned = named | {v for _, default in rows for v in VAR.findall(default)}  # e.g. an API key's variable
    code = variables_in_code()
    assert code - mentioned == set(), "read by the code, missing from the README table"
    assert named - code == set(), "in the README table, read by no code"


def test_the_readme_is_short_and_links_only_inside_the_repository():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        body = page.read_text()
        assert "../shared" not in body, f"{page.name} points outside the repository"
        for path in re.findall(
            r"`((?:docs|config|model|corpus|tokenizer|synthetic|evaluation|kernels|posttrain|assets|"
            r"resources|kexaone_dag|tests|bench|deploy|scripts)/[\w./-]+)`",
            body,
        ):
            assert (REPO / path.rstrip("/")).exists(), f"{page.name} names {path}, which does not exist"


def test_the_settings_page_is_generated_from_the_current_config():
    from config.settings_table import settings_markdown

    page = (REPO / "docs" / "settings.md").read_text()
    assert page == settings_markdown(), "docs/settings.md is stale: python -m config.settings_table > docs/settings.md"


def test_the_release_page_names_every_tensor_of_the_hf_export():
    from model.hf_export import name_table_markdown

    page = (REPO / "docs" / "release.md").read_text()
    generated = page.split("<!-- generated: model.hf_export.name_table_markdown(k-exaone-236b) -->\n")[1]
    assert generated.split("<!-- /generated -->")[0] == name_table_markdown(get_preset("k-exaone-236b").model)
