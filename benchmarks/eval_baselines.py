"""Reference rows for the judged evaluation: the rule-based baseline and a tiny random model.

    python benchmarks/eval_baselines.py [--out eval-baselines] [--workers 2] [--skip-tiny]

Runs the full built-in suite twice through ``jupyter analyst eval`` (so the figures come
from the same code path users run): once with the rule-based baseline analyst, once with a
tiny random-weight Qwen-style model served by the embedded worker (built here in seconds,
no download), with and without constrained tool calls. The random model must pass nothing:
it shows the judge fails runs that merely end (with the grammar it ends almost every run
with a well-formed ``final_answer`` at once). Writes ``<out>/baselines.md`` (the README
rows), each folder's report, and side-by-side comparisons. Re-running resumes: finished tasks are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROWS = ("natural", "reproducible", "has_figures", "answers_correct", "grounded", "passed")


def _row(name: str, report: dict) -> str:
    cells = []
    for metric in ROWS:
        rate = report["rates"][metric]
        cells.append(
            "n/a" if rate["rate"] is None else f"{rate['rate'] * 100:.1f}% ({rate['n']}/{rate['of']})"
        )
    return (
        f"| {name} | " + " | ".join(cells) + f" | {report['mean_steps']} | {report['wall_seconds']:.0f} s |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("eval-baselines"), help="where results go")
    parser.add_argument("--workers", type=int, default=2, help="parallel tasks (default 2)")
    parser.add_argument("--skip-tiny", action="store_true", help="only the rule-based baseline")
    parser.add_argument(
        "--tiny-steps", type=int, default=8, help="step budget for the random model (default 8)"
    )
    parser.add_argument(
        "--tiny-new-tokens", type=int, default=64, help="tokens per random-model reply (default 64)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    from jupyter_analyst.cli import main as cli

    out: Path = args.out
    common = ["eval", "--workers", str(args.workers)]
    runs = {"rule-based baseline": out / "baseline"}
    code = cli(common + ["--baseline", "-o", str(runs["rule-based baseline"])])
    if code:
        return code
    if not args.skip_tiny:
        from jupyter_analyst.testing import build_tiny_model

        model = out / "tiny-random-model"
        if not (model / "config.json").exists():
            build_tiny_model(model)
        tiny = [
            "--model",
            str(model),
            "--device",
            "cpu",
            "--max-steps",
            str(args.tiny_steps),
            "--max-new-tokens",
            str(args.tiny_new_tokens),
        ]
        # the grammar makes every reply a well-formed call (often final_answer at once), so
        # the random model "completes"; unconstrained it never calls a tool. Either way the
        # judge must fail it.
        for flag, what in (("--constrained", "constrained calls"), ("--no-constrained", "unconstrained")):
            name = f"tiny random model ({args.tiny_steps} steps, {what})"
            runs[name] = out / ("tiny-random" if flag == "--constrained" else "tiny-random-unconstrained")
            code = cli(common + tiny + [flag, "-o", str(runs[name])])
            if code:
                return code
            cli(
                [
                    "eval",
                    "compare",
                    str(runs["rule-based baseline"]),
                    str(runs[name]),
                    "-o",
                    str(runs[name].with_name(runs[name].name + "-compare")),
                ]
            )

    header = (
        "| policy | ended with final_answer | re-runs | made a figure | closed-form correct | grounded | "
        "passed | mean steps | wall time |"
    )
    lines = [header, "|" + "---|" * 9]
    for name, folder in runs.items():
        lines.append(_row(name, json.loads((folder / "report.json").read_text(encoding="utf-8"))))
    table = "\n".join(lines) + "\n"
    (out / "baselines.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
