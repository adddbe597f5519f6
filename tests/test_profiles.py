"""Profiles: user files, memory estimates, and the default chosen for a machine."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from jupyter_analyst.errors import InputError
from jupyter_analyst.models.profiles import (
    BUILTIN_PROFILES,
    Machine,
    get_profile,
    load_profiles,
    pick_default,
)


def test_user_profiles_inherit_and_override(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(
        '[profiles.mine]\ninherits = "qwen3.5-9b-4bit"\nadapter = "/adapters/analyst"\n'
        'description = "with my LoRA"\n'
        '[profiles.office]\nkind = "openai"\nbase_url = "http://127.0.0.1:8000/v1"\nmodel = "m"\n'
        'description = "team server"\n'
    )
    profiles = load_profiles(path)
    mine = profiles["mine"]
    assert mine.model == "Qwen/Qwen3.5-9B" and mine.adapter == "/adapters/analyst"
    assert mine.quantization == "4bit" and mine.source == str(path)
    assert profiles["office"].kind == "openai" and profiles["office"].base_url.endswith("/v1")
    assert set(BUILTIN_PROFILES) <= set(profiles)


def test_bad_profile_files_say_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text("[profiles.x]\nmodle = 'typo'\n")
    with pytest.raises(InputError, match="unknown keys: modle"):
        load_profiles(path)
    path.write_text("[profiles.x]\ninherits = 'nope'\n")
    with pytest.raises(InputError, match="inherits unknown profile 'nope'"):
        load_profiles(path)
    path.write_text("[profiles.x\n")
    with pytest.raises(InputError, match="cannot read profiles file"):
        load_profiles(path)
    with pytest.raises(InputError, match="unknown profile 'nope'"):
        get_profile("nope", dict(BUILTIN_PROFILES))


def test_memory_estimates_fit_the_12gb_promise() -> None:
    nine = BUILTIN_PROFILES["qwen3.5-9b-4bit"]
    assert 6 < nine.memory_gb("cuda") < 12
    assert nine.memory_gb("cuda", context=32_768) > nine.memory_gb("cuda")
    assert BUILTIN_PROFILES["baseline"].memory_gb() == 0.0


def test_default_follows_the_machine(tmp_path: Path) -> None:
    profiles = dict(BUILTIN_PROFILES)
    big_gpu = Machine(gpu_name="RTX 4070 Ti", gpu_free_gb=11.5, has_torch=True)
    assert pick_default(profiles, big_gpu)[0].name == "qwen3.5-9b-4bit"
    small_gpu = Machine(gpu_name="GTX 1650", gpu_free_gb=3.8, has_torch=True)
    chosen, why = pick_default(profiles, small_gpu)
    assert chosen.name == "baseline" and "too little free memory" in why
    # A CPU profile whose weights are already on disk serves where no GPU can.
    local = tmp_path / "small-model"
    local.mkdir()
    profiles["qwen2.5-1.5b-cpu"] = replace(profiles["qwen2.5-1.5b-cpu"], model=str(local))
    chosen, why = pick_default(profiles, Machine(has_torch=True))
    assert chosen.name == "qwen2.5-1.5b-cpu" and "already on disk" in why
    chosen, why = pick_default(profiles, Machine(has_torch=False))
    assert chosen.name == "baseline" and "not installed" in why
