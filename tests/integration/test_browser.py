"""The Dagster UI in a real browser: Debian's chromium, headless, driven by Playwright (no browser download),
against the real webserver and daemon (`dagster dev`, what `make ui` runs) over a private instance.

It opens a checkpoint's lineage views (the `upstream_of_pretrain_stage1` job and the checkpoint's Lineage tab)
and checks that the corpus -> checkpoint path is drawn; then it clicks *Materialize* on `raw_corpus_stats`,
waits for the run and checks that the asset page shows the materialization's artifact version and table.
Screenshots (and, on failure, the page's HTML and console) go to ``<tmp>/browser/`` and, with
``KEXAONE_TEST_ARTIFACTS=1``, also to ``test-artifacts/browser/`` at the repository root."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from playwright.sync_api import Page, sync_playwright

from tests.conftest import REPO, dagster_ui

CHROMIUM = Path("/usr/bin/chromium")
CHECKPOINT = "pretrain_stage1"
CHEAP_ASSET = "raw_corpus_stats"
UI_TIMEOUT_MS = 120_000  # 2 shared cores: the first load of the UI alone can take 10-20 s

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason=f"chromium is not installed at {CHROMIUM}: scripts/install_chromium.sh installs Debian's chromium "
        "only as root with apt-get (`make test` runs it; its log is /tmp/kexaone-install-chromium.log)",
    ),
]

ASSET_NODES = "query { assetNodes { assetKey { path } dependencyKeys { path } isObservable groupName } }"
UI_RUNS = """
query { runsOrError(filter: {tags: [{key: "dagster/from_ui", value: "true"}]}) {
  ... on Runs { results { runId assetSelection { path } } } } }
"""
RUN = "query Run($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }"
LATEST = """
query Latest($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(limit: 1) { runId metadataEntries { label
        ... on TextMetadataEntry { text } ... on JsonMetadataEntry { jsonString } } } }
  }
}
"""


def gql(base: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(f"{base}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


@pytest.fixture
def ui(kexaone_env):
    """`dagster dev` (webserver + daemon: the daemon dequeues the runs the UI launches) on a free port over the
    test's own DAGSTER_HOME, KEXAONE_HOME and demo-corpus copy; yields the base URL once the code location is
    loaded."""
    # no sensor launches runs behind the test's back (the local deployment turns automation on by default)
    env = {**os.environ, "KEXAONE_AUTOMATION": "off"}
    with dagster_ui(kexaone_env["tmp"] / "dagster-dev.log", env=env) as base:
        yield base


@pytest.fixture
def artifacts(tmp_path):
    """Where screenshots go: the test's tmp dir; copied to test-artifacts/browser/ with KEXAONE_TEST_ARTIFACTS=1."""
    folder = tmp_path / "browser"
    folder.mkdir()
    yield folder
    if os.environ.get("KEXAONE_TEST_ARTIFACTS", "") not in ("", "0"):
        shutil.copytree(folder, REPO / "test-artifacts" / "browser", dirs_exist_ok=True)


@pytest.fixture
def page(artifacts):
    console: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = browser.new_context(viewport={"width": 1920, "height": 1080})
            # the one-time "Join the Dagster community" dialog would cover the page: mark it as seen
            context.add_init_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")
            page = context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            yield page
            (artifacts / "console.log").write_text("\n".join(console))
        finally:
            browser.close()


@contextlib.contextmanager
def evidence(page: Page, folder: Path, name: str, log: Path):
    """On failure: the page's screenshot and HTML, and the server log's tail in the error."""
    try:
        yield
    except BaseException as error:
        with contextlib.suppress(Exception):
            page.screenshot(path=folder / f"FAILED-{name}.png")
        with contextlib.suppress(Exception):
            (folder / f"FAILED-{name}.html").write_text(page.content())
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise AssertionError(
            f"{name}: {error!r}\n(page saved to {folder}/FAILED-{name}.png/.html; dagster dev log tail:)\n{tail}"
        ) from error


