"""How the prompt grows over a long run, and how much of it the prefix cache saves.

Not a test: prints figures measured in one run. An 80-step run on an 80-column frame in a
real kernel: the cells are scripted (the same for every variant), but every prompt goes
to a tiny local model's worker engine with its prefix cache (``max_tokens`` 1), so the
prompt tokens, the cached tokens and the prefill are what a real run of that shape costs.

Variants: the loop as it is (the backend's counts size the budget; over it, the history is
cut in one go to 75%) and the baseline, the same loop trimming one old result per step
just down to the budget (``context_trim`` 1.0), as it did before; and the loop as it is
against the worker with its prefix cache off (every prompt prefilled whole), for the
worker's time with and without the cache.

    python benchmarks/context_growth.py [--steps 80] [--window 4096]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from jupyter_analyst.agent import AgentLoop, Budget
from jupyter_analyst.agent.loop import context_sizes
from jupyter_analyst.agent.tools import CODE_TOOL
from jupyter_analyst.agent.types import AssistantTurn, Message, ToolCall, ToolSpec, Usage
from jupyter_analyst.kernel import KernelExecutor
from jupyter_analyst.models.worker.engine import Engine
from jupyter_analyst.models.worker.server import WorkerServer
from jupyter_analyst.testing.tiny_model import build_tiny_model

SECRET = "bench-secret"
SETUP = (
    "import numpy as np, pandas as pd\n"
    "rng = np.random.default_rng(0)\n"
    "df = pd.DataFrame(rng.normal(size=(500, 79)), columns=[f'measure_{i:02d}' for i in range(79)])\n"
    "df['group'] = rng.choice(list('abcde'), 500)"
)


def cell(step: int) -> str:
    """A step of an analysis of the wide frame: varied, with outputs of ~0.3-2 KB."""
    col = f"measure_{step % 79:02d}"
    kinds = [
        f"df[['{col}']].describe()",
        f"df.groupby('group')['{col}'].agg(['mean', 'std', 'count'])",
        f"df.iloc[:5, {step % 70}:{step % 70 + 9}]",
        f"df['{col}'].corr(df['measure_{(step + 1) % 79:02d}'])",
        f"df.filter(like='measure_{step % 8}').mean().round(3)",
    ]
    return kinds[step % len(kinds)]


class WorkerProbe:
    """The run's policy: each prompt goes to the worker (prefill, cache), then the scripted
    cell is the reply. Records (prompt tokens, cached tokens) of every call."""

    name = "tiny worker + scripted cells"

    def __init__(self, url: str, steps: int) -> None:
        self.client = httpx.Client(headers={"Authorization": f"Bearer {SECRET}"}, timeout=600)
        self.url = url
        self.steps = steps
        self.calls: list[tuple[int, int]] = []
        self.seconds = 0.0
        """Wall time spent in the worker (prefill + one token), over the run."""

    def __call__(self, messages: list[Message], tools: list[ToolSpec]) -> AssistantTurn:
        body = {"messages": messages, "tools": tools, "max_tokens": 1, "temperature": 0}
        t0 = time.perf_counter()
        usage = self.client.post(self.url, json=body).raise_for_status().json()["usage"]
        self.seconds += time.perf_counter() - t0
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        self.calls.append((int(usage["prompt_tokens"]), cached))
        step = len(self.calls)
        if step > self.steps:
            call = ToolCall("final_answer", {"answer": "done"})
        else:
            call = ToolCall(CODE_TOOL, {"code": cell(step)})
        return AssistantTurn(tool_calls=[call], usage=Usage(prompt_tokens=int(usage["prompt_tokens"])))


def run(url: str, steps: int, window: int, trim: float, folder: Path) -> dict[str, Any]:
    probe = WorkerProbe(url, steps)
    observation, chars = context_sizes(window)
    with KernelExecutor(cwd=folder) as executor:
        executor.execute(SETUP, "setup")
        loop = AgentLoop(
            probe,
            executor,
            Budget(max_steps=steps + 1),
            observation_limit=observation,
            context_chars=chars,
            context_tokens=window,
            context_trim=trim,
            prechecks=False,
            grounding_gate=False,
        )
        list(loop.run("Task: describe the wide frame df column by column"))
    prompts = [p for p, _ in probe.calls]
    cached = [c for _, c in probe.calls]
    misses = sum(1 for p, c in probe.calls[1:] if c == 0)
    return {
        "prompt_tokens_at": {k: prompts[k - 1] for k in (10, 40, steps) if k <= len(prompts)},
        "max_prompt": max(prompts),
        "hit_rate": sum(cached) / sum(prompts),
        "prefilled": sum(p - c for p, c in probe.calls),
        "misses": misses,
        "calls": len(prompts),
        "worker_seconds": round(probe.seconds, 2),
    }


VARIANTS = (
    ("now: cut to 75% in one go", 0.75, True),
    ("before: one result per step", 1.0, True),
    ("now, no prefix cache", 0.75, False),
)


def compare(steps: int, window: int, out: Any = None) -> dict[str, dict[str, Any]]:
    """The loop's run with each variant against one tiny worker; printed as it goes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_model(Path(tmp) / "tiny")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder)
        engine = Engine(tokenizer, model, "tiny", max_new_tokens=1, enable_thinking=False)
        server = WorkerServer(("127.0.0.1", 0), engine, SECRET)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions"
        print(f"{steps} steps on an 80-column frame, window {window} tokens, tiny model's worker", file=out)
        try:
            for label, trim, cache in VARIANTS:
                engine.prefix_cache = cache
                engine._forget()
                r = run(url, steps, window, trim, Path(tmp))
                results[label] = r
                at = ", ".join(f"step {k}: {v}" for k, v in r["prompt_tokens_at"].items())
                print(
                    f"  {label:30} prompt tokens {at} (max {r['max_prompt']}); prefix-cache hits "
                    f"{r['hit_rate']:.0%}, {r['misses']} of {r['calls'] - 1} prompts missed; "
                    f"{r['prefilled']:,} tokens prefilled; {r['worker_seconds']:.1f} s in the worker",
                    file=out,
                )
        finally:
            server.shutdown()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--window", type=int, default=4096)
    args = parser.parse_args()
    compare(args.steps, args.window)


if __name__ == "__main__":
    main()
