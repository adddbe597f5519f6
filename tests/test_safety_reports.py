"""Data can't script the reports: hostile column names and values stay text.

A report is a file people open in a browser. Column names, values and labels come from
the user's data, so the baseline escapes them in the markdown it writes, and the HTML
export sanitizes whatever markdown and outputs a notebook holds (nbconvert's sanitizing
with an allowlist that keeps headings, tables and figures). Each layer is checked on its
own and both together, on a real headless run and on the server's export of one run.

"Live" is read from the parsed HTML, not from substrings: the payloads must still be
*shown* (``onerror=`` appears in the text of a column name), they must never be an
attribute, a link target or script content.
"""

from __future__ import annotations

import base64
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import pytest

pytest.register_assert_rewrite("server_conftest")

from server_conftest import *  # noqa: E402, F403  (the server fixtures, module-local)
from server_conftest import asynctest  # noqa: E402

from jupyter_analyst.export import clean_html, export_html  # noqa: E402
from jupyter_analyst.models.baseline import NAME, BaselineAnalyst  # noqa: E402
from jupyter_analyst.notebook import META_KEY  # noqa: E402
from jupyter_analyst.notebook.markdown import code_span, escape_markdown  # noqa: E402
from jupyter_analyst.runner import RunConfig, run_analysis  # noqa: E402

SCRIPT = "<script>alert(1)</script>"
IMG = "x`<img src=x onerror=alert(1)>"
BOLD = "**bold**"
LINK = "[link](javascript:alert(1))"
HOSTILE = (SCRIPT, IMG, BOLD, LINK)
VALUE = "<script>alert(2)</script>"


class Page(HTMLParser):
    """What a browser would act on in an HTML page, and the text it would show."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.handlers: list[tuple[str, str, str | None]] = []
        self.script_urls: list[tuple[str, str, str | None]] = []
        self.scripts: list[str] = []
        self.png: int = 0
        self.tags: set[str] = set()
        self._text: list[str] = []
        self._script: list[str] | None = None
        self.feed(html)
        self.close()

    @property
    def text(self) -> str:
        return "".join(self._text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append((tag, name, value))
            squashed = "".join((value or "").split()).lower()
            if squashed.startswith(("javascript:", "vbscript:")) or (
                squashed.startswith("data:") and not squashed.startswith("data:image/")
            ):
                self.script_urls.append((tag, name, value))
            if tag == "img" and name == "src" and (value or "").startswith("data:image/png;base64,"):
                self.png += 1
        if tag == "script":
            self._script = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.scripts.append("".join(self._script))
            self._script = None

    def handle_data(self, data: str) -> None:
        (self._script if self._script is not None else self._text).append(data)


def assert_inert(html: str, min_png: int = 0) -> Page:
    """Nothing from the data runs: no handler attributes, no script links, no payload
    inside a script element; ``min_png`` figures still embedded."""
    page = Page(html)
    assert page.handlers == [], page.handlers
    assert page.script_urls == [], page.script_urls
    assert not [s for s in page.scripts if "alert(" in s], page.scripts
    assert page.png >= min_png, page.png
    return page


def hostile_frame(rows: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            SCRIPT: rng.normal(10, 2, rows),
            IMG: rng.normal(5, 1, rows),
            BOLD: rng.choice([VALUE, LINK, "**b**", "y`<img src=y onerror=alert(4)>"], rows),
            LINK: rng.choice(["a", "b", "c"], rows),
        }
    )


QUESTION = f"How does {SCRIPT} differ by {BOLD}?"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real headless baseline run (its own kernel) over a CSV with hostile names and values."""
    folder = tmp_path_factory.mktemp("hostile")
    data = folder / "hostile.csv"
    hostile_frame().to_csv(data, index=False)
    outcome = run_analysis(
        RunConfig(data=data, output=folder / "analysis.ipynb", question=QUESTION, cell_timeout=120),
        BaselineAnalyst(),
    )
    assert outcome.finished.reason.natural and outcome.finished.errors == 0, outcome.finished
    return outcome.notebook


