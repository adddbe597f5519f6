"""The seed experiment in miniature: teach, train from scratch, serve and judge, on CPU.

    python benchmarks/miniature.py [--out miniature] [--preset full|ci] [--train-minutes M] ...

The experiment this product comes from fine-tuned a 9B model on analyst trajectories and
reported 89.7% unjudged completion (26 steps; the base model 0%, 1.2 steps). No GPU or
downloadable weights are needed here: every stage is the product's own command, run as a
subprocess exactly as a user would type it:

1. ``jupyter analyst collect``: the rule-based baseline analyst, with error->fix episodes
   (``--teacher-errors``), over training-pool tables disjoint from the evaluation suite's,
   judged and filtered, with observations sized to the student's window (``--context-tokens``);
2. ``jupyter analyst scratch``: a tokenizer trained on those trajectories and a small
   random-init decoder with the real profiles' chat template and tool-call format;
3. ``jupyter analyst train``: full-parameter training, time-boxed (``--max-minutes``);
4. ``jupyter analyst eval``: the held-out built-in tasks, judged, for the teacher, the base
   (random init) and the tuned model, with the quality levers on (constrained calls,
   prechecks, grounding gate, tidy) and off.

Writes ``OUT/table.md`` and ``table.csv`` (one row per policy and lever setting),
``plots/`` (training loss, judged rates), ``model/`` (the trained model), each stage's log and
result folder, and ``run.json`` (settings, stage times, figures, targets). A finished stage is
not re-run when the script is started again with the same ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

LEVERS_OFF = ["--no-constrained", "--keep-failed-cells", "--no-prechecks", "--no-grounding-gate"]
SEED = {"completion": "89.7% (unjudged)", "steps": 26.0, "base_completion": "0%", "base_steps": 1.2}
TARGETS = {"natural": 0.90, "cells_ok": 0.80, "grounded": 0.50}
"""Issue targets for the tuned model with the levers on (the base: 0% natural completion)."""


@dataclass(frozen=True)
class Preset:
    """Sizes of one experiment; ``full`` fits 60 minutes on 2 cores, ``ci`` about 3."""

    pool_datasets: int = 8
    collect_limit: int | None = None
    collect_tasks: tuple[str, ...] = ()
    """Task globs of the pool (e.g. ``*-drivers *-mean``: two questions per table, so more tables)."""
    collect_steps: int = 30
    teacher_errors: float = 0.2
    keep: str = "passed"
    rerun: bool = True
    size: str = "xs"
    context: int = 12288
    vocab_size: int = 4096
    train_minutes: float = 20.0
    learning_rate: float = 3e-3
    eval_tasks: int = 12
    eval_steps: int = 30
    eval_seconds: float = 150.0
    new_tokens: int = 768
    base_steps: int = 8
    """A random model never calls a tool of its own accord: more steps would only cost time."""
    base_new_tokens: int = 256
    rows: tuple[str, ...] = ("teacher", "base-on", "base-off", "tuned-on", "tuned-off")


PRESETS = {
    "full": Preset(),
    "ci": Preset(
        pool_datasets=1,
        collect_limit=2,
        keep="finished",
        rerun=False,
        context=4096,
        vocab_size=1024,
        train_minutes=0.5,
        eval_tasks=1,
        eval_steps=4,
        eval_seconds=40.0,
        new_tokens=96,
        base_steps=2,
        base_new_tokens=32,
        rows=("tuned-on",),
    ),
}

ROW_NAMES = {
    "teacher": "teacher (rule-based baseline)",
    "base-on": "base (random init), levers on",
    "base-off": "base (random init), levers off",
    "tuned-on": "tuned, levers on",
    "tuned-off": "tuned, levers off",
}


def eval_tasks(n: int, seed: int) -> list[str]:
    """``n`` held-out task ids, open and closed in the suite's proportion, picked by ``seed``."""
    from jupyter_analyst.eval.catalog import load_tasks

    tasks = load_tasks("builtin")
    rng = random.Random(seed)
    open_ids = sorted(t.id for t in tasks if t.kind == "open")
    closed_ids = sorted(t.id for t in tasks if t.kind == "closed")
    n_open = round(n * len(open_ids) / len(tasks)) if n > 1 else 0
    return rng.sample(open_ids, n_open) + rng.sample(closed_ids, n - n_open)


class Stages:
    """Runs each stage's command with a progress line, its log, and its time in ``run.json``."""

    def __init__(self, out: Path, total: int, quiet: bool) -> None:
        self.out, self.total, self.quiet = out, total, quiet
        self.index = 0
        self.seconds: dict[str, float] = {}
        self.started = time.monotonic()

    def run(self, name: str, argv: list[str], done: Path) -> None:
        """``jupyter analyst ARGV`` unless ``done`` exists (a finished stage of an earlier start)."""
        self.index += 1
        tag = f"[{self.index}/{self.total} {name}]"
        if done.exists():
            print(f"{tag} already done ({done.name} exists)", flush=True)
            return
        log = self.out / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"{tag} jupyter analyst {' '.join(argv)}", flush=True)
        t0 = time.monotonic()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        with log.open("w", encoding="utf-8") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jupyter_analyst", *argv],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                fh.write(line)
                if not self.quiet and _progress(line):
                    print(f"  {line.rstrip()[:160]}", flush=True)
            code = proc.wait()
        self.seconds[name] = round(time.monotonic() - t0, 1)
        if code:
            tail = log.read_text(encoding="utf-8").splitlines()[-15:]
            raise SystemExit(f"{tag} failed (exit {code}); see {log}:\n" + "\n".join(tail))
        total = time.monotonic() - self.started
        print(f"{tag} done in {self.seconds[name]:.0f} s ({total / 60:.1f} min so far)", flush=True)


