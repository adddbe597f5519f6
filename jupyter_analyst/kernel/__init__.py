"""The executor family: where the agent's cells run, with one output and result model.

- ``KernelExecutor``: a kernel we start (headless runs, evaluation);
- ``ManagedKernelExecutor``: the notebook's own kernel on a Jupyter server (live runs);
- ``InProcessExecutor``: this IPython shell (the ``%analyst`` magic outside a server).

All three share ``OutputAccumulator`` and ``classify`` (``outputs``), and the two that
talk to a kernel process share ``KernelChannel``'s waiting, interrupting and stopping.
"""

from ..errors import KernelError
from .channel import KernelChannel, OutputListener
from .executor import KernelExecutor
from .inprocess import InProcessExecutor
from .managed import ManagedKernelExecutor
from .outputs import Ending, OutputAccumulator, classify

__all__ = [
    "Ending",
    "InProcessExecutor",
    "KernelChannel",
    "KernelError",
    "KernelExecutor",
    "ManagedKernelExecutor",
    "OutputAccumulator",
    "OutputListener",
    "classify",
]
