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
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Generator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..agent.parsing import parse_tool_calls
from ..errors import InputError

SECRET_ENV = "JUPYTER_ANALYST_WORKER_SECRET"
WATCH_STDIN_ENV = "JUPYTER_ANALYST_WORKER_WATCH_STDIN"
"""When "1", the worker exits as soon as its stdin closes, i.e. when its parent dies."""

MAX_BODY = 64 * 1024 * 1024
_MARKERS = ("<tool_call>", "<function=")


def log(message: str) -> None:
    print(f"[worker] {message}", file=sys.stderr, flush=True)


class RequestError(Exception):
    """A problem with one request, answered with ``status`` and the server keeps running."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m jupyter_analyst.models.worker", description=__doc__.split("\n")[0]
    )
    p.add_argument("--model", required=True, help="base model: a local folder or a Hub id")
    p.add_argument("--adapter", default=None, help="optional peft (LoRA) adapter: folder or Hub id")
    p.add_argument(
        "--quantization",
        choices=["auto", "4bit", "8bit", "none"],
        default="auto",
        help="bitsandbytes quantisation; auto = 4bit on CUDA, none on CPU",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"], default="auto")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (reported on the ready line)")
    p.add_argument("--max-new-tokens", type=int, default=2048, help="cap on any request's max_tokens")
    p.add_argument("--served-model-name", default=None, help="id reported by /v1/models")
    p.add_argument(
        "--no-prefix-cache",
        dest="prefix_cache",
        action="store_false",
        help="recompute every prompt instead of reusing the previous request's cache",
    )
    think = p.add_mutually_exclusive_group()
    think.add_argument("--enable-thinking", dest="enable_thinking", action="store_true")
    think.add_argument("--no-thinking", dest="enable_thinking", action="store_false")
    p.set_defaults(enable_thinking=False)
    return p.parse_args(argv)


def _display_name(ref: str) -> str:
    path = Path(ref)
    return path.name if path.exists() and path.name else ref


def model_name(args: argparse.Namespace) -> str:
    if args.served_model_name:
        return args.served_model_name
    name = _display_name(args.model)
    return f"{name}+{_display_name(args.adapter)}" if args.adapter else name


def resolve_device(device: str, quantization: str) -> tuple[str, str]:
    """(device, quantization) to use: "auto" means CUDA in 4-bit when there is a GPU, else CPU
    unquantised. Shared by serving and training so both read the flags the same way."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but torch sees no CUDA device")
    if quantization == "auto":
        quantization = "4bit" if device == "cuda" else "none"
    return device, quantization


def load_model(args: argparse.Namespace) -> tuple[Any, Any]:
    """Load tokenizer and model as asked; raise with a readable message on failure."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, quant = resolve_device(args.device, args.quantization)
    if args.dtype != "auto":
        dtype = getattr(torch, args.dtype)
    elif device == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype, "device_map": {"": 0} if device == "cuda" else "cpu"}
    if quant in ("4bit", "8bit"):
        from transformers import BitsAndBytesConfig

        if quant == "4bit":
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=dtype,
                bnb_4bit_use_double_quant=True,
            )
        else:
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    for what, ref in (("model", args.model), ("adapter", args.adapter)):
        if ref and ref.startswith(("/", "./", "../", "~")) and not Path(ref).expanduser().exists():
            raise RuntimeError(f"no {what} folder at {ref}")
    log(f"loading {args.model} on {device} ({quant}, {str(dtype).removeprefix('torch.')})")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if not getattr(tokenizer, "chat_template", None):
        raise RuntimeError(f"the tokenizer of {args.model} has no chat template; use a chat/instruct model")
    model: Any = AutoModelForCausalLM.from_pretrained(args.model, **kwargs)
    if args.adapter:
        from peft import PeftModel

        log(f"loading adapter {args.adapter}")
        model = PeftModel.from_pretrained(model, args.adapter)
    model.eval()
    return tokenizer, model


# ---------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def prepare_messages(messages: Any) -> list[dict[str, Any]]:
    """Make OpenAI wire messages renderable: text content, dict tool-call arguments."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list")
    out = []
    for msg in messages:
        if not isinstance(msg, dict) or "role" not in msg:
            raise RequestError(400, "every message needs a 'role'")
        msg = {**msg, "content": _text(msg.get("content"))}
        if msg.get("tool_calls"):
            calls = []
            for call in msg["tool_calls"]:
                fn = dict(call.get("function") or {})
                args = fn.get("arguments")
                if isinstance(args, str):
                    try:
                        args = json.loads(args) if args.strip() else {}
                    except ValueError:
                        args = {"__raw_arguments__": args}
                    if not isinstance(args, dict):
                        args = {"__raw_arguments__": fn.get("arguments")}
                fn["arguments"] = args or {}
                calls.append({**call, "function": fn})
            msg["tool_calls"] = calls
        out.append(msg)
    return out


