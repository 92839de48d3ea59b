"""The built book: table of contents, generated pages, and a real browser opening the pages offline."""

import json, os, re, shutil, subprocess

import pytest
import yaml

from conftest import REPO
from dlr_nb.pipeline.runner import discover

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
    for mod in ("core", "data", "models", "pipeline.runner", "pipeline.book", "pipeline.cli", "dmf.factorization"):
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
@pytest.mark.parametrize("name", ["index", "environment"])  # every page: test_every_page_of_the_book_loads_in_a_browser
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


def _fake_run(book, measured):
    "A kept smoke run of a fake experiment `exp` whose claim measures `measured`, and its page, as `dlr book` does."
    import nbformat

    from dlr_nb.pipeline.experiment import make_claim
    from dlr_nb.pipeline.result_pages import result_page
    from dlr_nb.pipeline.store import publish, read_kept

    claim = make_claim("gain.16", "cbs Fig. 1", "B is faster than A", "3x", ">= 2", measured)
    res = dict(
        experiment="exp",
        profile="smoke",
        parameters={"profile": "smoke", "n": 8},
        environment={"dlr_nb": "0.1.0", "git": "abc1234", "python": "3.11", "torch": "2.13.0", "device": "cpu"},
        seconds=1.5,
        metrics={"ratio": measured},
        claims=[claim],
    )
    stage = book.parent / "stage"
    (stage / "exp").mkdir(parents=True, exist_ok=True)
    (stage / "exp.json").write_text(json.dumps(res))
    (stage / "exp" / "table.csv").write_text(f"n,ratio\n8,{measured}\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Exp\n\n> A fake experiment.", id="t")])
    nb.metadata["papermill"] = {"parameters": {"profile": "smoke", "n": 8}, "duration": 2.0}
    nbformat.write(nb, stage / "exp.ipynb")
    (book / "experiments").mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, book / "experiments" / "exp.ipynb")
    publish(stage, book / "results", "smoke", "exp", {"template": [], "parameters": {}})
    page = result_page(
        book / "experiments" / "exp.ipynb", read_kept(book / "results", "smoke", "exp"), link_root=book / "results"
    )
    nbformat.write(page, book / "results" / "exp.ipynb")


