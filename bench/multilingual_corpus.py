"""A tokenizer benchmark corpus of real text that nobody in this project wrote, built from installed files.

    .venv/bin/python -m bench.multilingual_corpus OUT            # build from what is installed under /
    .venv/bin/python -m bench.multilingual_corpus OUT --root /tmp/debroot --root /   # + an unpacked prefix
    .venv/bin/python -m bench.multilingual_corpus --debian-packages   # the Debian packages it reads
    .venv/bin/python -m bench.multilingual_corpus --fetch-debs DIR    # setup: download + unpack them
    .venv/bin/python -m bench.multilingual_corpus OUT --root DIR/root  # then build from DIR/root

Nothing is downloaded: every part is read from files that a package manager installed (Debian packages
under a root, the Python packages of this interpreter and its standard library). A part whose files are
missing is skipped and named in ``provenance.json`` with the command that would install it. The Debian
parts can also be unpacked without installing them (``apt-get download PKG && dpkg-deb -x PKG.deb ROOT``)
and read with ``--root ROOT``; ``--fetch-debs DIR`` does that for every package, as an explicit setup step
(the build itself never downloads).

Domains and parts (license as stated by each package's copyright file / metadata; ``provenance.json`` has
the exact package versions, paths and byte counts):

* en, ko, ja, de, es, vi: the LibreOffice help (Debian ``libreoffice-help-<lang>``, MPL-2.0), the GNOME
  user help (``gnome-user-docs``, CC-BY-SA-3.0), the GIMP help (``gimp-help-<lang>``, GFDL-1.2; no vi in
  Debian) and the Debian Administrator's Handbook (``debian-handbook``, GPL-2.0+ or CC-BY-SA-3.0). ko
  adds the Debian FAQ (``debian-faq-ko``), vi the New Maintainers' Guide (``maint-guide-vi``, GPL-2.0+).
  ko, ja, de, es, vi also: the translated messages of the gettext catalogs the image ships
  (/usr/share/locale, license of each owning package, owners recorded) and of LibreOffice's UI
  (``libreoffice-l10n-<lang>``, MPL-2.0): UI sentences, not running prose, cut into ~8 KB documents.
  Untranslated paragraphs (the help falls back to English) and code examples are dropped by the
  project's language ID (``corpus.lid``), paragraph by paragraph (runs of short ones judged together).
* en also: docstrings of CPython's standard library (PSF-2.0).
* stem: docstrings of sympy, mpmath, numpy and networkx (BSD-3-Clause) and the LibreOffice Math help.
* code: Python sources of the standard library (PSF-2.0) and of the installed packages (at most 200 KB per
  package; each package's version and license from its metadata), C headers under /usr/include (owning
  Debian packages recorded with file counts; their licenses are in /usr/share/doc/<pkg>/copyright).

Output: ``OUT/<domain>/train.jsonl`` and ``OUT/<domain>/heldout.jsonl`` (one ``{"id", "text", "part"}``
per line), ``OUT/provenance.json`` (per part: domain, package, manager, version, license, copyright file,
paths, documents, bytes kept and dropped) and ``OUT/stats.json``. Documents are exactly de-duplicated by
the hash of their NFC text, and that hash decides the held-out split (``--held-out``, default 10 %), so a
document and its duplicates always land on the same side and the split does not depend on file order.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import html
import json
import re
import subprocess
import sys
import sysconfig
import unicodedata
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator

DOMAINS = ("en", "ko", "ja", "de", "es", "vi", "stem", "code")
PROSE_LANGUAGES = ("en", "ko", "ja", "de", "es", "vi")
HANDBOOK_CODES = {"en": "en-US", "ko": "ko-KR", "ja": "ja-JP", "de": "de-DE", "es": "es-ES", "vi": "vi-VN"}
GIMP_LANGUAGES = ("en", "ko", "ja", "de", "es")  # Debian ships gimp-help-<lang> for these (not vi)
LO_CODES = {"en": "en-US", "ko": "ko", "ja": "ja", "de": "de", "es": "es", "vi": "vi"}
GNOME_CODES = {"en": "C", "ko": "ko", "ja": "ja", "de": "de", "es": "es", "vi": "vi"}
STEM_PACKAGES = ("sympy", "mpmath", "numpy", "networkx")
MIN_DOC_CHARS = 200
LID_MIN_CHARS = 25  # shorter paragraphs (menu paths, key names) are judged together with their neighbours

Doc = tuple[str, str]  # (id, text)


@dataclass
class Part:
    name: str
    domain: str
    package: str
    manager: str  # debian | python-stdlib | pypi | image
    license: str
    install: str  # how to get the files, for a part that is missing
    docs: Callable[[list[Path]], Iterator[Doc]]
    language: str | None = None  # paragraphs in another language are dropped
    max_bytes: int | None = None
    # filled while building
    stats: dict = field(default_factory=dict)


# -- extractors ----------------------------------------------------------------------------------

_BLOCK = re.compile(r"<(h[1-6]|p|li|td|th|pre|div(?= class=\"para\"))\b[^>]*>(.*?)</\1>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"[ \t\r\f\v]+")


def _clean(fragment: str) -> str:
    text = html.unescape(_TAG.sub("", fragment))
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.splitlines()).strip()


def libreoffice_page(path: Path) -> list[str]:
    """The paragraphs of one LibreOffice help page (its DisplayArea: headings, paragraphs, list items)."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    start = raw.find('id="DisplayArea"')
    body = raw[start:] if start >= 0 else raw
    body = re.sub(r"<(script|style)\b.*?</\1>", "", body, flags=re.S | re.I)
    debug = body.find('id="DEBUG"')  # LibreOffice's "Help content debug info" footer
    body = body[:debug] if debug >= 0 else body
    return [t for t in (_clean(m.group(2)) for m in _BLOCK.finditer(body)) if t]


