"""The jupyter_server extension: configuration, handlers, the policy pool's lifecycle.

Enabled automatically by ``jupyter-config/server-config/jupyter_analyst.json``. Every
setting is a trait with ``help``, settable in ``jupyter_server_config.py`` as
``c.JupyterAnalyst.<name>`` (or on the command line as ``--JupyterAnalyst.<name>=``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Int, Unicode, default

from ..models.select import PolicyChoice, build_policy
from .handlers import handlers
from .policies import PolicyPool
from .recovery import recover
from .runs import ApiError, RunManager, RunSettings
from .schema import ProfileInfo, ProfilesReply


class JupyterAnalyst(ExtensionApp):
    """Runs the analyst agent in live notebooks (``{base_url}jupyter-analyst/``)."""

    name = "jupyter_analyst"
    description = "A local LLM data analyst that writes and runs cells in your live notebook."
    load_other_extensions = True

    profile = Unicode(
        "",
        config=True,
        help="Model profile for runs that don't name one (see `jupyter analyst models`). "
        "Empty: the default this machine can serve (a GPU 9B model, a CPU model on disk, else 'baseline').",
    )
    base_url = Unicode(
        "",
        config=True,
        help="URL of an OpenAI-compatible server (vLLM, Ollama, llama.cpp) to use instead of a "
        "profile, e.g. http://localhost:8000/v1. Runs naming a profile still use that profile.",
    )
    api_key = Unicode("", config=True, help="API key for base_url (else $OPENAI_API_KEY).")
    model = Unicode("", config=True, help="Model name on base_url (default: the first one it serves).")
    replay = Unicode(
        "",
        config=True,
        help="Path of a replay script (a JSON list of steps, see models.scripted.load_replay) that "
        "drives runs instead of a model: for demos and tests.",
    )
    max_steps = Int(40, config=True, help="Step budget of a run that doesn't set max_steps.")
    max_tokens = Int(0, config=True, help="Token budget of a run (0: unlimited).")
    max_seconds = Float(0.0, config=True, help="Wall-time budget of a run in seconds (0: unlimited).")
    cell_timeout = Float(
        120.0, config=True, help="Seconds one agent cell may run before the kernel is interrupted."
    )
    interrupt_grace = Float(
        10.0,
        config=True,
        help="Seconds an interrupted cell gets to stop before the run gives up waiting for it "
        "(the user's kernel is never restarted by the extension).",
    )
    max_output_bytes = Int(
        1_000_000, config=True, help="Text output kept per agent cell; the rest is cut with a note."
    )
    check_timeout = Float(
        10.0,
        config=True,
        help="Seconds the silent helper code (listing DataFrames, checking the variable) may take.",
    )
    stop_timeout = Float(
        1.5,
        config=True,
        help="Seconds a stopped run gets to end by itself before the server ends it (the loop may "
        "be inside a slow model call).",
    )
    journal_dir = Unicode(
        config=True,
        help="Folder of the run journals (one JSON-lines file per run: what it did, step by step), "
        "so a server that crashed mid-run still lists the run, as interrupted, and notes it in its "
        "notebook. Default: <jupyter data dir>/jupyter_analyst/runs; empty string turns journals off.",
    )

    @default("journal_dir")
    def _default_journal_dir(self) -> str:
        from jupyter_core.paths import jupyter_data_dir

        return str(Path(jupyter_data_dir()) / "jupyter_analyst" / "runs")

    keep_run_events = Int(
        20,
        config=True,
        help="Ended runs (the newest) whose every event is kept for replay in the sidebar; older "
        "ones replay only their result and final status (their cells stay in the notebook).",
    )
    model_idle_timeout = Float(
        900.0,
        config=True,
        help="Seconds a started policy (e.g. the model worker process) may sit unused before it is "
        "stopped to free memory; the next run starts it again.",
    )

    manager: RunManager
    pool: PolicyPool
    _reaper: asyncio.Task[None] | None = None

    def initialize_settings(self) -> None:
        """Create the pool and run manager; handlers find this app in settings."""
        self.pool = PolicyPool(build_policy, self.model_idle_timeout)
        self.manager = RunManager(self.serverapp, self.pool, self.run_settings(), self.log)
        self.settings.update({"jupyter_analyst": self})

    def initialize_handlers(self) -> None:
        self.handlers.extend(handlers())

    def run_settings(self) -> RunSettings:
        return RunSettings(
            max_steps=self.max_steps,
            max_tokens=self.max_tokens or None,
            max_seconds=self.max_seconds or None,
            cell_timeout=self.cell_timeout,
            interrupt_grace=self.interrupt_grace,
            max_output_bytes=self.max_output_bytes,
            check_timeout=self.check_timeout,
            stop_timeout=self.stop_timeout,
            keep_events=self.keep_run_events,
            journal_dir=Path(self.journal_dir) if self.journal_dir else None,
        )

    # -- policies ----------------------------------------------------------------------
    def policy_choice(self, profile: str | None) -> tuple[PolicyChoice, str]:
        """What drives a run, and its label until the policy has started.

        Raises ``ApiError(400)`` for an unknown profile so the request fails, not the run.
        """
        self.manager.settings = self.run_settings()  # traits may change at runtime
        self.start_reaper()  # also here: embedding servers (tests) may skip the start hook
        self.pool.idle_timeout = self.model_idle_timeout
        if profile:
            from ..errors import InputError
            from ..models.profiles import get_profile

            try:
                get_profile(profile)
            except InputError as exc:
                raise ApiError(400, str(exc)) from None
            return PolicyChoice(profile=profile), f"profile {profile}"
        if self.replay:
            return PolicyChoice(replay=Path(self.replay)), f"replay of {Path(self.replay).name}"
        if self.base_url:
            return (
                PolicyChoice(base_url=self.base_url, api_key=self.api_key or None, model=self.model or None),
                self.model or self.base_url,
            )
        if self.profile:
            return PolicyChoice(profile=self.profile), f"profile {self.profile}"
        return PolicyChoice(), "default profile"

    def profiles_reply(self) -> ProfilesReply:
        """Profiles and the default (blocking: it may probe the GPU)."""
        from ..models.profiles import load_profiles, pick_default

        profiles = load_profiles()
        if self.profile:
            default, reason = self.profile, "set by JupyterAnalyst.profile"
        elif self.replay or self.base_url:
            default = "replay" if self.replay else "openai"
            reason = f"runs use {'JupyterAnalyst.replay' if self.replay else self.base_url}"
        else:
            picked, reason = pick_default(profiles)
            default = picked.name
        infos = [
            ProfileInfo(
                name=p.name,
                description=p.description,
                kind=p.kind,
                memory_gb=p.memory_gb(p.device if p.device != "auto" else "cuda"),
            )
            for p in profiles.values()
        ]
        return ProfilesReply(default=default, reason=reason, profiles=infos)

    async def _reap(self) -> None:
        """Stop policies left idle (model workers hold gigabytes)."""
        while True:
            await asyncio.sleep(max(1.0, min(60.0, self.model_idle_timeout / 4)))
            await asyncio.get_running_loop().run_in_executor(None, self.pool.reap)

    def start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.ensure_future(self._reap())

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """jupyter_server's async start hook: the loop is running, start the idle reaper and
        read the run journals of earlier servers (a run one of them never finished is noted
        as interrupted)."""
        self.start_reaper()
        try:
            await recover(self.manager)
        except Exception:
            self.log.exception("jupyter-analyst: could not read the run journals")

    async def stop_extension(self) -> None:
        """Server shutdown: end active runs, stop the reaper, close every policy."""
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        await self.manager.shutdown()