def dismiss_dialogs(page: Page) -> None:
    skip = page.get_by_role("button", name="Skip", exact=True)
    if skip.count() and skip.first.is_visible():
        skip.first.click()


def upstream_closure(base: str, asset: str) -> tuple[set[str], set[str], set[str], int]:
    """(materializable assets, observable sources, the assets' groups, depth in hops) upstream of ``asset``,
    walked over the webserver's own asset graph."""
    nodes = {"/".join(n["assetKey"]["path"]): n for n in gql(base, ASSET_NODES)["assetNodes"]}
    hops, todo = {asset: 0}, [asset]
    while todo:
        name = todo.pop(0)
        for parent in ("/".join(d["path"]) for d in nodes[name]["dependencyKeys"]):
            if parent not in hops:
                hops[parent] = hops[name] + 1
                todo.append(parent)
    sources = {n for n in hops if nodes[n]["isObservable"]}
    assets = set(hops) - sources
    return assets, sources, {nodes[n]["groupName"] for n in assets}, max(hops.values())


def is_drawn(name: str, labels: set[str]) -> bool:
    """A graph node draws its asset's name, or (a long name in a narrow node) its start and end around an ellipsis."""
    if name in labels:
        return True
    for label in labels:
        head, ellipsis, tail = label.partition("…")
        if ellipsis and head and len(head) + len(tail) < len(name) and name.startswith(head) and name.endswith(tail):
            return True
    return False


def visible_labels(page: Page) -> set[str]:
    return {line.strip() for line in page.locator("body").inner_text().splitlines() if line.strip()}


def not_drawn(page: Page, names: set[str]) -> list[str]:
    labels = visible_labels(page)
    return sorted(n for n in names if not is_drawn(n, labels))


def redraw_until_drawn(page: Page, names: set[str], timeout_s: float = UI_TIMEOUT_MS / 1000) -> None:
    """Wait until every name is drawn in the graph. The UI fits the graph into the window once its layout
    arrives, which can race the first paint and leave part of it outside; collapsing and expanding the groups
    (⌥E twice) lays it out, and fits it, again."""
    deadline = time.monotonic() + timeout_s
    while not_drawn(page, names):
        assert time.monotonic() < deadline, f"after {timeout_s:.0f} s, not drawn: {not_drawn(page, names)}"
        for _ in range(20):
            page.wait_for_timeout(1000)
            if not not_drawn(page, names):
                break
        else:
            page.keyboard.press("Alt+KeyE")
            page.wait_for_timeout(1000)
            page.keyboard.press("Alt+KeyE")
    page.wait_for_timeout(1000)  # the zoom-to-fit animation, before a screenshot


def wait_until(predicate, timeout_s: float, what) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"after {timeout_s:.0f} s: {what() if callable(what) else what}"
        time.sleep(1)


def ui_runs(base: str) -> set[tuple[str, tuple[str, ...]]]:
    """(run id, its assets) of every run launched from the UI."""
    runs = gql(base, UI_RUNS)["runsOrError"]["results"]
    return {(r["runId"], tuple(sorted("/".join(a["path"]) for a in r["assetSelection"] or []))) for r in runs}


def wait_for_run(base: str, run_id: str, timeout_s: float = 300) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        status = gql(base, RUN, {"runId": run_id})["runOrError"].get("status")
        if status in ("SUCCESS", "FAILURE", "CANCELED") or time.monotonic() > deadline:
            return status
        time.sleep(1)