def baseline_markdown(notebook: Path) -> str:
    """The markdown the baseline wrote (not the header, which ``session`` writes)."""
    nb = nbformat.read(notebook, as_version=4)
    return "\n\n".join(
        c.source
        for c in nb.cells
        if c.cell_type == "markdown" and c.metadata.get(META_KEY, {}).get("role") != "header"
    )


# --------------------------------------------------------------------------- both layers


def test_headless_run_exports_inert_html_that_shows_the_names(hostile_run: Path, tmp_path: Path) -> None:
    html = export_html(hostile_run, tmp_path / "report.html").read_text(encoding="utf-8")
    page = assert_inert(html, min_png=3)
    text = page.text
    # The analyst's own sentences quote the names and values literally (not as markup).
    assert f"The main measure is {SCRIPT} (the question mentions it)." in text
    assert f"The main grouping column is {BOLD}." in text
    assert f"Question: {QUESTION}" in text
    assert f"It is most correlated with {IMG} (r = " in text
    assert f"lowest for {VALUE} (" in text or f"highest for {VALUE} (" in text
    assert f"Most frequent combination: {BOLD} = " in text and f" and {LINK} = " in text
    assert {"h1", "h2", "h3", "strong", "code", "li"} <= page.tags  # the markdown still renders


@asynctest
async def test_server_export_of_a_run_is_inert(
    jp_serverapp: Any, jp_root_dir: Path, hostile_run: Path
) -> None:
    """The server's export (report.ipynb + .html next to the notebook) of the same run."""
    from jupyter_analyst.models.select import PolicyChoice
    from jupyter_analyst.server.report import export_run
    from jupyter_analyst.server.runs import Run

    folder = jp_root_dir / "work dir"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(hostile_run, folder / "live.ipynb")
    nb = nbformat.read(hostile_run, as_version=4)
    run_id = nb.cells[-1].metadata[META_KEY]["run_id"]
    run = Run(
        run_id=run_id,
        path="work dir/live.ipynb",
        variable="df",
        question=QUESTION,
        max_steps=40,
        choice=PolicyChoice(),
        policy=NAME,
        kernel_id="",
        state="finished",
    )
    reply = await export_run(jp_serverapp, run)
    report = nbformat.read(jp_root_dir / reply.ipynb, as_version=4)
    assert report.cells[0].metadata[META_KEY]["role"] == "header"
    assert len(report.cells) > 10
    page = assert_inert((jp_root_dir / reply.html).read_text(encoding="utf-8"), min_png=3)
    assert f"The main grouping column is {BOLD}." in page.text
    assert f"It is most correlated with {IMG} (r = " in page.text


# --------------------------------------------------------------------------- each layer alone


def test_baseline_markdown_is_inert_even_unsanitized(hostile_run: Path) -> None:
    """Escaping alone: the baseline's markdown rendered by nbconvert's markdown renderer
    with no sanitizer (as a plain markdown viewer would) has nothing live."""
    from nbconvert.filters import markdown2html

    markdown = baseline_markdown(hostile_run)
    for payload in HOSTILE:
        assert payload in markdown or code_span(payload) in markdown or escape_markdown(payload) in markdown
    page = assert_inert(markdown2html(markdown))
    assert "img" not in page.tags and "script" not in page.tags
    assert f"The main measure is {SCRIPT}" in page.text and f"grouping column is {BOLD}." in page.text


