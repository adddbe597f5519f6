"""The built-in suite's integrity: size, variety, and reference answers that compute."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jupyter_analyst.eval.answers import ANSWER_RE
from jupyter_analyst.eval.datasets import DATASETS
from jupyter_analyst.eval.suite import BUILTIN, builtin_tasks
from jupyter_analyst.eval.tasks import select_tasks

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> list:
    return builtin_tasks(tmp_path_factory.mktemp("datasets"))


def test_suite_is_big_and_varied() -> None:
    ids = [t.id for t in BUILTIN]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)
    assert len({t.dataset for t in BUILTIN}) >= 30
    assert all(t.dataset in DATASETS for t in BUILTIN)
    kinds = {t.kind for t in BUILTIN}
    assert kinds == {"open", "closed"}
    assert sum(t.kind == "open" for t in BUILTIN) >= 10
    tags = {tag for t in BUILTIN for tag in t.tags}
    assert {
        "missing",
        "dates",
        "mean",
        "rate",
        "correlation",
        "count-filter",
        "top-category",
        "trend",
    } <= tags
    assert all(re.fullmatch(r"[a-z0-9-]+", i) for i in ids)


def test_every_reference_answer_computes(tasks: list) -> None:
    for task in tasks:
        assert task.data_path is not None and task.data_path.exists()
        if task.kind == "open":
            assert task.reference is None and not task.answers
            continue
        expected = task.expected()
        assert set(expected) == {a.name for a in task.answers}, task.id
        for spec in task.answers:
            value = expected[spec.name]
            if spec.kind == "text":
                assert isinstance(value, list) and value and all(isinstance(v, str) for v in value), task.id
            else:
                assert isinstance(value, (int, float)) and value == value, (task.id, spec.name, value)
        asked = {m.group(1) for m in ANSWER_RE.finditer(task.prompt)}
        assert asked == {a.name for a in task.answers}, task.id


def test_datasets_have_mixed_types_missing_values_and_dates(tasks: list) -> None:
    import pandas as pd

    paths = {t.dataset: t.data_path for t in tasks}
    frames = {k: pd.read_csv(p) for k, p in paths.items()}
    assert sum(bool(df.isna().any().any()) for df in frames.values()) >= 10
    mixed = sum(
        1
        for df in frames.values()
        if df.select_dtypes("number").shape[1] and df.select_dtypes(exclude="number").shape[1]
    )
    assert mixed >= 25
    assert "rownames" not in frames["wa_churn"].columns and "name" in frames["college"].columns


def test_materialised_once(tasks: list, tmp_path: Path) -> None:
    path = tasks[0].data_path
    before = path.stat().st_mtime_ns
    again = builtin_tasks(path.parent)
    assert again[0].data_path == path and path.stat().st_mtime_ns == before


def test_select_by_glob_kind_and_limit() -> None:
    assert [t.id for t in select_tasks(BUILTIN, ["churn-*"])] == [
        "churn-drivers",
        "churn-month-to-month",
        "churn-total-charges",
    ]
    assert {t.dataset for t in select_tasks(BUILTIN, ["penguins"])} == {"penguins"}
    assert all(t.kind == "closed" for t in select_tasks(BUILTIN, kind="closed"))
    assert len(select_tasks(BUILTIN, kind="open", limit=3)) == 3
