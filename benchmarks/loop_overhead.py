"""The loop's cost per step against raw jupyter_client and nbclient, at step 10, 100 and 300.

Not a test: prints figures measured in one run on this machine. Every side runs the same
cells in a fresh ipykernel:

- raw: ``execute_interactive`` of each cell, nothing else;
- loop: ``AgentLoop`` (a scripted policy: tool-call handling, observations) with the
  ``NotebookWriter`` of a headless run (incremental, saved in the background);
- loop, full rewrite: the same, but the whole notebook validated and rewritten after every
  step, as the writer did before (the baseline of the ratios);
- nbclient: ``NotebookClient.execute`` of a notebook of the same cells (``jupyter execute``).

Two kinds of cell: ``print(1)``, and a matplotlib plot (a ~44 KB PNG each). The step cost
at step k is the median over the 20 steps ending at k.

    python benchmarks/loop_overhead.py [--steps 300] [--kinds print plot] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

from jupyter_analyst.agent import AgentLoop, Budget, CellExecuted
from jupyter_analyst.kernel import KernelExecutor
from jupyter_analyst.models.scripted import ScriptedPolicy, code, final
from jupyter_analyst.notebook import NotebookWriter, atomic_write

SETUP = "%matplotlib inline\nimport matplotlib.pyplot as plt\nimport numpy as np"
CELLS = {
    "print": "print(1)",
    "plot": (
        "fig, ax = plt.subplots(figsize=(6, 4))\n"
        "ax.scatter(np.random.rand(400), np.random.rand(400), c=np.random.rand(400))\n"
        "ax.set_title('noise')\nplt.show()"
    ),
}
AT = (10, 100, 300)


class FullRewriteWriter(NotebookWriter):
    """The writer before incremental saving: validate and rewrite everything per step."""

    def _changed(self) -> None:
        atomic_write(self.nb, self.path)


def window(stamps: list[float], start: float, k: int) -> float | None:
    """Median seconds per step over the (up to) 20 steps ending at step ``k`` (1-based): a
    median, so one hiccup of a loaded machine does not move the figure."""
    if k > len(stamps):
        return None
    times = [start, *stamps]
    return statistics.median(times[i] - times[i - 1] for i in range(max(1, k - 19), k + 1))


Timing = tuple[list[float], float, float]
"""(the time each step ended, when the first began, the whole run with kernel start and stop)."""


def raw_run(cell: str, steps: int) -> Timing:
    begin = time.perf_counter()
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        kc.execute_interactive(SETUP, timeout=120, output_hook=lambda m: None)
        stamps: list[float] = []
        t0 = time.perf_counter()
        for _ in range(steps):
            kc.execute_interactive(cell, timeout=120, output_hook=lambda m: None)
            stamps.append(time.perf_counter())
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return stamps, t0, time.perf_counter() - begin


def loop_run(cell: str, steps: int, folder: Path, writer_class: type[NotebookWriter]) -> Timing:
    script = [code(cell) for _ in range(steps)] + [final("done")]
    stamps: list[float] = []
    begin = time.perf_counter()
    with KernelExecutor(cwd=folder) as executor:
        executor.execute(SETUP, "setup")
        with writer_class(folder / f"{writer_class.__name__}.ipynb", "bench") as writer:
            loop = AgentLoop(ScriptedPolicy(script), executor, Budget(max_steps=steps + 1), prechecks=False)
            t0 = time.perf_counter()
            for event in loop.run("benchmark"):
                writer.handle(event)
                if isinstance(event, CellExecuted):
                    stamps.append(time.perf_counter())
    return stamps, t0, time.perf_counter() - begin


def nbclient_seconds(cell: str, steps: int, folder: Path) -> float:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SETUP)])
    nb.cells += [nbformat.v4.new_code_cell(cell) for _ in range(steps)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(folder)}}).execute()
    nbformat.write(nb, str(folder / "nbclient.ipynb"))
    return time.perf_counter() - t0


def measure(kind: str, steps: int, folder: Path) -> dict[str, Any]:
    cell = CELLS[kind]
    sides: dict[str, Callable[[], Timing]] = {
        "raw": lambda: raw_run(cell, steps),
        "loop": lambda: loop_run(cell, steps, folder, NotebookWriter),
        "loop_full_rewrite": lambda: loop_run(cell, steps, folder, FullRewriteWriter),
    }
    out: dict[str, Any] = {"kind": kind, "steps": steps}
    ends: dict[str, float] = {}
    for name, side in sides.items():
        stamps, t0, total = side()
        out[name] = {str(k): window(stamps, t0, k) for k in AT if k <= steps}
        ends[name] = total
    out["end_to_end"] = {**ends, "nbclient": nbclient_seconds(cell, steps, folder)}
    return out


def report(result: dict[str, Any]) -> None:
    kind, steps = result["kind"], result["steps"]
    print(f"\n{kind} cells, {steps} steps: ms per step (median of the 20 steps ending there)")
    print(f"{'step':>6} {'raw':>9} {'loop':>9} {'full rewrite':>13} {'loop/raw':>9} {'rewrite/raw':>12}")
    for k in result["raw"]:
        raw, loop, full = (result[s][k] for s in ("raw", "loop", "loop_full_rewrite"))
        print(
            f"{k:>6} {raw * 1e3:9.1f} {loop * 1e3:9.1f} {full * 1e3:13.1f} "
            f"{loop / raw:9.2f} {full / raw:12.2f}"
        )
    first, last = str(AT[0]), max(result["loop"], key=int)
    drift = (result["loop"][last] - result["raw"][last]) - (result["loop"][first] - result["raw"][first])
    print(f"loop overhead at step {last} minus at step {first}: {drift * 1e3:+.1f} ms")
    ends = result["end_to_end"]
    print(
        "end to end: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in ends.items())
        + f"; loop/nbclient {ends['loop'] / ends['nbclient']:.2f}x, "
        f"full rewrite/nbclient {ends['loop_full_rewrite'] / ends['nbclient']:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--kinds", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            result = measure(kind, args.steps, Path(tmp))
            report(result)
            results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
