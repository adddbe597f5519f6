"""Show the charts a script saves to files in the notebook too; runs inside the kernel.

A model trained as a terminal agent (the CoPaw dialect, ``agent.copaw``) draws a chart,
saves it with ``savefig`` and closes it, since a terminal shows no figure. Run as a notebook
cell, such a script leaves the notebook without its charts. The dialect puts one visible
cell before the first script (``agent.copaw.SCRIPTS_CELL``) that calls ``show_saved_charts``:
from then on every figure saved is also displayed once, right where it was saved, and
closed at the cell's end before the inline backend would show it a second time. Importing
this module imports nothing heavy; matplotlib and IPython load when it is called.
"""

from __future__ import annotations

from typing import Any

_MARK = "_jupyter_analyst_shows_saved"


def show_saved_charts() -> None:
    """Make ``Figure.savefig`` display the figure too (once); idempotent."""
    import functools

    import matplotlib.figure
    import matplotlib.pyplot  # noqa: F401 - builds its wrappers from the original savefig first
    from IPython import get_ipython
    from IPython.display import display

    figure_class: Any = matplotlib.figure.Figure
    if getattr(figure_class.savefig, _MARK, False):
        return
    original = figure_class.savefig
    shown: list[Any] = []

    @functools.wraps(original)
    def savefig(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if not any(f is self for f in shown):
            shown.append(self)
            display(self)
        return result

    def close_shown(*_: Any) -> None:
        """At the cell's end: close what was shown, so the inline backend doesn't show it again
        (a script that saves twice in one cell still has its figure until then)."""
        import matplotlib.pyplot as plt

        for figure in shown:
            plt.close(figure)
        shown.clear()

    setattr(savefig, _MARK, True)
    figure_class.savefig = savefig
    shell = get_ipython()
    if shell is not None:  # first, before the inline backend's own post_execute flush
        shell.events.callbacks["post_execute"].insert(0, close_shown)
