"""The generation engine: one model, one request at a time, with a prompt-prefix cache.

Holds everything that touches torch during serving (imported inside the methods), so the
HTTP layer above it only moves JSON and maps failures (e.g. out-of-memory) to replies.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Generator
from typing import Any

from .chat import StreamSplitter, build_message, prepare_messages
from .common import RequestError


class Engine:
    """Owns the model; turns one chat-completions request into a reply (one at a time)."""

    def __init__(
        self,
        tokenizer: Any,
        model: Any,
        name: str,
        max_new_tokens: int,
        enable_thinking: bool,
        prefix_cache: bool = True,
        constraint: Any = None,
        cache_mode: str = "dynamic",
        compile: bool = False,
        static_tokens: int = 0,
    ) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.enable_thinking = enable_thinking
        self.lock = threading.Lock()
        self.prefix_cache = prefix_cache
        self._cache: Any = None
        self._cache_ids: list[int] = []
        self._cache_static = False
        self.cache_mode = cache_mode
        """"static": a fixed-size cache (``fastpath``) that ``compile`` can turn into CUDA graphs."""
        self.compile = compile
        self.static_tokens = static_tokens or 0
        """The static cache's length; a request whose prompt plus reply won't fit uses a dynamic one."""
        self._work: Any = None
        self.static_misses = 0
        """Requests too long for the static cache (served with a dynamic one)."""
        self.kernels: dict[str, Any] = {}
        """``fastpath.kernel_report`` of the model, for /health."""
        eos: list[int] = []
        for source in (
            getattr(model.generation_config, "eos_token_id", None),
            tokenizer.eos_token_id,
            tokenizer.convert_tokens_to_ids("<|im_end|>"),
        ):
            for tid in source if isinstance(source, list) else [source]:
                if isinstance(tid, int) and tid >= 0 and tid != tokenizer.unk_token_id and tid not in eos:
                    eos.append(tid)
        self.eos = eos
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0)
        self.constraint = constraint
        """A ``grammar.ToolCallConstraint``: when set, replies to requests with tools are calls."""

    def decode_info(self) -> dict[str, Any]:
        """How this worker decodes, for /health and the ready line."""
        info: dict[str, Any] = {"cache": self.cache_mode, "prefix_cache": self.prefix_cache}
        if self.cache_mode == "static":
            info.update(
                static_tokens=self.static_tokens,
                compile=self.compile and str(self.model.device).startswith("cuda"),
                static_misses=self.static_misses,
            )
        return info

    def prepare(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """Template the prompt; return (model inputs, generate kwargs, thinking)."""
        import torch

        messages = prepare_messages(body.get("messages"))
        tools = body.get("tools") or None
        if body.get("tool_choice") == "none":
            tools = None
        template_kwargs = dict(body.get("chat_template_kwargs") or {})
        thinking = bool(template_kwargs.pop("enable_thinking", self.enable_thinking))
        try:
            inputs = self.tokenizer.apply_chat_template(
                messages,
                tools=tools,
                add_generation_prompt=True,
                enable_thinking=thinking,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
                **template_kwargs,
            )
        except Exception as exc:  # noqa: BLE001 - template errors are the request's fault
            raise RequestError(400, f"cannot render the chat template: {exc}") from None
        inputs = {k: v.to(self.model.device) for k, v in inputs.items() if hasattr(v, "to")}
        requested = body.get("max_completion_tokens") or body.get("max_tokens") or self.max_new_tokens
        try:
            max_new = max(1, min(int(requested), self.max_new_tokens))
            temperature = float(body.get("temperature", 0.7) or 0.0)
            top_p = float(body.get("top_p", 1.0) or 1.0)
        except (TypeError, ValueError):
            raise RequestError(400, "max_tokens, temperature and top_p must be numbers") from None
        gen: dict[str, Any] = {"max_new_tokens": max_new, "eos_token_id": self.eos, "pad_token_id": self.pad}
        if temperature > 0:
            gen.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if body.get("seed") is not None:
            torch.manual_seed(int(body["seed"]))
        # A request may opt out (``"constrained": false``); it can't opt in on a worker without it.
        if tools and self.constraint is not None and body.get("constrained", True) is not False:
            from transformers import LogitsProcessorList

            try:
                mask = self.constraint.processor(tools, thinking, max_new)
            except ValueError as exc:
                raise RequestError(400, f"cannot constrain the reply to these tools: {exc}") from None
            gen["logits_processor"] = LogitsProcessorList([mask])
        return inputs, gen, thinking

    # A run's prompt grows by appending (design.md §5), so each step should prefill only its
    # new tokens. Linear-attention state cannot be rolled back, and the model's reply may not
    # re-tokenize the way it was generated, so we keep a snapshot of the cache taken right
    # after the *prompt* (less its last token) and reuse it when the next prompt extends it.

    def _attach_cache(self, inputs: dict[str, Any], gen: dict[str, Any]) -> int:
        """Prefill the new part of the prompt into a cache put in ``gen``; return tokens reused."""
        ids = inputs["input_ids"][0].tolist()
        static = self.cache_mode == "static" and len(ids) + int(gen["max_new_tokens"]) <= self.static_tokens
        if self.cache_mode == "static":
            # Compile only with the static cache: its tensors keep their addresses.
            gen["disable_compile"] = not (static and self.compile)
            self.static_misses += int(not static)
        if not self.prefix_cache and not static:
            return 0
        import copy

        import torch

        from .fastpath import copy_into, new_cache

        n = len(self._cache_ids)
        hit = (
            self.prefix_cache
            and self._cache is not None
            and self._cache_static == static
            and 0 < n < len(ids)
            and ids[:n] == self._cache_ids
        )
        if static:
            if self._work is None:
                self._work = new_cache(self.model, "static", self.static_tokens)
            cache = self._work
            with torch.inference_mode():  # its tensors are inference tensors: change them only here
                if hit:
                    copy_into(cache, self._cache)  # in place: the compiled step sees the same tensors
                else:
                    cache.reset()
        elif hit:
            cache = copy.deepcopy(self._cache)
        else:
            cache = new_cache(self.model, "dynamic", 0)
        reused = n if hit else 0
        if not hit:
            self._forget()
        self._prefill(inputs["input_ids"][:, reused:-1], cache)
        if self.prefix_cache:
            if static:
                snapshot = self._cache if self._cache_static and self._cache is not None else None
                if snapshot is None:
                    snapshot = new_cache(self.model, "static", self.static_tokens)
                with torch.inference_mode():
                    self._cache = copy_into(snapshot, cache)
            else:
                self._cache = copy.deepcopy(cache)
            self._cache_ids, self._cache_static = ids[:-1], static
        gen["cache"] = cache
        return reused

    def _prefill(self, input_ids: Any, cache: Any) -> None:
        """Run the prompt (less its last token, which ``generate`` feeds) into ``cache``."""
        if input_ids.shape[1] == 0:
            return
        import torch

        with torch.inference_mode():
            self.model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)

    def _forget(self) -> None:
        """Drop the cache snapshot: after a failure it may be half-written. A static snapshot
        keeps its memory (it is overwritten in place next time); no ids means no hit."""
        self._cache_ids = []
        if not self._cache_static:
            self._cache = None

    def _envelope(self, obj: str, cid: str) -> dict[str, Any]:
        return {"id": cid, "object": obj, "created": int(time.time()), "model": self.name}

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer a non-streamed request with one OpenAI ``chat.completion`` dict."""
        import torch

        with self.lock:
            inputs, gen, thinking = self.prepare(body)
            n_prompt = int(inputs["input_ids"].shape[1])
            try:
                cached = self._attach_cache(inputs, gen)
                with torch.inference_mode():
                    out = self.model.generate(**inputs, **gen)
            except BaseException:
                self._forget()
                raise
            new = out[0, n_prompt:].tolist()
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        message, has_calls = build_message(text, thinking)
        finish = "tool_calls" if has_calls else ("stop" if new and new[-1] in self.eos else "length")
        reply = self._envelope("chat.completion", "chatcmpl-" + uuid.uuid4().hex[:16])
        reply["choices"] = [{"index": 0, "message": message, "finish_reason": finish}]
        reply["usage"] = _usage(n_prompt, len(new), cached)
        return reply

    def stream(self, body: dict[str, Any]) -> Generator[dict[str, Any], None, None]:
        """Yield OpenAI ``chat.completion.chunk`` dicts; the lock is held until exhausted or closed."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        cancel = threading.Event()

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return cancel.is_set()

        with self.lock:
            inputs, gen, thinking = self.prepare(body)
            n_prompt = int(inputs["input_ids"].shape[1])
            try:
                cached = self._attach_cache(inputs, gen)
            except BaseException:
                self._forget()
                raise
            streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
            result: dict[str, Any] = {}

            def run() -> None:
                try:
                    with torch.inference_mode():
                        result["out"] = self.model.generate(
                            **inputs,
                            **gen,
                            streamer=streamer,
                            stopping_criteria=StoppingCriteriaList([_Cancel()]),
                        )
                except BaseException as exc:  # noqa: BLE001 - reported to the client below
                    result["error"] = exc
                    streamer.end()

            thread = threading.Thread(target=run, name="generate", daemon=True)
            cid = "chatcmpl-" + uuid.uuid4().hex[:16]
            env = self._envelope("chat.completion.chunk", cid)

            def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
                return {**env, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

            thread.start()
            try:
                yield chunk({"role": "assistant", "content": ""})
                splitter = StreamSplitter(thinking)
                pieces: list[str] = []
                for piece in streamer:
                    pieces.append(piece)
                    for kind, text in splitter.feed(piece):
                        yield chunk({kind: text})
                thread.join()
                if "error" in result:
                    self._forget()
                    raise result["error"]
                new = result["out"][0, n_prompt:].tolist()
                message, has_calls = build_message("".join(pieces), thinking)
                for kind, text in splitter.finish(message):
                    yield chunk({kind: text})
                if has_calls:
                    calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
                    yield chunk({"tool_calls": calls})
                finish = "tool_calls" if has_calls else ("stop" if new and new[-1] in self.eos else "length")
                yield chunk({}, finish)
                yield {**env, "choices": [], "usage": _usage(n_prompt, len(new), cached)}
            finally:
                cancel.set()
                thread.join()


def _usage(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    """OpenAI ``usage``, with the prefix-cache hits as ``cached_tokens`` so clients can see them."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory (torch's class or any message that says so)."""
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def after_oom() -> None:
    """Give cached CUDA memory back after an out-of-memory so the next request can fit."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort
        pass
