"""The built book: table of contents, generated pages, and a real browser opening the pages offline."""

import json, os, re, shutil, subprocess

import pytest
import yaml

from conftest import REPO
from dlr_nb.runner import discover

BOOK = REPO / "book"
HTML = BOOK / "_build" / "html"
PAGES = {
    "index": "intro.html",  # index.html is a redirect to the root page, intro.html
    "reproduce": "reproduce.html",
    "ledger": "ledger.html",
    "environment": "results/environment.html",
    "api": "api/index.html",
    "api_core": "api/nbs/00_core.html",
}
# `make test` builds the book before pytest; run alone, pytest skips what needs the build instead of failing
needs_build = pytest.mark.skipif(
    not (HTML / "index.html").is_file(), reason="the book is not built: run `make test` or `dlr book --profile smoke`"
)


def _toc_files():
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    files = []

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))

    for part in toc["parts"]:
        assert part.get("chapters"), f"part {part['caption']} has no chapters"
        walk(part["chapters"])
    return files


def test_every_experiment_is_in_the_toc():
    files = _toc_files()
    for name in discover(BOOK / "experiments"):
        assert f"results/{name}" in files, f"experiment {name} has no page in _toc.yml"
    for f in files:
        if not f.startswith(("results/", "api/")):
            assert any((BOOK / f"{f}{ext}").exists() for ext in (".md", ".ipynb")), f"toc names a missing page {f}"


@needs_build
def test_book_was_built_with_all_pages():
    assert 'url=intro.html' in (HTML / "index.html").read_text()
    for page in PAGES.values():
        assert (HTML / page).is_file(), f"{page} missing: run `dlr book` first"
    ledger = (HTML / "ledger.html").read_text()
    assert "claims hold" in ledger and "env.seeded_repeat" in ledger
    api = (HTML / "api" / "index.html").read_text()
    for mod in ("core", "data", "runner", "book", "cli"):
        assert f"dlr_nb.{mod}" in api
    core = (HTML / "api" / "nbs" / "00_core.html").read_text()
    assert "#| export" not in core and "seed_everything" in core and "Seeds" in core


@needs_build
def test_no_external_urls_in_built_pages():
    "No page loads a script, style, image or font from outside the build (links to elsewhere are fine)."
    pattern = re.compile(r'<(?:script|img|link|iframe|source)\b[^>]*\b(?:src|href)="((?:https?:)?//[^"]+)"', re.I)
    for page in HTML.rglob("*.html"):
        for m in pattern.finditer(page.read_text(errors="ignore")):
            tag = m.group(0)
            if tag.lower().startswith("<link") and not re.search(
                r'rel="(stylesheet|preload|icon|modulepreload|preconnect|dns-prefetch)"', tag
            ):
                continue
            pytest.fail(f"{page.relative_to(HTML)} loads {m.group(1)}")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
_PROBE = """<script>
window.addEventListener('load', () => setTimeout(() => {
  const urls = performance.getEntriesByType('resource').map(e => e.name);
  const d = document.createElement('pre'); d.id = 'dlr-probe';
  d.textContent = JSON.stringify({resources: urls, math: document.querySelectorAll('mjx-container').length,
                                  images: [...document.images].map(i => [i.src, i.complete && i.naturalWidth > 0])});
  document.body.appendChild(d);
}, 4000));
</script>"""


def _chromium(*args, timeout=90):
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--hide-scrollbars",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=timeout)


@needs_build
@pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="headless Chromium is not installed (apt-get install chromium); CI installs it",
)
@pytest.mark.parametrize("name", ["index", "ledger", "environment", "api_core"])
def test_page_renders_offline_in_a_browser(name, tmp_path):
    assert CHROMIUM, "CI needs chromium: .ci/run installs it"
    page = HTML / PAGES[name]
    probe = page.with_name(f".probe-{page.name}")
    probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    try:
        proc = _chromium(
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000", "--dump-dom", probe.as_uri()
        )
    finally:
        probe.unlink()
    m = re.search(r'<pre id="dlr-probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"the page did not finish loading: {proc.stderr[-2000:]}"
    import html as _html

    report = json.loads(_html.unescape(m.group(1)))
    external = [u for u in report["resources"] if not u.startswith("file://")]
    assert not external, f"{name} fetched {external}"
    broken = [src for src, ok in report["images"] if not ok]
    assert not broken, f"{name} has images that did not load: {broken}"
    if name in ("index", "environment", "api_core"):
        assert report["math"] > 0, f"{name}: MathJax typeset no math"
    if name == "environment":
        assert any(src.endswith(".png") for src, _ in report["images"]), "the environment figure is missing"
    shot = BOOK / "_build" / "screenshots" / f"{name}.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    _chromium(
        f"--user-data-dir={tmp_path / 'profile2'}",
        "--window-size=1280,1600",
        "--virtual-time-budget=8000",
        f"--screenshot={shot}",
        page.as_uri(),
    )
    assert shot.is_file() and shot.stat().st_size > 10_000
