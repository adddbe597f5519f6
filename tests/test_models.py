"""The model layer: tiny-model template, embedded worker over HTTP, the OpenAI client.

Workers are started once per module (in parallel) and shared; a stdlib fake server proves
the client's parsing of tool calls, streamed deltas and error replies.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from jupyter_analyst.agent.tools import CODE_TOOL, FINAL_TOOL, TOOLS
from jupyter_analyst.agent.types import AssistantTurn
from jupyter_analyst.errors import BackendError
from jupyter_analyst.models import EmbeddedModel, OpenAIChatPolicy, check_server
from jupyter_analyst.models.openai_client import RAW_ARGUMENTS, normalize_base_url
from jupyter_analyst.models.worker.chat import StreamSplitter, build_message, prepare_messages

USER = [{"role": "user", "content": "Analyse the dataframe df."}]
CALL_TEXT = (
    "Let me look.\n\n<tool_call>\n<function=add_and_execute_jupyter_code_cell>\n<parameter=code>\n"
    "print(df.shape)\n</parameter>\n</function>\n</tool_call>"
)


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert text and "\n" not in text, text
    return text


# ---------------------------------------------------------------------------------------
# Chat template and the worker's pure helpers (no worker process)
# ---------------------------------------------------------------------------------------


def test_chat_template_renders_tools_and_tool_responses(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [
        {"role": "system", "content": "You analyse data."},
        *USER,
        {
            "role": "assistant",
            "content": "First a look.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": CODE_TOOL, "arguments": {"code": "df.head()"}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "   a  b\n0  1  2"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": FINAL_TOOL, "arguments": {"answer": "done", "n": 3}},
                }
            ],
        },
    ]
    text = tok.apply_chat_template(
        messages, tools=TOOLS, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert text.startswith("<|im_start|>system\nYou analyse data.\n\n# Tools")
    tools_block = text.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
    assert [json.loads(line)["function"]["name"] for line in tools_block.splitlines()] == [
        t["function"]["name"] for t in TOOLS
    ]
    assert (
        "<|im_start|>assistant\n<think>\n\n</think>\n\nFirst a look.\n\n<tool_call>\n<function="
        f"{CODE_TOOL}>\n<parameter=code>\ndf.head()\n</parameter>\n</function>\n</tool_call><|im_end|>\n"
    ) in text
    assert "<|im_start|>user\n<tool_response>\n   a  b\n0  1  2\n</tool_response><|im_end|>\n" in text
    assert "<parameter=n>\n3\n</parameter>" in text  # non-string values as JSON
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    thinking = tok.apply_chat_template(USER, tools=TOOLS, tokenize=False, add_generation_prompt=True)
    assert thinking.endswith("<|im_start|>assistant\n<think>\n")
    # Assistant-only loss (TRL) needs {% generation %} markers: the mask covers the replies.
    enc = tok.apply_chat_template(messages, tools=TOOLS, return_dict=True, return_assistant_tokens_mask=True)
    masked = tok.decode([i for i, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m])
    assert masked.startswith("First a look.") and f"<function={FINAL_TOOL}>" in masked
    assert "<tool_response>" not in masked and "You analyse data" not in masked
    # The XML tags are single tokens that survive decoding.
    assert len(tok.tokenize("<tool_call>")) == 1
    assert "<tool_call>" in tok.decode(tok("<tool_call>x")["input_ids"], skip_special_tokens=True)


def test_prepare_messages_turns_argument_strings_into_dicts() -> None:
    wire = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "a",
                    "type": "function",
                    "function": {"name": CODE_TOOL, "arguments": '{"code": "1+1"}'},
                },
                {"id": "b", "type": "function", "function": {"name": CODE_TOOL, "arguments": "not json"}},
            ],
        },
    ]
    out = prepare_messages(wire)
    assert out[1]["content"] == ""
    assert out[1]["tool_calls"][0]["function"]["arguments"] == {"code": "1+1"}
    assert out[1]["tool_calls"][1]["function"]["arguments"] == {"__raw_arguments__": "not json"}
    assert wire[1]["tool_calls"][0]["function"]["arguments"] == '{"code": "1+1"}'  # input untouched


def test_build_message_and_stream_splitter_agree() -> None:
    text = "<think>\nhmm\n</think>\n\n" + CALL_TEXT
    message, has_calls = build_message(text.removeprefix("<think>"), thinking=True)
    assert has_calls and message["content"] == "Let me look." and message["reasoning_content"] == "hmm"
    call = message["tool_calls"][0]
    assert call["function"]["name"] == CODE_TOOL
    assert json.loads(call["function"]["arguments"]) == {"code": "print(df.shape)"}
    splitter = StreamSplitter(thinking=True)
    sent: dict[str, str] = {"reasoning_content": "", "content": ""}
    for ch in text.removeprefix("<think>"):  # one character at a time: the worst case
        for kind, piece in splitter.feed(ch):
            sent[kind] += piece
    for kind, piece in splitter.finish(message):
        sent[kind] += piece
    assert sent == {"reasoning_content": "hmm", "content": "Let me look."}
    # A reply without a parseable call keeps its raw text as content.
    broken, has_calls = build_message("<tool_call>\n{not json}\n</tool_call>", thinking=False)
    assert not has_calls and "{not json}" in broken["content"]


class ScriptedModel:
    """Stands in for a transformers model: "generates" a fixed reply, streaming it if asked."""

    device = "cpu"
    generation_config = None

    def __init__(self, tokenizer: Any, reply: str) -> None:
        self.reply = tokenizer(reply)["input_ids"] + [tokenizer.convert_tokens_to_ids("<|im_end|>")]

    def generate(self, input_ids: Any, streamer: Any = None, **kwargs: Any) -> Any:
        import torch

        new = torch.tensor([self.reply])
        if streamer is not None:
            streamer.put(input_ids)  # the prompt, skipped by the streamer
            for token in self.reply:
                streamer.put(torch.tensor([token]))
            streamer.end()
        return torch.cat([input_ids, new], dim=1)


def test_engine_turns_native_tool_calls_into_openai_tool_calls(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from jupyter_analyst.models.worker.engine import Engine

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = ScriptedModel(tok, "First I check the shape.\n</think>\n\n" + CALL_TEXT)
    engine = Engine(tok, model, "scripted", 64, enable_thinking=True, prefix_cache=False)
    body = {"messages": USER, "tools": TOOLS, "temperature": 0}
    reply = engine.complete(body)
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] == "Let me look." and message["reasoning_content"] == "First I check the shape."
    (call,) = message["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == CODE_TOOL
    assert json.loads(call["function"]["arguments"]) == {"code": "print(df.shape)"}
    assert reply["usage"]["completion_tokens"] == len(model.reply)

    chunks = list(engine.stream({**body, "stream": True}))
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("content") or "" for d in deltas) == "Let me look."
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "First I check the shape."
    (streamed_call,) = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    assert streamed_call[0]["index"] == 0 and streamed_call[0]["function"] == call["function"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == len(model.reply)
    assert not engine.lock.locked()


# ---------------------------------------------------------------------------------------
# The embedded worker
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workers(tiny_model_dir: Path, tiny_adapter_dir: Path) -> Iterator[dict[str, EmbeddedModel]]:
    """Four workers started in parallel: base, base+LoRA, 4-bit base+LoRA, and one to kill."""
    specs = {
        "base": dict(adapter=None, quantization="none"),
        "lora": dict(adapter=tiny_adapter_dir, quantization="none"),
        "lora4": dict(adapter=tiny_adapter_dir, quantization="4bit"),
        "victim": dict(adapter=None, quantization="none"),
    }
    hosts = {
        k: EmbeddedModel(tiny_model_dir, device="cpu", max_new_tokens=24, startup_timeout=240, **v)
        for k, v in specs.items()
    }
    try:
        with ThreadPoolExecutor(len(hosts)) as pool:
            list(pool.map(EmbeddedModel.start, hosts.values()))
        yield hosts
    finally:
        for host in hosts.values():
            host.stop()
            if host.log_path is not None:
                host.log_path.unlink(missing_ok=True)


def _post(host: EmbeddedModel, body: dict[str, Any], token: str | None = "ok") -> httpx.Response:
    headers = {"Authorization": f"Bearer {host.api_key if token == 'ok' else token}"} if token else {}
    return httpx.post(host.base_url + "/chat/completions", json=body, headers=headers, timeout=120)


def _request(**extra: Any) -> dict[str, Any]:
    return {"messages": USER, "tools": TOOLS, "max_tokens": 12, "temperature": 0, **extra}


def test_every_endpoint_requires_the_bearer_secret(workers: dict[str, EmbeddedModel]) -> None:
    host = workers["base"]
    for token in (None, "wrong", host.api_key[:-1]):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for url in (host.base_url + "/models", f"http://127.0.0.1:{host.port}/health"):
            assert httpx.get(url, headers=headers).status_code == 401
        response = _post(host, _request(), token=token)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
    ok = {"Authorization": f"Bearer {host.api_key}"}
    health = httpx.get(f"http://127.0.0.1:{host.port}/health", headers=ok)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert check_server(host.base_url, host.api_key) == [host.model_name]
    assert host.api_key not in " ".join(host.command())  # the secret never goes on the command line


@pytest.mark.parametrize("name", ["lora", "lora4"])
def test_completion_is_well_formed_openai_json(workers: dict[str, EmbeddedModel], name: str) -> None:
    host = workers[name]
    response = _post(host, _request())
    assert response.status_code == 200, response.text
    # the engine's own time, so a client can tell the HTTP layer's share (benchmarks/worker_http.py)
    timing = response.headers["server-timing"]
    assert timing.startswith("engine;dur=") and 0 < float(timing.split("=")[1]) / 1000 < 120
    reply = response.json()
    assert reply["object"] == "chat.completion" and reply["model"] == host.model_name
    choice = reply["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length", "tool_calls")
    usage = reply["usage"]
    assert usage["prompt_tokens"] > 100 and 0 < usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # Streaming gives the same greedy reply in chunk form, ending with usage and [DONE].
    chunks = []
    with httpx.stream(
        "POST",
        host.base_url + "/chat/completions",
        json=_request(stream=True),
        headers={"Authorization": f"Bearer {host.api_key}"},
        timeout=120,
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in stream.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"] == []
    streamed_usage = chunks[-1]["usage"]
    assert (streamed_usage["prompt_tokens"], streamed_usage["completion_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    # Same prompt again: all but its last token come from the cache snapshot.
    assert streamed_usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"] - 1
    assert chunks[-2]["choices"][0]["finish_reason"] == choice["finish_reason"]
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert streamed == choice["message"]["content"]


def test_streams_keep_the_connection_for_the_next_request(workers: dict[str, EmbeddedModel]) -> None:
    """A run asks once a step: chunked streams let one connection serve them all, and a
    client that reads to the end of each reply gets the next one on the same socket."""
    import http.client

    host = workers["base"]
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=120)
    headers = {"Authorization": f"Bearer {host.api_key}", "Content-Type": "application/json"}
    try:
        for _ in range(3):
            conn.request("POST", "/v1/chat/completions", json.dumps(_request(stream=True)), headers)
            response = conn.getresponse()
            assert response.status == 200 and response.getheader("Transfer-Encoding") == "chunked"
            body = response.read().decode()  # http.client joins the chunks
            assert body.rstrip().endswith("data: [DONE]") and not response.will_close
        conn.request("GET", "/health", headers=headers)  # still the same socket
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def test_4bit_worker_really_is_4bit(workers: dict[str, EmbeddedModel]) -> None:
    assert workers["lora4"].log_path is not None
    assert "(4bit, float32)" in workers["lora4"].log_path.read_text()
    assert "(none, float32)" in workers["lora"].log_path.read_text()


def test_adapter_changes_greedy_generation(workers: dict[str, EmbeddedModel]) -> None:
    replies = {
        name: _post(workers[name], _request(tools=None)).json()["choices"][0]["message"]["content"]
        for name in ("base", "lora")
    }
    assert replies["base"] != replies["lora"]
    again = _post(workers["base"], _request(tools=None)).json()["choices"][0]["message"]["content"]
    assert again == replies["base"]  # greedy is deterministic, so the difference is the adapter


def test_policy_against_worker_returns_assistant_turn(workers: dict[str, EmbeddedModel]) -> None:
    host = workers["lora"]
    turn = host.policy(temperature=0, max_tokens=8)(USER, TOOLS)
    assert isinstance(turn, AssistantTurn) and turn.model == host.model_name
    assert turn.usage.prompt_tokens > 100 and 0 < turn.usage.completion_tokens <= 8
    pieces: list[str] = []
    streamed = host.policy(temperature=0, max_tokens=8, stream=True, on_text=pieces.append)(USER, TOOLS)
    assert streamed.content == turn.content == "".join(pieces)
    assert streamed.usage == turn.usage
    assert host.model_name in host.policy().name


def _without_call_ids(reply: dict[str, Any]) -> dict[str, Any]:
    """The reply's message, less the random ids of its tool calls (the worker constrains
    replies to calls where llguidance is installed)."""
    message = dict(reply["choices"][0]["message"])
    if "tool_calls" in message:
        message["tool_calls"] = [call["function"] for call in message["tool_calls"]]
    return message


def test_appended_prompt_reuses_the_cache_and_gives_the_same_tokens(
    workers: dict[str, EmbeddedModel],
) -> None:
    host = workers["base"]
    first = _post(host, _request(max_tokens=1)).json()
    # The next step of a run: the history grows by the reply and the tool's answer (a pure append).
    step = _request(
        max_tokens=10,
        messages=[*USER, {"role": "assistant", "content": "hello"}, {"role": "tool", "content": "(3, 2)"}],
    )
    cached = _post(host, step).json()
    # The cache snapshot holds the previous prompt less its last token, whatever was generated.
    assert cached["usage"]["prompt_tokens_details"]["cached_tokens"] == first["usage"]["prompt_tokens"] - 1
    _post(host, _request(tools=None, max_tokens=1))  # another conversation: the cache is replaced
    fresh = _post(host, step).json()
    assert fresh["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert _without_call_ids(fresh) == _without_call_ids(cached)
    assert fresh["usage"]["completion_tokens"] == cached["usage"]["completion_tokens"]


def test_bad_request_gets_an_error_and_the_worker_keeps_serving(workers: dict[str, EmbeddedModel]) -> None:
    host = workers["base"]
    assert _post(host, {"messages": "nope"}).status_code == 400
    failed = _post(host, _request(seed="not a number"))
    assert failed.status_code == 500 and "generation failed" in failed.json()["error"]["message"]
    assert _post(host, _request(max_tokens=2)).status_code == 200
    with pytest.raises(BackendError, match=r"failed \(HTTP 500\): generation failed"):
        host.policy(extra_body={"seed": "x"})(USER, TOOLS)  # worker alive: the server's message stands


def test_killed_worker_surfaces_as_backend_error(workers: dict[str, EmbeddedModel]) -> None:
    host = workers["victim"]
    policy = host.policy(temperature=0, max_tokens=4)
    assert policy(USER, TOOLS).usage.completion_tokens > 0
    assert host.pid is not None
    os.kill(host.pid, signal.SIGKILL)
    with pytest.raises(BackendError) as info:
        policy(USER, TOOLS)
    assert "signal 9" in _one_line(info.value)
    with pytest.raises(BackendError):
        host.check()
    host.stop()
    assert not host.running


def test_worker_refuses_to_start_without_a_secret() -> None:
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_ANALYST_WORKER_SECRET"}
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter_analyst.models.worker", "--model", "x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "JUPYTER_ANALYST_WORKER_SECRET" in proc.stderr
    assert proc.stdout == ""


def test_bad_model_path_raises_one_line_backend_error(tmp_path: Path) -> None:
    host = EmbeddedModel(tmp_path / "missing-model", device="cpu", startup_timeout=120)
    with pytest.raises(BackendError) as info:
        host.start()
    message = _one_line(info.value)
    assert "(exit code 3)" in message and "cannot load model" in message and "no model folder" in message
    assert not host.running
    assert host.log_path is not None
    host.log_path.unlink()


def test_stop_cancels_a_worker_that_is_still_loading(tiny_model_dir: Path) -> None:
    host = EmbeddedModel(tiny_model_dir, device="cpu", startup_timeout=120)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            host.start()
        except BackendError as exc:
            errors.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    time.sleep(0.5)
    host.stop()
    thread.join(timeout=30)
    assert not thread.is_alive() and not host.running
    assert len(errors) == 1 and "stopped" in _one_line(errors[0])
    if host.log_path is not None:
        host.log_path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------
# The client against a fake OpenAI server
# ---------------------------------------------------------------------------------------


class FakeOpenAI(BaseHTTPRequestHandler):
    """Answers from ``server.script``: a (status, body) pair or a list of SSE payloads."""

    server: Any

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: str, ctype: str = "application/json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self.server.requests.append(("GET", self.path, self.headers.get("Authorization"), None))
        self._send(200, json.dumps({"object": "list", "data": [{"id": "fake-model"}, {"id": "other"}]}))

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(("POST", self.path, self.headers.get("Authorization"), body))
        script = self.server.script
        if isinstance(script, list):
            text = "".join((p if isinstance(p, str) else "data: " + json.dumps(p)) + "\n\n" for p in script)
            self._send(200, text + "data: [DONE]\n\n", "text/event-stream")
        else:
            status, payload = script
            self._send(status, payload if isinstance(payload, str) else json.dumps(payload))


@pytest.fixture()
def fake() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    server.daemon_threads = True
    server.requests = []  # type: ignore[attr-defined]
    server.script = (500, "unset")  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: ThreadingHTTPServer, suffix: str = "") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{suffix}"


def test_client_parses_tool_calls(fake: Any) -> None:
    fake.script = (
        200,
        {
            "model": "fake-model",
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "reasoning_content": "think",
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": CODE_TOOL, "arguments": '{"code": "df.info()"}'},
                            },
                            {
                                "id": "call_2",
                                "type": "function",
                                "function": {"name": FINAL_TOOL, "arguments": "{oops"},
                            },
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 5},
        },
    )
    policy = OpenAIChatPolicy(_url(fake), api_key="k", temperature=0)  # no /v1, no model: both resolved
    history = [
        *USER,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "x", "type": "function", "function": {"name": CODE_TOOL, "arguments": {"code": "1"}}}
            ],
        },
    ]
    turn = policy(history, TOOLS)
    assert turn.content == "" and turn.reasoning == "think" and turn.model == "fake-model"
    assert [(c.id, c.name, c.arguments) for c in turn.tool_calls] == [
        ("call_1", CODE_TOOL, {"code": "df.info()"}),
        ("call_2", FINAL_TOOL, {RAW_ARGUMENTS: "{oops"}),
    ]
    assert (turn.usage.prompt_tokens, turn.usage.completion_tokens) == (7, 5)
    assert policy.name == f"fake-model via {_url(fake, '/v1')}"
    (get, post) = fake.requests
    assert get[:3] == ("GET", "/v1/models", "Bearer k")
    assert post[1] == "/v1/chat/completions" and post[3]["model"] == "fake-model"
    assert post[3]["tool_choice"] == "auto" and post[3]["tools"] == TOOLS and post[3]["stream"] is False
    assert post[3]["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"code": "1"}'


def test_client_accumulates_streamed_tool_call_deltas(fake: Any) -> None:
    def chunk(delta: dict[str, Any]) -> dict[str, Any]:
        return {"model": "fake-model", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}

    fake.script = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "plan "}),
        chunk({"reasoning": "more"}),
        chunk({"content": "Looking "}),
        chunk({"content": "now."}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": CODE_TOOL, "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"co'}}]}),
        chunk(
            {
                "tool_calls": [
                    {"index": 1, "id": "call_b", "function": {"name": FINAL_TOOL, "arguments": '{"answer"'}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'de": "df.head()"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": ': "x"}'}}]}),
        ": keep-alive comment lines are ignored",
        {"model": "fake-model", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 9}},
    ]
    pieces: list[str] = []
    policy = OpenAIChatPolicy(_url(fake, "/v1/"), model="fake-model", stream=True, on_text=pieces.append)
    turn = policy(USER, TOOLS)
    assert pieces == ["Looking ", "now."] and turn.content == "Looking now."
    assert turn.reasoning == "plan more"
    assert [(c.id, c.name, c.arguments) for c in turn.tool_calls] == [
        ("call_a", CODE_TOOL, {"code": "df.head()"}),
        ("call_b", FINAL_TOOL, {"answer": "x"}),
    ]
    assert (turn.usage.prompt_tokens, turn.usage.completion_tokens) == (11, 9)
    body = fake.requests[-1][3]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (401, {"error": {"message": "bad key"}}, "rejected the API key (HTTP 401): bad key"),
        (403, "forbidden", "rejected the API key (HTTP 403)"),
        (
            404,
            {"error": {"message": "The model `m` does not exist."}},
            "no model 'm' or endpoint /chat/completions",
        ),
        (500, {"error": {"message": "CUDA out of memory"}}, "failed (HTTP 500): CUDA out of memory"),
        (400, {"detail": "context too long"}, "refused the request (HTTP 400): context too long"),
        (200, "<html>not json</html>", "not valid JSON"),
        (200, {"choices": []}, "without choices"),
    ],
)
def test_client_error_replies_become_one_line_backend_errors(
    fake: Any, status: int, payload: Any, expected: str
) -> None:
    fake.script = (status, payload)
    with pytest.raises(BackendError) as info:
        OpenAIChatPolicy(_url(fake), model="m")(USER, TOOLS)
    assert expected in _one_line(info.value)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_raises_one_line_backend_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(BackendError) as info:
        OpenAIChatPolicy(url, model="m")(USER, TOOLS)
    message = _one_line(info.value)
    assert message == f"cannot reach the model server at {url}/v1: connection refused"
    with pytest.raises(BackendError, match="cannot reach"):
        check_server(url, None, timeout=2)


def test_base_url_normalisation() -> None:
    for given in ("http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/", "h:8000"):
        assert normalize_base_url(given) == "http://h:8000/v1"
    assert normalize_base_url("https://x.org/api/openai/v1") == "https://x.org/api/openai/v1"