def build_message(text: str, thinking: bool) -> tuple[dict[str, Any], bool]:
    """Split reasoning and tool calls out of raw generated text; return (message, has_calls)."""
    parsed = parse_tool_calls(("<think>" if thinking else "") + text)
    message: dict[str, Any] = {"role": "assistant", "content": parsed.content}
    if parsed.reasoning:
        message["reasoning_content"] = parsed.reasoning
    if parsed.calls:
        message["tool_calls"] = [call.to_openai() for call in parsed.calls]
        return message, True
    if parsed.error:
        # Keep the malformed call visible: the loop re-parses content and tells the model.
        rest = text.split("</think>", 1)[1] if "</think>" in text else ("" if thinking else text)
        message["content"] = rest.strip()
    return message, False


class _StreamSplitter:
    """Route streamed text to ``reasoning_content`` / ``content`` and hold back tool calls.

    Emits only what the final, parsed message will also contain (stripped, without markup),
    so a streamed reply concatenates to the same content as a non-streamed one.
    """

    def __init__(self, thinking: bool) -> None:
        self.state = "reasoning" if thinking else "content"
        self.pending = ""
        self.sent = {"reasoning_content": "", "content": ""}

    def _emit(self, kind: str, text: str, final: bool = False) -> list[tuple[str, str]]:
        if not self.sent[kind]:
            text = text.lstrip()
        keep = "" if final else text[len(text.rstrip()) :]
        text = text.rstrip()  # trailing space is held (or, at a section's end, dropped)
        self.pending = keep
        if not text:
            return []
        self.sent[kind] += text
        return [(kind, text)]

    def feed(self, piece: str) -> list[tuple[str, str]]:
        self.pending += piece
        out: list[tuple[str, str]] = []
        if self.state == "reasoning":
            if "</think>" in self.pending:
                before, _, after = self.pending.partition("</think>")
                out += self._emit("reasoning_content", before, final=True)
                self.state, self.pending = "content", after
            else:
                return self._emit_safe("reasoning_content", ("</think>",))
        if self.state == "content":
            cut = min((self.pending.find(m) for m in _MARKERS if m in self.pending), default=-1)
            if cut >= 0:
                held = self.pending[cut:]
                out += self._emit("content", self.pending[:cut])
                self.state, self.pending = "held", held
            else:
                out += self._emit_safe("content", _MARKERS)
        return out

    def _emit_safe(self, kind: str, markers: tuple[str, ...]) -> list[tuple[str, str]]:
        """Emit all but a tail that might be the start of a marker."""
        text = self.pending
        hold = 0
        for marker in markers:
            for n in range(min(len(marker) - 1, len(text)), 0, -1):
                if text.endswith(marker[:n]):
                    hold = max(hold, n)
                    break
        head, tail = (text[:-hold], text[-hold:]) if hold else (text, "")
        out = self._emit(kind, head)
        self.pending += tail
        return out

    def finish(self, message: dict[str, Any]) -> list[tuple[str, str]]:
        """Whatever the final message holds beyond what was already streamed."""
        out = []
        for kind in ("reasoning_content", "content"):
            final = message.get(kind) or ""
            if final.startswith(self.sent[kind]) and len(final) > len(self.sent[kind]):
                out.append((kind, final[len(self.sent[kind]) :]))
        return out


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
        return inputs, gen, thinking

    # A run's prompt grows by appending (design.md §5), so each step should prefill only its
    # new tokens. Linear-attention state cannot be rolled back, and the model's reply may not
    # re-tokenize the way it was generated, so we keep a snapshot of the cache taken right
    # after the *prompt* (less its last token) and reuse it when the next prompt extends it.

    def _attach_cache(self, inputs: dict[str, Any], gen: dict[str, Any]) -> int:
        """Prefill the new part of the prompt into a cache put in ``gen``; return tokens reused."""
        if not self.prefix_cache:
            return 0
        import copy

        import torch
        from transformers import DynamicCache

        input_ids = inputs["input_ids"]
        ids = input_ids[0].tolist()
        n = len(self._cache_ids)
        if self._cache is not None and 0 < n < len(ids) and ids[:n] == self._cache_ids:
            cache, reused = copy.deepcopy(self._cache), n
        else:
            self._forget()
            cache, reused = DynamicCache(config=self.model.config), 0
        if len(ids) - 1 > reused:
            with torch.inference_mode():
                self.model(input_ids=input_ids[:, reused:-1], cache=cache, use_cache=True, logits_to_keep=1)
        self._cache, self._cache_ids = copy.deepcopy(cache), ids[:-1]
        gen["cache"] = cache
        return reused

    def _forget(self) -> None:
        self._cache, self._cache_ids = None, []

    def _envelope(self, obj: str, cid: str) -> dict[str, Any]:
        return {"id": cid, "object": obj, "created": int(time.time()), "model": self.name}

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
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
                splitter = _StreamSplitter(thinking)
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
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _after_oom() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort
        pass


