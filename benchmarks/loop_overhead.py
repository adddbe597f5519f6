"""Loop overhead per step against a raw jupyter_client execute of the same code.

Not a test: prints figures measured in one run on this machine. Both sides run the same
cells in a fresh ipykernel; the loop side adds everything a real run does per step (policy
call, tool-call handling, observation building, a validated atomic notebook save).

    python benchmarks/loop_overhead.py [--steps 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import start_new_kernel

from jupyter_analyst.agent import AgentLoop, Budget
from jupyter_analyst.kernel import KernelExecutor
from jupyter_analyst.models.scripted import ScriptedPolicy, code, final
from jupyter_analyst.notebook import NotebookWriter

CELLS = [
    "import math\nx = sum(math.sqrt(i) for i in range(2000))\nprint(round(x, 3))",
    "data = list(range(100))\nsum(data)",
    "s = ', '.join(str(i) for i in range(200))\nprint(s[:80])",
]


def raw_seconds(steps: int) -> float:
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        kc.execute_interactive("1", timeout=60, output_hook=lambda m: None)  # warm up
        t0 = time.perf_counter()
        for i in range(steps):
            kc.execute_interactive(CELLS[i % len(CELLS)], timeout=60, output_hook=lambda m: None)
        return time.perf_counter() - t0
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def loop_seconds(steps: int, folder: Path) -> float:
    script = [code(CELLS[i % len(CELLS)]) for i in range(steps)] + [final("done")]
    with KernelExecutor(cwd=folder) as executor:
        executor.execute("1")  # warm up, as above
        writer = NotebookWriter(folder / "bench.ipynb", "bench")
        loop = AgentLoop(ScriptedPolicy(script), executor, Budget(max_steps=steps + 1))
        t0 = time.perf_counter()
        for event in loop.run("benchmark"):
            writer.handle(event)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    raws, loops = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            raws.append(raw_seconds(args.steps) / args.steps)
            loops.append(loop_seconds(args.steps, Path(tmp)) / args.steps)
    raw, loop = statistics.median(raws), statistics.median(loops)
    print(f"steps per run            {args.steps} (median of {args.repeats} runs)")
    print(f"raw jupyter_client       {raw * 1000:7.1f} ms/step")
    print(f"agent loop + notebook    {loop * 1000:7.1f} ms/step")
    print(f"overhead                 {(loop - raw) * 1000:7.1f} ms/step")
    print(f"ratio loop/raw           {loop / raw:7.2f}x")


if __name__ == "__main__":
    main()