def test_quoted_numbers_follow_the_results(tmp_path):
    "Rebuilding after a results file changes changes every number the pages show, with no edit to any page."
    import sys

    book = tmp_path / "book"
    (book / "theory").mkdir(parents=True)
    (book / "_config.yml").write_text(
        "title: t\nexecute:\n  execute_notebooks: 'off'\nonly_build_toc_files: true\n"
        "exclude_patterns: [experiments, results/smoke]\n"
        "parse:\n  myst_enable_extensions: [colon_fence, substitution]\n"
        "sphinx:\n  extra_extensions: [dlr_nb.pipeline.pages]\n"
    )
    parts = [{"caption": "A", "chapters": [{"file": "theory/a"}, {"file": "results/exp"}, {"file": "ledger"}]}]
    toc = yaml.safe_dump({"format": "jb-book", "root": "intro", "parts": parts})
    (book / "_toc.yml").write_text(toc)
    (book / "intro.md").write_text(
        "# Intro\n\nWe measured a gain of {{ exp.gain_16.measured }} at {{ exp.profile }}.\n"
    )
    (book / "theory" / "a.md").write_text("# Theory\n\nThe ratio was {{ exp.metrics.ratio }}.\n")
    (book / "ledger.md").write_text("# Ledger\n")
    shown = {}
    for measured in (2.375, 1.625):
        _fake_run(book, measured)
        cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(book)]
        proc = subprocess.run([*cmd, "--warningiserror"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        html = book / "_build" / "html"
        text = {
            p: " ".join(re.sub(r"<[^>]+>", "", (html / p).read_text()).split()) for p in ("intro.html", "theory/a.html")
        }
        shown[measured] = text
        assert f"We measured a gain of {measured} at smoke" in text["intro.html"]
        chapter = text["theory/a.html"]
        assert f"The ratio was {measured}" in chapter and "What we measured" in chapter
        assert ("✓ holds" if measured >= 2 else "✗ fails") in chapter
        page = (html / "results" / "exp.html").read_text()
        words = " ".join(re.sub(r"<[^>]+>", "", page).split())
        assert "Reproduce this page" in words and "dlr run exp --profile smoke -p n=8" in words
        assert "Smoke profile" in words and "B is faster than A" in words
        downloads = re.findall(r'href="(\.\./_downloads/[^"]+)"', page)
        assert {d.rsplit("/", 1)[1] for d in downloads} == {"exp.ipynb", "exp.json", "table.csv"}
        table = next(d for d in downloads if d.endswith("table.csv"))
        assert str(measured) in (html / "results" / table).read_text()
    assert shown[2.375] != shown[1.625]


@needs_build
def test_result_pages_open_with_the_verdicts_and_the_reproduce_box_and_chapters_end_with_measurements():
    from dlr_nb.pipeline.store import shown_results

    built = [n for n in shown_results(BOOK / "results") if (HTML / "results" / f"{n}.html").is_file()]
    assert built, "no result page was built"
    for name in built:
        page = (HTML / "results" / f"{name}.html").read_text()
        article = page[page.find("<article") :]
        words = " ".join(re.sub(r"<[^>]+>", "", page).split())
        assert "Reproduce this page" in words and f"dlr run {name} --profile" in words, name
        first_code = article.find('class="cell')
        assert 0 <= article.find("dlr-verdicts") < (first_code if first_code >= 0 else len(article)), name
        for f in re.findall(r'href="(\.\./_downloads/[^"]+)"', page):
            assert (HTML / "results" / f).is_file(), f"{name}: download {f} is not in the build"
        assert f"{name}.json" in page and f"_sources/results/{name}.ipynb" in page, f"{name}: downloads missing"
    for chapter in (BOOK / "theory").glob("*.md"):
        page = (HTML / "theory" / f"{chapter.stem}.html").read_text()
        assert "What we measured" in page and "What reproduced" in page, chapter.stem
        assert "{{" not in page, f"{chapter.stem}: a substitution of an analysis was not filled"


def _book_pages():
    "Every page of the built book, relative to its root (not the root's redirect, not `_static` or `_sources`)."
    pages = []
    for p in HTML.rglob("*.html"):
        rel = p.relative_to(HTML)
        if rel.parts[0].startswith(("_", ".")) or rel.as_posix() == "index.html":
            continue
        pages.append(rel.as_posix())
    return sorted(pages)


_ANCHORS: dict = {}


def _ids(page):
    if page not in _ANCHORS:
        _ANCHORS[page] = set(re.findall(r'\bid="([^"]+)"', page.read_text(errors="ignore")))
    return _ANCHORS[page]


@needs_build
def test_every_link_image_and_download_of_the_book_resolves_and_every_figure_has_a_caption():
    "A static crawl of every page: links (with their anchors), images and downloads exist; figures have captions."
    import html as _html
    from urllib.parse import unquote

    pages = _book_pages()
    broken, uncaptioned = [], []
    for rel in pages:
        page = HTML / rel
        text = page.read_text(errors="ignore")
        for attr, url in re.findall(r'<(?:a|img|link|script)\b[^>]*?\b(href|src)="([^"]*)"', text):
            url = _html.unescape(url)
            if re.match(r"^[a-z][a-z0-9+.-]*:", url, re.I) or url.startswith("//"):
                continue  # another site, mailto:, javascript:
            path, _, anchor = url.partition("#")
            path = unquote(path.split("?")[0])
            target = (page.parent / path).resolve() if path else page
            if not target.exists():
                broken.append(f"{rel}: {url}")
            elif anchor and target.suffix == ".html" and anchor not in _ids(target):
                broken.append(f"{rel}: {url} (no such anchor)")
        article = text[text.find("<article") : text.rfind("</article>")]
        if rel.startswith("api/"):
            continue
        images = len(re.findall(r"<img\b", article))
        captioned = sum(
            len(re.findall(r"<img\b", f))
            for f in re.findall(r"<figure\b.*?</figure>", article, re.S)
            if re.search(r'class="caption-text">\s*\S', f)
        )
        if captioned != images:
            uncaptioned.append(f"{rel}: {images - captioned} of {images} images without a caption")
    assert not broken, f"{len(broken)} broken links: {broken[:20]}"
    assert not uncaptioned, uncaptioned
    print(f"static crawl: {len(pages)} pages, every link, image and download resolves")


_CRAWLER = """<!DOCTYPE html><html><body><pre id="dlr-crawl"></pre><script>
const pages = PAGES; const report = {};
function visit(i) {
  if (i >= pages.length) { document.getElementById('dlr-crawl').textContent = JSON.stringify(report); return; }
  const frame = document.createElement('iframe');
  const errors = [];
  frame.onload = () => setTimeout(() => {
    try {
      const w = frame.contentWindow, d = w.document;
      report[pages[i]] = {title: d.title, errors: errors,
        resources: w.performance.getEntriesByType('resource').map(e => e.name),
        math: d.querySelectorAll('mjx-container').length, needs_math: d.querySelectorAll('.math').length,
        images: [...d.images].map(im => [im.getAttribute('src'), im.complete && im.naturalWidth > 0])};
    } catch (e) { report[pages[i]] = {title: '', errors: [String(e)]}; }
    frame.remove(); visit(i + 1);
  }, 2500);
  frame.src = pages[i];
  document.body.appendChild(frame);
  try { frame.contentWindow.addEventListener('error', e => errors.push(String(e.message))); } catch (e) {}
}
visit(0);
</script></body></html>"""


@needs_build
@pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="headless Chromium is not installed (apt-get install chromium); CI installs it",
)
def test_every_page_of_the_book_loads_in_a_browser(tmp_path):
    "One headless Chromium opens every page in turn: it loads, fetches nothing off file://, no script error,"
    "every image loads and math is typeset."
    import html as _html

    assert CHROMIUM, "CI needs chromium: .ci/run installs it"
    pages = _book_pages()
    crawler = HTML / ".crawl.html"
    crawler.write_text(_CRAWLER.replace("PAGES", json.dumps(pages)))
    try:
        proc = _chromium(
            f"--user-data-dir={tmp_path / 'profile'}",
            "--allow-file-access-from-files",
            f"--virtual-time-budget={4000 * len(pages)}",
            "--dump-dom",
            crawler.as_uri(),
            timeout=900,
        )
    finally:
        crawler.unlink()
    m = re.search(r'<pre id="dlr-crawl">(.*?)</pre>', proc.stdout, re.S)
    assert m and m.group(1), f"the crawl did not finish: {proc.stderr[-2000:]}"
    report = json.loads(_html.unescape(m.group(1)))
    problems = []
    for page in pages:
        r = report.get(page)
        if not r or not r["title"]:
            problems.append(f"{page}: did not load {r and r.get('errors')}")
            continue
        problems += [f"{page}: script error {e}" for e in r["errors"]]
        problems += [f"{page}: fetched {u}" for u in r["resources"] if not u.startswith("file://")]
        problems += [f"{page}: image {src} did not load" for src, ok in r["images"] if not ok]
        if r["needs_math"] and not r["math"]:
            problems.append(f"{page}: MathJax typeset none of its {r['needs_math']} formulas")
    assert not problems, f"{len(problems)} problems: {problems[:20]}"
    print(f"browser crawl: {len(pages)} pages checked")


@needs_build
def test_no_page_shows_the_build_machine():
    "No absolute path of this checkout or its Python on a page, no `PosixPath(` repr or warning in an output area."
    import sys

    roots = {str(REPO), sys.prefix, str(__import__("pathlib").Path.home()) + "/"}
    problems = []
    for rel in _book_pages():
        text = (HTML / rel).read_text(errors="ignore")
        body = text[text.find("<article") : text.rfind("</article>")]
        problems += [f"{rel}: {root}" for root in roots if root in body]
        for out in re.findall(r'<div class="cell_output.*?</div>\s*</div>', body, re.S):
            if "Warning:" in out:
                problems.append(f"{rel}: a warning in an output")
            if "PosixPath(" in out:
                problems.append(f"{rel}: PosixPath( in an output")
    assert not problems, problems[:20]


@needs_build
def test_every_api_page_shows_outputs():
    pages = sorted((HTML / "api" / "nbs").glob("*.html"))
    assert pages
    without = [p.name for p in pages if 'class="cell_output' not in p.read_text(errors="ignore")]
    assert not without, f"API pages without any output: {without}"


def test_every_claim_source_names_a_paper_of_the_bibliography():
    from dlr_nb.pipeline.book import PAPERS, TARGET_SOURCE, bib_entries, source_paper
    from dlr_nb.pipeline.store import kept_results

    bib = bib_entries(BOOK / "references.bib")
    assert set(PAPERS.values()) <= set(bib)
    bad = []
    for by in kept_results(BOOK / "results").values():
        for kept in by.values():
            for c in (kept.results or {}).get("claims", []):
                if source_paper(c["source"]) is None and not c["source"].startswith(TARGET_SOURCE):
                    bad.append(f"{kept.name}: {c['id']} cites {c['source']!r}")
    assert not bad, bad


def test_the_book_links_back_to_the_repository():
    import configparser

    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(REPO / "settings.ini")
    conf = yaml.safe_load((BOOK / "_config.yml").read_text())
    theme = conf["sphinx"]["config"]["html_theme_options"]  # what the theme is given (it replaces `html:`)
    assert conf["repository"]["url"] == theme["repository_url"] == cfg["DEFAULT"]["git_url"]
    assert theme["use_repository_button"] and theme["use_issues_button"] and theme["use_edit_page_button"]
    assert any(link["url"] == cfg["DEFAULT"]["git_url"] + "/releases" for link in theme["icon_links"])


_LAYOUT = """<script>
window.addEventListener('load', () => setTimeout(() => {
  const v = document.querySelector('.dlr-verdicts'), l = document.querySelector('table.dlr-ledger');
  const d = document.createElement('pre'); d.id = 'dlr-layout';
  d.textContent = JSON.stringify({verdicts_top: v ? v.getBoundingClientRect().top + window.scrollY : null,
    ledger: l ? [l.scrollWidth, l.clientWidth] : null,
    page: [document.documentElement.scrollWidth, window.innerWidth]});
  document.body.appendChild(d);
}, 3000));
</script>"""


@needs_build
@pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="headless Chromium is not installed (apt-get install chromium); CI installs it",
)
def test_a_reader_at_1400_pixels_sees_the_verdicts_first_and_the_whole_ledger(tmp_path):
    "At 1400 px: each result page's verdict panel starts within the first 1000 px; the ledger needs no sideways scroll."
    import html as _html

    from dlr_nb.pipeline.store import shown_results

    assert CHROMIUM, "CI needs chromium: .ci/run installs it"
    pages = ["ledger.html"] + [f"results/{n}.html" for n in shown_results(BOOK / "results")]
    problems = []
    for rel in pages:
        page = HTML / rel
        probe = page.with_name(f".layout-{page.name}")
        probe.write_text(page.read_text().replace("</body>", _LAYOUT + "</body>"))
        try:
            proc = _chromium(
                f"--user-data-dir={tmp_path / 'p'}",
                "--window-size=1400,1000",
                "--virtual-time-budget=8000",
                "--dump-dom",
                probe.as_uri(),
            )
        finally:
            probe.unlink()
        m = re.search(r'<pre id="dlr-layout">(.*?)</pre>', proc.stdout, re.S)
        if not m:
            problems.append(f"{rel}: did not load")
            continue
        r = json.loads(_html.unescape(m.group(1)))
        if rel == "ledger.html":
            if r["ledger"] and r["ledger"][0] > r["ledger"][1]:
                problems.append(f"ledger: table {r['ledger'][0]} px wide in {r['ledger'][1]} px")
            if r["page"][0] > r["page"][1]:
                problems.append(f"ledger: page scrolls sideways ({r['page'][0]} > {r['page'][1]} px)")
        elif r["verdicts_top"] is None or r["verdicts_top"] > 1000:
            problems.append(f"{rel}: the verdict panel starts at {r['verdicts_top']} px")
    assert not problems, problems