_MALLARD_BLOCKS = {"title", "desc", "p", "code", "screen"}


def mallard_page(path: Path) -> list[str]:
    """The paragraphs of one GNOME help (Mallard XML) page; <info> metadata (credits, links) is skipped."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return []
    out: list[str] = []

    def walk(el, in_info: bool) -> None:
        tag = el.tag.rsplit("}", 1)[-1]
        if tag == "info":
            return
        if tag in _MALLARD_BLOCKS:
            text = _SPACES.sub(" ", " ".join("".join(el.itertext()).split())).strip()
            if text:
                out.append(text)
            return
        for child in el:
            walk(child, in_info)

    walk(root, False)
    return out


def gettext_catalog(path: Path) -> list[str]:
    """The translated messages (msgstr) of one compiled gettext catalog, in msgid order."""
    import gettext

    try:
        with open(path, "rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog  # noqa: SLF001 - the parsed msgid -> msgstr map
    except (OSError, ValueError, UnicodeDecodeError, KeyError):
        return []
    keys = sorted((k for k in catalog if k), key=lambda k: k if isinstance(k, str) else f"{k[0]}\x00{k[1]}")
    return [v.strip() for k in keys if isinstance(v := catalog[k], str) and v.strip()]


_MO_OWNERS: dict[str, str] = {}


def _gettext_docs(folder_rel: str, prefix: str, image_only: bool):
    """Documents from the compiled catalogs in one folder; ``image_only`` reads the running system's /."""

    def docs(roots: list[Path]) -> Iterator[Doc]:
        folder = Path(folder_rel) if image_only else _first(roots, folder_rel)
        paths = sorted(folder.glob("*.mo")) if folder and folder.exists() else []
        if image_only:
            _MO_OWNERS.update({Path(p).name: pkg for p, pkg in _dpkg_owners(paths).items()})
        for path in paths:
            if path.name.startswith("iso_"):  # iso-codes: names of countries, languages, currencies (lists)
                continue
            # A catalog is thousands of unrelated messages: cut it into ~8 KB documents, so a few large
            # catalogs do not decide the held-out split alone.
            chunk: list[str] = []
            size = part = 0
            for message in gettext_catalog(path):
                chunk.append(message)
                size += len(message)
                if size >= 8000:
                    yield f"{prefix}:{path.name}:{part}", "\n\n".join(chunk)
                    chunk, size, part = [], 0, part + 1
            if chunk:
                yield f"{prefix}:{path.name}:{part}", "\n\n".join(chunk)

    return docs


