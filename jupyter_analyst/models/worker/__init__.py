"""The embedded model worker: transformers (+ peft, + bitsandbytes) behind an OpenAI API.

Run as ``python -m jupyter_analyst.models.worker --model PATH_OR_ID ...`` by
``EmbeddedModel``. It is a separate process so that an out-of-memory or a crashed CUDA
context takes down only the worker, never the Jupyter server (design.md §5). It serves
``/health``, ``/v1/models`` and ``/v1/chat/completions`` (streamed or not) on loopback,
requires the per-start bearer secret from ``JUPYTER_ANALYST_WORKER_SECRET`` on every
request, runs one generation at a time, and parses the model's native tool-call syntax
into OpenAI ``tool_calls`` so the client never needs to know which model it talks to.

When ready it prints exactly one JSON line ``{"ready": true, "port": N, "model": "..."}``
to stdout; everything else (including stray prints from libraries) goes to stderr.

One module per concern, each importing only those listed before it:

- ``common``: the stderr logger and ``RequestError``;
- ``loading``: device/quantisation flags, tokenizer + model (+ adapter), the served name;
- ``chat``: wire messages in, parsed replies out, and the ``StreamSplitter``;
- ``grammar``: the tool-call grammar and its logits mask (llguidance), ``reply_problem``;
- ``engine``: ``Engine`` (generation, prefix cache), usage and out-of-memory helpers;
- ``server``: the HTTP handler and ``WorkerServer`` (bearer secret, error replies);
- ``process``: flags, start-up, the ready line and exit codes (``main``).

Importing the package is cheap: torch, transformers and peft load inside functions only.
"""

from .process import main, parse_args

__all__ = ["main", "parse_args"]
