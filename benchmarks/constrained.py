"""Malformed tool calls and decoding speed, with and without the tool-call grammar.

Not a test: prints figures measured in one run on this machine. The tiny random-weight
model (built here, offline) stands in for a small model at its worst: it answers the
loop's real prompts (the system prompt, a task with the frame's facts computed by the
real facts code on packaged datasets, then a turn with a cell's output) N times each way,
with the same seeds. A reply is malformed when the loop's parser finds no call, cannot
read one, or finds an unknown tool or a blank argument (``grammar.reply_problem``).

    python benchmarks/constrained.py [--n 24] [--max-tokens 128] [--temperature 0.2] [--thinking]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from jupyter_analyst.agent.prompts import SYSTEM_PROMPT, render_task
from jupyter_analyst.agent.tools import CODE_TOOL, TOOLS
from jupyter_analyst.kernel.facts import frame_facts_code, parse_facts
from jupyter_analyst.models.worker.grammar import reply_problem

QUESTIONS = [
    None,  # the general brief
    "Which group has the highest average of the main numeric measure?",
    "Are there missing values, and do they matter for the analysis?",
]


def datasets() -> dict[str, Any]:
    """Real frames from packages installed with the eval extra (no network)."""
    import palmerpenguins
    import vega_datasets

    return {
        "penguins": palmerpenguins.load_penguins(),
        "cars": vega_datasets.data.cars(),
    }


def prompts() -> list[list[dict[str, Any]]]:
    """The loop's messages at its first and second step, for each dataset and question."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    out: list[list[dict[str, Any]]] = []
    for name, frame in datasets().items():
        shell.user_ns["df"] = frame
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            shell.run_cell(frame_facts_code("df"), silent=True)
        facts = parse_facts(buf.getvalue())
        facts["source"] = f"{name}.csv"
        for question in QUESTIONS:
            first = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": render_task(facts, question)},
            ]
            code = "print(df.describe().round(2))"
            call = {"type": "function", "function": {"name": CODE_TOOL, "arguments": {"code": code}}}
            second = first + [
                {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "content": frame.describe().round(2).to_string()},
            ]
            out += [first, second]
    return out


class _Clock:
    """A generation streamer that only notes when each new token arrives."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: Any) -> None:
        self.times.append(time.perf_counter())  # the first put is the prompt

    def end(self) -> None:
        pass


def generate(engine: Any, body: dict[str, Any]) -> tuple[str, int, float, float]:
    """(problem or "ok", new tokens after the first, their decode seconds, first-token seconds).

    Decode speed counts from the first new token on, so the (shared) prefill stays apart.
    """
    import torch

    t0 = time.perf_counter()
    inputs, gen, thinking = engine.prepare(body)
    clock = _Clock()
    with torch.inference_mode():
        out = engine.model.generate(**inputs, **gen, streamer=clock)
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    # The raw text is what the parser judges: decode it from the same generation.
    problem = reply_problem(engine.tokenizer.decode(new, skip_special_tokens=True), thinking)
    first, last = clock.times[1], clock.times[-1]
    return problem.split(" '")[0] or "ok", len(new) - 1, max(last - first, 1e-9), first - t0


def measure(engine: Any, messages: list[list[dict[str, Any]]], n: int, args: Any) -> dict[bool, dict]:
    """Both modes on the same prompt and seed, interleaved, so a busy machine hits both alike."""
    problems: dict[bool, Counter[str]] = {False: Counter(), True: Counter()}
    sums = {mode: [0, 0.0, 0.0] for mode in (False, True)}
    rates: dict[bool, list[float]] = {False: [], True: []}
    for i in range(n):
        for mode in (False, True):
            body = {
                "messages": messages[i % len(messages)],
                "tools": TOOLS,
                "temperature": args.temperature,
                "max_tokens": args.max_tokens,
                "seed": i,
                "constrained": mode,
                "chat_template_kwargs": {"enable_thinking": args.thinking},
            }
            problem, tokens, seconds, first = generate(engine, body)
            problems[mode][problem] += 1
            sums[mode][0] += tokens
            sums[mode][1] += seconds
            sums[mode][2] += first
            rates[mode].append(tokens / seconds)
    return {
        mode: {
            "malformed": 1 - problems[mode]["ok"] / n,
            "problems": dict(problems[mode]),
            "tok_s": sums[mode][0] / sums[mode][1],
            "tok_s_median": statistics.median(rates[mode]),
            "tokens": sums[mode][0],
            "first_token_s": sums[mode][2] / n,
        }
        for mode in (False, True)
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=24, help="generations per mode")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.2, help="the built-in profiles' default")
    p.add_argument("--thinking", action="store_true", help="open a <think> block first")
    p.add_argument("--arch", default="qwen3_5", choices=["qwen3_5", "qwen2"])
    args = p.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jupyter_analyst.models.worker.engine import Engine
    from jupyter_analyst.models.worker.process import make_constraint
    from jupyter_analyst.testing import build_tiny_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_model(Path(tmp) / "tiny", arch=args.arch)
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path).eval()
    engine = Engine(tok, model, "tiny", args.max_tokens, args.thinking, prefix_cache=False)
    t0 = time.perf_counter()
    engine.constraint = make_constraint("on", engine)
    setup = time.perf_counter() - t0
    messages = prompts()
    measure(engine, messages, 2, args)  # warm up both paths (grammar compile, kernels)
    results = measure(engine, messages, args.n, args)
    off, on = results[False], results[True]
    print(
        f"tiny {args.arch} model, CPU x{torch.get_num_threads()}, {args.n} generations per mode "
        f"over {len(messages)} prompts, max_tokens {args.max_tokens}, temperature {args.temperature}, "
        f"thinking {'on' if args.thinking else 'off'}; tokenizer wrap {setup * 1000:.0f} ms"
    )
    for label, r in (("unconstrained", off), ("constrained", on)):
        print(
            f"  {label:13s} malformed {r['malformed']:6.1%}  {r['tok_s']:7.1f} tok/s "
            f"(median {r['tok_s_median']:.1f}), first token {r['first_token_s']:.2f} s, "
            f"{r['tokens']} tokens  {r['problems']}"
        )
    print(f"  decode speed ratio constrained/unconstrained: {on['tok_s'] / off['tok_s']:.2f}")


if __name__ == "__main__":
    main()
