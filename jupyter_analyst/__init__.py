"""jupyter-analyst: a local LLM data analyst that works in a real Jupyter notebook.

Importing the package is cheap on purpose: torch, transformers and the kernel machinery
load only in the functions that use them.
"""

__version__ = "0.1.0"
