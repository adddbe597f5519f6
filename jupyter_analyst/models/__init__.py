"""Model backends: an OpenAI-compatible client and an embedded transformers worker.

Importing this package is cheap: torch, transformers and peft load only inside the worker
process (``python -m jupyter_analyst.models.worker``).
"""

from .host import EmbeddedModel
from .openai_client import OpenAIChatPolicy, check_server

__all__ = ["EmbeddedModel", "OpenAIChatPolicy", "check_server"]