def _png() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([1, 2, 3])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def test_export_sanitizes_raw_html_but_keeps_headings_tables_and_figures(tmp_path: Path) -> None:
    """Sanitizing alone, on what a model might write: raw HTML in markdown and outputs."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(
        nbformat.v4.new_markdown_cell(
            f"# Title\n\nSome **bold** {IMG} and {LINK} {SCRIPT} <svg onload=alert(5)></svg>\n\n"
            "| a | b |\n|---|---|\n| 1 | 2 |\n\n"
            '<a href="https://example.org/x">web</a> <a href=" JaVa\tScript:alert(6)">bad</a>'
        )
    )
    code = nbformat.v4.new_code_cell("df")
    table = pd.DataFrame({SCRIPT: [1.5, 2.5]}).to_html()
    code.outputs = [
        nbformat.v4.new_output(
            "execute_result", {"text/html": table, "text/plain": "frame"}, execution_count=1
        ),
        nbformat.v4.new_output("display_data", {"image/png": _png(), "text/plain": "<Figure>"}),
        nbformat.v4.new_output(
            "display_data", {"text/html": f"<b>ok</b>{SCRIPT}<img src=z onerror=alert(7)>"}
        ),
        nbformat.v4.new_output("display_data", {"application/javascript": "alert(8)", "text/plain": "js"}),
        nbformat.v4.new_output("display_data", {"text/markdown": f"{LINK} <img src=q onerror=alert(9)>"}),
        nbformat.v4.new_output("stream", name="stdout", text=f"{SCRIPT}\n"),
    ]
    nb.cells.append(code)
    path = tmp_path / "raw.ipynb"
    nbformat.write(nb, path)
    html = export_html(path).read_text(encoding="utf-8")
    page = assert_inert(html, min_png=1)
    assert {"h1", "table", "thead", "th", "td", "strong", "b"} <= page.tags
    assert "svg" not in page.tags and 'href="https://example.org/x"' in html
    assert "alert(8)" not in html  # JavaScript outputs are dropped
    assert SCRIPT in page.text  # shown as text (the stream, the table header)
    assert '<tr style="text-align: right;">' in html  # pandas' header alignment survives


def test_clean_html_allowlist() -> None:
    dirty = (
        '<img src="data:image/png;base64,AAAA" alt="a"><img src="data:text/html;base64,AAAA">'
        '<img src="https://e.org/p.png"><a href="data:text/html,x">d</a><a href="//evil.org">e</a>'
        '<a href="#sec">in page</a><table><tr style="color:red;position:fixed"><td>c</td></tr></table>'
        '<iframe src="https://e.org"></iframe><p onclick="alert(1)">p</p>'
    )
    cleaned = clean_html(dirty)
    assert 'src="data:image/png;base64,AAAA"' in cleaned and "data:text/html" not in cleaned
    assert 'src="https://e.org/p.png"' in cleaned and 'href="#sec"' in cleaned
    assert "evil.org" not in cleaned and "position" not in cleaned and 'style="color:red;"' in cleaned
    assert "&lt;iframe" in cleaned and "onclick" not in cleaned and "<p>p</p>" in cleaned


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("plain", "`plain`"),
        (IMG, "``x`<img src=x onerror=alert(1)>``"),
        ("`edge`", "`` `edge` ``"),
        ("a ``b`` c", "```a ``b`` c```"),
        ("", "` `"),
        ("two\nlines", "`two lines`"),
    ],
)
def test_code_span_shows_any_name_literally(text: str, span: str) -> None:
    from nbconvert.filters import markdown2html

    assert code_span(text) == span
    rendered = Page(markdown2html(f"Column {span}."))
    shown = " ".join(text.split()) or " "
    assert rendered.tags >= {"code"} and f"Column {shown}." in rendered.text


@pytest.mark.parametrize(
    "text",
    [
        *HOSTILE,
        "flipper_length_mm",
        "__init__",
        "$1,234 & R&D $5",
        "# not a heading",
        "1. not a list",
        "a|b ~c~",
    ],
)
def test_escape_markdown_renders_literally(text: str) -> None:
    from nbconvert.filters import markdown2html

    escaped = escape_markdown(text)
    rendered = Page(markdown2html(f"Value: {escaped}"))
    assert rendered.text.strip() == f"Value: {text}", (escaped, rendered.text)
    assert rendered.tags <= {"p"}
    assert escape_markdown("flipper_length_mm") == "flipper_length_mm"  # readable where it can be
