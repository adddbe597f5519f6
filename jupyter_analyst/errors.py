"""Errors the project raises on purpose.

Each carries a one-line, user-facing message as its ``str`` so the CLI, the magic and the
server extension can show it as it is, without a traceback.
"""

from __future__ import annotations


class AnalystError(Exception):
    """Base of every error we raise deliberately; ``str(err)`` is one line for the user."""

    def __str__(self) -> str:
        text = super().__str__()
        return " ".join(text.split()) if text else type(self).__name__


class BackendError(AnalystError):
    """The model backend is unreachable, rejected us, timed out or answered nonsense."""


class InputError(AnalystError):
    """The user's input (a file, a variable, an option) cannot be used."""
