"""Kernel adapter: runs the agent's cells in a real Jupyter kernel (see ``executor``)."""

from jupyter_analyst.kernel.executor import KernelError, KernelExecutor

__all__ = ["KernelError", "KernelExecutor"]