def test_lineage_views_and_a_materialization_in_the_browser(ui, page, artifacts, kexaone_env):
    log = kexaone_env["tmp"] / "dagster-dev.log"
    assets, sources, groups, depth = upstream_closure(ui, CHECKPOINT)
    assert groups == {"corpus", "tokenizer", "pretraining"}, groups
    assert {"filtered_corpus", "deduplicated_corpus", "superbpe_tokenizer", CHECKPOINT} <= assets and sources

    # 1. The ready lineage view: the chain job's page draws the checkpoint's upstream closure, one box per asset
    # group at first; "Expand all groups" (⌥E, or the graph's settings) draws every asset of the chain by name.
    job = f"upstream_of_{CHECKPOINT}"
    with evidence(page, artifacts, "job", log):
        page.goto(f"{ui}/locations/kexaone_dag/jobs/{job}", wait_until="domcontentloaded")
        dismiss_dialogs(page)
        page.get_by_text(f"View {len(assets)} assets", exact=True).wait_for()
        page.get_by_text(re.compile(f"^Lineage of the {CHECKPOINT} checkpoint")).wait_for()
        page.get_by_text(sorted(groups)[0], exact=True).filter(visible=True).first.wait_for()  # a group box
        page.keyboard.press("Alt+KeyE")  # Expand all groups
        redraw_until_drawn(page, assets)
        page.screenshot(path=artifacts / f"{job}.png")

    # 2. The checkpoint's Lineage tab, upstream to the sources: every asset from the raw corpus to the checkpoint
    # is a node with its name on it.
    query = urlencode({"view": "lineage", "lineageScope": "upstream", "lineageDepth": depth})
    with evidence(page, artifacts, "lineage", log):
        page.goto(f"{ui}/assets/{CHECKPOINT}?{query}", wait_until="domcontentloaded")
        dismiss_dialogs(page)
        page.get_by_text(CHECKPOINT, exact=True).filter(visible=True).first.wait_for()
        redraw_until_drawn(page, assets | sources)
        page.screenshot(path=artifacts / f"lineage_{CHECKPOINT}.png")

    # 3. A cheap asset from its page: click Materialize, wait for the run, see its metadata there.
    with evidence(page, artifacts, "materialize", log):
        page.set_viewport_size({"width": 1600, "height": 2600})  # the metadata table sits below the fold
        page.goto(f"{ui}/assets/{CHEAP_ASSET}", wait_until="domcontentloaded")
        dismiss_dialogs(page)
        button = page.get_by_role("button").filter(has_text=re.compile(r"^\s*Materialize\s*$"))
        button.wait_for()
        before = ui_runs(ui)
        button.click()
        wait_until(lambda: ui_runs(ui) - before, UI_TIMEOUT_MS / 1000, "no run launched from the UI")
        ((run_id, selection),) = ui_runs(ui) - before
        assert selection == (CHEAP_ASSET,)

        status = wait_for_run(ui, run_id)
        assert status == "SUCCESS", f"run {run_id} launched from the UI ended {status}"

        latest = gql(ui, LATEST, {"path": [CHEAP_ASSET]})["assetOrError"]["assetMaterializations"][0]
        assert latest["runId"] == run_id
        entries = {e["label"]: e for e in latest["metadataEntries"]}
        version = entries["artifact_version"]["text"]
        documents = json.loads(entries["documents_per_source"]["jsonString"])

        page.reload(wait_until="domcontentloaded")
        page.get_by_text("artifact_version", exact=True).filter(visible=True).first.wait_for()
        page.get_by_text(version, exact=True).filter(visible=True).first.wait_for()
        for source, count in documents.items():  # the `sources` table: one row per raw-corpus source
            row = (
                page.get_by_role("row")
                .filter(has=page.get_by_role("cell", name=source, exact=True))
                .filter(has=page.get_by_role("cell", name=str(count), exact=True))
            )
            assert row.count() >= 1, f"no table row for {source} with {count} documents"
        page.get_by_text("artifact_version", exact=True).first.scroll_into_view_if_needed()
        page.screenshot(path=artifacts / f"{CHEAP_ASSET}.png")

    for name in (f"{job}.png", f"lineage_{CHECKPOINT}.png", f"{CHEAP_ASSET}.png"):
        assert (artifacts / name).stat().st_size > 10_000, name
