"""Turn user choices (profile, model, adapter, base URL, replay) into a ready Policy.

One place decides, so the CLI, the magic, evaluation and the server extension all resolve
"which model drives the analyst" the same way and say the same thing about it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..agent.types import Policy
from ..errors import InputError
from .profiles import Profile, get_profile, load_profiles, model_context, pick_default


@dataclass
class PolicyChoice:
    """What the user asked for; empty means "the default for this machine"."""

    profile: str | None = None
    model: str | None = None
    adapter: str | None = None
    quantization: str | None = None
    device: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    replay: Path | None = None
    temperature: float | None = None
    max_new_tokens: int | None = None
    constrained: bool | None = None
    dialect: str | None = None
    """The tool dialect the model was trained on (``agent.dialect``); None: the profile's."""


@dataclass
class PolicyHandle:
    """A started policy, what to say about it, and how to release what it holds."""

    policy: Policy
    label: str
    note: str = ""
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()

    def __enter__(self) -> PolicyHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The model flags every command that drives the analyst shares (run, serve, eval, collect)."""
    g = parser.add_argument_group("model (default: the best that can serve on this machine)")
    g.add_argument("--profile", help="a named profile (see `jupyter analyst models`)")
    g.add_argument(
        "--model",
        help="base model: Hugging Face id or local folder (or the served model name with --base-url)",
    )
    g.add_argument("--adapter", help="LoRA adapter: Hugging Face id or local folder")
    g.add_argument("--quantization", choices=["4bit", "8bit", "none", "auto"], help="how to load --model")
    g.add_argument("--device", choices=["auto", "cuda", "cpu"], help="where to load --model")
    g.add_argument("--base-url", help="an OpenAI-compatible server (vLLM, Ollama, llama.cpp, LM Studio)")
    g.add_argument("--api-key", help="API key for --base-url (default: $OPENAI_API_KEY)")
    g.add_argument("--temperature", type=float, help="sampling temperature")
    g.add_argument("--max-new-tokens", type=int, help="tokens per model reply")
    g.add_argument(
        "--constrained",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="enforce the tool-call grammar while an embedded model decodes (default: where installed)",
    )
    g.add_argument(
        "--dialect",
        choices=["notebook", "copaw"],
        help="the tools and call format the model was trained on: notebook (ours, the default) or "
        "copaw (Bash/Write/Edit/Read/Glob/Grep, the original experiment's adapter); default: the profile's",
    )


def choice_from_args(args: argparse.Namespace) -> PolicyChoice:
    """The ``PolicyChoice`` of parsed ``add_model_options`` flags (plus ``--baseline``/``--replay``)."""
    return PolicyChoice(
        profile="baseline" if getattr(args, "baseline", False) else args.profile,
        model=args.model,
        adapter=args.adapter,
        quantization=args.quantization,
        device=args.device,
        base_url=args.base_url,
        api_key=args.api_key,
        replay=getattr(args, "replay", None),
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        constrained=getattr(args, "constrained", None),
        dialect=getattr(args, "dialect", None),
    )


def _baseline() -> PolicyHandle:
    from .baseline import BaselineAnalyst

    policy = BaselineAnalyst()
    return PolicyHandle(policy, policy.name)


def _remote(
    base_url: str,
    api_key: str | None,
    model: str | None,
    choice: PolicyChoice,
    on_text: Callable[[str], None] | None,
) -> PolicyHandle:
    from .openai_client import OpenAIChatPolicy, check_server

    key = api_key or os.environ.get("OPENAI_API_KEY")
    models = check_server(base_url, key)
    if model and models and model not in models:
        raise InputError(f"the server at {base_url} does not serve {model!r}; it serves: {', '.join(models)}")
    kwargs: dict[str, Any] = {}
    if choice.temperature is not None:
        kwargs["temperature"] = choice.temperature
    if choice.max_new_tokens is not None:
        kwargs["max_tokens"] = choice.max_new_tokens
    policy = OpenAIChatPolicy(
        base_url,
        key,
        model or (models[0] if models else None),
        stream=on_text is not None,
        on_text=on_text,
        **kwargs,
    )  # type: ignore[arg-type]
    return PolicyHandle(policy, policy.name)


def _embedded(profile: Profile, choice: PolicyChoice, on_text: Callable[[str], None] | None) -> PolicyHandle:
    from .host import EmbeddedModel

    assert profile.model
    host = EmbeddedModel(
        profile.model,
        adapter=profile.adapter,
        quantization=profile.quantization,
        device=profile.device,
        max_new_tokens=choice.max_new_tokens or profile.max_new_tokens,
        enable_thinking=profile.enable_thinking,
        constrained=profile.constrained if choice.constrained is None else choice.constrained,
        cache=profile.decode_cache,
        compile=profile.compile,
        max_context=profile.context_length,
    )
    host.start()
    try:
        policy = host.policy(
            temperature=profile.temperature if choice.temperature is None else choice.temperature,
            max_tokens=choice.max_new_tokens or profile.max_new_tokens,
            stream=True,  # kept-alive chunked SSE: tokens as they come, no per-step connection
            on_text=on_text,
        )
    except BaseException:
        host.stop()
        raise
    # A folder trained at a smaller window than the profile's (a scratch model) sizes the run.
    policy.context_tokens = model_context(profile.model, profile.context_length)
    policy.dialect = profile.dialect  # type: ignore[attr-defined]
    label = profile.model + (f" + {profile.adapter}" if profile.adapter else "")
    note = ""
    if host.kernels.get("fast") is False and str(host.kernels.get("device", "")).startswith("cuda"):
        note = "its linear-attention layers run on slow reference kernels: " + str(
            host.kernels.get("hint", "install the cuda extra")
        )
    return PolicyHandle(policy, f"{label} (profile {profile.name})", note=note, closers=[host.stop])


def _from_profile(
    profile: Profile, choice: PolicyChoice, on_text: Callable[[str], None] | None
) -> PolicyHandle:
    if profile.kind == "baseline":
        return _baseline()
    if profile.kind == "openai":
        if not profile.base_url:
            raise InputError(f"profile {profile.name!r} needs a base_url")
        key = os.environ.get(profile.api_key_env) if profile.api_key_env else None
        handle = _remote(profile.base_url, choice.api_key or key, profile.model, choice, on_text)
        handle.policy.context_tokens = profile.context_length  # type: ignore[attr-defined]
        handle.policy.dialect = profile.dialect  # type: ignore[attr-defined]
        return handle
    return _embedded(profile, choice, on_text)


def build_policy(choice: PolicyChoice, on_text: Callable[[str], None] | None = None) -> PolicyHandle:
    """Start whatever ``choice`` names (loading a model can take minutes on first use).

    The policy carries its tool ``dialect`` (the profile's, a replay's own, or the flag's),
    which the run core reads to talk to it in the format it was trained on.
    """
    handle = _build(choice, on_text)
    if choice.dialect:
        handle.policy.dialect = choice.dialect  # type: ignore[attr-defined]
    return handle


def _build(choice: PolicyChoice, on_text: Callable[[str], None] | None) -> PolicyHandle:
    if choice.replay is not None:
        from .scripted import load_replay

        policy = load_replay(choice.replay)
        return PolicyHandle(policy, policy.name)
    if choice.base_url:
        return _remote(choice.base_url, choice.api_key, choice.model, choice, on_text)
    profiles = load_profiles()
    if choice.model:
        profile = Profile(
            name="custom",
            description="from the command line",
            model=choice.model,
            adapter=choice.adapter,
            quantization=choice.quantization or "auto",  # type: ignore[arg-type]
            device=choice.device or "auto",  # type: ignore[arg-type]
        )
        return _embedded(profile, choice, on_text)
    if choice.profile:
        profile = get_profile(choice.profile, profiles)
        if choice.adapter:
            profile = replace(profile, adapter=choice.adapter)
        return _from_profile(profile, choice, on_text)
    profile, why = pick_default(profiles)
    handle = _from_profile(profile, choice, on_text)
    handle.note = f"default profile {profile.name!r}: {why}"
    return handle
