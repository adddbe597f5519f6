"""Constrained decoding: the tool-call grammar, the engine with and without it, the worker.

The tiny model has random weights, so left alone it writes noise: that is the point. With
the grammar every reply must still be calls the loop can act on (``reply_problem`` judges
with the loop's own parser), and without it the same model, prompts and seeds must fail,
which shows that the grammar, not luck, makes the difference.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jupyter_analyst.agent.prompts import SYSTEM_PROMPT
from jupyter_analyst.agent.tools import TOOL_ARGUMENT, TOOLS
from jupyter_analyst.models import EmbeddedModel
from jupyter_analyst.models.worker import grammar as grammar_mod
from jupyter_analyst.models.worker.grammar import (
    ToolCallConstraint,
    reply_problem,
    token_tags,
    tool_call_grammar,
)

pytest.importorskip("llguidance")

MESSAGES = [
    {"role": "system", "content": SYSTEM_PROMPT},
    {"role": "user", "content": "Task: which island has the heaviest penguins?\n\nDataFrame `df`: 344 rows"},
]
SEEDS = range(6)
CALL = "<tool_call>\n<function={name}>\n<parameter={arg}>\n{value}\n</parameter>\n</function>\n</tool_call>"


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jupyter_analyst.models.worker.engine import Engine
    from jupyter_analyst.models.worker.process import make_constraint

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    engine = Engine(tok, model, "tiny", 64, enable_thinking=False, prefix_cache=False)
    engine.constraint = make_constraint("on", engine)
    return engine


def _matches(engine: Any, text: str, tools: list[dict[str, Any]], thinking: bool = False) -> bool:
    import llguidance

    constraint: ToolCallConstraint = engine.constraint
    matcher = llguidance.LLMatcher(constraint.tokenizer, constraint.grammar(tools, thinking), log_level=0)
    ids = engine.tokenizer.encode(text, add_special_tokens=False)
    return matcher.consume_tokens(ids) and matcher.is_accepting()


def test_grammar_accepts_exactly_the_well_formed_calls(engine: Any) -> None:
    good = CALL.format(name="add_and_execute_jupyter_code_cell", arg="code", value="x = '<b>'\nprint(x)")
    final = CALL.format(name="final_answer", arg="answer", value="Biscoe: 4,716 g on average.")
    assert _matches(engine, good, TOOLS)
    assert _matches(engine, good + "\n" + final, TOOLS)  # several calls, as the template joins them
    assert _matches(engine, "Heaviest: check Biscoe first.\n</think>\n\n" + good, TOOLS, thinking=True)
    for bad in (
        "Let me look first. " + good,  # prose instead of a call
        good.replace("add_and_execute_jupyter_code_cell", "run_code"),  # an unknown tool
        good.replace("<parameter=code>", "<parameter=source>"),  # the wrong argument
        good.replace("x = '<b>'\nprint(x)", "  "),  # a blank argument
        good.replace("print(x)", "print(x)</parameter>"),  # a tag the parser would split on
        good.replace("</tool_call>", ""),  # an unclosed call
    ):
        assert not _matches(engine, bad, TOOLS), bad
    # The grammar is stricter than the parser, which forgives a stray closing tag by cutting
    # the code short: the grammar never lets the model write one.
    assert reply_problem(good.replace("print(x)", "print(x)</parameter>")) == ""


def test_grammar_follows_the_tool_specs(engine: Any) -> None:
    """A new tool needs no grammar edit: its name and arguments come from its spec."""
    spec = {
        "type": "function",
        "function": {
            "name": "plot_column",
            "parameters": {
                "type": "object",
                "properties": {"column": {"type": "string"}, "bins": {"type": "integer"}},
                "required": ["column"],
            },
        },
    }
    one = CALL.format(name="plot_column", arg="column", value="body_mass_g")
    both = one.replace("</function>", "<parameter=bins>\n20\n</parameter>\n</function>")
    assert _matches(engine, one, [spec]) and _matches(engine, both, [spec])
    assert not _matches(engine, CALL.format(name="final_answer", arg="answer", value="x"), [spec])
    lark = tool_call_grammar([spec], tags=token_tags(engine.tokenizer))
    assert "plot_column" in lark and "add_and_execute_jupyter_code_cell" not in lark


def _reply(engine: Any, seed: int, constrained: bool, thinking: bool = False) -> str:
    body = {
        "messages": MESSAGES,
        "tools": TOOLS,
        "temperature": 1.0,
        "max_tokens": 48,
        "seed": seed,
        "constrained": constrained,
        "chat_template_kwargs": {"enable_thinking": thinking},
    }
    message = engine.complete(body)["choices"][0]["message"]
    if "tool_calls" not in message:
        return str(message.get("content") or "")
    text = "\n".join(
        CALL.format(name=c["function"]["name"], arg=k, value=v)
        for c in message["tool_calls"]
        for k, v in json.loads(c["function"]["arguments"]).items()
    )
    return text


@pytest.mark.parametrize("thinking", [False, True])
def test_every_constrained_reply_is_a_valid_call(engine: Any, thinking: bool) -> None:
    for seed in SEEDS:
        text = _reply(engine, seed, constrained=True, thinking=thinking)
        assert reply_problem(text) == "", (seed, text)


def test_the_same_model_unconstrained_writes_malformed_replies(engine: Any) -> None:
    problems = [reply_problem(_reply(engine, seed, constrained=False)) for seed in SEEDS]
    assert all(problems), problems  # random weights never hit the exact syntax by chance


def test_constraint_modes(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_analyst.models.worker.process import make_constraint, parse_args

    assert parse_args(["--model", "m"]).constrained == "auto"
    assert make_constraint("off", engine) is None
    monkeypatch.setattr(grammar_mod, "available", lambda: False)
    monkeypatch.setattr("jupyter_analyst.models.worker.process.available", lambda: False)
    assert make_constraint("auto", engine) is None  # auto: quietly off without the library
    with pytest.raises(RuntimeError, match=r"needs the llguidance package") as err:
        make_constraint("on", engine)
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def worker(tiny_model_dir: Path) -> Iterator[EmbeddedModel]:
    host = EmbeddedModel(
        tiny_model_dir, device="cpu", max_new_tokens=40, startup_timeout=240, constrained=True
    )
    try:
        yield host.start()
    finally:
        host.stop()


def test_worker_serves_constrained_calls_over_http(worker: EmbeddedModel) -> None:
    assert "--constrained" in worker.command() and "on" in worker.command()
    headers = {"Authorization": f"Bearer {worker.api_key}"}
    body = {"messages": MESSAGES, "tools": TOOLS, "temperature": 1.0, "max_tokens": 40}
    for seed in range(3):
        reply = httpx.post(
            worker.base_url + "/chat/completions", json={**body, "seed": seed}, headers=headers, timeout=120
        ).json()
        choice = reply["choices"][0]
        assert choice["finish_reason"] == "tool_calls", reply
        for call in choice["message"]["tool_calls"]:
            name = call["function"]["name"]
            args = json.loads(call["function"]["arguments"])
            assert name in TOOL_ARGUMENT and str(args[TOOL_ARGUMENT[name]]).strip()
    # Streamed, the same grammar holds: the tool calls arrive as one delta at the end.
    with httpx.stream(
        "POST",
        worker.base_url + "/chat/completions",
        json={**body, "seed": 7, "stream": True},
        headers=headers,
        timeout=120,
    ) as resp:
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
    finishes = [c["choices"][0]["finish_reason"] for c in events if c.get("choices")]
    assert "tool_calls" in finishes
    # The policy the loop uses reads the same calls.
    turn = worker.policy(temperature=1.0, max_tokens=40)(MESSAGES, TOOLS)
    assert turn.tool_calls and all(c.name in TOOL_ARGUMENT for c in turn.tool_calls)
