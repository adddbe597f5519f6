"""Every performance figure of the README's "Measured" table, measured in one run.

    python benchmarks/all.py [--steps 300] [--requests 40] [--context-steps 80]
                             [--window 16384] [--json figures.json] [--quick]

Not a test. Runs, one after another in this process (so on the same machine state):
- ``loop_overhead``: the loop vs raw jupyter_client vs the old whole-notebook writer per
  step at step 10 / 100 / 300, and end to end vs nbclient, ``print(1)`` cells and 44 KB
  plot cells;
- ``worker_http``: the embedded worker's HTTP layer, TCP_NODELAY vs Nagle, non-streamed
  and streamed;
- ``context_growth``: the prompt over a long run on an 80-column frame, the one-go trim vs
  trimming one result per step, and the worker with vs without its prefix cache.
Each section prints its own detail; the summary at the end is the table of ratios (each
against its baseline measured here). ``--quick`` shrinks every section (a smoke run).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import context_growth  # noqa: E402
import loop_overhead  # noqa: E402
import worker_http  # noqa: E402


def loop_section(steps: int) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in loop_overhead.CELLS:
            result = loop_overhead.measure(kind, steps, Path(tmp))
            loop_overhead.report(result)
            results.append(result)
    return results


def http_section(requests: int) -> list[dict[str, Any]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jupyter_analyst.models.worker.engine import Engine
    from jupyter_analyst.testing.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_model(Path(tmp) / "tiny")
        engine = Engine(
            AutoTokenizer.from_pretrained(folder),
            AutoModelForCausalLM.from_pretrained(folder),
            "tiny",
            max_new_tokens=16,
            enable_thinking=False,
        )
        print(f"\nthe worker's HTTP layer: median of {requests} requests each, one keep-alive client")
        return worker_http.compare(engine, requests)


def summary(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, figure) rows: every ratio against the baseline measured in this run."""
    rows: list[tuple[str, str]] = []
    for r in figures["loop"]:
        kind, ends = r["kind"], r["end_to_end"]
        steps = [k for k in r["raw"] if r["raw"][k] is not None]
        per_step = ", ".join(
            f"{k}: {r['loop'][k] / r['raw'][k]:.2f} (old {r['loop_full_rewrite'][k] / r['raw'][k]:.2f})"
            for k in steps
        )
        first, last = steps[0], steps[-1]
        drift = (r["loop"][last] - r["raw"][last]) - (r["loop"][first] - r["raw"][first])
        rows.append((f"loop/raw per step, {kind} cells, at step (old writer)", per_step))
        rows.append(
            (f"loop overhead, step {last} minus step {first}, {kind} cells", f"{drift * 1e3:+.1f} ms")
        )
        rows.append(
            (
                f"end to end, {r['steps']} {kind} cells: loop/nbclient (old writer/nbclient)",
                f"{ends['loop'] / ends['nbclient']:.2f}x "
                f"({ends['loop_full_rewrite'] / ends['nbclient']:.2f}x); "
                f"{ends['loop']:.1f} s vs {ends['nbclient']:.1f} s",
            )
        )
    for r in figures["http"]:
        kind = f"{'streamed' if r['stream'] else 'non-streamed'}, {r['max_tokens']} token(s)"
        now, before = r["now"], r["before"]
        share = f", HTTP {now['http_share']:.0%} of it" if "http_share" in now else ""
        rows.append(
            (
                f"worker request, {kind}: Nagle (before) / TCP_NODELAY",
                f"{before['total_ms'] / now['total_ms']:.2f}x; {now['total_ms']:.1f} ms{share}",
            )
        )
    growth = figures["context"]
    now, before, nocache = (growth[label] for label, _, _ in context_growth.VARIANTS)
    rows.append(
        (
            "context over the run: tokens prefilled, trim one per step / one-go trim",
            f"{before['prefilled'] / now['prefilled']:.2f}x "
            f"({before['prefilled']:,} vs {now['prefilled']:,}); cache hits {now['hit_rate']:.0%} "
            f"vs {before['hit_rate']:.0%}; max prompt {now['max_prompt']:,} tokens",
        )
    )
    rows.append(
        (
            "worker time over the run: no prefix cache / prefix cache",
            f"{nocache['worker_seconds'] / now['worker_seconds']:.2f}x "
            f"({nocache['worker_seconds']:.1f} s vs {now['worker_seconds']:.1f} s; "
            f"{nocache['prefilled']:,} vs {now['prefilled']:,} tokens prefilled)",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="cells per loop-overhead run")
    p.add_argument("--requests", type=int, default=40, help="requests per worker HTTP figure")
    p.add_argument("--context-steps", type=int, default=80, help="steps of the context-growth run")
    p.add_argument("--window", type=int, default=16384, help="the context window of the context-growth run")
    p.add_argument("--json", type=Path, help="write every figure here")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not figures")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.requests, args.context_steps, args.window = 20, 3, 12, 2048
    started = time.perf_counter()
    figures: dict[str, Any] = {
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    figures["loop"] = loop_section(args.steps)
    figures["http"] = http_section(args.requests)
    print()
    figures["context"] = context_growth.compare(args.context_steps, args.window)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    rows = summary(figures)
    figures["summary"] = [{"what": w, "figure": f} for w, f in rows]
    print(f"\nsummary ({figures['seconds']:.0f} s, {figures['machine']['cpus']} CPUs)\n")
    print("| what | figure |\n|---|---|")
    for what, figure in rows:
        print(f"| {what} | {figure} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
