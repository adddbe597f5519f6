"""A ``Policy`` that talks to any OpenAI-compatible chat-completions server.

The embedded worker, vLLM, Ollama and llama.cpp's server all speak this API, so the agent
needs one client. Every failure becomes a ``BackendError`` with one line a user can act on
(wrong URL, wrong key, unknown model, server crashed), never an httpx traceback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from ..agent.types import AssistantTurn, Message, ToolCall, ToolSpec, Usage
from ..errors import BackendError

RAW_ARGUMENTS = "__raw_arguments__"
"""Key holding tool-call arguments that were not valid JSON, so the loop can tell the model."""

_VERSION_SUFFIX = re.compile(r"/v\d+$")


def normalize_base_url(base_url: str) -> str:
    """Accept ``http://h:8000`` or ``http://h:8000/v1`` (with or without a slash); return the latter."""
    url = base_url.strip().rstrip("/")
    if not url:
        raise BackendError("no model server URL given")
    if "://" not in url:
        url = "http://" + url
    if not _VERSION_SUFFIX.search(url):
        url += "/v1"
    return url


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _server_message(body: str) -> str:
    """The human part of an error body: OpenAI ``{"error": {"message"}}``, FastAPI ``detail``…"""
    try:
        data = json.loads(body)
    except ValueError:
        return _one_line(body) or "(empty reply)"
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return _one_line(err if isinstance(err, str) else json.dumps(err))
    return _one_line(body)


def _transport_error(exc: httpx.HTTPError, url: str, timeout: float) -> BackendError:
    """Turn an httpx failure into one line that names the server and the likely cause."""
    if isinstance(exc, httpx.ConnectTimeout):
        return BackendError(f"cannot reach the model server at {url}: connection timed out")
    if isinstance(exc, httpx.ConnectError):
        reason = str(exc).lower()
        if "refused" in reason or "errno 111" in reason or "errno 61" in reason:
            why = "connection refused"
        elif "name or service" in reason or "nodename" in reason or "getaddrinfo" in reason:
            why = "unknown host name"
        else:
            why = _one_line(str(exc), 120) or "connection failed"
        return BackendError(f"cannot reach the model server at {url}: {why}")
    if isinstance(exc, httpx.TimeoutException):
        return BackendError(f"the model server at {url} did not answer within {timeout:g} s")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return BackendError(
            f"the model server at {url} closed the connection (did it crash?): {_one_line(str(exc), 120)}"
        )
    return BackendError(f"request to the model server at {url} failed: {_one_line(str(exc), 160)}")


def _status_error(status: int, body: str, url: str, path: str, model: str | None) -> BackendError:
    msg = _server_message(body)
    if status in (401, 403):
        return BackendError(f"the model server at {url} rejected the API key (HTTP {status}): {msg}")
    if status == 404:
        what = f"model {model!r} or " if model else ""
        return BackendError(f"the model server at {url} has no {what}endpoint {path} (HTTP 404): {msg}")
    if status >= 500:
        return BackendError(f"the model server at {url} failed (HTTP {status}): {msg}")
    return BackendError(f"the model server at {url} refused the request (HTTP {status}): {msg}")