# ---------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """``/health``, ``/v1/models``, ``/v1/chat/completions``; every one needs the bearer secret."""

    server: WorkerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log(f"{self.address_string()} {format % args}")

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._json(status, {"error": {"message": message, "type": kind, "code": status}})

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        expected = f"Bearer {self.server.secret}".encode()
        if hmac.compare_digest(header.encode(), expected):
            return True
        self._error(401, "missing or wrong bearer token", "authentication_error")
        return False

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if not self._authorized():
            return
        path = self._path()
        engine = self.server.engine
        if path in ("/health", "/v1/health"):
            self._json(200, {"status": "ok", "model": engine.name, "busy": engine.lock.locked()})
        elif path in ("/v1/models", "/models"):
            self._json(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": engine.name,
                            "object": "model",
                            "created": self.server.started,
                            "owned_by": "jupyter-analyst",
                        }
                    ],
                },
            )
        else:
            self._error(404, f"no endpoint {path}", "not_found_error")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        if not self._authorized():
            return
        path = self._path()
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no endpoint {path}", "not_found_error")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                raise RequestError(400, "a JSON body with Content-Length is required")
            body = json.loads(self.rfile.read(length))
            if not isinstance(body, dict):
                raise RequestError(400, "the body must be a JSON object")
        except (ValueError, RequestError) as exc:
            self._error(getattr(exc, "status", 400), f"bad request: {exc}")
            return
        if body.get("stream"):
            self._stream(body)
            return
        try:
            reply = self.server.engine.complete(body)
        except RequestError as exc:
            self._error(exc.status, str(exc), exc.kind)
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop the worker
            self._generation_failed(exc)
        else:
            self._json(200, reply)

    def _generation_failed(self, exc: BaseException) -> None:
        if _is_oom(exc):
            _after_oom()
            log(f"out of memory during generation: {exc}")
            self._error(
                507,
                "the model ran out of memory generating this reply; shorten the context or lower max_tokens",
                "out_of_memory",
            )
        else:
            log(f"generation failed: {type(exc).__name__}: {exc}")
            self._error(500, f"generation failed: {type(exc).__name__}: {exc}", "server_error")

    def _stream(self, body: dict[str, Any]) -> None:
        chunks = self.server.engine.stream(body)
        try:
            first = next(chunks)  # templating errors surface here, before any header is sent
        except RequestError as exc:
            self._error(exc.status, str(exc), exc.kind)
            return
        except Exception as exc:  # noqa: BLE001
            self._generation_failed(exc)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            self._send_event(first)
            for item in chunks:
                self._send_event(item)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            log("client went away mid-stream; generation stopped")
        except Exception as exc:  # noqa: BLE001 - headers are out: report in-band
            oom = _is_oom(exc)
            if oom:
                _after_oom()
            log(f"generation failed mid-stream: {type(exc).__name__}: {exc}")
            msg = "the model ran out of memory generating this reply" if oom else f"generation failed: {exc}"
            try:
                self._send_event(
                    {"error": {"message": msg, "type": "out_of_memory" if oom else "server_error"}}
                )
            except OSError:
                pass
        finally:
            chunks.close()

    def _send_event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n")
        self.wfile.flush()


class WorkerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], engine: Engine, secret: str) -> None:
        super().__init__(address, Handler)
        self.engine = engine
        self.secret = secret
        self.started = int(time.time())


def _watch_stdin() -> None:
    """Exit when the parent's end of our stdin closes, so no worker outlives its host."""
    try:
        while os.read(0, 1024):  # raw fd: no buffered-reader lock to trip interpreter shutdown
            pass
    except OSError:
        pass
    log("parent went away; exiting")
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    # Keep stdout for the ready line only: anything a library prints goes to stderr.
    ready_fd = os.dup(1)
    os.dup2(2, 1)
    args = parse_args(argv)
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        log(f"error: set {SECRET_ENV} to the bearer secret clients must send; refusing to start without one")
        return 2
    if os.environ.get(WATCH_STDIN_ENV) == "1":
        threading.Thread(target=_watch_stdin, name="watch-stdin", daemon=True).start()
    started = time.monotonic()
    try:
        tokenizer, model = load_model(args)
    except Exception as exc:  # noqa: BLE001 - every load failure becomes one clear line
        if _is_oom(exc):
            log(f"error: out of memory loading {args.model}: {exc}")
            return 4
        log(
            f"error: cannot load model {args.model}"
            f"{' with adapter ' + args.adapter if args.adapter else ''}: "
            f"{'' if type(exc) in (RuntimeError, InputError) else type(exc).__name__ + ': '}{exc}"
        )
        return 3
    engine = Engine(
        tokenizer, model, model_name(args), args.max_new_tokens, args.enable_thinking, args.prefix_cache
    )
    try:
        server = WorkerServer((args.host, args.port), engine, secret)
    except OSError as exc:
        log(f"error: cannot listen on {args.host}:{args.port}: {exc}")
        return 5
    port = server.server_address[1]
    log(f"ready in {time.monotonic() - started:.1f}s on http://{args.host}:{port}/v1 serving {engine.name}")
    os.write(ready_fd, (json.dumps({"ready": True, "port": port, "model": engine.name}) + "\n").encode())
    os.close(ready_fd)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
