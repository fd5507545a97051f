"""Headless-Chromium checks of the built HTML book (`python3 make.py book` first).

Each page must load with no request leaving this machine, typeset its maths (MathJax
output, not raw TeX) and show its figures. Screenshots go to _build/screenshots/ for
people to look at. In CI (CI=true) a missing build or browser is a failure; elsewhere
the checks are skipped with a message that says so.
"""
from __future__ import annotations

import re

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.book

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _skip_or_fail(msg: str):
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def _pages() -> list[str]:
    from tests.test_hygiene import _toc_files

    return [p.removesuffix(".ipynb").removesuffix(".md") for p in _toc_files()]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").exists():
        _skip_or_fail("no built book at _build/html (run `python3 make.py book`)")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep the test log readable
            pass

    handler = functools.partial(Quiet, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    if exe is None:
        _skip_or_fail("Chromium not found: browser checks SKIPPED (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("playwright not installed: browser checks SKIPPED (pip install playwright)")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=exe,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield b
        b.close()


PAGES = _pages()


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_offline(page, server, browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    external, failed = [], []
    pg.on("request", lambda r: external.append(r.url)
          if urlparse(r.url).hostname not in ("127.0.0.1", "localhost", None)
          and urlparse(r.url).scheme in ("http", "https", "ws", "wss") else None)
    pg.on("requestfailed", lambda r: failed.append(r.url))
    pg.on("response", lambda r: failed.append(r.url) if r.status >= 400
          and not r.url.endswith("favicon.ico") else None)
    name = "index" if page == "book/intro" else page
    resp = pg.goto(f"{server}/{name}.html", wait_until="networkidle")
    assert resp is not None and resp.ok, f"{name}.html did not load"
    pg.wait_for_timeout(1500)  # let MathJax finish typesetting
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name.replace('/', '__')}.png"), full_page=False)

    assert not external, f"{name}: requests to the internet: {external[:5]}"
    local_failed = [u for u in failed if "127.0.0.1" in u]
    assert not local_failed, f"{name}: local resources failed to load: {local_failed[:5]}"

    n_math = pg.locator("span.math, div.math").count()
    if n_math:
        typeset = pg.locator("span.math mjx-container, div.math mjx-container").count()
        assert typeset == n_math, f"{name}: {n_math - typeset} of {n_math} maths not typeset"
    body = pg.inner_text("article") if pg.locator("article").count() else pg.inner_text("body")
    assert "$$" not in body, f"{name}: raw display maths on the page"

    if page.startswith("notebooks/"):
        imgs = pg.eval_on_selector_all(
            "article img", "els => els.map(e => [e.src, e.complete && e.naturalWidth > 0])")
        figures = [i for i in imgs if "_images" in i[0] or i[0].startswith("data:image")]
        assert figures, f"{name}: no figures"
        broken = [src for src, ok in figures if not ok]
        assert not broken, f"{name}: broken figures {broken[:3]}"
        assert "injected-parameters" not in pg.content(), f"{name}: papermill's cell is shown"
    ctx.close()


def test_executed_notebooks_offered_for_download():
    if not (HTML / "index.html").exists():
        _skip_or_fail("no built book at _build/html")
    for page in PAGES:
        if page.startswith("notebooks/"):
            src = HTML / "_sources" / f"{page}.ipynb"
            assert src.exists(), f"{src} missing: the download button offers it"
            import json

            cells = json.loads(src.read_text())["cells"]
            assert any(c.get("outputs") for c in cells if c["cell_type"] == "code"), (
                f"{src.name} has no outputs: the download must be the executed notebook")


def test_widget_scripts_are_served_locally():
    if not (HTML / "index.html").exists():
        _skip_or_fail("no built book at _build/html")
    assert (HTML / "_static" / "embed-amd.js").exists()
    assert (HTML / "_static" / "require.min.js").exists()


# ----------------------------------------------------------- text of the rendered pages
_PLACEHOLDER = __import__("re").compile(r"\b(TODO|TBD|FIXME|XXX)\b|placeholder", __import__("re").I)
_MISSING_VALUES = {"n/a", "nan", "none", "null", "undefined"}


class _PageText(__import__("html.parser").parser.HTMLParser):
    """Prose of a built page: the text of <article>, without code inputs (cell sources)
    and with the glued values (myst-nb's span.pasted-text) collected apart."""

    def __init__(self):
        super().__init__()
        self.stack, self.text, self.glued, self._glue = [], [], [], None

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        skip = tag in ("script", "style") or "cell_input" in cls or "highlight" in cls
        self.stack.append((tag, skip))
        if "pasted-text" in cls:
            self._glue = []

    def handle_endtag(self, tag):
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break
        if self._glue is not None and tag == "span":
            self.glued.append("".join(self._glue).strip())
            self._glue = None

    def handle_data(self, data):
        if any(skip for _, skip in self.stack):
            return
        self.text.append(data)
        if self._glue is not None:
            self._glue.append(data)


def _page_text(page: str) -> _PageText:
    name = "index" if page == "book/intro" else page
    path = HTML / f"{name}.html"
    if not path.exists():
        _skip_or_fail(f"{path} missing (run `python3 make.py book`)")
    raw = path.read_text(encoding="utf-8")
    start = raw.find("<article")
    end = raw.rfind("</article>")
    p = _PageText()
    p.feed(raw[start:end] if start >= 0 and end > start else raw)
    return p


@pytest.mark.parametrize("page", PAGES)
def test_no_placeholder_and_no_missing_cited_value(page):
    p = _page_text(page)
    prose = " ".join(p.text)
    hits = sorted({m.group(0) for m in _PLACEHOLDER.finditer(prose)})
    assert not hits, f"{page}: placeholder text on the rendered page: {hits}"
    missing = [g for g in p.glued if g.lower() in _MISSING_VALUES]
    assert not missing, f"{page}: {len(missing)} cited value(s) render as {sorted(set(missing))}"


def test_findings_table_is_filled():
    p = _page_text("notebooks/findings")
    raw = (HTML / "notebooks" / "findings.html").read_text(encoding="utf-8")
    assert "class='findings'" in raw or 'class="findings"' in raw, "findings page: no findings table"
    body = raw.split("<tbody>", 1)[-1].split("</tbody>", 1)[0]
    rows = len(re.findall(r"<tr[\s>]", body))
    assert rows >= 3, f"findings page: only {rows} row(s)"
    assert any(ch.isdigit() for ch in " ".join(p.text)), "findings page shows no numbers"
