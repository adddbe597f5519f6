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


class MissingVariableError(InputError):
    """The variable to analyse is not defined in the kernel (the server answers 404)."""


class KernelError(AnalystError, RuntimeError):
    """A problem in *our* use of a kernel: a failed start, or failing, hung or stopped helper code.

    Errors in the model's code never raise: they come back as a ``CellResult``. ``ename``
    says which kind (``DeadKernelError``, ``CellTimeoutError``, ``NoReply``, ``Stopped``...).
    """

    def __init__(
        self, message: str, ename: str = "", evalue: str = "", traceback: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback or []
