"""The training pool and its questions: disjoint from the eval suite, deterministic, with
references that agree with pandas computed independently, and ``collect --split train``
end to end (baseline teacher with error->fix episodes, judged, in real kernels)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from jupyter_analyst.eval.datasets import DATASETS, load_frame
from jupyter_analyst.training.pool import (
    candidates,
    is_suite_dataset,
    is_variant,
    pool_datasets,
    suite_signatures,
)


def test_pool_is_disjoint_from_the_suite_by_name_and_by_content() -> None:
    pairs, names, shapes = suite_signatures()
    chosen = pool_datasets(25, seed=0)
    assert len(chosen) == 25
    for spec in chosen:
        assert (spec.package, spec.item) not in pairs and spec.item.lower() not in names
        df = load_frame(spec)
        assert (len(df), df.shape[1]) not in shapes and (len(df), df.shape[1] + 1) not in shapes
    suite_items = {(d.package, d.item) for d in DATASETS.values()}
    assert not suite_items & {(c.package, c.item) for c in candidates()}
    # The same table under another package's name, or another name with the suite's shape.
    assert is_suite_dataset("openintro", "tips", 95, 5)
    assert is_suite_dataset("modeldata", "penguins", 344, 7)
    assert is_suite_dataset("somepkg", "renamed", 344, 8)  # palmerpenguins' shape
    assert not is_suite_dataset("MASS", "Cars93", 93, 27)
    assert is_variant("economics_long") and is_variant("Economics.long") and not is_variant("econ")


def test_pool_is_deterministic_and_seeded() -> None:
    a, b = pool_datasets(8, seed=3), pool_datasets(8, seed=3)
    assert [s.key for s in a] == [s.key for s in b]
    assert [s.key for s in a] != [s.key for s in pool_datasets(8, seed=4)]
    assert len({s.key for s in a}) == 8 and all(s.key.startswith("pool_") for s in a)


def _independent(task: Any, df: pd.DataFrame) -> dict[str, Any]:
    """Each template's answer recomputed from the question's own words."""
    q = task.question
    cols = sorted((str(c) for c in df.columns), key=len, reverse=True)

    def named(after: int = 0) -> list[str]:
        found = []
        for c in cols:
            for m in re.finditer(rf"(?<![\w.]){re.escape(c)}(?![\w])", q):
                if m.start() >= after and not any(m.start() in range(s, s + len(n)) for s, n in found):
                    found.append((m.start(), c))
        return [c for _, c in sorted(found)]

    value = re.search(r"'([^']*)'", q)
    template = task.tags[1]
    if template == "mean":
        return {"mean_value": df[named()[0]].mean()}
    if template == "share":
        g = named()[0]
        return {"pct": (df[g] == value[1]).sum() / len(df) * 100}
    if template == "count":
        threshold = float(re.findall(r"(-?\d+(?:\.\d+)?)(?!\w)", q)[-1])
        return {"n_rows": int((df[named()[0]] > threshold).sum())}
    if template == "corr":
        a, b = named()[:2]
        return {"r": df[[a, b]].dropna().corr().iloc[0, 1]}
    if template == "top":
        counts = df[named()[0]].value_counts()
        return {"top": sorted(counts[counts == counts.max()].index)}
    if template == "best_group":
        g, m = named()[:2]
        means = {k: v[m].mean() for k, v in df.groupby(g)}
        best = max(x for x in means.values() if x == x)
        return {"group": sorted(k for k, x in means.items() if abs(x - best) < 1e-9)}
    assert template == "group_mean"
    m, g = (named()[0], named()[1]) if "mean" in q.split(named()[0])[0] else named()[1::-1]
    return {"mean_value": df.loc[df[g] == value[1], m].mean()}


@pytest.mark.parametrize("seed", [0, 1])
def test_each_templates_reference_on_real_tables(tmp_path: Path, seed: int) -> None:
    from jupyter_analyst.eval.answers import score_answer
    from jupyter_analyst.training.questions import TEMPLATES, pool_tasks

    tasks = pool_tasks(4, seed, tmp_path)
    closed = [t for t in tasks if t.kind == "closed"]
    assert {t.tags[1] for t in closed} == set(TEMPLATES)
    assert {t.kind for t in tasks} == {"open", "closed"} and len({t.id for t in tasks}) == len(tasks)
    for task in closed:
        assert task.data_path is not None and task.data_path.parent == tmp_path
        df = pd.read_csv(task.data_path)
        expected, check = task.expected(), _independent(task, df)
        for spec in task.answers:
            want = check[spec.name]
            shown = want[0] if isinstance(want, list) else f"{want:.{spec.decimals}f}"
            assert score_answer(spec, expected[spec.name], str(shown)), (task.question, expected, check)
        assert "@" in task.prompt and task.question in task.prompt


def test_catalog_splits(tmp_path: Path) -> None:
    from jupyter_analyst.errors import InputError
    from jupyter_analyst.eval.catalog import load_tasks

    train = load_tasks("train", pool_datasets=2, cache=tmp_path)
    again = load_tasks("pool", pool_datasets=2, cache=tmp_path)
    assert [t.summary() for t in train] == [t.summary() for t in again]
    held_out = load_tasks("eval")
    assert not {t.dataset for t in train} & {t.dataset for t in held_out}
    assert len(load_tasks("pool", kind="closed", patterns=["*-corr"], pool_datasets=2, cache=tmp_path)) <= 2
    with pytest.raises(InputError):
        load_tasks("pool", pool_datasets=0, cache=tmp_path)


def test_collect_over_the_pool_with_teacher_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``collect --split train``: judged (with the re-run), kept when passed, mistakes fixed."""
    from jupyter_analyst.cli import main

    monkeypatch.setenv("JUPYTER_ANALYST_DATA_CACHE", str(tmp_path / "cache"))
    traj = tmp_path / "traj.jsonl"
    argv = ["collect", "-o", str(traj), "--split", "train", "--pool-datasets", "1", "--baseline"]
    argv += [
        "--tasks",
        "*-share",
        "*-best_group",
        "--teacher-errors",
        "0.3",
        "--quiet",
        "--cell-timeout",
        "60",
    ]
    assert main(argv) == 0
    recs = [json.loads(line) for line in traj.read_text().splitlines()]
    state = [json.loads(line) for line in Path(f"{traj}.state.jsonl").read_text().splitlines()]
    assert len(state) == 2 and all(s["status"] == "pass" and s["kept"] for s in state), state
    assert len(recs) == 2 and all(r["meta"]["suite"] == "pool" and r["meta"]["passed"] for r in recs)
    assert sum(s["errors_fixed"] for s in state) >= 1
    assert all(s["errors"] == s["errors_fixed"] for s in state)
    for r in recs:
        answers = r["meta"]["verdict"]["answers"]
        assert answers and all(a["ok"] for a in answers.values()), answers
    assert main(argv) == 0  # resumable: nothing left to do
    assert len(traj.read_text().splitlines()) == 2