def _progress(line: str) -> bool:
    """The lines worth echoing: the commands' own progress and summaries, not library noise."""
    noise = ("it/s]", "s/it]", "Warning", "warn(", "warnings.warn", "kernels-community", "examples/s]")
    return bool(line.strip()) and not any(n in line for n in noise)


def _report(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "report.json").read_text(encoding="utf-8"))


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    rates = report["rates"]

    def rate(key: str) -> float | None:
        return rates[key]["rate"]

    return {
        "tasks": report["tasks"],
        "natural": rate("natural"),
        "mean_steps": report["mean_steps"],
        "cells_ok": report["cells_ok"]["rate"],
        "cells": f"{report['cells_ok']['n']}/{report['cells_ok']['of']}",
        "errors_made": report["errors_made"],
        "errors_fixed": report["errors_fixed"],
        "answers_correct": rate("answers_correct"),
        "answers": f"{rates['answers_correct']['n']}/{rates['answers_correct']['of']}",
        "grounded": rate("grounded"),
        "grounded_of": f"{rates['grounded']['n']}/{rates['grounded']['of']}",
        "reproducible": rate("reproducible"),
        "passed": rate("passed"),
        "passed_of": f"{rates['passed']['n']}/{rates['passed']['of']}",
        "malformed_calls": (report.get("counters") or {}).get("malformed_calls", {}).get("total"),
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def write_table(out: Path, rows: dict[str, dict[str, Any]]) -> str:
    """``table.md`` (with the seed's figures beside ours) and ``table.csv``."""
    head = (
        "| policy | natural completion | mean steps | cells that ran | errors made / fixed | "
        "closed-form correct | grounded | re-runs | passed |"
    )
    lines = [head, "|" + "---|" * 9]
    for key, f in rows.items():
        lines.append(
            f"| {ROW_NAMES[key]} | {_pct(f['natural'])} | {f['mean_steps'] or 0:.1f} | {_pct(f['cells_ok'])} "
            f"({f['cells']}) | {f['errors_made']} / {f['errors_fixed']} | {_pct(f['answers_correct'])} "
            f"({f['answers']}) | {_pct(f['grounded'])} ({f['grounded_of']}) | {_pct(f['reproducible'])} | "
            f"{_pct(f['passed'])} ({f['passed_of']}) |"
        )
    lines += [
        f"| seed experiment, base model | {SEED['base_completion']} | {SEED['base_steps']} | "
        "not reported | not reported | not judged | not judged | not judged | not judged |",
        f"| seed experiment, LoRA-tuned 9B | {SEED['completion']} | {SEED['steps']} | "
        "not reported | not reported | not judged | not judged | not judged | not judged |",
    ]
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table, encoding="utf-8")
    with (out / "table.csv").open("w", newline="", encoding="utf-8") as fh:
        names = ["row", *next(iter(rows.values()), {}).keys()]
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        for key, f in rows.items():
            writer.writerow({"row": key, **f})
    return table


