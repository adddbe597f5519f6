"""What every layer of the worker shares: the stderr logger and the per-request error.

Kept apart so that the chat helpers, the engine and the HTTP layer can all use them
without importing each other upwards.
"""

from __future__ import annotations

import sys


def log(message: str) -> None:
    """Write one ``[worker]`` line to stderr; stdout is reserved for the ready line."""
    print(f"[worker] {message}", file=sys.stderr, flush=True)


class RequestError(Exception):
    """A problem with one request, answered with ``status`` and the server keeps running."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
