"""Reports from judged records: Markdown + JSON + PNG plots, and a side-by-side comparison.

Every rate is printed with its numerator and denominator, so "89.7%" can't hide that it
was 26 of 29, and a task that crashed in our harness counts as failed everywhere rather
than vanishing from the denominator. Plots are drawn with matplotlib's Agg canvas directly
(no pyplot state), so reports can be written from any thread or a headless machine.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from .harness import RUN_INFO, load_records
from .judge import METRICS

COUNTERS = {
    "prechecks": "pre-execution catches",
    "grounding_returns": "grounding-gate returns",
    "malformed_calls": "malformed calls",
    "cells_removed": "cells removed by tidy",
}
"""The loop's own per-run counters (``RunFinished``), shown per run and in total."""

LABELS = {
    "natural": "ended with final_answer",
    "reproducible": "re-runs without error",
    "rerun_consistent": "re-run adds no new error",
    "has_figures": "made a figure",
    "answers_correct": "closed-form answers correct",
    "grounded": "conclusions grounded",
    "passed": "passed all checks",
}


def _rate(n: int, of: int) -> dict[str, Any]:
    return {"n": n, "of": of, "rate": round(n / of, 4) if of else None}


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def _counters(ok: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per counter: its total, its mean per run and how many runs had one at least."""
    return {
        key: {
            "total": sum(int(v.get(key) or 0) for v in ok),
            "mean": _mean([float(v.get(key) or 0) for v in ok]),
            "runs": _rate(sum(1 for v in ok if v.get(key)), len(ok)),
        }
        for key in COUNTERS
    }


def _grounded_cell(v: dict[str, Any]) -> str:
    if not v:
        return ""
    if v.get("grounded") is None:
        return "n/a"
    return f"{v.get('claims_supported', 0)}/{v.get('claims', 0)}"


def summarize(records: list[dict[str, Any]], info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rates per metric (overall, open, closed), averages, stop reasons and per-task rows."""
    info = info or {}
    verdicts = [(r, r.get("verdict") or {}) for r in records]
    rates: dict[str, dict[str, Any]] = {}
    by_kind: dict[str, dict[str, dict[str, Any]]] = {"open": {}, "closed": {}}
    for metric in METRICS:
        for scope, subset in (
            ("all", verdicts),
            ("open", [x for x in verdicts if x[0]["task"]["kind"] == "open"]),
            ("closed", [x for x in verdicts if x[0]["task"]["kind"] == "closed"]),
        ):
            if metric == "answers_correct" and scope != "closed":
                subset = [x for x in subset if x[0]["task"]["kind"] == "closed"]
            # harness errors count as failures; a check that was skipped (None) leaves the denominator
            judged = [v for r, v in subset if r.get("harness_error") or v.get(metric) is not None]
            value = _rate(sum(1 for v in judged if v.get(metric)), len(judged))
            if scope == "all":
                rates[metric] = value
            else:
                by_kind[scope][metric] = value
    ok = [v for r, v in verdicts if not r.get("harness_error")]
    subs = [a for v in ok for a in (v.get("answers") or {}).values()]
    rows = []
    for r, v in verdicts:
        answers = v.get("answers") or {}
        rows.append(
            {
                "task": r["task_id"],
                "kind": r["task"]["kind"],
                "dataset": r["task"]["dataset"],
                "stop": v.get("stop_reason", "harness error" if r.get("harness_error") else "?"),
                "steps": v.get("steps"),
                "figures": v.get("figures"),
                "reproducible": v.get("reproducible"),
                "answers": f"{sum(1 for a in answers.values() if a.get('ok'))}/{len(answers)}"
                if answers
                else "",
                "grounded": _grounded_cell(v),
                "passed": bool(v.get("passed")),
                **{key: v.get(key) for key in COUNTERS},
                "seconds": r.get("wall_seconds"),
                "error": r.get("harness_error", ""),
            }
        )
    sessions = info.get("sessions") or []
    summary: dict[str, Any] = {
        "policy": info.get("policy") or (records[0].get("policy") if records else ""),
        "suite": info.get("suite", ""),
        "tasks": len(records),
        "open_tasks": sum(1 for r in records if r["task"]["kind"] == "open"),
        "closed_tasks": sum(1 for r in records if r["task"]["kind"] == "closed"),
        "datasets": len({r["task"]["dataset"] for r in records}),
        "harness_errors": sum(1 for r in records if r.get("harness_error")),
        "rates": rates,
        "rates_by_kind": by_kind,
        "sub_answers": _rate(sum(1 for a in subs if a.get("ok")), len(subs)),
        "mean_steps": _mean([v["steps"] for v in ok if "steps" in v]),
        "mean_tokens": _mean([v["tokens"] for v in ok if "tokens" in v]),
        "mean_run_seconds": _mean([v["seconds"] for v in ok if "seconds" in v]),
        "mean_task_wall_seconds": _mean([r.get("wall_seconds", 0.0) for r in records]),
        "errors_made": sum(v.get("errors", 0) for v in ok),
        "errors_fixed": sum(v.get("errors_fixed", 0) for v in ok),
        "cells_ok": _rate(sum(v.get("cells_ok", 0) for v in ok), sum(v.get("cells", 0) for v in ok)),
        "stop_reasons": dict(Counter(v.get("stop_reason", "harness_error") for _, v in verdicts)),
        "grounded_na": sum(1 for v in ok if v and "grounded" in v and v["grounded"] is None),
        "counters": _counters(ok),
        "skipped": list(info.get("skipped") or []),
        "wall_seconds": round(sum(s.get("wall_seconds", 0.0) for s in sessions), 1),
        "workers": sessions[-1].get("workers") if sessions else None,
        "cpus": sessions[-1].get("cpus") if sessions else None,
        "budget": sessions[-1].get("budget") if sessions else None,
        "rows": rows,
    }
    if summary["suite"] == "dabench" or any(r["task"].get("scoring") == "dabench" for r in records):
        from .dabench import dabench_scores

        summary["dabench"] = dabench_scores(records)
    return summary


def pct(rate: dict[str, Any]) -> str:
    return "n/a" if rate.get("rate") is None else f"{rate['rate'] * 100:.1f}% ({rate['n']}/{rate['of']})"


def _mark(value: Any) -> str:
    return "-" if value is None else ("yes" if value else "no")


def render_markdown(s: dict[str, Any], plots: dict[str, str] | None = None) -> str:
    """The report as Markdown: headline rates, averages, plots and the per-task table."""
    lines = [
        f"# Evaluation: {s['policy'] or 'unknown policy'}",
        "",
        f"Suite `{s['suite']}`: {s['tasks']} tasks ({s['open_tasks']} open, {s['closed_tasks']} closed-form) "
        f"over {s['datasets']} datasets. Wall time {s['wall_seconds']:.0f} s with {s['workers']} worker(s) "
        f"on {s['cpus']} CPU(s); budget {s['budget']}. Harness errors: {s['harness_errors']}.",
        "",
        "| check | all | open | closed |",
        "|---|---|---|---|",
    ]
    for metric in METRICS:
        by = s["rates_by_kind"]
        lines.append(
            f"| {LABELS[metric]} | {pct(s['rates'][metric])} | {pct(by['open'][metric])} | "
            f"{pct(by['closed'][metric])} |"
        )
    lines += [
        "",
        f"- Sub-answers correct: {pct(s['sub_answers'])}",
        f"- Mean steps {s['mean_steps']}, mean tokens {s['mean_tokens']}, "
        f"mean run time {s['mean_run_seconds']} s, "
        f"mean time per task incl. judging {s['mean_task_wall_seconds']} s",
        f"- Code cells that ran: {pct(s['cells_ok'])}; "
        f"errors made {s['errors_made']}, fixed {s['errors_fixed']}",
        f"- Stop reasons: {', '.join(f'{k} {v}' for k, v in sorted(s['stop_reasons'].items()))}",
    ]
    lines.append(
        f"- Grounding n/a (conclusions stating nothing checkable): {s['grounded_na']} run(s), "
        "left out of the grounded rate"
    )
    counters = s["counters"]
    lines.append(
        "- Loop levers: "
        + "; ".join(
            f"{label} {counters[key]['total']} (mean {counters[key]['mean']} per run, "
            f"in {pct(counters[key]['runs'])} of runs)"
            for key, label in COUNTERS.items()
        )
    )
    if "dabench" in s:
        d = s["dabench"]
        every = d["all_questions"]
        lines.append(
            f"- DABench accuracy (as DABench counts: {d['answered']} answered question(s), "
            f"{d['unanswered']} unanswered left out) by question {d['accuracy_by_question']:.2%}, "
            f"proportional {d['accuracy_proportional']:.2%}, "
            f"by sub-question {d['accuracy_by_sub_question']:.2%}"
        )
        lines.append(
            f"- DABench accuracy with the {d['unanswered']} unanswered as failures: by question "
            f"{every['accuracy_by_question']:.2%}, proportional {every['accuracy_proportional']:.2%}, "
            f"by sub-question {every['accuracy_by_sub_question']:.2%}"
        )
    if s["skipped"]:
        names = ", ".join(f"{k['id']} ({k.get('file', '')})" for k in s["skipped"])
        lines.append(f"- Skipped before the run, their table missing: {len(s['skipped'])}: {names}")
    for title, path in (plots or {}).items():
        lines += ["", f"![{title}]({path})"]
    lines += [
        "",
        "## Tasks",
        "",
        "| task | kind | dataset | stop | steps | figures | re-runs | answers | grounded "
        "| prechecks | gate returns | malformed | removed | passed | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in s["rows"]:
        stop = r["stop"] if not r["error"] else f"harness error: {r['error'][:60]}"
        steps = "-" if r["steps"] is None else r["steps"]
        figures = "-" if r["figures"] is None else r["figures"]
        lines.append(
            f"| {r['task']} | {r['kind']} | {r['dataset']} | {stop} | {steps} | {figures} "
            f"| {_mark(r['reproducible'])} | {r['answers']} | {r['grounded']} "
            + "".join(f"| {'-' if r[key] is None else r[key]} " for key in COUNTERS)
            + f"| {'**yes**' if r['passed'] else 'no'} | {r['seconds'] or 0:.0f} |"
        )
    lines += [
        "",
        "Grounded: claims (numbers, and text answers) that some cell output supports / claims "
        "stated; n/a when the conclusions state nothing checkable (no failure on a closed-form "
        "task, a failure on an open one) (rule: `jupyter_analyst/agent/grounding.py`). "
        "Prechecks, gate returns, malformed calls and removed cells are the loop's own counts per run.",
    ]
    return "\n".join(lines) + "\n"


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_rates(series: dict[str, dict[str, dict[str, Any]]], path: Path, title: str) -> Path:
    """Horizontal bars of each metric's rate, one bar per series (one run, or A vs B)."""
    fig = _figure(8, 0.5 + 0.55 * len(METRICS) * max(1, len(series)))
    ax = fig.add_subplot(111)
    height = 0.8 / max(1, len(series))
    for i, (name, rates) in enumerate(series.items()):
        ys = [j + i * height for j in range(len(METRICS))]
        vals = [(rates[m]["rate"] or 0.0) * 100 for m in METRICS]
        bars = ax.barh(ys, vals, height=height, label=name)
        for bar, m in zip(bars, METRICS, strict=True):
            ax.text(
                bar.get_width() + 1,
                bar.get_y() + bar.get_height() / 2,
                pct(rates[m]),
                va="center",
                fontsize=8,
            )
    ax.set_yticks([j + height * (len(series) - 1) / 2 for j in range(len(METRICS))])
    ax.set_yticklabels([LABELS[m] for m in METRICS])
    ax.invert_yaxis()
    ax.set_xlim(0, 135)
    ax.set_xlabel("% of tasks")
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_steps(records_by: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Histogram of steps per run."""
    fig = _figure(7, 3.5)
    ax = fig.add_subplot(111)
    values = {k: [(r.get("verdict") or {}).get("steps", 0) for r in recs] for k, recs in records_by.items()}
    top = max([max(v, default=0) for v in values.values()] + [1])
    bins = list(range(0, top + 2))
    ax.hist(list(values.values()), bins=bins, label=list(values), align="left")
    ax.set_xlabel("steps per run")
    ax.set_ylabel("runs")
    ax.set_title("Steps per run")
    if len(values) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _info(folder: Path) -> dict[str, Any]:
    path = folder / RUN_INFO
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except ValueError:
        return {}


def write_report(output: Path, task_ids: list[str] | None = None) -> dict[str, Any]:
    """Write ``report.md``, ``report.json`` and ``plots/*.png`` for the records in ``output``."""
    records = load_records(output)
    chosen = (
        [records[t] for t in task_ids if t in records] if task_ids is not None else list(records.values())
    )
    summary = summarize(chosen, _info(output))
    plots_dir = output / "plots"
    plots_dir.mkdir(exist_ok=True)
    plots: dict[str, str] = {}
    if chosen:
        plot_rates({summary["policy"]: summary["rates"]}, plots_dir / "rates.png", "Rates per check")
        plot_steps({summary["policy"]: chosen}, plots_dir / "steps.png")
        plots = {"rates per check": "plots/rates.png", "steps per run": "plots/steps.png"}
    summary["plots"] = plots
    (output / "report.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    (output / "report.md").write_text(render_markdown(summary, plots), encoding="utf-8")
    return summary


def compare(dir_a: Path, dir_b: Path, out: Path | None = None) -> dict[str, Any]:
    """Side by side: rates of two result folders on the tasks both ran, and per-task differences."""
    rec_a, rec_b = load_records(dir_a), load_records(dir_b)
    common = [t for t in rec_a if t in rec_b]
    a = summarize([rec_a[t] for t in common], _info(dir_a))
    b = summarize([rec_b[t] for t in common], _info(dir_b))
    name_a = f"A: {a['policy'] or dir_a.name}"
    name_b = f"B: {b['policy'] or dir_b.name}"
    out = out or dir_b / "compare"
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Comparison on {len(common)} common tasks",
        "",
        f"- {name_a} (`{dir_a}`)",
        f"- {name_b} (`{dir_b}`)",
        "",
        "| check | A | B | B - A |",
        "|---|---|---|---|",
    ]
    for m in METRICS:
        ra, rb = a["rates"][m]["rate"], b["rates"][m]["rate"]
        delta = f"{(rb - ra) * 100:+.1f} pts" if ra is not None and rb is not None else "n/a"
        lines.append(f"| {LABELS[m]} | {pct(a['rates'][m])} | {pct(b['rates'][m])} | {delta} |")
    lines += [
        "",
        f"Mean steps A {a['mean_steps']} / B {b['mean_steps']}; mean tokens A {a['mean_tokens']} / "
        f"B {b['mean_tokens']}; wall time A {a['wall_seconds']} s / B {b['wall_seconds']} s.",
        "",
    ]
    changed = []
    for t in common:
        pa = bool((rec_a[t].get("verdict") or {}).get("passed"))
        pb = bool((rec_b[t].get("verdict") or {}).get("passed"))
        if pa != pb:
            changed.append((t, pa, pb))
    lines += ["## Tasks whose verdict differs", "", "| task | A passed | B passed |", "|---|---|---|"]
    lines += [f"| {t} | {_mark(pa)} | {_mark(pb)} |" for t, pa, pb in changed] or ["| (none) | | |"]
    if common:
        plot_rates({name_a: a["rates"], name_b: b["rates"]}, out / "compare.png", "A vs B: rates per check")
        plot_steps(
            {name_a: [rec_a[t] for t in common], name_b: [rec_b[t] for t in common]},
            out / "compare_steps.png",
        )
        lines += ["", "![rates](compare.png)", "", "![steps](compare_steps.png)"]
    result = {
        "a": {k: v for k, v in a.items() if k != "rows"},
        "b": {k: v for k, v in b.items() if k != "rows"},
        "common_tasks": len(common),
        "changed": [{"task": t, "a": pa, "b": pb} for t, pa, pb in changed],
    }
    (out / "compare.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    (out / "compare.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return result