def _decode_json(text: str, url: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise BackendError(
            f"the model server at {url} sent a reply that is not valid JSON: {_one_line(text, 80)!r}"
        ) from None


def check_server(base_url: str, api_key: str | None = None, timeout: float = 5) -> list[str]:
    """Return the model ids a server offers; raise ``BackendError`` if it is unusable.

    Used before a run starts so a wrong URL or key fails in seconds, not at step one.
    """
    url = normalize_base_url(base_url)
    try:
        response = httpx.get(url + "/models", headers=_headers(api_key), timeout=timeout)
    except httpx.HTTPError as exc:
        raise _transport_error(exc, url, timeout) from None
    if response.status_code != 200:
        raise _status_error(response.status_code, response.text, url, "/models", None)
    data = _decode_json(response.text, url)
    items = data.get("data", []) if isinstance(data, dict) else []
    return [str(item["id"]) for item in items if isinstance(item, dict) and "id" in item]


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Tool-call arguments as a dict; text that is not a JSON object is kept under ``RAW_ARGUMENTS``."""
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {RAW_ARGUMENTS: raw if isinstance(raw, str) else repr(raw)}
    return value if isinstance(value, dict) else {RAW_ARGUMENTS: raw}


def _wire_messages(messages: list[Message]) -> list[Message]:
    """Copy messages so tool-call arguments are JSON text, as the OpenAI API requires."""
    out: list[Message] = []
    for message in messages:
        calls = message.get("tool_calls")
        if calls:
            message = dict(message)
            fixed = []
            for call in calls:
                fn = call.get("function", {})
                if isinstance(fn.get("arguments"), dict):
                    call = {
                        **call,
                        "function": {**fn, "arguments": json.dumps(fn["arguments"], ensure_ascii=False)},
                    }
                fixed.append(call)
            message["tool_calls"] = fixed
            if message.get("content") is None:
                message["content"] = ""
        out.append(message)
    return out


class _Accumulator:
    """Builds one assistant turn from a non-streamed message or from streamed deltas."""

    def __init__(self, on_text: Callable[[str], None] | None) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.usage = Usage()
        self.model = ""
        self.on_text = on_text

    def add_delta(self, delta: dict[str, Any]) -> None:
        text = delta.get("content")
        if text:
            self.content.append(text)
            if self.on_text is not None:
                self.on_text(text)
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if thought:
            self.reasoning.append(thought)
        for pos, call in enumerate(delta.get("tool_calls") or []):
            index = call.get("index", pos)
            slot = self.calls.setdefault(index, {"id": None, "name": "", "arguments": ""})
            if call.get("id"):
                slot["id"] = call["id"]
            fn = call.get("function") or {}
            if fn.get("name"):
                slot["name"] += fn["name"]
            args = fn.get("arguments")
            if isinstance(args, dict):
                slot["arguments"] = args
            elif args:
                slot["arguments"] += args

    def add_chunk(self, chunk: dict[str, Any]) -> None:
        self.model = chunk.get("model") or self.model
        if chunk.get("usage"):
            self.add_usage(chunk["usage"])
        for choice in chunk.get("choices") or []:
            self.add_delta(choice.get("delta") or choice.get("message") or {})

    def add_usage(self, usage: dict[str, Any]) -> None:
        self.usage = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    def turn(self) -> AssistantTurn:
        calls = []
        for _, slot in sorted(self.calls.items()):
            kwargs = {"id": slot["id"]} if slot["id"] else {}
            calls.append(ToolCall(name=slot["name"], arguments=parse_arguments(slot["arguments"]), **kwargs))
        return AssistantTurn(
            content="".join(self.content),
            tool_calls=calls,
            reasoning="".join(self.reasoning) or None,
            usage=self.usage,
            model=self.model,
        )


class OpenAIChatPolicy:
    """``Policy`` over ``POST {base_url}/chat/completions`` (optionally streamed via SSE)."""

    context_tokens: int | None = None
    """The model's window in tokens when known (set from the profile by ``models.select``);
    the session sizes observations and the history trim to it."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        model: str | None = None,
        temperature: float = 0.2,
        max_tokens: int = 2048,
        timeout: float = 600.0,
        stream: bool = False,
        on_text: Callable[[str], None] | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.api_key = api_key
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.stream = stream
        self.on_text = on_text
        self.extra_body = dict(extra_body or {})
        self._client: httpx.Client | None = None

    @property
    def name(self) -> str:
        """What produced the analysis, e.g. ``qwen3.5-9b via http://127.0.0.1:8000/v1``."""
        return f"{self.model or 'default model'} via {self.base_url}"

    def __repr__(self) -> str:
        return f"OpenAIChatPolicy({self.name!r})"

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                headers=_headers(self.api_key),
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            )
        return self._client

    def close(self) -> None:
        """Release the connection pool (the policy can still be called afterwards)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> OpenAIChatPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve_model(self) -> str:
        """The model id to send: the configured one, else the server's first (asked once)."""
        if self.model is None:
            try:
                response = self.client.get(self.base_url + "/models")
            except httpx.HTTPError as exc:
                raise _transport_error(exc, self.base_url, self.timeout) from None
            if response.status_code != 200:
                raise _status_error(response.status_code, response.text, self.base_url, "/models", None)
            data = _decode_json(response.text, self.base_url)
            items = data.get("data") if isinstance(data, dict) else None
            if not items or not isinstance(items[0], dict) or "id" not in items[0]:
                raise BackendError(f"the model server at {self.base_url} lists no models; pass a model name")
            self.model = str(items[0]["id"])
        return self.model

    def request_body(self, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.resolve_model(),
            "messages": _wire_messages(messages),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stream": self.stream,
        }
        if tools:
            body["tools"] = tools
            body["tool_choice"] = "auto"
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        body.update(self.extra_body)
        return body

    # -- the call ---------------------------------------------------------------------------

    def __call__(self, messages: list[Message], tools: list[ToolSpec]) -> AssistantTurn:
        body = self.request_body(messages, tools)
        url = self.base_url + "/chat/completions"
        acc = _Accumulator(self.on_text)
        try:
            if body.get("stream"):
                with self.client.stream("POST", url, json=body) as response:
                    if response.status_code != 200:
                        response.read()
                        raise self._http_error(response)
                    self._read_stream(response.iter_lines(), acc)
            else:
                response = self.client.post(url, json=body)
                if response.status_code != 200:
                    raise self._http_error(response)
                self._read_message(_decode_json(response.text, self.base_url), acc)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self.base_url, self.timeout) from None
        turn = acc.turn()
        turn.model = turn.model or self.model or ""
        return turn

    def _http_error(self, response: httpx.Response) -> BackendError:
        return _status_error(
            response.status_code, response.text, self.base_url, "/chat/completions", self.model
        )

    def _read_message(self, data: Any, acc: _Accumulator) -> None:
        if not isinstance(data, dict):
            raise BackendError(
                f"the model server at {self.base_url} sent an unexpected reply: {_one_line(str(data), 80)!r}"
            )
        if data.get("error"):
            raise BackendError(
                f"the model server at {self.base_url} failed: {_server_message(json.dumps(data))}"
            )
        choices = data.get("choices")
        if not choices or not isinstance(choices[0], dict):
            raise BackendError(f"the model server at {self.base_url} sent a reply without choices")
        acc.model = data.get("model") or ""
        if data.get("usage"):
            acc.add_usage(data["usage"])
        message = choices[0].get("message") or {}
        acc.add_delta(message)  # on_text then sees the whole content at once

    def _read_stream(self, lines: Iterable[str], acc: _Accumulator) -> None:
        """Read SSE ``data:`` lines to the end of the body (``[DONE]`` comes last)."""
        for line in lines:
            line = line.strip()
            if not line.startswith("data:"):
                continue  # blank separators, ": keep-alive" comments, "event:" lines
            payload = line[5:].strip()
            if payload == "[DONE]":
                continue  # read on to the end of the body: a whole reply frees the connection
            chunk = _decode_json(payload, self.base_url)
            if isinstance(chunk, dict) and chunk.get("error"):
                raise BackendError(
                    f"the model server at {self.base_url} failed mid-reply: {_server_message(payload)}"
                )
            if isinstance(chunk, dict):
                acc.add_chunk(chunk)
