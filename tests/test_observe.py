"""Observations stay small and keep what a fix needs."""

from __future__ import annotations

from jupyter_analyst.agent.observe import describe_figure, head_tail, observe, trim_traceback
from jupyter_analyst.agent.types import CellResult

TB = [
    "\x1b[31m---------------------------------------------------------------------------\x1b[39m",
    "\x1b[31mKeyError\x1b[39m  Traceback (most recent call last)",
    "File pandas/core/indexes/base.py:3812, in Index.get_loc(self, key)\n" + "   x\n" * 400,
    "Cell \x1b[32mIn[3]\x1b[39m, line 1\n----> 1 df['body_mass']",
    "\x1b[31mKeyError\x1b[39m: 'body_mass'",
]


def test_traceback_keeps_error_line_and_last_frames_without_ansi() -> None:
    r = CellResult(status="error", error_name="KeyError", error_value="'body_mass'", traceback=TB)
    text = trim_traceback(r)
    assert text.splitlines()[0] == "Error: KeyError: 'body_mass'"
    assert "df['body_mass']" in text and "\x1b" not in text
    assert len(text) < 1300  # the long pandas frame was cut


def test_head_tail_keeps_both_ends() -> None:
    text = "start\n" + "m" * 10_000 + "\nend"
    out = head_tail(text, 300)
    assert out.startswith("start") and out.endswith("end") and "omitted" in out and len(out) < 400


def test_long_output_is_bounded() -> None:
    r = CellResult(
        status="ok",
        outputs=[{"output_type": "stream", "name": "stdout", "text": "y" * 100_000}],
        truncated=True,
    )
    text = observe(r, limit=1500)
    assert len(text) < 1700 and "truncated" in text


def test_figure_and_frame_facts_replace_pixels_and_long_tables() -> None:
    fig = {
        "type": "figure",
        "suptitle": "",
        "axes": [
            {
                "title": "Mass by species",
                "xlabel": "species",
                "ylabel": "g",
                "patches": 3,
                "xlim": [-0.5, 2.5],
                "ylim": [0, 5200],
                "legend": [],
            }
        ],
    }
    frame = {"type": "frame", "shape": [344, 8], "head": "   a  b\n0  1  2"}
    outputs = [
        {
            "output_type": "display_data",
            "data": {"image/png": "iVBOR...", "text/plain": "<Figure>"},
            "metadata": {},
        },
        {
            "output_type": "execute_result",
            "data": {"text/html": "<table>", "text/plain": "x" * 5000},
            "metadata": {},
            "execution_count": 3,
        },
    ]
    text = observe(CellResult(status="ok", outputs=outputs, facts=[fig, frame]))
    assert "[figure: title 'Mass by species', x 'species', y 'g', 3 patches" in text
    assert "[DataFrame: 344 rows x 8 columns]" in text and "xxxx" not in text
    assert describe_figure({"axes": []}) == "[figure: no axes]"


def test_dead_kernel_and_silent_cell() -> None:
    assert "kernel died" in observe(CellResult(status="dead"))
    assert observe(CellResult(status="ok")) == "(cell ran, no output)"
