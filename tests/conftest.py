"""Shared pytest fixtures. Keep each fixture small; heavy imports stay inside fixtures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

# Tests never download anything: tiny models are built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen3.5-architecture model + tokenizer folder (built in seconds)."""
    from jupyter_analyst.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "qwen3_5", arch="qwen3_5")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2 (attention-only) model folder: the layout without linear attention."""
    from jupyter_analyst.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2") / "qwen2", arch="qwen2")


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A non-zero LoRA adapter (all-linear) for ``tiny_model_dir``."""
    from jupyter_analyst.testing import build_tiny_lora

    return build_tiny_lora(tiny_model_dir, tmp_path_factory.mktemp("tiny-lora") / "lora")


@pytest.fixture(scope="session")
def baseline_trajectories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real baseline-analyst trajectories written by `collect` (long system + task prompts,
    like the ones users train on), shared by the training and scratch-model tests."""
    from jupyter_analyst.cli import main

    root = tmp_path_factory.mktemp("baseline-trajectories")
    traj = root / "traj.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_ANALYST_DATA_CACHE", str(root / "cache"))
        argv = ["collect", "-o", str(traj), "--baseline", "--tasks", "tips-percent", "airquality-ozone"]
        assert main([*argv, "--no-rerun", "--keep", "finished", "--quiet"]) == 0
    assert len(traj.read_text().splitlines()) == 2
    return traj


@pytest.fixture(scope="session")
def ipython_shell(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real IPython shell in this process (IPython's own terminal shell, as `ipython`
    starts it), for the in-process executor; history in memory, profile in a temp folder."""
    os.environ["IPYTHONDIR"] = str(tmp_path_factory.mktemp("ipython"))
    from IPython.terminal.interactiveshell import TerminalInteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    config.TerminalInteractiveShell.simple_prompt = True  # no terminal here
    return TerminalInteractiveShell.instance(config=config)