def write_plots(out: Path, summary: dict[str, Any], reports: dict[str, dict[str, Any]]) -> list[str]:
    """The training loss per step and the judged rates per row."""
    from jupyter_analyst.eval.report import _figure, plot_rates

    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    made = []
    losses = (summary.get("result") or {}).get("losses") or []
    if losses:
        fig = _figure(7, 3.5)
        ax = fig.add_subplot(111)
        ax.plot(range(1, len(losses) + 1), losses)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss (assistant tokens)")
        ax.set_title("Training the scratch model on teacher trajectories")
        fig.tight_layout()
        fig.savefig(plots / "loss.png")
        made.append("plots/loss.png")
    if reports:
        series = {ROW_NAMES[k]: r["rates"] for k, r in reports.items()}
        plot_rates(series, plots / "rates.png", "Held-out tasks, judged")
        made.append("plots/rates.png")
    return made


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("jupyter-analyst", "torch", "transformers", "trl", "tokenizers", "llguidance"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("miniature"), help="results folder")
    parser.add_argument("--preset", choices=list(PRESETS), default="full", help="experiment size")
    parser.add_argument("--seed", type=int, default=0, help="pool tables, teacher errors, eval tasks")
    parser.add_argument("--quiet", action="store_true", help="only the stage lines")
    parser.add_argument("--pool-datasets", type=int, help="training-pool tables the teacher analyses")
    parser.add_argument(
        "--collect-tasks", nargs="+", metavar="GLOB", help="pool task globs for the teacher (default: all)"
    )
    parser.add_argument("--train-minutes", type=float, help="training time box")
    parser.add_argument("--eval-tasks", type=int, help="held-out tasks per evaluation row")
    parser.add_argument("--eval-steps", type=int, help="model turns per held-out task")
    parser.add_argument("--size", choices=["xs", "s", "m"], help="scratch decoder size")
    parser.add_argument("--context", type=int, help="the scratch model's window in tokens")
    parser.add_argument("--rows", nargs="+", choices=list(ROW_NAMES), help="evaluations to run")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    chosen = {
        k: getattr(args, k)
        for k in ("pool_datasets", "train_minutes", "eval_tasks", "eval_steps", "size", "context")
    }
    preset = replace(preset, **{k: v for k, v in chosen.items() if v is not None})
    if args.rows:
        preset = replace(preset, rows=tuple(args.rows))
    if args.collect_tasks:
        preset = replace(preset, collect_tasks=tuple(args.collect_tasks))
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    stages = Stages(out, 3 + len(preset.rows), args.quiet)
    data = out / "teacher.jsonl"

    collect = ["collect", "-o", str(data), "--split", "train", "--baseline"]
    collect += ["--pool-datasets", str(preset.pool_datasets), "--pool-seed", str(args.seed)]
    collect += ["--teacher-errors", str(preset.teacher_errors), "--teacher-seed", str(args.seed)]
    collect += ["--keep", preset.keep, "--max-steps", str(preset.collect_steps)]
    collect += ["--context-tokens", str(preset.context)]
    collect += [] if preset.rerun else ["--no-rerun"]
    collect += ["--limit", str(preset.collect_limit)] if preset.collect_limit else []
    collect += ["--tasks", *preset.collect_tasks] if preset.collect_tasks else []
    stages.run("collect", collect, out / "logs" / "collect.done")
    (out / "logs" / "collect.done").touch()

    base = out / "base-model"
    scratch = ["scratch", "--data", str(data), "-o", str(base), "--size", preset.size]
    scratch += [
        "--context",
        str(preset.context),
        "--vocab-size",
        str(preset.vocab_size),
        "--seed",
        str(args.seed),
    ]
    stages.run("scratch", scratch, base / "scratch.json")

    model = out / "model"
    train = ["train", "--model", str(base), "--data", str(data), "-o", str(model)]
    train += ["--max-minutes", str(preset.train_minutes), "--lr-scheduler-type", "constant_with_warmup"]
    train += [
        "--learning-rate",
        str(preset.learning_rate),
        "--num-train-epochs",
        "20",
        "--save-steps",
        "100000",
    ]
    stages.run("train", train, model / "training_summary.json")

    tasks = eval_tasks(preset.eval_tasks, args.seed)
    reports: dict[str, dict[str, Any]] = {}
    for row in preset.rows:
        folder = out / "eval" / row
        cmd = ["eval", "--split", "eval", "--tasks", *tasks, "-o", str(folder)]
        is_base = row.startswith("base")
        steps = preset.base_steps if is_base else preset.eval_steps
        cmd += ["--max-steps", str(steps), "--max-time", str(preset.eval_seconds)]
        if row == "teacher":
            cmd += ["--baseline"]
        else:
            cmd += ["--model", str(base if is_base else model), "--device", "cpu", "--temperature", "0"]
            cmd += ["--max-new-tokens", str(preset.base_new_tokens if is_base else preset.new_tokens)]
            cmd += LEVERS_OFF if row.endswith("-off") else ["--constrained"]
        stages.run(f"eval {row}", cmd, folder / "report.json")
        reports[row] = _report(folder)

    figures = {row: _figures(r) for row, r in reports.items()}
    table = write_table(out, figures)
    summary = json.loads((model / "training_summary.json").read_text(encoding="utf-8"))
    plots = write_plots(out, summary, reports)
    from jupyter_analyst.training.collect import collection_stats

    result = summary.get("result") or {}
    tuned = figures.get("tuned-on")
    record = {
        "command": "python benchmarks/miniature.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "preset": args.preset,
        "settings": asdict(preset),
        "seed": args.seed,
        "eval_tasks": tasks,
        "stage_seconds": stages.seconds,
        "total_seconds": round(time.monotonic() - stages.started, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), **_versions()},
        "teacher": collection_stats(data.with_name(data.name + ".state.jsonl")),
        "scratch": json.loads((base / "scratch.json").read_text(encoding="utf-8")),
        "training": {
            k: result.get(k)
            for k in (
                "steps",
                "seconds",
                "first_loss",
                "last_loss",
                "examples",
                "tokens",
                "tokens_per_second",
                "method",
            )
        },
        "figures": figures,
        "targets": {
            k: {
                "target": v,
                "tuned_levers_on": tuned.get(k) if tuned else None,
                "met": bool(tuned and (tuned.get(k) or 0) >= v),
            }
            for k, v in TARGETS.items()
        },
        "seed_experiment": SEED,
        "plots": plots,
    }
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(table)
    print(f"results in {out} ({record['total_seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