def _dpkg_owners(paths: list[Path]) -> dict[str, str]:
    if not paths:
        return {}
    try:
        out = subprocess.run(["dpkg", "-S", *map(str, paths)], capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    owners = {}
    for line in out.splitlines():
        pkg, _, path = line.partition(": ")
        owners[path] = pkg
    return owners


def _parse_python(path: Path) -> tuple[str, ast.AST] | None:
    try:
        source = path.read_text(encoding="utf-8")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return source, ast.parse(source)
    except (UnicodeDecodeError, SyntaxError, ValueError, RecursionError, OSError):
        return None


def docstrings(path: Path, min_chars: int = 300) -> list[str]:
    parsed = _parse_python(path)
    if parsed is None:
        return []
    out = []
    for node in ast.walk(parsed[1]):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and len(doc) >= min_chars:
                out.append(doc)
    return out


# -- locating the parts --------------------------------------------------------------------------


def _first(roots: list[Path], rel: str) -> Path | None:
    for root in roots:
        p = root / rel.lstrip("/")
        if p.exists():
            return p
    return None


def _paged(folder_rel: str, pattern: str, extract: Callable[[Path], list[str]], prefix: str):
    def docs(roots: list[Path]) -> Iterator[Doc]:
        folder = _first(roots, folder_rel)
        if folder is None:
            return
        for path in sorted(folder.rglob(pattern)):
            paragraphs = extract(path)
            if paragraphs:
                yield f"{prefix}:{path.relative_to(folder)}", "\n\n".join(paragraphs)

    return docs


def _stdlib() -> Path:
    return Path(sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["stdlib"])


def _stdlib_files() -> Iterator[Path]:
    root = _stdlib()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if rel[0] in ("site-packages", "test", "idlelib", "lib2to3") or "tests" in rel:
            continue
        yield path


def _stdlib_docstrings(roots: list[Path]) -> Iterator[Doc]:
    root = _stdlib()
    for path in _stdlib_files():
        for i, doc in enumerate(docstrings(path)):
            yield f"stdlib-doc:{path.relative_to(root)}:{i}", doc


def _stdlib_sources(roots: list[Path]) -> Iterator[Doc]:
    root = _stdlib()
    for path in _stdlib_files():
        parsed = _parse_python(path)
        if parsed and 500 < len(parsed[0]) < 200_000:
            yield f"stdlib-src:{path.relative_to(root)}", parsed[0]


def _package_files(dist_name: str) -> list[Path]:
    dist = metadata.distribution(dist_name)
    return sorted(Path(dist.locate_file(f)) for f in (dist.files or []) if str(f).endswith(".py"))


def _stem_docstrings(roots: list[Path]) -> Iterator[Doc]:
    purelib = Path(sysconfig.get_paths()["purelib"])
    for name in STEM_PACKAGES:
        try:
            files = _package_files(name)
        except metadata.PackageNotFoundError:
            continue
        for path in files:
            if "tests" in path.parts or "testing" in path.parts:
                continue
            for i, doc in enumerate(docstrings(path, min_chars=200)):
                yield f"{name}-doc:{path.relative_to(purelib)}:{i}", doc


def _package_license(dist: metadata.Distribution) -> str:
    meta = dist.metadata
    if meta.get("License-Expression"):
        return meta["License-Expression"]
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if classifiers:
        return "; ".join(classifiers)
    lines = (meta.get("License") or "").strip().splitlines()
    return lines[0][:80] if lines else "unstated in metadata"


# Python packages whose sources go into the code domain: the project's own dependencies' sources are
# real code written elsewhere; the project itself is excluded (it is "text we wrote").
_CODE_EXCLUDE = {"kexaone-dag"}


def _site_sources(roots: list[Path]) -> Iterator[Doc]:
    purelib = Path(sysconfig.get_paths()["purelib"])
    for dist in sorted(metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = (dist.metadata["Name"] or "").lower()
        if name in _CODE_EXCLUDE or name in STEM_PACKAGES:
            continue
        size = 0
        for f in sorted(str(f) for f in dist.files or [] if str(f).endswith(".py")):
            if size >= PER_PACKAGE_CODE_BYTES:
                break
            path = Path(dist.locate_file(f))
            parsed = _parse_python(path)
            if parsed and 500 < len(parsed[0]) < 200_000:
                size += len(parsed[0].encode("utf-8"))
                _SITE_LICENSES.setdefault(name, (dist.version, _package_license(dist)))
                yield f"py-src:{name}:{path.relative_to(purelib) if path.is_relative_to(purelib) else f}", parsed[0]


_SITE_LICENSES: dict[str, tuple[str, str]] = {}
PER_PACKAGE_CODE_BYTES = 200_000  # so the code domain spreads over many packages, not the first few by name


_HEADER_OWNERS: dict[str, int] = {}


def _c_headers(roots: list[Path]) -> Iterator[Doc]:
    root = Path("/usr/include")
    used = []
    try:
        for path in sorted(root.rglob("*.h")):
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if 500 < len(text) < 200_000:
                used.append(path)
                yield f"c-header:{path.relative_to(root)}", text
    finally:  # the part may stop early at its cap: count owners of the headers actually read
        owners = _dpkg_owners(used)
        for pkg in owners.values():
            _HEADER_OWNERS[pkg] = _HEADER_OWNERS.get(pkg, 0) + 1


def parts() -> list[Part]:
    out = []
    for lang in PROSE_LANGUAGES:
        lo, gn = LO_CODES[lang], GNOME_CODES[lang]
        pkg = f"libreoffice-help-{lo.lower()}"
        out.append(
            Part(
                f"libreoffice-help-{lang}",
                lang,
                pkg,
                "debian",
                "MPL-2.0 (some files Apache-2.0; /usr/share/doc/" + pkg + "/copyright)",
                f"apt-get install {pkg}",
                _paged(f"/usr/share/libreoffice/help/{lo}/text", "*.html", libreoffice_page, f"lo-{lang}"),
                language=lang,
            )
        )
        out.append(
            Part(
                f"gnome-help-{lang}",
                lang,
                "gnome-user-docs",
                "debian",
                "CC-BY-SA-3.0 (/usr/share/doc/gnome-user-docs/copyright)",
                "apt-get install gnome-user-docs",
                _paged(f"/usr/share/help/{gn}/gnome-help", "*.page", mallard_page, f"gnome-{lang}"),
                language=lang,
            )
        )
    for lang in PROSE_LANGUAGES:
        if lang in GIMP_LANGUAGES:
            pkg = f"gimp-help-{lang}"
            out.append(
                Part(
                    f"gimp-help-{lang}",
                    lang,
                    pkg,
                    "debian",
                    "GFDL-1.2 (upstream gimp-help; Debian's copyright file is in gimp-help-common, not checked)",
                    f"apt-get install {pkg}",
                    _paged(f"/usr/share/gimp/2.0/help/{lang}", "*.html", libreoffice_page, f"gimp-{lang}"),
                    language=lang,
                )
            )
        out.append(
            Part(
                f"debian-handbook-{lang}",
                lang,
                "debian-handbook",
                "debian",
                "GPL-2.0+ or CC-BY-SA-3.0 (/usr/share/doc/debian-handbook/copyright)",
                "apt-get install debian-handbook",
                _paged(
                    f"/usr/share/doc/debian-handbook/html/{HANDBOOK_CODES[lang]}",
                    "*.html",
                    libreoffice_page,
                    f"handbook-{lang}",
                ),
                language=lang,
            )
        )
        if lang != "en":
            out.append(
                Part(
                    f"image-gettext-{lang}",
                    lang,
                    "the image's packages (/usr/share/locale/*/LC_MESSAGES/*.mo)",
                    "image",
                    "per owning Debian package, see 'owners' (mostly GPL/LGPL; /usr/share/doc/<pkg>/copyright)",
                    "(the image)",
                    _gettext_docs(f"/usr/share/locale/{lang}/LC_MESSAGES", f"mo-{lang}", image_only=True),
                    language=lang,
                )
            )
        if lang != "en":
            pkg = f"libreoffice-l10n-{lang}"
            out.append(
                Part(
                    f"libreoffice-l10n-{lang}",
                    lang,
                    pkg,
                    "debian",
                    "MPL-2.0 (/usr/share/doc/" + pkg + "/copyright)",
                    f"apt-get install {pkg}",
                    _gettext_docs(
                        f"/usr/lib/libreoffice/program/resource/{lang}/LC_MESSAGES", f"lo-ui-{lang}", image_only=False
                    ),
                    language=lang,
                )
            )
    out.append(
        Part(
            "debian-faq-ko",
            "ko",
            "debian-faq-ko",
            "debian",
            "SPI's verbatim-copy-and-modify permission notice (/usr/share/doc/debian-faq-ko/copyright)",
            "apt-get install debian-faq-ko",
            _paged("/usr/share/doc/debian/FAQ/ko", "*.html", libreoffice_page, "debian-faq-ko"),
            language="ko",
        )
    )
    out.append(
        Part(
            "maint-guide-vi",
            "vi",
            "maint-guide-vi",
            "debian",
            "GPL-2.0+ (/usr/share/doc/maint-guide-vi/copyright)",
            "apt-get install maint-guide-vi",
            _paged("/usr/share/doc/maint-guide-vi/html", "*.html", libreoffice_page, "maint-guide-vi"),
            language="vi",
        )
    )
    out.append(
        Part(
            "cpython-stdlib-docstrings",
            "en",
            "cpython",
            "python-stdlib",
            "PSF-2.0",
            "(ships with Python)",
            _stdlib_docstrings,
        )
    )
    out.append(
        Part(
            "libreoffice-math-help",
            "stem",
            "libreoffice-help-en-us",
            "debian",
            "MPL-2.0 (/usr/share/doc/libreoffice-help-en-us/copyright)",
            "apt-get install libreoffice-help-en-us",
            _paged("/usr/share/libreoffice/help/en-US/text/smath", "*.html", libreoffice_page, "lo-smath"),
        )
    )
    out.append(
        Part(
            "stem-docstrings",
            "stem",
            ",".join(STEM_PACKAGES),
            "pypi",
            "BSD-3-Clause (sympy, mpmath, numpy, networkx; each package's metadata)",
            "(dependencies of the project's environment)",
            _stem_docstrings,
        )
    )
    out.append(
        Part(
            "cpython-stdlib-sources",
            "code",
            "cpython",
            "python-stdlib",
            "PSF-2.0",
            "(ships with Python)",
            _stdlib_sources,
            max_bytes=15_000_000,
        )
    )
    out.append(
        Part(
            "site-packages-sources",
            "code",
            "installed PyPI packages",
            "pypi",
            "per package, see 'packages' (from each distribution's metadata)",
            "(the project's environment)",
            _site_sources,
            max_bytes=20_000_000,
        )
    )
    out.append(
        Part(
            "c-headers",
            "code",
            "Debian -dev packages under /usr/include",
            "image",
            "per owning Debian package (mostly LGPL-2.1+/GPL/BSD/MIT; /usr/share/doc/<pkg>/copyright)",
            "(the image)",
            _c_headers,
            max_bytes=10_000_000,
        )
    )
    return out


# The libreoffice-math help also sits inside the en help; keep it out of en so STEM stays its own domain.
_EN_EXCLUDE = re.compile(r"^lo-en:smath/")


# -- building ------------------------------------------------------------------------------------


def doc_hash(text: str) -> str:
    return hashlib.sha256(unicodedata.normalize("NFC", text).encode("utf-8")).hexdigest()


def is_held_out(digest: str, fraction: float) -> bool:
    return int(digest[:8], 16) / 2**32 < fraction


def debian_version(pkg: str, roots: list[Path]) -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout:
            return out.stdout
    except (OSError, subprocess.TimeoutExpired):
        pass
    changelog = _first(roots, f"/usr/share/doc/{pkg}/changelog.Debian.gz") or _first(
        roots, f"/usr/share/doc/{pkg}/changelog.gz"
    )
    if changelog:
        with gzip.open(changelog, "rt", errors="replace") as f:
            m = re.match(r"\S+ \(([^)]+)\)", f.readline())
            return m.group(1) + " (unpacked, not installed)" if m else None
    return None


class LanguageGate:
    """Keeps the paragraphs of a document that the project's language ID puts in the part's language."""

    def __init__(self) -> None:
        from corpus.lid import Py3LangidLID

        self.lid = Py3LangidLID()

    def filter(self, text: str, language: str) -> tuple[str, int]:
        """Paragraphs of LID_MIN_CHARS or more are judged alone; a run of shorter ones (headings, table
        cells, menu names) is judged as one block, and kept unjudged only when the whole run is shorter."""
        kept, dropped = [], 0
        run: list[str] = []

        def judge(block: list[str]) -> None:
            nonlocal dropped
            joined = "\n".join(block)
            if len(joined) >= LID_MIN_CHARS and self.lid.classify(joined)[0] != language:
                dropped += len(joined.encode("utf-8"))
            else:
                kept.extend(block)

        for paragraph in text.split("\n\n"):
            if len(paragraph) >= LID_MIN_CHARS:
                if run:
                    judge(run)
                    run = []
                judge([paragraph])
            else:
                run.append(paragraph)
        if run:
            judge(run)
        return "\n\n".join(kept), dropped


def build(out: Path, roots: list[Path], held_out: float, only: set[str] | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    gate = LanguageGate()
    seen: set[str] = set()
    files = {}
    for domain in DOMAINS:
        (out / domain).mkdir(exist_ok=True)
        files[domain] = (open(out / domain / "train.jsonl", "w"), open(out / domain / "heldout.jsonl", "w"))
    provenance = []
    try:
        for part in parts():
            if only and part.domain not in only:
                continue
            n_docs = n_bytes = n_dropped = n_dups = n_short = n_held = held_bytes = 0
            documents = part.docs(roots)
            for doc_id, text in documents:
                if part.domain == "en" and _EN_EXCLUDE.match(doc_id):
                    continue
                if part.language:
                    text, dropped = gate.filter(text, part.language)
                    n_dropped += dropped
                if len(text) < MIN_DOC_CHARS:
                    n_short += 1
                    continue
                digest = doc_hash(text)
                if digest in seen:
                    n_dups += 1
                    continue
                seen.add(digest)
                held = is_held_out(digest, held_out)
                size = len(text.encode("utf-8"))
                files[part.domain][held].write(json.dumps({"id": doc_id, "text": text, "part": part.name}) + "\n")
                n_docs += 1
                n_bytes += size
                n_held += held
                held_bytes += size if held else 0
                if part.max_bytes and n_bytes >= part.max_bytes:
                    break
            documents.close()  # a generator stopped at its cap runs its clean-up now
            entry = {
                "part": part.name,
                "domain": part.domain,
                "package": part.package,
                "manager": part.manager,
                "license": part.license,
                "documents": n_docs,
                "bytes": n_bytes,
                "held_out_documents": n_held,
                "held_out_bytes": held_bytes,
                "bytes_dropped_by_language_id": n_dropped,
                "documents_too_short": n_short,
                "exact_duplicates": n_dups,
                "cap_bytes": part.max_bytes,
            }
            if part.manager == "debian":
                entry["version"] = debian_version(part.package, roots)
                entry["copyright"] = str(_first(roots, f"/usr/share/doc/{part.package}/copyright") or "")
            elif part.manager == "python-stdlib":
                entry["version"] = sys.version.split()[0]
                entry["path"] = str(_stdlib())
            elif part.name == "stem-docstrings":
                entry["versions"] = {n: _version(n) for n in STEM_PACKAGES}
            elif part.name.startswith("image-gettext-"):
                entry["owners"] = dict(sorted(_MO_OWNERS.items()))
            elif part.name == "c-headers":
                entry["owners"] = dict(sorted(_HEADER_OWNERS.items(), key=lambda kv: -kv[1]))
            elif part.name == "site-packages-sources":
                licenses = sorted(_SITE_LICENSES.items())
                entry["packages"] = {n: {"version": v, "license": lic} for n, (v, lic) in licenses}
            if n_docs == 0:
                entry["missing"] = f"no files found; install with: {part.install}"
            provenance.append(entry)
            print(f"{part.name}: {n_docs} docs, {n_bytes / 1e6:.2f} MB", file=sys.stderr)
    finally:
        for train, held in files.values():
            train.close()
            held.close()
    stats = {
        d: {
            "train_bytes": sum(p["bytes"] - p["held_out_bytes"] for p in provenance if p["domain"] == d),
            "held_out_bytes": sum(p["held_out_bytes"] for p in provenance if p["domain"] == d),
        }
        for d in DOMAINS
    }
    meta = {"roots": [str(r) for r in roots], "held_out_fraction": held_out, "split": "sha256(NFC text)"}
    (out / "provenance.json").write_text(json.dumps({**meta, "parts": provenance}, indent=1, ensure_ascii=False))
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    return stats


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def read_split(folder: Path, domain: str, split: str) -> Iterator[Doc]:
    """The (id, text) documents of one domain's split ("train" or "heldout") of a built corpus."""
    with open(folder / domain / f"{split}.jsonl", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            yield record["id"], record["text"]


def debian_packages() -> list[str]:
    """Every Debian package a part reads (to install, or to unpack with dpkg-deb -x into a --root)."""
    names = [name for part in parts() if part.manager == "debian" for name in [part.install.split()[-1]]]
    return sorted(set(names))


def fetch_debs(folder: Path, packages: list[str] | None = None) -> tuple[Path, list[str]]:
    """Setup step (never run by the benchmark): ``apt-get download`` every Debian package a part reads into
    ``FOLDER/debs`` and unpack it with ``dpkg-deb -x`` into ``FOLDER/root`` (no install, no root needed for
    the unpacking); then build with ``--root FOLDER/root``. Packages already downloaded or unpacked are
    skipped, so it can be re-run. Returns the root and the packages that could not be fetched."""
    debs, root = folder / "debs", folder / "root"
    done = root / ".unpacked"  # one marker per unpacked package
    debs.mkdir(parents=True, exist_ok=True)
    done.mkdir(parents=True, exist_ok=True)
    failed = []
    for pkg in packages or debian_packages():
        found = sorted(debs.glob(f"{pkg}_*.deb"))
        if not found:
            proc = subprocess.run(["apt-get", "download", pkg], cwd=debs, capture_output=True, text=True)
            found = sorted(debs.glob(f"{pkg}_*.deb"))
            if proc.returncode != 0 or not found:
                print(f"{pkg}: apt-get download failed: {proc.stderr.strip()[-300:]}", file=sys.stderr)
                failed.append(pkg)
                continue
        if not (done / pkg).exists():
            subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(root)], check=True)
            (done / pkg).write_text(found[-1].name + "\n")
        print(f"{pkg}: {found[-1].name}", file=sys.stderr)
    return root, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--debian-packages", action="store_true", help="print the Debian packages read, and exit")
    parser.add_argument("--root", action="append", type=Path, help="where to look for /usr/share (default /)")
    parser.add_argument("--held-out", type=float, default=0.1)
    parser.add_argument("--domains", help="comma-separated subset of " + ",".join(DOMAINS))
    parser.add_argument(
        "--fetch-debs",
        type=Path,
        metavar="DIR",
        help="setup step: apt-get download + dpkg-deb -x the Debian packages into DIR/root (skips what is "
        "already there), then exit; build with --root DIR/root",
    )
    args = parser.parse_args()
    if args.fetch_debs:
        root, failed = fetch_debs(args.fetch_debs)
        print(f"unpacked into {root}; build with: python -m bench.multilingual_corpus OUT --root {root}")
        if failed:
            sys.exit(f"could not fetch: {' '.join(failed)}")
        return
    if args.debian_packages or args.out is None:
        print("\n".join(debian_packages()))
        return
    only = set(args.domains.split(",")) if args.domains else None
    stats = build(args.out, args.root or [Path("/")], args.held_out, only)
    for domain, s in stats.items():
        print(f"{domain:5s} train {s['train_bytes'] / 1e6:7.2f} MB  held-out {s['held_out_bytes'] / 1e6:6.2f} MB")


if __name__ == "__main__":
    main()
